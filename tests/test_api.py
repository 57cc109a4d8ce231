"""The public API across operators: validation that is not tied to one operator, and DLPack
interop of the public functions: foreign arrays in (zero-copy), the
caller's type out; NumPy input keeps its behaviour (read-only, odd strides)."""

from __future__ import annotations

import re
import subprocess
import sys
import types

import numpy as np
import pytest

import roicore
from roicore import _interop
from roicore._backends import cpu as _cpu_backend

RNG = np.random.default_rng(0)
X = RNG.random((2, 3, 9, 10), dtype=np.float32)
R = np.array([[0, 1.2, 0.7, 6.5, 7.1], [1, 0, 0, 9, 8]], np.float32)
OPS = {"pool": roicore.roi_pool, "align": roicore.roi_align, "warp": roicore.roi_warp}
BWD = {
    "pool": roicore.roi_pool_backward,
    "align": roicore.roi_align_backward,
    "warp": roicore.roi_warp_backward,
}


# ---------------------------------------------------------------- a minimal foreign library
class DLArray:
    """An array of a made-up library ("dlfake") that speaks only DLPack."""

    def __init__(self, a, device=(1, 0), export_error=None):
        self._a = a
        self._device = device
        self._export_error = export_error
        self.shape = a.shape
        self.ndim = a.ndim
        self.dtype = a.dtype

    def __dlpack__(self, **kwargs):
        if self._export_error is not None:
            raise self._export_error
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._a, dtype=dtype)


@pytest.fixture
def dlfake(monkeypatch):
    """Register module "dlfake" (with its own from_dlpack) and home DLArray there."""
    mod = types.ModuleType("dlfake")
    mod.from_dlpack = lambda a: DLArray(np.from_dlpack(a))
    monkeypatch.setitem(sys.modules, "dlfake", mod)
    monkeypatch.setattr(DLArray, "__module__", "dlfake")
    return mod


# ---------------------------------------------------------------- NumPy unchanged
@pytest.mark.parametrize("op", OPS)
def test_numpy_passthrough_identity(op):
    (a, b, c), restore = _interop.from_caller(("input", X), ("rois", R), ("out", None))
    assert a is X and b is R and c is None
    res = OPS[op](X, R, 2)
    assert restore(res) is res
    assert type(res) is np.ndarray


