"""NumPy arrays -> the Cython/OpenMP kernels in :mod:`roicore._cpu`.

What reaches the kernels' typed pointers is always C-contiguous, aligned and
of the compute dtype (a misaligned view, e.g. ``np.frombuffer`` at an odd
offset, is copied; a misaligned ``out`` is computed into a temporary and
copied back).  Batch indices go to the kernels as an exact int64 array taken
from the caller's ``rois`` before they are cast to the compute dtype
(float32 holds integers exactly only up to 2**24).  The thread count is
clamped to the kernels' ceiling (:func:`roicore._cpu.thread_ceiling`), and
a sampled op is refused when its sampling cost is above a limit
(:mod:`roicore._backends.limits`).  The kernels check for Ctrl-C between bounded
chunks of work, so a long call raises KeyboardInterrupt promptly.

``forward`` and ``backward`` run the skeleton shared with the CUDA backend
(:mod:`roicore._backends.shared`: ``out=``, empty input, casts) with the hooks
below (the compute-dtype view, the cost check, the kernel calls).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import numpy as np

try:
    from .. import _cpu
except ImportError as exc:  # a source checkout on sys.path without its built extension
    import os as _os

    raise ImportError(
        f"roicore's compiled CPU backend (roicore._cpu) is missing in "
        f"{_os.path.dirname(__file__)}: this looks like an unbuilt source checkout shadowing "
        f"the installed package. Build it in place with `pip install -e .` (or run from "
        f"another directory)."
    ) from exc
from .. import _validation as V
from . import limits as _limits
from . import shared

xp = np

_ERRORS = {
    _cpu.ERR_NOMEM: (MemoryError, "the CPU kernels ran out of memory for their scratch "
                     "buffers (sample tables, packed input or per-thread tiles); try fewer "
                     "`rois` or a smaller input per call"),
    # checked (with a precise message) before the kernels run; kept as a backstop
    _cpu.ERR_COST: (ValueError, "the sampling cost of this call is above roicore's limits "
        "(see roicore._backends.limits); pass a smaller `sampling_ratio` or check `rois`"),
    _cpu.ERR_INTERRUPTED: (KeyboardInterrupt, "interrupted"),
    _cpu.ERR_INDICES: (ValueError, "`indices` must hold -1 or winner positions y * W + x "
                       "in [0, H*W) of the input map (from roi_pool(..., "
                       "return_indices=True) on this input and these rois)"),
}


SAMPLED_INDICES = (
    "`indices` must hold the winners stored by the max-mode forward on this input and "
    "these rois (roi_align / roi_warp(..., mode='max', return_indices=True)): a sample "
    "iy * gw + ix of its bin's sampling grid that lies inside the map, or -1 / -2 (no "
    "gradient)")


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


def _raise(err: int) -> None:
    if err:
        exc, msg = _ERRORS.get(err, (RuntimeError, f"kernel error {err}"))
        raise exc(msg)


# --------------------------------------------------------------------------- the hooks of
# the shared forward/backward skeleton (roicore._backends.shared)
NAME = "NumPy"
batch_indices = V.batch_indices
to_compute = aligned


def on_device(x: np.ndarray) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def host_rois(rois: np.ndarray, N: int) -> None:
    """Nothing: the CPU kernels compute the sampling cost themselves."""
    return None


def check_out_device(out: np.ndarray, x: np.ndarray) -> None:
    return None


def writes_into(out: np.ndarray, T: np.dtype) -> bool:
    """The kernels write into ``out`` directly when it is of the compute dtype
    and aligned (a misaligned ``out`` is computed into a temporary)."""
    return out.dtype == T and out.flags.aligned


def check_cost(plan: Any, host: None, xc: np.ndarray, rc: np.ndarray, batch: np.ndarray,
               res: np.ndarray) -> None:
    if plan.op == "pool" or rc.shape[0] == 0:
        return
    _limits.check_sampling_cost(plan, *_cpu.sampled_cost_of(
        xc, rc, batch, res, plan.kind, plan.aligned, plan.sampling_ratio,
        plan.spatial_scale, plan.channels_last))


def run_forward(plan: Any, xc: np.ndarray, rc: np.ndarray, batch: np.ndarray,
                res: np.ndarray, indices: np.ndarray | None = None) -> None:
    nt = threads(plan)
    # winners stored: the kernels read an NHWC map (channels in lanes), an NCHW
    # map costs one transposed copy
    xn = None
    if indices is not None:
        xn = xc if plan.channels_last else np.ascontiguousarray(xc.transpose(0, 2, 3, 1))
    if indices is not None and plan.op == "sampled":  # max mode
        err = _cpu.sampled_fwd_indices(xn, xc, rc, batch, res, indices, plan.kind,
                                       plan.aligned, plan.sampling_ratio, plan.spatial_scale,
                                       plan.channels_last, nt)
    elif indices is not None:  # RoI Pool
        err = _cpu.pool_fwd_indices(xn, xc, rc, batch, res, indices, plan.bins,
                                    plan.spatial_scale, plan.channels_last, nt)
    elif plan.op == "pool":
        err = _cpu.pool_fwd(xc, rc, batch, res, plan.bins, plan.spatial_scale,
                            plan.channels_last, nt)
    else:
        err = _cpu.sampled_fwd(xc, rc, batch, res, plan.kind, plan.aligned, plan.max_mode,
                               plan.sampling_ratio, plan.spatial_scale, plan.channels_last, nt)
    _raise(err)


def run_backward(plan: Any, gc: np.ndarray, xc: np.ndarray, rc: np.ndarray,
                 batch: np.ndarray, deterministic: bool,
                 indices: np.ndarray | None = None) -> np.ndarray:
    """The CPU backward is always deterministic (a gather per image, in RoI order)."""
    s = plan.shapes
    grad_in = np.zeros(xc.shape, xc.dtype)
    order = np.argsort(batch, kind="stable").astype(np.int64)
    starts = np.searchsorted(batch[order], np.arange(s.N + 1)).astype(np.int64)
    nt = threads(plan)
    if indices is not None and plan.op == "sampled":  # max mode from stored winners
        err = _cpu.sampled_bwd_indices(gc, indices, xc, rc, batch, order, starts, grad_in,
                                       plan.kind, plan.aligned, plan.sampling_ratio,
                                       plan.spatial_scale, plan.channels_last, nt)
        if err == _cpu.ERR_INDICES:
            raise ValueError(SAMPLED_INDICES)
    elif indices is not None:  # RoI Pool from stored winners (validated in _api)
        err = _cpu.pool_bwd_indices(gc, indices, xc, rc, batch, order, starts, grad_in,
                                    plan.channels_last, nt)
    elif plan.op == "pool":
        err = _cpu.pool_bwd(gc, xc, rc, batch, order, starts, grad_in, plan.bins,
                            plan.spatial_scale, plan.channels_last, nt)
    else:
        err = _cpu.sampled_bwd(gc, xc, rc, batch, order, starts, grad_in, plan.kind,
                               plan.aligned, plan.max_mode, plan.sampling_ratio,
                               plan.spatial_scale, plan.channels_last, nt)
    _raise(err)
    return grad_in


# --------------------------------------------------------------------------- backend API
_self = sys.modules[__name__]


def forward(plan: Any, x: np.ndarray, rois: np.ndarray, out: np.ndarray | None,
            return_indices: bool = False) -> Any:
    return shared.forward(_self, plan, x, rois, out, return_indices)


def backward(plan: Any, grad_output: Any, x: np.ndarray, rois: np.ndarray,
             deterministic: bool, indices: np.ndarray | None = None) -> np.ndarray:
    """Always deterministic on the CPU: ``deterministic`` is accepted for API parity."""
    return shared.backward(_self, plan, grad_output, x, rois, deterministic, indices)
