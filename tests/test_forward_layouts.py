"""Smoke test of benchmarks/forward_layouts.py (the layout / dtype timing script of
issue 14): it runs and prints one row per case.  No timing is asserted."""

from __future__ import annotations

import re

import pytest

FL = pytest.importorskip("benchmarks.forward_layouts", reason="benchmarks/ not importable")


def test_prints_every_case_with_its_ratios(capsys):
    FL.main(["--quick", "--rounds", "1", "--threads", "1", "--no-peers",
             "--workloads", "W1,W4"])
    text = capsys.readouterr().out
    for w in ("W1", "W4"):
        for dt in ("32", "64"):
            for lay in ("NCHW", "NHWC"):
                for mode in ("out", "fresh"):
                    assert re.search(rf"^{w} {dt} {lay} {mode}\s+\d+\.\d+", text, re.M), \
                        (w, dt, lay, mode, text)
            assert re.search(rf"^{w} {dt} fresh-output floor\s+\d+\.\d+\s+NCHW fresh / floor",
                             text, re.M), text
        # NHWC rows carry the NHWC / NCHW ratio, float64 rows the float64 / float32 one
        assert re.search(rf"^{w} 32 NHWC out\s+\d+\.\d+\s+\d+\.\d+$", text, re.M), text
        assert re.search(rf"^{w} 64 NHWC out\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+$", text, re.M), text
    assert "OpenVINO" not in text
