"""The CPU backward in row bands (issue 14): items (image, channel block, row band), so
the backward scales with threads independently of N and C.  Every backward is
bit-identical to the reference kernels for any band count (forced through
``_cpu.set_backward_bands``), thread count, instruction set and packing policy, and
matches the NumPy oracle; the parallel-item report gives the benchmark workloads
W1-W4 at least one item per thread and at least 64 from 64 threads on."""

from __future__ import annotations

import numpy as np
import pytest
import reference as R

import roicore
from roicore import _cpu
from roicore._backends.cpu import backward_items
from roicore._cli import workloads as _workloads


def _variants():
    best = _cpu.cpu_isa_supported()
    isas = ["baseline", "avx2", "avx512"]
    return isas[: isas.index(best) + 1] if best in isas else ["baseline"]


N, C, H, W = 2, 37, 12, 9
OUT = (3, 4)
SCALE = 0.5


def _case(dtype, layout):
    """A map with ties (max modes) and RoIs chosen for the band edges: wholly outside
    the map, spanning every band, with bins much taller than a band (winners in another
    band), at the bottom / right border (coincident bilinear corners), duplicated."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((N, C, H, W))
    x[..., ::3, ::2] = np.round(x[..., ::3, ::2])
    x = x.astype(dtype)
    h, w = H / SCALE, W / SCALE  # the map in RoI coordinates
    boxes = [
        [0, -40, -40, -10, -10],  # wholly outside (above / left)
        [1, w + 10, h + 10, w + 40, h + 40],  # wholly outside (below / right)
        [0, 0, 0, w - 1, h - 1],  # the whole map: every band
        [1, -6, -6, w + 6, h + 6],  # larger than the map
        [0, 1, 0, 5, h - 1],  # tall thin: bins of several rows
        [1, 2, h - 3, w - 1, h + 4],  # across the bottom border
        [0, w - 2, 3, w + 3, 9],  # across the right border
        [1, 3, 3, 3, 3],  # a point
    ]
    xy = rng.uniform(-4, w, (12, 2))
    rand = np.concatenate([rng.integers(0, N, (12, 1)), xy,
                           xy + rng.uniform(0, w / 1.5, (12, 2))], 1)
    r = np.concatenate([np.array(boxes, np.float64), rand, np.array(boxes[2:5])])
    r = r.astype(dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x, r


# (name, backward(g, x, r, **kw), forward(x, r, **kw), oracle(g, x, r) in NCHW)
_OPS = [
    ("pool", lambda g, x, r, **k: roicore.roi_pool_backward(g, x, r, OUT, SCALE, **k),
     lambda x, r, **k: roicore.roi_pool(x, r, OUT, SCALE, **k),
     lambda g, x, r: R.roi_pool_backward(g, x, r, OUT, SCALE)),
    ("pool-equal",
     lambda g, x, r, **k: roicore.roi_pool_backward(g, x, r, OUT, SCALE, bins="equal", **k),
     lambda x, r, **k: roicore.roi_pool(x, r, OUT, SCALE, bins="equal", **k),
     lambda g, x, r: R.roi_pool_backward(g, x, r, OUT, SCALE, bins="equal")),
    ("align",
     lambda g, x, r, **k: roicore.roi_align_backward(g, x, r, OUT, SCALE, 2, False, **k),
     lambda x, r, **k: roicore.roi_align(x, r, OUT, SCALE, 2, False, **k),
     lambda g, x, r: R.roi_align_backward(g, x, r, OUT, SCALE, 2, False)),
    ("align-aligned-adaptive",
     lambda g, x, r, **k: roicore.roi_align_backward(g, x, r, OUT, SCALE, -1, True, **k),
     lambda x, r, **k: roicore.roi_align(x, r, OUT, SCALE, -1, True, **k),
     lambda g, x, r: R.roi_align_backward(g, x, r, OUT, SCALE, -1, True)),
    ("align-max",
     lambda g, x, r, **k: roicore.roi_align_backward(g, x, r, OUT, SCALE, 2, False,
                                                     mode="max", **k),
     lambda x, r, **k: roicore.roi_align(x, r, OUT, SCALE, 2, False, mode="max", **k),
     lambda g, x, r: R.roi_align_backward(g, x, r, OUT, SCALE, 2, False, mode="max")),
    ("align-max-aligned",
     lambda g, x, r, **k: roicore.roi_align_backward(g, x, r, OUT, SCALE, -1, True,
                                                     mode="max", **k),
     lambda x, r, **k: roicore.roi_align(x, r, OUT, SCALE, -1, True, mode="max", **k),
     lambda g, x, r: R.roi_align_backward(g, x, r, OUT, SCALE, -1, True, mode="max")),
    ("warp", lambda g, x, r, **k: roicore.roi_warp_backward(g, x, r, OUT, SCALE, 2, **k),
     lambda x, r, **k: roicore.roi_warp(x, r, OUT, SCALE, 2, **k),
     lambda g, x, r: R.roi_warp_backward(g, x, r, OUT, SCALE, 2)),
    ("warp-max",
     lambda g, x, r, **k: roicore.roi_warp_backward(g, x, r, OUT, SCALE, 2, mode="max", **k),
     lambda x, r, **k: roicore.roi_warp(x, r, OUT, SCALE, 2, mode="max", **k),
     lambda g, x, r: R.roi_warp_backward(g, x, r, OUT, SCALE, 2, mode="max")),
    ("warp-mnc",
     lambda g, x, r, **k: roicore.roi_warp_backward(g, x, r, OUT, SCALE, compat="mnc", **k),
     lambda x, r, **k: roicore.roi_warp(x, r, OUT, SCALE, compat="mnc", **k),
     lambda g, x, r: R.roi_warp_backward(g, x, r, OUT, SCALE, compat="mnc")),
]

# 0: chosen from the work; 1; a few; 12 = H (bands of one row); 5 (bands of 3 rows, the
# last empty: 5 * 3 > 12); 40 (more bands than rows: empty items)
_BANDS = (0, 1, 3, 5, H, 40)


@pytest.fixture
def restore_cpu_state():
    yield
    _cpu.set_cpu_isa("auto")
    _cpu._set_pack_policy(0)
    _cpu.set_backward_bands(0)


def _grad(y, dtype):
    g = np.random.default_rng(7).standard_normal(y.shape).astype(dtype)
    return g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("op", [o[0] for o in _OPS])
def test_banded_backward_bit_identical(dtype, layout, op, restore_cpu_state):
    name, bwd, fwd, oracle = next(o for o in _OPS if o[0] == op)
    x, r = _case(dtype, layout)
    y = fwd(x, r, layout=layout, num_threads=1)
    g = _grad(y, dtype)
    _cpu.set_cpu_isa("reference")
    _cpu._set_pack_policy(2)
    ref = bwd(g, x, r, layout=layout, num_threads=1)
    # the reference kernels against the NumPy oracle (NCHW), bit for bit
    to_nchw = (lambda a: a.transpose(0, 3, 1, 2)) if layout == "NHWC" else (lambda a: a)
    want = oracle(np.ascontiguousarray(to_nchw(g)), np.ascontiguousarray(to_nchw(x)), r)
    np.testing.assert_array_equal(to_nchw(ref), want, err_msg=f"{name} reference vs oracle")
    assert np.count_nonzero(ref), "the case must produce a gradient"
    for isa in _variants():
        _cpu.set_cpu_isa(isa)
        for policy in (1, 2):  # always pack (banded) / never (NHWC in place, NCHW reference)
            _cpu._set_pack_policy(policy)
            for bands in _BANDS:
                _cpu.set_backward_bands(bands)
                for nt in (1, 2, 3, 7):
                    got = bwd(g, x, r, layout=layout, num_threads=nt)
                    np.testing.assert_array_equal(
                        got, ref, err_msg=f"{name} {isa} policy={policy} bands={bands} "
                        f"threads={nt}")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_banded_pool_from_stored_winners(layout, restore_cpu_state):
    """roi_pool_backward(indices=...) equals the recomputing backward in every band
    configuration (its own items are (image, channel): N * C of them)."""
    x, r = _case(np.float32, layout)
    y, idx = roicore.roi_pool(x, r, OUT, SCALE, layout=layout, return_indices=True)
    g = _grad(y, np.float32)
    want = R.roi_pool_backward(*(np.ascontiguousarray(a.transpose(0, 3, 1, 2))
                                 if layout == "NHWC" else a for a in (g, x)), r, OUT, SCALE)
    for bands in _BANDS:
        _cpu.set_backward_bands(bands)
        _cpu._set_pack_policy(1)
        for nt in (1, 3):
            a = roicore.roi_pool_backward(g, x, r, OUT, SCALE, layout=layout,
                                          num_threads=nt, indices=idx)
            b = roicore.roi_pool_backward(g, x, r, OUT, SCALE, layout=layout,
                                          num_threads=nt)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(
                a.transpose(0, 3, 1, 2) if layout == "NHWC" else a, want)


def test_banded_backward_with_rounds_and_chunks(restore_cpu_state):
    """Chunks of one item each and RoI segments (rounds continue the band's sums from
    grad_input) with forced bands."""
    x, r = _case(np.float32, "NCHW")
    r = np.concatenate([r] * 6)
    y = roicore.roi_align(x, r, OUT, SCALE, 2, True)
    g = _grad(y, np.float32)
    _cpu.set_cpu_isa("reference")
    ref = {m: roicore.roi_align_backward(g, x, r, OUT, SCALE, 2, True, mode=m)
           for m in ("avg", "max")}
    refp = roicore.roi_pool_backward(g, x, r, OUT, SCALE)
    _cpu.set_cpu_isa("auto")
    old = _cpu._set_chunk_work(1e-9)
    try:
        _cpu._set_pack_policy(1)
        for layout in ("NCHW", "NHWC"):
            xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
            gl = np.ascontiguousarray(g.transpose(0, 2, 3, 1)) if layout == "NHWC" else g
            back = (lambda a: a.transpose(0, 3, 1, 2)) if layout == "NHWC" else (lambda a: a)
            for bands in (2, 5, 40):
                _cpu.set_backward_bands(bands)
                for m in ("avg", "max"):
                    got = roicore.roi_align_backward(gl, xl, r, OUT, SCALE, 2, True, mode=m,
                                                     layout=layout, num_threads=3)
                    np.testing.assert_array_equal(back(got), ref[m])
                got = roicore.roi_pool_backward(gl, xl, r, OUT, SCALE, layout=layout,
                                                num_threads=3)
                np.testing.assert_array_equal(back(got), refp)
    finally:
        _cpu._set_chunk_work(old)


def _items(name, threads, **kw):
    w = _workloads.get(name)
    x = np.broadcast_to(np.zeros((), np.float32), w.input_shape())
    op = "pool" if w.op == "pool" else "align"
    return backward_items(op, x, w.rois(), w.output_size, w.spatial_scale,
                          num_threads=threads, **w.kwargs(), **kw)


@pytest.mark.parametrize("name", ["W1", "W2", "W3", "W4"])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_w1_w4_backward_items_scale_with_threads(name, isa, restore_cpu_state):
    """The backward's items grow with the team, independently of N and C (a
    structural property of the plan, not a timing): at least one per thread up to
    N x C / 32 x H / 2 of them, at least 64 from 64 threads on (the issue's bar), and
    the speedup bound the cost model implies grows past the 8-16 of (image, channel
    block) items alone."""
    _cpu.set_cpu_isa(isa)  # capped at what this CPU runs
    prev = 0.0
    for threads in (16, 32, 64, 128):
        d = _items(name, threads)
        assert d["path"] == "packed", d
        assert d["items"] >= threads, d
        if threads >= 64:
            assert d["items"] >= 64, d
        assert 0 < d["largest_share"] <= 1.0 / 14, d  # images of 1000 RoIs split ~evenly
        assert d["bound"] == min(d["team"], d["items"], 1 / d["largest_share"])
        assert 1 <= d["list_bound"] <= d["bound"] + 1e-9, d
        assert d["list_bound"] >= prev, d
        prev = d["list_bound"]
    assert prev > 64, d  # 128 threads: well past 16
    # few threads: no bands while (image, block) items are 4 per thread
    d = _items(name, 2)
    assert d["bands"] == 1 and d["items"] >= 8, d


def test_items_report_counts():
    """The count is images x channel blocks x bands (one round), and the pool from
    stored winners has one item per (image, channel block)."""
    d = _items("W1", 64)
    lanes = d["channels"]
    assert d["items"] == 2 * (-(-256 // lanes)) * d["bands"] * d["rounds"]
    assert d["bands"] > 1
    one = _items("W1", 1)
    assert one["bands"] == 1 and one["items"] == 2 * (-(-256 // one["channels"]))
    # from stored winners: (image, block of channels); W4's 50x68 float32 planes are
    # 13.6 kB, so 16 fit the 256 KiB budget, and 16 threads want >= 64 items of 2 x 256
    # channels: blocks of 8
    d = _items("W4", 16, indices=True)
    assert d["path"] == "indices" and d["channels"] == 8 and d["items"] == 2 * 256 // 8
    d = _items("W4", 2, indices=True)
    assert d["channels"] == 16 and d["items"] == 2 * 256 // 16
    with pytest.raises(ValueError, match="op"):
        backward_items("nope", np.zeros((1, 1, 2, 2), np.float32),
                       np.zeros((1, 5), np.float32), 2)


def test_item_report_rows_and_table(restore_cpu_state):
    """roicore._cli.backward_items (what benchmarks/backward_items.py prints and `bench`
    can call): one row per (workload, threads), the ISA restored afterwards."""
    from roicore._cli.backward_items import format_report, item_report

    before = _cpu.cpu_isa()
    rows = item_report(["W4"], [1, 64], isa="avx2")
    assert _cpu.cpu_isa() == before
    assert [(r["workload"], r["threads"]) for r in rows] == [("W4", 1), ("W4", 64)]
    assert rows[0]["items"] == 2 * 256 // 32 and rows[0]["bands"] == 1
    assert rows[0]["work_vs_one_thread"] == 1.0 and rows[0]["speedup_bound"] == 1.0
    assert rows[1]["items"] >= 64 and rows[1]["speedup_bound"] > 16
    table = format_report(rows)
    assert table.splitlines()[0].split()[:4] == ["workload", "isa", "threads", "items"]
    assert len(table.splitlines()) == 4
