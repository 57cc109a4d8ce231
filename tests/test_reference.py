"""Self-checks of the NumPy oracle (tests/support/reference.py) against hand-computed values.

Every expected number here is worked out by hand in the comments (not produced by the
oracle), so these tests pin the oracle to the written semantics before it is used to judge
roicore.  Nothing here imports roicore.
"""

import numpy as np
import pytest
from reference import (
    c_round,
    compute_dtype,
    quantize_rois,
    roi_align,
    roi_align_backward,
    roi_pool,
    roi_pool_argmax,
    roi_pool_backward,
    roi_warp,
    roi_warp_backward,
)

SEED_MAP = np.array(
    [
        [0.88, 0.44, 0.14, 0.16, 0.37, 0.77, 0.96, 0.27],
        [0.19, 0.45, 0.57, 0.16, 0.63, 0.29, 0.71, 0.70],
        [0.66, 0.26, 0.82, 0.64, 0.54, 0.73, 0.59, 0.26],
        [0.85, 0.34, 0.76, 0.84, 0.29, 0.75, 0.62, 0.25],
        [0.32, 0.74, 0.21, 0.39, 0.34, 0.03, 0.33, 0.48],
        [0.20, 0.14, 0.16, 0.13, 0.73, 0.65, 0.96, 0.32],
        [0.19, 0.69, 0.09, 0.86, 0.88, 0.07, 0.01, 0.48],
        [0.83, 0.24, 0.97, 0.04, 0.24, 0.35, 0.50, 0.91],
    ]
)

# 2x2 map used for the bilinear hand cases: v[y, x] = 1 + x + 2*y, so bilinear
# interpolation inside the map is exactly the plane f(y, x) = 1 + x + 2*y.
V22 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])


def roi(*coords):
    return np.array([coords], dtype=np.float64)


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("v", "expected"),
    [
        (0.5, 1),
        (-0.5, -1),
        (1.5, 2),
        (2.5, 3),  # np.round gives 2 (half to even): must not be used
        (-2.5, -3),
        (0.4, 0),
        (-0.4, 0),
        (1.7, 2),
        (-1.2, -1),
        (np.float32(0.49999997), 0),  # floor(v + 0.5) in float32 would give 1
        (0.49999999999999994, 0),  # floor(v + 0.5) in float64 would give 1
        (np.float32(-0.49999997), 0),
        (np.float32(8388609.0), 8388609),  # 2**23 + 1: already an integer
        (7.0, 7),
    ],
)
def test_c_round(v, expected):
    got = c_round(v)
    assert isinstance(got, int)
    assert got == expected


def test_compute_dtype():
    assert compute_dtype(np.float16) is np.float32
    assert compute_dtype(np.float32) is np.float32
    assert compute_dtype(np.float64) is np.float64
    with pytest.raises(TypeError):
        compute_dtype(np.int32)


def test_quantize_rois_is_c_round_in_T():
    # x1*s = 0.25*2 = 0.5 -> 1 ; 1.25*2 = 2.5 -> 3 ; -0.75*2 = -1.5 -> -2 ; 3.2*2 = 6.4 -> 6
    q = quantize_rois(roi(1, 0.25, 1.25, -0.75, 3.2), 2.0, np.float32)
    assert q.dtype == np.float32
    np.testing.assert_array_equal(q, [[1, 1, 3, -2, 6]])
    # list-of-arrays form: batch index comes from the list position
    q = quantize_rois([np.zeros((0, 4)), np.array([[0.5, 0.4, 2.5, 1.5]])], 1.0, np.float64)
    np.testing.assert_array_equal(q, [[1, 1, 0, 3, 2]])


