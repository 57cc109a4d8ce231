"""OpenMP is really on, and results are bit-identical for any thread count
(forward and backward: no racing scatters, no order-dependent sums)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import roicore

RNG = np.random.default_rng(7)
X = RNG.standard_normal((3, 19, 23, 29)).astype(np.float32)
K = 60
b = RNG.integers(0, 3, K)
xy = RNG.uniform(-20, 140, (K, 2))
wh = RNG.uniform(-5, 120, (K, 2))
R = np.concatenate([b[:, None], xy, xy + wh], axis=1).astype(np.float32)

CASES = [
    ("pool", {"bins": "fast_rcnn"}),
    ("pool", {"bins": "equal"}),
    ("align", {"sampling_ratio": -1, "aligned": True}),
    ("align", {"sampling_ratio": 2, "aligned": False, "mode": "max"}),
    ("warp", {"sampling_ratio": 0}),
    ("warp", {"compat": "mnc"}),
]


def _fwd(op, x, layout, nt, kw):
    f = {"pool": roicore.roi_pool, "align": roicore.roi_align, "warp": roicore.roi_warp}[op]
    return f(x, R, (5, 4), 0.25, layout=layout, num_threads=nt, **kw)


def _bwd(op, g, x, layout, nt, kw):
    f = {"pool": roicore.roi_pool_backward, "align": roicore.roi_align_backward,
         "warp": roicore.roi_warp_backward}[op]
    return f(g, x, R, (5, 4), 0.25, layout=layout, num_threads=nt, **kw)


def test_openmp_enabled():
    # CI builds with OpenMP; a serial build must be a deliberate choice.
    if os.environ.get("ROICORE_NO_OPENMP"):
        pytest.skip("ROICORE_NO_OPENMP set: serial build requested")
    assert roicore.openmp_enabled()


@pytest.mark.parametrize("op,kw", CASES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identical_across_thread_counts(op, kw, layout, dtype):
    x = X.astype(dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    outs = [_fwd(op, x, layout, nt, kw) for nt in (1, 2, 4)]
    g = np.random.default_rng(1).standard_normal(outs[0].shape).astype(dtype)
    grads = [_bwd(op, g, x, layout, nt, kw) for nt in (1, 2, 4)]
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])
    for gr in grads[1:]:
        assert np.array_equal(gr, grads[0])
    # the gradient is not trivially zero (the test could fail)
    assert np.abs(grads[0]).sum() > 0


@pytest.mark.parametrize("op,kw", CASES)
def test_nhwc_equals_nchw_transposed(op, kw):
    nchw = _fwd(op, X, "NCHW", 2, kw)
    nhwc = _fwd(op, np.ascontiguousarray(X.transpose(0, 2, 3, 1)), "NHWC", 2, kw)
    assert np.array_equal(nhwc, nchw.transpose(0, 2, 3, 1))
    g = np.random.default_rng(2).standard_normal(nchw.shape).astype(np.float32)
    gc = _bwd(op, g, X, "NCHW", 2, kw)
    gl = _bwd(op, np.ascontiguousarray(g.transpose(0, 2, 3, 1)),
              np.ascontiguousarray(X.transpose(0, 2, 3, 1)), "NHWC", 2, kw)
    assert np.array_equal(gl, gc.transpose(0, 2, 3, 1))


def test_default_threads_follow_omp_num_threads():
    code = "import roicore; print(roicore.default_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "3"


def test_threadpoolctl_limits_default():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl not installed")
    if not roicore.openmp_enabled():
        pytest.skip("serial build: no OpenMP runtime to limit")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert roicore.default_num_threads() == 1
        out1 = roicore.roi_align(X, R, 3)
    np.testing.assert_array_equal(out1, roicore.roi_align(X, R, 3))
