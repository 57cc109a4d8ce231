"""The default thread policy of the CPU backend (issue 14: a loaded server).

* roicore loads its OpenMP runtime with a passive wait policy unless the user
  chose one (checked through libgomp's own report, ``OMP_DISPLAY_ENV=verbose``),
  and leaves the environment as it found it;
* a default-threaded call gets one thread per ``WORK_PER_THREAD`` of work, so a
  small call never starts a team; an explicit ``num_threads`` is honoured;
* the result never depends on either (bit-identical to the NumPy oracle's
  tolerance check elsewhere and to a one-thread call here).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import roicore
from roicore._backends import cpu as cpu_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items()
         if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")}
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=e, timeout=120)


def _spincount(stderr: str) -> str:
    for line in stderr.splitlines():
        if "GOMP_SPINCOUNT" in line:
            return line.split("=", 1)[1].strip().strip("'")
    pytest.skip("the OpenMP runtime is not GNU libgomp (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)")


def test_default_wait_policy_is_passive_and_environment_restored():
    code = ("import os, roicore\n"
            "from roicore._backends import openmp\n"
            "assert 'OMP_WAIT_POLICY' not in os.environ, os.environ.get('OMP_WAIT_POLICY')\n"
            "print(openmp.WAIT_POLICY)\n")
    r = _run(code, OMP_DISPLAY_ENV="verbose")
    assert r.returncode == 0, r.stderr
    if not roicore.openmp_enabled():
        pytest.skip("serial build: no OpenMP runtime")
    assert _spincount(r.stderr) == "0"  # passive: idle threads sleep at once
    assert r.stdout.startswith("passive")


def test_user_wait_policy_wins():
    r = _run("import roicore\nfrom roicore._backends import openmp\nprint(openmp.WAIT_POLICY)",
             OMP_DISPLAY_ENV="verbose", OMP_WAIT_POLICY="active")
    assert r.returncode == 0, r.stderr
    if not roicore.openmp_enabled():
        pytest.skip("serial build: no OpenMP runtime")
    assert int(_spincount(r.stderr)) > 300000  # active: spins
    assert "set by the user" in r.stdout
    r = _run("import roicore\nfrom roicore._backends import openmp\nprint(openmp.WAIT_POLICY)",
             OMP_DISPLAY_ENV="verbose", GOMP_SPINCOUNT="1234")
    assert _spincount(r.stderr) == "1234"
    assert "GOMP_SPINCOUNT=1234" in r.stdout


def test_runtime_loaded_before_is_reported():
    """If the same OpenMP runtime was loaded first (here: a ctypes load of
    libgomp, as PyTorch's bundled libgomp does), its settings stay and
    roicore says so instead of claiming a passive policy."""
    code = ("import ctypes, ctypes.util, sys\n"
            "name = ctypes.util.find_library('gomp')\n"
            "if not name: print('NOGOMP'); sys.exit(0)\n"
            "ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)\n"
            "import roicore\nfrom roicore._backends import openmp\nprint(openmp.WAIT_POLICY)\n")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    if "NOGOMP" in r.stdout or not roicore.openmp_enabled():
        pytest.skip("no libgomp to preload on this machine")
    assert "loaded before roicore" in r.stdout


def _plan_threads(fn, *args, **kw) -> int:
    """The team size the CPU backend picks for a call (spied on cpu.threads)."""
    seen = []
    orig = cpu_backend.threads

    def spy(*a, **k):
        n = orig(*a, **k)
        seen.append(n)
        return n

    cpu_backend.threads = spy
    try:
        fn(*args, **kw)
    finally:
        cpu_backend.threads = orig
    assert seen, "the CPU backend did not choose a team size"
    return seen[-1]


@pytest.mark.parametrize("op", ["align", "pool", "warp"])
def test_small_call_runs_on_one_thread(op, monkeypatch):
    """1 RoI, C=256, 7x7: far below WORK_PER_THREAD -> one thread even when the
    default team is larger (a team costs a time slice on a loaded machine)."""
    monkeypatch.setattr(cpu_backend._cpu, "max_threads", lambda: 8)
    x = np.random.default_rng(0).standard_normal((1, 256, 50, 68)).astype(np.float32)
    r = np.array([[0, 10.0, 12.0, 200.0, 180.0]], np.float32)
    f = {"align": roicore.roi_align, "pool": roicore.roi_pool, "warp": roicore.roi_warp}[op]
    kw = {} if op == "pool" else {"sampling_ratio": 2}
    assert _plan_threads(f, x, r, 7, spatial_scale=1 / 16, **kw) == 1
    # an explicit count is honoured (clamped only by the machine's ceiling)
    assert _plan_threads(f, x, r, 7, spatial_scale=1 / 16, num_threads=3, **kw) == 3
    g = np.ones((1, 256, 7, 7), np.float32)
    b = {"align": roicore.roi_align_backward, "pool": roicore.roi_pool_backward,
         "warp": roicore.roi_warp_backward}[op]
    assert _plan_threads(b, g, x, r, 7, spatial_scale=1 / 16, **kw) == 1


def test_large_call_gets_the_default_team(monkeypatch):
    monkeypatch.setattr(cpu_backend._cpu, "max_threads", lambda: 8)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 64, 50, 68)).astype(np.float32)
    r = np.zeros((300, 5), np.float32)
    r[:, 0] = rng.integers(0, 2, 300)
    r[:, 1:3] = rng.uniform(0, 600, (300, 2))
    r[:, 3:5] = r[:, 1:3] + 200
    n = _plan_threads(roicore.roi_align, x, r, 7, spatial_scale=1 / 16, sampling_ratio=2)
    assert n == 8
    # the estimate follows the work: 8 of the 300 RoIs get fewer threads
    n4 = _plan_threads(roicore.roi_align, x, r[:8], 7, spatial_scale=1 / 16, sampling_ratio=2)
    assert 1 <= n4 < 8


@pytest.mark.parametrize("op", ["align", "pool"])
def test_default_threads_do_not_change_results(op):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 32, 40, 40)).astype(np.float32)
    for K in (1, 5, 400):
        r = np.zeros((K, 5), np.float32)
        r[:, 0] = rng.integers(0, 2, K)
        r[:, 1:3] = rng.uniform(0, 300, (K, 2))
        r[:, 3:5] = r[:, 1:3] + rng.uniform(1, 300, (K, 2))
        f = roicore.roi_align if op == "align" else roicore.roi_pool
        kw = {"sampling_ratio": 0} if op == "align" else {}
        a = f(x, r, 7, spatial_scale=1 / 8, **kw)
        b = f(x, r, 7, spatial_scale=1 / 8, num_threads=1, **kw)
        assert np.array_equal(a, b)
