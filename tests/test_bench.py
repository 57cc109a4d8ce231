"""The benchmark workloads and the ``python -m roicore bench`` command."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from roicore._cli import workloads as _workloads

NAMES = list(_workloads.WORKLOADS)


def test_standard_workloads():
    w1, w2, w3, w4 = (_workloads.get(n) for n in ("W1", "W2", "W3", "w4"))
    assert (w1.input_shape(), w1.K, w1.output_size, w1.spatial_scale) == (
        (2, 256, 50, 68), 1000, (7, 7), 1 / 16)
    assert (w2.input_shape(), w2.K, w2.output_size, w2.spatial_scale) == (
        (2, 256, 200, 272), 1024, (14, 14), 1 / 4)
    assert (w3.input_shape(), w3.K, w3.output_size, w3.spatial_scale) == (
        (8, 64, 64, 64), 8000, (7, 7), 1 / 8)
    assert w4.op == "pool" and w1.op == w2.op == w3.op == "align"
    assert all(w.sampling_ratio == 2 and w.aligned for w in (w1, w2, w3))
    # W4 is W1's arrays through roi_pool
    np.testing.assert_array_equal(w4.input(), w1.input())
    np.testing.assert_array_equal(w4.rois(), w1.rois())
    with pytest.raises(ValueError, match="unknown workload"):
        _workloads.get("W9")


@pytest.mark.parametrize("name", NAMES)
def test_workloads_deterministic(name):
    a, b = _workloads.get(name), _workloads.get(name)
    for dtype in (np.float32, np.float64):
        np.testing.assert_array_equal(a.rois(dtype), b.rois(dtype))
    np.testing.assert_array_equal(a.input(), b.input())
    np.testing.assert_array_equal(a.grad_output(), b.grad_output())
    # the same numbers in both layouts
    np.testing.assert_array_equal(a.input(layout="NHWC"), a.input().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(a.grad_output(layout="NHWC"),
                                  a.grad_output().transpose(0, 2, 3, 1))
    # and in a fresh process
    code = (f"from roicore._cli import workloads as w; import hashlib; x = w.get({name!r}); "
            "print(hashlib.sha256(x.rois().tobytes() + x.input().tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    import hashlib

    assert out == hashlib.sha256(a.rois().tobytes() + a.input().tobytes()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_workload_boxes_inside_image(name, dtype):
    w = _workloads.get(name)
    r = w.rois(dtype)
    ih, iw = w.image_hw
    assert r.shape == (w.K, 5) and r.dtype == dtype
    b, x1, y1, x2, y2 = r.T.astype(np.float64)
    assert np.all((x1 >= 0) & (y1 >= 0) & (x2 <= iw) & (y2 <= ih))
    assert np.all((x2 > x1) & (y2 > y1))
    lo, hi = w.side
    assert np.all((x2 - x1 >= lo - 1e-3) & (x2 - x1 <= hi + 1e-3))
    assert np.all((y2 - y1 >= lo - 1e-3) & (y2 - y1 <= hi + 1e-3))
    # every image gets its share of the boxes, as integer batch indices
    np.testing.assert_array_equal(b, np.round(b))
    np.testing.assert_array_equal(np.bincount(b.astype(int), minlength=w.N),
                                  np.full(w.N, w.K // w.N))
    # the feature map covers the image at this scale
    assert round(ih * w.spatial_scale) == w.H and round(iw * w.spatial_scale) == w.W


def test_quick_workloads_are_small():
    for w in _workloads.WORKLOADS.values():
        q = w.quick()
        assert q.C <= w.C // 8 and q.K <= max(w.K // 10, w.N) and q.K >= q.N
        assert q.rois().shape == (q.K, 5)


def _run_bench(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return subprocess.run([sys.executable, "-m", "roicore", "bench", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def test_bench_quick():
    res = _run_bench("--quick")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    header = next(line for line in out.splitlines() if line.startswith("workload"))
    for col in ("implementation", "median ms", "min-max ms", "ratio"):
        assert col in header
    for name in NAMES:
        assert f"{name}-quick" in out
    rows = [line for line in out.splitlines() if " roicore " in f" {line} "
            and line.split()[0].endswith("-quick")]
    assert len(rows) == 2 * len(NAMES)  # forward and backward of every workload
    assert "1.00x" in rows[0]  # roicore's own ratio
    assert "fresh output (floor)" in out


def test_bench_options():
    res = _run_bench("--quick", "--workload", "W3", "--threads", "1,2", "--repeat", "1",
                     "--layout", "NHWC", "--dtype", "float64", "--direction", "forward",
                     "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "float64" in res.stdout and "NHWC" in res.stdout
    rows = [line.split() for line in res.stdout.splitlines()
            if line.startswith("W3-quick") and " roicore " in f" {line} "]
    assert [r[2] for r in rows] == ["1", "2"]
    bad = _run_bench("--quick", "--workload", "W7")
    assert bad.returncode == 2 and "unknown workload" in bad.stderr


def test_bench_load_isa_items_and_openvino():
    """--load runs core burners beside the timings, --isa forces the kernels,
    --items prints the backward's parallel-item report, OpenVINO is a peer."""
    res = _run_bench("--quick", "--workload", "S2", "--threads", "1", "--direction", "forward",
                     "--isa", "baseline", "--load", "1", "--items", "--repeat", "2",
                     "--no-progress")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "kernels baseline (forced by --isa)" in out
    assert "load: 1 core-burning process" in out
    assert "OpenMP wait policy:" in out
    assert "CPU backward: parallel work items" in out
    if importlib.util.find_spec("openvino") is not None:
        row = next(line for line in out.splitlines() if "openvino ROIPooling" in line)
        assert row.split()[-1] == "0.0e+00"  # same result as roicore
    else:
        assert "openvino: not installed" in out


@pytest.mark.parametrize("args, message", [
    (["--load", "-1"], "must be >= 0"),
    (["--load", "two"], "whole number"),
    (["--isa", "sse9"], "invalid choice"),
    (["--workload", "S9"], "unknown workload"),
])
def test_bench_rejects_bad_options(args, message):
    res = _run_bench(*args)
    assert res.returncode == 2
    assert message in res.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_load_burners_die_with_a_killed_bench():
    """`bench --load N`: a bench killed by a signal (no cleanup runs) leaves no
    core-burning process behind."""
    import signal
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, time\n"
            "from roicore._cli.bench import _burners\n"
            "cm = _burners(1)\n"
            "cm.__enter__()\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env=env)
    assert p.stdout.readline().strip() == "ready"

    def burners() -> list[int]:
        found = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if b"parent = os.getppid()" in cmd and (ppid == p.pid or ppid == 1):
                found.append(int(d))
        return found

    mine = burners()
    assert mine, "the bench should have started a burner"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(b) for b in mine):
        time.sleep(0.1)
    assert not any(_alive(b) for b in mine), "a burner outlived the killed bench"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
