"""roicore's operators registered with the PyTorch dispatcher (``torch.ops.roicore``).

Imported by :mod:`roicore.torch` (never by ``import roicore``).  Every op is a
``torch.library.custom_op`` in the ``roicore::`` namespace:

==========================================  ==========================================
forward                                     backward (gradient w.r.t. the features)
==========================================  ==========================================
``roicore::roi_pool``                       ``roicore::roi_pool_backward``
``roicore::roi_pool_with_indices``          ``roicore::roi_pool_backward_indices``
``roicore::roi_align_with_indices``         ``roicore::roi_align_backward_indices``
``roicore::roi_warp_with_indices``          ``roicore::roi_warp_backward_indices``
``roicore::roi_align``                      ``roicore::roi_align_backward``
``roicore::roi_warp``                       ``roicore::roi_warp_backward``
``roicore::multi_scale_roi_align``          ``roicore::multi_scale_roi_align_backward``
==========================================  ==========================================

Each has a CPU kernel (the compiled OpenMP kernels, on NumPy views of the
tensors' memory: no copy for contiguous float16/32/64 input), a CUDA kernel
(the CuPy backend through DLPack), a fake (meta) kernel giving shapes and
dtypes to FakeTensor / dynamo / ``torch.export``, an autograd formula (the
backward op; differentiating the backward op raises), and an autocast rule
(torchvision's for ``roi_align``: run in float32, return the input's dtype).

``roicore::roi_pool_with_indices`` returns (output, winners) and is what
:func:`roicore.torch.roi_pool` runs when a gradient is needed: its backward
scatters through the stored winners (bit-identical to the recomputing
``roi_pool_backward``) and keeps only the input's shape, not the input.  The
``roi_align`` / ``roi_warp`` ones (``mode="max"``, CPU) run only with
``return_indices=True`` (the recomputing max-mode backward is cheaper).

bfloat16 tensors are computed in float32 and returned as bfloat16 (as float16).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import _api

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --------------------------------------------------------------------------- checks
def check_input(input: Any, name: str = "input") -> None:
    """Rank and dtype of a feature-map tensor (shape-only: works on fake tensors)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor; got {type(input).__name__}")
    if input.dim() != 4:
        raise ValueError(
            f"`{name}` must be a 4-D tensor (N, C, H, W) or (N, H, W, C) with "
            f"layout='NHWC'; got shape {tuple(input.shape)}"
        )
    if input.dtype not in _FLOATS:
        raise TypeError(
            f"`{name}` must have a floating dtype (float16, bfloat16, float32 or float64); "
            f"got {input.dtype}. Convert it first, e.g. {name}.float()."
        )


def check_rois(rois: Tensor) -> None:
    if rois.dim() != 2 or rois.shape[1] != 5:
        hint = (" A (K, 4) box tensor needs the batch index: pass a list with one (K_i, 4) "
                "tensor per image, or prepend a column of image indices."
                if rois.dim() == 2 and rois.shape[1] == 4 else "")
        raise ValueError(
            f"`rois` must have shape (K, 5) with rows [batch_index, x1, y1, x2, y2]; "
            f"got {tuple(rois.shape)}.{hint}"
        )
    if rois.dtype.is_complex or rois.dtype == torch.bool:
        raise TypeError(f"`rois` must hold real numbers (int or float); got dtype {rois.dtype}")


def _out_shape(input: Tensor, rois: Tensor, output_size: list[int], layout: str) -> tuple:
    check_input(input)
    check_rois(rois)
    ph, pw = output_size
    if layout == "NHWC":
        return (rois.shape[0], ph, pw, input.shape[3])
    return (rois.shape[0], input.shape[1], ph, pw)


