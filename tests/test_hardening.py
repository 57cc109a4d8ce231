"""Issue 9 (hardening), API-level defect classes: one test group per class.

Every expected value comes from tests/support/reference.py (the NumPy oracle), from
torchvision, or is a hand value; none is derived from roicore itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import reference as ref

import roicore
from roicore import _validation as V

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FWD = {"pool": roicore.roi_pool, "align": roicore.roi_align, "warp": roicore.roi_warp}
REF = {"pool": ref.roi_pool, "align": ref.roi_align, "warp": ref.roi_warp}
BWD = {"pool": roicore.roi_pool_backward, "align": roicore.roi_align_backward,
       "warp": roicore.roi_warp_backward}
REF_BWD = {"pool": ref.roi_pool_backward, "align": ref.roi_align_backward,
           "warp": ref.roi_warp_backward}
#: Positional arguments after output_size and spatial_scale, per op.
EXTRA = {"pool": (), "align": (2, True), "warp": (2,)}

N, C, H, W = 2, 3, 8, 9
ROWS = np.array([[0, 1, 1, 5, 6], [1, 0, 0, 8, 7], [1, 2.5, 1.5, 7.25, 6.5]])
OUT_HW = (2, 3)


def _expected(op, x_nchw, rois):
    return REF[op](x_nchw, rois, OUT_HW, 1.0, *EXTRA[op]).astype(x_nchw.dtype)


def _call(op, x, rois, layout="NCHW", **kw):
    return FWD[op](x, rois, OUT_HW, 1.0, *EXTRA[op], layout=layout, **kw)


def _to_layout(a, layout):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if layout == "NHWC" else a


# --------------------------------------------------------------------- 1. out= aliasing
def _out_shape(layout, K):
    return (K, *OUT_HW, C) if layout == "NHWC" else (K, C, *OUT_HW)


@pytest.mark.parametrize("op", list(FWD))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("offset", [0, 5, 37])
def test_out_overlapping_input(op, layout, offset):
    """`out` is a view of the same buffer as `input` (NumPy ufunc semantics:
    the result is as if `out` were a separate array)."""
    rng = np.random.default_rng(offset)
    x_nchw = rng.standard_normal((N, C, H, W)).astype(np.float32)
    x = _to_layout(x_nchw, layout)
    buf = np.zeros(x.size + 64, np.float32)
    buf[: x.size] = x.ravel()
    xin = buf[: x.size].reshape(x.shape)
    shape = _out_shape(layout, len(ROWS))
    out = buf[offset: offset + int(np.prod(shape))].reshape(shape)
    assert np.shares_memory(out, xin)
    want = _to_layout(_expected(op, x_nchw, ROWS.astype(np.float32)), layout)
    got = _call(op, xin, ROWS.astype(np.float32), layout, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("op", list(FWD))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("list_form", [False, True])
def test_out_overlapping_rois(op, layout, list_form):
    """`out` overwrites the memory the boxes are read from."""
    x_nchw = np.random.default_rng(1).standard_normal((N, C, H, W)).astype(np.float64)
    x = _to_layout(x_nchw, layout)
    shape = _out_shape(layout, len(ROWS))
    buf = np.zeros(int(np.prod(shape)) + 16, np.float64)
    out = buf[: int(np.prod(shape))].reshape(shape)
    buf[3: 3 + ROWS.size] = ROWS.ravel()
    rois = buf[3: 3 + ROWS.size].reshape(ROWS.shape)
    if list_form:
        rois = [rois[:1, 1:], rois[1:, 1:]]
    want = _to_layout(_expected(op, x_nchw, ROWS), layout)
    got = _call(op, x, rois, layout, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("op", list(FWD))
def test_out_overlapping_input_float16(op):
    x_nchw = np.random.default_rng(2).standard_normal((N, C, H, W)).astype(np.float16)
    buf = np.zeros(x_nchw.size + 8, np.float16)
    buf[: x_nchw.size] = x_nchw.ravel()
    xin = buf[: x_nchw.size].reshape(x_nchw.shape)
    out = buf[1: 1 + len(ROWS) * C * 6].reshape(len(ROWS), C, *OUT_HW)
    want = REF[op](x_nchw, ROWS.astype(np.float32), OUT_HW, 1.0, *EXTRA[op]).astype(np.float16)
    _call(op, xin, ROWS.astype(np.float32), out=out)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("op", list(FWD))
def test_out_overlapping_input_torch(op):
    torch = pytest.importorskip("torch")
    x_nchw = np.random.default_rng(3).standard_normal((N, C, H, W)).astype(np.float32)
    buf = torch.zeros(x_nchw.size + 32)
    buf[: x_nchw.size] = torch.from_numpy(x_nchw.ravel())
    xin = buf[: x_nchw.size].view(N, C, H, W)
    out = buf[7: 7 + len(ROWS) * C * 6].view(len(ROWS), C, *OUT_HW)
    want = _expected(op, x_nchw, ROWS.astype(np.float32))
    got = _call(op, xin, torch.from_numpy(ROWS.astype(np.float32)), out=out)
    assert got is out
    np.testing.assert_array_equal(out.numpy(), want)


def test_out_aliasing_still_validates_out():
    x = np.zeros((1, 1, 4, 4), np.float32)
    out = x.reshape(-1)[:3]
    with pytest.raises(ValueError, match="`out` must have shape"):
        roicore.roi_pool(x, np.array([[0, 0, 0, 3, 3]], np.float32), 2, out=out)
    out = x.reshape(4, 4)[:, :1].reshape(1, 1, 2, 2)  # a copy: no aliasing, still checked
    with pytest.raises(ValueError, match="`out` must have shape"):
        roicore.roi_pool(x, np.array([[0, 0, 0, 3, 3]], np.float32), 3, out=out)


def test_may_share_memory_ranges():
    a = np.zeros(10)
    assert V.may_share_memory(a[2:5], a[4:])
    assert not V.may_share_memory(a[:4], a[4:])
    assert not V.may_share_memory(a, None)
    assert not V.may_share_memory(a[:0], a)


class _DeviceArray:
    """Just what the overlap test reads from a CuPy array: shape, strides,
    itemsize and data.ptr (no CuPy needed)."""

    def __init__(self, ptr, shape, strides, itemsize=4):
        self.shape, self.strides, self.itemsize = shape, strides, itemsize
        self.data = type("Mem", (), {"ptr": ptr})()


def test_may_share_memory_device_address_ranges():
    a = _DeviceArray(1000, (2, 3), (12, 4))  # bytes [1000, 1024)
    assert V.may_share_memory(a, _DeviceArray(1020, (1,), (4,)))
    assert not V.may_share_memory(a, _DeviceArray(1024, (5,), (4,)))
    assert V.may_share_memory(a, _DeviceArray(1100, (30,), (-4,)))  # [984, 1104)
    assert not V.may_share_memory(a, _DeviceArray(1000, (0, 3), (12, 4)))
    assert not V.may_share_memory(a, np.zeros(3))  # host vs device


@pytest.mark.parametrize("op", list(FWD))
def test_out_overlapping_input_cupy(op):
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception:  # no driver
        pytest.skip("no CUDA device")
    x_nchw = np.random.default_rng(6).standard_normal((N, C, H, W)).astype(np.float32)
    buf = cupy.zeros(x_nchw.size + 32, cupy.float32)
    buf[: x_nchw.size] = cupy.asarray(x_nchw.ravel())
    xin = buf[: x_nchw.size].reshape(N, C, H, W)
    out = buf[7: 7 + len(ROWS) * C * 6].reshape(len(ROWS), C, *OUT_HW)
    want = _expected(op, x_nchw, ROWS.astype(np.float32))
    got = _call(op, xin, cupy.asarray(ROWS.astype(np.float32)), out=out)
    assert got is out
    np.testing.assert_allclose(cupy.asnumpy(out), want, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------- 2. num_threads
X = np.random.default_rng(0).random((N, C, H, W), dtype=np.float32)
R32 = ROWS.astype(np.float32)


@pytest.mark.parametrize("op", list(FWD))
@pytest.mark.parametrize("bad", [2**31, 2**40, 2**63, np.int64(2**31), 0, -1])
def test_num_threads_out_of_range_is_valueerror(op, bad):
    with pytest.raises(ValueError, match="`num_threads` must be None or an integer >= 1"):
        _call(op, X, R32, num_threads=bad)
    with pytest.raises(ValueError, match="`num_threads`"):
        BWD[op](np.ones((3, C, *OUT_HW), np.float32), X, R32, OUT_HW, 1.0, *EXTRA[op],
                num_threads=bad)


@pytest.mark.parametrize("bad", [True, np.bool_(True), 2.0, np.float64(2), "2", [2]])
def test_num_threads_type(bad):
    with pytest.raises(TypeError, match="`num_threads` must be an integer"):
        roicore.roi_align(X, R32, 2, num_threads=bad)


@pytest.mark.parametrize("nt", [np.int8(3), np.int64(2), np.uint16(4), 2**31 - 1])
def test_num_threads_numpy_ints_and_clamp(nt):
    want = ref.roi_align(X, R32, 2, 1.0, 2, True).astype(np.float32)
    np.testing.assert_array_equal(roicore.roi_align(X, R32, 2, 1.0, 2, True, num_threads=nt),
                                  want)


def test_num_threads_clamp_rule():
    ceiling = max(os.cpu_count() or 1, 3, 64)
    assert V.check_num_threads(10**6, 3) == ceiling
    assert V.check_num_threads(10**6, 3, work_items=5) == 5
    assert V.check_num_threads(7, 3) == 7
    assert V.check_num_threads(None, 3) == 3
    assert V.check_num_threads(None, 0, work_items=0) == 1


_HUGE_THREADS = textwrap.dedent("""
    import numpy as np, roicore, reference as ref
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 16, 16), dtype=np.float32)
    K = 100_000  # main: one OpenMP thread per work item, 10**5 threads -> SIGSEGV
    xy = rng.uniform(0, 10, (K, 2)); wh = rng.uniform(1, 8, (K, 2))
    r = np.concatenate([rng.integers(0, 2, (K, 1)), xy, xy + wh], 1).astype(np.float32)
    got = roicore.roi_pool(x, r, 2, num_threads=10**6)
    sub = slice(0, 40)
    want = ref.roi_pool(x, r[sub], 2)
    assert np.array_equal(got[sub], want), "wrong result"
    got2 = roicore.roi_align(x, r, 2, 1.0, 2, num_threads=2**31 - 1)
    assert np.array_equal(got2[sub], ref.roi_align(x, r[sub], 2, 1.0, 2)), "wrong result"
    print("OK")
