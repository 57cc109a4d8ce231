"""RoI Warp (``roicore.roi_warp``, ``roi_warp_backward``): the shared operator tests
(``RoIOpTester`` / ``SampledOpTester``: oracle parity, gradients, threads, layouts, validation,
max-mode ties) and what only RoI Warp has: the MNC variant, and the identity
roi_warp(x, r, s) == roi_align(x, round(r * s), 1.0, aligned=False).
"""

import numpy as np
import pytest
import reference as ref
from cases import C, case_id, case_rng, make_input, make_rois
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
    to_nhwc,
    tolerances,
)
from roi_op_tester import SampledOpTester

import roicore


class TestRoIWarp(SampledOpTester):
    OP = "warp"


# --------------------------------------------------------------------------- oracle parity


@pytest.mark.parametrize("scale", SCALES, ids=case_id)
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("sampling_ratio", SAMPLING)
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_roi_warp(dtype, sampling_ratio, mode, scale):
    _warp_case(dtype, sampling_ratio, mode, scale, None)


@pytest.mark.parametrize("scale", SCALES, ids=case_id)
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1])
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_roi_warp_mnc(dtype, sampling_ratio, mode, scale):
    _warp_case(dtype, sampling_ratio, mode, scale, "mnc")


def _warp_case(dtype, sampling_ratio, mode, scale, compat):
    rng = case_rng("warp", dtype.__name__, sampling_ratio, mode, scale, compat)
    out_size = OUT_SIZES[rng.integers(2)]
    x = make_input(rng, dtype)
    rois = make_rois(rng, scale)
    kw = {"spatial_scale": scale, "sampling_ratio": sampling_ratio, "mode": mode, "compat": compat}
    ref_out = ref.roi_warp(x, rois, out_size, **kw)
    g = make_grad(rng, ref_out.shape, dtype)
    ref_grad = ref.roi_warp_backward(g, x, rois, out_size, **kw)
    got, grads = run_both_layouts(
        roicore.roi_warp, roicore.roi_warp_backward, x, rois, out_size, g, **kw
    )
    assert_matches(got, ref_out, dtype, "roi_warp forward")
    for name, got_grad in grads.items():
        assert_matches(got_grad, ref_grad, dtype, f"roi_warp backward ({name})")


@pytest.mark.parametrize("scale", SCALES, ids=case_id)
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("sampling_ratio", SAMPLING)
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_roi_warp_is_align_on_quantized_rois(dtype, sampling_ratio, mode, scale):
    # roicore vs roicore: roi_warp(x, r, s) == roi_align(x, round(r * s), 1.0, aligned=False)
    rng = case_rng("warp-identity", dtype.__name__, sampling_ratio, mode, scale)
    x = make_input(rng, dtype)
    rois = make_rois(rng, scale)
    T = ref.compute_dtype(dtype)
    q = ref.quantize_rois(rois, scale, T)
    g = make_grad(rng, (len(rois), C, 2, 3), dtype)
    for layout in ("NCHW", "NHWC"):
        xi, gi = (x, g) if layout == "NCHW" else (to_nhwc(x), to_nhwc(g))
        common = {"mode": mode, "layout": layout}
        a = roicore.roi_warp(xi, rois, (2, 3), scale, sampling_ratio, **common)
        b = roicore.roi_align(xi, q, (2, 3), 1.0, sampling_ratio, False, **common)
        np.testing.assert_array_equal(a, b, err_msg=f"forward {layout}")
        da = roicore.roi_warp_backward(
            gi, xi, rois, (2, 3), scale, sampling_ratio, deterministic=True, **common
        )
        db = roicore.roi_align_backward(
            gi, xi, q, (2, 3), 1.0, sampling_ratio, False, deterministic=True, **common
        )
        if dtype == np.float16:
            assert_matches(da, db.astype(np.float32), dtype, f"backward {layout}")
        else:
            np.testing.assert_allclose(da, db, err_msg=f"backward {layout}", **tolerances(dtype))


def test_roi_warp_mnc_rejects_sampling_ratio_above_one():
    x = make_input(case_rng("mnc-sr"), np.float32)
    rois = np.array([[0, 1, 1, 5, 5]], dtype=np.float64)
    with pytest.raises(ValueError):
        roicore.roi_warp(x, rois, 2, 1.0, 2, compat="mnc")
    with pytest.raises(ValueError):
        roicore.roi_warp_backward(
            np.zeros((1, C, 2, 2), np.float32), x, rois, 2, 1.0, 2, compat="mnc"
        )


# --------------------------------------------------------------------------- validation


def test_compat():
    raises(ValueError, "`compat` must be one of", roicore.roi_warp, X, R, 2, compat="MNC")
    raises(ValueError, "compat='mnc' takes one sample per bin", roicore.roi_warp, X, R, 2,
            1.0, 2, compat="mnc")
