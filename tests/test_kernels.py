"""The CPU kernels: every ISA variant x packing policy bit-identical to the reference
kernels, the OpenMP runtime (on, thread-count defaults), and kernel-level hardening
(issue 9): thread-count clamp, memory-aware packing, exact batch
indices, interruptible long calls, sampling-cost limits, misaligned buffers.

Each test fails on the kernels before the fix (the misaligned-buffer test only under the
sanitizer build, tools/sanitize.sh: on x86 the misaligned loads happened to work)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import roicore
from roicore import _cpu
from roicore._backends import limits as _limits
from roicore._cli import workloads as _workloads

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


def _rois(rng, K, N, H, W, dtype=np.float32):
    xy = rng.uniform(-4, W, (K, 2))
    wh = rng.uniform(0, W / 2, (K, 2))
    b = rng.integers(0, N, (K, 1))
    return np.concatenate([b, xy, xy + wh], 1).astype(dtype)


# --------------------------------------------------------------------------- 1. threads
def test_absurd_num_threads_is_clamped_not_fatal():
    # 10**6 threads requested for 100000 independent items: before the clamp the OpenMP
    # runtime tried to create them and aborted the process ("Thread creation failed")
    res = _python("""
        import numpy as np, roicore
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 1, 16, 16)).astype(np.float32)
        K = 100000
        xy = rng.uniform(0, 12, (K, 2))
        r = np.concatenate([rng.integers(0, 2, (K, 1)), xy, xy + 3], 1).astype(np.float32)
        for f in (roicore.roi_align, roicore.roi_pool):
            a = f(x, r, 1, num_threads=10**6)
            b = f(x, r, 1, num_threads=1)
            assert np.array_equal(a, b, equal_nan=True)
        g = roicore.roi_align_backward(np.ones((K, 1, 1, 1), np.float32), x, r, 1,
                                       num_threads=10**6)
        h = roicore.roi_align_backward(np.ones((K, 1, 1, 1), np.float32), x, r, 1,
                                       num_threads=1)
        assert np.array_equal(g, h)
        print("ok")
    """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_thread_ceiling_is_sane():
    # never below the default team (nor 64), never unbounded
    top = _cpu.thread_ceiling()
    if not roicore.openmp_enabled():
        assert top == 1
    elif "OMP_THREAD_LIMIT" not in os.environ:
        assert max(64, _cpu.max_threads()) <= top <= max(64, 4 * _cpu.max_threads(),
                                                         4 * (os.cpu_count() or 1))


# --------------------------------------------------------------------------- 2. memory
_PEAK = """
    import resource, sys, numpy as np, roicore
    op, layout = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(1)
    shape = (1, 1, 2048, 2048) if layout == "NCHW" else (1, 2048, 2048, 1)
    x = rng.standard_normal(shape).astype(np.float32)
    K = 512
    xy = rng.uniform(0, 1700, (K, 2))
    r = np.concatenate([np.zeros((K, 1)), xy, xy + 256], 1).astype(np.float32)
    g = np.ones((K, 7, 7, 1) if layout == "NHWC" else (K, 1, 7, 7), np.float32)
    f = {"align": lambda x, r, g: roicore.roi_align(x, r, 7, layout=layout),
         "pool": lambda x, r, g: roicore.roi_pool(x, r, 7, layout=layout),
         "align_bwd": lambda x, r, g: roicore.roi_align_backward(g, x, r, 7, layout=layout),
         "pool_bwd": lambda x, r, g: roicore.roi_pool_backward(g, x, r, 7, layout=layout)}[op]
    small = x[:, :64, :64] if layout == "NHWC" else x[..., :64, :64]
    f(np.ascontiguousarray(small), r[:4] / 32, g[:4])  # warm up: imports, thread pool
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the high-water mark so far
    y = f(x, r, g)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024, x.nbytes)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
