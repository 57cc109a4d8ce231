"""``python -m roicore bench``: time roicore against every installed peer.

On the standard workloads of :mod:`roicore._cli.workloads`, in one process, on
the same arrays, with matched thread counts:

- roicore (``num_threads=T``, the chosen ``--layout``);
- onnxruntime on the CPU (``intra_op_num_threads=T``): ``RoiAlign`` (opset
  16, ``coordinate_transformation_mode="half_pixel"``) for the RoI Align
  workloads, ``MaxRoiPool`` for RoI Pool; forward only (ONNX has no backward);
- OpenVINO on the CPU (``INFERENCE_NUM_THREADS=T``, f32 precision):
  ``ROIAlign`` (opset 13; ``aligned_mode="half_pixel_for_nn"`` is the half-pixel
  shift of ``aligned=True``, ``"asymmetric"`` of ``aligned=False``) and
  ``ROIPooling`` (``method="max"``); forward, float32 only;
- torchvision.ops ``roi_align`` / ``roi_pool`` (``torch.set_num_threads(T)``),
  forward and backward (autograd; only the ``.backward`` call is timed);
- a reference row, "fresh output (floor)": ``np.empty`` + ``fill`` of an
  array of the result's size (the output for forward, the input for
  backward), i.e. the memory-bound floor of writing a fresh result.

``--load N`` starts N core-burning processes (busy Python loops that exit with
the bench) for the whole run, to see the timings of a loaded server (the default thread policy
must not collapse there); ``--isa`` forces roicore's kernel instruction set
(e.g. ``avx2`` on an AVX-512 machine, to measure the common cloud CPU);
``--items`` prints the parallel-item report of roicore's CPU backward
(items, the largest item's share, the speedup bound for 16-128 threads).

roicore runs with ``num_threads=None`` (its default policy: the default team,
fewer threads for a small call) in the rows whose T is the default team, with
``num_threads=T`` in the others.

Implementations are timed round-robin (one call of each per repeat, after a
warm-up call each), so a load change on the machine hits them all alike.
Peers always run NCHW (the only layout they take).  The table gives the
median, min-max, ``ratio`` = median / roicore's median (above 1: roicore is
that many times faster) and the largest absolute difference from roicore's
result.

``--device cuda`` (:mod:`roicore._cli.bench_cuda`) times roicore's GPU backend
(CuPy arrays) instead, against torchvision.ops on CUDA tensors, on the same
workloads and values: roicore
forward, backward with ``deterministic=False`` and ``deterministic=True``
(each also under ``roicore.gpu_checks(False)``, "checks off": the RoI check
copies ``rois`` to the host, which synchronises), torchvision forward and
autograd backward, and the floor (``cupy.empty`` + ``fill``).  The device is
synchronised before and after every timed call, so a time is the wall time
of the call including its kernels.  Without CuPy or a CUDA device it exits
with status 2 and "no CUDA device".
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.util
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import workloads as _workloads

#: Repeats per implementation (the median is reported).
DEFAULT_REPEAT = 7
QUICK_REPEAT = 3


def _threads_arg(text: str) -> str:
    """argparse type of --threads: comma-separated counts >= 1 or 'all'."""
    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("give at least one thread count, e.g. 1,2 or all")
    for part in parts:
        if part == "all":
            continue
        try:
            n = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a thread count; use whole numbers >= 1 or 'all', "
                "comma-separated (e.g. 1,2)") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {n}")
    return text


def _workload_arg(text: str) -> str:
    """argparse type of --workload: names of the standard workloads or 'all'."""
    if text.strip().lower() == "all":
        return text
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"give {', '.join(_workloads.WORKLOADS)}, a comma-separated list, or all")
    for n in names:
        if n.upper() not in _workloads.WORKLOADS:
            raise argparse.ArgumentTypeError(
                f"unknown workload {n!r}; choose from {', '.join(_workloads.WORKLOADS)} or all")
    return text


def _whole_number(least: int) -> Callable[[str], int]:
    """argparse type: a whole number >= ``least``."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number >= {least}, got {text!r}") from None
        if n < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {n}")
        return n

    return parse