""")


def test_absurd_num_threads_does_not_kill_the_process():
    """10**6 threads with thousands of RoIs: run in a subprocess so an abort
    inside the OpenMP runtime fails this test instead of killing pytest."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, os.path.join(ROOT, "tests", "support"), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-c", _HUGE_THREADS], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    assert p.stdout.strip() == "OK"


# --------------------------------------------------------------------- 3. torch neg/conj bit
def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("op", list(FWD))
def test_torch_negative_view_input(op):
    torch = _torch()
    x_np = X.astype(np.float64)
    lazy = torch._neg_view(torch.from_numpy(-x_np))  # values x, stored as -x
    assert lazy.is_neg()
    got = _call(op, lazy, torch.from_numpy(ROWS))
    np.testing.assert_array_equal(got.numpy(), _expected(op, x_np, ROWS))


@pytest.mark.parametrize("op", list(FWD))
def test_torch_conj_imag_input(op):
    torch = _torch()
    x_np = X.astype(np.float32)
    z = torch.complex(torch.zeros(N, C, H, W), torch.from_numpy(-x_np))
    lazy = z.conj().imag  # values +x, stored as -x with the negative bit
    assert lazy.is_neg()
    got = _call(op, lazy, torch.from_numpy(R32))
    np.testing.assert_array_equal(got.numpy(), _expected(op, x_np, R32))
    # conj() of a real tensor is a no-op: nothing to resolve, still right
    t = torch.from_numpy(x_np).conj()
    np.testing.assert_array_equal(_call(op, t, torch.from_numpy(R32)).numpy(),
                                  _expected(op, x_np, R32))