# --------------------------------------------------------------------------- kernels
def _numpy(t: Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (bfloat16: a float32 copy)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.resolve_conj().resolve_neg().numpy()


def _device_arg(t: Tensor) -> Tensor:
    t = t.detach()
    return t.float() if t.dtype == torch.bfloat16 else t


def _as_dtype(result: Any, dtype: torch.dtype) -> Tensor:
    t = torch.from_numpy(result) if isinstance(result, np.ndarray) else result
    return t if t.dtype == dtype else t.to(dtype)


def _forward(fn: Any, input: Tensor, rois: Tensor, kw: dict) -> Tensor:
    if input.device.type == "cpu":
        return _as_dtype(fn(_numpy(input), _numpy(rois.cpu()), **kw), input.dtype)
    # CUDA: the CuPy backend, reached through DLPack (roicore._interop)
    return _as_dtype(fn(_device_arg(input), _device_arg(rois), **kw), input.dtype)


def _backward(fn: Any, grad: Tensor, input: Tensor, rois: Tensor, kw: dict) -> Tensor:
    if input.device.type == "cpu":
        res = fn(_numpy(grad), _numpy(input), _numpy(rois.cpu()), **kw)
    else:
        res = fn(_device_arg(grad), _device_arg(input), _device_arg(rois), **kw)
    return _as_dtype(res, input.dtype)


def _no_double_backward(name: str) -> Any:
    def backward(ctx: Any, *grads: Any) -> Any:
        raise RuntimeError(
            f"double backward of roicore::{name} is not supported (the backward of its "
            f"backward is not implemented); use a first-order gradient"
        )

    return backward


# --------------------------------------------------------------------------- roi_pool
@torch.library.custom_op("roicore::roi_pool", mutates_args=(), device_types=("cpu", "cuda"))
def roi_pool(input: Tensor, rois: Tensor, output_size: list[int], spatial_scale: float,
             bins: str, layout: str, num_threads: int | None, deterministic: bool) -> Tensor:
    return _forward(_api.roi_pool, input, rois,
                    dict(output_size=tuple(output_size), spatial_scale=spatial_scale, bins=bins,
                         layout=layout, num_threads=num_threads))


@torch.library.custom_op("roicore::roi_pool_backward", mutates_args=(),
                         device_types=("cpu", "cuda"))
def roi_pool_backward(grad_output: Tensor, input: Tensor, rois: Tensor, output_size: list[int],
                      spatial_scale: float, bins: str, layout: str, num_threads: int | None,
                      deterministic: bool) -> Tensor:
    return _backward(_api.roi_pool_backward, grad_output, input, rois,
                     dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                          bins=bins, layout=layout, num_threads=num_threads,
                          deterministic=deterministic))


# ----------------------------------------------------------------- roi_pool, stored winners
# The op autograd uses: the forward also returns each output element's winner
# (y * W + x in its (image, channel) plane, -1 for none; int32 when H * W < 2**31,
# else int64) and the backward scatters through them instead of recomputing the
# maxima from the input, which is therefore not saved (only its shape).
def _index_dtype(H: Any, W: Any) -> torch.dtype:
    return torch.int32 if H * W < 2**31 else torch.int64


def _forward_indices(fn: Any, input: Tensor, rois: Tensor, kw: dict) -> tuple[Tensor, Tensor]:
    kw = dict(kw, return_indices=True)
    if input.device.type == "cpu":
        out, idx = fn(_numpy(input), _numpy(rois.cpu()), **kw)
    else:
        out, idx = fn(_device_arg(input), _device_arg(rois), **kw)
    idx = torch.from_numpy(idx) if isinstance(idx, np.ndarray) else idx
    return _as_dtype(out, input.dtype), idx


def _backward_indices(fn: Any, grad_output: Tensor, indices: Tensor, rois: Tensor,
                      input_shape: list[int], kw: dict) -> Tensor:
    """The backward from stored winners: the input map is not needed, only its
    shape (the gradient has grad_output's dtype)."""
    if grad_output.device.type == "cpu":
        g = _numpy(grad_output)
        # a stand-in of the input's shape and dtype (no memory): the backward
        # from winners reads only its shape
        shape_only = np.broadcast_to(np.zeros((), g.dtype), tuple(input_shape))
        res = fn(g, shape_only, _numpy(rois.cpu()), indices=indices.detach().numpy(), **kw)
    else:
        g = _device_arg(grad_output)
        shape_only = torch.zeros((), dtype=g.dtype, device=g.device).expand(*input_shape)
        res = fn(g, shape_only, _device_arg(rois), indices=indices.detach(), **kw)
    return _as_dtype(res, grad_output.dtype)


