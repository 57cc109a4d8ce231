"""NumPy arrays -> the Cython/OpenMP kernels in :mod:`roicore._cpu`.

What reaches the kernels' typed pointers is always C-contiguous, aligned and
of the compute dtype (a misaligned view, e.g. ``np.frombuffer`` at an odd
offset, is copied; a misaligned ``out`` is computed into a temporary and
copied back).  Batch indices go to the kernels as an exact int64 array taken
from the caller's ``rois`` before they are cast to the compute dtype
(float32 holds integers exactly only up to 2**24).  The thread count is
clamped to the kernels' ceiling (:func:`roicore._cpu.thread_ceiling`), and
a sampled op is refused when its sampling cost is above a limit
(:mod:`roicore._limits`).  The kernels check for Ctrl-C between bounded
chunks of work, so a long call raises KeyboardInterrupt promptly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from . import _cpu
except ImportError as exc:  # a source checkout on sys.path without its built extension
    import os as _os

    raise ImportError(
        f"roicore's compiled CPU backend (roicore._cpu) is missing in "
        f"{_os.path.dirname(__file__)}: this looks like an unbuilt source checkout shadowing "
        f"the installed package. Build it in place with `pip install -e .` (or run from "
        f"another directory)."
    ) from exc
from . import _limits
from . import _validation as V

xp = np

_ERRORS = {
    _cpu.ERR_NOMEM: (MemoryError, "the CPU kernels ran out of memory for their scratch "
                     "buffers (sample tables, packed input or per-thread tiles); try fewer "
                     "`rois` or a smaller input per call"),
    # checked (with a precise message) before the kernels run; kept as a backstop
    _cpu.ERR_COST: (ValueError, "the sampling cost of this call is above roicore's limits "
        "(see roicore._limits); pass a smaller `sampling_ratio` or check `rois`"),
    _cpu.ERR_INTERRUPTED: (KeyboardInterrupt, "interrupted"),
}


def check_rois(rois: Any, N: int) -> None:
    V.check_rois_values(np.asarray(rois, dtype=np.float64), N)


#: Below this many output elements a default-threaded call runs on one thread:
#: starting an OpenMP team costs more than the work (results are identical).
SMALL_WORK = 4096


def threads(plan: Any) -> int:
    if plan.num_threads is None:
        s = plan.shapes
        if s.K * s.C * s.PH * s.PW < SMALL_WORK:
            return 1
    n = V.check_num_threads(plan.num_threads, _cpu.max_threads())
    # More threads than this cannot help and may be impossible to create (the
    # OpenMP runtime would abort the process); results never depend on it.
    return min(n, int(_cpu.thread_ceiling()))


def aligned(a: Any, dtype: np.dtype) -> np.ndarray:
    """``a`` as a C-contiguous, aligned array of ``dtype`` (no copy if it is one)."""
    return np.require(a, dtype=dtype, requirements=("C", "A"))


def _cast(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # float32 -> float16 may overflow (e.g. the lowest-float32 value of a bin
    # with no winner becomes -inf): that is the intended rounding, not a warning.
    with np.errstate(over="ignore"):
        return a.astype(dtype)


def _raise(err: int) -> None:
    if err:
        exc, msg = _ERRORS.get(err, (RuntimeError, f"kernel error {err}"))
        raise exc(msg)


def _check_out(out: Any, shape: tuple, dtype: np.dtype) -> None:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"`out` must be a numpy.ndarray for NumPy input; got {type(out)}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"`out` must have shape {shape} and dtype {dtype}; got {out.shape} {out.dtype}"
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("`out` must be C-contiguous and writeable")


def _check_cost(plan: Any, xc: np.ndarray, rc: np.ndarray, batch: np.ndarray,
                res: np.ndarray) -> None:
    if plan.op == "pool" or rc.shape[0] == 0:
        return
    _limits.check_sampling_cost(plan, *_cpu.sampled_cost_of(
        xc, rc, batch, res, plan.kind, plan.aligned, plan.sampling_ratio,
        plan.spatial_scale, plan.channels_last))


def forward(plan: Any, x: np.ndarray, rois: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    s = plan.shapes
    T = V.compute_dtype(x.dtype)
    shape = s.out_shape
    if out is not None:
        _check_out(out, shape, x.dtype)
    if min(shape) == 0 or s.H == 0 or s.W == 0:
        res = out if out is not None else np.empty(shape, x.dtype)
        res[...] = 0
        return res
    batch = V.batch_indices(rois)
    xc = aligned(x, T)
    rc = aligned(rois, T)
    direct = out is not None and out.dtype == T and out.flags.aligned
    res = out if direct else np.empty(shape, T)
    _check_cost(plan, xc, rc, batch, res)
    nt = threads(plan)
    if plan.op == "pool":
        err = _cpu.pool_fwd(xc, rc, batch, res, plan.bins, plan.spatial_scale,
                            plan.channels_last, nt)
    else:
        err = _cpu.sampled_fwd(xc, rc, batch, res, plan.kind, plan.aligned, plan.max_mode,
                               plan.sampling_ratio, plan.spatial_scale, plan.channels_last, nt)
    _raise(err)
    if direct:
        return res
    if out is not None:  # float16, or a misaligned `out`: copy back
        out[...] = res if res.dtype == out.dtype else _cast(res, x.dtype)
        return out
    return res if res.dtype == x.dtype else _cast(res, x.dtype)


def backward(plan: Any, grad_output: Any, x: np.ndarray, rois: np.ndarray,
             deterministic: bool) -> np.ndarray:
    """Always deterministic on the CPU: ``deterministic`` is accepted for API parity."""
    s = plan.shapes
    if not isinstance(grad_output, np.ndarray):
        raise TypeError(f"`grad_output` must be a numpy.ndarray; got {type(grad_output)}")
    T = V.compute_dtype(x.dtype)
    if min(s.out_shape) == 0 or s.H == 0 or s.W == 0 or s.N == 0:
        return np.zeros(x.shape, x.dtype)
    batch = V.batch_indices(rois)
    xc = aligned(x, T)
    rc = aligned(rois, T)
    gc = aligned(grad_output, T)
    _check_cost(plan, xc, rc, batch, gc)
    grad_in = np.zeros(xc.shape, T)
    order = np.argsort(batch, kind="stable").astype(np.int64)
    starts = np.searchsorted(batch[order], np.arange(s.N + 1)).astype(np.int64)
    nt = threads(plan)
    if plan.op == "pool":
        err = _cpu.pool_bwd(gc, xc, rc, batch, order, starts, grad_in, plan.bins,
                            plan.spatial_scale, plan.channels_last, nt)
    else:
        err = _cpu.sampled_bwd(gc, xc, rc, batch, order, starts, grad_in, plan.kind,
                               plan.aligned, plan.max_mode, plan.sampling_ratio,
                               plan.spatial_scale, plan.channels_last, nt)
    _raise(err)
    return grad_in if grad_in.dtype == x.dtype else _cast(grad_in, x.dtype)
