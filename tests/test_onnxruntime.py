"""A second, independent reference: onnxruntime's RoiAlign (opset 16).

With coordinate_transformation_mode="half_pixel" it computes torchvision's
roi_align(aligned=True) forward; "output_half_pixel" is aligned=False.
Its max mode differs by design (max of the weighted corner terms; see README),
so only avg is compared.
"""

from __future__ import annotations

import numpy as np
import pytest

import roicore

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (test extra)")
onnx = pytest.importorskip("onnx", reason="onnx not installed (test extra)")
from onnx import TensorProto, helper  # noqa: E402


def _ort_roi_align(x, rois, ph, pw, scale, sr, aligned):
    node = helper.make_node(
        "RoiAlign", ["X", "rois", "batch_indices"], ["Y"], mode="avg",
        output_height=ph, output_width=pw, sampling_ratio=max(sr, 0),
        spatial_scale=scale,
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("rois", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("batch_indices", TensorProto.INT64, None)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x, "rois": np.ascontiguousarray(rois[:, 1:]),
                           "batch_indices": rois[:, 0].astype(np.int64)})[0]


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sr", [-1, 1, 2, 3])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.0625])
def test_matches_onnxruntime(aligned, sr, scale):
    rng = np.random.default_rng(int(scale * 100) + sr + 10 * aligned)
    x = rng.standard_normal((2, 5, 13, 17)).astype(np.float32)
    K = 40
    xy = rng.uniform(-4 / scale, 20 / scale, (K, 2))
    wh = rng.uniform(-2 / scale, 16 / scale, (K, 2))
    r = np.concatenate([rng.integers(0, 2, (K, 1)), xy, xy + wh], 1).astype(np.float32)
    ph, pw = 3, 4
    expect = _ort_roi_align(x, r, ph, pw, scale, sr, aligned)
    got = roicore.roi_align(x, r, (ph, pw), scale, sr, aligned)
    # Same formula and operation order: bit-identical.
    np.testing.assert_array_equal(got, expect)