@torch.library.custom_op("roicore::roi_pool_with_indices", mutates_args=(),
                         device_types=("cpu", "cuda"))
def roi_pool_with_indices(input: Tensor, rois: Tensor, output_size: list[int],
                          spatial_scale: float, bins: str, layout: str, num_threads: int | None,
                          deterministic: bool) -> tuple[Tensor, Tensor]:
    return _forward_indices(_api.roi_pool, input, rois,
                            dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                                 bins=bins, layout=layout, num_threads=num_threads))


@torch.library.custom_op("roicore::roi_pool_backward_indices", mutates_args=(),
                         device_types=("cpu", "cuda"))
def roi_pool_backward_indices(grad_output: Tensor, indices: Tensor, rois: Tensor,
                              input_shape: list[int], output_size: list[int],
                              spatial_scale: float, bins: str, layout: str,
                              num_threads: int | None, deterministic: bool) -> Tensor:
    return _backward_indices(_api.roi_pool_backward, grad_output, indices, rois, input_shape,
                             dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                                  bins=bins, layout=layout, num_threads=num_threads,
                                  deterministic=deterministic))


# ------------------------------------------------ roi_align / roi_warp (mode="max"), stored winners
# The same for the max modes (CPU backend): the winner is a sample of the bin's
# grid (iy * gw + ix; -1 / -2: no gradient), always int32.
@torch.library.custom_op("roicore::roi_align_with_indices", mutates_args=(),
                         device_types=("cpu", "cuda"))
def roi_align_with_indices(input: Tensor, rois: Tensor, output_size: list[int],
                           spatial_scale: float, sampling_ratio: int, aligned: bool, mode: str,
                           layout: str, num_threads: int | None,
                           deterministic: bool) -> tuple[Tensor, Tensor]:
    return _forward_indices(_api.roi_align, input, rois,
                            dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                                 sampling_ratio=sampling_ratio, aligned=aligned, mode=mode,
                                 layout=layout, num_threads=num_threads))


@torch.library.custom_op("roicore::roi_align_backward_indices", mutates_args=(),
                         device_types=("cpu", "cuda"))
def roi_align_backward_indices(grad_output: Tensor, indices: Tensor, rois: Tensor,
                               input_shape: list[int], output_size: list[int],
                               spatial_scale: float, sampling_ratio: int, aligned: bool,
                               mode: str, layout: str, num_threads: int | None,
                               deterministic: bool) -> Tensor:
    return _backward_indices(_api.roi_align_backward, grad_output, indices, rois, input_shape,
                             dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                                  sampling_ratio=sampling_ratio, aligned=aligned, mode=mode,
                                  layout=layout, num_threads=num_threads,
                                  deterministic=deterministic))


@torch.library.custom_op("roicore::roi_warp_with_indices", mutates_args=(),
                         device_types=("cpu", "cuda"))
def roi_warp_with_indices(input: Tensor, rois: Tensor, output_size: list[int],
                          spatial_scale: float, sampling_ratio: int, mode: str,
                          compat: str | None, layout: str, num_threads: int | None,
                          deterministic: bool) -> tuple[Tensor, Tensor]:
    return _forward_indices(_api.roi_warp, input, rois,
                            dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                                 sampling_ratio=sampling_ratio, mode=mode, compat=compat,
                                 layout=layout, num_threads=num_threads))


@torch.library.custom_op("roicore::roi_warp_backward_indices", mutates_args=(),
                         device_types=("cpu", "cuda"))
