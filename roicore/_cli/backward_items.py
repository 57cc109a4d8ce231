"""The CPU backward's parallel items for the benchmark workloads (issue 14).

:func:`item_report` plans each workload's backward as the kernels would cut it
(:func:`roicore._backends.cpu.backward_items`: (image, channel block, row band)
items, their costs in the kernels' own cost model) for a list of team sizes, and
returns one dict per (workload, threads).  Nothing is timed: it is the structure
that bounds the speedup, whatever the machine.  ``benchmarks/backward_items.py``
prints it; ``python -m roicore bench`` can add it to its output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import workloads as _workloads

THREADS = (16, 32, 64, 128)


def item_report(names: Sequence[str] = ("W1", "W2", "W3", "W4"),
                threads: Sequence[int] = THREADS, isa: str | None = None,
                dtype: Any = np.float32, layout: str = "NCHW") -> list[dict[str, Any]]:
    """One dict per (workload, team size): the backward's parallel items.

    Parameters
    ----------
    names : sequence of str
        Workloads (``W1``..``W4``).
    threads : sequence of int
        Team sizes to plan for (as on a machine with that many processors).
    isa : str, optional
        Instruction set to plan with (``"avx2"``, ``"avx512"``, ...; capped at what
        this CPU runs, as :func:`roicore._cpu.set_cpu_isa`); default: the current one.
    dtype, layout
        Of the input map.

    Returns
    -------
    list of dict
        :func:`roicore._backends.cpu.backward_items`'s dict plus ``workload`` and
        ``requested_isa``.
    """
    from .. import _cpu
    from .._backends.cpu import backward_items

    old = _cpu.cpu_isa()
    rows = []
    try:
        if isa is not None:
            _cpu.set_cpu_isa(isa)
        for name in names:
            w = _workloads.get(name)
            x = np.broadcast_to(np.zeros((), dtype), w.input_shape(layout))
            op = "pool" if w.op == "pool" else "align"
            for t in threads:
                d = backward_items(op, x, w.rois(dtype), w.output_size, w.spatial_scale,
                                   layout=layout, num_threads=int(t), **w.kwargs())
                rows.append({"workload": w.name, "requested_isa": isa or old, **d})
    finally:
        _cpu.set_cpu_isa(old)
    return rows


def format_report(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`item_report`'s rows as a plain-text table."""
    head = (f"{'workload':8s} {'isa':7s} {'threads':>7s} {'items':>6s} {'bands':>5s} "
            f"{'lanes':>5s} {'largest':>8s} {'bound':>6s} {'list':>6s} {'work':>5s} "
            f"{'speedup':>7s}")
    out = [head]
    for r in rows:
        out.append(f"{r['workload']:8s} {r['isa']:7s} {r['threads']:7d} {r['items']:6d} "
                   f"{r['bands']:5d} {r['channels']:5d} {r['largest_share']:8.4f} "
                   f"{r['bound']:6.1f} {r['list_bound']:6.1f} "
                   f"{r['work_vs_one_thread']:5.2f} {r['speedup_bound']:7.1f}")
    out.append("largest: the costliest item's share of the work; bound = min(threads, "
               "items, 1/largest); list: total / makespan of the items taken in order by "
               "the first free thread (OpenMP dynamic schedule); work: total cost over the "
               "one-thread plan's; speedup: the one-thread plan's total / makespan")
    return "\n".join(out)
