"""The CPU backend's output cache (issue 14: fresh outputs).

Large results live in recycled memory: a block freed by one call comes back,
with whatever the previous owner wrote in it, to the next call of a similar
size. So every kernel must write every element of its output (and the
backward's gradient must be zeroed): these tests hand each op a block filled
with garbage (NaN bytes, then 0x7F bytes) and compare the result bit for bit
with the cache turned off (fresh zero pages) and a channel slice with the NumPy
oracle.
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
from support import reference as ref

import roicore
from roicore._backends import cpu as cpu_backend

_cpu = cpu_backend._cpu
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _fresh_cache():
    old = roicore.set_output_cache_limit(0)  # empties it
    roicore.set_output_cache_limit(256 * MIB)
    yield
    roicore.set_output_cache_limit(0)
    roicore.set_output_cache_limit(old)


def _dirty(shape, dtype, byte):
    """Put a block of exactly this array's size, full of ``byte``, in the cache."""
    a = _cpu.cached_empty(tuple(shape), np.dtype(dtype))
    assert a is not None, "the cache should serve arrays of >= 4 MiB"
    a.view(np.uint8)[...] = byte
    del a
    gc.collect()
    assert roicore.output_cache_info()["blocks"] >= 1


def _case(dtype=np.float32, layout="NCHW"):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 64, 24, 24)).astype(dtype)
    K = 160  # outputs of 160 x 64 x 14 x 14 x 4 bytes = 8 MB
    xy = rng.uniform(0, 23, (K, 2, 2))
    rois = np.concatenate([rng.integers(0, 2, (K, 1)), xy.min(1), xy.max(1)], 1).astype(dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x, rois


CALLS = {
    "align": lambda x, r, **k: roicore.roi_align(x, r, (14, 14), 1.0, 2, True, **k),
    "align_max": lambda x, r, **k: roicore.roi_align(x, r, (14, 14), 1.0, 2, False,
                                                     mode="max", **k),
    "pool": lambda x, r, **k: roicore.roi_pool(x, r, (14, 14), 1.0, **k),
    "warp": lambda x, r, **k: roicore.roi_warp(x, r, (14, 14), 1.0, **k),
}


def _fresh(fn):
    old = roicore.set_output_cache_limit(0)
    try:
        return fn()
    finally:
        roicore.set_output_cache_limit(old)


@pytest.mark.parametrize("byte", [0xFF, 0x7F])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("op", sorted(CALLS))
def test_forward_in_dirty_recycled_memory(op, layout, byte):
    x, rois = _case(layout=layout)
    call = CALLS[op]
    want = _fresh(lambda: call(x, rois, layout=layout))
    assert want.nbytes >= 4 * MIB
    for nt in (1, 2):
        _dirty(want.shape, want.dtype, byte)
        got = call(x, rois, layout=layout, num_threads=nt)
        assert isinstance(got.base, _cpu._CachedBlock), "the result should be cache memory"
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("byte", [0xFF, 0x7F])
@pytest.mark.parametrize("op", ["pool", "align_max"])
def test_stored_winners_in_dirty_recycled_memory(op, byte):
    x, rois = _case()
    call = CALLS[op]
    # 128 channels: the int32 winners are 8 MB too (above the cache's 4 MiB floor)
    x2 = np.concatenate([x, x], 1)
    want, want_idx = _fresh(lambda: call(x2, rois, return_indices=True))
    assert want_idx.nbytes >= 4 * MIB
    _dirty(want_idx.shape, want_idx.dtype, byte)
    _dirty(want.shape, want.dtype, byte)
    got, idx = call(x2, rois, return_indices=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.parametrize("byte", [0xFF, 0x7F])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("op", ["align", "pool", "align_max"])
def test_backward_in_dirty_recycled_memory(op, layout, dtype, byte):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 64, 96, 96)).astype(dtype)  # gradient >= 4.7 MB
    rois = np.array([[0, 3, 4, 60, 70], [1, 10.5, 2, 95, 40], [0, 0, 0, 95, 95]], dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    kw = {"layout": layout}
    mode = "max" if op == "align_max" else "avg"
    if op == "pool":
        g = np.ones_like(roicore.roi_pool(x, rois, 7, 1.0, **kw))
    else:
        y = roicore.roi_align(x, rois, 7, 1.0, 2, True, mode=mode, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)

    def back(nt):
        if op == "pool":
            return roicore.roi_pool_backward(g, x, rois, 7, 1.0, num_threads=nt, **kw)
        return roicore.roi_align_backward(g, x, rois, 7, 1.0, 2, True, mode=mode,
                                          num_threads=nt, **kw)

    want = _fresh(lambda: back(1))
    assert want.nbytes >= 4 * MIB
    for nt in (1, 2):
        _dirty(want.shape, want.dtype, byte)
        got = back(nt)
        assert isinstance(got.base, _cpu._CachedBlock)
        np.testing.assert_array_equal(got, want)
    # far from any RoI the gradient is exactly zero (the recycled block was cleared)
    far = got[..., 0] if layout == "NHWC" else got[:, :, 0, :]
    assert not np.isnan(got).any()
    assert far.size and np.isfinite(far).all()


def test_recycled_result_matches_oracle():
    x, rois = _case()
    want = ref.roi_align(x[:, :2].astype(np.float64), rois.astype(np.float64), (14, 14), 1.0,
                         2, True)
    y = CALLS["align"](x, rois)
    del y
    y = CALLS["align"](x, rois)
    assert roicore.output_cache_info()["reused"] >= 1
    np.testing.assert_allclose(y[:, :2], want, rtol=1e-5, atol=1e-5)


def test_blocks_are_reused_and_not_while_a_view_lives():
    x, rois = _case()
    y = CALLS["align"](x, rois)
    keep = y[5].copy()
    view = y[5]
    info = roicore.output_cache_info()
    del y
    assert roicore.output_cache_info()["blocks"] == info["blocks"]  # the view holds it
    other = _cpu.cached_empty((160, 64, 14, 14), np.float32)  # must not be y's block
    other[...] = 9
    np.testing.assert_array_equal(view, keep)
    del other
    del view
    gc.collect()
    before = roicore.output_cache_info()
    z = CALLS["align"](x, rois)
    after = roicore.output_cache_info()
    assert after["reused"] == before["reused"] + 1, (before, after)
    assert isinstance(z.base, _cpu._CachedBlock)
    assert z.flags.c_contiguous and z.flags.writeable and z.flags.aligned
    assert z.ctypes.data % (2 * MIB) == 0  # huge-page aligned


def test_results_pickle_and_outlive_the_cache_limit_change():
    x, rois = _case()
    y = CALLS["pool"](x, rois)
    roicore.set_output_cache_limit(0)
    y2 = pickle.loads(pickle.dumps(y))
    np.testing.assert_array_equal(y, y2)
    del y  # goes back to a disabled cache: unmapped, no crash
    assert roicore.output_cache_info()["held"] == 0
    np.testing.assert_array_equal(y2, CALLS["pool"](x, rois))


def test_limit_bounds_the_memory_held():
    roicore.set_output_cache_limit(13 * MIB)
    arrays = [_cpu.cached_empty((5 * MIB,), np.uint8) for _ in range(5)]  # 6 MiB blocks
    assert all(a is not None for a in arrays)
    del arrays
    gc.collect()
    info = roicore.output_cache_info()
    assert info["held"] == 12 * MIB and info["blocks"] == 2, info
    roicore.set_output_cache_limit(6 * MIB)
    assert roicore.output_cache_info()["held"] == 6 * MIB
    assert _cpu.cached_empty((MIB,), np.uint8) is None  # below the 4 MiB floor


def test_huge_limits_mean_no_limit():
    roicore.set_output_cache_limit(10**30)
    assert roicore.output_cache_info()["limit"] == 1 << 62


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True, None])
def test_limit_argument_is_checked(bad):
    with pytest.raises((ValueError, TypeError), match="nbytes"):
        roicore.set_output_cache_limit(bad)


