"""CuPy arrays -> the CUDA kernels in ``src/cuda/roicore_kernels.cu``.

Imported lazily by :func:`roicore._api._backend`, only for CuPy input, so
``import roicore`` never imports CuPy.  Same interface as
:mod:`roicore._backends.cpu`: ``xp``, ``check_rois``, ``forward``,
``backward``; ``forward`` and ``backward`` run the skeleton shared with the
CPU backend (:mod:`roicore._backends.shared`: ``out=``, empty input, casts)
with this module's hooks (the RoI host copy, the kernel launches).

* The kernels are compiled by NVRTC through ``cupy.RawModule`` at first use,
  once per device, dtype and layout (``cupy.memoize(for_each_device=True)``;
  CuPy also keeps the binaries in its on-disk kernel cache).  The source has
  ``roi_common.h`` pasted in and its hash among the options
  (:mod:`roicore._backends.cuda_source`), so an edited header never reuses a stale
  binary.
* Launches go to CuPy's current stream of the input's device, inside
  ``with x.device:``; the hot path has no device-to-host copy except the RoI
  check below.
* The RoI check (batch index, finite coordinates, sampling-cost limits) needs
  ``rois`` on the host: one device-to-host copy per call, which synchronises
  the stream.  ``roicore.gpu_checks(False)`` or
  ``ROICORE_GPU_SKIP_ROI_CHECK=1`` skips it; the kernels then give 0 and no
  gradient for invalid RoIs (they bounds-check the batch index themselves).
* float16 is computed in float32 (cast in and out here), as on the CPU.
* Backward: by default one thread per output element scatters with
  ``atomicAdd`` (fast; float rounding depends on the order of the atomics).
  ``deterministic=True`` runs a gather instead: one thread per input
  element walks the RoIs of its image in a fixed order (CSR built on the
  device by two small kernels, no sort) and adds the contributions of the bins that touch it in the
  CPU backend's order, without float atomics; max modes first store each
  bin's winner (an int64 per output element).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import cupy
import numpy as np

from .. import _cpu
from .. import _validation as V
from . import cuda_source as S
from . import limits as _limits
from . import shared
from .gpu_checks import checks_enabled, sampling_cost

xp = cupy


def empty(shape: tuple[int, ...], dtype: Any) -> Any:
    """A new result array (CuPy's memory pool recycles device memory)."""
    return cupy.empty(shape, dtype)


_BLOCK = 256
_MAX_BLOCKS = 1 << 18  # grid-stride loops cover the rest
# roi_common.h RC_CSR_THREADS: rc_roi_csr needs exactly this block size
_CSR_THREADS = _cpu.CSR_BLOCK
_MAX_CSR_BLOCKS = 65535

_tls = threading.local()



# --------------------------------------------------------------------------- compilation
@cupy.memoize(for_each_device=True)
def _module(T: str, channels_last: bool) -> Any:
    names = [S.name(k, T, channels_last) for k in S.LAYOUT_KERNELS]
    names += [S.name(k, T) for k in S.DTYPE_KERNELS]
    code = S.source()
    return cupy.RawModule(code=code, options=S.options(code), name_expressions=names)


@cupy.memoize(for_each_device=True)
def _kernel(kernel: str, T: str, channels_last: bool, layout_param: bool) -> Any:
    expr = S.name(kernel, T, channels_last if layout_param else None)
    return _module(T, channels_last).get_function(expr)


def _launch(kernel: str, T: str, channels_last: bool, total: int, args: tuple,
            layout_param: bool = True) -> None:
    """Launch a grid-stride kernel over ``total`` items on the current stream."""
    if total <= 0:
        return
    blocks = min((total + _BLOCK - 1) // _BLOCK, _MAX_BLOCKS)
    _kernel(kernel, T, channels_last, layout_param)((blocks,), (_BLOCK,), args)


# --------------------------------------------------------------------------- RoI check
def check_rois(rois: Any, N: int) -> None:
    """Validate batch indices and coordinates on a host copy of ``rois``.

    The copy synchronises the current stream; it is skipped under
    ``roicore.gpu_checks(False)`` or with ``ROICORE_GPU_SKIP_ROI_CHECK=1``.
    The host copy is kept for the sampling-grid check of the same call.
    """
    _tls.last = None
    if not checks_enabled():
        return
    host = cupy.asnumpy(rois)  # device -> host: synchronises the stream
    V.check_rois_values(np.asarray(host, dtype=np.float64), N)
    _tls.last = (rois, host)


def host_rois(rois: Any, N: int) -> np.ndarray | None:
    """The host copy made by :func:`check_rois` for this call (None when the
    checks are off); validates afresh if ``check_rois`` was not called."""
    last = getattr(_tls, "last", None)
    _tls.last = None
    if last is not None and last[0] is rois:
        return last[1]
    if not checks_enabled():
        return None
    host = cupy.asnumpy(rois)
    V.check_rois_values(np.asarray(host, dtype=np.float64), N)
    return host


def check_cost(plan: Any, host: np.ndarray | None, xc: Any, rc: Any, batch: Any,
               res: Any) -> None:
    """Raise the CPU backend's ValueError when the call is above a sampling
    limit (:mod:`roicore._backends.limits`), from the host copy (roi_common.h's
    arithmetic replayed in NumPy, :func:`roicore._backends.gpu_checks.sampling_cost`).
    With the check off the kernels give 0 for a RoI above the per-bin or
    per-side limit instead."""
    if host is None or plan.op != "sampled":
        return
    T = np.dtype(xc.dtype)
    _limits.check_sampling_cost(plan, *sampling_cost(plan, np.ascontiguousarray(host, dtype=T)))


def batch_indices(rois: Any) -> Any:
    """Exact int64 batch indices from the caller's ``rois`` (K, 5), before the
    cast to the compute dtype (float32 holds integers exactly only up to
    2**24).  Invalid values (checks off) are bounds-checked by the kernels."""
    with np.errstate(invalid="ignore"):  # NaN with the checks off: the kernels drop it
        return V.batch_indices(rois, cupy)


# --------------------------------------------------------------------------- helpers
def _dims(s: V.Shapes) -> tuple:
    return tuple(np.int64(v) for v in (s.N, s.C, s.H, s.W, s.K, s.PH, s.PW))


def _sampled_flags(plan: Any) -> tuple:
    # sampling_ratio <= 0 means adaptive in the kernels as on the CPU; clamp to
    # 0 so any negative Python int fits the kernel's int.
    return (np.int32(plan.kind), np.int32(bool(plan.aligned)), np.int32(bool(plan.max_mode)),
            np.int32(max(int(plan.sampling_ratio), 0)))


def to_compute(a: Any, T: np.dtype) -> Any:
    return cupy.ascontiguousarray(cupy.asarray(a, dtype=T))


def check_out_device(out: Any, x: Any) -> None:
    if out.device != x.device:
        raise ValueError(f"`out` is on {out.device} but `input` is on {x.device}")


def writes_into(out: Any, T: np.dtype) -> bool:
    return out.dtype == T


def on_device(x: Any) -> Any:
    return x.device


def _csr(rc: Any, batch: Any, s: V.Shapes, T: str, channels_last: bool) -> tuple[Any, Any]:
    """RoIs grouped by image in increasing index order (the CPU backend's stable
    argsort), on the device with no sort and no host round trip:
    ``order`` (K,) and ``starts`` (N+1,); invalid batch indices are left out."""
    count = cupy.zeros(s.N, cupy.int64)
    _launch("rc_roi_count", T, channels_last, s.K,
            (rc, batch, np.int64(s.K), np.int64(s.N), count), layout_param=False)
    starts = cupy.empty(s.N + 1, cupy.int64)
    order = cupy.empty(max(s.K, 1), cupy.int64)  # only [starts[0], starts[N]) is written
    _kernel("rc_roi_csr", T, channels_last, False)(
        (min(s.N, _MAX_CSR_BLOCKS),), (_CSR_THREADS,),
        (rc, batch, np.int64(s.K), np.int64(s.N), count, starts, order))
    return order, starts


# --------------------------------------------------------------------------- kernels
def run_forward(plan: Any, xc: Any, rc: Any, batch: Any, res: Any,
                indices: Any = None, cost: Any = None) -> None:
    s = plan.shapes
    T = np.dtype(xc.dtype)
    ct, cl = S.ctype(T), plan.channels_last
    total = s.K * s.C * s.PH * s.PW
    scale = T.type(plan.spatial_scale)
    if indices is not None:  # RoI Pool, winners stored (one pass, int64 on the device)
        arg = indices if indices.dtype == cupy.int64 else cupy.empty(s.out_shape, cupy.int64)
        _launch("rc_pool_fwd_arg", ct, cl, total,
                (xc, rc, batch, res, arg, *_dims(s), scale, np.int32(plan.bins)))
        if arg is not indices:
            indices[...] = arg
    elif plan.op == "pool":
        _launch("rc_pool_fwd", ct, cl, total,
                (xc, rc, batch, res, *_dims(s), scale, np.int32(plan.bins)))
    else:
        _launch("rc_sampled_fwd", ct, cl, total,
                (xc, rc, batch, res, *_dims(s), scale, *_sampled_flags(plan)))


def _check_winners(winner: Any, s: V.Shapes) -> None:
    """Stored winners in [-1, H*W) (a device reduction and one host sync; skipped
    with the RoI check off: the kernels then ignore values out of range)."""
    if not checks_enabled() or winner.size == 0:
        return
    bad = cupy.logical_or(winner < -1, winner >= s.H * s.W).any()
    if bool(bad):
        raise ValueError("`indices` must hold -1 or winner positions y * W + x in [0, H*W) "
                         "of the input map (from roi_pool(..., return_indices=True) on this "
                         "input and these rois)")


def _backward_from_winners(plan: Any, gc: Any, xc: Any, rc: Any, batch: Any,
                           deterministic: bool, indices: Any) -> Any:
    """RoI Pool backward from stored winners: the deterministic gather reads
    them instead of recomputing (rc_pool_arg), the default scatters them with
    atomicAdd; ``xc`` gives only the shape."""
    s = plan.shapes
    T = np.dtype(gc.dtype)
    ct, cl = S.ctype(T), plan.channels_last
    dims = _dims(s)
    winner = cupy.ascontiguousarray(cupy.asarray(indices, dtype=cupy.int64))
    _check_winners(winner, s)
    if deterministic:
        order, starts = _csr(rc, batch, s, ct, cl)
        grad_in = cupy.empty(xc.shape, T)
        _launch("rc_pool_bwd_gather", ct, cl, s.N * s.C * s.H * s.W,
                (gc, winner, rc, batch, order, starts, grad_in, *dims,
                 T.type(plan.spatial_scale), np.int32(plan.bins)))
    else:
        grad_in = cupy.zeros(xc.shape, T)
        _launch("rc_pool_bwd_atomic_idx", ct, cl, s.K * s.C * s.PH * s.PW,
                (gc, winner, batch, grad_in, *dims))
    return grad_in


def run_backward(plan: Any, gc: Any, xc: Any, rc: Any, batch: Any, deterministic: bool,
                 indices: Any = None, cost: Any = None) -> Any:
    if indices is not None:
        return _backward_from_winners(plan, gc, xc, rc, batch, deterministic, indices)
    s = plan.shapes
    T = np.dtype(xc.dtype)
    ct, cl = S.ctype(T), plan.channels_last
    dims = _dims(s)
    scale = T.type(plan.spatial_scale)
    n_out = s.K * s.C * s.PH * s.PW
    n_in = s.N * s.C * s.H * s.W
    pool = plan.op == "pool"
    extra = (np.int32(plan.bins),) if pool else _sampled_flags(plan)
    if deterministic:
        order, starts = _csr(rc, batch, s, ct, cl)
        grad_in = cupy.empty(xc.shape, T)  # the gather writes every element
        if pool or plan.max_mode:
            winner = cupy.empty(s.out_shape, cupy.int64)
            _launch("rc_pool_arg" if pool else "rc_sampled_arg", ct, cl, n_out,
                    (xc, rc, batch, winner, *dims, scale, *extra))
        else:
            winner = cupy.empty((1,), cupy.int64)  # not read in avg mode
        _launch("rc_pool_bwd_gather" if pool else "rc_sampled_bwd_gather", ct, cl, n_in,
                (gc, winner, rc, batch, order, starts, grad_in, *dims, scale, *extra))
    else:
        grad_in = cupy.zeros(xc.shape, T)
        _launch("rc_pool_bwd_atomic" if pool else "rc_sampled_bwd_atomic", ct, cl, n_out,
                (gc, xc, rc, batch, grad_in, *dims, scale, *extra))
    return grad_in


# --------------------------------------------------------------------------- backend API
NAME = "CuPy"
_self = sys.modules[__name__]


def forward(plan: Any, x: Any, rois: Any, out: Any, return_indices: bool = False) -> Any:
    return shared.forward(_self, plan, x, rois, out, return_indices)


def backward(plan: Any, grad_output: Any, x: Any, rois: Any, deterministic: bool,
             indices: Any = None) -> Any:
    """Atomic scatter by default; ``deterministic=True``: atomic-free gather,
    bit-identical run to run (and summed in the CPU backend's order)."""
    return shared.backward(_self, plan, grad_output, x, rois, deterministic, indices)