def roi_warp_backward_indices(grad_output: Tensor, indices: Tensor, rois: Tensor,
                              input_shape: list[int], output_size: list[int],
                              spatial_scale: float, sampling_ratio: int, mode: str,
                              compat: str | None, layout: str, num_threads: int | None,
                              deterministic: bool) -> Tensor:
    return _backward_indices(_api.roi_warp_backward, grad_output, indices, rois, input_shape,
                             dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                                  sampling_ratio=sampling_ratio, mode=mode, compat=compat,
                                  layout=layout, num_threads=num_threads,
                                  deterministic=deterministic))


# --------------------------------------------------------------------------- roi_align
@torch.library.custom_op("roicore::roi_align", mutates_args=(), device_types=("cpu", "cuda"))
def roi_align(input: Tensor, rois: Tensor, output_size: list[int], spatial_scale: float,
              sampling_ratio: int, aligned: bool, mode: str, layout: str,
              num_threads: int | None, deterministic: bool) -> Tensor:
    return _forward(_api.roi_align, input, rois,
                    dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                         sampling_ratio=sampling_ratio, aligned=aligned, mode=mode,
                         layout=layout, num_threads=num_threads))


@torch.library.custom_op("roicore::roi_align_backward", mutates_args=(),
                         device_types=("cpu", "cuda"))
def roi_align_backward(grad_output: Tensor, input: Tensor, rois: Tensor,
                       output_size: list[int], spatial_scale: float, sampling_ratio: int,
                       aligned: bool, mode: str, layout: str, num_threads: int | None,
                       deterministic: bool) -> Tensor:
    return _backward(_api.roi_align_backward, grad_output, input, rois,
                     dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                          sampling_ratio=sampling_ratio, aligned=aligned, mode=mode,
                          layout=layout, num_threads=num_threads, deterministic=deterministic))


# --------------------------------------------------------------------------- roi_warp
@torch.library.custom_op("roicore::roi_warp", mutates_args=(), device_types=("cpu", "cuda"))
def roi_warp(input: Tensor, rois: Tensor, output_size: list[int], spatial_scale: float,
             sampling_ratio: int, mode: str, compat: str | None, layout: str,
             num_threads: int | None, deterministic: bool) -> Tensor:
    return _forward(_api.roi_warp, input, rois,
                    dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                         sampling_ratio=sampling_ratio, mode=mode, compat=compat,
                         layout=layout, num_threads=num_threads))


@torch.library.custom_op("roicore::roi_warp_backward", mutates_args=(),
                         device_types=("cpu", "cuda"))
def roi_warp_backward(grad_output: Tensor, input: Tensor, rois: Tensor,
                      output_size: list[int], spatial_scale: float, sampling_ratio: int,
                      mode: str, compat: str | None, layout: str, num_threads: int | None,
                      deterministic: bool) -> Tensor:
    return _backward(_api.roi_warp_backward, grad_output, input, rois,
                     dict(output_size=tuple(output_size), spatial_scale=spatial_scale,
                          sampling_ratio=sampling_ratio, mode=mode, compat=compat,
                          layout=layout, num_threads=num_threads, deterministic=deterministic))


# --------------------------------------------------------------------------- fake kernels
def _fake_forward(input: Tensor, rois: Tensor, output_size: list[int], *args: Any) -> Tensor:
    layout = args[-3]
    return input.new_empty(_out_shape(input, rois, output_size, layout))


def _fake_backward(grad_output: Tensor, input: Tensor, rois: Tensor, output_size: list[int],
                   *args: Any) -> Tensor:
    _out_shape(input, rois, output_size, args[-3])
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _fake_forward_indices(input: Tensor, rois: Tensor, output_size: list[int],
                          *args: Any) -> tuple[Tensor, Tensor]:
    layout = args[-3]
    shape = _out_shape(input, rois, output_size, layout)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int32)


@roi_pool_with_indices.register_fake
def _(input: Tensor, rois: Tensor, output_size: list[int], *args: Any) -> tuple[Tensor, Tensor]:
    layout = args[-3]
    shape = _out_shape(input, rois, output_size, layout)
    H, W = (input.shape[1], input.shape[2]) if layout == "NHWC" else input.shape[2:]
    return input.new_empty(shape), input.new_empty(shape, dtype=_index_dtype(H, W))


