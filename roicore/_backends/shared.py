"""The forward/backward skeleton shared by the CPU and the CUDA backend.

:func:`forward` and :func:`backward` hold everything around the kernels that
does not depend on where they run, written once:

* ``out=`` checks, and an ``out`` that overlaps ``input`` or ``rois``
  (:func:`call_forward`): the result is computed into a temporary and copied
  into ``out`` at the end (NumPy ufunc semantics);
* empty input (no RoI, no channel, an empty map): zeros, no kernel launch;
* the exact int64 batch indices, taken before the boxes are cast;
* the cast to the compute dtype (float16 is computed in float32) and back;
* the sampling-cost check before any kernel runs.

A backend module (:mod:`.cpu`, :mod:`.cuda`) has ``forward(plan, x, rois, out)``
and ``backward(plan, grad_output, x, rois, deterministic)``, which call these
with the module itself, and provides the parts that differ:

``xp``
    its array namespace (``numpy`` or ``cupy``); ``NAME``: "NumPy" or "CuPy".
``on_device(x)``
    a context manager for the input's device (a no-op on the CPU).
``host_rois(rois, N)``
    whatever the sampling-cost check needs from the host (the GPU's host copy
    of ``rois``; None on the CPU, whose kernels compute the cost themselves).
``check_out_device(out, x)``
    backend-specific checks of ``out`` beyond type, shape, dtype and layout.
``batch_indices(rois)``, ``to_compute(a, T)``, ``writes_into(out, T)``
    batch indices, an operand as the kernels read it (C-contiguous, aligned,
    dtype ``T``), and whether the kernels may write into ``out`` directly.
``check_cost(plan, host, xc, rc, batch, res)``
    raise the limit's ValueError when the sampling cost is above it; returns what
    it computed (or None), handed to the kernel hooks as ``cost`` so that they do
    not compute it again.
``run_forward(plan, xc, rc, batch, res, indices, cost=...)``,
``run_backward(plan, gc, xc, rc, batch, deterministic, indices, cost=...)``
    launch the kernels (the backward returns the input gradient in dtype ``T``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .. import _validation as V


def cast(a: Any, dtype: Any) -> Any:
    """``a`` as ``dtype`` (float32 -> float16 rounds to +-inf past float16's range:
    e.g. the lowest-float32 value of a max bin with no winner becomes -inf; that
    is the intended rounding, not a warning)."""
    with np.errstate(over="ignore"):
        return a.astype(dtype)


def aliases(out: Any, input: Any, rois: Any) -> bool:
    """Does ``out`` share memory with ``input`` or with the caller's ``rois``
    (the (K, 5) array or any per-image entry)?"""
    if out is None:
        return False
    sources = [input] + (list(rois) if isinstance(rois, (list, tuple)) else [rois])
    return any(V.may_share_memory(out, s) for s in sources)


def check_out(be: ModuleType, out: Any, shape: tuple, x: Any) -> None:
    """``out`` of the backend's array type, the result's shape and dtype,
    C-contiguous and writeable (and on ``x``'s device)."""
    if not isinstance(out, be.xp.ndarray):
        raise TypeError(f"`out` must be a {be.xp.__name__}.ndarray for {be.NAME} input; "
                        f"got {type(out)}")
    V.check_out(out, shape, x.dtype)
    be.check_out_device(out, x)


def call_forward(be: ModuleType, plan: Any, x: Any, rois_given: Any, rois: Any,
                 out: Any, return_indices: bool = False) -> Any:
    """The API's entry: ``be.forward``, with ``out`` replaced by a temporary when
    it overlaps an operand.

    ``rois`` is the validated (K, 5) array, ``rois_given`` what the caller
    passed.  The kernels read ``input`` and ``rois`` while they write ``out``, so
    an ``out`` sharing memory with either would be read half-overwritten: as in
    NumPy's ufuncs, such a call computes into a temporary and copies it into
    ``out`` at the end (the result is the same as without aliasing).
    """
    if aliases(out, x, rois_given):
        V.check_out(out, plan.shapes.out_shape, x.dtype)
        if return_indices:
            res, idx = be.forward(plan, x, rois, None, True)
            out[...] = res
            return out, idx
        out[...] = be.forward(plan, x, rois, None)
        return out
    if return_indices:
        return be.forward(plan, x, rois, out, True)
    return be.forward(plan, x, rois, out)


def forward(be: ModuleType, plan: Any, x: Any, rois: Any, out: Any,
            return_indices: bool = False) -> Any:
    """The forward of ``plan`` on backend ``be``: ``out`` or a new array of
    ``x``'s dtype (``out`` must not overlap ``x`` or ``rois``: see
    :func:`call_forward`); with ``return_indices``, the pair (result, winners of
    the result's shape, :func:`index_dtype`: RoI Pool's ``y * W + x`` or -1, the
    max modes' sample ``iy * gw + ix`` of the bin or -1 / -2)."""
    if return_indices:
        idx = be.empty(plan.shapes.out_shape, index_dtype(plan.shapes, plan.op))
        res = _forward(be, plan, x, rois, out, idx)
        if min(plan.shapes.out_shape) == 0 or plan.shapes.H == 0 or plan.shapes.W == 0:
            idx[...] = -1
        return res, idx
    return _forward(be, plan, x, rois, out, None)


def index_dtype(shapes: Any, op: str = "pool") -> np.dtype:
    """dtype of the stored winners: RoI Pool's are int32 when ``H * W`` fits (half
    the memory traffic of int64; torchvision's argmax is int32 too), else int64;
    the sampled ops' (a sample of the bin's grid, at most 2**24) always int32."""
    if op != "pool":
        return np.dtype(np.int32)
    return np.dtype(np.int32 if shapes.H * shapes.W < 2**31 else np.int64)


def _forward(be: ModuleType, plan: Any, x: Any, rois: Any, out: Any, idx: Any) -> Any:
    s = plan.shapes
    T = np.dtype(V.compute_dtype(x.dtype))
    shape = s.out_shape
    with be.on_device(x):
        host = be.host_rois(rois, s.N)
        if out is not None:
            check_out(be, out, shape, x)
        if min(shape) == 0 or s.H == 0 or s.W == 0:
            res = out if out is not None else be.empty(shape, x.dtype)
            res[...] = 0
            return res
        batch = be.batch_indices(rois)
        xc = be.to_compute(x, T)
        rc = be.to_compute(rois, T)
        direct = out is not None and be.writes_into(out, T)
        res = out if direct else be.empty(shape, T)
        cost = be.check_cost(plan, host, xc, rc, batch, res)
        be.run_forward(plan, xc, rc, batch, res, idx, cost=cost)
        if direct:
            return res
        if out is not None:  # float16, or an `out` the kernels cannot write: copy back
            out[...] = res if res.dtype == out.dtype else cast(res, x.dtype)
            return out
        return res if res.dtype == x.dtype else cast(res, x.dtype)


def backward(be: ModuleType, plan: Any, grad_output: Any, x: Any, rois: Any,
             deterministic: bool, indices: Any = None) -> Any:
    """Run the backward of ``plan`` on backend ``be``: the gradient with respect
    to ``x`` (a new array of ``x``'s shape and dtype)."""
    if not isinstance(grad_output, be.xp.ndarray):
        raise TypeError(f"`grad_output` must be a {be.xp.__name__}.ndarray; "
                        f"got {type(grad_output)}")
    s = plan.shapes
    T = np.dtype(V.compute_dtype(x.dtype))
    with be.on_device(x):
        host = be.host_rois(rois, s.N)
        if min(s.out_shape) == 0 or s.H == 0 or s.W == 0 or s.N == 0:
            return be.xp.zeros(x.shape, x.dtype)
        batch = be.batch_indices(rois)
        if indices is None:
            xc = be.to_compute(x, T)
        else:  # from stored winners the kernels read only x's shape: no copy of x
            xc = be.xp.broadcast_to(be.xp.zeros((), T), x.shape)
        rc = be.to_compute(rois, T)
        gc = be.to_compute(grad_output, T)
        cost = be.check_cost(plan, host, xc, rc, batch, gc)
        grad_in = be.run_backward(plan, gc, xc, rc, batch, deterministic, indices, cost=cost)
        return grad_in if grad_in.dtype == x.dtype else cast(grad_in, x.dtype)