@pytest.mark.parametrize("op", list(FWD))
@pytest.mark.parametrize("list_form", [False, True])
def test_torch_negative_view_rois(op, list_form):
    torch = _torch()
    neg = torch._neg_view(torch.from_numpy(-ROWS))
    rois = [neg[:1, 1:], neg[1:, 1:]] if list_form else neg
    got = _call(op, torch.from_numpy(X.astype(np.float64)), rois)
    np.testing.assert_array_equal(got.numpy(), _expected(op, X.astype(np.float64), ROWS))


@pytest.mark.parametrize("op", list(FWD))
def test_torch_negative_view_grad_output(op):
    torch = _torch()
    x = X.astype(np.float64)
    g = np.random.default_rng(4).standard_normal((len(ROWS), C, *OUT_HW))
    lazy = torch._neg_view(torch.from_numpy(-g))
    got = BWD[op](lazy, torch.from_numpy(x), torch.from_numpy(ROWS), OUT_HW, 1.0, *EXTRA[op])
    want = REF_BWD[op](g, x, ROWS, OUT_HW, 1.0, *EXTRA[op])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_torch_autograd_negative_view():
    torch = _torch()
    from roicore.torch import roi_align

    x = torch.from_numpy(X.astype(np.float64)).requires_grad_()
    y = roi_align(torch._neg_view(-x), torch._neg_view(torch.from_numpy(-ROWS)), OUT_HW, 1.0, 2,
                  True)
    np.testing.assert_array_equal(y.detach().numpy(),
                                  _expected("align", X.astype(np.float64), ROWS))


