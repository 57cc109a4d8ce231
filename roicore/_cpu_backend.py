"""NumPy arrays -> the Cython/OpenMP kernels in :mod:`roicore._cpu`."""

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
from . import _validation as V

xp = np

_ERRORS = {
    1: (MemoryError, "out of memory for the per-thread RoI tables"),
    2: (
        ValueError,
        "a RoI needs more than 65536 samples per bin side with sampling_ratio <= 0 "
        "(the box is enormous compared with output_size); check `rois` / "
        "`spatial_scale` or pass a positive `sampling_ratio`",
    ),
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
    return V.check_num_threads(plan.num_threads, _cpu.max_threads())


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
    xc = np.ascontiguousarray(x, dtype=T)
    rc = np.ascontiguousarray(rois, dtype=T)
    direct = out is not None and out.dtype == T
    res = out if direct else np.empty(shape, T)
    nt = threads(plan)
    if plan.op == "pool":
        err = _cpu.pool_fwd(xc, rc, res, plan.bins, plan.spatial_scale, plan.channels_last, nt)
    else:
        err = _cpu.sampled_fwd(xc, rc, res, plan.kind, plan.aligned, plan.max_mode,
                               plan.sampling_ratio, plan.spatial_scale, plan.channels_last, nt)
    _raise(err)
    if direct or res.dtype == x.dtype:
        return res
    if out is not None:
        out[...] = _cast(res, x.dtype)
        return out
    return _cast(res, x.dtype)


def backward(plan: Any, grad_output: Any, x: np.ndarray, rois: np.ndarray,
             deterministic: bool) -> np.ndarray:
    """Always deterministic on the CPU: ``deterministic`` is accepted for API parity."""
    s = plan.shapes
    if not isinstance(grad_output, np.ndarray):
        raise TypeError(f"`grad_output` must be a numpy.ndarray; got {type(grad_output)}")
    T = V.compute_dtype(x.dtype)
    if min(s.out_shape) == 0 or s.H == 0 or s.W == 0 or s.N == 0:
        return np.zeros(x.shape, x.dtype)
    xc = np.ascontiguousarray(x, dtype=T)
    rc = np.ascontiguousarray(rois, dtype=T)
    gc = np.ascontiguousarray(grad_output, dtype=T)
    grad_in = np.zeros(xc.shape, T)
    batch = rc[:, 0].astype(np.int64)
    order = np.argsort(batch, kind="stable").astype(np.int64)
    starts = np.searchsorted(batch[order], np.arange(s.N + 1)).astype(np.int64)
    nt = threads(plan)
    if plan.op == "pool":
        err = _cpu.pool_bwd(gc, xc, rc, order, starts, grad_in, plan.bins, plan.spatial_scale,
                            plan.channels_last, nt)
    else:
        err = _cpu.sampled_bwd(gc, xc, rc, order, starts, grad_in, plan.kind, plan.aligned,
                               plan.max_mode, plan.sampling_ratio, plan.spatial_scale,
                               plan.channels_last, nt)
    _raise(err)
    return grad_in if grad_in.dtype == x.dtype else _cast(grad_in, x.dtype)
