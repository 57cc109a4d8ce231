"""``python -m roicore bench --device cuda`` without a GPU.

Without CuPy (or a device) the command exits 2 with one line naming "no CUDA
device".  On the host emulation of CuPy (``tests/support/gpu_emulation``, see
``tests/test_cuda_check.py``) the roicore rows run end to end: the kernels
compiled for the host, ``cupy.cuda.Device().synchronize()`` a no-op, torchvision
hidden.  The real timings (and the torchvision rows) need a GPU:
``benchmarks/gpu_session.sh``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMULATION = ROOT / "tests" / "support" / "gpu_emulation"

needs_gxx = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which(os.environ.get("CXX", "g++")) is None,
    reason="host emulation of the CUDA kernels needs Linux and g++ (C++20)",
)


def _bench(prelude: str, *args: str, emulation: bool = False) -> subprocess.CompletedProcess:
    """``roicore bench`` in a fresh interpreter after ``prelude`` (hides modules)."""
    env = dict(os.environ, OMP_NUM_THREADS="2", ROICORE_EMULATE_THREADS="0")
    if emulation:
        env["PYTHONPATH"] = os.pathsep.join([str(EMULATION), env.get("PYTHONPATH", "")])
    code = (f"import sys\n{prelude}\nfrom roicore.__main__ import main\n"
            f"sys.exit(main(['bench', *{list(args)!r}]))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)


def test_no_cupy_exits_2_with_one_line():
    res = _bench("sys.modules['cupy'] = None", "--device", "cuda", "--quick")
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], res.stderr
    assert lines[0].startswith("roicore: error:")
    assert "workload" not in res.stdout  # nothing timed


def test_cupy_without_a_device_exits_2(tmp_path):
    fake = tmp_path / "cupy"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "__version__ = '0'\n"
        "class _R:\n"
        "    @staticmethod\n"
        "    def getDeviceCount():\n"
        "        raise RuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')\n"
        "class cuda:\n"
        "    runtime = _R\n")
    res = _bench(f"sys.path.insert(0, {str(tmp_path)!r})", "--device", "cuda", "--quick")
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], res.stderr


@needs_gxx
def test_bench_cuda_rows_on_the_host_emulation():
    hide = ("sys.modules['torch'] = None\nsys.modules['torchvision'] = None\n"
            "import roicore_gpu_emulation")
    res = _bench(hide, "--device", "cuda", "--quick", "--workload", "W1,W4", "--repeat", "2",
                 "--no-progress", emulation=True)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    out = res.stdout
    assert "roicore-host-emulation" in out  # it really ran on the stand-in
    assert "torchvision: not installed (skipped)" in out
    rows: dict[tuple[str, str], list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"(W\d-quick)\s+(fwd|bwd)\s+-\s+(.+?)\s{2,}\d", line)
        if m:
            rows.setdefault((m.group(1), m.group(2)), []).append(m.group(3))
            if m.group(3) != "roicore" and not m.group(3).startswith("fresh"):
                diff = line.split()[-1]
                assert float(diff) < 1e-4, line  # same result as roicore's reference row
    for w in ("W1-quick", "W4-quick"):
        assert rows[(w, "fwd")] == ["roicore", "roicore (checks off)", "fresh output (floor)"]
        assert rows[(w, "bwd")] == [
            "roicore", "roicore (checks off)", "roicore deterministic",
            "roicore deterministic (checks off)", "fresh output (floor)"]
    assert "torchvision" not in "".join(r for v in rows.values() for r in v)
    header = next(line for line in out.splitlines() if line.startswith("workload"))
    for col in ("implementation", "median ms", "min-max ms", "ratio", "max|diff|"):
        assert col in header
