"""Bad input gives a clear TypeError/ValueError naming the argument; empty
input gives correctly shaped empty output."""

from __future__ import annotations

import numpy as np
import pytest

import roicore

X = np.random.default_rng(0).random((2, 3, 8, 9), dtype=np.float32)
R = np.array([[0, 1, 1, 5, 6], [1, 0, 0, 8, 7]], np.float32)

FWD = {
    "pool": lambda x, r, o=2, s=1.0, **k: roicore.roi_pool(x, r, o, s, **k),
    "align": lambda x, r, o=2, s=1.0, **k: roicore.roi_align(x, r, o, s, **k),
    "warp": lambda x, r, o=2, s=1.0, **k: roicore.roi_warp(x, r, o, s, **k),
}
BWD = {
    "pool": lambda g, x, r, o=2, s=1.0, **k: roicore.roi_pool_backward(g, x, r, o, s, **k),
    "align": lambda g, x, r, o=2, s=1.0, **k: roicore.roi_align_backward(g, x, r, o, s, **k),
    "warp": lambda g, x, r, o=2, s=1.0, **k: roicore.roi_warp_backward(g, x, r, o, s, **k),
}
OPS = list(FWD)


def _raises(exc, match, fn, *a, **k):
    with pytest.raises(exc, match=match):
        fn(*a, **k)


@pytest.mark.parametrize("op", OPS)
def test_input_rank(op):
    _raises(ValueError, "`input` must be a 4-D array", FWD[op], X[0], R)
    _raises(ValueError, "`input` must be a 4-D array", FWD[op], X[None], R)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.complex64, np.bool_])
def test_input_dtype(op, dtype):
    _raises(TypeError, "`input` must have a floating dtype", FWD[op], X.astype(dtype), R)


@pytest.mark.parametrize("op", OPS)
def test_input_type(op):
    _raises(TypeError, "`input` must be a numpy.ndarray", FWD[op], X.tolist(), R)


@pytest.mark.parametrize("op", OPS)
def test_rois_shape(op):
    _raises(ValueError, r"`rois` must have shape \(K, 5\).*needs the batch index",
            FWD[op], X, R[:, 1:])
    _raises(ValueError, r"`rois` must have shape \(K, 5\)", FWD[op], X, R[0])
    _raises(ValueError, r"`rois` must have shape \(K, 5\)", FWD[op], X, R[:, :3])


@pytest.mark.parametrize("op", OPS)
def test_rois_list_form(op):
    good = FWD[op](X, [R[:1, 1:], R[1:, 1:]])
    np.testing.assert_array_equal(good, FWD[op](X, R))
    _raises(ValueError, "one \\(K_i, 4\\) array per image: input has N=2", FWD[op], X,
            [R[:, 1:]])
    _raises(ValueError, r"`rois\[1\]` must have shape \(K_i, 4\)", FWD[op], X,
            [R[:1, 1:], R[1:]])


@pytest.mark.parametrize("op", OPS)
def test_rois_dtype(op):
    _raises(TypeError, "`rois` must hold real numbers", FWD[op], X, R.astype(np.complex64))
    _raises(TypeError, "`rois` must hold real numbers", FWD[op], X, R.astype(bool))
    # integer boxes are fine
    np.testing.assert_array_equal(FWD[op](X, R.astype(np.int64)), FWD[op](X, R))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("col", [1, 2, 3, 4])
def test_rois_not_finite(op, bad, col):
    r = R.copy()
    r[1, col] = bad
    _raises(ValueError, f"`rois` must be finite: row 1 column {col}", FWD[op], X, r)


@pytest.mark.parametrize("op", OPS)
def test_batch_index(op):
    for b, msg in [(2, r"must be in \[0, N\) = \[0, 2\); row 1 has 2"),
                   (-1, r"must be in \[0, N\).*row 1 has -1"),
                   (0.5, "must be integral; row 1 has 0.5"),
                   (np.nan, "must be finite")]:
        r = R.copy()
        r[1, 0] = b
        _raises(ValueError, msg, FWD[op], X, r)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("size", [0, -1, (2, 0), (0, 2), 1 << 21])
