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
        f"(ONNX RoiAlign) and roicore::roi_pool with bins='fast_rcnn' (ONNX MaxRoiPool) "
        f"can be exported, in NCHW layout"
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
    boxes = op.Slice(rois, [1], [5], [1])
    ph, pw = output_size
    return op.RoiAlign(
        input, boxes, batch,
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg", output_height=ph, output_width=pw,
        sampling_ratio=max(int(sampling_ratio), 0), spatial_scale=float(spatial_scale),
    )


def roi_pool(input, rois, output_size: Sequence[int], spatial_scale: float, bins: str,
             layout: str, num_threads: int | None = None, deterministic: bool = False):
    """roicore::roi_pool (bins='fast_rcnn') -> ONNX MaxRoiPool (same bins, rows
    ``[batch_index, x1, y1, x2, y2]``)."""
    if bins != "fast_rcnn":
        raise _no_onnx(f"roicore::roi_pool with bins={bins!r}",
                       "ONNX MaxRoiPool uses the Fast R-CNN bins")
    _check_layout("roi_pool", layout)
    ph, pw = output_size
    return op.MaxRoiPool(input, rois, pooled_shape=[ph, pw], spatial_scale=float(spatial_scale))


def roi_warp(*args, **kwargs):
    """roicore::roi_warp: no ONNX operator quantizes the box and then samples it."""
    raise _no_onnx("roicore::roi_warp", "no ONNX operator rounds the box and then samples it")


def multi_scale_roi_align(*args, **kwargs):
    """roicore::multi_scale_roi_align: not translated."""
    raise _no_onnx("roicore::multi_scale_roi_align",
                   "the per-RoI FPN level choice has no single ONNX operator")


def translation_table() -> dict[Callable, Callable]:
    ops = torch.ops.roicore
    return {
        ops.roi_align.default: roi_align,
        ops.roi_pool.default: roi_pool,
        ops.roi_warp.default: roi_warp,
        ops.multi_scale_roi_align.default: multi_scale_roi_align,
    }