@pytest.mark.parametrize("op", list(FWD))
def test_torch_out_with_negative_bit_is_refused(op):
    torch = _torch()
    out = torch._neg_view(torch.zeros(len(ROWS), C, *OUT_HW))
    with pytest.raises(ValueError, match="`out` is a torch view with the negative bit"):
        _call(op, torch.from_numpy(X), torch.from_numpy(R32), out=out)


class _NoExport:
    """A foreign (DLPack) array whose export fails, readable through __array__."""

    __module__ = "dlfake_noexport"

    def __init__(self, a):
        self._a, self.shape, self.ndim, self.dtype = a, a.shape, a.ndim, a.dtype

    def __dlpack__(self, **kwargs):
        raise BufferError("cannot export")

    def __dlpack_device__(self):
        return (1, 0)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._a, dtype=dtype)


def test_foreign_out_that_cannot_be_exported_is_refused(monkeypatch):
    """Falling back to a copy (as for inputs) would write the result into the
    copy and leave the caller's `out` untouched."""
    import types

    monkeypatch.setitem(sys.modules, "dlfake_noexport", types.ModuleType("dlfake_noexport"))
    buf = np.zeros((len(ROWS), C, *OUT_HW), np.float32)
    with pytest.raises(TypeError, match=r"`out`.*cannot be exported"):
        roicore.roi_pool(X, R32, OUT_HW, out=_NoExport(buf))


# --------------------------------------------------------------------- 4. exact batch indices
def test_float16_rois_ambiguous_batch_index_refused():
    """float16 holds integers exactly only below 2**11: with N > 2048 images
    the caller's 2049 is stored as 2048, another valid image."""
    x = np.zeros((2050, 1, 2, 2), np.float16)
    r = np.array([[2049, 0, 0, 1, 1]], np.float16)
    assert r[0, 0] == 2048  # the caller's index is already lost
    for op in FWD:
        with pytest.raises(ValueError, match=r"`rois\[:, 0\]` \(batch index\).*ambiguous"):
            FWD[op](x, r, 1)
    # float64 / int rows, and the list form, are exact
    r64 = np.array([[2049, 0, 0, 1, 1]], np.float64)
    x[2049] = 1
    assert roicore.roi_pool(x, r64, 1)[0, 0, 0, 0] == 1


@pytest.fixture(scope="module")
def many_images():
    """(2**24 + 2, 1, 1, 1) float32 map (64 MiB): image i holds i % 2 + 1."""
    n = (1 << 24) + 2
    x = np.empty((n, 1, 1, 1), np.float32)
    x[0::2] = 1.0
    x[1::2] = 2.0
    return x


def test_float32_rois_beyond_2_24_refused(many_images):
    r = np.array([[16777217, 0, 0, 0, 0]], np.float32)  # stored as 16777216
    with pytest.raises(ValueError, match=r"ambiguous.*float64"):
        roicore.roi_pool(many_images, r, 1)
    # indices below 2**24 stay usable with float32 rows
    ok = np.array([[16777215, 0, 0, 0, 0]], np.float32)
    assert roicore.roi_pool(many_images, ok, 1)[0, 0, 0, 0] == 2.0


def test_batch_indices_helper_is_exact():
    r = np.array([[16777217, 0, 0, 1, 1], [3, 0, 0, 1, 1]], np.float64)
    got = V.batch_indices(r)
    assert got.dtype == np.int64 and got.tolist() == [16777217, 3]
    assert V.exact_index_limit(np.float32) == 1 << 24
    assert V.exact_index_limit(np.float16) == 1 << 11
    assert V.exact_index_limit(np.int32) is None