# --------------------------------------------------------------------------- RoI Pool


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_seed_example_equal_bins(dtype):
    # x in [0, 7) -> size 7 -> column bins [0,3) and [3,7); y in [3, 8) -> size 5 ->
    # row bins [3,5) and [5,8).  Maxima read off the table: 0.85, 0.84, 0.97, 0.96.
    x = SEED_MAP.astype(dtype)[None, None]
    out = roi_pool(x, roi(0, 0, 3, 7, 8), 2, bins="equal")
    T = compute_dtype(dtype)
    assert out.dtype == T
    expected = np.array([[0.85, 0.84], [0.97, 0.96]]).astype(dtype).astype(T)
    np.testing.assert_array_equal(out[0, 0], expected)


def test_seed_example_fast_rcnn_bins():
    # fast_rcnn: rw = 8, rh = 6, bw = 4, bh = 3 -> columns [0,4) [4,8), rows [3,6) [6,9)->[6,8)
    # rows 3-5 x cols 0-3: max 0.85; rows 3-5 x cols 4-7: 0.96
    # rows 6-7 x cols 0-3: 0.97;      rows 6-7 x cols 4-7: 0.91
    out = roi_pool(SEED_MAP[None, None], roi(0, 0, 3, 7, 8), 2)
    np.testing.assert_array_equal(out[0, 0], [[0.85, 0.96], [0.97, 0.91]])


ARANGE45 = np.arange(20, dtype=np.float64).reshape(1, 1, 4, 5)  # v[y, x] = 5*y + x


@pytest.mark.parametrize(("rois", "scale"), [((0, 0, 0, 4, 3), 1.0), ((0, 0, 0, 8, 6), 0.5)])
def test_roi_pool_fast_rcnn_hand(rois, scale):
    # xs=0, xe=4 -> rw=5, bw=2.5: cols [floor(0), ceil(2.5)) = [0,3), [floor(2.5), ceil(5)) = [2,5)
    # ys=0, ye=3 -> rh=4, bh=2:   rows [0,2), [2,4).  Map increases to the bottom right so the
    # winners are the bottom-right pixels: (1,2)=7, (1,4)=9, (3,2)=17, (3,4)=19.
    out, am = roi_pool_argmax(ARANGE45, roi(*rois), 2, scale)
    np.testing.assert_array_equal(out[0, 0], [[7, 9], [17, 19]])
    np.testing.assert_array_equal(am[0, 0], [[7, 9], [17, 19]])
    g = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    gi = roi_pool_backward(g, ARANGE45, roi(*rois), 2, scale)
    expected = np.zeros((4, 5))
    expected[1, 2], expected[1, 4], expected[3, 2], expected[3, 4] = 1, 2, 3, 4
    np.testing.assert_array_equal(gi[0, 0], expected)


def test_roi_pool_fast_rcnn_overlapping_bins_accumulate():
    # rw = 5, PW = 2 -> column bins [0,3) and [2,5) share column 2, where the maximum is.
    x = np.zeros((1, 1, 2, 5))
    x[0, 0, 0, 2] = 5.0
    out = roi_pool(x, roi(0, 0, 0, 4, 0), (1, 2))
    np.testing.assert_array_equal(out[0, 0], [[5.0, 5.0]])
    gi = roi_pool_backward(np.array([[[[0.25, 0.5]]]]), x, roi(0, 0, 0, 4, 0), (1, 2))
    expected = np.zeros((2, 5))
    expected[0, 2] = 0.75
    np.testing.assert_array_equal(gi[0, 0], expected)


