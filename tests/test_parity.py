"""Randomized parity between roicore and the NumPy oracle (tests/support/reference.py).

Every case draws its own input map and a mixed bag of RoIs (inside, partly outside, fully
outside, degenerate x2 < x1, strongly degenerate, sub-pixel, 10x the map, half-integer and
integer coordinates) from a NumPy RNG seeded by the case's parameters, runs roicore in both
layouts and compares forward and backward against the oracle run in the compute dtype
(float16 is compared with the float32 oracle cast to float16).
"""

import numpy as np
import pytest
import reference as ref
from cases import C, H, N, W, case_id, case_rng, make_input, make_rois

import roicore

DTYPES = [np.float32, np.float64, np.float16]
SCALES = [1.0, 0.5, 1.0 / 16]
SAMPLING = [-1, 0, 1, 2]
OUT_SIZES = [(3, 2), (2, 3)]


def to_nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def from_nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def tolerances(dtype):
    if dtype == np.float64:
        return {"rtol": 1e-12, "atol": 1e-13}
    return {"rtol": 1e-5, "atol": 1e-6}


def assert_matches(got, expected_T, dtype, what):
    """Compare roicore's result (in ``dtype``) with the oracle's (in the compute dtype)."""
    assert got.dtype == dtype, (what, got.dtype)
    assert got.shape == expected_T.shape, (what, got.shape, expected_T.shape)
    if dtype == np.float16:
        with np.errstate(over="ignore"):
            expected = expected_T.astype(np.float16).astype(np.float32)
        mag = max(1.0, float(np.abs(expected[np.isfinite(expected)]).max(initial=0.0)))
        np.testing.assert_allclose(
            got.astype(np.float32), expected, rtol=1e-3, atol=1e-3 * mag, err_msg=what
        )
    else:
        np.testing.assert_allclose(got, expected_T, err_msg=what, **tolerances(dtype))


def assert_exact(got, expected_T, dtype, what):
    assert got.dtype == dtype, (what, got.dtype)
    with np.errstate(over="ignore"):
        expected = expected_T.astype(dtype)
    if not np.array_equal(got, expected):
        bad = np.argwhere(got != expected)[:5]
        detail = [(tuple(i), got[tuple(i)], expected[tuple(i)]) for i in bad]
        raise AssertionError(f"{what}: not bit-identical at (index, got, expected) {detail}")


# --------------------------------------------------------------------------- drivers


def run_both_layouts(fwd, bwd, x, rois, out_size, g, **kw):
    """roicore forward/backward in NCHW and NHWC (results returned in NCHW)."""
    f_nchw = fwd(x, rois, out_size, **kw)
    f_nhwc = fwd(to_nhwc(x), rois, out_size, layout="NHWC", num_threads=1, **kw)
    assert f_nhwc.shape == (f_nchw.shape[0], *f_nchw.shape[2:], f_nchw.shape[1])
    # same arithmetic per channel: the layouts must agree bit for bit
    np.testing.assert_array_equal(from_nhwc(f_nhwc), f_nchw, err_msg="NHWC forward != NCHW")
    b_nchw = bwd(g, x, rois, out_size, num_threads=2, **kw)
    b_det = bwd(g, x, rois, out_size, num_threads=2, deterministic=True, **kw)
    b_nhwc = bwd(to_nhwc(g), to_nhwc(x), rois, out_size, layout="NHWC", **kw)
    assert b_nhwc.shape == to_nhwc(x).shape
    return f_nchw, {"NCHW": b_nchw, "NCHW-det": b_det, "NHWC": from_nhwc(b_nhwc)}


