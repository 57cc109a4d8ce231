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

from .openmp import load_extension

try:
    _cpu = load_extension()  # with roicore's passive OpenMP wait policy (see .openmp)
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


def _cache_limit_from_env() -> None:
    """ROICORE_OUTPUT_CACHE_MB: the output cache's limit in MiB (0: off)."""
    import os
    import warnings

    text = os.environ.get("ROICORE_OUTPUT_CACHE_MB")
    if text is None or not text.strip():
        return
    try:
        mib = int(text)
        if mib < 0:
            raise ValueError
    except ValueError:
        warnings.warn(f"ROICORE_OUTPUT_CACHE_MB must be an integer >= 0 (MiB; 0 turns the "
                      f"output cache off); got {text!r}: keeping the default", stacklevel=2)
        return
    _cpu.output_cache_limit(mib << 20)


_cache_limit_from_env()


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A new result array: large ones (>= 4 MiB) in recycled, huge-page-advised
    memory of the output cache (:func:`roicore.set_output_cache_limit`), so a
    call does not page-fault its output in again; NumPy's otherwise."""
    a = _cpu.cached_empty(tuple(shape), dtype)
    return np.empty(shape, dtype) if a is None else a


def zeros(shape: tuple[int, ...], dtype: Any, nthreads: int = 1) -> np.ndarray:
    """:func:`empty`, zero-filled (a recycled block with ``nthreads`` threads)."""
    a = _cpu.cached_empty(tuple(shape), dtype, True, max(1, nthreads))
    return np.zeros(shape, dtype) if a is None else a


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


#: Work (see :func:`work_estimate`) below which one more thread does not pay for
#: itself in a default-threaded call: starting an OpenMP team costs ~10 us on an
#: idle machine but up to a scheduler time slice (milliseconds) when another
#: process holds a core, so a call gets one thread per this much work, at most
#: the default team (about 0.1-1 ms of one core's time; results are identical).
WORK_PER_THREAD = 1 << 19

#: Calls with at least this many output elements always get the default team
#: (their work is at least that many units): no estimate is computed.
_LARGE_OUTPUT = 1 << 21


def work_estimate(plan: Any, rc: np.ndarray, cost: tuple | None) -> float:
    """Units of work of a call, for the default thread count: samples x channels
    for the sampled ops (the kernels' own count: ``cost``, what :func:`check_cost`
    returned), pixels read x channels for RoI Pool (RoI areas clipped to the map),
    plus the output elements."""
    s = plan.shapes
    out_elems = float(s.K * s.C * s.PH * s.PW)
    if plan.op != "pool":
        return out_elems + (float(cost[-1]) if cost is not None else 0.0)
    r = rc.astype(np.float64, copy=False) * plan.spatial_scale
    hs = np.clip(np.abs(r[:, 4] - r[:, 2]) + 1.0, 1.0, s.H)
    ws = np.clip(np.abs(r[:, 3] - r[:, 1]) + 1.0, 1.0, s.W)
    return out_elems + float((hs * ws).sum()) * s.C