def _fake_backward_indices(grad_output: Tensor, indices: Tensor, rois: Tensor,
                           input_shape: list[int], *args: Any) -> Tensor:
    check_rois(rois)
    if indices.shape != grad_output.shape or indices.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"`indices` must be an int32/int64 tensor of grad_output's shape "
            f"{tuple(grad_output.shape)}; got {indices.dtype} {tuple(indices.shape)}")
    return grad_output.new_empty(tuple(input_shape))


for _op in (roi_align_with_indices, roi_warp_with_indices):
    _op.register_fake(_fake_forward_indices)
for _op in (roi_pool_backward_indices, roi_align_backward_indices, roi_warp_backward_indices):
    _op.register_fake(_fake_backward_indices)
for _op in (roi_pool, roi_align, roi_warp):
    _op.register_fake(_fake_forward)
for _op in (roi_pool_backward, roi_align_backward, roi_warp_backward):
    _op.register_fake(_fake_backward)


# --------------------------------------------------------------------------- autograd
def _setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    input, rois, *params = inputs
    ctx.params = params
    ctx.save_for_backward(input, rois)


def _make_backward(backward_op: Any) -> Any:
    def backward(ctx: Any, grad_output: Tensor) -> tuple:
        input, rois = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = backward_op(grad_output, input, rois, *ctx.params)
        return (grad_input, None) + (None,) * len(ctx.params)

    return backward


def _idx_setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    input, rois, *params = inputs
    _, indices = output
    ctx.mark_non_differentiable(indices)
    # no zero-filled gradient of the (K, C, PH, PW) winners for the backward
    ctx.set_materialize_grads(False)
    ctx.params = params
    ctx.input_shape = list(input.shape)  # the input itself is not kept
    ctx.save_for_backward(indices, rois)


def _make_idx_backward(backward_op: Any) -> Any:
    def backward(ctx: Any, grad_output: Tensor, grad_indices: Any) -> tuple:
        indices, rois = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0] and grad_output is not None:
            grad_input = backward_op(grad_output, indices, rois, ctx.input_shape, *ctx.params)
        return (grad_input, None) + (None,) * len(ctx.params)

    return backward


roi_pool.register_autograd(_make_backward(roi_pool_backward), setup_context=_setup_context)
roi_align.register_autograd(_make_backward(roi_align_backward), setup_context=_setup_context)
roi_warp.register_autograd(_make_backward(roi_warp_backward), setup_context=_setup_context)
for _fwd, _bwd, _name in (
        (roi_pool_with_indices, roi_pool_backward_indices, "roi_pool_with_indices"),
        (roi_align_with_indices, roi_align_backward_indices, "roi_align_with_indices"),
        (roi_warp_with_indices, roi_warp_backward_indices, "roi_warp_with_indices")):
    _fwd.register_autograd(_make_idx_backward(_bwd), setup_context=_idx_setup_context)
    _bwd.register_autograd(_no_double_backward(_name))
roi_pool_backward.register_autograd(_no_double_backward("roi_pool"))
roi_align_backward.register_autograd(_no_double_backward("roi_align"))
roi_warp_backward.register_autograd(_no_double_backward("roi_warp"))


# --------------------------------------------------------------------------- multi-scale
def fpn_levels(rois: Tensor, k_min: int, k_max: int, canonical_scale: int,
               canonical_level: int, eps: float) -> Tensor:
    """FPN level of every RoI, 0-based: torchvision's ``LevelMapper`` expression,
    operation for operation and in the boxes' dtype, so the levels are identical
    (``floor(k0 + log2(sqrt(area) / s0) + eps)`` clamped to ``[k_min, k_max]``)."""
    area = (rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])
    s = torch.sqrt(area)
    lvl = torch.floor(canonical_level + torch.log2(s / canonical_scale)
                      + torch.tensor(eps, dtype=s.dtype))
    lvl = torch.clamp(lvl, min=k_min, max=k_max)
    return (lvl.to(torch.int64) - k_min).to(torch.int64)