@pytest.mark.parametrize("bins", ["fast_rcnn", "equal"])
def test_roi_pool_ties_first_wins(bins):
    # constant map: every pixel ties, the first in row-major order of each bin wins.
    x = np.ones((1, 1, 4, 5))
    out, am = roi_pool_argmax(x, roi(0, 1, 1, 3, 3), 1, bins=bins)
    assert out[0, 0, 0, 0] == 1.0
    assert am[0, 0, 0, 0] == 1 * 5 + 1  # pixel (y=1, x=1), the bin's top-left
    gi = roi_pool_backward(np.full((1, 1, 1, 1), 2.0), x, roi(0, 1, 1, 3, 3), 1, bins=bins)
    expected = np.zeros((4, 5))
    expected[1, 1] = 2.0
    np.testing.assert_array_equal(gi[0, 0], expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_pool_nan_and_neg_inf(dtype):
    x = np.array([[[[np.nan, 1.0, np.nan], [np.nan, np.nan, np.nan], [-np.inf, -np.inf, 0.0]]]])
    x = x.astype(dtype)
    # bins (output 3x1 on the full map): each row is one bin of 3 pixels.
    out, am = roi_pool_argmax(x, roi(0, 0, 0, 2, 2), (3, 1))
    lowest = np.finfo(dtype).min
    np.testing.assert_array_equal(out[0, 0, :, 0], np.array([1.0, lowest, 0.0], dtype=dtype))
    np.testing.assert_array_equal(am[0, 0, :, 0], [1, -1, 8])
    # a bin of only -inf: nothing wins either
    out, am = roi_pool_argmax(x, roi(0, 0, 2, 1, 2), (1, 1))
    assert out[0, 0, 0, 0] == lowest and am[0, 0, 0, 0] == -1
    gi = roi_pool_backward(np.ones((1, 1, 1, 1)), x, roi(0, 0, 2, 1, 2), 1)
    assert not gi.any()


@pytest.mark.parametrize("bins", ["fast_rcnn", "equal"])
def test_roi_pool_empty_bins(bins):
    out = roi_pool(ARANGE45 + 1, roi(0, 10, 10, 12, 12), (2, 3), bins=bins)
    assert out.shape == (1, 1, 2, 3) and not out.any()
    out = roi_pool(ARANGE45 + 1, roi(0, -9, -9, -6, -7), (2, 3), bins=bins)
    assert not out.any()
    gi = roi_pool_backward(np.ones((1, 1, 2, 3)), ARANGE45, roi(0, 10, 10, 12, 12), (2, 3))
    assert not gi.any()


def test_roi_pool_equal_bins_hand():
    # x: xs=0, xe=3 -> size 3, PW=2: [0 + 0, 0 + max(1, 1)) = [0,1); [1, max(3, 2)) = [1,3)
    # y: ys=ye=1 -> size max(0,1)=1, PH=2: bin0 [1+0, 1+max(0,1)) = [1,2);
    #    bin1 lo = 1*1//2 = 0, hi = max(2*1//2, 0+1) = 1 -> [1,2) again.
    out = roi_pool(ARANGE45, roi(0, 0, 1, 3, 1), 2, bins="equal")
    # row 1: values 5..9 ; cols [0,1) -> 5 ; cols [1,3) -> 7
    np.testing.assert_array_equal(out[0, 0], [[5, 7], [5, 7]])
    # degenerate x2 < x1: size 1 -> both column bins are the single column xs=3
    out = roi_pool(ARANGE45, roi(0, 3, 0, 1, 3), (1, 2), bins="equal")
    # rows [0,3), column 3 -> max is 5*2 + 3 = 13
    np.testing.assert_array_equal(out[0, 0], [[13, 13]])


def test_roi_pool_batch_index_and_list_form():
    x = np.concatenate([ARANGE45, 100 + ARANGE45], axis=0)
    a = roi_pool(x, np.array([[1, 0, 0, 4, 3], [0, 0, 0, 4, 3]], dtype=float), 1)
    np.testing.assert_array_equal(a[:, 0, 0, 0], [119, 19])
    b = roi_pool(x, [np.array([[0, 0, 4, 3]]), np.array([[0, 0, 4, 3], [0, 0, 1, 1]])], 1)
    np.testing.assert_array_equal(b[:, 0, 0, 0], [19, 119, 106])


# --------------------------------------------------------------------------- RoI Align


def test_roi_align_center_sample():
    # roi [0,0]-[1,1], one bin, one sample at (0.5, 0.5): f = 1 + 0.5 + 1 = 2.5
    out = roi_align(V22, roi(0, 0, 0, 1, 1), 1, sampling_ratio=1)
    np.testing.assert_array_equal(out, [[[[2.5]]]])
    # sampling_ratio=-1 -> gh = gw = ceil(1/1) = 1: same single sample
    np.testing.assert_array_equal(roi_align(V22, roi(0, 0, 0, 1, 1), 1), [[[[2.5]]]])


def test_roi_align_last_row_clamp():
    # sample at y = 0.5 + 0.5 = 1.0 (>= H-1 -> row 1 only), x = 0.25 + 0.5 = 0.75:
    # 3*0.25 + 4*0.75 = 3.75
    out = roi_align(V22, roi(0, 0.25, 0.5, 1.25, 1.5), 1, sampling_ratio=1)
    np.testing.assert_array_equal(out, [[[[3.75]]]])


def test_roi_align_four_samples_avg_and_max():
    # sampling_ratio=2 -> samples at y, x in {0.25, 0.75}:
    # f = 1.75, 2.25, 2.75, 3.25 (in iy-outer/ix-inner order); mean 2.5, max 3.25.
    r = roi(0, 0, 0, 1, 1)
    np.testing.assert_array_equal(roi_align(V22, r, 1, sampling_ratio=2), [[[[2.5]]]])
    np.testing.assert_array_equal(roi_align(V22, r, 1, sampling_ratio=2, mode="max"), [[[[3.25]]]])
    # avg backward: sample (0.25,0.25) has weights (.5625,.1875,.1875,.0625); by symmetry
    # every corner receives (.5625+.1875+.1875+.0625)/4 = 0.25.
    g = np.ones((1, 1, 1, 1))
    gi = roi_align_backward(g, V22, r, 1, sampling_ratio=2)
    np.testing.assert_array_equal(gi, np.full((1, 1, 2, 2), 0.25))
    # max backward: winner (0.75, 0.75): w = (.25*.25, .25*.75, .75*.25, .75*.75), no /count
    gi = roi_align_backward(3 * g, V22, r, 1, sampling_ratio=2, mode="max")
    np.testing.assert_array_equal(gi[0, 0], 3 * np.array([[0.0625, 0.1875], [0.1875, 0.5625]]))


def test_roi_align_aligned_offset():
    # aligned: coordinates shifted by -0.5 -> roi [0.5,1.5] becomes [0,1]: sample at 0.5 -> 2.5
    out = roi_align(V22, roi(0, 0.5, 0.5, 1.5, 1.5), 1, sampling_ratio=1, aligned=True)
    np.testing.assert_array_equal(out, [[[[2.5]]]])
    # not aligned: roi [0.5,1.5], sample at 1.0 -> corner (1,1) = 4
    out = roi_align(V22, roi(0, 0.5, 0.5, 1.5, 1.5), 1, sampling_ratio=1)
    np.testing.assert_array_equal(out, [[[[4.0]]]])


def test_roi_align_min_size_one_when_not_aligned():
    # zero-size roi at (0,0): not aligned -> rw = rh = 1, sample at (0.5, 0.5) = 2.5
    out = roi_align(V22, roi(0, 0, 0, 0, 0), 1, sampling_ratio=1)
    np.testing.assert_array_equal(out, [[[[2.5]]]])
    # aligned, zero size: adaptive grid = ceil(0) = 0 samples -> output 0 in both modes
    for mode in ("avg", "max"):
        out = roi_align(V22, roi(0, 1, 1, 1, 1), 1, aligned=True, mode=mode)
        np.testing.assert_array_equal(out, [[[[0.0]]]])
        gi = roi_align_backward(
            np.ones((1, 1, 1, 1)), V22, roi(0, 1, 1, 1, 1), 1, aligned=True, mode=mode
        )
        assert not gi.any()
    # aligned, zero size, sampling_ratio=1: bw = 0, sample at 1 - 0.5 = 0.5 -> 2.5 (count 1)
    out = roi_align(V22, roi(0, 1, 1, 1, 1), 1, sampling_ratio=1, aligned=True)
    np.testing.assert_array_equal(out, [[[[2.5]]]])


def test_roi_align_clamp_between_minus_one_and_zero():
    # x = -1 + 0.5 = -0.5 (in (-1, 0)) is clamped to 0; y = 0.5 -> f(0.5, 0) = 1 + 1 = 2
    out = roi_align(V22, roi(0, -1, 0, 0, 1), 1, sampling_ratio=1)
    np.testing.assert_array_equal(out, [[[[2.0]]]])
    # x = W = 2 exactly is still in range (clamped to last column): y=0.5 -> (2 + 4)/2 = 3
    out = roi_align(V22, roi(0, 1.5, 0, 2.5, 1), 1, sampling_ratio=1)
    np.testing.assert_array_equal(out, [[[[3.0]]]])


def test_roi_align_out_of_range_samples():
    # one sample at (-2.5, -2.5): out of range -> avg 0, max 0 (the out-of-range 0 competes)
    for mode in ("avg", "max"):
        out = roi_align(V22, roi(0, -3, -3, -2, -2), 1, sampling_ratio=1, mode=mode)
        np.testing.assert_array_equal(out, [[[[0.0]]]])
    # negative map, roi x in [-2, 1] (bw = 3), y in [0, 1], sampling_ratio 2:
    # sample x = -2 + 0.75 = -1.25 (out, value 0) and -2 + 2.25 = 0.25; y = 0.25, 0.75.
    # in-range values: -(1 + 0.25 + 0.5) = -1.75 and -(1 + 0.25 + 1.5) = -2.75.
    neg = -V22
    r = roi(0, -2, 0, 1, 1)
    np.testing.assert_array_equal(roi_align(neg, r, 1, sampling_ratio=2), [[[[-1.125]]]])
    np.testing.assert_array_equal(roi_align(neg, r, 1, sampling_ratio=2, mode="max"), [[[[0]]]])
    # max winner is the first out-of-range sample -> no gradient at all
    gi = roi_align_backward(np.ones((1, 1, 1, 1)), neg, r, 1, sampling_ratio=2, mode="max")
    assert not gi.any()
    # avg backward: in-range samples (y,x)=(.25,.25),(.75,.25), each /4:
    # (.25,.25): w = .5625,.1875,.1875,.0625 ; (.75,.25): w = .1875,.0625,.5625,.1875
    gi = roi_align_backward(np.ones((1, 1, 1, 1)), neg, r, 1, sampling_ratio=2)
    np.testing.assert_array_equal(gi[0, 0], np.array([[0.75, 0.25], [0.75, 0.25]]) / 4)


def test_roi_align_bins_and_spatial_scale():
    # 1x1x3x4 map v = 4*y + x (bilinear is exact: f = 4y + x); roi in image coords at s=0.5
    # [0,0,4,2]*0.5 -> [0,0,2,1]: rw=2, rh=1; output (1,2) -> bw=1, bh=1, one sample per bin
    # at y=0.5, x=0.5 and 1.5 -> f = 2.5 and 3.5
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4)
    out = roi_align(x, roi(0, 0, 0, 4, 2), (1, 2), spatial_scale=0.5)
    np.testing.assert_array_equal(out, [[[[2.5, 3.5]]]])
    # output (2,1) on roi [0,0,1,2] (rw=1, rh=2): samples y=0.5,1.5, x=0.5 -> 2.5, 6.5
    out = roi_align(x, roi(0, 0, 0, 1, 2), (2, 1))
    np.testing.assert_array_equal(out, [[[[2.5], [6.5]]]])


