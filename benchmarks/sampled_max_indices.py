"""Max-mode RoI Align (W1 with mode="max"): plain forward + recomputing backward vs
the forward that stores the winners + the backward from them (issue 14).

    flock /work/timing.lock python benchmarks/sampled_max_indices.py [--rois 200] [--isa avx2]

1 thread; minimum thread CPU time of a few rounds (steady on a loaded machine).
Timings only; the bit-identity is tested in tests/test_sampled_indices.py.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import roicore
from roicore._cli import workloads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default=None, help="force the kernel ISA (e.g. avx2)")
    ap.add_argument("--rois", type=int, default=200, help="first RoIs of W1 to use")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    if a.isa:
        roicore._cpu.set_cpu_isa(a.isa)
    w = workloads.get("W1")
    x, r = w.input(), w.rois()[: a.rois]
    kw = dict(sampling_ratio=w.sampling_ratio, aligned=w.aligned, mode="max", num_threads=1)
    size, scale = w.output_size, w.spatial_scale
    out, idx = roicore.roi_align(x, r, size, scale, return_indices=True, **kw)
    g = np.ones_like(out)

    def t(f):
        best = float("inf")
        for _ in range(a.rounds):
            t0 = time.thread_time()
            f()
            best = min(best, time.thread_time() - t0)
        return best * 1e3

    fns = {
        "forward": lambda: roicore.roi_align(x, r, size, scale, **kw),
        "forward, return_indices": lambda: roicore.roi_align(x, r, size, scale,
                                                             return_indices=True, **kw),
        "backward, recomputing": lambda: roicore.roi_align_backward(g, x, r, size, scale, **kw),
        "backward, indices=": lambda: roicore.roi_align_backward(g, x, r, size, scale,
                                                                 indices=idx, **kw),
    }
    print(f"W1 mode='max', {len(r)} RoIs, 1 thread, isa={roicore._cpu.cpu_isa()}")
    for k, f in fns.items():
        print(f"  {k:26s} {t(f):7.1f} ms")


if __name__ == "__main__":
    main()
