"""The ``python -m roicore`` commands (dispatched by :mod:`roicore.__main__`).

One module per command (:mod:`.demo`, :mod:`.info`, :mod:`.explain`,
:mod:`.bench` with :mod:`.bench_cuda` for ``--device cuda``, :mod:`.cuda_check`),
each with ``add_arguments(parser)`` and ``run(args) -> int``, and their
helpers: :mod:`.workloads` (the standard benchmark workloads, also used by
``benchmarks/``) and :mod:`.cuda_tools` (finding NVRTC and nvcc).
"""