@pytest.mark.parametrize("op", ["pool", "align"])
def test_float64_rois_select_image_beyond_2_24(many_images, op):
    """float64 rows (and the list form) with index 16777217 must read image
    16777217 (value 2), not 16777216 (value 1) — forward and backward."""
    r = np.array([[16777217, 0, 0, 0, 0]], np.float64)
    y = FWD[op](many_images, r, 1, 1.0, *(() if op == "pool" else (1,)))
    assert y[0, 0, 0, 0] == 2.0
    g = BWD[op](np.ones((1, 1, 1, 1), np.float32), many_images, r, 1, 1.0,
                *(() if op == "pool" else (1,)))
    assert g[16777217, 0, 0, 0] != 0 and g[16777216, 0, 0, 0] == 0


# --------------------------------------------------------------------- 5. lists and types
@pytest.mark.parametrize("op", list(FWD))
def test_empty_rois_list_needs_n_entries(op):
    with pytest.raises(ValueError, match=r"list must have one .* N=2 images but the list has 0"):
        FWD[op](X, [], 2)
    with pytest.raises(ValueError, match="N=2 images but the list has 0"):
        BWD[op](np.zeros((0, C, 2, 2), np.float32), X, (), 2)
    # N = 0 images: the empty list is the right length
    assert FWD[op](X[:0], [], 2).shape == (0, C, 2, 2)


def test_empty_rois_list_torch():
    torch = _torch()
    from roicore.torch import roi_align, roi_pool

    with pytest.raises(ValueError, match="N=2 images but the list has 0"):
        roi_pool(torch.from_numpy(X), [], 2)
    with pytest.raises(ValueError, match="N=2 images but the list has 1"):
        roi_align(torch.from_numpy(X), [torch.zeros(0, 4)], 2)


@pytest.mark.parametrize("name,bad,exc", [
    ("layout", np.array(["NCHW"]), TypeError),
    ("layout", ["NCHW"], TypeError),
    ("layout", b"NCHW", TypeError),
    ("layout", "nchw", ValueError),
    ("mode", np.array("avg"), TypeError),
    ("mode", 0, TypeError),
    ("bins", np.array(["fast_rcnn"]), TypeError),
    ("compat", np.array(["mnc"]), TypeError),
    ("compat", "", ValueError),
    ("compat", False, TypeError),
])
def test_choice_arguments_must_be_str(name, bad, exc):
    op = {"bins": "pool", "compat": "warp"}.get(name, "align")
    with pytest.raises(exc, match=f"`{name}`"):
        FWD[op](X, R32, 2, **{name: bad})


def test_numpy_str_choices_accepted():
    want = ref.roi_align(X, R32, 2, 1.0, -1, False, "max").astype(np.float32)
    got = roicore.roi_align(X, R32, 2, mode=np.str_("max"), layout=np.str_("NCHW"))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kw,exc", [
    ({"sampling_ratio": True}, TypeError),
    ({"sampling_ratio": 2.0}, TypeError),
    ({"sampling_ratio": "2"}, TypeError),
    ({"aligned": 1}, TypeError),
    ({"aligned": "False"}, TypeError),
    ({"spatial_scale": "0.5"}, TypeError),
    ({"spatial_scale": True}, TypeError),
    ({"output_size": "7"}, TypeError),
    ({"output_size": (2.0, 2)}, TypeError),
    ({"output_size": True}, TypeError),
])
def test_option_type_confusions(kw, exc):
    name = next(iter(kw))
    with pytest.raises(exc, match=f"`{name}`"):
        roicore.roi_align(X, R32, **{"output_size": 2, **kw})


@pytest.mark.parametrize("bad", ["yes", 1, None, np.array([True])])
def test_deterministic_must_be_bool(bad):
    g = np.ones((3, C, 2, 2), np.float32)
    with pytest.raises(TypeError, match="`deterministic` must be a bool"):
        roicore.roi_align_backward(g, X, R32, 2, deterministic=bad)


def test_rois_list_with_non_array_entry():
    with pytest.raises(TypeError, match=r"`rois\[1\]` must be an array"):
        roicore.roi_pool(X, [R32[:1, 1:], [[0, 0, 1, 1]]], 2)


