"""W4 RoI Pool forward + backward through autograd in roicore.torch: the op with
stored winners (what ``roicore.torch.roi_pool`` runs when a gradient is needed)
vs the plain op with the recomputing backward (``torch.ops.roicore.roi_pool``,
what it ran before) vs ``torchvision.ops.roi_pool`` (issue 14).

    flock /work/timing.lock python benchmarks/torch_pool_winners.py [--isa avx2]

Each timing is one ``y = pool(x); torch.autograd.grad(y, x, g)``; medians of
interleaved rounds, at 1 and 2 threads (``torch.set_num_threads`` and roicore's
``num_threads``): wall time, and the process's CPU time (steadier on a loaded
machine; at 2 threads it includes OpenMP's spinning).  Timings only; bit-identity
is tested in tests/test_torch_ops.py.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default=None, help="force the kernel ISA (e.g. avx2)")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    import torch
    import torchvision

    import roicore
    import roicore.torch as rt
    from roicore._cli import workloads

    if a.isa:
        roicore._cpu.set_cpu_isa(a.isa)
    w = workloads.get("W4")
    x = torch.from_numpy(w.input()).requires_grad_(True)
    rois = torch.from_numpy(w.rois())
    g = torch.from_numpy(w.grad_output())
    size = list(w.output_size)
    scale = w.spatial_scale
    print(f"W4: input {tuple(x.shape)}, {rois.shape[0]} RoIs, {size[0]}x{size[1]}, "
          f"isa={roicore._cpu.cpu_isa()}")

    def step(fn):
        y = fn()
        torch.autograd.grad(y, x, g)

    for nt in (1, 2):
        torch.set_num_threads(nt)
        fns = {
            "roicore.torch (stored winners)": lambda nt=nt: rt.roi_pool(
                x, rois, size, scale, num_threads=nt),
            "roicore op, recomputing bwd": lambda nt=nt: torch.ops.roicore.roi_pool(
                x, rois, size, scale, "fast_rcnn", "NCHW", nt, False),
            "torchvision.ops.roi_pool": lambda: torchvision.ops.roi_pool(
                x, rois, size, scale),
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        cpu: dict[str, list[float]] = {k: [] for k in fns}
        for f in fns.values():
            step(f)
        for _ in range(a.rounds):
            for k, f in fns.items():
                t0, c0 = time.perf_counter(), time.process_time()
                step(f)
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        tv = statistics.median(times["torchvision.ops.roi_pool"])
        for k, v in times.items():
            m = statistics.median(v)
            print(f"threads={nt} {k:32s} fwd+bwd {m * 1e3:8.1f} ms "
                  f"(cpu {statistics.median(cpu[k]) * 1e3:7.1f} ms)  "
                  f"torchvision/this {tv / m:5.2f}x")


if __name__ == "__main__":
    main()
