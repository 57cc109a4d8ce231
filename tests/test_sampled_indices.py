"""Stored winners of the max modes of RoI Align / RoI Warp (issue 14):
``return_indices=True`` on the forward, ``indices=`` on the backward.

The winners are checked against the NumPy oracle's max rule
(``reference.roi_align_max_winners``), the forward output against the plain
forward (bit for bit), and the backward from the winners against the
recomputing backward (bit for bit, every thread count and instruction set) and
the oracle's backward."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from cases import case_id, case_rng, make_rois
from optable import make_grad

import roicore

OPS = {
    "align": (roicore.roi_align, roicore.roi_align_backward),
    "warp": (roicore.roi_warp, roicore.roi_warp_backward),
}
CONFIGS = [
    ("align", {"aligned": False, "sampling_ratio": -1}),
    ("align", {"aligned": True, "sampling_ratio": 0}),
    ("align", {"aligned": True, "sampling_ratio": 2}),
    ("align", {"aligned": False, "sampling_ratio": 3}),
    ("warp", {"sampling_ratio": -1}),
    ("warp", {"sampling_ratio": 2}),
]


def _cid(cfg):
    op, kw = cfg
    return op + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _case(cfg, dtype, seed=0, C=5):
    op, kw = cfg
    rng = case_rng("sampled-indices", op, sorted(kw.items()), dtype.__name__, seed, C)
    x = rng.integers(-2, 3, size=(2, C, 9, 11)).astype(dtype)  # ties: the first sample wins
    x[0, :, 2:5, 3:7] = np.nan  # NaN never wins
    x[1, 1] = -3.0  # everything below the out-of-range samples' 0: those lead (-2)
    rois = make_rois(rng, 0.5, k=14)  # inside, partial, outside, degenerate, tiny, huge
    # far outside (every sample out of range: -2), a point, and inside the NaN patch
    # (every sample NaN: -1)
    rois = np.concatenate([rois, [[1, -30, -30, -20, -20], [0, 2, 2, 2, 2],
                                  [0, 7, 5, 11, 8]]])
    return x, rois, {"spatial_scale": 0.5, "mode": "max", **kw}


def _oracle(op, x, rois, size, kw):
    T = ref.compute_dtype(x.dtype)
    if op == "align":
        return ref.roi_align_max_winners(x, rois, size, kw["spatial_scale"],
                                         kw["sampling_ratio"], kw["aligned"])
    q = ref.quantize_rois(rois, kw["spatial_scale"], T)
    return ref.roi_align_max_winners(x, q, size, 1.0, kw["sampling_ratio"], False)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=case_id)
@pytest.mark.parametrize("cfg", CONFIGS, ids=_cid)
def test_winners_and_bit_identical_backward(cfg, dtype, layout):
    op, _ = cfg
    fwd, bwd = OPS[op]
    x, rois, kw = _case(cfg, dtype)
    size = (3, 2)
    to = _nhwc if layout == "NHWC" else (lambda a: a)
    xi = to(x)
    plain = fwd(xi, rois, size, layout=layout, **kw)
    out, idx = fwd(xi, rois, size, layout=layout, return_indices=True, **kw)
    assert idx.dtype == np.int32 and idx.shape == out.shape
    assert out.tobytes() == plain.tobytes()  # the forward is unchanged
    ref_out, ref_win = _oracle(op, x, rois, size, kw)
    np.testing.assert_array_equal(idx, to(ref_win))
    np.testing.assert_array_equal(out, to(ref_out.astype(dtype)))
    assert {-2, -1} <= set(np.unique(idx).tolist())  # both kinds of "no gradient" occur
    g = make_grad(case_rng("sampled-indices-grad", op, dtype.__name__), out.shape, dtype)
    for nt in (1, 2, 3):
        recomputed = bwd(g, xi, rois, size, layout=layout, num_threads=nt, **kw)
        stored = bwd(g, xi, rois, size, layout=layout, num_threads=nt, indices=idx, **kw)
        assert stored.dtype == recomputed.dtype == dtype
        assert stored.tobytes() == recomputed.tobytes(), nt
    g_nchw = np.ascontiguousarray(g.transpose(0, 3, 1, 2)) if layout == "NHWC" else g
    if op == "align":
        want = ref.roi_align_backward(g_nchw, x, rois, size, kw["spatial_scale"],
                                      kw["sampling_ratio"], kw["aligned"], "max")
    else:
        want = ref.roi_warp_backward(g_nchw, x, rois, size, kw["spatial_scale"],
                                     kw["sampling_ratio"], "max")
    np.testing.assert_array_equal(stored, to(want))


@pytest.mark.parametrize("isa", roicore._cpu.ISA_NAMES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[4]], ids=_cid)
def test_every_isa_and_many_channels(cfg, layout, isa):
    """70 channels (several channel blocks); the recomputing backward runs the
    ISA's lane kernels, the winners must give its result bit for bit."""
    op, _ = cfg
    fwd, bwd = OPS[op]
    x, rois, kw = _case(cfg, np.float32, seed=1, C=70)
    xi = _nhwc(x) if layout == "NHWC" else x
    before = roicore._cpu.cpu_isa()
    try:
        roicore._cpu.set_cpu_isa(isa)
        plain = fwd(xi, rois, (2, 3), layout=layout, **kw)
        out, idx = fwd(xi, rois, (2, 3), layout=layout, return_indices=True, **kw)
        g = make_grad(case_rng("sampled-indices-isa", isa), out.shape, np.float32)
        for nt in (1, 2):
            a = bwd(g, xi, rois, (2, 3), layout=layout, num_threads=nt, **kw)
            b = bwd(g, xi, rois, (2, 3), layout=layout, num_threads=nt, indices=idx, **kw)
            assert a.tobytes() == b.tobytes(), (isa, nt)
    finally:
        roicore._cpu.set_cpu_isa(before)
    assert out.tobytes() == plain.tobytes()