# ------------------------------------------------ 6. differences from torchvision
def _torchvision():
    tv = pytest.importorskip("torchvision")
    return tv, pytest.importorskip("torch")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_pixel00_out_of_map_samples_are_zero_not_nan(bad):
    """Deliberate difference: a bin whose samples all fall outside the map is 0
    in roicore; torchvision multiplies the zero weights by pixel (0, 0) and gets
    NaN when that pixel is NaN or inf."""
    tv, torch = _torchvision()
    x = np.ones((1, 1, 6, 6), np.float32)
    x[0, 0, 0, 0] = bad
    r = np.array([[0, -20.0, -20.0, -8.0, -8.0]], np.float32)  # every sample has y, x < -1
    tv_out = tv.ops.roi_align(torch.from_numpy(x), torch.from_numpy(r), 2, 1.0, 2, False)
    assert torch.isnan(tv_out).all()
    want = ref.roi_align(x, r, 2, 1.0, 2, False)
    assert (want == 0).all()
    np.testing.assert_array_equal(roicore.roi_align(x, r, 2, 1.0, 2, False), want)


def test_float64_roi_pool_running_max_starts_at_lowest_double():
    """Deliberate difference: float64 roi_pool starts its running max at
    -DBL_MAX, so a bin of values below -FLT_MAX gives its true max;
    torchvision starts at -FLT_MAX and returns -FLT_MAX."""
    tv, torch = _torchvision()
    x = np.full((1, 1, 4, 4), -1e300)
    x[0, 0, 1, 2] = -1e299
    r = np.array([[0, 0, 0, 3, 3]], np.float64)
    tv_out = tv.ops.roi_pool(torch.from_numpy(x), torch.from_numpy(r), 1, 1.0)
    assert tv_out.item() == -float(np.finfo(np.float32).max)
    assert roicore.roi_pool(x, r, 1)[0, 0, 0, 0] == -1e299
    assert ref.roi_pool(x, r, 1)[0, 0, 0, 0] == -1e299


# --------------------------------------------------------------------- found by the fuzz harness
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_mnc_ignores_mode_with_nan_input(mode):
    """compat="mnc" takes one sample per bin, so `mode` must not matter: the max
    kernel let a NaN sample lose to its -DBL_MAX start (forward -DBL_MAX, zero
    gradient) where the one-sample formula gives NaN and the full gradient."""
    x = np.ones((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    r = np.array([[0, 0, 0, 3, 3.0]])
    g = np.random.default_rng(5).standard_normal((1, 1, 2, 2))
    want = ref.roi_warp(x, r, 2, 1.0, 0, compat="mnc")
    np.testing.assert_array_equal(roicore.roi_warp(x, r, 2, 1.0, 0, mode=mode, compat="mnc"),
                                  want)
    np.testing.assert_allclose(
        roicore.roi_warp_backward(g, x, r, 2, 1.0, 0, mode=mode, compat="mnc"),
        ref.roi_warp_backward(g, x, r, 2, 1.0, 0, compat="mnc"), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- rois values
@pytest.mark.parametrize("K", [1, 8, 9])  # <= 8: checked in plain Python first
@pytest.mark.parametrize("row,col,value,match", [
    (0, 2, np.nan, r"`rois` must be finite: row 0 column 2 is nan"),
    (-1, 4, np.inf, r"`rois` must be finite: row {last} column 4 is inf"),
    (-1, 0, -np.inf, r"`rois` must be finite: row {last} column 0 is -inf"),
    (0, 0, np.nan, r"`rois` must be finite: row 0 column 0 is nan"),
    (-1, 0, 0.5, r"must be integral; row {last} has 0.5"),
    (0, 0, -1.0, r"must be in \[0, N\) = \[0, 2\); row 0 has -1"),
    (-1, 0, 2.0, r"must be in \[0, N\) = \[0, 2\); row {last} has 2"),
])
def test_rois_values_refused_with_the_row(K, row, col, value, match):
    x = np.zeros((2, 3, 8, 8), np.float32)
    r = np.tile(np.array([[1, 0, 0, 4, 4]], np.float64), (K, 1))
    r[row, col] = value
    with pytest.raises(ValueError, match=match.format(last=K - 1)):
        roicore.roi_align(x, r, 2)
    r[row, col] = 1.0  # valid again: accepted
    assert roicore.roi_align(x, r, 2).shape == (K, 3, 2, 2)