def test_output_size_range(op, size):
    _raises(ValueError, "`output_size` must be", FWD[op], X, R, size)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("size", [2.0, (2, 2.5), "2", True, None])
def test_output_size_type(op, size):
    _raises(TypeError, "`output_size` must be an integer", FWD[op], X, R, size)


@pytest.mark.parametrize("op", OPS)
def test_output_size_pair_length(op):
    _raises(ValueError, "pair", FWD[op], X, R, (2, 2, 2))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("scale", [0.0, -1.0, np.nan, np.inf])
def test_spatial_scale_value(op, scale):
    _raises(ValueError, "`spatial_scale` must be finite and > 0", FWD[op], X, R, 2, scale)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("scale", ["1", None, True, 1j])
def test_spatial_scale_type(op, scale):
    _raises(TypeError, "`spatial_scale` must be a real number", FWD[op], X, R, 2, scale)


@pytest.mark.parametrize("op", ["align", "warp"])
@pytest.mark.parametrize("sr", [1.5, 2.0, "2", None, True])
def test_sampling_ratio_type(op, sr):
    _raises(TypeError, "`sampling_ratio` must be an integer", FWD[op], X, R, 2, 1.0,
            sampling_ratio=sr)


def test_sampling_ratio_numpy_int_ok():
    a = roicore.roi_align(X, R, 2, 1.0, np.int64(2))
    np.testing.assert_array_equal(a, roicore.roi_align(X, R, 2, 1.0, 2))


def test_aligned_type():
    _raises(TypeError, "`aligned` must be a bool", roicore.roi_align, X, R, 2, 1.0, 2, "yes")


@pytest.mark.parametrize("op", ["align", "warp"])
def test_mode(op):
    _raises(ValueError, "`mode` must be one of", FWD[op], X, R, mode="mean")


@pytest.mark.parametrize("op", OPS)
def test_layout(op):
    _raises(ValueError, "`layout` must be one of", FWD[op], X, R, layout="CHW")
    _raises(ValueError, "`layout` must be one of", FWD[op], X, R, layout="nchw")


def test_bins():
    _raises(ValueError, "`bins` must be one of", roicore.roi_pool, X, R, 2, bins="caffe")


def test_compat():
    _raises(ValueError, "`compat` must be one of", roicore.roi_warp, X, R, 2, compat="MNC")
    _raises(ValueError, "compat='mnc' takes one sample per bin", roicore.roi_warp, X, R, 2,
            1.0, 2, compat="mnc")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("n", [0, -2])
def test_num_threads_value(op, n):
    _raises(ValueError, "`num_threads` must be None or an integer >= 1", FWD[op], X, R,
            num_threads=n)


@pytest.mark.parametrize("op", OPS)
def test_num_threads_type(op):
    _raises(TypeError, "`num_threads` must be an integer", FWD[op], X, R, num_threads=2.0)


@pytest.mark.parametrize("op", OPS)
def test_grad_output_shape(op):
    out = FWD[op](X, R)
    _raises(ValueError, "`grad_output` must have the forward output's shape", BWD[op],
            out[:1], X, R)
    _raises(ValueError, "`grad_output` must have the forward output's shape", BWD[op],
            out.transpose(0, 2, 3, 1), X, R)
    _raises(TypeError, "`grad_output` must have a floating dtype", BWD[op],
            out.astype(np.int32), X, R)


@pytest.mark.parametrize("op", OPS)
def test_backward_validates_like_forward(op):
    out = FWD[op](X, R)
    r = R.copy()
    r[0, 0] = 5
    _raises(ValueError, "batch index", BWD[op], out, X, r)
    _raises(ValueError, "`spatial_scale`", BWD[op], out, X, R, 2, -1.0)


