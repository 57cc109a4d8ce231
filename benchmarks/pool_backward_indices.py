"""W4 RoI Pool backward: recomputed winners vs stored winners (indices=) vs
torchvision's backward kernel with its argmax (issue 14).

    flock /work/timing.lock python benchmarks/pool_backward_indices.py [--isa avx2]

Medians of interleaved rounds, at 1 and 2 threads (torch.set_num_threads for
torchvision).  Timings only; the bit-identity is tested in tests/test_roi_pool.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

import roicore
from roicore._cli import workloads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default=None, help="force the kernel ISA (e.g. avx2)")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    if a.isa:
        roicore._cpu.set_cpu_isa(a.isa)
    import torch
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    w = workloads.get("W4")
    x, rois, g = w.input(), w.rois(), w.grad_output()
    ph, pw = w.output_size
    scale = w.spatial_scale
    _, idx = roicore.roi_pool(x, rois, (ph, pw), scale, return_indices=True)
    tx, tr, tg = torch.from_numpy(x), torch.from_numpy(rois), torch.from_numpy(g)
    _, argmax = torch.ops.torchvision.roi_pool(tx, tr, scale, ph, pw)
    N, C, H, W = x.shape
    for nt in (1, 2):
        torch.set_num_threads(nt)
        fns = {
            "roicore recompute": lambda nt=nt: roicore.roi_pool_backward(
                g, x, rois, (ph, pw), scale, num_threads=nt),
            "roicore indices=": lambda nt=nt: roicore.roi_pool_backward(
                g, x, rois, (ph, pw), scale, num_threads=nt, indices=idx),
            "torchvision _roi_pool_backward": lambda: torch.ops.torchvision._roi_pool_backward(
                tg, tr, argmax, scale, ph, pw, N, C, H, W),
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        for f in fns.values():
            f()
        for _ in range(a.rounds):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        tv = statistics.median(times["torchvision _roi_pool_backward"])
        for k, v in times.items():
            m = statistics.median(v)
            print(f"threads={nt} {k:32s} {m * 1e3:8.1f} ms  torchvision/this {tv / m:5.2f}x")


if __name__ == "__main__":
    main()
