"""Small-call latency on an idle and on a loaded machine (issue 14).

For each OpenMP setting (roicore's default, i.e. passive wait policy; and
``OMP_WAIT_POLICY=active``, libgomp's spinning) a fresh Python process times
the small-call workloads S1 (roi_align) and S2 (roi_pool) of
``roicore/_cli/workloads.py`` -- one RoI, C=256, 7x7 -- with roicore's default
thread policy (``num_threads=None``), with ``num_threads=<all cores>`` and, if
installed, torchvision, first with the machine idle, then with ``--load``
processes burning a core each.  Between timed calls a PyTorch op runs on all
cores (as in a detector, whose thread pool then has idle workers), unless
``--no-torch-between``.

    PYTHONPATH=. python benchmarks/loaded_latency.py [--calls 300] [--load 1]

Prints one line per (setting, state, implementation) with the median and the
loaded/idle ratio.  Timings only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

WORKER = r"""
import json, os, subprocess, sys, time
import numpy as np
import roicore
from roicore._backends import openmp
from roicore._cli import workloads
calls, load, between = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
torch = None
try:
    import torch, torchvision.ops as tvo
except ImportError:
    pass
ncpu = os.cpu_count() or 1
impls = {}
for name in ("S1", "S2"):
    w = workloads.get(name)
    x, r = w.input(), w.rois()
    impls[f"{name} roicore default"] = lambda w=w, x=x, r=r: w.forward(x, r)
    impls[f"{name} roicore num_threads={ncpu}"] = (
        lambda w=w, x=x, r=r: w.forward(x, r, num_threads=ncpu))
    if torch is not None:
        xt, rt = torch.from_numpy(x), torch.from_numpy(r)
        if w.op == "align":
            impls[f"{name} torchvision"] = lambda xt=xt, rt=rt, w=w: tvo.roi_align(
                xt, rt, w.output_size, w.spatial_scale, w.sampling_ratio, w.aligned)
        else:
            impls[f"{name} torchvision"] = lambda xt=xt, rt=rt, w=w: tvo.roi_pool(
                xt, rt, w.output_size, w.spatial_scale)
if torch is not None:
    torch.set_num_threads(ncpu)
    big_x = torch.randn(2, 256, 50, 68)
    big_r = torch.tensor([[0, 10.0, 12.0, 600.0, 500.0]] * 100)
    between_op = lambda: tvo.roi_align(big_x, big_r, 7, 1 / 16, 2)
else:
    between_op = lambda: None

def run():
    times = {k: [] for k in impls}
    for f in impls.values():
        f()
    for _ in range(calls):
        for k, f in impls.items():
            if between:
                between_op()
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}

res = {"policy": openmp.WAIT_POLICY, "idle": run()}
procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
try:
    time.sleep(0.3)
    res["loaded"] = run()
finally:
    for p in procs:
        p.kill()
print(json.dumps(res))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300, help="timed calls per implementation")
    ap.add_argument("--load", type=int, default=1, help="core-burning processes when loaded")
    ap.add_argument("--no-torch-between", action="store_true",
                    help="do not run a PyTorch op between the timed calls")
    args = ap.parse_args(argv)
    print(f"{os.cpu_count()} CPUs; {args.calls} calls each; loaded = {args.load} "
          f"core-burning process(es); torch op between calls: {not args.no_torch_between}; "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    for label, extra in (("roicore default (passive)", {}),
                         ("OMP_WAIT_POLICY=active", {"OMP_WAIT_POLICY": "active"})):
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        env.update(extra)
        out = subprocess.run(
            [sys.executable, "-c", WORKER, str(args.calls), str(args.load),
             "0" if args.no_torch_between else "1"],
            capture_output=True, text=True, env=env, check=True).stdout
        res = json.loads(out.strip().splitlines()[-1])
        print(f"\n== {label}: {res['policy']}")
        print(f"{'call':<34} {'idle ms':>9} {'loaded ms':>10} {'loaded/idle':>12}")
        for k, idle in res["idle"].items():
            loaded = res["loaded"][k]
            print(f"{k:<34} {idle * 1e3:>9.3f} {loaded * 1e3:>10.3f} {loaded / idle:>11.2f}x")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