def make_grad(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------- RoI Pool


def _pool_check(x, rois, out_size, scale, bins, dtype, rng):
    kw = {"spatial_scale": scale, "bins": bins}
    ref_out, argmax = ref.roi_pool_argmax(x, rois, out_size, **kw)
    g = make_grad(rng, ref_out.shape, dtype)
    got, grads = run_both_layouts(
        roicore.roi_pool, roicore.roi_pool_backward, x, rois, out_size, g, **kw
    )
    assert_exact(got, ref_out, dtype, "roi_pool forward")
    ref_grad = ref.roi_pool_backward(g, x, rois, out_size, **kw)
    # how many (k, ph, pw) winners land on each input pixel
    hits = np.zeros(x.shape, dtype=np.int64)
    b_idx = np.asarray(rois)[:, 0].astype(np.int64)
    for k, c, ph, pw in zip(*np.nonzero(argmax >= 0), strict=True):
        idx = argmax[k, c, ph, pw]
        hits[b_idx[k], c, idx // x.shape[3], idx % x.shape[3]] += 1
    for name, got_grad in grads.items():
        what = f"roi_pool backward ({name})"
        if hits.max() <= 1:
            assert_exact(got_grad, ref_grad, dtype, what)
        else:
            single = hits <= 1
            assert_exact(got_grad[single], ref_grad[single], dtype, what + " single-hit pixels")
            if dtype == np.float16:
                assert_matches(got_grad, ref_grad, dtype, what)
            else:
                rtol = 1e-12 if dtype == np.float64 else 1e-6
                np.testing.assert_allclose(got_grad, ref_grad, rtol=rtol, atol=rtol, err_msg=what)
    return hits


@pytest.mark.parametrize("out_size", OUT_SIZES, ids=case_id)
@pytest.mark.parametrize("scale", SCALES, ids=case_id)
@pytest.mark.parametrize("bins", ["fast_rcnn", "equal"])
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_roi_pool(dtype, bins, scale, out_size):
    rng = case_rng("pool", dtype.__name__, bins, scale, out_size)
    x = make_input(rng, dtype)
    rois = make_rois(rng, scale)
    _pool_check(x, rois, out_size, scale, bins, dtype, rng)


@pytest.mark.parametrize("bins", ["fast_rcnn", "equal"])
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_roi_pool_ties_first_wins(dtype, bins):
    # only 4 distinct values: lots of ties, the first in row-major order must win (checked via
    # the backward, which must put the gradient on exactly the oracle's pixel)
    rng = case_rng("pool-ties", dtype.__name__, bins)
    x = rng.integers(0, 4, size=(N, C, H, W)).astype(dtype)
    rois = make_rois(rng, 1.0, k=10)
    _pool_check(x, rois, (2, 3), 1.0, bins, dtype, rng)
    # one RoI per call: fewer shared winners, so most of the backward is checked bit-exactly
    for r in rois:
        _pool_check(x, r[None], (3, 2), 1.0, bins, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_roi_pool_nan_and_neg_inf(dtype):
    rng = case_rng("pool-nan", dtype.__name__)
    x = make_input(rng, dtype)
    x[0, :, 2:5, 3:7] = np.nan  # NaN never wins
    x[0, 1, 2:5, 3:7] = -np.inf  # all -inf: nothing wins, output stays at finfo(T).min
    x[1, :, ::2, 1::3] = np.nan
    rois = np.array([[0, 3, 2, 6, 4], [0, 2, 1, 8, 6], [1, 0, 0, 10, 8], [1, 1, 1, 4, 7]], float)
    for bins in ("fast_rcnn", "equal"):
        for out_size in OUT_SIZES:
            _pool_check(x, rois, out_size, 1.0, bins, dtype, rng)


# --------------------------------------------------------------------------- RoI Align


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


# --------------------------------------------------------------------------- RoI Warp


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


# --------------------------------------------------------------------------- API forms


OPS = {
    "pool": (
        roicore.roi_pool,
        roicore.roi_pool_backward,
        ref.roi_pool,
        ref.roi_pool_backward,
        {"bins": "fast_rcnn"},
    ),
    "pool_equal": (
        roicore.roi_pool,
        roicore.roi_pool_backward,
        ref.roi_pool,
        ref.roi_pool_backward,
        {"bins": "equal"},
    ),
    "align": (
        roicore.roi_align,
        roicore.roi_align_backward,
        ref.roi_align,
        ref.roi_align_backward,
        {"sampling_ratio": 2},
    ),
    "align_max_aligned": (
        roicore.roi_align,
        roicore.roi_align_backward,
        ref.roi_align,
        ref.roi_align_backward,
        {"mode": "max", "aligned": True},
    ),
    "warp": (roicore.roi_warp, roicore.roi_warp_backward, ref.roi_warp, ref.roi_warp_backward, {}),
    "warp_mnc": (
        roicore.roi_warp,
        roicore.roi_warp_backward,
        ref.roi_warp,
        ref.roi_warp_backward,
        {"compat": "mnc"},
    ),
}


@pytest.mark.parametrize("op", list(OPS))
def test_rois_as_list_and_int_output_size(op):
    fwd, bwd, rfwd, rbwd, kw = OPS[op]
    rng = case_rng("list", op)
    x = make_input(rng, np.float64)
    rois = make_rois(rng, 0.5, k=7)
    rois = rois[np.argsort(rois[:, 0], kind="stable")]
    as_list = [rois[rois[:, 0] == b, 1:] for b in range(N)]
    got_arr = fwd(x, rois, 3, 0.5, **kw)
    got_list = fwd(x, as_list, 3, 0.5, **kw)
    np.testing.assert_array_equal(got_list, got_arr)
    assert got_arr.shape == (7, C, 3, 3)
    assert_matches(got_arr, rfwd(x, rois, (3, 3), 0.5, **kw), np.float64, op)
    g = make_grad(rng, got_arr.shape, np.float64)
    gl = bwd(g, x, as_list, (3, 3), 0.5, **kw)
    assert_matches(gl, rbwd(g, x, rois, 3, 0.5, **kw), np.float64, op + " backward")


@pytest.mark.parametrize("shape", [(1, 2, 1, 7), (1, 2, 6, 1), (2, 1, 1, 1), (1, 1, 2, 2)])
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=case_id)
def test_tiny_maps(op, shape, dtype):
    # 1-pixel-high / 1-pixel-wide maps exercise the last-row / last-column clamp everywhere
    fwd, bwd, rfwd, rbwd, kw = OPS[op]
    rng = case_rng("tiny", op, shape, dtype.__name__)
    x = make_input(rng, dtype, shape)
    rois = make_rois(rng, 1.0, n_batch=shape[0], h=shape[2], w=shape[3], k=12)
    got = fwd(x, rois, (3, 2), **kw)
    exp = rfwd(x, rois, (3, 2), **kw)
    if fwd is roicore.roi_pool:
        assert_exact(got, exp, dtype, op)
    else:
        assert_matches(got, exp, dtype, op)
    g = make_grad(rng, got.shape, dtype)
    assert_matches(
        bwd(g, x, rois, (3, 2), **kw), rbwd(g, x, rois, (3, 2), **kw), dtype, op + " backward"
    )


@pytest.mark.parametrize("op", list(OPS))
def test_backward_deterministic_across_threads(op):
    # deterministic=True: bit-identical gradients whatever the thread count
    fwd, bwd, _, _, kw = OPS[op]
    rng = case_rng("det", op)
    x = make_input(rng, np.float32, (2, 3, 12, 13))
    rois = make_rois(rng, 1.0, h=12, w=13, k=12)
    rois = np.concatenate([rois, rois, rois[:, :] + [0, 0.25, 0.5, 0.25, 0.5]])
    g = make_grad(rng, (len(rois), 3, 3, 2), np.float32)
    ref_grad = bwd(g, x, rois, (3, 2), deterministic=True, num_threads=1, **kw)
    for nt in (2, 3, None):
        got = bwd(g, x, rois, (3, 2), deterministic=True, num_threads=nt, **kw)
        np.testing.assert_array_equal(got, ref_grad, err_msg=f"num_threads={nt}")
    # the forward does not depend on the thread count either
    f1 = fwd(x, rois, (3, 2), num_threads=1, **kw)
    np.testing.assert_array_equal(fwd(x, rois, (3, 2), num_threads=2, **kw), f1)


ODD_SCALE_OPS = {
    "pool": (
        ref.roi_pool,
        ref.roi_pool_backward,
        roicore.roi_pool,
        roicore.roi_pool_backward,
        {"bins": "fast_rcnn"},
    ),
    "pool_equal": (
        ref.roi_pool,
        ref.roi_pool_backward,
        roicore.roi_pool,
        roicore.roi_pool_backward,
        {"bins": "equal"},
    ),
    "align": (
        ref.roi_align,
        ref.roi_align_backward,
        roicore.roi_align,
        roicore.roi_align_backward,
        {"sampling_ratio": -1},
    ),
    "align_aligned_max": (
        ref.roi_align,
        ref.roi_align_backward,
        roicore.roi_align,
        roicore.roi_align_backward,
        {"sampling_ratio": 2, "aligned": True, "mode": "max"},
    ),
    "warp": (
        ref.roi_warp,
        ref.roi_warp_backward,
        roicore.roi_warp,
        roicore.roi_warp_backward,
        {"sampling_ratio": 0},
    ),
    "warp_mnc": (
        ref.roi_warp,
        ref.roi_warp_backward,
        roicore.roi_warp,
        roicore.roi_warp_backward,
        {"compat": "mnc"},
    ),
}


@pytest.mark.parametrize("scale", [1.0 / 3, 0.3, 0.7], ids=case_id)
@pytest.mark.parametrize("op", list(ODD_SCALE_OPS))
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_inexact_spatial_scale(dtype, op, scale):
    # spatial_scale is not representable: it must be rounded to T before use (x1 * T(s))
    rfwd, rbwd, fwd, bwd, kw = ODD_SCALE_OPS[op]
    rng = case_rng("odd-scale", dtype.__name__, op, scale)
    x = make_input(rng, dtype)
    rois = make_rois(rng, scale)
    # coordinates whose product with the scale lands (nearly) on .5 in feature space
    rois[:4, 1:] = (np.floor(rois[:4, 1:] * scale) + 0.5) / scale
    exp = rfwd(x, rois, (2, 3), scale, **kw)
    got = fwd(x, rois, (2, 3), scale, **kw)
    if fwd is roicore.roi_pool:
        assert_exact(got, exp, dtype, op)
    else:
        assert_matches(got, exp, dtype, op)
    g = make_grad(rng, exp.shape, dtype)
    assert_matches(
        bwd(g, x, rois, (2, 3), scale, **kw),
        rbwd(g, x, rois, (2, 3), scale, **kw),
        dtype,
        op + " backward",
    )


MAX_TIE_CASES = [
    (op, sr, aligned)
    for op in ("align", "warp")
    for sr in (-1, 2)
    for aligned in ((False, True) if op == "align" else (False,))
]


@pytest.mark.parametrize(("op", "sampling_ratio", "aligned"), MAX_TIE_CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_max_mode_ties(dtype, op, sampling_ratio, aligned):
    # a map with 3 distinct integer values and integer-ish RoIs: many bilinear samples tie
    # (exactly, or up to an ulp of the same arithmetic); the first in (iy, ix) order must win,
    # which the backward (gradient on the winner's corners only) exposes.
    rng = case_rng("max-ties", dtype.__name__, sampling_ratio, aligned, op)
    x = rng.integers(-1, 2, size=(N, C, H, W)).astype(dtype)
    rois = make_rois(rng, 1.0)
    rois[:6, 1:] = np.round(rois[:6, 1:])
    kw = {"sampling_ratio": sampling_ratio, "mode": "max"}
    if op == "align":
        kw["aligned"] = aligned
        rfwd, rbwd, fwd, bwd = (
            ref.roi_align,
            ref.roi_align_backward,
            roicore.roi_align,
            roicore.roi_align_backward,
        )
    else:
        rfwd, rbwd, fwd, bwd = (
            ref.roi_warp,
            ref.roi_warp_backward,
            roicore.roi_warp,
            roicore.roi_warp_backward,
        )
    exp = rfwd(x, rois, (3, 2), **kw)
    g = make_grad(rng, exp.shape, dtype)
    got, grads = run_both_layouts(fwd, bwd, x, rois, (3, 2), g, **kw)
    assert_matches(got, exp, dtype, "forward")
    exp_grad = rbwd(g, x, rois, (3, 2), **kw)
    for name, got_grad in grads.items():
        assert_matches(got_grad, exp_grad, dtype, f"backward ({name})")
