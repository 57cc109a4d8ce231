"""Fuzz harness for roicore's public API (issue 9).

Hypothesis mutates valid calls of every public function -- the six NumPy
functions (``roi_pool``, ``roi_align``, ``roi_warp`` and their backwards, with
NumPy arrays or torch tensors through DLPack) and ``roicore.torch``'s
``roi_pool`` / ``roi_align`` / ``roi_warp`` (forward, and backward through
autograd) -- over odd dtypes, shapes, strides, values (NaN, inf, huge
coordinates, negative box sizes, out-of-range batch indices), options of
the wrong type or value, absurd ``sampling_ratio`` / ``num_threads`` and
``out=`` variants (aliasing included).

Each call runs in a worker subprocess, so a segfault or an abort inside the
OpenMP runtime is recorded instead of killing the harness, and a call that
takes longer than ``--timeout`` seconds is recorded as a hang (the worker is
killed and restarted).  Every call is classified as:

``clean_error``
    a ``TypeError``, ``ValueError`` or ``MemoryError`` whose message names an
    argument in backticks (`` `rois` ``, `` `num_threads` ``...).
``correct``
    returned, and equal to ``tests/support/reference.py`` (forward: bit-identical;
    backward: within rounding), or an empty / zero result where the spec says so.
``ok_unchecked``
    returned with the right shape and dtype, but too expensive (or not
    defined) for the slow reference.
``unnamed_error``, ``wrong``, ``unclean_error``, ``crash``, ``hang``
    defects: an allowed exception type whose message names no argument, a
    result different from the reference, another exception type
    (``OverflowError``, ``RuntimeError``, ``IndexError``...), the worker died
    (signal or exit code), or the call timed out.

Run ``python tests/support/roicore_fuzz.py --calls 10000`` for a campaign (prints
the counts by class and the first example of each defect class);
``tests/test_fuzz.py`` runs a bounded version in CI (``ROICORE_FUZZ_CALLS``
overrides its size).

The harness is split in three files: ``fuzz_calls.py`` (what a call is: the
strategies and the argument builders), ``fuzz_worker.py`` (running and
classifying one call, in a worker subprocess) and this file (the campaign and
its command line).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))  # tests/support: reference.py
ROOT = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:  # imported by tests/test_fuzz.py or run as a script
    sys.path.insert(0, HERE)

from fuzz_calls import (  # noqa: E402  (re-exported: tests/test_fuzz.py uses F.DEFECTS)
    ARG_NAMES,
    CLASSES,
    DEFECTS,
    NUMPY_FUNCS,
    REF_BUDGET,
    TORCH_FUNCS,
    specs,
)
from fuzz_worker import Worker, run_spec, worker_main  # noqa: E402

__all__ = ["ARG_NAMES", "CLASSES", "DEFECTS", "NUMPY_FUNCS", "REF_BUDGET", "TORCH_FUNCS",
           "Worker", "campaign", "main", "run_spec", "specs", "worker_main"]


# --------------------------------------------------------------------------- campaign
def campaign(calls: int, seed: int = 0, timeout: float = 10.0, fail_on: tuple = (),
             shrink: bool = False, progress: bool = False) -> tuple[Counter, dict]:
    """Run ``calls`` hypothesis-generated calls; return (counts by class,
    first (spec, detail) per class).  Raises AssertionError (after shrinking
    when ``shrink``) on the first call of a class in ``fail_on``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    counts: Counter = Counter()
    first: dict = {}
    reasons: Counter = Counter()
    worker = Worker(timeout)
    t0 = time.monotonic()
    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]

    @hseed(seed)
    @settings(max_examples=calls, database=None, deadline=None, phases=phases,
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(spec=specs())
    def one(spec: dict) -> None:
        cls, detail = worker.run(spec)
        counts[cls] += 1
        first.setdefault(cls, (spec, detail))
        reasons[(cls, re.sub(r"\d[\d.e+-]*", "#", detail.split("\n")[0])[:90])] += 1
        if progress and sum(counts.values()) % 500 == 0:
            print(f"  {sum(counts.values())} calls, {time.monotonic() - t0:.0f} s: "
                  f"{dict(counts)}", file=sys.stderr, flush=True)
        if cls in fail_on:
            raise AssertionError(f"{cls}: {detail}\nspec: {json.dumps(spec)}")

    try:
        one()
    finally:
        worker.close()
    counts["_reasons"] = reasons  # type: ignore[assignment]
    return counts, first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=10_000, help="number of calls (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds after which a call counts as a hang (default 10)")
    p.add_argument("--reasons", type=int, default=0, metavar="M",
                   help="also print the M most frequent outcomes (class: message)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker_main()
        return 0
    sys.path[:0] = [ROOT, HERE]
    t0 = time.monotonic()
    counts, first = campaign(a.calls, a.seed, a.timeout, progress=True)
    reasons = counts.pop("_reasons")
    total = sum(counts.values())
    print(f"roicore fuzz: {total} calls in {time.monotonic() - t0:.0f} s (seed {a.seed}, "
          f"timeout {a.timeout} s)")
    for cls in (*CLASSES, "harness_error"):
        if counts.get(cls):
            print(f"  {cls:14s} {counts[cls]}")
    for (cls, msg), n in reasons.most_common(a.reasons):
        print(f"  {n:6d}  {cls}: {msg}")
    bad = [c for c in (*DEFECTS, "harness_error") if counts.get(c)]
    for cls in bad:
        spec, detail = first[cls]
        print(f"\nfirst {cls}: {detail}\n  spec: {json.dumps(spec)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
