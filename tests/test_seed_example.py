"""The contract: the RoI-pooling explainer's worked example, through the public API.

Map and expected output are transcribed from ../shared/seeds/001_8a1a2298fcb889bb.txt, not
computed by roicore.
"""

from __future__ import annotations

import numpy as np
import pytest

import roicore

MAP = [
    [0.88, 0.44, 0.14, 0.16, 0.37, 0.77, 0.96, 0.27],
    [0.19, 0.45, 0.57, 0.16, 0.63, 0.29, 0.71, 0.70],
    [0.66, 0.26, 0.82, 0.64, 0.54, 0.73, 0.59, 0.26],
    [0.85, 0.34, 0.76, 0.84, 0.29, 0.75, 0.62, 0.25],
    [0.32, 0.74, 0.21, 0.39, 0.34, 0.03, 0.33, 0.48],
    [0.20, 0.14, 0.16, 0.13, 0.73, 0.65, 0.96, 0.32],
    [0.19, 0.69, 0.09, 0.86, 0.88, 0.07, 0.01, 0.48],
    [0.83, 0.24, 0.97, 0.04, 0.24, 0.35, 0.50, 0.91],
]
EXPECTED = [[0.85, 0.84], [0.97, 0.96]]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_seed_worked_example(dtype, layout):
    x = np.array(MAP, dtype)[None, None]
    if layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    out = roicore.roi_pool(x, np.array([[0, 0, 3, 7, 8]]), 2, bins="equal", layout=layout)
    got = out[0, :, :, 0] if layout == "NHWC" else out[0, 0]
    np.testing.assert_array_equal(got, np.array(EXPECTED, dtype))
    # the same through the per-image list form
    out2 = roicore.roi_pool(x, [np.array([[0.0, 3.0, 7.0, 8.0]])], 2, bins="equal",
                            layout=layout)
    np.testing.assert_array_equal(out2, out)


def test_seed_example_gradient_goes_to_the_four_maxima():
    x = np.array(MAP, np.float64)[None, None]
    g = roicore.roi_pool_backward(np.ones((1, 1, 2, 2)), x, np.array([[0, 0, 3, 7, 8]]), 2,
                                  bins="equal")
    ys, xs = np.nonzero(g[0, 0])
    # 0.85 at (3, 0), 0.84 at (3, 3), 0.97 at (7, 2), 0.96 at (5, 6)
    assert sorted(zip(ys.tolist(), xs.tolist(), strict=True)) == [(3, 0), (3, 3), (5, 6), (7, 2)]
    assert g.sum() == 4
