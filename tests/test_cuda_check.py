"""The GPU backend's parts that need no GPU.

``python -m roicore cuda-check`` compiles every kernel instantiation with
NVRTC (cuda-pathfinder + cuda-bindings, from the test extra) and nvcc (each
test skipped when its compiler is absent, a missing compiler is a failure of
the command); the source assembly, the RoI check switch and the host-side
sampling-grid check are tested directly.
"""

from __future__ import annotations

import decimal
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import roicore
from roicore import _api as A
from roicore.__main__ import main
from roicore._backends import cuda_source as S
from roicore._backends import gpu_checks as GC
from roicore._backends import limits as _limits
from roicore._cli import cuda_check as CC
from roicore._cli import cuda_tools as CT

ROOT = Path(__file__).resolve().parents[1]
# 10 kernels templated on <T, channels_last> x {float, double} x {NCHW, NHWC}
# (pool / sampled: forward, winner, atomic backward, gather backward; pool's
# stored winners: forward with winners, atomic backward from winners)
# + 2 templated on <T> (the deterministic backward's CSR: count, csr)
EXPECTED_INSTANTIATIONS = 10 * 2 * 2 + 2 * 2

NVRTC, NVRTC_WHY = CT.find_nvrtc()
NVCC, NVCC_WHY = CT.find_nvcc()
needs_nvrtc = pytest.mark.skipif(NVRTC is None, reason=f"no NVRTC: {NVRTC_WHY}")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason=f"no nvcc: {NVCC_WHY}")
COMPILERS = [pytest.param("nvrtc", marks=needs_nvrtc), pytest.param("nvcc", marks=needs_nvcc)]


def _compiled_counts(text):
    return [(int(a), int(b)) for a, b in
            re.findall(r"compiled (\d+)/(\d+) kernel instantiations", text)]


def _no_compilers(monkeypatch):
    monkeypatch.setattr(CT, "find_nvrtc", lambda: (None, "hidden by the test"))
    monkeypatch.setattr(CT, "find_nvcc", lambda explicit=None: (None, "hidden by the test"))


# --------------------------------------------------------------------------- cuda-check


@pytest.mark.parametrize("compiler", COMPILERS)
def test_cuda_check_compiles_every_instantiation(compiler, capsys):
    assert main(["cuda-check", "--compiler", compiler]) == 0
    out = capsys.readouterr().out
    counts = _compiled_counts(out)
    assert counts == [(EXPECTED_INSTANTIATIONS, EXPECTED_INSTANTIATIONS)], out
    assert ("NVRTC " if compiler == "nvrtc" else "nvcc ") in out
    assert "FAILED" not in out


@needs_nvrtc
def test_cuda_check_nvrtc_without_ld_library_path():
    # the case: NVRTC from pip wheels (nvidia/cu13/lib) needs its builtins library
    # beside it; cuda-pathfinder loads it without LD_LIBRARY_PATH
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, "-m", "roicore", "cuda-check", "--compiler", "nvrtc"],
                       env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert _compiled_counts(p.stdout) == [(EXPECTED_INSTANTIATIONS, EXPECTED_INSTANTIATIONS)]


