"""RoI Pool (``roicore.roi_pool``, ``roi_pool_backward``): the shared operator tests
(``RoIOpTester``: oracle parity, gradients, threads, layouts, validation) and what only RoI
Pool has: Fast R-CNN / equal bins, first-wins ties, NaN and -inf, the seed's worked example.

The seed's map and expected output are transcribed from ../shared/seeds/001_8a1a2298fcb889bb.txt,
not computed by roicore.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from cases import C, H, N, W, case_id, case_rng, make_input, make_rois
from optable import (
    DTYPES,
    OUT_SIZES,
    SCALES,
    R,
    X,
    assert_exact,
    assert_matches,
    make_grad,
    raises,
    run_both_layouts,
)
from roi_op_tester import RoIOpTester

import roicore


class TestRoIPool(RoIOpTester):
    OP = "pool"


# --------------------------------------------------------------------------- oracle parity


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


# --------------------------------------------------------------------------- validation


def test_bins():
    raises(ValueError, "`bins` must be one of", roicore.roi_pool, X, R, 2, bins="caffe")


# --------------------------------------------------------------------------- the seed example

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


# --------------------------------------------------------------------------- stored winners


def _winner_case(dtype, layout, bins, seed):
    rng = case_rng("pool-indices", dtype.__name__, layout, bins, seed)
    x = rng.integers(0, 4, size=(N, C, H, W)).astype(dtype)  # many ties: first wins
    x[0, :, 2:5, 3:7] = np.nan  # NaN never wins
    x[1, 1, :, :] = -np.inf  # nothing wins: index -1, gradient dropped
    rois = make_rois(rng, 1.0, k=12)
    return x, rois


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("bins", ["fast_rcnn", "equal"])
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_roi_pool_stored_winners(dtype, bins, layout):
    x, rois = _winner_case(dtype, layout, bins, 0)
    out_size = (3, 4)
    ref_out, ref_arg = ref.roi_pool_argmax(x, rois, out_size, bins=bins)
    to = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if layout == "NHWC" else (
        lambda a: a)
    xi = to(x)
    out, idx = roicore.roi_pool(xi, rois, out_size, bins=bins, layout=layout,
                                return_indices=True)
    assert idx.dtype == np.int32 and idx.shape == out.shape  # H * W < 2**31
    np.testing.assert_array_equal(idx, to(ref_arg))
    assert_exact(out, to(ref_out), dtype, "roi_pool forward with return_indices")
    g = make_grad(case_rng("pool-indices-grad", dtype.__name__), out.shape, dtype)
    for nt in (1, 2, 3):
        plain = roicore.roi_pool_backward(g, xi, rois, out_size, bins=bins, layout=layout,
                                          num_threads=nt)
        stored = roicore.roi_pool_backward(g, xi, rois, out_size, bins=bins, layout=layout,
                                           num_threads=nt, indices=idx)
        # bit-identical to the backward that recomputes the winners
        assert stored.dtype == plain.dtype and stored.tobytes() == plain.tobytes(), nt
    g_nchw = np.ascontiguousarray(g.transpose(0, 3, 1, 2)) if layout == "NHWC" else g
    ref_grad = ref.roi_pool_backward(g_nchw, x, rois, out_size, bins=bins)
    np.testing.assert_allclose(stored, to(ref_grad), rtol=1e-2 if dtype == np.float16 else 1e-6,
                               atol=1e-2 if dtype == np.float16 else 1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", [(3, 37, 9, 11), (2, 40, 120, 90), (1, 1, 5, 5)])
def test_roi_pool_indices_backward_any_channel_blocks(shape, layout, dtype):
    """The backward from stored winners cuts (image, channel block) items whose block
    depends on the map size and the thread count: any cut gives the recomputing
    backward's bytes (additions per element in RoI, then bin order)."""
    rng = case_rng("pool-indices-blocks", f"{shape}{layout}{dtype.__name__}")
    N, _, Hh, Ww = shape
    x = rng.standard_normal(shape).astype(dtype)
    x[..., : Hh // 2, :] = np.round(x[..., : Hh // 2, :])  # ties: first winner kept
    K = 23
    xy = rng.uniform(-2, max(Hh, Ww) + 2, (K, 2, 2))
    rois = np.concatenate([rng.integers(0, N, (K, 1)), xy.min(1), xy.max(1)], 1).astype(dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    out, idx = roicore.roi_pool(x, rois, (3, 4), layout=layout, return_indices=True)
    g = rng.standard_normal(out.shape).astype(dtype)
    want = roicore.roi_pool_backward(g, x, rois, (3, 4), layout=layout, num_threads=1)
    for nt in (1, 2, 3, 5, 8, 64):
        got = roicore.roi_pool_backward(g, x, rois, (3, 4), layout=layout, num_threads=nt,
                                        indices=idx)
        assert got.tobytes() == want.tobytes(), nt


def test_roi_pool_indices_match_torchvision_argmax():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    rng = case_rng("pool-indices-tv")
    x = make_input(rng, np.float32)
    rois = make_rois(rng, 0.5).astype(np.float32)
    _, idx = roicore.roi_pool(x, rois, (4, 3), 0.5, return_indices=True)
    _, argmax = torch.ops.torchvision.roi_pool(torch.from_numpy(x), torch.from_numpy(rois),
                                               0.5, 4, 3)
    np.testing.assert_array_equal(idx, argmax.numpy())


def test_roi_pool_indices_with_aliasing_out_and_empty():
    x, rois = _winner_case(np.float32, "NCHW", "fast_rcnn", 1)
    ref_out, ref_arg = ref.roi_pool_argmax(x, rois, 2)
    out = np.empty(ref_out.shape, np.float32)
    res, idx = roicore.roi_pool(x, rois, 2, out=out, return_indices=True)
    assert res is out
    np.testing.assert_array_equal(idx, ref_arg)
    out0, idx0 = roicore.roi_pool(x, rois[:0], 2, return_indices=True)
    assert out0.shape == idx0.shape == (0, C, 2, 2) and idx0.dtype == np.int32


def test_roi_pool_indices_validation():
    x, rois = _winner_case(np.float32, "NCHW", "fast_rcnn", 2)
    out, idx = roicore.roi_pool(x, rois, 2, return_indices=True)
    g = np.ones_like(out)
    with pytest.raises(ValueError, match=r"indices.*shape"):
        roicore.roi_pool_backward(g, x, rois, 2, indices=idx[:1])
    with pytest.raises(TypeError, match=r"indices.*integer"):
        roicore.roi_pool_backward(g, x, rois, 2, indices=idx.astype(np.float32))
    with pytest.raises(ValueError, match=r"indices.*\[0, "):
        roicore.roi_pool_backward(g, x, rois, 2, indices=idx + H * W)
    with pytest.raises(ValueError, match="indices"):
        roicore.roi_pool_backward(g, x, rois, 2, indices=idx - 5)
    with pytest.raises(TypeError, match=r"indices.*numpy"):
        roicore.roi_pool_backward(g, x, rois, 2, indices=idx.tolist())
    with pytest.raises((TypeError, ValueError), match="return_indices"):
        roicore.roi_pool(x, rois, 2, return_indices="yes")
    # the backward scatters through the given winners (none: no gradient at all)
    none = roicore.roi_pool_backward(g, x, rois, 2, indices=np.full_like(idx, -1))
    assert not none.any()
    # other integer dtypes are accepted (int64 as is, the rest widened)
    b = roicore.roi_pool_backward(g, x, rois, 2)
    for t in (np.int64, np.int16):
        a = roicore.roi_pool_backward(g, x, rois, 2, indices=idx.astype(t))
        assert a.tobytes() == b.tobytes(), t
    big = idx.astype(np.uint64)
    big[0, 0, 0, 0] = 2**64 - 1
    with pytest.raises(ValueError, match="indices"):
        roicore.roi_pool_backward(g, x, rois, 2, indices=big)
    with pytest.raises(ValueError, match="indices"):
        roicore.roi_pool_backward(g, x, rois, 2, indices=(idx + H * W).astype(np.int64))


@pytest.mark.parametrize("isa", roicore._cpu.ISA_NAMES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=case_id)
def test_roi_pool_stored_winners_every_isa_and_channel_block(dtype, layout, isa):
    """70 channels: a full block of 64 (whole lane groups) and a partial one,
    on every instruction set; winners and output as the NumPy oracle's."""
    rng = case_rng("pool-indices-isa", dtype.__name__, layout, isa)
    x = rng.integers(0, 5, size=(2, 70, 9, 11)).astype(dtype)  # ties: first wins
    x[1, 3:40, 2:6, 1:8] = np.nan
    rois = make_rois(rng, 1.0, k=9)
    ref_out, ref_arg = ref.roi_pool_argmax(x, rois, (3, 2))
    to = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if layout == "NHWC" else (
        lambda a: a)
    before = roicore._cpu.cpu_isa()
    try:
        roicore._cpu.set_cpu_isa(isa)
        out, idx = roicore.roi_pool(to(x), rois, (3, 2), layout=layout, num_threads=2,
                                    return_indices=True)
    finally:
        roicore._cpu.set_cpu_isa(before)
    np.testing.assert_array_equal(idx, to(ref_arg))
    assert_exact(out, to(ref_out), dtype, f"forward with return_indices ({isa})")
