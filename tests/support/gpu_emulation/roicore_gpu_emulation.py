"""pytest plugin: run tests/test_gpu.py on the host stand-in for CuPy.

``PYTHONPATH=tests/support/gpu_emulation python -m pytest -p roicore_gpu_emulation \
    tests/test_gpu.py``

The stand-in's arrays subclass ``numpy.ndarray``, so roicore would route them
to the CPU backend; this plugin makes roicore's dispatch send them to the GPU
backend (:mod:`roicore._backends.cuda`), which then runs the CUDA kernels compiled for
the host (see ``cupy/__init__.py`` here).
"""

import cupy

import roicore._api as _api

assert cupy.__version__.endswith("roicore-host-emulation"), "the real CuPy is first on the path"

_array_module = _api._array_module


def _emulated_array_module(a):
    if isinstance(a, cupy.ndarray):
        return "cupy"
    return _array_module(a)


_api._array_module = _emulated_array_module
