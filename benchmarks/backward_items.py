"""The CPU backward's parallel items for W1-W4 (issue 14): item count, the largest
item's share of the work (the kernels' cost model) and the speedup bounds they imply.

    python benchmarks/backward_items.py [--threads 16 32 64 128] [--isa avx2]

No timing: the structure of the work (roicore/_cli/backward_items.py).
"""

from __future__ import annotations

import argparse

from roicore._cli.backward_items import THREADS, format_report, item_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=list(THREADS),
                    help="team sizes to plan for (default: 16 32 64 128)")
    ap.add_argument("--isa", default=None, nargs="+",
                    help="instruction sets to plan with (default: the current one), "
                         "e.g. --isa avx2 avx512")
    ap.add_argument("--workloads", nargs="+", default=["W1", "W2", "W3", "W4"])
    a = ap.parse_args()
    rows = []
    for isa in a.isa or [None]:
        rows += item_report(a.workloads, a.threads, isa)
    print(format_report(rows))


if __name__ == "__main__":
    main()
