"""The operator table the RoI tests share: the operators with their NumPy oracles, the axes
(backend x dtype x layout x contiguity), the keyword variants each family of tests runs, and the
comparisons (oracle match per dtype, bit-exact, both layouts).

A row's name is ``"<op>"`` or ``"<op>_<variant>"``; ``family(row)`` is its operator, and
``RoIOpTester`` (roi_op_tester.py) runs each row in its operator's test file.
"""

import importlib.util
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
import reference as ref
from cases import case_id

import roicore


class Op(NamedTuple):
    fwd: Callable[..., Any]
    bwd: Callable[..., Any]
    ref_fwd: Callable[..., Any]
    ref_bwd: Callable[..., Any]


# --------------------------------------------------------------------------- the table

OPS = {
    "pool": Op(roicore.roi_pool, roicore.roi_pool_backward, ref.roi_pool, ref.roi_pool_backward),
    "align": Op(roicore.roi_align, roicore.roi_align_backward, ref.roi_align,
                ref.roi_align_backward),
    "warp": Op(roicore.roi_warp, roicore.roi_warp_backward, ref.roi_warp, ref.roi_warp_backward),
}
BACKENDS = ["cpu", "cuda"]
DTYPES = [np.float32, np.float64, np.float16]
LAYOUTS = ["NCHW", "NHWC"]
CONTIGUITY = ["contiguous", "strided", "fortran"]

SCALES = [1.0, 0.5, 1.0 / 16]
SAMPLING = [-1, 0, 1, 2]
OUT_SIZES = [(3, 2), (2, 3)]

# Variants: keyword arguments by "<op>[_<variant>]".  Each family of tests keeps the variants
# it has always used (the cases are unchanged; only their home moved).
API_VARIANTS = {  # list form, int output size, tiny maps, deterministic backward
    "pool": {"bins": "fast_rcnn"},
    "pool_equal": {"bins": "equal"},
    "align": {"sampling_ratio": 2},
    "align_max_aligned": {"mode": "max", "aligned": True},
    "warp": {},
    "warp_mnc": {"compat": "mnc"},
}
ODD_SCALE_VARIANTS = {
    "pool": {"bins": "fast_rcnn"},
    "pool_equal": {"bins": "equal"},
    "align": {"sampling_ratio": -1},
    "align_aligned_max": {"sampling_ratio": 2, "aligned": True, "mode": "max"},
    "warp": {"sampling_ratio": 0},
    "warp_mnc": {"compat": "mnc"},
}
GRADIENT_VARIANTS = {
    "pool_fast_rcnn": {"bins": "fast_rcnn"},
    "pool_equal": {"bins": "equal"},
    "align_avg": {"mode": "avg"},
    "align_avg_aligned_sr2": {"mode": "avg", "aligned": True, "sampling_ratio": 2},
    "align_max": {"mode": "max"},
    "align_max_aligned_sr1": {"mode": "max", "aligned": True, "sampling_ratio": 1},
    "warp_avg": {"mode": "avg"},
    "warp_max_sr2": {"mode": "max", "sampling_ratio": 2},
    "warp_mnc": {"compat": "mnc"},
}
ADJOINT_CASES = [
    (v, sr, scale)
    for v in GRADIENT_VARIANTS
    for sr in ([-1] if v.startswith("pool") else [-1, 0, 1] if v == "warp_mnc" else SAMPLING)
    for scale in (1.0, 0.5, 1.0 / 16)
]
THREAD_VARIANTS = [
    ("pool", {"bins": "fast_rcnn"}),
    ("pool", {"bins": "equal"}),
    ("align", {"sampling_ratio": -1, "aligned": True}),
    ("align", {"sampling_ratio": 2, "aligned": False, "mode": "max"}),
    ("warp", {"sampling_ratio": 0}),
    ("warp", {"compat": "mnc"}),
]
MAX_TIE_CASES = [
    (op, sr, aligned)
    for op in ("align", "warp")
    for sr in (-1, 2)
    for aligned in ((False, True) if op == "align" else (False,))
]
# The default call of each operator for the backend x dtype x layout x contiguity axes.
AXES_VARIANTS = {"pool": {"bins": "fast_rcnn"}, "align": {"sampling_ratio": 2, "aligned": True},
                 "warp": {"sampling_ratio": 2}}