def _level_subsets(rois: Tensor, n_levels: int, k_min: int, k_max: int, canonical_scale: int,
                   canonical_level: int, eps: float) -> tuple[list[tuple[int, Tensor]], bool]:
    """(level, indices of its RoIs) for every non-empty level, from ONE vectorised
    pass over the RoIs (a stable sort by level), and whether every RoI has a level."""
    if n_levels == 1:
        idx = torch.arange(rois.shape[0], device=rois.device)
        return ([(0, idx)] if rois.shape[0] else []), True
    levels = fpn_levels(rois, k_min, k_max, canonical_scale, canonical_level, eps)
    ids = torch.arange(rois.shape[0], device=rois.device)
    # a level outside [0, n_levels) comes only from a NaN area (x2 < x1): torchvision
    # pools such a RoI on no level (its output stays 0), and so does roicore
    valid = (levels >= 0) & (levels < n_levels)
    complete = bool(valid.all())
    if not complete:
        levels, ids = levels[valid], ids[valid]
    order = ids[torch.argsort(levels, stable=True)]
    counts = torch.bincount(levels, minlength=n_levels).tolist()
    out, start = [], 0
    for lvl, n in enumerate(counts):
        if n:
            out.append((lvl, order[start:start + n]))
        start += n
    return out, complete


def _check_features(features: list[Tensor], rois: Tensor, scales: list[float]) -> None:
    if len(features) == 0:
        raise ValueError("`features` must hold at least one feature map")
    if len(scales) != len(features):
        raise ValueError(
            f"`scales` must have one entry per feature map: {len(features)} feature maps, "
            f"{len(scales)} scales"
        )
    for i, f in enumerate(features):
        check_input(f, f"features[{i}]")
        if f.shape[:2] != features[0].shape[:2] or f.dtype != features[0].dtype:
            raise ValueError(
                f"every feature map must have the same batch size, channels and dtype: "
                f"features[{i}] is {tuple(f.shape)} {f.dtype}, features[0] is "
                f"{tuple(features[0].shape)} {features[0].dtype}"
            )
    check_rois(rois)


@torch.library.custom_op("roicore::multi_scale_roi_align", mutates_args=(),
                         device_types=("cpu", "cuda"))
def multi_scale_roi_align(features: list[Tensor], rois: Tensor, scales: list[float],
                          output_size: list[int], sampling_ratio: int, aligned: bool,
                          k_min: int, k_max: int, canonical_scale: int, canonical_level: int,
                          eps: float, num_threads: int | None, deterministic: bool) -> Tensor:
    _check_features(features, rois, scales)
    f0 = features[0]
    ph, pw = output_size
    subsets, complete = _level_subsets(rois, len(features), k_min, k_max, canonical_scale,
                                       canonical_level, eps)
    # every row is written by its level's kernel: zero-fill only if some RoI has no level
    alloc = torch.empty if complete else torch.zeros
    out = alloc((rois.shape[0], f0.shape[1], ph, pw), dtype=f0.dtype, device=f0.device)
    kw = dict(output_size=(ph, pw), sampling_ratio=sampling_ratio, aligned=aligned,
              num_threads=num_threads)
    for lvl, idx in subsets:
        sub = rois.index_select(0, idx)
        y = _forward(_api.roi_align, features[lvl], sub,
                     dict(kw, spatial_scale=scales[lvl]))
        out.index_copy_(0, idx, y)
    return out


@torch.library.custom_op("roicore::multi_scale_roi_align_backward", mutates_args=(),
                         device_types=("cpu", "cuda"))
