"""GPU backend (CuPy arrays) against roicore's own CPU backend.

Every op x mode x dtype x layout x aligned x sampling_ratio x compat x scale,
forward and backward (atomic and deterministic), on RoIs that are inside,
partly outside, fully outside, degenerate, tiny and huge.  RoI Pool must be
bit-exact (forward, and the pixel every gradient is routed to); RoI Align /
RoI Warp within rtol 1e-5 (float32) / 1e-12 (float64).  The kernels follow
the CPU kernels' operation order and are compiled without FMA contraction,
so ``test_bit_exact_with_cpu`` also asserts the stronger design claim that
float32/float64 forward and deterministic backward are bit-identical to the
CPU backend.

Skipped with reason "no CUDA device" when CuPy is missing or sees no device.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cases import C, H, N, W, case_id, case_rng, make_input, make_rois

import roicore
from roicore._backends import gpu_checks as _gpu_config

# public as roicore.gpu_checks; the private path keeps these tests independent of the export
gpu_checks = getattr(roicore, "gpu_checks", _gpu_config.gpu_checks)

try:
    import cupy

    HAS_GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # CuPy missing, no driver, no device
    cupy = None
    HAS_GPU = False

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="no CUDA device")]

DTYPES = [np.float32, np.float64, np.float16]
LAYOUTS = ["NCHW", "NHWC"]
SCALES = [1.0, 0.5, 1.0 / 16]

FWD = {"pool": roicore.roi_pool, "align": roicore.roi_align, "warp": roicore.roi_warp}
BWD = {
    "pool": roicore.roi_pool_backward,
    "align": roicore.roi_align_backward,
    "warp": roicore.roi_warp_backward,
}

CONFIGS = (
    [("pool", {"bins": b}) for b in ("fast_rcnn", "equal")]
    + [
        ("align", {"aligned": a, "mode": m, "sampling_ratio": sr})
        for a in (False, True)
        for m in ("avg", "max")
        for sr in (-1, 0, 1, 2)
    ]
    + [("warp", {"mode": m, "sampling_ratio": sr}) for m in ("avg", "max") for sr in (-1, 0, 1, 2)]
    + [
        ("warp", {"mode": m, "sampling_ratio": sr, "compat": "mnc"})
        for m in ("avg", "max")
        for sr in (-1, 0, 1)
    ]
)


def _cid(cfg):
    op, kw = cfg
    return op + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


def to_layout(a, layout):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if layout == "NHWC" else a


def g(a):
    """Device copy."""
    return cupy.asarray(a)


def h(a):
    """Host copy."""
    return cupy.asnumpy(a)


def tol(dtype):
    if dtype == np.float64:
        return {"rtol": 1e-12, "atol": 1e-13}
    return {"rtol": 1e-5, "atol": 1e-6}


def assert_close(got, exp, dtype, what):
    assert got.dtype == exp.dtype == dtype, (what, got.dtype, exp.dtype)
    assert got.shape == exp.shape, (what, got.shape, exp.shape)
    if dtype == np.float16:
        e = exp.astype(np.float32)
        mag = max(1.0, float(np.abs(e[np.isfinite(e)]).max(initial=0.0)))
        np.testing.assert_allclose(
            got.astype(np.float32), e, rtol=1e-3, atol=1e-3 * mag, err_msg=what
        )
    else:
        np.testing.assert_allclose(got, exp, err_msg=what, **tol(dtype))


def assert_exact(got, exp, what):
    assert got.dtype == exp.dtype and got.shape == exp.shape, (what, got.dtype, got.shape)
    if not np.array_equal(got, exp, equal_nan=True):
        bad = np.argwhere(~((got == exp) | (np.isnan(got) & np.isnan(exp))))[:5]
        detail = [(tuple(i), got[tuple(i)], exp[tuple(i)]) for i in bad]
        raise AssertionError(f"{what}: not bit-identical at (index, gpu, cpu) {detail}")


def _case(cfg, dtype, layout, scale, out_size=(3, 2)):
    op, kw = cfg
    rng = case_rng(op, sorted(kw.items()), dtype.__name__, layout, scale)
    x = to_layout(make_input(rng, dtype), layout)
    rois = make_rois(rng, scale, k=14)
    kw = {"spatial_scale": scale, "layout": layout, **kw}
    cpu_out = FWD[op](x, rois, out_size, **kw)
    grad = rng.standard_normal(cpu_out.shape).astype(dtype)
    return op, kw, x, rois, grad, cpu_out


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("scale", SCALES, ids=case_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
@pytest.mark.parametrize("cfg", CONFIGS, ids=_cid)
def test_gpu_matches_cpu(cfg, dtype, layout, scale):
    op, kw, x, rois, grad, cpu_out = _case(cfg, dtype, layout, scale)
    fwd, bwd = FWD[op], BWD[op]
    xg, rg, gg = g(x), g(rois), g(grad)

    out = fwd(xg, rg, (3, 2), **kw)
    assert isinstance(out, cupy.ndarray)
    if op == "pool":
        assert_exact(h(out), cpu_out, "forward")
    else:
        assert_close(h(out), cpu_out, dtype, "forward")

    cpu_grad = bwd(grad, x, rois, (3, 2), **kw)
    fast = h(bwd(gg, xg, rg, (3, 2), **kw))
    det1 = h(bwd(gg, xg, rg, (3, 2), deterministic=True, **kw))
    det2 = h(bwd(gg, xg, rg, (3, 2), deterministic=True, **kw))
    assert_exact(det1, det2, "deterministic backward run to run")
    if op == "pool":
        # routing: the gradient lands on exactly the CPU's winners; a pixel that
        # wins one bin only gets that bin's gradient bit for bit, pixels that win
        # several may differ by the order of the atomic additions
        hits = bwd(np.ones_like(grad), x, rois, (3, 2), **kw).astype(np.float64)
        single = hits <= 1
        assert_exact(fast[single], cpu_grad[single], "atomic backward (single-hit pixels)")
        assert_exact(det1, cpu_grad, "deterministic backward")
        assert_close(fast, cpu_grad, dtype, "atomic backward")
        np.testing.assert_array_equal(fast != 0, cpu_grad != 0, err_msg="routing")
    else:
        assert_close(fast, cpu_grad, dtype, "atomic backward")
        assert_close(det1, cpu_grad, dtype, "deterministic backward")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=case_id)
@pytest.mark.parametrize("cfg", CONFIGS, ids=_cid)
def test_bit_exact_with_cpu(cfg, dtype, layout):
    # design claim: same operations in the same order, no FMA contraction
    for scale in (1.0, 0.5):
        op, kw, x, rois, grad, cpu_out = _case(cfg, dtype, layout, scale, out_size=(2, 3))
        assert_exact(h(FWD[op](g(x), g(rois), (2, 3), **kw)), cpu_out, f"forward scale={scale}")
        cpu_grad = BWD[op](grad, x, rois, (2, 3), **kw)
        det = h(BWD[op](g(grad), g(x), g(rois), (2, 3), deterministic=True, **kw))
        assert_exact(det, cpu_grad, f"deterministic backward scale={scale}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=case_id)
@pytest.mark.parametrize("bins", ["fast_rcnn", "equal"])
def test_pool_stored_winners_match_cpu(bins, dtype, layout):
    """return_indices / indices= on the GPU: the CPU's winners and output bit for
    bit; the deterministic backward from them is the CPU's gradient bit for bit,
    the atomic one routes to the same pixels."""
    cfg = ("pool", {"bins": bins})
    _, kw, x, rois, grad, _ = _case(cfg, dtype, layout, 0.5)
    out_c, idx_c = roicore.roi_pool(x, rois, (3, 2), return_indices=True, **kw)
    out_g, idx_g = roicore.roi_pool(g(x), g(rois), (3, 2), return_indices=True, **kw)
    assert isinstance(idx_g, cupy.ndarray) and idx_g.dtype == idx_c.dtype == np.int32
    assert_exact(h(out_g), out_c, "forward with return_indices")
    np.testing.assert_array_equal(h(idx_g), idx_c, err_msg="winners")
    cpu_grad = roicore.roi_pool_backward(grad, x, rois, (3, 2), **kw)
    det = h(roicore.roi_pool_backward(g(grad), g(x), g(rois), (3, 2), deterministic=True,
                                      indices=idx_g, **kw))
    assert_exact(det, cpu_grad, "deterministic backward from winners")
    fast = h(roicore.roi_pool_backward(g(grad), g(x), g(rois), (3, 2), indices=idx_g, **kw))
    assert_close(fast, cpu_grad, dtype, "atomic backward from winners")
    np.testing.assert_array_equal(fast != 0, cpu_grad != 0, err_msg="routing")
    H_, W_ = (x.shape[1], x.shape[2]) if layout == "NHWC" else x.shape[2:]
    for bad in (idx_g + H_ * W_, idx_g - 5):
        with pytest.raises(ValueError, match="indices"):
            roicore.roi_pool_backward(g(grad), g(x), g(rois), (3, 2), indices=bad, **kw)
    with pytest.raises(ValueError, match=r"indices.*shape"):
        roicore.roi_pool_backward(g(grad), g(x), g(rois), (3, 2), indices=idx_g[:1], **kw)


def test_sampled_stored_winners_are_cpu_only():
    _, kw, x, rois, grad, _ = _case(("align", {"mode": "max", "sampling_ratio": 2}),
                                     np.float32, "NCHW", 1.0)
    with pytest.raises(NotImplementedError, match="CPU backend only"):
        roicore.roi_align(g(x), g(rois), (3, 2), return_indices=True, **kw)
    idx = np.zeros(grad.shape, np.int32)
    with pytest.raises(NotImplementedError, match="CPU backend only"):
        roicore.roi_align_backward(g(grad), g(x), g(rois), (3, 2), indices=g(idx), **kw)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_cid)
def test_deterministic_many_overlapping_rois(cfg):
    op, kw = cfg
    rng = case_rng("overlap", op, sorted(kw.items()))
    x = make_input(rng, np.float32, (2, 4, 16, 17))
    base = make_rois(rng, 1.0, h=16, w=17, k=14)
    shifts = [np.array([0, dx, dy, dx, dy]) for dx in (0, 0.25, 0.5) for dy in (0, 0.5)]
    rois = np.concatenate([base + d for d in shifts] * 3)
    grad = rng.standard_normal((len(rois), 4, 3, 3)).astype(np.float32)
    xg, rg, gg = g(x), g(rois), g(grad)
    runs = [h(BWD[op](gg, xg, rg, 3, deterministic=True, **kw)) for _ in range(3)]
    for r in runs[1:]:
        assert_exact(r, runs[0], "run to run")
    cpu = BWD[op](grad, x, rois, 3, **kw)
    assert_close(runs[0], cpu, np.float32, "vs CPU")
    assert_close(h(BWD[op](gg, xg, rg, 3, **kw)), cpu, np.float32, "atomic vs CPU")


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 255), (2, 257), (3, 700), (7, 256), (40, 1000)])
def test_csr_groups_rois_by_image_in_order(n, k):
    # the deterministic backward's RoI order: the CPU backend's stable argsort by batch
    # index, invalid indices left out (built on the device by rc_roi_count / rc_roi_csr)
    from roicore._backends import cuda as _gpu
    from roicore._validation import Shapes

    rng = case_rng("csr", n, k)
    b = rng.integers(-1, n + 1, k).astype(np.float64)
    b[rng.random(k) < 0.05] = np.nan
    rois = np.zeros((k, 5), np.float32)
    rois[:, 0] = b
    batch = np.where(np.isnan(b), -(2**62), b).astype(np.int64)  # the exact indices
    order, starts = _gpu._csr(g(rois), g(batch), Shapes(n, 1, 1, 1, k, 1, 1, "NCHW"), "float",
                              False)
    order, starts = h(order), h(starts)
    valid = (b >= 0) & (b < n)
    key = np.where(valid, np.nan_to_num(b), n).astype(np.int64)
    exp = np.argsort(key, kind="stable")
    np.testing.assert_array_equal(starts, np.searchsorted(key[exp], np.arange(n + 1)))
    np.testing.assert_array_equal(order[: valid.sum()], exp[: valid.sum()])


# --------------------------------------------------------------------------- RoI checks

SOME = [
    CONFIGS[0],
    CONFIGS[1],
    CONFIGS[2],
    CONFIGS[6],
    ("warp", {"mode": "max"}),
    ("warp", {"compat": "mnc"}),
]


def _bad_batch_rois():
    rng = case_rng("bad-batch")
    rois = make_rois(rng, 1.0, k=8)
    rois[1, 0] = N  # out of range
    rois[3, 0] = -1
    rois[5, 0] = 1e9
    rois[6, 0] = np.nan
    return rois, np.array([1, 3, 5, 6])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", SOME, ids=_cid)
def test_invalid_batch_index_with_checks_skipped_gives_zeros(cfg, layout):
    op, kw = cfg
    rng = case_rng("bad-batch-x", layout)
    x = to_layout(make_input(rng, np.float32), layout)
    rois, bad = _bad_batch_rois()
    good = np.setdiff1d(np.arange(len(rois)), bad)
    kw = {"layout": layout, **kw}
    with pytest.raises(ValueError, match="rois"):  # checks on: refused
        FWD[op](g(x), g(rois), 2, **kw)
    with gpu_checks(False):
        out = h(FWD[op](g(x), g(rois), 2, **kw))
    assert np.all(out[bad] == 0)
    exp = FWD[op](x, rois[good], 2, **kw)
    np.testing.assert_allclose(out[good], exp, rtol=1e-6, atol=1e-7)
    grad = rng.standard_normal(out.shape).astype(np.float32)
    exp_grad = BWD[op](grad[good], x, rois[good], 2, **kw)
    for det in (False, True):
        with gpu_checks(False):
            got = h(BWD[op](g(grad), g(x), g(rois), 2, deterministic=det, **kw))
        np.testing.assert_allclose(
            got, exp_grad, rtol=1e-5, atol=1e-6, err_msg=f"deterministic={det}"
        )


def test_skip_checks_with_environment_variable(monkeypatch):
    x = make_input(case_rng("env"), np.float32)
    rois, bad = _bad_batch_rois()
    with pytest.raises(ValueError):
        roicore.roi_align(g(x), g(rois), 2)
    monkeypatch.setenv("ROICORE_GPU_SKIP_ROI_CHECK", "1")
    out = h(roicore.roi_align(g(x), g(rois), 2))
    assert np.all(out[bad] == 0)
    with gpu_checks(True), pytest.raises(ValueError):  # the context manager wins
        roicore.roi_align(g(x), g(rois), 2)


def test_non_finite_coordinates_with_checks_skipped_do_not_crash():
    x = make_input(case_rng("nan"), np.float32)
    rois = np.array(
        [
            [0, np.nan, 1, 4, 5],
            [1, 1, np.inf, 4, 5],
            [0, -np.inf, 1, np.inf, 5],
            [1, 1, 1, 1e30, 1e30],
            [0, 1, 2, 5, 6],
        ],
        np.float64,
    )
    with pytest.raises(ValueError, match="finite"):
        roicore.roi_pool(g(x), g(rois), 2)
    with gpu_checks(False):
        for op, kw in [
            ("pool", {}),
            ("align", {}),
            ("align", {"mode": "max"}),
            ("warp", {}),
            ("warp", {"compat": "mnc"}),
            ("align", {"sampling_ratio": 2}),
        ]:
            out = FWD[op](g(x), g(rois), 2, **kw)
            grad = cupy.ones_like(out)
            for det in (False, True):
                BWD[op](grad, g(x), g(rois), 2, deterministic=det, **kw)
            cupy.cuda.Device().synchronize()
            np.testing.assert_allclose(h(out)[4], FWD[op](x, rois[4:], 2, **kw)[0], rtol=1e-6)


def test_sampling_grid_limit():
    # a 5000 x 5000 RoI with one bin needs 2.5e7 > 2**24 adaptive samples per bin
    x = make_input(case_rng("grid"), np.float32)
    rois = np.array([[0, 1, 1, 5, 5], [1, 0, 0, 5000, 5000]], np.float64)
    with pytest.raises(ValueError, match=r"RoI 1 needs 2\.5e\+07 samples per bin"):
        roicore.roi_align(x, rois, 1)  # the CPU backend
    with pytest.raises(ValueError, match=r"RoI 1 needs 2\.5e\+07 samples per bin"):
        roicore.roi_align(g(x), g(rois), 1)
    with pytest.raises(ValueError, match=r"RoI 1 needs 2\.5e\+07 samples per bin"):
        roicore.roi_align_backward(g(np.ones((2, C, 1, 1), np.float32)), g(x), g(rois), 1)
    with gpu_checks(False):  # no check: that RoI gives 0 instead of running for hours
        out = h(roicore.roi_align(g(x), g(rois), 1))
        grad = roicore.roi_align_backward(g(np.ones((2, C, 1, 1), np.float32)), g(x), g(rois), 1)
    assert np.all(out[1] == 0)
    np.testing.assert_allclose(out[:1], roicore.roi_align(x, rois[:1], 1), rtol=1e-6)
    np.testing.assert_allclose(
        h(grad),
        roicore.roi_align_backward(np.ones((1, C, 1, 1), np.float32), x, rois[:1], 1),
        rtol=1e-6,
    )
    # a fixed sampling_ratio never hits the limit
    roicore.roi_align(g(x), g(rois[:, :]), 1, sampling_ratio=1)


# --------------------------------------------------------------------------- API forms


@pytest.mark.parametrize("cfg", SOME, ids=_cid)
def test_empty_rois(cfg):
    op, kw = cfg
    x = make_input(case_rng("empty"), np.float32)
    rois = np.zeros((0, 5), np.float64)
    out = FWD[op](g(x), g(rois), (3, 2), **kw)
    assert isinstance(out, cupy.ndarray) and out.shape == (0, C, 3, 2)
    for det in (False, True):
        gi = BWD[op](
            g(np.zeros((0, C, 3, 2), np.float32)), g(x), g(rois), (3, 2), deterministic=det, **kw
        )
        assert gi.shape == x.shape and not h(gi).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_out_parameter(dtype):
    rng = case_rng("out", dtype.__name__)
    x = make_input(rng, dtype)
    rois = make_rois(rng, 1.0, k=14)
    buf = cupy.empty((len(rois), C, 3, 3), dtype)
    res = roicore.roi_align(g(x), g(rois), 3, out=buf)
    assert res is buf
    assert_close(h(buf), roicore.roi_align(x, rois, 3), dtype, "out=")
    with pytest.raises(ValueError):
        roicore.roi_align(g(x), g(rois), 3, out=cupy.empty((1, C, 3, 3), dtype))


def test_non_contiguous_input_and_integer_rois():
    rng = case_rng("noncontig")
    x = make_input(rng, np.float32, (N, H, W, C))
    xg = g(x).transpose(0, 3, 1, 2)  # NCHW view of NHWC memory
    assert not xg.flags.c_contiguous
    rois = np.array([[0, 1, 1, 6, 7], [1, 0, 2, 10, 8]], np.int64)
    xc = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    for fwd in FWD.values():
        assert_close(h(fwd(xg, g(rois), 3)), fwd(xc, rois, 3), np.float32, fwd.__name__)


def test_rois_as_list():
    rng = case_rng("list")
    x = make_input(rng, np.float64)
    rois = make_rois(rng, 1.0, k=14)
    rois = rois[np.argsort(rois[:, 0], kind="stable")]
    as_list = [g(rois[rois[:, 0] == b, 1:]) for b in range(N)]
    for op, fwd in FWD.items():
        a = h(fwd(g(x), as_list, 3))
        np.testing.assert_allclose(a, fwd(x, rois, 3), rtol=1e-12, atol=1e-13, err_msg=op)


def test_runs_on_the_current_stream():
    rng = case_rng("stream")
    x = make_input(rng, np.float32)
    rois = make_rois(rng, 1.0, k=14)
    exp = roicore.roi_align(x, rois, 3, sampling_ratio=2)
    grad = rng.standard_normal(exp.shape).astype(np.float32)
    exp_grad = roicore.roi_align_backward(grad, x, rois, 3, sampling_ratio=2)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        xg, rg, gg = g(x), g(rois), g(grad)
        out = roicore.roi_align(xg, rg, 3, sampling_ratio=2)
        gi = roicore.roi_align_backward(gg, xg, rg, 3, sampling_ratio=2, deterministic=True)
        stream.synchronize()
    assert_close(h(out), exp, np.float32, "forward on a stream")
    assert_close(h(gi), exp_grad, np.float32, "backward on a stream")


def test_no_device_sync_when_checks_are_off():
    cupyx = pytest.importorskip("cupyx")
    if not hasattr(cupyx, "allow_synchronize"):
        pytest.skip("this CuPy has no cupyx.allow_synchronize")
    rng = case_rng("nosync")
    x = make_input(rng, np.float32)
    rois = make_rois(rng, 1.0, k=14)
    xg, rg = g(x), g(rois)
    for op in FWD:  # compile outside the guarded block
        BWD[op](FWD[op](xg, rg, 2), xg, rg, 2, deterministic=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gpu_checks(False), cupyx.allow_synchronize(False):
            for op in FWD:
                out = FWD[op](xg, rg, 2)
                BWD[op](out, xg, rg, 2)
                BWD[op](out, xg, rg, 2, deterministic=True)


def test_second_device_if_present():
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("one CUDA device")
    rng = case_rng("dev1")
    x = make_input(rng, np.float32)
    rois = make_rois(rng, 1.0, k=14)
    with cupy.cuda.Device(1):
        xg, rg = g(x), g(rois)
    out = roicore.roi_align(xg, rg, 3)  # current device is 0, data on 1
    assert out.device == xg.device
    assert_close(h(out), roicore.roi_align(x, rois, 3), np.float32, "device 1")


@pytest.mark.parametrize("op", ["pool", "align", "warp"])
def test_batch_index_beyond_float32_is_exact(op):
    # 2**24 + 2 one-pixel images (64 MiB): the kernels read the batch index from an exact
    # int64 array, not from the rois cast to float32 (where 2**24 + 1 becomes 2**24).
    # The deterministic backward is left out: its CSR build walks every image.
    n = 2**24 + 2
    x = np.zeros((n, 1, 1, 1), np.float32)
    x[2**24] = 5.0
    x[2**24 + 1] = 7.0
    r = np.array([[2**24 + 1, 0, 0, 0, 0], [2**24, 0, 0, 0, 0]], np.float64)
    assert h(FWD[op](g(x), g(r), 1)).ravel().tolist() == [7.0, 5.0]
    gi = h(BWD[op](g(np.array([3.0, 2.0], np.float32).reshape(2, 1, 1, 1)), g(x), g(r), 1))
    nz = np.flatnonzero(gi)
    assert nz.tolist() == [2**24, 2**24 + 1] and gi.ravel()[nz].tolist() == [2.0, 3.0]


def test_long_thin_box_runs_as_on_the_cpu():
    # 333334 x 3 adaptive samples per bin: within the per-bin limit (the old per-side limit
    # of 65536 refused it); same result as the CPU backend, forward and atomic backward
    x = make_input(case_rng("thin"), np.float32)
    rois = np.array([[0, 0.5, 1.0, 1e6, 6.0], [1, 3, 1, 40, 7]], np.float32)
    out = h(roicore.roi_align(g(x), g(rois), (2, 3)))
    np.testing.assert_array_equal(out, roicore.roi_align(x, rois, (2, 3)))
    grad = np.ones(out.shape, np.float32)
    gi = h(roicore.roi_align_backward(g(grad), g(x), g(rois), (2, 3)))
    np.testing.assert_allclose(gi, roicore.roi_align_backward(grad, x, rois, (2, 3)), rtol=1e-5,
                               atol=1e-6)
