"""Small-call latency: roicore vs torchvision on a few RoIs (issue 14, thread policy).

    flock /work/timing.lock python benchmarks/small_calls.py [--isa avx2] [--rounds 15]

Input (1, C, 50, 68) float32 NCHW (an 800x1088 image at stride 16), spatial_scale 1/16,
7x7 output; one RoI [0, 10, 12, 200, 180] with C=256, and 10 RoIs with C=64.  Each round
runs every function ``--calls`` times back to back, the functions interleaved; the table
gives the median per call (microseconds, Python call included) and torchvision's median
over roicore's.  ``--threads`` (default 1) is roicore's ``num_threads`` and
``torch.set_num_threads`` (``default``: roicore's default thread policy and torch's
default).  ``--paths auto,reference`` also times roicore on the path these calls took
before the crop path (pack policy 2: the scalar kernels; for ``return_indices`` an NHWC
copy of the map), ``crop`` / ``pack`` force those paths.  Timings only: bit-identity is
tested in tests/test_kernels.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import roicore
from roicore import _cpu

#: pack policies of cpu/driver.h (testing hook _cpu._set_pack_policy)
PATHS = {"auto": 0, "pack": 1, "reference": 2, "crop": 3}


def _rois(K: int) -> np.ndarray:
    first = [0, 10, 12, 200, 180]
    if K == 1:
        return np.array([first], np.float32)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 900, (K - 1, 2))
    wh = rng.uniform(32, 320, (K - 1, 2))
    rest = np.concatenate([np.zeros((K - 1, 1)), xy, xy + wh], 1)
    return np.concatenate([[first], rest]).astype(np.float32)


def _ops(nt: int | None) -> list[tuple[str, Callable, Callable | None]]:
    """(name, roicore call(x, r), torchvision call(tx, tr) or None)."""
    import torchvision.ops as tvo

    s = 1 / 16
    out: list[tuple[str, Callable, Callable | None]] = []
    for sr in (2, 0):
        for aligned in (False, True):
            out.append((
                f"align sr={sr} aligned={aligned}",
                lambda x, r, sr=sr, al=aligned: roicore.roi_align(
                    x, r, 7, s, sr, al, num_threads=nt),
                lambda x, r, sr=sr, al=aligned: tvo.roi_align(x, r, 7, s, sr, al),
            ))
    out.append(("pool", lambda x, r: roicore.roi_pool(x, r, 7, s, num_threads=nt),
                lambda x, r: tvo.roi_pool(x, r, 7, s)))
    # torchvision's roi_pool computes its argmax on every call
    out.append(("pool return_indices",
                lambda x, r: roicore.roi_pool(x, r, 7, s, num_threads=nt, return_indices=True),
                lambda x, r: tvo.roi_pool(x, r, 7, s)))
    out.append(("warp sr=2", lambda x, r: roicore.roi_warp(x, r, 7, s, 2, num_threads=nt),
                None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--isa", default=None, help="force the kernel ISA (avx2, avx512, ...)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20, help="calls per function per round")
    ap.add_argument("--threads", default="1",
                    help="threads of both libraries, or 'default' (roicore num_threads=None, "
                         "torch's default)")
    ap.add_argument("--paths", default="auto",
                    help="comma list of roicore paths: " + ", ".join(PATHS))
    a = ap.parse_args()
    import torch

    if a.isa:
        _cpu.set_cpu_isa(a.isa)
    nt = None if a.threads == "default" else int(a.threads)
    if nt is not None:
        torch.set_num_threads(nt)
    paths = [p.strip() for p in a.paths.split(",") if p.strip()]
    for p in paths:
        if p not in PATHS:
            ap.error(f"unknown path {p!r}; choose from {', '.join(PATHS)}")
    print(f"roicore ISA {_cpu.cpu_isa()}, threads {a.threads} (torch {torch.get_num_threads()}), "
          f"torch {torch.__version__}, "
          f"{a.rounds} rounds x {a.calls} calls, median us per call")
    for C, K in ((256, 1), (64, 10)):
        x = np.random.default_rng(1).standard_normal((1, C, 50, 68)).astype(np.float32)
        r = _rois(K)
        tx, tr = torch.from_numpy(x), torch.from_numpy(r)
        fns: dict[tuple[str, str], Callable[[], object]] = {}
        for name, rc, tv in _ops(nt):
            for p in paths:
                fns[(name, p)] = lambda rc=rc, p=p, x=x, r=r: (
                    _cpu._set_pack_policy(PATHS[p]), rc(x, r))
            if tv is not None:
                fns[(name, "torchvision")] = lambda tv=tv, tx=tx, tr=tr: tv(tx, tr)
        times: dict[tuple[str, str], list[float]] = {k: [] for k in fns}
        for f in fns.values():
            f()
        try:
            for _ in range(a.rounds):
                for k, f in fns.items():
                    for _ in range(a.calls):
                        t0 = time.perf_counter()
                        f()
                        times[k].append(time.perf_counter() - t0)
        finally:
            _cpu._set_pack_policy(0)
        print(f"\n1x{C}x50x68, {K} RoI{'s' if K > 1 else ''}")
        cols = [*paths, "torchvision"]
        print(f"{'op':28s}" + "".join(f"{c:>13s}" for c in cols) + "   tv/roicore")
        for name, _, _tv in _ops(nt):
            med = {c: statistics.median(times[(name, c)]) * 1e6
                   for c in cols if (name, c) in times}
            row = "".join(f"{med[c]:13.1f}" if c in med else f"{'-':>13s}" for c in cols)
            ratio = (f"   {med['torchvision'] / med[paths[0]]:5.2f}x"
                     if "torchvision" in med else "")
            print(f"{name:28s}{row}{ratio}")


if __name__ == "__main__":
    main()