@pytest.mark.parametrize("op", OPS)
def test_numpy_readonly_and_noncontiguous(op):
    ref = OPS[op](X, R, 3)
    ro = X.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(OPS[op](ro, R, 3), ref)
    # negative strides and a transposed view
    flipped = X[:, :, ::-1, :][:, :, ::-1, :]
    np.testing.assert_array_equal(OPS[op](flipped, R, 3), ref)
    nhwc = np.ascontiguousarray(X.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert not nhwc.flags.c_contiguous
    np.testing.assert_array_equal(OPS[op](nhwc, R, 3), ref)
    rro = R.copy()
    rro.flags.writeable = False
    np.testing.assert_array_equal(OPS[op](ro, rro[:, ::1], 3), ref)


# ---------------------------------------------------------------- generic DLPack arrays
@pytest.mark.parametrize("op", OPS)
def test_foreign_cpu_array_roundtrip(op, dlfake):
    ref = OPS[op](X, R, 2)
    res = OPS[op](DLArray(X), DLArray(R), 2)
    assert isinstance(res, DLArray)  # came back through dlfake.from_dlpack
    np.testing.assert_array_equal(np.asarray(res), ref)
    g = np.ones_like(ref)
    gres = BWD[op](DLArray(g), DLArray(X), R, 2)
    assert isinstance(gres, DLArray)
    np.testing.assert_array_equal(np.asarray(gres), BWD[op](g, X, R, 2))


def test_foreign_zero_copy(monkeypatch, dlfake):
    seen = {}
    real = _cpu_backend.forward

    def spy(plan, x, rois, out):
        seen["x"] = x
        seen["res"] = real(plan, x, rois, out)
        return seen["res"]

    monkeypatch.setattr(_cpu_backend, "forward", spy)
    res = roicore.roi_align(DLArray(X), R, 2)
    assert np.shares_memory(seen["x"], X)  # the kernel read the caller's memory
    assert np.shares_memory(np.asarray(res._a), seen["res"])  # and the result is not copied


def test_foreign_export_failure_falls_back(dlfake):
    # e.g. a library that refuses to export read-only memory: __array__ is used instead
    ro = X.copy()
    ro.flags.writeable = False
    a = DLArray(ro, export_error=BufferError("read-only arrays cannot be exported"))
    res = roicore.roi_pool(a, R, 2)
    np.testing.assert_array_equal(np.asarray(res), roicore.roi_pool(X, R, 2))


def test_foreign_negative_strides(dlfake):
    flipped = X[:, :, ::-1, ::-1]
    ref = roicore.roi_align(np.ascontiguousarray(flipped), R, 2)
    np.testing.assert_array_equal(np.asarray(roicore.roi_align(DLArray(flipped), R, 2)), ref)


def test_foreign_without_from_dlpack_returns_numpy(monkeypatch):
    monkeypatch.setattr(DLArray, "__module__", "dlfake_nofrom")
    monkeypatch.setitem(sys.modules, "dlfake_nofrom", types.ModuleType("dlfake_nofrom"))
    res = roicore.roi_pool(DLArray(X), R, 2)
    assert type(res) is np.ndarray


def test_foreign_rois_list(dlfake):
    boxes = [DLArray(R[:1, 1:].copy()), DLArray(R[1:, 1:].copy())]
    np.testing.assert_array_equal(
        np.asarray(roicore.roi_align(DLArray(X), boxes, 2)), roicore.roi_align(X, R, 2))


def test_foreign_out_is_returned(dlfake):
    buf = np.zeros((2, 3, 2, 2), np.float32)
    out = DLArray(buf)
    res = roicore.roi_pool(DLArray(X), R, 2, out=out)
    assert res is out
    np.testing.assert_array_equal(buf, roicore.roi_pool(X, R, 2))


def test_mixed_devices_named_in_callers_types(dlfake):
    gpu = DLArray(X, device=(2, 0))
    with pytest.raises(TypeError, match=re.escape(
            "`rois` is a numpy.ndarray on cpu but `input` is a dlfake.DLArray on cuda:0: "
            "all arrays must be on the same device")):
        roicore.roi_align(gpu, R, 2)


def test_unsupported_device(dlfake):
    with pytest.raises(TypeError, match="lives on metal:0"):
        roicore.roi_align(DLArray(X, device=(8, 0)), DLArray(R, device=(8, 0)), 2)


def test_cuda_array_without_cupy(dlfake):
    try:
        import cupy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("CuPy is installed: this checks the message given without it")
    with pytest.raises(ImportError, match=r"needs CuPy: pip install 'roicore\[cuda\]'"):
        roicore.roi_align(DLArray(X, device=(2, 0)), DLArray(R, device=(2, 0)), 2)


def test_non_array_input_message():
    class Other:  # array-like without DLPack
        ndim = 4
        shape = (1, 1, 2, 2)
        dtype = np.float32

    with pytest.raises(TypeError, match=r"`input` must be a numpy.ndarray .* __dlpack__"):
        roicore.roi_align(Other(), R, 2)


def test_import_pulls_no_optional_library():
    code = (
        "import sys, numpy as np, roicore\n"
        "roicore.roi_align(np.ones((1, 1, 4, 4), np.float32), np.array([[0, 0, 0, 3, 3.]]), 2)\n"
        "bad = [m for m in ('torch', 'cupy', 'jax', 'sklearn', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- torch tensors
@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch not installed (pip install torch)")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_torch_in_torch_out(torch, op, dtype):
    x = torch.from_numpy(X.astype(dtype))
    r = torch.from_numpy(R)
    res = OPS[op](x, r, 3)
    assert isinstance(res, torch.Tensor)
    assert res.dtype == x.dtype and res.device == x.device
    np.testing.assert_array_equal(res.numpy(), OPS[op](X.astype(dtype), R, 3))
    g = torch.ones_like(res)
    gi = BWD[op](g, x, r, 3)
    assert isinstance(gi, torch.Tensor) and gi.shape == x.shape and gi.dtype == x.dtype
    np.testing.assert_array_equal(gi.numpy(), BWD[op](g.numpy(), X.astype(dtype), R, 3))


def test_torch_zero_copy(torch, monkeypatch):
    seen = {}
    real = _cpu_backend.forward

    def spy(plan, x, rois, out):
        seen["x_ptr"] = x.ctypes.data
        seen["res"] = real(plan, x, rois, out)
        return seen["res"]

    monkeypatch.setattr(_cpu_backend, "forward", spy)
    x = torch.rand(2, 3, 9, 10)
    res = roicore.roi_align(x, torch.from_numpy(R), 2)
    assert seen["x_ptr"] == x.data_ptr()  # the kernel saw the tensor's own memory
    assert res.data_ptr() == seen["res"].ctypes.data  # the result tensor wraps the kernel's
    # and the view NumPy builds from the tensor is the tensor's memory
    assert np.from_dlpack(x).ctypes.data == x.data_ptr()


def test_torch_requires_grad_and_noncontiguous(torch):
    x = torch.from_numpy(X.copy()).requires_grad_(True)
    res = roicore.roi_align(x, torch.from_numpy(R), 2)
    assert not res.requires_grad  # the plain API is not autograd-aware (see roicore.torch)
    np.testing.assert_array_equal(res.numpy(), roicore.roi_align(X, R, 2))
    xt = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 1, 3, 2))).transpose(2, 3)
    assert not xt.is_contiguous()
    np.testing.assert_array_equal(roicore.roi_pool(xt, R, 2).numpy(), roicore.roi_pool(X, R, 2))