_positive_int = _whole_number(1)
_count = _whole_number(0)  # --load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", default="all", type=_workload_arg, metavar="NAMES",
                        help=f"{', '.join(_workloads.WORKLOADS)}, a comma-separated list, or "
                             "all (default)")
    parser.add_argument("--threads", default="all", type=_threads_arg, metavar="COUNTS",
                        help="thread counts, comma-separated, e.g. 1,2; all = every core "
                             "(or OMP_NUM_THREADS; the default)")
    parser.add_argument("--repeat", type=_positive_int, default=None, metavar="N",
                        help=f"timed calls per implementation; the median is reported "
                             f"(default {DEFAULT_REPEAT}, {QUICK_REPEAT} with --quick)")
    parser.add_argument("--direction", default="both", choices=["forward", "backward", "both"],
                        help="forward, backward or both (default)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="data type of every array (default float32)")
    parser.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC", "both"],
                        help="roicore's memory layout; both: roicore NCHW and NHWC side by side "
                             "(other libraries always use NCHW; default NCHW)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller problems (1/8 of the channels, 1/10 of the boxes) and "
                             "fewer repeats: a smoke test that takes seconds")
    parser.add_argument("--no-progress", action="store_true",
                        help="do not report progress on stderr")
    parser.add_argument("--load", type=_count, default=0, metavar="N",
                        help="run N core-burning processes beside the timings (a loaded "
                             "server; default 0)")
    parser.add_argument("--isa", default="auto",
                        choices=["auto", "reference", "baseline", "avx2", "avx512"],
                        help="roicore's CPU kernel instruction set (capped at what the CPU "
                             "has; default auto = the best; results never depend on it)")
    parser.add_argument("--items", action="store_true",
                        help="also print the parallel-item report of the CPU backward")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cpu (default) or cuda: roicore on the GPU (CuPy arrays) against "
                             "torchvision on CUDA tensors (--threads is ignored)")


# --------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    name: str
    call: Callable[[], Any]
    result: Callable[[Any], np.ndarray] | None = None  # to NumPy in roicore's layout
    times: list[float] = field(default_factory=list)
    value: np.ndarray | None = None
    sync: Callable[[], None] | None = None  # waits for the device (GPU candidates)


@dataclass
class Case:
    workload: _workloads.Workload
    direction: str  # "fwd" / "bwd"
    threads: int  # 0: not applicable (--device cuda)
    candidates: list[Candidate]


def _threads(spec: str) -> list[int]:
    import roicore

    out: list[int] = []
    for part in spec.split(","):
        part = part.strip().lower()
        if not part:
            continue
        n = roicore.default_num_threads() if part == "all" else int(part)
        if n < 1:
            raise ValueError(f"--threads: thread counts must be >= 1; got {n}")
        if n not in out:
            out.append(n)
    if not out:
        raise ValueError("--threads: give at least one thread count")
    return out


def _workload_list(spec: str, quick: bool) -> list[_workloads.Workload]:
    names = list(_workloads.WORKLOADS) if spec.strip().lower() == "all" else [
        s.strip() for s in spec.split(",") if s.strip()]
    ws = [_workloads.get(n) for n in names]
    return [w.quick() for w in ws] if quick else ws


