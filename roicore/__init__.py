"""roicore: RoI Pool, RoI Align and RoI Warp, forward and backward.

NumPy input runs on the Cython/OpenMP CPU backend, CuPy input on the CUDA
backend; the backend is chosen from the input array.
"""

from __future__ import annotations

from ._api import (
    roi_align,
    roi_align_backward,
    roi_pool,
    roi_pool_backward,
    roi_warp,
    roi_warp_backward,
)
from ._backends.gpu_checks import gpu_checks

__version__ = "0.1.0"


def openmp_enabled() -> bool:
    """Return True if the CPU backend was compiled with OpenMP.

    Returns
    -------
    bool
        False for a serial build (a compiler without OpenMP, or
        ``ROICORE_NO_OPENMP=1`` at build time).
    """
    from ._backends.cpu import _cpu

    return bool(_cpu.openmp_enabled())


def default_num_threads() -> int:
    """Threads the CPU backend uses when ``num_threads=None``.

    Returns
    -------
    int
        OpenMP's current default team size (honours ``OMP_NUM_THREADS`` and
        threadpoolctl limits).
    """
    from ._backends.cpu import _cpu

    return int(_cpu.max_threads())


__all__ = [
    "__version__",
    "default_num_threads",
    "gpu_checks",
    "openmp_enabled",
    "roi_align",
    "roi_align_backward",
    "roi_pool",
    "roi_pool_backward",
    "roi_warp",
    "roi_warp_backward",
]