def test_roi_align_computes_in_float32():
    # roi coordinate 1/3 is cast to float32 first: sample x = float32(1/3) + 0.5 (in float32)
    x = np.array([[[[0.0, 1.0]]]], dtype=np.float32)  # f = x on a 1x2 map
    out = roi_align(x, roi(0, 1 / 3, 0, 1 / 3 + 1, 0), 1, sampling_ratio=1)
    expected = np.float32(np.float32(1 / 3) + np.float32(0.5))
    assert out.dtype == np.float32
    assert out[0, 0, 0, 0] == expected
    out16 = roi_align(x.astype(np.float16), roi(0, 1 / 3, 0, 1 / 3 + 1, 0), 1, sampling_ratio=1)
    assert out16.dtype == np.float32 and out16[0, 0, 0, 0] == expected


# --------------------------------------------------------------------------- RoI Warp


def test_roi_warp_quantizes_then_aligns():
    # [0.4, 0.4, 1.4, 1.4] rounds to [0, 0, 1, 1] -> one centre sample 2.5
    out = roi_warp(V22, roi(0, 0.4, 0.4, 1.4, 1.4), 1, sampling_ratio=1)
    np.testing.assert_array_equal(out, [[[[2.5]]]])
    # [0.5, 0.5, 1.5, 1.5] rounds (half away) to [1, 1, 2, 2] -> sample at 1.5 -> clamped: 4
    out = roi_warp(V22, roi(0, 0.5, 0.5, 1.5, 1.5), 1, sampling_ratio=1)
    np.testing.assert_array_equal(out, [[[[4.0]]]])
    # max mode over the 4 samples of [0,0,1,1] (values 1.75..3.25)
    out = roi_warp(V22, roi(0, 0.2, -0.3, 0.9, 1.1), 1, sampling_ratio=2, mode="max")
    np.testing.assert_array_equal(out, [[[[3.25]]]])