def multi_scale_roi_align_backward(
        grad_output: Tensor, features: list[Tensor], rois: Tensor, scales: list[float],
        output_size: list[int], sampling_ratio: int, aligned: bool, k_min: int, k_max: int,
        canonical_scale: int, canonical_level: int, eps: float, num_threads: int | None,
        deterministic: bool) -> list[Tensor]:
    _check_features(features, rois, scales)
    grads: list[Tensor | None] = [None] * len(features)
    kw = dict(output_size=tuple(output_size), sampling_ratio=sampling_ratio, aligned=aligned,
              num_threads=num_threads, deterministic=deterministic)
    subsets, _ = _level_subsets(rois, len(features), k_min, k_max, canonical_scale,
                                canonical_level, eps)
    for lvl, idx in subsets:
        grads[lvl] = _backward(_api.roi_align_backward, grad_output.index_select(0, idx),
                               features[lvl], rois.index_select(0, idx),
                               dict(kw, spatial_scale=scales[lvl]))
    return [g if g is not None else torch.zeros_like(f, memory_format=torch.contiguous_format)
            for g, f in zip(grads, features, strict=True)]


@multi_scale_roi_align.register_fake
def _(features: list[Tensor], rois: Tensor, scales: list[float], output_size: list[int],
      *args: Any) -> Tensor:
    _check_features(features, rois, scales)
    ph, pw = output_size
    return features[0].new_empty((rois.shape[0], features[0].shape[1], ph, pw))


@multi_scale_roi_align_backward.register_fake
def _(grad_output: Tensor, features: list[Tensor], rois: Tensor, scales: list[float],
      *args: Any) -> list[Tensor]:
    _check_features(features, rois, scales)
    return [torch.empty_like(f, memory_format=torch.contiguous_format) for f in features]


def _ms_setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    features, rois, *params = inputs
    ctx.params = params
    ctx.n = len(features)
    ctx.save_for_backward(*features, rois)


def _ms_backward(ctx: Any, grad_output: Tensor) -> tuple:
    *features, rois = ctx.saved_tensors
    grads = None
    if ctx.needs_input_grad[0]:
        grads = multi_scale_roi_align_backward(grad_output, features, rois, *ctx.params)
    return (grads, None) + (None,) * len(ctx.params)


multi_scale_roi_align.register_autograd(_ms_backward, setup_context=_ms_setup_context)
multi_scale_roi_align_backward.register_autograd(_no_double_backward("multi_scale_roi_align"))


# --------------------------------------------------------------------------- autocast
# torchvision's rule for roi_align (CPU, CUDA and XPU autocast): cast to float32, run
# with autocast off, return the input's own dtype.  roicore applies it to every op.
_AUTOCAST_KEYS = ("AutocastCPU", "AutocastCUDA")
_autocast_lib = torch.library.Library("roicore", "IMPL")


def _excluded() -> Any:
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)
    keys = keys | torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCUDA)
    return torch._C._ExcludeDispatchKeyGuard(keys)


def _f32(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _autocast_single(op: Any) -> Any:
    def kernel(input: Tensor, rois: Tensor, *args: Any) -> Tensor:
        with _excluded():
            return op(_f32(input), _f32(rois), *args).to(input.dtype)

    return kernel


def _autocast_with_indices(op: Any) -> Any:
    def kernel(input: Tensor, rois: Tensor, *args: Any) -> tuple[Tensor, Tensor]:
        with _excluded():
            out, indices = op(_f32(input), _f32(rois), *args)
            return out.to(input.dtype), indices

    return kernel


def _autocast_multi(features: list[Tensor], rois: Tensor, *args: Any) -> Tensor:
    with _excluded():
        return multi_scale_roi_align([_f32(f) for f in features], _f32(rois),
                                     *args).to(features[0].dtype)


for _key in _AUTOCAST_KEYS:
    for _name, _op in (("roi_pool", roi_pool), ("roi_align", roi_align),
                       ("roi_warp", roi_warp)):
        _autocast_lib.impl(_name, _autocast_single(_op), _key)
    for _name, _op in (("roi_pool_with_indices", roi_pool_with_indices),
                       ("roi_align_with_indices", roi_align_with_indices),
                       ("roi_warp_with_indices", roi_warp_with_indices)):
        _autocast_lib.impl(_name, _autocast_with_indices(_op), _key)
    _autocast_lib.impl("multi_scale_roi_align", _autocast_multi, _key)

del _op, _key, _name, _fwd, _bwd
