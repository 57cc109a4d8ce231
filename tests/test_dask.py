"""roicore.dask on a real dask.distributed LocalCluster: every op bit-identical to the
in-memory call, graph of one task per image chunk, eager validation errors."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="dask not installed (pip install 'roicore[dask]')")
distributed = pytest.importorskip(
    "dask.distributed", reason="dask.distributed not installed (pip install 'roicore[dask]')")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import reference as ref  # noqa: E402
from cases import case_rng, make_input, make_rois  # noqa: E402
from dask.array.core import PerformanceWarning  # noqa: E402

import roicore  # noqa: E402
import roicore.dask as rd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(roicore.__file__)))
N, C, H, W = 7, 3, 9, 11
UNEVEN = (2, 1, 3, 1)  # uneven chunks along N


@pytest.fixture(scope="module")
def client():
    """2 worker processes x 1 thread, started and closed here.

    The workers must import the same roicore as the tests: from an installed
    package (CI: pip install -e) that just works; from a source checkout the
    checkout's root goes on the workers' PYTHONPATH (a spawned worker is a
    fresh interpreter that reads it at start-up)."""
    with pytest.MonkeyPatch.context() as mp:
        old = os.environ.get("PYTHONPATH")
        mp.setenv("PYTHONPATH", ROOT if not old else ROOT + os.pathsep + old)
        cluster = distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=":0",
            worker_dashboard_address=":0")
        cl = distributed.Client(cluster)
        try:
            files = cl.run(lambda: __import__("roicore").__file__)
            assert len(files) == 2
            assert {os.path.realpath(f) for f in files.values()} == {
                os.path.realpath(roicore.__file__)}
            yield cl
        finally:
            cl.close()
            cluster.close()


def data(layout="NCHW", dtype=np.float32, k=30, seed=0, scale=0.5):
    rng = case_rng("dask", layout, np.dtype(dtype).name, k, seed)
    x = make_input(rng, dtype, (N, C, H, W))
    rois = make_rois(rng, scale, n_batch=N, h=H, w=W, k=k)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x, rois


def chunked(x, chunks=UNEVEN):
    return da.from_array(x, chunks=(chunks, -1, -1, -1))


OPS = [
    ("roi_pool", {"bins": "fast_rcnn"}),
    ("roi_pool", {"bins": "equal"}),
    ("roi_align", {"mode": "avg", "aligned": False}),
    ("roi_align", {"mode": "avg", "aligned": True}),
    ("roi_align", {"mode": "max", "aligned": False}),
    ("roi_align", {"mode": "max", "aligned": True, "sampling_ratio": 2}),
    ("roi_warp", {"mode": "avg"}),
    ("roi_warp", {"mode": "max", "sampling_ratio": 2}),
    ("roi_warp", {"compat": "mnc"}),
]
OP_IDS = [f"{op}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for op, kw in OPS]


def both(op, x, rois, size=(3, 2), scale=0.5, **kw):
    """(in-memory result, lazy dask result) for the same call."""
    expect = getattr(roicore, op)(x, rois, size, scale, **kw)
    lazy = getattr(rd, op)(chunked(x), rois, size, scale, **kw)
    return expect, lazy


# --------------------------------------------------------------------------- results
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(("op", "kw"), OPS, ids=OP_IDS)
def test_bit_identical_unsorted_boxes(client, op, kw, layout):
    x, rois = data(layout)
    assert np.any(np.diff(rois[:, 0]) < 0), "the boxes must not be sorted by image"
    expect, lazy = both(op, x, rois, layout=layout, **kw)
    assert isinstance(lazy, da.Array)
    assert lazy.shape == expect.shape and lazy.dtype == expect.dtype
    got = client.compute(lazy).result()
    assert np.array_equal(got, expect, equal_nan=True)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(("op", "kw"), OPS, ids=OP_IDS)
def test_bit_identical_list_boxes_with_empty_images(client, op, kw, layout):
    """List form, several images without boxes (one whole chunk without any)."""
    x, rois = data(layout, k=24, seed=1)
    keep = ~np.isin(rois[:, 0], [0, 3, 6])  # chunks (2, 1, 3, 1): chunk 1 = image 2 kept
    rois = rois[keep]
    rois[rois[:, 0] == 2, 0] = 4  # no box in chunk 1 (image 2) either
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(N)]
    assert [len(b) for b in boxes].count(0) >= 3
    expect, lazy = both(op, x, boxes, layout=layout, **kw)
    assert lazy.chunks[0][1] == 0  # an image chunk without boxes: an empty output block
    assert np.array_equal(client.compute(lazy).result(), expect, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_dtypes(client, dtype):
    x, rois = data(dtype=dtype)
    for op, kw in OPS[::2]:
        expect, lazy = both(op, x, rois, **kw)
        assert lazy.dtype == dtype
        assert np.array_equal(client.compute(lazy).result(), expect, equal_nan=True), op


def test_matches_the_numpy_oracle(client):
    """Not only equal to the in-memory call: equal to tests/support/reference.py."""
    x, rois = data(dtype=np.float64)
    got = client.compute(rd.roi_align(chunked(x), rois, (3, 2), 0.5, 2, True)).result()
    want = ref.roi_align(x, rois, (3, 2), 0.5, 2, True)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_sorted_boxes_integer_rois_and_options(client):
    x, rois = data(k=40, seed=2)
    rois = rois[np.argsort(rois[:, 0], kind="stable")]
    irois = np.round(rois).astype(np.int32)
    for r in (rois, irois, rois.astype(np.float32)):
        expect = roicore.roi_align(x, r, 4, 0.25, 0, True, num_threads=2)
        lazy = rd.roi_align(chunked(x, (3, 4)), r, 4, 0.25, 0, True, num_threads=2)
        assert lazy.chunks[0] == (int(np.sum(r[:, 0] < 3)), int(np.sum(r[:, 0] >= 3)))
        assert np.array_equal(client.compute(lazy).result(), expect)


def test_k_zero(client):
    x, _ = data()
    for rois in (np.zeros((0, 5), np.float32), [np.zeros((0, 4))] * N):
        for op, kw in OPS:
            expect, lazy = both(op, x, rois, **kw)
            assert lazy.shape == expect.shape == (0, C, 3, 2)
            assert client.compute(lazy).result().shape == (0, C, 3, 2)


def test_chunked_channels_are_rechunked_with_a_warning(client):
    x, rois = data()
    xd = da.from_array(x, chunks=(UNEVEN, 2, 5, -1))
    with pytest.warns(PerformanceWarning, match="rechunked"):
        lazy = rd.roi_pool(xd, rois, 2, 0.5)
    assert np.array_equal(client.compute(lazy).result(), roicore.roi_pool(x, rois, 2, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rd.roi_pool(chunked(x), rois, 2, 0.5)  # whole maps per chunk: no warning


def test_zarr_like_lazy_source_and_local_schedulers():
    """Any dask array source; the threaded and synchronous schedulers give the same."""
    x, rois = data()
    lazy = rd.roi_warp(chunked(x) * 1.0, rois, 2, 0.5)
    expect = roicore.roi_warp(x, rois, 2, 0.5)
    for scheduler in ("threads", "sync"):
        assert np.array_equal(lazy.compute(scheduler=scheduler), expect)


def _poisoned(x, bad_chunks):
    """``x`` as a dask array whose chunks in ``bad_chunks`` raise when they are read."""
    def load(block, block_info=None):
        if block_info[0]["chunk-location"][0] in bad_chunks:
            raise RuntimeError("this chunk must not be read")
        return block

    return chunked(x).map_blocks(load, dtype=x.dtype)


def test_lazy_and_chunks_without_boxes_are_never_read():
    x, rois = data()
    rd.roi_align(_poisoned(x, {0, 1, 2, 3}), rois, 2, 0.5)  # building reads nothing
    rois = rois[(rois[:, 0] < 2) | (rois[:, 0] >= 6)]  # UNEVEN chunks: only 0 and 3 have boxes
    for r in (rois, rois[np.argsort(rois[:, 0], kind="stable")]):  # unsorted, sorted
        lazy = rd.roi_align(_poisoned(x, {1, 2}), r, 2, 0.5)
        assert np.array_equal(lazy.compute(scheduler="sync"), roicore.roi_align(x, r, 2, 0.5))
    assert lazy.chunks[0][1:3] == (0, 0)
    with pytest.raises(RuntimeError, match="must not be read"):
        rd.roi_align(_poisoned(x, {3}), rois, 2, 0.5).compute(scheduler="sync")


# --------------------------------------------------------------------------- graph
def _tasks(lazy):
    return dict(lazy.dask.layers[next(n for n in lazy.dask.layers if n.startswith("roicore-"))])


@pytest.mark.parametrize("nchunks", [1, 5, 40])
def test_graph_is_one_task_per_chunk_and_boxes_travel_once(nchunks):
    rng = np.random.default_rng(nchunks)
    n = 2 * nchunks
    x = da.zeros((n, 2, 8, 8), chunks=(2, -1, -1, -1), dtype=np.float32)
    k = 500
    rois = np.concatenate([np.sort(rng.integers(0, n, k))[:, None].astype(np.float32),
                           rng.uniform(0, 4, (k, 2)), rng.uniform(4, 8, (k, 2))], 1)
    lazy = rd.roi_align(x, rois, 2)
    tasks = _tasks(lazy)
    assert len(tasks) == nchunks  # one task per image chunk
    assert len(lazy.dask) <= 3 * nchunks + 1  # the whole graph is O(chunks), not O(boxes)
    assert set(lazy.dask.layers) == {x.name, lazy.name}  # sorted boxes: no permutation step
    assert lazy.numblocks[0] == nchunks
    rows = 0
    for key, task in tasks.items():
        boxes = [a for a in task[1:] if isinstance(a, np.ndarray)]
        deps = [a for a in task[1:] if isinstance(a, tuple) and a and a[0] == x.name]
        rows += sum(b.shape[0] for b in boxes)
        assert len(boxes) <= 1 and len(deps) <= 1
        if boxes:  # the chunk's own boxes, rebased to the chunk
            assert deps == [(x.name, key[1], 0, 0, 0)]
            assert boxes[0][:, 0].min() >= 0 and boxes[0][:, 0].max() < 2
    assert rows == k  # every box sent once, to exactly one task


def test_unsorted_boxes_add_one_permutation_step():
    """Unsorted boxes: the per-chunk tasks plus dask's take; its size is the documented
    all-to-all bound (output chunks x image chunks each draws from), not O(boxes)."""
    rng = np.random.default_rng(3)
    nchunks, n, k = 20, 40, 2000
    xn = rng.random((n, 2, 8, 8), dtype=np.float32)
    x = da.from_array(xn, chunks=(2, -1, -1, -1))
    rois = np.concatenate([rng.integers(0, n, k)[:, None].astype(np.float32),
                           rng.uniform(0, 4, (k, 2)), rng.uniform(4, 8, (k, 2))], 1)
    with pytest.warns(PerformanceWarning, match="not grouped by image chunk.*argsort"):
        lazy = rd.roi_align(x, rois, 2)
    assert len(_tasks(lazy)) == nchunks
    assert len(lazy.dask) < 4 * nchunks * nchunks < k
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # grouped by image: no permutation, no warning
        rd.roi_align(x, rois[np.argsort(rois[:, 0], kind="stable")], 2)
    assert np.array_equal(lazy.compute(scheduler="sync"), roicore.roi_align(xn, rois, 2))


# --------------------------------------------------------------------------- errors
BAD = [
    ("batch index out of range", lambda r: r, lambda r: r.__setitem__((0, 0), N), {}),
    ("non-integral batch index", lambda r: r, lambda r: r.__setitem__((1, 0), 0.5), {}),
    ("NaN box", lambda r: r, lambda r: r.__setitem__((2, 3), np.nan), {}),
    ("(K, 4) boxes", lambda r: r[:, 1:], None, {}),
    ("list of wrong length", lambda r: [r[:, 1:]] * (N - 1), None, {}),
    ("output_size 0", lambda r: r, None, {"output_size": 0}),
    ("negative scale", lambda r: r, None, {"spatial_scale": -1.0}),
    ("num_threads 0", lambda r: r, None, {"num_threads": 0}),
    ("bad layout", lambda r: r, None, {"layout": "CHW"}),
    ("bad mode", lambda r: r, None, {"mode": "mean"}),
    ("complex boxes", lambda r: r.astype(complex), None, {}),
]


@pytest.mark.parametrize(("what", "make", "edit", "kw"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_same_error_eagerly(what, make, edit, kw):
    x, rois = data()
    rois = rois.copy()
    if edit is not None:
        edit(rois)
    rois = make(rois)
    args = {"output_size": 2, "spatial_scale": 0.5, **kw}
    with pytest.raises((TypeError, ValueError)) as mem:
        roicore.roi_align(x, rois, **args)
    with dask.config.set(scheduler="sync"):  # nothing is computed: the error is eager
        with pytest.raises(mem.type) as lazy:
            rd.roi_align(chunked(x), rois, **args)
    assert str(lazy.value) == str(mem.value), what


def test_bad_input_per_op_and_dtype():
    x, rois = data()
    cases = [
        ("roi_pool", x, {"bins": "caffe"}),
        ("roi_warp", x, {"compat": "mnc", "sampling_ratio": 2}),
        ("roi_warp", x, {"compat": "caffe"}),
        ("roi_align", x.astype(np.int32), {}),
        ("roi_align", x[0], {}),
        ("roi_align", x, {"aligned": 1}),
    ]
    for op, xx, kw in cases:
        with pytest.raises((TypeError, ValueError)) as mem:
            getattr(roicore, op)(xx, rois, 2, 0.5, **kw)
        with pytest.raises(mem.type) as lazy:
            getattr(rd, op)(da.from_array(xx), rois, 2, 0.5, **kw)
        assert str(lazy.value) == str(mem.value), (op, kw)


def test_non_dask_input_and_dask_boxes_are_refused():
    x, rois = data()
    with pytest.raises(TypeError, match=r"dask\.array\.Array.*from_array"):
        rd.roi_pool(x, rois, 2)
    with pytest.raises(TypeError, match=r"`rois` must be in memory.*compute"):
        rd.roi_pool(chunked(x), da.from_array(rois), 2)
    unknown = chunked(x)[chunked(x)[:, 0, 0, 0] > -1e9]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        rd.roi_pool(unknown, rois, 2)


# --------------------------------------------------------------------------- threads
def test_thread_rule(client):
    # 1-thread worker processes: the OpenMP default of the process, which the nanny sets
    # to OMP_NUM_THREADS=1 -> two workers on two cores, one thread each.
    workers = list(client.scheduler_info()["workers"])
    assert len(workers) == 2
    assert [client.submit(rd.task_num_threads, pure=False, workers=[w]).result()
            for w in workers] == [None, None]
    assert set(client.run(roicore.default_num_threads).values()) == {1}
    assert client.submit(rd.task_num_threads, 3, pure=False).result() == 3
    # dask's threaded pool runs one task per core: one OpenMP thread per task
    assert dask.delayed(rd.task_num_threads)().compute(scheduler="threads") == 1
    assert dask.delayed(rd.task_num_threads)().compute(scheduler="sync") is None


def test_thread_rule_multithreaded_worker():
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as cl:
        assert cl.submit(rd.task_num_threads, pure=False).result() == 1


def test_import_roicore_does_not_import_dask():
    code = "import roicore, sys; sys.exit(1 if 'dask' in sys.modules else 0)"
    env = {**os.environ, "PYTHONPATH": ROOT}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT).returncode == 0


def test_docstring_examples():
    import doctest

    res = doctest.testmod(rd, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 2 and res.failed == 0


def test_end_to_end_script_runs():
    """benchmarks/dask_roi_features.py at a tiny size (no timing is checked): Zarr store ->
    roicore.dask.roi_align on a LocalCluster, checked against the in-memory call inside the
    script, then the RoIPooler-layout rows into scikit-learn."""
    pytest.importorskip("zarr", reason="zarr not installed (the script's store)")
    script = os.path.join(ROOT, "benchmarks", "dask_roi_features.py")
    if not os.path.exists(script):
        pytest.skip("benchmarks/ is not shipped with an installed roicore")
    env = {**os.environ, "PYTHONPATH": ROOT}
    res = subprocess.run(
        [sys.executable, script, "--images", "8", "--channels", "4", "--size", "16",
         "--boxes", "6", "--chunk", "3", "--workers", "1", "--repeat", "1"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "dask 1 worker compute -> client" in res.stdout
    assert "peak RSS per worker" in res.stdout
    if "scikit-learn: RoIPooler-layout rows" not in res.stdout:
        assert "classifier step skipped" in res.stdout