@pytest.mark.parametrize("op", OPS)
def test_out_argument(op):
    ref = FWD[op](X, R)
    buf = np.full(ref.shape, 7.0, np.float32)
    res = FWD[op](X, R, out=buf)
    assert res is buf
    np.testing.assert_array_equal(buf, ref)
    _raises(ValueError, "`out` must have shape", FWD[op], X, R, out=buf[:1])
    _raises(ValueError, "`out` must have shape", FWD[op], X, R, out=buf.astype(np.float64))
    _raises(ValueError, "`out` must be C-contiguous and writeable", FWD[op], X, R,
            out=np.asfortranarray(buf))


def test_out_float16():
    x16 = X.astype(np.float16)
    buf = np.empty((2, 3, 2, 2), np.float16)
    res = roicore.roi_align(x16, R, 2, out=buf)
    assert res is buf
    np.testing.assert_array_equal(buf, roicore.roi_align(x16, R, 2))


def test_mixed_devices_error():
    class FakeCupy:  # an array-like from another library
        __module__ = "cupy._core.core"
        shape = (2, 5)
        ndim = 2

    _raises(TypeError, "same device", roicore.roi_align, X, FakeCupy(), 2)


def test_unknown_array_type():
    class Other:
        ndim = 4
        shape = (1, 1, 2, 2)
        dtype = np.float32

    _raises(TypeError, "`input` must be a numpy.ndarray", roicore.roi_align, Other(), R, 2)


# ---------------------------------------------------------------- empty inputs
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_empty_rois(op, layout, dtype):
    x = X.astype(dtype)
    if layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    r = np.zeros((0, 5), np.float32)
    out = FWD[op](x, r, (3, 2), layout=layout)
    expect = (0, 3, 2, 3) if layout == "NHWC" else (0, 3, 3, 2)
    assert out.shape == expect and out.dtype == dtype
    g = BWD[op](out, x, r, (3, 2), layout=layout)
    assert g.shape == x.shape and g.dtype == dtype and not g.any()
    # list form with empty per-image arrays
    out2 = FWD[op](x, [np.zeros((0, 4)), np.zeros((0, 4))], (3, 2), layout=layout)
    assert out2.shape == expect


@pytest.mark.parametrize("op", OPS)
def test_empty_channels_and_map(op):
    out = FWD[op](X[:, :0], R)
    assert out.shape == (2, 0, 2, 2)
    z = FWD[op](np.zeros((2, 3, 0, 5), np.float32), R)
    assert z.shape == (2, 3, 2, 2) and not z.any()
    g = BWD[op](np.ones((2, 3, 2, 2), np.float32), np.zeros((2, 3, 5, 0), np.float32), R)
    assert g.shape == (2, 3, 5, 0)


@pytest.mark.parametrize("op", OPS)
def test_empty_batch(op):
    out = FWD[op](np.zeros((0, 3, 4, 4), np.float32), np.zeros((0, 5)))
    assert out.shape == (0, 3, 2, 2)


# ------------------------------------------------------------- odd memory layouts
@pytest.mark.parametrize("op", OPS)
def test_noncontiguous_fortran_readonly(op):
    ref = FWD[op](X, R)
    f = np.asfortranarray(X)
    np.testing.assert_array_equal(FWD[op](f, R), ref)
    big = np.zeros((2, 6, 8, 18), np.float32)
    big[:, ::2, :, ::2] = X
    np.testing.assert_array_equal(FWD[op](big[:, ::2, :, ::2], R), ref)
    ro = X.copy()
    ro.flags.writeable = False
    rr = R.copy()
    rr.flags.writeable = False
    np.testing.assert_array_equal(FWD[op](ro, rr), ref)
    np.testing.assert_array_equal(FWD[op](X, np.asfortranarray(R)), ref)
    g = np.ones_like(ref)
    np.testing.assert_array_equal(BWD[op](np.asfortranarray(g), f, R), BWD[op](g, X, R))


def test_huge_adaptive_grid_is_refused_not_hung():
    r = np.array([[0, 0, 0, 1e9, 1e9]], np.float64)
    _raises(ValueError, "samples per bin with the adaptive grid", roicore.roi_align,
            X.astype(np.float64), r, 2)
    # with a fixed sampling ratio the same box is fine (samples are outside the map)
    out = roicore.roi_align(X, r, 2, 1.0, 2)
    assert np.isfinite(out).all()
