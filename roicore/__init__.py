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


def set_output_cache_limit(nbytes: int) -> int:
    """Set how much memory the CPU backend keeps for recycling large results.

    A result of 4 MiB or more that roicore allocates (forward outputs, stored
    winners, input gradients) lives in memory of its own, advised for
    transparent huge pages. When the last array using it is freed, the memory
    is kept (up to ``nbytes`` in all, at most 8 blocks, the least recently
    freed released first) and reused by the next result of a similar size (the
    same up to 1.5x), so repeated calls do not page-fault their outputs in
    again. Results never depend on it. The default is 256 MiB, or
    ``ROICORE_OUTPUT_CACHE_MB`` (MiB) from the environment at import.

    Parameters
    ----------
    nbytes : int
        The new limit in bytes; 0 disables the cache and frees what it holds.

    Returns
    -------
    int
        The previous limit in bytes.
    """
    from ._backends.cpu import _cpu

    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"`nbytes` must be an int >= 0 (0 disables the output cache); "
                         f"got {nbytes!r}")
    return int(_cpu.output_cache_limit(nbytes))


def output_cache_info() -> dict[str, int]:
    """Report the CPU backend's output cache (see :func:`set_output_cache_limit`).

    Returns
    -------
    dict
        ``limit`` and ``held`` (bytes), ``blocks`` held, and the counts of
        results served from the cache (``reused``) and from new memory
        (``mapped``) so far.
    """
    from ._backends.cpu import _cpu

    return {k: int(v) for k, v in _cpu.output_cache_stats().items()}


__all__ = [
    "__version__",
    "default_num_threads",
    "gpu_checks",
    "openmp_enabled",
    "output_cache_info",
    "roi_align",
    "roi_align_backward",
    "roi_pool",
    "roi_pool_backward",
    "roi_warp",
    "roi_warp_backward",
    "set_output_cache_limit",
]
