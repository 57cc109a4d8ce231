"""The backends behind :mod:`roicore._api`, chosen from the input array.

* :mod:`.shared` -- the forward/backward skeleton both backends run (``out=``
  and its aliasing temporary, empty input, dtype casts, batch indices).
* :mod:`.cpu` -- NumPy arrays -> the Cython/OpenMP kernels (``roicore._cpu``).
* :mod:`.cuda` -- CuPy arrays -> the CUDA kernels (imported only for CuPy input).
* :mod:`.cuda_source` -- the CUDA source and kernel names as NVRTC receives them.
* :mod:`.gpu_checks` -- the switch for the GPU backend's host-side RoI check
  (``roicore.gpu_checks``) and that check's sampling-cost replay.
* :mod:`.limits` -- the sampling-cost limits both backends enforce.
"""