def _to_layout(a: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if layout == "NHWC" else a


def _onnx_session(w: _workloads.Workload, dtype: np.dtype, threads: int) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    ttype = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    ph, pw = w.output_size
    if w.op == "align":
        node = helper.make_node(
            "RoiAlign", ["X", "rois", "batch_indices"], ["Y"], mode="avg",
            output_height=ph, output_width=pw, sampling_ratio=max(w.sampling_ratio, 0),
            spatial_scale=w.spatial_scale,
            coordinate_transformation_mode="half_pixel" if w.aligned else "output_half_pixel")
        inputs = [helper.make_tensor_value_info("X", ttype, None),
                  helper.make_tensor_value_info("rois", ttype, None),
                  helper.make_tensor_value_info("batch_indices", TensorProto.INT64, None)]
    else:
        node = helper.make_node("MaxRoiPool", ["X", "rois"], ["Y"], pooled_shape=[ph, pw],
                                spatial_scale=w.spatial_scale)
        inputs = [helper.make_tensor_value_info("X", ttype, None),
                  helper.make_tensor_value_info("rois", ttype, None)]
    graph = helper.make_graph([node], "roi", inputs,
                              [helper.make_tensor_value_info("Y", ttype, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # idle worker threads sleep instead of spinning: a spinning pool would take
    # a core from whichever implementation runs next in the round-robin
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _openvino_call(w: _workloads.Workload, x: np.ndarray, rois: np.ndarray,
                   threads: int) -> Callable[[], Any]:
    """OpenVINO's CPU plugin running ``w``'s forward (float32): ROIAlign (opset 13)
    or ROIPooling (max), compiled once, with ``threads`` inference threads."""
    import openvino as ov
    import openvino.opset13 as ops

    ph, pw = w.output_size
    data = ops.parameter(list(x.shape), np.float32, name="X")
    if w.op == "align":
        boxes = ops.parameter([rois.shape[0], 4], np.float32, name="rois")
        idx = ops.parameter([rois.shape[0]], np.int32, name="batch_indices")
        node = ops.roi_align(data, boxes, idx, ph, pw, max(w.sampling_ratio, 0),
                             w.spatial_scale, "avg",
                             # OpenVINO's CPU plugin: "half_pixel_for_nn" is the -0.5 pixel
                             # shift of aligned=True (checked against roicore, tests)
                             aligned_mode="half_pixel_for_nn" if w.aligned else "asymmetric")
        params = [data, boxes, idx]
        feed = [x, np.ascontiguousarray(rois[:, 1:]), rois[:, 0].astype(np.int32)]
    else:
        boxes = ops.parameter([rois.shape[0], 5], np.float32, name="rois")
        node = ops.roi_pooling(data, boxes, [ph, pw], w.spatial_scale, "max")
        params = [data, boxes]
        feed = [x, rois]
    model = ov.Model([node], params, "roi")
    # f32: the CPU plugin would otherwise compute in bf16 where the CPU has it
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    return lambda: request.infer(feed)[0]


def _have(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def _peers_available() -> tuple[dict[str, str], list[str]]:
    """({peer: version}, [notes about missing peers])."""
    found: dict[str, str] = {}
    notes: list[str] = []
    if _have("onnxruntime") and _have("onnx"):
        try:
            import onnxruntime

            found["onnxruntime"] = onnxruntime.__version__
        except Exception as exc:  # broken install: report, keep going
            notes.append(f"onnxruntime: import failed ({exc})")
    else:
        notes.append("onnxruntime/onnx: not installed (skipped)")
    if _have("openvino"):
        try:
            import openvino

            found["openvino"] = openvino.__version__.split("-")[0]
        except Exception as exc:
            notes.append(f"openvino: import failed ({exc})")
    else:
        notes.append("openvino: not installed (skipped)")
    if _have("torchvision"):
        try:
            import torch
            import torchvision.ops  # noqa: F401

            found["torchvision"] = f"{torchvision_version()} (torch {torch.__version__})"
        except Exception as exc:
            notes.append(f"torchvision: import failed ({exc})")
    else:
        notes.append("torchvision: not installed (skipped)")
    return found, notes


def torchvision_version() -> str:
    import torchvision

    return str(torchvision.__version__)


def _roicore_threads(n: int) -> int | None:
    """roicore's ``num_threads`` for a row of ``n`` threads: None (its default
    policy, what a caller passing nothing gets: the default team, or fewer
    threads for a small call) when ``n`` is the default team, else ``n``."""
    import roicore

    return None if n == roicore.default_num_threads() else n


#: Results from this size on come from roicore's output cache (output_cache.h).
_CACHE_FLOOR = 4 << 20


def _without_output_cache(call: Callable[[], Any]) -> Any:
    """``call()`` with roicore's output cache bypassed: its result is fresh pages,
    as on the first call or with ``ROICORE_OUTPUT_CACHE_MB=0``, while the blocks the
    cache holds stay for the other rows (turning the cache off would free them, and
    every "roicore" row would then page-fault fresh memory too)."""
    from .._backends.cpu import _cpu

    old = _cpu._output_cache_bypass(True)
    try:
        return call()
    finally:
        _cpu._output_cache_bypass(old)


def _cases(w: _workloads.Workload, directions: list[str], thread_counts: list[int],
           dtype: np.dtype, layout_arg: str, peers: dict[str, str]) -> list[Case]:
    both = layout_arg == "both"
    layout = "NCHW" if both else layout_arg
    x_nchw = w.input(dtype)
    rois = w.rois(dtype)
    x = _to_layout(x_nchw, layout)
    x_nhwc = _to_layout(x_nchw, "NHWC") if both else None
    cases: list[Case] = []
    for d in directions:
        g_nchw = w.grad_output(dtype) if d == "bwd" else None
        g = _to_layout(g_nchw, layout) if g_nchw is not None else None
        floor_shape = w.output_shape(layout) if d == "fwd" else w.input_shape(layout)
        for nt_count in thread_counts:
            nt = _roicore_threads(nt_count)
            cands: list[Candidate] = []
            if d == "fwd":
                cands.append(Candidate(
                    "roicore", lambda nt=nt: w.forward(x, rois, layout=layout, num_threads=nt)))
            else:
                cands.append(Candidate(
                    "roicore",
                    lambda nt=nt, g=g: w.backward(g, x, rois, layout=layout, num_threads=nt)))
            if d == "bwd" and w.op == "pool":
                # what roicore.torch's training backward runs: the winners saved by the
                # forward (like torchvision's argmax), not recomputed from the input
                _, idx = w.forward(x, rois, layout=layout, return_indices=True)
                cands.append(Candidate(
                    "roicore, from stored winners",
                    lambda nt=nt, g=g, idx=idx: w.backward(g, x, rois, layout=layout,
                                                           num_threads=nt, indices=idx)))
            if int(np.prod(floor_shape)) * dtype.itemsize >= _CACHE_FLOOR:
                cands.append(Candidate("roicore, fresh pages",
                                       lambda f=cands[0].call: _without_output_cache(f)))
            if both:
                to_nchw = lambda y: np.ascontiguousarray(y.transpose(0, 3, 1, 2))  # noqa: E731
                if d == "fwd":
                    cands.append(Candidate(
                        "roicore NHWC",
                        lambda nt=nt: w.forward(x_nhwc, rois, layout="NHWC", num_threads=nt),
                        to_nchw))
                else:
                    g_nhwc = _to_layout(g_nchw, "NHWC")
                    cands.append(Candidate(
                        "roicore NHWC",
                        lambda nt=nt, g=g_nhwc: w.backward(g, x_nhwc, rois, layout="NHWC",
                                                           num_threads=nt),
                        to_nchw))
            nt = nt_count  # peers: the thread count as given
            if "onnxruntime" in peers and d == "fwd":
                sess = _onnx_session(w, dtype, nt)
                if w.op == "align":
                    feed = {"X": x_nchw, "rois": np.ascontiguousarray(rois[:, 1:]),
                            "batch_indices": rois[:, 0].astype(np.int64)}
                    name = "onnxruntime RoiAlign"
                else:
                    feed = {"X": x_nchw, "rois": rois}
                    name = "onnxruntime MaxRoiPool"
                cands.append(Candidate(
                    name, lambda sess=sess, feed=feed: sess.run(None, feed)[0],
                    lambda y: _to_layout(y, layout)))
            if "openvino" in peers and d == "fwd" and dtype == np.float32:
                name = "openvino " + ("ROIAlign" if w.op == "align" else "ROIPooling")
                cands.append(Candidate(name, _openvino_call(w, x_nchw, rois, nt),
                                       lambda y: _to_layout(np.asarray(y), layout)))
            if "torchvision" in peers:
                cands.append(_torchvision_candidate(w, d, nt, x_nchw, rois, g_nchw, layout))

            def floor(shape: tuple[int, ...] = floor_shape) -> None:
                a = np.empty(shape, dtype)
                a.fill(0)

            cands.append(Candidate("fresh output (floor)", floor))
            cases.append(Case(w, d, nt, cands))
    return cases


def _torchvision_candidate(w: _workloads.Workload, d: str, nt: int, x: np.ndarray,
                           rois: np.ndarray, g: np.ndarray | None, layout: str) -> Candidate:
    import torch
    import torchvision.ops as tvo

    xt = torch.from_numpy(x)
    rt = torch.from_numpy(rois)

    def fwd(inp: Any) -> Any:
        if w.op == "align":
            return tvo.roi_align(inp, rt, w.output_size, w.spatial_scale, w.sampling_ratio,
                                 w.aligned)
        return tvo.roi_pool(inp, rt, w.output_size, w.spatial_scale)

    name = f"torchvision {'roi_align' if w.op == 'align' else 'roi_pool'}"
    if d == "fwd":
        def call() -> Any:
            torch.set_num_threads(nt)
            with torch.no_grad():
                return fwd(xt)

        return Candidate(name, call, lambda y: _to_layout(y.numpy(), layout))
    xg = xt.clone().requires_grad_(True)
    torch.set_num_threads(nt)
    y = fwd(xg)
    gt = torch.from_numpy(g)

    def bcall() -> Any:
        torch.set_num_threads(nt)
        xg.grad = None
        y.backward(gt, retain_graph=True)
        return xg.grad

    return Candidate(name + " (autograd backward)", bcall,
                     lambda r: _to_layout(r.numpy(), layout))


# --------------------------------------------------------------------------- timing
def _progress_line(i: int, n: int, case: Case, seconds: float) -> str:
    threads = f" T={case.threads}" if case.threads > 0 else ""
    return (f"roicore bench: [{i}/{n}] {case.workload.name} {case.direction}{threads}: "
            f"{len(case.candidates)} implementations timed in {seconds:.1f} s")


def _time_cases(cases: list[Case], repeat: int, progress: bool) -> None:
    """Time every case; progress goes to stderr: a tqdm bar on a terminal when tqdm is
    installed, else one line per finished case (so logs and plain terminals see it too)."""
    total = sum(len(c.candidates) for c in cases) * (repeat + 1)
    bar = None
    if progress and _have("tqdm") and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, desc="roicore bench", unit="call", file=sys.stderr,
                   leave=False, dynamic_ncols=True)
    try:
        for i, case in enumerate(cases, 1):
            t_case = time.perf_counter()
            if bar is not None:
                bar.set_postfix_str(f"{case.workload.name} {case.direction} T={case.threads}")
            # warm-up: one call each (keeps the result for the accuracy column)
            for cand in case.candidates:
                if cand.sync is not None:
                    cand.sync()
                r = cand.call()
                if cand.result is not None:
                    cand.value = cand.result(r)
                elif cand is case.candidates[0]:
                    cand.value = r
                if bar is not None:
                    bar.update(1)
            for _ in range(repeat):
                for cand in case.candidates:  # round-robin
                    gc.collect()
                    if cand.sync is not None:
                        cand.sync()
                        t0 = time.perf_counter()
                        cand.call()
                        cand.sync()
                    else:
                        t0 = time.perf_counter()
                        cand.call()
                    cand.times.append(time.perf_counter() - t0)
                    if bar is not None:
                        bar.update(1)
            if progress and bar is None:
                print(_progress_line(i, len(cases), case, time.perf_counter() - t_case),
                      file=sys.stderr, flush=True)
    finally:
        if bar is not None:
            bar.close()


def _diff(a: np.ndarray | None, b: np.ndarray | None) -> str:
    if a is None or b is None:
        return "-"
    if a.shape != b.shape:
        return "shape!"
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return f"{np.nanmax(d):.1e}" if d.size else "0"


HEADER = (f"{'workload':<14} {'dir':<4} {'T':>3}  {'implementation':<40} {'median ms':>10} "
          f"{'min-max ms':>17} {'ratio':>8} {'max|diff|':>9}")


def _report(cases: list[Case]) -> list[str]:
    lines = [HEADER, "-" * len(HEADER)]
    for case in cases:
        ref = case.candidates[0]
        ref_med = float(np.median(ref.times))
        for cand in case.candidates:
            t = np.array(cand.times) * 1e3
            med = float(np.median(t))
            ratio = med / (ref_med * 1e3) if ref_med > 0 else float("nan")
            rng = f"{t.min():.2f}-{t.max():.2f}"
            diff = "-" if cand is ref or cand.value is None else _diff(ref.value, cand.value)
            threads = case.threads if case.threads > 0 else "-"
            lines.append(
                f"{case.workload.name:<14} {case.direction:<4} {threads:>3}  "
                f"{cand.name:<40} {med:>10.2f} {rng:>17} {ratio:>7.2f}x {diff:>9}")
        floor = case.candidates[-1]
        fmed = float(np.median(floor.times))
        if fmed > 0:
            lines.append(f"{'':<14} {'':<4} {'':>3}  -> roicore = {ref_med / fmed:.2f}x the "
                         f"fresh-output floor")
        lines.append("")
    return lines


def run(args: argparse.Namespace) -> int:
    repeat = args.repeat if args.repeat is not None else (
        QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    if repeat < 1:
        raise ValueError(f"--repeat must be >= 1; got {repeat}")
    dtype = np.dtype(args.dtype)
    workloads = _workload_list(args.workload, args.quick)
    directions = {"forward": ["fwd"], "backward": ["bwd"], "both": ["fwd", "bwd"]}[
        args.direction]
    if getattr(args, "device", "cpu") == "cuda":
        from .bench_cuda import run_cuda

        return run_cuda(args, repeat, dtype, workloads, directions)
    thread_counts = _threads(args.threads)
    from .. import _cpu

    before = str(_cpu.cpu_isa())
    isa = _cpu.set_cpu_isa(args.isa) if args.isa != "auto" else before
    try:
        return _run_cpu(args, repeat, dtype, workloads, directions, thread_counts, isa)
    finally:
        _cpu.set_cpu_isa(before)


def _run_cpu(args: argparse.Namespace, repeat: int, dtype: np.dtype,
             workloads: list[_workloads.Workload], directions: list[str],
             thread_counts: list[int], isa: str) -> int:
    import roicore

    from .._backends import openmp

    peers, notes = _peers_available()

    print(f"roicore {roicore.__version__} bench: {platform.machine()}, "
          f"{os.cpu_count()} CPUs ({_cpu_model()}), "
          f"OpenMP {'on' if roicore.openmp_enabled() else 'OFF'}, kernels {isa}"
          f"{' (forced by --isa)' if args.isa != 'auto' else ''}, "
          f"Python {platform.python_version()}, NumPy {np.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"OpenMP wait policy: {openmp.WAIT_POLICY}")
    print(f"output cache: {roicore.output_cache_info()['limit'] >> 20} MiB (roicore's large "
          f"results reuse memory; 0 = fresh pages every call)")
    lay = "NCHW and NHWC" if args.layout == "both" else args.layout
    print(f"dtype {dtype.name}, roicore layout {lay} (peers NCHW), threads "
          f"{','.join(map(str, thread_counts))}, {repeat} repeats round-robin after 1 warm-up"
          f"{', QUICK (reduced workloads)' if args.quick else ''}")
    print(f"load: {args.load} core-burning process(es) running beside the timings"
          if args.load else "load: none (an idle machine is assumed)")
    _print_context(peers, notes, workloads)
    cases: list[Case] = []
    for w in workloads:
        cases.extend(_cases(w, directions, thread_counts, dtype, args.layout, peers))
    with _burners(args.load):
        rc = _time_and_report(cases, repeat, args)
    if getattr(args, "items", False):
        _items_report(workloads, dtype, thread_counts)
    return rc


def _cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


_BURNER = ("import os\n"
           "parent = os.getppid()\n"
           "while os.getppid() == parent:\n"
           "    for _ in range(100000):\n"
           "        pass\n")


@contextlib.contextmanager
def _burners(n: int) -> Iterator[None]:
    """``n`` processes that each keep one core busy until the block ends, or until
    this process dies (each checks its parent every ~10 ms: a bench killed by a
    signal, which skips the ``finally`` below, leaves no burner behind)."""
    procs = [subprocess.Popen([sys.executable, "-c", _BURNER],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(n)]
    try:
        if procs:
            time.sleep(0.3)  # let them start spinning
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _items_report(workloads: list[_workloads.Workload], dtype: np.dtype,
                  thread_counts: list[int]) -> None:
    """The parallel-item report of the CPU backward (roicore._cli.backward_items): for
    this run's thread counts and 16/32/64/128 threads."""
    from .backward_items import format_report, item_report

    names = [w.name.split("-")[0] for w in workloads]  # "W1-quick" -> "W1"
    threads = sorted(set(thread_counts) | {16, 32, 64, 128})
    print("\nCPU backward: parallel work items")
    print(format_report(item_report(names, threads, dtype=dtype)))


def _print_context(peers: dict[str, str], notes: list[str],
                   workloads: list[_workloads.Workload], *extra: str) -> None:
    """The header lines shared by the CPU and CUDA tables."""
    print("peers: " + (", ".join(f"{k} {v}" for k, v in peers.items()) or "none found"))
    for n in notes:
        print("  " + n)
    for w in workloads:
        print("  " + w.describe())
    for line in extra:
        print(line)
    print("ratio = median / roicore's median (above 1: roicore is faster)\n", flush=True)


def _time_and_report(cases: list[Case], repeat: int, args: argparse.Namespace) -> int:
    _time_cases(cases, repeat, progress=not args.no_progress)
    for line in _report(cases):
        print(line)
    return 0
