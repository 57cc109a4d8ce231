"""ONNX translations of roicore's registered ops for ``torch.onnx.export(..., dynamo=True)``.

Imported lazily (it needs ``onnxscript``).  :func:`roicore.torch.onnx_translation_table`
returns the table to pass as ``custom_translation_table``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

try:
    import onnxscript
    from onnxscript import opset18 as op
except ImportError as _exc:  # pragma: no cover - exercised only without onnxscript
    raise ImportError(
        "exporting roicore ops to ONNX needs onnxscript: pip install onnxscript "
        "(or pip install 'roicore[onnx]')"
    ) from _exc

import torch


def _no_onnx(what: str, why: str) -> NotImplementedError:
    return NotImplementedError(
        f"{what} has no ONNX equivalent ({why}); only roicore::roi_align with mode='avg' "
        f"and roicore::multi_scale_roi_align (ONNX RoiAlign), and roicore::roi_pool with "
        f"bins='fast_rcnn' (ONNX MaxRoiPool) can be exported, in NCHW layout"
    )


def _check_layout(name: str, layout: str) -> None:
    if layout != "NCHW":
        raise _no_onnx(f"roicore::{name} with layout={layout!r}",
                       "ONNX RoiAlign/MaxRoiPool take NCHW feature maps; permute the input")


def roi_align(input, rois, output_size: Sequence[int], spatial_scale: float,
              sampling_ratio: int, aligned: bool, mode: str, layout: str,
              num_threads: int | None = None, deterministic: bool = False):
    """roicore::roi_align -> ONNX RoiAlign (opset 16+ attribute
    ``coordinate_transformation_mode``; batch indices split out as int64)."""
    if mode != "avg":
        raise _no_onnx(f"roicore::roi_align with mode={mode!r}",
                       "ONNX RoiAlign's mode='max' takes the max of the bilinearly weighted "
                       "corners, not mmcv's max over samples")
    _check_layout("roi_align", layout)
    batch = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=onnxscript.INT64.dtype)
    # ONNX RoiAlign takes boxes of the feature dtype (roicore's list-form rois are float64
    # so that batch indices stay exact; the indices are taken above, before this cast)
    boxes = op.CastLike(op.Slice(rois, [1], [5], [1]), input)
    ph, pw = output_size
    return _roi_align_node(input, boxes, batch, ph, pw, spatial_scale, sampling_ratio, aligned)


def roi_pool(input, rois, output_size: Sequence[int], spatial_scale: float, bins: str,
             layout: str, num_threads: int | None = None, deterministic: bool = False):
    """roicore::roi_pool (bins='fast_rcnn') -> ONNX MaxRoiPool (same bins, rows
    ``[batch_index, x1, y1, x2, y2]``)."""
    if bins != "fast_rcnn":
        raise _no_onnx(f"roicore::roi_pool with bins={bins!r}",
                       "ONNX MaxRoiPool uses the Fast R-CNN bins")
    _check_layout("roi_pool", layout)
    ph, pw = output_size
    return op.MaxRoiPool(input, op.CastLike(rois, input), pooled_shape=[ph, pw],
                         spatial_scale=float(spatial_scale))


def roi_warp(*args, **kwargs):
    """roicore::roi_warp: no ONNX operator quantizes the box and then samples it."""
    raise _no_onnx("roicore::roi_warp", "no ONNX operator rounds the box and then samples it")


def _roi_align_node(input, boxes, batch, ph: int, pw: int, scale: float, sampling_ratio: int,
                    aligned: bool):
    return op.RoiAlign(
        input, boxes, batch,
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg", output_height=ph, output_width=pw,
        sampling_ratio=max(int(sampling_ratio), 0), spatial_scale=float(scale),
    )


def multi_scale_roi_align(features, rois, scales: Sequence[float], output_size: Sequence[int],
                          sampling_ratio: int, aligned: bool, k_min: int, k_max: int,
                          canonical_scale: int, canonical_level: int, eps: float,
                          num_threads: int | None = None, deterministic: bool = False):
    """roicore::multi_scale_roi_align -> the FPN level of each RoI (the same float
    expression, with ``log2(v)`` as ``Log(v) / Log(2)``), one ``RoiAlign`` per level
    over all RoIs, and a ``Where`` per level keeping each RoI's own level."""
    ph, pw = output_size
    batch = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=onnxscript.INT64.dtype)
    # boxes in the feature dtype, as torchvision's level rule and ONNX RoiAlign see them
    rois = op.CastLike(rois, features[0])
    boxes = op.Slice(rois, [1], [5], [1])
    if len(features) == 1:
        return _roi_align_node(features[0], boxes, batch, ph, pw, scales[0], sampling_ratio,
                               aligned)
    x1 = op.Slice(rois, [1], [2], [1])
    y1 = op.Slice(rois, [2], [3], [1])
    x2 = op.Slice(rois, [3], [4], [1])
    y2 = op.Slice(rois, [4], [5], [1])
    s = op.Sqrt(op.Mul(op.Sub(x2, x1), op.Sub(y2, y1)))  # (K, 1)
    s0 = op.CastLike(op.Constant(value_float=float(canonical_scale)), s)
    ln2 = op.CastLike(op.Constant(value_float=0.6931471805599453), s)
    log2 = op.Div(op.Log(op.Div(s, s0)), ln2)
    k0 = op.CastLike(op.Constant(value_float=float(canonical_level)), s)
    e = op.CastLike(op.Constant(value_float=float(eps)), s)
    lvl = op.Floor(op.Add(op.Add(k0, log2), e))
    lvl = op.Clip(lvl, op.CastLike(op.Constant(value_float=float(k_min)), s),
                  op.CastLike(op.Constant(value_float=float(k_max)), s))
    lvl = op.Sub(op.Cast(lvl, to=onnxscript.INT64.dtype), op.Constant(value_int=int(k_min)))
    lvl = op.Unsqueeze(lvl, [2, 3])  # (K, 1, 1, 1)
    result = None
    for i, feat in enumerate(features):
        y = _roi_align_node(feat, boxes, batch, ph, pw, scales[i], sampling_ratio, aligned)
        keep = op.Equal(lvl, op.Constant(value_int=i))
        y = op.Where(keep, y, op.CastLike(op.Constant(value_float=0.0), y))
        result = y if result is None else op.Add(result, y)
    return result


def translation_table() -> dict[Callable, Callable]:
    ops = torch.ops.roicore
    return {
        ops.roi_align.default: roi_align,
        ops.roi_pool.default: roi_pool,
        ops.roi_warp.default: roi_warp,
        ops.multi_scale_roi_align.default: multi_scale_roi_align,
    }
