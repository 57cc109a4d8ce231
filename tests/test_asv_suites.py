"""The asv suites (benchmarks/bench_roi.py) without running asv: every suite is
parameterised by implementation, cells that cannot run are skipped with
NotImplementedError (asv's "n/a"), and every cell that runs computes what
roicore computes (on the reduced ``.quick()`` workloads)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import roicore
from roicore._cli import workloads as _workloads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
B = pytest.importorskip("benchmarks.bench_roi", reason="benchmarks/ not importable")

SUITES = [B.RoiAlignForward, B.RoiAlignBackward, B.RoiPoolForward, B.RoiPoolBackward,
          B.RoiWarpForward, B.RoiWarpBackward]


def _installed(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(B, "get_workload", lambda name: _workloads.get(name).quick())


def test_every_suite_puts_the_peers_beside_roicore():
    for suite in SUITES:
        assert suite.param_names[0] == "implementation"
        assert set(suite.params[0]) == {"roicore", "roicore-nhwc", "roicore-gpu",
                                        "torchvision", "onnxruntime", "openvino"}
        assert any(name.startswith(("time_", "peakmem_")) for name in dir(suite))
    assert "W2" not in {w for s in SUITES for w in s.params[1]}  # kept out: run time


def test_asv_config_matches_the_suites():
    text = (ROOT / "asv.conf.json").read_text()
    cfg = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))
    assert cfg["benchmark_dir"] == "benchmarks"
    assert (ROOT / cfg["benchmark_dir"] / "bench_roi.py").is_file()
    assert "--set-commit-hash" in text  # the flow that saves results
    readme = (ROOT / "README.md").read_text()
    assert "asv run --python=same --set-commit-hash=$(git rev-parse HEAD)" in readme
    section = readme.split("### Benchmarks over time: asv")[1].split("###")[0]
    commands = "".join(re.findall(r"```\n(.*?)```", section, flags=re.S))
    assert commands.splitlines()[:3] == [
        "asv machine --yes", "asv run --python=same --set-commit-hash=$(git rev-parse HEAD)",
        "asv publish"]
    assert "--quick" not in commands  # --quick results are never saved


@pytest.mark.parametrize(
    ("suite", "impl", "why"),
    [
        (B.RoiWarpForward, "torchvision", "torchvision has no RoI Warp"),
        (B.RoiWarpBackward, "onnxruntime", "onnxruntime has no RoI Warp"),
        (B.RoiWarpForward, "openvino", "openvino has no RoI Warp"),
        (B.RoiAlignBackward, "onnxruntime", "onnxruntime has no backward pass"),
        (B.RoiPoolBackward, "openvino", "openvino has no backward pass"),
    ],
)
def test_what_a_peer_lacks_is_skipped(suite, impl, why, quick):
    with pytest.raises(NotImplementedError, match=why):
        suite().setup(impl, suite.params[1][0])


@pytest.mark.parametrize("impl", ["torchvision", "onnxruntime", "openvino"])
def test_a_missing_peer_is_skipped(impl, quick, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == impl else real(name, *a))
    with pytest.raises(NotImplementedError, match=f"{impl} is not installed"):
        B.RoiAlignForward().setup(impl, "W1")


def test_gpu_cells_are_skipped_without_cupy(quick, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(NotImplementedError, match="CuPy is not installed"):
        B.RoiAlignForward().setup("roicore-gpu", "W1")


def _expected(suite, workload: str) -> np.ndarray:
    w = _workloads.get(workload).quick()
    x, rois = w.input(), w.rois()
    size, s, sr = w.output_size, w.spatial_scale, w.sampling_ratio
    if suite.op == "align":
        args = (x, rois, size, s, sr, w.aligned)
        f, b = roicore.roi_align, roicore.roi_align_backward
    elif suite.op == "warp":
        args = (x, rois, size, s, sr)
        f, b = roicore.roi_warp, roicore.roi_warp_backward
    else:
        args = (x, rois, size, s)
        f, b = roicore.roi_pool, roicore.roi_pool_backward
    return f(*args) if suite.direction == "forward" else b(w.grad_output(), *args)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.__name__)
@pytest.mark.parametrize("impl", ["roicore", "roicore-nhwc", "torchvision", "onnxruntime",
                                  "openvino"])
def test_each_cell_computes_the_operator(suite, impl, quick):
    # the suite's call against a direct roicore call: a peer wired with the wrong boxes,
    # scale or alignment would time a different computation
    mod = {"roicore": "roicore", "roicore-nhwc": "roicore"}.get(impl, impl)
    if not _installed(mod):
        pytest.skip(f"{impl} not installed")
    workload = suite.params[1][0]
    bench = suite()
    try:
        bench.setup(impl, workload)
    except NotImplementedError as exc:
        ops, dirs = B.PEERS[impl]
        assert suite.op not in ops or suite.direction not in dirs, exc
        return
    got = np.asarray(bench.result)
    if impl == "roicore-nhwc":
        got = got.transpose(0, 3, 1, 2)
    expected = _expected(suite, workload)
    if impl == "openvino" and suite.op == "align":
        # OpenVINO's ROIAlign sums in another order: last-bit differences
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, expected)
    bench.time_call()
    bench.teardown()