def test_concurrent_calls_from_python_threads():
    x, rois = _case()
    want = _fresh(lambda: CALLS["align"](x, rois))
    errors = []

    def work():
        try:
            for _ in range(6):
                np.testing.assert_array_equal(CALLS["align"](x, rois, num_threads=1), want)
        except Exception as exc:  # reported below
            errors.append(exc)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("value, limit", [("0", 0), ("64", 64 * MIB),
                                          ("99999999999999999999", 1 << 62)])
def test_environment_sets_the_limit(value, limit):
    env = dict(os.environ, ROICORE_OUTPUT_CACHE_MB=value,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c",
                        "import roicore; print(roicore.output_cache_info()['limit'])"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == limit


def test_bad_environment_value_warns_and_keeps_the_default():
    env = dict(os.environ, ROICORE_OUTPUT_CACHE_MB="lots",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-W", "always", "-c",
                        "import roicore; print(roicore.output_cache_info()['limit'])"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ROICORE_OUTPUT_CACHE_MB" in r.stderr
    assert int(r.stdout) == 256 * MIB


def test_torch_tensors_keep_their_block_and_return_it():
    torch = pytest.importorskip("torch", reason="roicore.torch needs PyTorch (pip install torch)")
    import roicore.torch as rt

    x, rois = _case()
    tx, tr = torch.from_numpy(x), torch.from_numpy(rois)
    y = rt.roi_align(tx, tr, (14, 14), 1.0, 2, True)
    keep = y.clone()
    held = roicore.output_cache_info()["held"]
    # while the tensor lives, a same-size request must get other memory
    other = _cpu.cached_empty(tuple(y.shape), np.float32)
    other[...] = np.nan
    torch.testing.assert_close(y, keep, rtol=0, atol=0)
    del other, y
    gc.collect()
    assert roicore.output_cache_info()["held"] > held
    y2 = rt.roi_align(tx, tr, (14, 14), 1.0, 2, True)
    torch.testing.assert_close(y2, keep, rtol=0, atol=0)


def test_bench_fresh_pages_row_keeps_the_cache_for_the_other_rows():
    """`bench`'s "roicore, fresh pages" row bypasses the cache without emptying it:
    emptying it would make every plain "roicore" row page-fault fresh memory too."""
    from roicore._cli.bench import _without_output_cache

    x, rois = _case()
    want = CALLS["align"](x, rois)
    del want
    held = roicore.output_cache_info()
    assert held["blocks"] == 1
    fresh = _without_output_cache(lambda: CALLS["align"](x, rois))
    assert not isinstance(fresh.base, _cpu._CachedBlock)
    after = roicore.output_cache_info()
    assert after["blocks"] == 1 and after["held"] == held["held"]
    again = CALLS["align"](x, rois)
    assert isinstance(again.base, _cpu._CachedBlock)
    assert roicore.output_cache_info()["reused"] == held["reused"] + 1
    np.testing.assert_array_equal(again, fresh)