@pytest.mark.parametrize("op", ["align", "pool", "align_bwd", "pool_bwd"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_few_channels_large_map_peak_memory(op, layout):
    # C=1 on a 2048x2048 map with enough RoIs that packing "paid" by the old cost model:
    # the packed copy was 32x the input (512 MiB for a 16 MiB map).  The peak growth of the
    # call (a fresh process, measured with ru_maxrss after a warm-up) must stay a small
    # multiple of the input.
    code = "import sys; sys.argv[1:] = " + repr([op, layout]) + "\n" + textwrap.dedent(_PEAK)
    res = _python(code)
    assert res.returncode == 0, res.stderr[-2000:]
    extra, nbytes = map(int, res.stdout.split())
    assert extra <= 3 * nbytes, f"{op} {layout}: peak grew by {extra / 2**20:.0f} MiB"


# --------------------------------------------------------------------------- 3. batch index
@pytest.fixture(scope="module")
def many_images():
    # 2**24 + 2 images of one pixel (64 MiB): float32 cannot hold 2**24 + 1, so a batch index
    # cast to float32 with the boxes selects image 2**24 instead
    n = 2**24 + 2
    x = np.zeros((n, 1, 1, 1), np.float32)
    x[2**24, 0, 0, 0] = 5.0
    x[2**24 + 1, 0, 0, 0] = 7.0
    return x


@pytest.mark.parametrize("op", ["pool", "align", "warp"])
def test_batch_index_beyond_float32_is_exact(many_images, op):
    x = many_images
    r = np.array([[2**24 + 1, 0, 0, 0, 0], [2**24, 0, 0, 0, 0]], np.float64)
    fwd = {"pool": roicore.roi_pool, "align": roicore.roi_align, "warp": roicore.roi_warp}[op]
    bwd = {"pool": roicore.roi_pool_backward, "align": roicore.roi_align_backward,
           "warp": roicore.roi_warp_backward}[op]
    y = fwd(x, r, 1)
    assert y[:, 0, 0, 0].tolist() == [7.0, 5.0]  # a 1x1 map: every op gives the pixel
    g = bwd(np.array([3.0, 2.0], np.float32).reshape(2, 1, 1, 1), x, r, 1)
    nz = np.flatnonzero(g)
    assert nz.tolist() == [2**24, 2**24 + 1] and g.ravel()[nz].tolist() == [2.0, 3.0]
    # the same with the list form of rois is not needed: rois_to_array builds float64


# --------------------------------------------------------------------------- 4. interrupts
_LONG = """
    import sys, numpy as np, roicore
    op = sys.argv[1]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 16, 64, 64)).astype(np.float32)
    K = 20000
    xy = rng.uniform(0, 40, (K, 2))
    r = np.concatenate([rng.integers(0, 2, (K, 1)), xy, xy + 20], 1).astype(np.float32)
    g = np.ones((K, 16, 7, 7), np.float32)
    if op == "pool":
        xp = rng.standard_normal((1, 16, 1400, 1400)).astype(np.float32)
        rp = np.array([[0, 0, 0, 1399, 1399]] * 20000, np.float32)
    print("start", flush=True)
    if op == "align":      # ~1.6e10 bilinear samples x channels: minutes
        roicore.roi_align(x, r, 7, 1.0, 32, num_threads=2)
    elif op == "align_bwd":  # one image's 10000 RoIs: cut into segments
        roicore.roi_align_backward(g, x, r, 7, 1.0, 32, num_threads=2)
    else:                  # the whole 1400x1400 map per RoI, 20000 times
        roicore.roi_pool(xp, rp, 1, num_threads=2)
    print("finished", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
@pytest.mark.parametrize("op", ["align", "align_bwd", "pool"])
def test_long_call_is_interruptible(op):
    # Liveness, not speed: the call would run for minutes; after SIGINT it must stop with
    # KeyboardInterrupt well before that (the kernels check for signals between chunks).
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    code = "import sys; sys.argv[1:] = " + repr([op]) + "\n" + textwrap.dedent(_LONG)
    p = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == "start"
        time.sleep(1.0)  # inside the kernels by now
        p.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = p.communicate(timeout=30)
        waited = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert "finished" not in out, "the call completed before the signal: make it longer"
    assert p.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    print(f"{op}: stopped {waited:.2f} s after SIGINT")


def _cases(rng, C, layout):
    N, H, W, K = 2, 9, 11, 30
    x = rng.standard_normal((N, C, H, W))
    x[..., ::2, ::3] = np.round(x[..., ::2, ::3])  # ties for the max modes
    x = x.astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x, _rois(rng, K, N, H, W)


_OPS = [
    ("pool", roicore.roi_pool, roicore.roi_pool_backward, {}),
    ("align", roicore.roi_align, roicore.roi_align_backward, {"sampling_ratio": -1}),
    ("align-max", roicore.roi_align, roicore.roi_align_backward,
     {"sampling_ratio": 2, "mode": "max", "aligned": True}),
    ("warp", roicore.roi_warp, roicore.roi_warp_backward, {"sampling_ratio": 2}),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("C", [1, 5, 40])
def test_any_chunking_is_bit_identical(layout, C):
    # chunks of one item each (a signal check after every item) against the default
    rng = np.random.default_rng(C)
    x, r = _cases(rng, C, layout)
    ref = {}
    for name, f, b, kw in _OPS:
        y = f(x, r, (3, 2), 0.7, layout=layout, **kw)
        ref[name] = (y, b(np.ones_like(y), x, r, (3, 2), 0.7, layout=layout, **kw))
    old = _cpu._set_chunk_work(1e-9)
    try:
        for isa in ("reference", "auto"):
            _cpu.set_cpu_isa(isa)
            for policy in (0, 1, 2, 3):  # 3: NCHW forwards on the crop path
                _cpu._set_pack_policy(policy)
                for nt in (1, 3):
                    for name, f, b, kw in _OPS:
                        y = f(x, r, (3, 2), 0.7, layout=layout, num_threads=nt, **kw)
                        gi = b(np.ones_like(y), x, r, (3, 2), 0.7, layout=layout,
                               num_threads=nt, **kw)
                        np.testing.assert_array_equal(y, ref[name][0], err_msg=name)
                        np.testing.assert_array_equal(gi, ref[name][1], err_msg=name)
    finally:
        _cpu._set_chunk_work(old)
        _cpu.set_cpu_isa("auto")
        _cpu._set_pack_policy(0)


# --------------------------------------------------------------------------- 5. cost limit
def test_limits_match_the_header():
    text = (ROOT / "src" / "include" / "roicore" / "roi_common.h").read_text()

    def define(name):
        return float(re.search(rf"#define {name} ([0-9.]+)", text).group(1))

    assert define("RC_BIN_SAMPLE_LIMIT") == _limits.BIN_SAMPLE_LIMIT
    assert define("RC_SIDE_SAMPLE_LIMIT") == _limits.SIDE_SAMPLE_LIMIT
    assert define("RC_ROI_SAMPLE_LIMIT") == _limits.ROI_SAMPLE_LIMIT
    assert define("RC_CALL_SAMPLE_LIMIT") == _limits.CALL_SAMPLE_LIMIT


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_long_thin_box_runs_like_torchvision(scale):
    # a 1e6 x 5 box with output (2, 3) and the adaptive grid: 333334 x 3 (scale 1) or
    # 83334 x 1 (scale 1/4) samples per bin.  The old limit (65536 per bin side) refused it.
    tv = pytest.importorskip("torchvision")
    import torch

    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 8, 64)).astype(np.float32)
    r = np.array([[0, 0.5, 1.0, 1e6, 6.0], [0, 3, 1, 40, 7]], np.float32)
    for aligned in (False, True):
        got = roicore.roi_align(x, r, (2, 3), scale, -1, aligned)
        exp = tv.ops.roi_align(torch.from_numpy(x), torch.from_numpy(r), (2, 3), scale, -1,
                               aligned).numpy()
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-6)
        g = roicore.roi_align_backward(np.ones_like(got), x, r, (2, 3), scale, -1, aligned)
        xt = torch.from_numpy(x).requires_grad_(True)
        tv.ops.roi_align(xt, torch.from_numpy(r), (2, 3), scale, -1, aligned).sum().backward()
        np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_huge_sampling_ratio_is_refused_with_the_fix():
    x = np.zeros((1, 4, 8, 8), np.float32)
    r = np.array([[0, 0, 0, 4, 4]] * 100, np.float32)
    with pytest.raises(ValueError, match=r"`sampling_ratio`=65536 gives 4\.29e\+09 samples per "
                                         r"bin .*pass a smaller `sampling_ratio`"):
        roicore.roi_align(x, r, 7, 1.0, 65536)
    with pytest.raises(ValueError, match=r"`sampling_ratio`=65536 gives"):
        roicore.roi_align_backward(np.zeros((100, 4, 7, 7), np.float32), x, r, 7, 1.0, 65536)
    # 4096**2 = 2**24 samples per bin is allowed per bin, but not 49 such bins per RoI
    with pytest.raises(ValueError, match=r"RoI 0 needs 8\.22e\+08 samples \(output bins x "
                                         r"samples per bin\) with `sampling_ratio`=4096"):
        roicore.roi_align(x, r, 7, 1.0, 4096)
    # 2**28 samples per RoI is allowed, but 100 RoIs x 64 channels of it is above the
    # per-call limit
    x64 = np.zeros((1, 64, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"this call needs 1\.72e\+12 bilinear samples"):
        roicore.roi_align(x64, r, 16, 1.0, 1024)
    with pytest.raises(ValueError, match=r"RoI 0 needs .* samples along one side"):
        roicore.roi_warp(x, r[:1], (1000, 1), 1.0, 4096)


def test_adaptive_grid_above_the_bin_limit_names_the_roi():
    x = np.zeros((1, 1, 8, 8), np.float32)
    r = np.array([[0, 0, 0, 4, 4], [0, 0, 0, 8000, 8000]], np.float64)
    with pytest.raises(ValueError, match=r"RoI 1 needs 6\.4e\+07 samples per bin with the "
                                         r"adaptive grid.*pass a positive `sampling_ratio`"):
        roicore.roi_align(x, r, 1)
    assert np.isfinite(roicore.roi_align(x, r, 1, 1.0, 2)).all()  # a fixed grid is fine


# --------------------------------------------------------------------------- 6. alignment
def _misaligned(a):
    buf = bytearray(a.nbytes + 1)
    m = np.frombuffer(buf, a.dtype, count=a.size, offset=1).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_misaligned_buffers(dtype, layout):
    rng = np.random.default_rng(6)
    x, r = _cases(rng, 5, layout)
    x, r = x.astype(dtype), r.astype(dtype)
    for name, f, b, kw in _OPS:
        y = f(x, r, 3, 0.5, layout=layout, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)
        gi = b(g, x, r, 3, 0.5, layout=layout, **kw)
        xm, rm, gm = _misaligned(x), _misaligned(r), _misaligned(g)
        np.testing.assert_array_equal(f(xm, rm, 3, 0.5, layout=layout, **kw), y, err_msg=name)
        out = _misaligned(np.zeros_like(y))
        res = f(xm, rm, 3, 0.5, layout=layout, out=out, **kw)
        assert res is out
        np.testing.assert_array_equal(out, y, err_msg=name)
        np.testing.assert_array_equal(b(gm, xm, rm, 3, 0.5, layout=layout, **kw), gi,
                                      err_msg=name)


# --------------------------------------------------------------------------- OpenMP runtime
# (from test_threads.py; bit-identity across thread counts runs per operator in test_roi_*.py)
_TRNG = np.random.default_rng(7)
TX = _TRNG.standard_normal((3, 19, 23, 29)).astype(np.float32)
_tb = _TRNG.integers(0, 3, 60)
_txy = _TRNG.uniform(-20, 140, (60, 2))
_twh = _TRNG.uniform(-5, 120, (60, 2))
TR = np.concatenate([_tb[:, None], _txy, _txy + _twh], axis=1).astype(np.float32)


def test_openmp_enabled():
    # CI builds with OpenMP; a serial build must be a deliberate choice.
    if os.environ.get("ROICORE_NO_OPENMP"):
        pytest.skip("ROICORE_NO_OPENMP set: serial build requested")
    assert roicore.openmp_enabled()


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
        out1 = roicore.roi_align(TX, TR, 3)
    np.testing.assert_array_equal(out1, roicore.roi_align(TX, TR, 3))


# --------------------------------------------------------------------------- kernel variants
# The speed work added vectorised kernels (baseline x86-64 / AVX2 / AVX-512, chosen at run
# time) next to the scalar reference kernels; they must give bit-identical results.
def _variants():
    from roicore import _cpu

    best = _cpu.cpu_isa_supported()
    isas = ["baseline", "avx2", "avx512"]
    return isas[: isas.index(best) + 1] if best in isas else ["baseline"]


def _ops(scale):
    import roicore

    return [
        ("pool", lambda x, r, **k: roicore.roi_pool(x, r, (3, 4), scale, **k),
         lambda g, x, r, **k: roicore.roi_pool_backward(g, x, r, (3, 4), scale, **k)),
        ("align", lambda x, r, **k: roicore.roi_align(x, r, (3, 4), scale, 2, True, **k),
         lambda g, x, r, **k: roicore.roi_align_backward(g, x, r, (3, 4), scale, 2, True, **k)),
        ("align-max-adaptive",
         lambda x, r, **k: roicore.roi_align(x, r, (3, 4), scale, -1, False, mode="max", **k),
         lambda g, x, r, **k: roicore.roi_align_backward(g, x, r, (3, 4), scale, -1, False,
                                                         mode="max", **k)),
        ("warp", lambda x, r, **k: roicore.roi_warp(x, r, (3, 4), scale, 2, **k),
         lambda g, x, r, **k: roicore.roi_warp_backward(g, x, r, (3, 4), scale, 2, **k)),
    ]


def _run_all(x, rois, scale, layout):
    out = {}
    for name, f, b in _ops(scale):
        for nt in (1, 2):
            y = f(x, rois, layout=layout, num_threads=nt)
            g = np.random.default_rng(5).standard_normal(y.shape).astype(x.dtype)
            out[(name, nt)] = (y, b(g, x, rois, layout=layout, num_threads=nt))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [1, 2, 3, 33, 64, 70])  # 1-3: mostly-padding channel blocks;
# 33 (float32) and 64: AVX2 forward on 256-byte blocks
def test_kernel_variants_bit_identical(dtype, C):
    from roicore import _cpu

    rng = np.random.default_rng(C)
    N, H, W, K, scale = 2, 11, 13, 25, 0.5
    x = rng.standard_normal((N, C, H, W))
    x[..., ::3, ::2] = np.round(x[..., ::3, ::2])  # ties (and signed zeros) for the max modes
    x.flat[rng.integers(0, x.size, 6)] = [np.nan, np.inf, -np.inf, -0.0, 0.0, np.nan]
    x = x.astype(dtype)
    xy = rng.uniform(-6, 2 * W, (K, 2))
    r = np.concatenate([rng.integers(0, N, (K, 1)), xy, xy + rng.uniform(0, 2 * W, (K, 2))], 1)
    r = r.astype(dtype)
    try:
        for layout in ("NCHW", "NHWC"):
            xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
            _cpu.set_cpu_isa("reference")
            ref = _run_all(xl, r, scale, layout)
            for isa in _variants():
                for policy in (0, 1, 2, 3):  # by cost / always / never pack / crop
                    _cpu.set_cpu_isa(isa)
                    _cpu._set_pack_policy(policy)
                    got = _run_all(xl, r, scale, layout)
                    for key, (y, gi) in ref.items():
                        np.testing.assert_array_equal(got[key][0], y, err_msg=f"{isa} {key}")
                        np.testing.assert_array_equal(got[key][1], gi, err_msg=f"{isa} {key}")
    finally:
        _cpu.set_cpu_isa("auto")
        _cpu._set_pack_policy(0)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_streamed_large_output_bit_identical(layout):
    """W1's 50 MB output takes the populate + streaming-store path (fresh, prefaulted and
    misaligned `out=`)."""
    from roicore import _cpu

    w = _workloads.get("W1")
    x, r = w.input(layout=layout), w.rois()
    try:
        _cpu.set_cpu_isa("reference")
        ref = w.forward(x, r, layout=layout, num_threads=2)
    finally:
        _cpu.set_cpu_isa("auto")
    np.testing.assert_array_equal(w.forward(x, r, layout=layout, num_threads=2), ref)
    pre = np.full_like(ref, 3.0)
    w.forward(x, r, layout=layout, num_threads=1, out=pre)
    np.testing.assert_array_equal(pre, ref)
    raw = np.empty(ref.size + 1, ref.dtype)
    mis = raw[1:].reshape(ref.shape)
    w.forward(x, r, layout=layout, num_threads=2, out=mis)
    np.testing.assert_array_equal(mis, ref)


# --------------------------------------------------------------------------- crop path
# NCHW forwards with few RoIs transpose only the window each RoI reads (cpu/crop.h) instead
# of packing the whole map or running the scalar reference kernels.  Pack policy 3 forces it.
def _crop_ops():
    import roicore

    return [
        ("pool", roicore.roi_pool, {}),
        ("pool-equal", roicore.roi_pool, {"bins": "equal"}),
        ("align", roicore.roi_align, {"sampling_ratio": 2}),
        ("align-aligned-adaptive", roicore.roi_align,
         {"sampling_ratio": 0, "aligned": True}),
        ("align-max", roicore.roi_align, {"sampling_ratio": 2, "mode": "max"}),
        ("align-max-aligned-adaptive", roicore.roi_align,
         {"sampling_ratio": -1, "aligned": True, "mode": "max"}),
        ("warp", roicore.roi_warp, {"sampling_ratio": 2}),
        ("warp-max", roicore.roi_warp, {"sampling_ratio": -1, "mode": "max"}),
        ("warp-mnc", roicore.roi_warp, {"compat": "mnc"}),
    ]


def _crop_rois(H, W, dtype):
    """Boxes at the edges of what a window must cover (input pixels, scale 0.5)."""
    return np.array([
        [0, 3, 2, 9, 7],                  # inside
        [1, -9, -7, 5, 6],                # partly outside (top left)
        [0, 2 * W - 5, 2 * H - 3, 2 * W + 9, 2 * H + 11],  # partly outside (bottom right)
        [1, -40, -30, 4 * W + 9, 4 * H],  # larger than the map
        [0, 6, 6, 6, 6],                  # empty (a point)
        [1, 9, 8, 2, 3],                  # x2 < x1, y2 < y1
        [0, -50, -40, -30, -20],          # entirely outside (no sample inside)
        [1, 2 * W - 3, 0, 2 * W - 1, 2 * H - 1],  # thin, at the right edge (widened left)
        [0, 0.3, 1.7, 1.1, 2.2],          # sub-pixel
    ], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,H,W", [(1, 9, 13), (5, 9, 13), (33, 11, 5), (64, 7, 20),
                                   (70, 1, 1), (130, 12, 9)])
def test_crop_path_bit_identical(dtype, C, H, W):
    """Every op on the crop path (forced: pack policy 3, and by cost: policy 0) equals the
    scalar reference kernels bit for bit, for every ISA and thread count: C below, at and
    not a multiple of the lanes (16 / 32 / 64), maps narrower than the 8-column widening,
    1x1 maps, RoIs partly outside, larger than the map, empty and entirely outside."""
    from roicore import _cpu

    rng = np.random.default_rng(C * 100 + H)
    x = rng.standard_normal((2, C, H, W))
    x[..., ::3, ::2] = np.round(x[..., ::3, ::2])  # ties for the max modes
    x.flat[rng.integers(0, x.size, 4)] = [np.nan, np.inf, -np.inf, -0.0]
    x = x.astype(dtype)
    r = _crop_rois(H, W, dtype)
    ops = [*_crop_ops(),  # and the stored winners: (out, indices)
           ("pool-indices", roicore.roi_pool, {"return_indices": True}),
           ("pool-equal-indices", roicore.roi_pool, {"bins": "equal", "return_indices": True})]
    try:
        ref = {}
        _cpu.set_cpu_isa("reference")  # the indices: the NHWC kernel of cpu/pool_indices.h
        for name, f, kw in ops:
            ref[name] = f(x, r, (3, 4), 0.5, num_threads=1, **kw)
        for isa in _variants():
            _cpu.set_cpu_isa(isa)
            for policy in (3, 0):
                _cpu._set_pack_policy(policy)
                for nt in (1, 2):
                    for name, f, kw in ops:
                        got = f(x, r, (3, 4), 0.5, num_threads=nt, **kw)
                        msg = f"{name} {isa} policy={policy} nt={nt}"
                        if kw.get("return_indices"):
                            np.testing.assert_array_equal(got[0], ref[name][0], err_msg=msg)
                            np.testing.assert_array_equal(got[1], ref[name][1], err_msg=msg)
                        else:
                            np.testing.assert_array_equal(got, ref[name], err_msg=msg)
    finally:
        _cpu.set_cpu_isa("auto")
        _cpu._set_pack_policy(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_crop_path_matches_the_oracle(dtype):
    """The crop path against the NumPy oracle (tests/support/reference.py): RoI Pool
    exactly, the sampled ops to the oracle's tolerance."""
    import reference as ref
    from optable import assert_exact, assert_matches

    from roicore import _cpu

    C, H, W = 37, 8, 10
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, C, H, W))
    x[..., ::3, ::2] = np.round(x[..., ::3, ::2])
    x = x.astype(dtype)
    r = _crop_rois(H, W, dtype)
    oracle = {"pool": ref.roi_pool, "pool-equal": ref.roi_pool, "align": ref.roi_align,
              "align-aligned-adaptive": ref.roi_align, "align-max": ref.roi_align,
              "align-max-aligned-adaptive": ref.roi_align, "warp": ref.roi_warp,
              "warp-max": ref.roi_warp, "warp-mnc": ref.roi_warp}
    try:
        _cpu._set_pack_policy(3)
        for name, f, kw in _crop_ops():
            kw_ref = dict(kw)
            if kw_ref.get("sampling_ratio") == -1:
                kw_ref["sampling_ratio"] = 0
            exp = oracle[name](x, r, (3, 4), 0.5, **kw_ref)
            got = f(x, r, (3, 4), 0.5, num_threads=2, **kw)
            if name.startswith("pool"):
                assert_exact(got, exp, dtype, name)
            else:
                assert_matches(got, exp, dtype, name)
        for bins in ("fast_rcnn", "equal"):  # stored winners
            exp, exp_idx = ref.roi_pool_argmax(x, r, (3, 4), 0.5, bins)
            got, idx = roicore.roi_pool(x, r, (3, 4), 0.5, bins=bins, num_threads=2,
                                        return_indices=True)
            assert_exact(got, exp, dtype, f"roi_pool {bins} return_indices")
            np.testing.assert_array_equal(idx, exp_idx, err_msg=f"indices {bins}")
    finally:
        _cpu._set_pack_policy(0)