def test_roi_warp_mnc_hand():
    # roi [0,0,1,1], output 2: bw = bh = 1/2, samples at (ih, iw) in {0, .5}^2:
    # f = 1, 1.5, 2, 2.5
    r = roi(0, 0, 0, 1, 1)
    out = roi_warp(V22, r, 2, compat="mnc")
    np.testing.assert_array_equal(out[0, 0], [[1.0, 1.5], [2.0, 2.5]])
    # mode does not matter
    np.testing.assert_array_equal(roi_warp(V22, r, 2, compat="mnc", mode="max"), out)
    # backward: g * w to the four corners of each sample
    g = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    gi = roi_warp_backward(g, V22, r, 2, compat="mnc")
    # (0,0): all to (0,0); (0,.5): 5 to (0,0), 5 to (0,1); (.5,0): 50/50 to (0,0),(1,0);
    # (.5,.5): 250 to each corner.
    np.testing.assert_array_equal(gi[0, 0], [[1 + 5 + 50 + 250, 5 + 250], [50 + 250, 250]])


def test_roi_warp_mnc_range():
    # roi y [1, 2] on H=2, output (2,1): bh = 0.5, ih = 1 and 1.5 (= H - 0.5, still inside):
    # rows clamp to the last row, x = 0 -> value 3 for both
    out = roi_warp(V22, roi(0, 0, 1, 0, 2), (2, 1), compat="mnc")
    np.testing.assert_array_equal(out[0, 0, :, 0], [3.0, 3.0])
    # ys = 2 -> ih = 2 > 1.5 -> 0 ; ys = -1 -> ih = -1 < -0.5 -> 0
    out = roi_warp(V22, roi(0, 0, 2, 0, 3), (1, 1), compat="mnc")
    np.testing.assert_array_equal(out, [[[[0.0]]]])
    out = roi_warp(V22, roi(0, 0, -1, 0, 0), (1, 1), compat="mnc")
    np.testing.assert_array_equal(out, [[[[0.0]]]])
    # ih = -0.5 is still in range (and clamps to 0): y in [-1, 0], PH = 2 gives bh = 0.5,
    # ih = -1 (out -> 0) and ih = -0.5 (in -> row 0, x = 0 -> 1)
    out = roi_warp(V22, roi(0, 0, -1, 0, 0), (2, 1), compat="mnc")
    np.testing.assert_array_equal(out[0, 0, :, 0], [0.0, 1.0])
    # degenerate x2 < x1: bw = max(xe - xs, 0) / PW = 0 -> every column samples x = xs = 1
    out = roi_warp(V22, roi(0, 1, 0, 0, 1), (1, 2), compat="mnc")
    np.testing.assert_array_equal(out[0, 0], [[2.0, 2.0]])
    # spatial scale: [1,1,3,3]*0.5 = [.5,.5,1.5,1.5] -> rounds to [1,1,2,2]; bw = 1/1, ih=iw=1
    out = roi_warp(V22, roi(0, 1, 1, 3, 3), 1, spatial_scale=0.5, compat="mnc")
    np.testing.assert_array_equal(out, [[[[4.0]]]])