def family(row):
    """The operator a table row belongs to ("align_max" -> "align")."""
    name = row if isinstance(row, str) else row[0]
    return name.split("_")[0]


def row_id(row, i):
    if isinstance(row, str):
        return row
    if isinstance(row[1], dict):  # (op, kwargs): number the variants
        return f"{row[0]}{i}"
    return "-".join(map(case_id, row))


def over(argnames, table):
    """Parametrize a tester method by the rows of ``table`` that belong to the class's op."""

    def deco(fn):
        fn._op_table = (argnames, table)
        return fn

    return deco


# --------------------------------------------------------------------------- comparisons


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


def raises(exc, match, fn, *a, **k):
    with pytest.raises(exc, match=match):
        fn(*a, **k)


def seeded_rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def cuda_or_none():
    """CuPy, if it sees a CUDA device; else None."""
    if importlib.util.find_spec("cupy") is None:
        return None
    import cupy

    try:
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # no driver / no device
        return None


def with_contiguity(a, contiguity):
    """The same values as ``a`` in C order, as a strided view, or in Fortran order."""
    if contiguity == "contiguous":
        return np.ascontiguousarray(a)
    if contiguity == "strided":
        big = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    return np.asfortranarray(a)


# --------------------------------------------------------------------------- gradients

def distinct_input(rng, shape):
    """Distinct float64 values at least ~1/(2n) apart: no ties within +-eps."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) + rng.uniform(0.25, 0.75, n)) / n - 0.5).reshape(shape)


# feature-map coordinates (scale 0.5 in the calls below doubles them): inside, partly
# outside, degenerate, sub-pixel, larger than the map, on another batch image
GRAD_ROIS_FEAT = np.array(
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
GRAD_SCALE = 0.5
GRAD_ROIS = np.concatenate([GRAD_ROIS_FEAT[:, :1], GRAD_ROIS_FEAT[:, 1:] / GRAD_SCALE], axis=1)


def call_in_layout(fn, layout, *arrays, **kw):
    """Call roicore in the given layout with NCHW arrays (first len(arrays) args)."""
    if layout == "NHWC":
        arrays = [np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in arrays]
    res = fn(*arrays, **kw)
    if layout == "NHWC":
        res = np.ascontiguousarray(res.transpose(0, 3, 1, 2))
    return res


def random_rois(rng, k, n, h, w, scale):
    x1 = rng.uniform(-0.4 * w, 1.1 * w, k)
    y1 = rng.uniform(-0.4 * h, 1.1 * h, k)
    x2 = x1 + rng.uniform(-2, w, k)
    y2 = y1 + rng.uniform(-2, h, k)
    b = rng.integers(0, n, k)
    return np.stack([b, x1 / scale, y1 / scale, x2 / scale, y2 / scale], axis=1)


# --------------------------------------------------------------------------- threads

_T_RNG = np.random.default_rng(7)
T_X = _T_RNG.standard_normal((3, 19, 23, 29)).astype(np.float32)
_T_K = 60
_t_b = _T_RNG.integers(0, 3, _T_K)
_t_xy = _T_RNG.uniform(-20, 140, (_T_K, 2))
_t_wh = _T_RNG.uniform(-5, 120, (_T_K, 2))
T_R = np.concatenate([_t_b[:, None], _t_xy, _t_xy + _t_wh], axis=1).astype(np.float32)


def thread_fwd(op, x, layout, nt, kw):
    return OPS[op].fwd(x, T_R, (5, 4), 0.25, layout=layout, num_threads=nt, **kw)


def thread_bwd(op, g, x, layout, nt, kw):
    return OPS[op].bwd(g, x, T_R, (5, 4), 0.25, layout=layout, num_threads=nt, **kw)


# --------------------------------------------------------------------------- validation

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
