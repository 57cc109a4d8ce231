"""Bounded run of the fuzz harness (tests/support/roicore_fuzz.py) in CI.

Hypothesis mutates valid calls of every public function; each call runs in a
worker subprocess and must end as a clean exception naming an argument, a
result equal to tests/support/reference.py, or an unchecked result of the right shape
and dtype -- never a crash, a hang, a wrong result or another exception type.
A failure is shrunk by hypothesis and reported with its spec.  The size is
``ROICORE_FUZZ_CALLS`` (default 300 calls, well under a minute); for a full
campaign run ``python tests/support/roicore_fuzz.py --calls 10000``.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

pytest.importorskip("hypothesis")
import roicore_fuzz as F

CALLS = int(os.environ.get("ROICORE_FUZZ_CALLS", "300"))
# Before the kernels bound the sampling cost (roicore._backends.limits, issue 9 item 6),
# `sampling_ratio=65536` ran for minutes: a known defect, not counted here then.
_FAIL_ON = (*F.DEFECTS, "harness_error") if importlib.util.find_spec("roicore._backends.limits") \
    else (*tuple(c for c in F.DEFECTS if c != "hang"), "harness_error")


def test_fuzz_public_api_bounded():
    counts, _ = F.campaign(CALLS, seed=int(os.environ.get("ROICORE_FUZZ_SEED", "0")),
                           timeout=20.0, fail_on=_FAIL_ON, shrink=True)
    counts.pop("_reasons")
    assert sum(counts.values()) >= min(CALLS, 50), counts
    # the harness must reach the kernels, not only the argument checks
    assert counts["correct"] >= sum(counts.values()) // 4, counts