def test_float16_out_and_list_rois():
    cfg = CONFIGS[0]
    x, rois, kw = _case(cfg, np.float32)
    x16 = x.astype(np.float16)
    out, idx = roicore.roi_align(x16, rois, 2, return_indices=True, **kw)
    assert out.dtype == np.float16
    assert out.tobytes() == roicore.roi_align(x16, rois, 2, **kw).tobytes()
    g = np.ones(out.shape, np.float16)
    a = roicore.roi_align_backward(g, x16, rois, 2, **kw)
    b = roicore.roi_align_backward(g, x16, rois, 2, indices=idx, **kw)
    assert a.dtype == b.dtype == np.float16 and a.tobytes() == b.tobytes()
    buf = np.empty_like(out)
    res, idx2 = roicore.roi_align(x16, rois, 2, out=buf, return_indices=True, **kw)
    assert res is buf and np.array_equal(idx2, idx)
    # int64 winners are accepted (the kernels read int32)
    c = roicore.roi_align_backward(g, x16, rois, 2, indices=idx.astype(np.int64), **kw)
    assert c.tobytes() == a.tobytes()
    # no RoI: empty winners
    o0, i0 = roicore.roi_align(x, rois[:0], 2, return_indices=True, **kw)
    assert o0.shape == i0.shape == (0, 5, 2, 2) and i0.dtype == np.int32


def test_bad_arguments_are_rejected():
    x, rois, kw = _case(CONFIGS[0], np.float32)
    out, idx = roicore.roi_align(x, rois, 2, return_indices=True, **kw)
    g = np.ones(out.shape, np.float32)
    avg = {k: v for k, v in kw.items() if k != "mode"}
    with pytest.raises(ValueError, match=r"return_indices=True needs mode='max'"):
        roicore.roi_align(x, rois, 2, return_indices=True, **avg)
    with pytest.raises(ValueError, match=r"return_indices=True needs mode='max'.*compat"):
        roicore.roi_warp(x, rois, 2, mode="max", compat="mnc", sampling_ratio=1,
                         return_indices=True)
    with pytest.raises(ValueError, match=r"indices= needs mode='max'"):
        roicore.roi_align_backward(g, x, rois, 2, indices=idx, **avg)
    with pytest.raises(TypeError, match="return_indices"):
        roicore.roi_warp(x, rois, 2, mode="max", return_indices=1)
    with pytest.raises(ValueError, match=r"indices.*shape"):
        roicore.roi_align_backward(g, x, rois, 2, indices=idx[:1], **kw)
    with pytest.raises(TypeError, match=r"indices.*integer"):
        roicore.roi_align_backward(g, x, rois, 2, indices=idx.astype(np.float32), **kw)
    with pytest.raises(TypeError, match=r"indices.*numpy"):
        roicore.roi_align_backward(g, x, rois, 2, indices=idx.tolist(), **kw)
    # values the forward cannot have stored: past the bin's grid, below -2, past int32;
    # the kernel checks every value it reads (never an out-of-bounds access)
    for bad in (idx + 10**6, np.full_like(idx, -3), idx.astype(np.int64) + 2**40):
        with pytest.raises(ValueError, match="indices"):
            roicore.roi_align_backward(g, x, rois, 2, indices=bad, **kw)
    # all -1 / -2: no gradient at all
    for fill in (-1, -2):
        none = roicore.roi_align_backward(g, x, rois, 2, indices=np.full_like(idx, fill), **kw)
        assert not none.any()


def test_winner_naming_an_out_of_range_sample_is_rejected():
    """A RoI entirely outside the map has only out-of-range samples: the forward
    stores -2 there; naming one of its samples instead is an error, not a
    scatter to a clamped corner."""
    x = np.ones((1, 2, 6, 6), np.float32)
    rois = np.array([[0, 20, 20, 30, 30]], np.float32)
    kw = {"mode": "max", "sampling_ratio": 2}
    out, idx = roicore.roi_align(x, rois, 2, return_indices=True, **kw)
    assert (idx == -2).all() and not out.any()
    with pytest.raises(ValueError, match="indices"):
        roicore.roi_align_backward(np.ones_like(out), x, rois, 2,
                                   indices=np.zeros_like(idx), **kw)