def test_torch_out_and_boxes_list(torch):
    x = torch.from_numpy(X)
    out = torch.empty(2, 3, 2, 2)
    res = roicore.roi_pool(x, [torch.from_numpy(R[:1, 1:]), torch.from_numpy(R[1:, 1:])], 2,
                           out=out)
    assert res is out
    np.testing.assert_array_equal(out.numpy(), roicore.roi_pool(X, R, 2))


def test_torch_nhwc(torch):
    xh = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 2, 3, 1)))
    res = roicore.roi_align(xh, torch.from_numpy(R), 2, layout="NHWC")
    np.testing.assert_array_equal(res.permute(0, 3, 1, 2).numpy(), roicore.roi_align(X, R, 2))


def test_torch_unsupported_dtype_message(torch):
    with pytest.raises(TypeError, match="cannot be viewed as a NumPy array"):
        roicore.roi_align(torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16), R, 2)
    with pytest.raises(TypeError, match="`input` must have a floating dtype"):
        roicore.roi_align(torch.zeros(1, 1, 4, 4, dtype=torch.int32), R, 2)


def test_torch_validation_messages_unchanged(torch):
    with pytest.raises(ValueError, match="`input` must be a 4-D array"):
        roicore.roi_align(torch.zeros(1, 4, 4), R, 2)
    with pytest.raises(ValueError, match="`rois` must have shape"):
        roicore.roi_align(torch.zeros(2, 1, 4, 4), torch.zeros(3, 4), 2)


@pytest.mark.parametrize(
    ("module", "blocked", "message"),
    [
        ("roicore.torch", "torch",
         "roicore.torch needs PyTorch: pip install torch (or pip install 'roicore[torch]')"),
        ("roicore.sklearn", "sklearn",
         "roicore.sklearn needs scikit-learn: pip install scikit-learn "
         "(or pip install 'roicore[sklearn]')"),
        ("roicore.jax", "jax",
         "roicore.jax needs JAX: pip install jax jaxlib (or pip install 'roicore[jax]')"),
    ],
)
def test_optional_modules_name_their_install(module, blocked, message):
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "try:\n"
        f"    import {module}\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == message


# ------------------------------------------- validation not tied to one operator
# (the per-operator checks live in tests/support/roi_op_tester.py, run by test_roi_*.py)
VX = np.random.default_rng(0).random((2, 3, 8, 9), dtype=np.float32)
VR = np.array([[0, 1, 1, 5, 6], [1, 0, 0, 8, 7]], np.float32)


def _raises(exc, match, fn, *a, **k):
    with pytest.raises(exc, match=match):
        fn(*a, **k)


def test_out_float16():
    x16 = VX.astype(np.float16)
    buf = np.empty((2, 3, 2, 2), np.float16)
    res = roicore.roi_align(x16, VR, 2, out=buf)
    assert res is buf
    np.testing.assert_array_equal(buf, roicore.roi_align(x16, VR, 2))


def test_mixed_devices_error():
    class FakeCupy:  # an array-like from another library
        __module__ = "cupy._core.core"
        shape = (2, 5)
        ndim = 2

    _raises(TypeError, "same device", roicore.roi_align, VX, FakeCupy(), 2)


def test_unknown_array_type():
    class Other:
        ndim = 4
        shape = (1, 1, 2, 2)
        dtype = np.float32

    _raises(TypeError, "`input` must be a numpy.ndarray", roicore.roi_align, Other(), VR, 2)
