"""Forward of W1-W4 by layout and dtype (issue 14): NCHW vs NHWC, float32 vs
float64, with ``out=`` and with fresh outputs, beside OpenVINO's ROIPooling
(W4) and ROIAlign (W1) when it is installed.

Run from the repository root on a quiet machine::

    python -m benchmarks.forward_layouts --isa avx2 --threads 1,2 --rounds 11
    python -m benchmarks.forward_layouts --isa avx512 --threads 1,2 --rounds 11

Every case of one thread count is run once per round, in the same order, so
a slow spell of the machine hits all cases alike; each cell is the median
over rounds (ms).  The ratio columns are NHWC / NCHW (same dtype, same
``out`` mode), float64 / float32 (same layout) and OpenVINO / roicore; the
"fresh-output floor" row is ``np.empty`` + ``fill`` of the output, as in
``python -m roicore bench``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import roicore
from roicore import _cpu
from roicore._cli import workloads as _workloads


def _roicore_case(w: _workloads.Workload, layout: str, dtype: Any, threads: int,
                  fresh: bool) -> Callable[[], Any]:
    x = w.input(dtype, layout)
    rois = w.rois(dtype)
    out = None if fresh else np.empty(w.output_shape(layout), dtype)
    kw: dict[str, Any] = {"layout": layout, "num_threads": threads}
    if out is not None:
        kw["out"] = out
        w.forward(x, rois, **kw)  # fault the output in once
    return lambda: w.forward(x, rois, **kw)


def _openvino_case(w: _workloads.Workload, threads: int) -> Callable[[], Any] | None:
    try:
        from benchmarks.bench_roi import _openvino_call
    except Exception:
        return None
    try:
        return _openvino_call(w.op, w, w.input(np.float32), w.rois(np.float32), threads)
    except (ImportError, NotImplementedError):
        return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--isa", default=None, help="avx2, avx512, baseline, reference "
                   "(default: the best this CPU runs)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--workloads", default="W1,W2,W3,W4")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--layouts", default="NCHW,NHWC")
    p.add_argument("--modes", default="out,fresh", help="out (out= given), fresh")
    p.add_argument("--no-peers", action="store_true", help="skip OpenVINO")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time (time.process_time), which leaves out "
                   "time the process waited for a core on a shared machine; "
                   "meaningful at 1 thread (idle OpenMP threads spin and count)")
    p.add_argument("--quick", action="store_true",
                   help="the reduced workloads (Workload.quick()), for a smoke run")
    a = p.parse_args(argv)
    if a.isa:
        _cpu.set_cpu_isa(a.isa)
    print(f"roicore {roicore.__version__}, isa {_cpu.cpu_isa()}, rounds {a.rounds}")
    names = [s.strip().upper() for s in a.workloads.split(",") if s.strip()]
    dtypes = [s.strip() for s in a.dtypes.split(",") if s.strip()]
    layouts = [s.strip().upper() for s in a.layouts.split(",") if s.strip()]
    modes = [s.strip() for s in a.modes.split(",") if s.strip()]
    for threads in (int(t) for t in a.threads.split(",")):
        cases: dict[tuple, Callable[[], Any]] = {}
        for name in names:
            w = _workloads.get(name)
            if a.quick:
                w = w.quick()
            for dt in dtypes:
                for lay in layouts:
                    for mode in modes:
                        cases[(name, dt, lay, mode)] = _roicore_case(
                            w, lay, np.dtype(dt), threads, mode == "fresh")
            for dt in dtypes:
                shape, dtype = w.output_shape(), np.dtype(dt)

                def floor(shape: tuple[int, ...] = shape, dtype: Any = dtype) -> None:
                    np.empty(shape, dtype).fill(0)  # as `python -m roicore bench`

                cases[(name, dt, "floor", "floor")] = floor
            if not a.no_peers and name in ("W1", "W4"):
                ov = _openvino_case(w, threads)
                if ov is not None:
                    cases[(name, "float32", "NCHW", "openvino")] = ov
        for f in cases.values():  # warm up
            f()
        clock = time.process_time if a.clock == "cpu" else time.perf_counter
        times: dict[tuple, list[float]] = {k: [] for k in cases}
        for _ in range(a.rounds):
            for k, f in cases.items():
                t0 = clock()
                f()
                times[k].append((clock() - t0) * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n{threads} thread(s): median {a.clock} ms over {a.rounds} interleaved rounds")
        print(f"{'case':<28}{'ms':>9}{'NHWC/NCHW':>11}{'f64/f32':>9}{'OV/this':>9}")
        for k, m in med.items():
            name, dt, lay, mode = k
            if mode == "openvino":
                print(f"{name + ' OpenVINO f32':<28}{m:9.2f}")
                continue
            if mode == "floor":
                fresh = med.get((name, dt, "NCHW", "fresh"))
                ratio = f"  NCHW fresh / floor {fresh / m:.2f}" if fresh else ""
                print(f"{f'{name} {dt[5:]} fresh-output floor':<28}{m:9.2f}{ratio}")
                continue
            r1 = med.get((name, dt, "NCHW", mode)) if lay == "NHWC" else None
            r2 = med.get((name, "float32", lay, mode)) if dt == "float64" else None
            ov = med.get((name, "float32", "NCHW", "openvino"))
            s1 = f"{m / r1:11.2f}" if r1 else " " * 11
            s2 = f"{m / r2:9.2f}" if r2 else " " * 9
            s3 = f"{ov / m:9.2f}" if ov and dt == "float32" else ""
            print(f"{f'{name} {dt[5:]} {lay} {mode}':<28}{m:9.2f}{s1}{s2}{s3}".rstrip())


if __name__ == "__main__":
    main()