def threads(plan: Any, rc: np.ndarray | None = None, cost: tuple | None = None) -> int:
    """The team size of a call: ``num_threads`` (clamped) when given; else the
    default team, reduced to one thread per :data:`WORK_PER_THREAD` of work (no
    reduction without ``rc``)."""
    n = V.check_num_threads(plan.num_threads, _cpu.max_threads())
    if plan.num_threads is None and n > 1 and rc is not None:
        s = plan.shapes
        if s.K * s.C * s.PH * s.PW < _LARGE_OUTPUT:
            n = max(1, min(n, int(work_estimate(plan, rc, cost) // WORK_PER_THREAD)))
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
               res: np.ndarray) -> tuple | None:
    """Raise when a sampled op's cost is above a limit; returns the kernels' cost
    totals (:func:`roicore._cpu.sampled_cost_of`; None for RoI Pool), which the
    default thread count reuses."""
    if plan.op == "pool" or rc.shape[0] == 0:
        return None
    cost = _cpu.sampled_cost_of(xc, rc, batch, res, plan.kind, plan.aligned,
                                plan.sampling_ratio, plan.spatial_scale, plan.channels_last)
    _limits.check_sampling_cost(plan, *cost)
    return cost


def run_forward(plan: Any, xc: np.ndarray, rc: np.ndarray, batch: np.ndarray,
                res: np.ndarray, indices: np.ndarray | None = None,
                cost: tuple | None = None) -> None:
    nt = threads(plan, rc, cost)
    if indices is not None and plan.op == "pool" and not plan.channels_last:
        # RoI Pool winners, a few RoIs: only their windows (cpu/crop_entry.h)
        err = _cpu.pool_fwd_indices_crop(xc, rc, batch, res, indices, plan.bins,
                                         plan.spatial_scale, nt)
        if err != _cpu.CROP_NOT_TAKEN:
            _raise(err)
            return
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
                 indices: np.ndarray | None = None, cost: tuple | None = None) -> np.ndarray:
    """The CPU backward is always deterministic (a gather per image, in RoI order)."""
    s = plan.shapes
    order = np.argsort(batch, kind="stable").astype(np.int64)
    starts = np.searchsorted(batch[order], np.arange(s.N + 1)).astype(np.int64)
    # from stored winners the input may be a zero-memory stand-in: no work estimate
    nt = threads(plan) if indices is not None else threads(plan, rc, cost)
    grad_in = zeros(xc.shape, xc.dtype, nt)
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


# --------------------------------------------------------------------------- backward items
def _list_schedule(rounds: list[np.ndarray], threads: int) -> float:
    """Makespan of the items taken in order by ``threads`` threads, each item by
    the first thread free (OpenMP's dynamic schedule), rounds one after another."""
    import heapq

    span = 0.0
    for part in rounds:
        free = [0.0] * min(threads, max(len(part), 1))
        for c in part:
            heapq.heapreplace(free, free[0] + float(c))
        span += max(free)
    return span


def backward_items(
    op: str, input: Any, rois: Any, output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, *, sampling_ratio: int = -1, aligned: bool = False,
    mode: str = "avg", compat: str | None = None, bins: str = "fast_rcnn",
    layout: str = "NCHW", num_threads: int | None = None, indices: bool = False,
) -> dict[str, Any]:
    """The parallel work items of a CPU backward, as the kernels would cut it.

    Reads only the shapes of ``input`` (it may be a broadcast view) and the
    boxes.  The team is ``num_threads`` as given (default: OpenMP's default), as
    on a machine with that many processors.

    Parameters
    ----------
    op : {"pool", "align", "warp"}
        The operator whose backward is planned.
    input, rois, output_size, spatial_scale, sampling_ratio, aligned, mode, compat, bins, layout
        As in the operator's ``*_backward`` function.
    num_threads : int, optional
        Team size to plan for.
    indices : bool, optional
        RoI Pool from stored winners (``roi_pool_backward(..., indices=...)``).

    Returns
    -------
    dict
        ``path`` ("reference", "nhwc-in-place", "packed" or "indices"), ``isa``,
        ``threads``, ``team`` (threads, or fewer where the memory bound on the
        per-thread tiles caps it), ``bands`` (row bands per image and channel block),
        ``rounds`` (RoI segments run one after another), ``channels`` (per item),
        ``items`` (all rounds), ``largest_share`` (the costliest item's share of
        the total cost, in the kernels' cost model), ``bound`` =
        min(team, items, 1 / largest_share) and ``list_bound`` (total cost
        over the makespan of the items taken in order by the first free thread,
        round after round), ``work_vs_one_thread`` (this plan's total cost over
        the one-thread plan's: what the bands and narrower blocks add) and
        ``speedup_bound`` (the one-thread plan's total over this plan's makespan:
        the speedup the cost model allows over one thread).
    """
    from .. import _api

    if op == "pool":
        plan, _, r = _api._pool_plan(input, rois, output_size, spatial_scale, bins, layout,
                                     num_threads)
    elif op == "align":
        plan, _, r = _api._align_plan(input, rois, output_size, spatial_scale,
                                      sampling_ratio, aligned, mode, layout, num_threads)
    elif op == "warp":
        plan, _, r = _api._warp_plan(input, rois, output_size, spatial_scale, sampling_ratio,
                                     mode, compat, layout, num_threads)
    else:
        raise ValueError(f"`op` must be 'pool', 'align' or 'warp'; got {op!r}")
    if indices and op != "pool":
        raise ValueError("`indices=True` is RoI Pool's backward from stored winners: "
                         "pass op='pool'")
    s = plan.shapes
    # the team as given (validated as num_threads is, but not clamped to this
    # machine's ceiling: the report plans for a machine with that many processors)
    nt = V.check_num_threads(None, _cpu.max_threads()) if num_threads is None else int(
        num_threads)
    T = np.dtype(V.compute_dtype(input.dtype))
    batch = V.batch_indices(r)
    rc = np.require(r, dtype=T, requirements=("C", "A"))
    order = np.argsort(batch, kind="stable").astype(np.int64)
    starts = np.searchsorted(batch[order], np.arange(s.N + 1)).astype(np.int64)
    xv = np.broadcast_to(np.zeros((), T), tuple(input.shape))
    gv = np.broadcast_to(np.zeros((), T), s.out_shape)
    if indices:
        # pool_bwd_indices: one item per (image, block of ch channels), each scattering
        # every bin of its image's RoIs for its channels
        ch = int(_cpu.pool_bwd_indices_block(s.N, s.C, s.H, s.W, plan.channels_last,
                                             T.itemsize, nt))
        nb = -(-s.C // ch)
        per_image = np.bincount(batch, minlength=s.N).astype(np.float64) * s.PH * s.PW
        widths = np.minimum(ch, s.C - ch * np.arange(nb)).astype(np.float64)
        costs = (per_image[:, None] * widths[None, :]).ravel()
        path, isa, bands, nrounds, team = "indices", "scalar", 1, 1, nt
        rounds = [costs]
        total_one = float(costs.sum())
    else:
        def plan_items(team: int) -> tuple:
            if op == "pool":
                return _cpu.pool_bwd_items(gv, xv, rc, batch, order, starts, plan.bins,
                                           plan.spatial_scale, plan.channels_last, team)
            return _cpu.sampled_bwd_items(gv, xv, rc, batch, order, starts, plan.kind,
                                          plan.aligned, plan.max_mode, plan.sampling_ratio,
                                          plan.spatial_scale, plan.channels_last, team)

        path, isa, bands, nrounds, ch, team, costs, rnd = plan_items(nt)
        rounds = [costs[rnd == t] for t in range(nrounds)]
        total_one = float(plan_items(1)[6].sum())
    total = float(costs.sum())
    top = float(costs.max()) if len(costs) else 0.0
    share = top / total if total > 0 else 1.0
    team = min(nt, team)
    span = _list_schedule(rounds, team)
    return {
        "op": op, "path": path, "isa": isa, "threads": nt, "team": team, "bands": bands,
        "rounds": nrounds, "channels": ch, "items": len(costs), "largest_share": share,
        "bound": min(float(team), float(len(costs)),
                     1.0 / share if share > 0 else float(team)),
        "list_bound": total / span if span > 0 else 1.0,
        "work_vs_one_thread": total / total_one if total_one > 0 else 1.0,
        "speedup_bound": total_one / span if span > 0 else 1.0,
    }