@pytest.mark.parametrize("compiler", COMPILERS)
def test_cuda_check_fails_on_a_compile_error(compiler, capsys, monkeypatch):
    good = S.source()
    monkeypatch.setattr(S, "source", lambda: good + "\n#error roicore cuda-check self-test\n")
    assert main(["cuda-check", "--compiler", compiler]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "self-test" in out
    assert _compiled_counts(out) == [(0, EXPECTED_INSTANTIATIONS)]


def test_cuda_check_fails_without_any_compiler(capsys, monkeypatch):
    _no_compilers(monkeypatch)
    assert main(["cuda-check"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: no CUDA compiler found" in out and "SKIPPED" not in out
    assert "roicore[cuda]" in out


@pytest.mark.parametrize("compiler", ["nvrtc", "nvcc", "all"])
def test_cuda_check_fails_when_the_requested_compiler_is_missing(compiler, capsys,
                                                                 monkeypatch):
    _no_compilers(monkeypatch)
    assert main(["cuda-check", "--compiler", compiler]) == 1
    out = capsys.readouterr().out
    assert "FAILED: compiler not found" in out and "SKIPPED" not in out


def test_cuda_check_fails_with_a_bogus_nvcc(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bogus = str(tmp_path / "no-such-nvcc")
    p = subprocess.run([sys.executable, "-m", "roicore", "cuda-check", "--compiler", "nvcc",
                        "--nvcc", bogus], env=env, capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"FAILED: compiler not found: nvcc: --nvcc {bogus}: no such executable" in p.stdout


@needs_nvrtc
def test_cuda_check_all_fails_if_one_compiler_is_missing(capsys, monkeypatch):
    # NVRTC compiles everything, but nvcc was asked for too and is absent
    monkeypatch.setattr(CT, "find_nvcc", lambda explicit=None: (None, "hidden by the test"))
    assert main(["cuda-check", "--compiler", "all"]) == 1
    out = capsys.readouterr().out
    assert _compiled_counts(out) == [(EXPECTED_INSTANTIATIONS, EXPECTED_INSTANTIATIONS)]
    assert "FAILED: compiler not found: nvcc" in out


def test_missing_instantiations_reads_the_code_sections():
    names = ("rc_pool_fwd<float, true>", "rc_pool_fwd<double, true>", "rc_roi_csr<float>")
    cubin = (b"\x7fELF\0.shstrtab\0.text._Z11rc_pool_fwdIfLb1EEvPKT_xx\0"
             b".nv.info._Z10rc_roi_csrIfEvPKT_\0_Z11rc_pool_fwdIdLb1EEvPKT_xx\0")
    # only a code section counts (not .nv.info or the bare symbol)
    assert CC.missing_instantiations(cubin, names) == list(names[1:])
    lowered = {names[0]: "_Z11rc_pool_fwdIfLb1EEvPKT_xx", names[1]: "_Z11rc_pool_fwdIdLb1EEvPKT_",
               names[2]: "_Z10rc_roi_csrIfEvPKT_"}
    assert CC.missing_instantiations(cubin, names, lowered) == list(names[1:])


def test_nvrtc_is_located_by_cuda_pathfinder(monkeypatch):
    pytest.importorskip("cuda.pathfinder", reason="cuda-pathfinder not installed")
    from cuda import pathfinder

    def refuse(name):
        raise pathfinder.DynamicLibNotFoundError(f"no {name} (test)")

    monkeypatch.setattr(pathfinder, "load_nvidia_dynamic_lib", refuse)
    lib, why = CT.find_nvrtc()
    assert lib is None and "cuda-pathfinder found no NVRTC" in why and "no nvrtc (test)" in why


def test_cuda_check_rejects_a_bad_arch(capsys):
    with pytest.raises(SystemExit) as e:
        main(["cuda-check", "--arch", "80; rm"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("roicore cuda-check: error: argument --arch: expected e.g. sm_80"), err


# --------------------------------------------------------------------------- source


def test_name_expressions():
    names = S.name_expressions()
    assert len(names) == len(set(names)) == EXPECTED_INSTANTIATIONS
    prefixes = {S.mangled_prefix(n) for n in names}
    assert len(prefixes) == len(names)
    assert S.mangled_prefix("rc_pool_fwd<float, true>") == "_Z11rc_pool_fwdIfLb1EEv"
    assert S.mangled_prefix("rc_roi_csr<double>") == "_Z10rc_roi_csrIdEv"


def test_source_has_the_header_pasted_in():
    src = S.source()
    header = (ROOT / "src" / "include" / "roicore" / "roi_common.h").read_text()
    assert header in src
    assert not [ln for ln in src.splitlines() if ln.lstrip().startswith("#include")]
    for kernel in (*S.LAYOUT_KERNELS, *S.DTYPE_KERNELS):
        assert f" {kernel}(" in src, kernel
    assert f"-DROICORE_SRC_HASH=0x{S.source_hash(src)}" in S.options(src)
    assert "--fmad=false" in S.options(src)


def test_an_edited_header_changes_the_compile_options(tmp_path):
    for rel in (S.KERNELS_CU, S.COMMON_H):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / "src" / rel).read_text())
    a = S._source_at(str(tmp_path))
    assert a == S.source()
    hdr = tmp_path / S.COMMON_H
    hdr.write_text(hdr.read_text() + "\n/* edited */\n")
    S._source_at.cache_clear()
    b = S._source_at(str(tmp_path))
    assert b != a and S.options(b) != S.options(a)


def test_sources_are_package_data():
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"]["roicore._csrc"] == "src"
    data = cfg["package-data"]
    assert "*.cu" in data["roicore._csrc.cuda"]
    assert "roi_common.h" in data["roicore._csrc.include.roicore"]
    assert S.source_root() in [r.resolve() for r in S.source_roots()]


def test_import_roicore_does_not_import_cupy():
    code = ("import sys, roicore, roicore._cli.cuda_check, roicore._cli.cuda_tools, "
            "roicore._backends.gpu_checks; "
            "assert 'cupy' not in sys.modules, 'cupy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- RoI check switch


def test_gpu_checks_switch(monkeypatch):
    gpu_checks = getattr(roicore, "gpu_checks", GC.gpu_checks)
    monkeypatch.delenv(GC.ENV_SKIP, raising=False)
    assert GC.checks_enabled()
    with gpu_checks(False):
        assert not GC.checks_enabled()
        with gpu_checks(True):
            assert GC.checks_enabled()
        assert not GC.checks_enabled()
    assert GC.checks_enabled()
    monkeypatch.setenv(GC.ENV_SKIP, "1")
    assert not GC.checks_enabled()
    with gpu_checks(True):
        assert GC.checks_enabled()
    monkeypatch.setenv(GC.ENV_SKIP, "0")
    assert GC.checks_enabled()
    with pytest.raises(TypeError), gpu_checks("no"):
        pass


# --------------------------------------------------------------------------- grid check


def test_c_round_is_c_round():
    rng = np.random.default_rng(7)
    vals = np.concatenate([rng.uniform(-20, 20, 500), np.arange(-10, 10, 0.5),
                           [0.49999997, -0.49999997, 0.49999999999999994, 8388607.5, 2**52 + 1,
                            1e30, -1e30, -0.0, 2.0**41]])
    for T in (np.float32, np.float64):
        v = vals.astype(T)
        got = GC.c_round(v)
        exp = []
        for a in v.tolist():
            r = float(decimal.Decimal(a).quantize(decimal.Decimal(1), decimal.ROUND_HALF_UP,
                                                  context=decimal.Context(prec=400)))
            exp.append(min(max(r, -GC.COORD_LIMIT), GC.COORD_LIMIT))
        np.testing.assert_array_equal(got, np.array(exp, T), err_msg=T.__name__)
    nan = GC.c_round(np.array([np.nan, np.inf, -np.inf], np.float32))
    assert np.isnan(nan[0]) and nan[1] == GC.COORD_LIMIT and nan[2] == -GC.COORD_LIMIT


def _cpu_cost(plan, x, r):
    # the CPU kernels' own sampled_cost (roi_cpu.h), as the CPU backend calls it
    from roicore import _cpu
    from roicore import _validation as V

    T = np.float64 if x.dtype == np.float64 else np.float32
    rc = np.ascontiguousarray(r, T)
    out = np.empty(plan.shapes.out_shape, T)
    return _cpu.sampled_cost_of(np.ascontiguousarray(x, T), rc, V.batch_indices(r),
                                out, plan.kind, plan.aligned, plan.sampling_ratio,
                                plan.spatial_scale, plan.channels_last)


def test_grid_check_agrees_with_the_cpu_backend():
    # RoIs whose adaptive grid lands right at the per-side sampling limit (2**21 samples
    # along a RoI side), in float32 and float64: the GPU backend's host check must refuse
    # exactly what the CPU backend refuses, and its NumPy replay of the cost must equal
    # the CPU kernels' own numbers
    rng = np.random.default_rng(3)
    refused = 0
    side = _limits.SIDE_SAMPLE_LIMIT
    for trial in range(600):
        dtype = (np.float32, np.float64)[trial % 2]
        op = ("align", "aligned", "warp")[trial % 3]
        P = int(rng.integers(1, 4))
        scale = float(rng.choice([1.0, 0.5, 1 / 16, 0.3, 1 / 3]))
        y1 = float(rng.uniform(-100, 100))
        step = float(rng.choice([-2, -1, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 2, 0.25, -0.25]))
        y2 = y1 + (side + step) / scale
        if rng.random() < 0.3:
            y1, y2 = np.round(y1), np.round(y2 * 2) / 2
        rois = np.array([[0, 0, y1, 0.5, y2], [0, 0, 0, 2, 2]])  # one sample per bin in x
        x = np.zeros((1, 1, 2, 2), dtype)
        if op == "warp":
            plan, _, r = A._warp_plan(x, rois, (P, 1), scale, 0, "avg", None, "NCHW", 1)
            fwd, args = roicore.roi_warp, (x, rois, (P, 1), scale, 0)
        else:
            al = op == "aligned"
            plan, _, r = A._align_plan(x, rois, (P, 1), scale, 0, al, "avg", "NCHW", 1)
            fwd, args = roicore.roi_align, (x, rois, (P, 1), scale, 0, al)
        try:
            fwd(*args)
            cpu = False
        except ValueError as exc:
            assert "samples along one side" in str(exc)
            cpu = True
        T = np.float64 if dtype == np.float64 else np.float32
        assert GC.grid_too_large(plan, np.asarray(r, T)) == cpu, (trial, op, dtype, P, y1, y2)
        assert GC.sampling_cost(plan, np.asarray(r, T)) == _cpu_cost(plan, x, r), trial
        refused += cpu
    assert 100 < refused < 500  # both outcomes were exercised


def test_cost_replay_agrees_with_the_cpu_kernels_per_bin():
    # around the per-bin limit (2**24 samples per bin) with random boxes, fixed and
    # adaptive grids: same numbers from the NumPy replay and the CPU kernels
    rng = np.random.default_rng(5)
    for trial in range(300):
        dtype = (np.float32, np.float64)[trial % 2]
        P = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        scale = float(rng.choice([1.0, 0.25, 1 / 3]))
        w = float(rng.uniform(1, 9000)) / scale
        h = float(rng.uniform(1, 9000)) / scale
        rois = np.array([[0, 5, 7, 5 + w, 7 + h], [0, 0, 0, 2, 2]])
        x = np.zeros((1, 3, 2, 2), dtype)
        sr = int(rng.choice([0, 0, 1, 7, 4096, 4097]))
        plan, _, r = A._align_plan(x, rois, P, scale, sr, bool(trial % 3 == 0), "avg", "NCHW",
                                   1)
        T = np.float64 if dtype == np.float64 else np.float32
        assert GC.sampling_cost(plan, np.asarray(r, T)) == _cpu_cost(plan, x, r), trial


def test_grid_check_ignores_mnc_and_bounds_fixed_grids():
    x = np.zeros((1, 1, 2, 2), np.float32)
    rois = np.array([[0, 0, 0, 1, 1e6]])
    plan, _, r = A._align_plan(x, rois, 1, 1.0, 2, False, "avg", "NCHW", 1)
    assert not GC.grid_too_large(plan, np.asarray(r, np.float32))
    plan, _, r = A._warp_plan(x, rois, 1, 1.0, 0, "avg", "mnc", "NCHW", 1)
    assert not GC.grid_too_large(plan, np.asarray(r, np.float32))
    rois = np.array([[0, 0, 0, 1, 1e7]])
    plan, _, r = A._align_plan(x, rois, 1, 1.0, 0, False, "avg", "NCHW", 1)
    assert GC.grid_too_large(plan, np.asarray(r, np.float32))  # 1e7 samples along y
    plan, _, r = A._align_plan(x, rois[:, :], 1, 1.0, 4097, False, "avg", "NCHW", 1)
    assert GC.grid_too_large(plan, np.asarray(r, np.float32))  # 4097**2 > 2**24 per bin


# --------------------------------------------------------------------------- host emulation

EMULATION = ROOT / "tests" / "support" / "gpu_emulation"
needs_gxx = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which(os.environ.get("CXX", "g++")) is None,
    reason="host emulation of the CUDA kernels needs Linux and g++ (C++20)",
)


def _run_emulated(*pytest_args, threads=False):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(EMULATION), env.get("PYTHONPATH", "")])
    env["ROICORE_EMULATE_THREADS"] = "1" if threads else "0"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "roicore_gpu_emulation",
           "-p", "no:cacheprovider", str(ROOT / "tests" / "test_gpu.py"), *pytest_args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    m = re.search(r"(\d+) passed", out)
    return int(m.group(1)) if m else 0, out


@needs_gxx
def test_gpu_tests_pass_on_the_host_emulation():
    # tests/test_gpu.py, every case, with the CUDA kernels compiled for the host (no GPU):
    # checks the kernels' arithmetic and indexing against the CPU backend (bit for bit) and
    # the Python glue; not NVRTC, device math, real parallelism or CuPy itself
    passed, out = _run_emulated()
    assert passed > 700, out[-3000:]


@needs_gxx
def test_csr_block_scan_with_real_threads_on_the_host_emulation():
    # rc_roi_csr is the one kernel whose threads cooperate (__syncthreads, __shared__):
    # run its blocks as 256 real threads with a barrier
    passed, out = _run_emulated("-k", "csr_groups", threads=True)
    assert passed == 6, out[-3000:]
