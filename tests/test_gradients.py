"""Gradient checks of roicore's backward functions, in float64, against roicore's own forward.

* central finite differences of L(x) = <g, op(x)> for every op / mode, skipping the few
  coordinates whose +-eps perturbation crosses a kink (a change of the max winner), which is
  detected by the one-sided differences disagreeing;
* the adjoint identity <backward(g), x> == <g, forward(x)>.  For the linear modes (roi_align
  avg, roi_warp avg, roi_warp compat="mnc") this is the definition of the adjoint; the max
  modes are positively homogeneous and piecewise linear (output = weights . input of the
  winner, backward scatters the same weights), so the identity holds for them too.
"""

import zlib

import numpy as np
import pytest

import roicore

OPS = {
    "pool_fast_rcnn": (roicore.roi_pool, roicore.roi_pool_backward, {"bins": "fast_rcnn"}),
    "pool_equal": (roicore.roi_pool, roicore.roi_pool_backward, {"bins": "equal"}),
    "align_avg": (roicore.roi_align, roicore.roi_align_backward, {"mode": "avg"}),
    "align_avg_aligned_sr2": (
        roicore.roi_align,
        roicore.roi_align_backward,
        {"mode": "avg", "aligned": True, "sampling_ratio": 2},
    ),
    "align_max": (roicore.roi_align, roicore.roi_align_backward, {"mode": "max"}),
    "align_max_aligned_sr1": (
        roicore.roi_align,
        roicore.roi_align_backward,
        {"mode": "max", "aligned": True, "sampling_ratio": 1},
    ),
    "warp_avg": (roicore.roi_warp, roicore.roi_warp_backward, {"mode": "avg"}),
    "warp_max_sr2": (
        roicore.roi_warp,
        roicore.roi_warp_backward,
        {"mode": "max", "sampling_ratio": 2},
    ),
    "warp_mnc": (roicore.roi_warp, roicore.roi_warp_backward, {"compat": "mnc"}),
}


def case_rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def distinct_input(rng, shape):
    """Distinct float64 values at least ~1/(2n) apart: no ties within +-eps."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) + rng.uniform(0.25, 0.75, n)) / n - 0.5).reshape(shape)


# feature-map coordinates (scale 0.5 in the calls below doubles them): inside, partly
# outside, degenerate, sub-pixel, larger than the map, on another batch image
ROIS_FEAT = np.array(
    [
        [0, 0.3, 0.6, 4.7, 3.2],
        [1, -2.0, -1.0, 3.0, 2.5],
        [1, 4.5, 2.5, 9.0, 7.0],
        [0, 2.0, 1.0, 2.2, 1.1],
        [1, 4.0, 3.0, 1.0, 0.5],
        [0, -6.0, -5.0, 12.0, 10.0],
        [0, 5.5, 0.5, 6.5, 4.5],
    ]
)
SCALE = 0.5
ROIS = np.concatenate([ROIS_FEAT[:, :1], ROIS_FEAT[:, 1:] / SCALE], axis=1)


def _call(fn, layout, *arrays, **kw):
    """Call roicore in the given layout with NCHW arrays (first len(arrays) args)."""
    if layout == "NHWC":
        arrays = [np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in arrays]
    res = fn(*arrays, **kw)
    if layout == "NHWC":
        res = np.ascontiguousarray(res.transpose(0, 3, 1, 2))
    return res


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("op", list(OPS))
def test_finite_differences(op, layout):
    fwd, bwd, kw = OPS[op]
    rng = case_rng("fd", op)
    x = distinct_input(rng, (2, 2, 5, 7))
    out_size = (3, 2)

    def loss(xv):  # single-threaded: hundreds of tiny calls
        out = _call(
            lambda a: fwd(a, ROIS, out_size, SCALE, layout=layout, num_threads=1, **kw),
            layout,
            xv,
        )
        return float(np.vdot(g, out))

    out0 = _call(lambda a: fwd(a, ROIS, out_size, SCALE, layout=layout, **kw), layout, x)
    assert out0.shape == (len(ROIS), 2, 3, 2)
    g = rng.standard_normal(out0.shape)
    analytic = _call(
        lambda gg, xx: bwd(gg, xx, ROIS, out_size, SCALE, layout=layout, **kw), layout, g, x
    )
    assert analytic.shape == x.shape and analytic.dtype == np.float64

    eps = 1e-6
    f0 = loss(x)
    checked = nonzero_checked = 0
    errors = []
    for idx in np.ndindex(*x.shape):
        xp = x.copy()
        xm = x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fp, fm = loss(xp), loss(xm)
        if abs((fp - f0) - (f0 - fm)) > 1e-9:
            continue  # the perturbation changes a max winner: not differentiable here
        checked += 1
        fd = (fp - fm) / (2 * eps)
        nonzero_checked += analytic[idx] != 0
        if abs(fd - analytic[idx]) > 1e-7 + 1e-6 * abs(fd):
            errors.append((idx, fd, analytic[idx]))
    assert not errors, f"(index, finite difference, backward): {errors[:8]}"
    assert checked >= 0.9 * x.size, (checked, x.size)
    assert nonzero_checked >= 10, nonzero_checked  # the check is not vacuous


def _random_rois(rng, k, n, h, w, scale):
    x1 = rng.uniform(-0.4 * w, 1.1 * w, k)
    y1 = rng.uniform(-0.4 * h, 1.1 * h, k)
    x2 = x1 + rng.uniform(-2, w, k)
    y2 = y1 + rng.uniform(-2, h, k)
    b = rng.integers(0, n, k)
    return np.stack([b, x1 / scale, y1 / scale, x2 / scale, y2 / scale], axis=1)


SAMPLING = [-1, 0, 1, 2]
ADJOINT_CASES = [
    (op, sr, scale)
    for op in OPS
    for sr in ([-1] if op.startswith("pool") else [-1, 0, 1] if op == "warp_mnc" else SAMPLING)
    for scale in (1.0, 0.5, 1.0 / 16)
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(("op", "sampling_ratio", "scale"), ADJOINT_CASES)
def test_adjoint_identity(op, sampling_ratio, scale, layout):
    fwd, bwd, kw = OPS[op]
    kw = dict(kw)
    if fwd is not roicore.roi_pool:
        kw["sampling_ratio"] = sampling_ratio
    rng = case_rng("adjoint", op, sampling_ratio, scale)
    n, c, h, w = 2, 3, 9, 11
    x = rng.standard_normal((n, c, h, w))
    rois = _random_rois(rng, 12, n, h, w, scale)
    out = _call(lambda a: fwd(a, rois, (2, 3), scale, layout=layout, **kw), layout, x)
    g = rng.standard_normal(out.shape)
    gi = _call(lambda gg, a: bwd(gg, a, rois, (2, 3), scale, layout=layout, **kw), layout, g, x)
    lhs = float(np.vdot(gi, x))
    rhs = float(np.vdot(g, out))
    magnitude = float(np.vdot(np.abs(g), np.abs(out)))
    assert magnitude > 0
    assert abs(lhs - rhs) <= 1e-10 * max(abs(rhs), 1e-3 * magnitude), (lhs, rhs)
