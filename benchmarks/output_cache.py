"""Per-call forward times with and without roicore's output cache (issue 14).

    python benchmarks/output_cache.py --workload W1 [--isa avx2] [--calls 9] [--rounds 2]
    ROICORE_OUTPUT_CACHE_MB=0 python benchmarks/output_cache.py --workload W1   # cache off

roicore's forward at its default thread policy, ``--calls`` calls after one call of each
peer that is installed (none, onnxruntime, OpenVINO, torchvision: their thread pools live
in the process, as in ``python -m roicore bench``), ``--rounds`` times.  Each line gives
the median, min and max, then every call as ``wall ms / process CPU ms / jiffies of the
whole machine in it (u user, s system, i idle, st steal; 1 jiffy = 10 ms)``.  With fresh
outputs on a VM, slow calls show as system time: the kernel populating the output's pages.
Timings only: results are tested in tests/test_output_cache.py.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import roicore
from roicore import _cpu
from roicore._cli import bench, workloads


def _jiffies() -> list[int]:
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except OSError:  # not Linux
        return [0] * 8


def _peers(w: workloads.Workload, x: np.ndarray, rois: np.ndarray,
           nt: int) -> dict[str, Callable[[], Any]]:
    peers: dict[str, Callable[[], Any]] = {"none": lambda: None}
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        sess = bench._onnx_session(w, np.dtype(np.float32), nt)
        feed = ({"X": x, "rois": np.ascontiguousarray(rois[:, 1:]),
                 "batch_indices": rois[:, 0].astype(np.int64)}
                if w.op == "align" else {"X": x, "rois": rois})
        peers["onnxruntime"] = lambda: sess.run(None, feed)
    if importlib.util.find_spec("openvino"):
        peers["openvino"] = bench._openvino_call(w, x, rois, nt)
    if importlib.util.find_spec("torchvision"):
        import torch
        import torchvision.ops as tvo

        torch.set_num_threads(nt)
        tx, tr = torch.from_numpy(x), torch.from_numpy(rois)
        if w.op == "align":
            peers["torchvision"] = lambda: tvo.roi_align(
                tx, tr, w.output_size, w.spatial_scale, w.sampling_ratio, w.aligned)
        else:
            peers["torchvision"] = lambda: tvo.roi_pool(tx, tr, w.output_size,
                                                        w.spatial_scale)
    return peers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", type=workloads.get, default=workloads.get("W1"))
    p.add_argument("--isa", choices=["auto", "reference", "baseline", "avx2", "avx512"],
                   default="auto")
    p.add_argument("--calls", type=int, default=9)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    w = a.workload
    _cpu.set_cpu_isa(a.isa)
    x, rois = w.input(), w.rois()
    peers = _peers(w, x, rois, roicore.default_num_threads())
    print(f"{w.describe()}; kernels {_cpu.cpu_isa()}; default threads "
          f"{roicore.default_num_threads()}; output cache limit "
          f"{roicore.output_cache_info()['limit'] >> 20} MiB")
    for f in peers.values():
        f()
        w.forward(x, rois)
    for _ in range(a.rounds):
        for name, f in peers.items():
            ts, info = [], []
            for _ in range(a.calls):
                f()
                gc.collect()
                j0, c0, t0 = _jiffies(), time.process_time(), time.perf_counter()
                w.forward(x, rois)
                t1, c1, j1 = time.perf_counter(), time.process_time(), _jiffies()
                d = [b - a for a, b in zip(j0, j1, strict=True)]
                ts.append((t1 - t0) * 1e3)
                info.append(f"{ts[-1]:.0f}/{(c1 - c0) * 1e3:.0f}/u{d[0]}s{d[2]}i{d[3]}st{d[7]}")
            print(f"{w.name} after {name:11s}: median {statistics.median(ts):6.1f} min "
                  f"{min(ts):6.1f} max {max(ts):6.1f}  {' '.join(info)}", flush=True)


if __name__ == "__main__":
    main()