def test_roi_warp_mnc_rejects_sampling_ratio():
    with pytest.raises(ValueError):
        roi_warp(V22, roi(0, 0, 0, 1, 1), 1, sampling_ratio=2, compat="mnc")


# --------------------------------------------------------------------------- self-consistency


def _distinct_input(rng, shape):
    n = int(np.prod(shape))
    return (rng.permutation(n).astype(np.float64) / n - 0.5).reshape(shape)


OPS = [
    ("pool_fast_rcnn", roi_pool, roi_pool_backward, {"bins": "fast_rcnn"}),
    ("pool_equal", roi_pool, roi_pool_backward, {"bins": "equal"}),
    ("align_avg", roi_align, roi_align_backward, {"mode": "avg"}),
    ("align_avg_aligned", roi_align, roi_align_backward, {"mode": "avg", "aligned": True}),
    ("align_max", roi_align, roi_align_backward, {"mode": "max"}),
    ("warp_avg", roi_warp, roi_warp_backward, {"mode": "avg"}),
    ("warp_max", roi_warp, roi_warp_backward, {"mode": "max"}),
    ("warp_mnc", roi_warp, roi_warp_backward, {"compat": "mnc"}),
]


@pytest.mark.parametrize(("name", "fwd", "bwd", "kw"), OPS, ids=[o[0] for o in OPS])
def test_oracle_backward_is_adjoint_of_forward(name, fwd, bwd, kw):
    # All ops are positively homogeneous and piecewise linear in the input, with backward
    # scattering exactly the weights used by forward: <bwd(g), x> == <g, fwd(x)>.
    rng = np.random.default_rng(1)
    x = _distinct_input(rng, (2, 2, 5, 7))
    rois = np.array(
        [
            [0, 0.3, 0.6, 4.7, 3.2],
            [1, -2.0, -1.0, 3.0, 2.5],
            [1, 5.5, 3.5, 9.0, 8.0],
            [0, 2.0, 1.0, 2.2, 1.1],
            [1, 4.0, 3.0, 1.0, 0.5],
        ]
    )
    out = fwd(x, rois, (3, 2), **kw)
    g = rng.standard_normal(out.shape)
    gi = bwd(g, x, rois, (3, 2), **kw)
    assert gi.shape == x.shape
    assert np.abs(gi).sum() > 0
    np.testing.assert_allclose(np.vdot(gi, x), np.vdot(g, out), rtol=1e-12)


@pytest.mark.parametrize(("name", "fwd", "bwd", "kw"), OPS, ids=[o[0] for o in OPS])
def test_oracle_backward_matches_finite_differences(name, fwd, bwd, kw):
    rng = np.random.default_rng(2)
    x = _distinct_input(rng, (1, 2, 4, 5))
    rois = np.array([[0, 0.3, 0.6, 3.7, 2.2], [0, -1.0, -0.5, 2.0, 4.5]])
    g = rng.standard_normal((2, 2, 2, 3))
    gi = bwd(g, x, rois, (2, 3), **kw)
    eps = 1e-6
    checked = 0
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fp = np.vdot(g, fwd(xp, rois, (2, 3), **kw))
        f0 = np.vdot(g, fwd(x, rois, (2, 3), **kw))
        fm = np.vdot(g, fwd(xm, rois, (2, 3), **kw))
        if abs((fp - f0) - (f0 - fm)) > 1e-9:  # a kink (argmax change) is crossed
            continue
        checked += 1
        assert abs((fp - fm) / (2 * eps) - gi[idx]) < 1e-6, idx
    assert checked >= 0.9 * x.size
