"""RoI Align (``roicore.roi_align``, ``roi_align_backward``): the shared operator tests
(``RoIOpTester`` / ``SampledOpTester``: oracle parity, gradients, threads, layouts, validation,
max-mode ties) and what only RoI Align has: ``aligned`` x ``sampling_ratio`` x ``mode`` x scale
against the oracle, the adaptive-grid limit.
"""

import numpy as np
import pytest
import reference as ref
from cases import case_id, case_rng, make_input, make_rois
from optable import (
    DTYPES,
    OUT_SIZES,
    SAMPLING,
    SCALES,
    R,
    X,
    assert_matches,
    make_grad,
    raises,
    run_both_layouts,
)
from roi_op_tester import SampledOpTester

import roicore


class TestRoIAlign(SampledOpTester):
    OP = "align"


# --------------------------------------------------------------------------- oracle parity


@pytest.mark.parametrize("scale", SCALES, ids=case_id)
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("sampling_ratio", SAMPLING)
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_roi_align(dtype, aligned, sampling_ratio, mode, scale):
    rng = case_rng("align", dtype.__name__, aligned, sampling_ratio, mode, scale)
    out_size = OUT_SIZES[rng.integers(2)]
    x = make_input(rng, dtype)
    rois = make_rois(rng, scale)
    kw = {
        "spatial_scale": scale,
        "sampling_ratio": sampling_ratio,
        "aligned": aligned,
        "mode": mode,
    }
    ref_out = ref.roi_align(x, rois, out_size, **kw)
    g = make_grad(rng, ref_out.shape, dtype)
    ref_grad = ref.roi_align_backward(g, x, rois, out_size, **kw)
    got, grads = run_both_layouts(
        roicore.roi_align, roicore.roi_align_backward, x, rois, out_size, g, **kw
    )
    assert_matches(got, ref_out, dtype, "roi_align forward")
    for name, got_grad in grads.items():
        assert_matches(got_grad, ref_grad, dtype, f"roi_align backward ({name})")


# --------------------------------------------------------------------------- validation


def test_sampling_ratio_numpy_int_ok():
    a = roicore.roi_align(X, R, 2, 1.0, np.int64(2))
    np.testing.assert_array_equal(a, roicore.roi_align(X, R, 2, 1.0, 2))


def test_aligned_type():
    raises(TypeError, "`aligned` must be a bool", roicore.roi_align, X, R, 2, 1.0, 2, "yes")


def test_huge_adaptive_grid_is_refused_not_hung():
    r = np.array([[0, 0, 0, 1e9, 1e9]], np.float64)
    raises(ValueError, "samples per bin with the adaptive grid", roicore.roi_align,
            X.astype(np.float64), r, 2)
    # with a fixed sampling ratio the same box is fine (samples are outside the map)
    out = roicore.roi_align(X, r, 2, 1.0, 2)
    assert np.isfinite(out).all()
