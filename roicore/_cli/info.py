"""``python -m roicore info``: version, OpenMP, threads, CUDA compilers, CuPy / CUDA device."""

from __future__ import annotations

import argparse
import importlib.util
import platform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    import numpy as np

    import roicore

    print(f"roicore {roicore.__version__} (Python {platform.python_version()}, "
          f"NumPy {np.__version__}, {platform.machine()})")
    print(f"OpenMP: {'enabled' if roicore.openmp_enabled() else 'DISABLED (serial build)'}; "
          f"default threads: {roicore.default_num_threads()}")
    from roicore._backends import openmp
    from roicore._backends.cpu import _cpu

    print(f"OpenMP wait policy: {openmp.WAIT_POLICY}")
    cache = roicore.output_cache_info()
    print(f"output cache: {cache['limit'] >> 20} MiB limit (ROICORE_OUTPUT_CACHE_MB; "
          f"roicore.set_output_cache_limit)")

    print(f"CPU kernels: {_cpu.cpu_isa()} "
          "(cap with ROICORE_CPU_ISA=reference|baseline|avx2|avx512)")
    from roicore._cli import cuda_tools as _cuda_tools

    nvrtc, why = _cuda_tools.find_nvrtc()
    print(f"NVRTC: {nvrtc.version()} ({nvrtc.path})" if nvrtc else f"NVRTC: not found ({why})")
    nvcc, why = _cuda_tools.find_nvcc()
    print(f"nvcc: {_cuda_tools.nvcc_version(nvcc)} ({nvcc})" if nvcc
          else f"nvcc: not found ({why})")
    if importlib.util.find_spec("cupy") is None:
        print("CuPy: not installed (GPU backend unavailable; pip install 'roicore[cuda]')")
        return 0
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        print(f"CuPy {cupy.__version__}: {n} CUDA device(s)")
        for i in range(n):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            print(f"  device {i}: {name}")
    except Exception as exc:  # CuPy present but no driver / device
        print(f"CuPy installed, no usable CUDA device: {exc}")
    return 0
