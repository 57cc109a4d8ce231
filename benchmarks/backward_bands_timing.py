"""Backward timings of W1, W2, W4 at 1 and 2 threads (issue 14, row bands): medians
(and minima) of interleaved rounds.  With --bands, each call also runs with the bands forced to
one (the old (image, channel block) items) in the same process, interleaved, to
show the bands' overhead where threads are few; --force 8 times 8 bands against one
(the extra work the bands cost, best seen at 1 thread).

    flock /work/timing.lock python benchmarks/backward_bands_timing.py --bands
    flock /work/timing.lock python benchmarks/backward_bands_timing.py --bands --force 8 --threads 1

Run it with PYTHONPATH pointing at another build (without --bands) for a
before/after comparison.  Timings only; the bit-identity is tested in
tests/test_backward_bands.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

from roicore import _cpu
from roicore._cli import workloads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default=None, help="force the kernel ISA (e.g. avx2)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workloads", nargs="+", default=["W1", "W2", "W4"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--bands", action="store_true",
                    help="also time with one band forced (same process, interleaved)")
    ap.add_argument("--force", type=int, default=0,
                    help="with --bands: time this forced band count against one band "
                         "(the bands' extra work) instead of the automatic choice")
    a = ap.parse_args()
    if a.isa:
        _cpu.set_cpu_isa(a.isa)
    print(f"isa={_cpu.cpu_isa()}")
    for name in a.workloads:
        w = workloads.get(name)
        x, r, g = w.input(), w.rois(), w.grad_output()
        for nt in a.threads:
            variants = {f"{a.force} bands" if a.force else "auto": a.force}
            if a.bands:
                variants["1 band"] = 1
            times: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(a.rounds + 1):
                for k, b in variants.items():
                    if a.bands:
                        _cpu.set_backward_bands(b)
                    t0 = time.perf_counter()
                    w.backward(g, x, r, num_threads=nt)
                    times[k].append(time.perf_counter() - t0)
            if a.bands:
                _cpu.set_backward_bands(0)
            line = "  ".join(f"{k} {statistics.median(v[1:]) * 1e3:7.1f} ms "
                             f"(min {min(v[1:]) * 1e3:7.1f})" for k, v in times.items())
            print(f"{name} backward threads={nt}: {line}")


if __name__ == "__main__":
    main()
