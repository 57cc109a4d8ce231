"""End to end: region features from a Zarr store of feature maps with roicore.dask.

    python benchmarks/dask_roi_features.py                 # modest default, < 2 min
    python benchmarks/dask_roi_features.py --images 4096 --channels 256 --chunk 64
    python benchmarks/dask_roi_features.py --scheduler tcp://HOST:8786 --store s3://...

1. Writes synthetic backbone feature maps (N, C, H, W) to a Zarr store, chunked
   ``(chunk, C, H, W)``, and a (K, 5) box table (sorted by image) with one label
   per box; a box labelled 1 has a brighter patch under it on the first C/4
   channels, a box labelled 0 a darker one (boxes overlap, so the task is noisy).
2. ``dask.array.from_zarr`` -> ``roicore.dask.roi_align`` on a
   ``dask.distributed.LocalCluster`` of 1 and of 2 worker processes (one
   thread each), timing the features computed into worker memory (``persist``)
   and brought back to the client (``compute``).
3. Against one in-memory ``roicore.roi_align`` call on the same data (already
   in RAM, and read from the same Zarr store): the overhead of the dask path.
4. Peak memory per worker process: its RSS sampled every 5 ms by a thread
   started on each worker (``client.run``) during the persist runs and
   during the compute runs, and when idle.
5. Optionally (on by default; ``--no-classifier`` skips it) the scikit-learn
   step: rows flattened channel-major exactly as ``roicore.sklearn.RoIPooler``
   does (checked on a few images), then an ``SGDClassifier`` trained with
   ``partial_fit`` one output block at a time (memory bounded by one block, so
   it scales past the client's RAM) on 80% of the images and scored on the rest.

On a multi-machine cluster run the same code with ``--scheduler ADDRESS``
(a ``dask scheduler`` / ``dask worker ADDRESS`` pair, or a cluster object from
dask-jobqueue, e.g. ``SLURMCluster``, or dask-kubernetes): the store must then
be reachable from every worker (shared file system or an object store URL that
``zarr`` opens, e.g. ``s3://...`` with s3fs), and roicore must be installed on
the workers (``pip install 'roicore[dask]'``).

Timings are wall-clock on whatever machine runs this; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _start_rss_sampler(dask_worker, interval: float = 0.005) -> float:
    """Start sampling this worker's RSS every ``interval`` s; return the RSS now (MiB)."""
    import threading

    import psutil

    proc = psutil.Process()
    state = {"peak": proc.memory_info().rss, "stop": threading.Event()}

    def sample():
        while not state["stop"].wait(interval):
            state["peak"] = max(state["peak"], proc.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    dask_worker._roicore_rss = state
    return state["peak"] / 2**20


def _stop_rss_sampler(dask_worker) -> float:
    """Stop the sampler; return the peak RSS it saw (MiB)."""
    state = dask_worker._roicore_rss
    state["stop"].set()
    return state["peak"] / 2**20


def _make_data(path: str, n: int, c: int, hw: int, per_image: int, chunk: int,
               stride: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Write features to a Zarr store at ``path``; return (rois (K, 5), labels (K,))."""
    import zarr

    rng = np.random.default_rng(seed)
    z = zarr.open_array(store=path, mode="w", shape=(n, c, hw, hw), chunks=(chunk, c, hw, hw),
                        dtype="float32")
    img = hw * stride  # boxes are in image coordinates, spatial_scale = 1 / stride
    rois, labels = [], []
    for s in range(0, n, chunk):
        block = rng.normal(0.0, 1.0, (min(chunk, n - s), c, hw, hw)).astype(np.float32)
        for i in range(block.shape[0]):
            wh = rng.uniform(img / 8, img / 3, (per_image, 2))
            xy = rng.uniform(0, img - wh)
            y = rng.integers(0, 2, per_image)
            for (x1, y1), (w, h), lab in zip(xy, wh, y, strict=True):
                a, b = int(y1 / stride), int(np.ceil((y1 + h) / stride))
                e, f = int(x1 / stride), int(np.ceil((x1 + w) / stride))
                block[i, : max(1, c // 4), a:b, e:f] += 2.0 if lab else -2.0
            rois.append(np.column_stack([np.full(per_image, s + i), xy, xy + wh]))
            labels.append(y)
        z[s:s + block.shape[0]] = block
    return np.concatenate(rois).astype(np.float32), np.concatenate(labels)


def _timed(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _in_memory(store, rois, size, scale, sr, repeat):
    """One in-memory roi_align call on the same data (default threads and 1 thread)."""
    import zarr

    import roicore

    t_load, x = _timed(lambda: zarr.open_array(store=store, mode="r")[:], 1)
    t_mem, want = _timed(lambda: roicore.roi_align(x, rois, size, scale, sr, True), repeat)
    t_mem1, _ = _timed(lambda: roicore.roi_align(x, rois, size, scale, sr, True,
                                                 num_threads=1), repeat)
    return t_load, t_mem, t_mem1, want


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=512, help="N feature maps (default 512)")
    p.add_argument("--channels", type=int, default=64, help="C (default 64)")
    p.add_argument("--size", type=int, default=32, help="H = W of a feature map (default 32)")
    p.add_argument("--boxes", type=int, default=32, help="boxes per image (default 32)")
    p.add_argument("--chunk", type=int, default=32, help="images per Zarr/dask chunk (32)")
    p.add_argument("--stride", type=int, default=16, help="image px per feature px (16)")
    p.add_argument("--output-size", type=int, default=7, help="PH = PW (default 7)")
    p.add_argument("--sampling-ratio", type=int, default=2, help="(default 2)")
    p.add_argument("--workers", default="1,2", help="worker processes to try (default 1,2)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per setting, best kept")
    p.add_argument("--store", default=None,
                   help="Zarr store path (default: a temporary directory, removed after)")
    p.add_argument("--scheduler", default=None,
                   help="address of an existing dask scheduler (tcp://host:8786) instead of "
                        "LocalClusters; the store must be reachable from its workers")
    p.add_argument("--no-classifier", dest="classifier", action="store_false",
                   help="skip the scikit-learn step")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    try:
        import dask.array as da
        from dask.distributed import Client, LocalCluster, wait
    except ImportError:
        p.exit(2, "this script needs dask.distributed: pip install 'roicore[dask]'\n")
    if not _importable("roicore"):  # a source checkout run as benchmarks/...py
        sys.path.insert(0, os.path.dirname(HERE))
    import roicore
    import roicore.dask

    # Workers of a LocalCluster are fresh interpreters: make this roicore importable there
    # too when it runs from a source checkout (an installed roicore needs nothing).
    root = os.path.dirname(os.path.dirname(os.path.abspath(roicore.__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])

    tmp = None
    store = a.store
    if store is None:
        tmp = tempfile.mkdtemp(prefix="roicore-dask-")
        store = os.path.join(tmp, "features.zarr")
    try:
        t = time.perf_counter()
        rois, labels = _make_data(store, a.images, a.channels, a.size, a.boxes, a.chunk,
                                  a.stride, a.seed)
        t_write = time.perf_counter() - t
        K = rois.shape[0]
        size, scale, sr = a.output_size, 1.0 / a.stride, a.sampling_ratio
        gib = a.images * a.channels * a.size * a.size * 4 / 2**30
        print(f"data: N={a.images} C={a.channels} H=W={a.size} float32 ({gib:.3f} GiB) in "
              f"{store} chunks of {a.chunk} images; K={K} boxes ({a.boxes}/image), "
              f"roi_align output {size}x{size}, sampling_ratio={sr}, aligned=True, "
              f"spatial_scale=1/{a.stride}; written in {t_write:.1f} s")
        print(f"machine: {os.cpu_count()} logical CPUs; roicore {roicore.__version__}, "
              f"OpenMP default threads here {roicore.default_num_threads()}")

        def features(x):
            return roicore.dask.roi_align(x, rois, size, scale, sr, True)

        t_load, t_mem, t_mem1, want = _in_memory(store, rois, size, scale, sr, a.repeat)
        print()
        print(f"{'setting':44s} {'seconds':>9s} {'boxes/s':>11s} {'vs in-memory':>13s}")
        print(f"{'in-memory roi_align, default threads':44s} {t_mem:9.3f} {K / t_mem:11.0f}"
              f" {'1.00x':>13s}")
        print(f"{'in-memory roi_align, num_threads=1':44s} {t_mem1:9.3f} {K / t_mem1:11.0f}"
              f" {t_mem1 / t_mem:12.2f}x")
        t_ml = t_load + t_mem
        print(f"{'in-memory, Zarr read + roi_align':44s} {t_ml:9.3f} {K / t_ml:11.0f}"
              f" {t_ml / t_mem:12.2f}x")

        settings = ([("scheduler", None)] if a.scheduler
                    else [(f"{w} worker", int(w)) for w in a.workers.split(",")])
        peaks = {}
        client = None
        for label, nworkers in settings:
            if nworkers is None:
                client, cluster = Client(a.scheduler), None
            else:
                cluster = LocalCluster(n_workers=nworkers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
                client = Client(cluster)
            try:
                idle = client.run(_start_rss_sampler)
                runs = iter(range(10**9))

                def fresh(runs=runs):
                    # a new graph each run (distinct keys): nothing is reused from the
                    # previous run's results; building it is part of the timing
                    x = da.from_zarr(store, name=f"features-{next(runs)}")
                    return features(x)

                lazy = fresh()
                ntasks = len(lazy.dask)
                # warm-up: workers import roicore/zarr and open the store
                got = lazy.compute()
                assert np.array_equal(got, want), "dask result differs from the in-memory call"
                del got, lazy

                def persist(client=client):
                    f = client.persist(fresh())
                    wait(f)
                    del f

                client.run(_stop_rss_sampler)
                client.run(_start_rss_sampler)
                t_p, _ = _timed(persist, a.repeat)
                peak_p = client.run(_stop_rss_sampler)
                client.run(_start_rss_sampler)
                t_c, _ = _timed(lambda: fresh().compute(), a.repeat)
                peak_c = client.run(_stop_rss_sampler)
                peaks[label] = (idle, peak_p, peak_c)
                name = f"dask {label}"
                print(f"{name + f' persist ({ntasks} tasks)':44s} {t_p:9.3f} {K / t_p:11.0f}"
                      f" {t_p / t_mem:12.2f}x")
                print(f"{name + ' compute -> client':44s} {t_c:9.3f} {K / t_c:11.0f}"
                      f" {t_c / t_mem:12.2f}x")
                if a.classifier and label == settings[-1][0]:
                    _classify(fresh(), rois, labels, store, size, scale, sr, a, client)
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        print()
        out_mib = K * a.channels * size * size * 4 / 2**20
        chunk_mib = a.chunk * a.channels * a.size * a.size * 4 / 2**20
        print(f"peak RSS per worker process (sampled every 5 ms; one input chunk is "
              f"{chunk_mib:.1f} MiB, the whole output {out_mib:.1f} MiB; compute's peak "
              f"includes dask's final concatenation of the output on one worker):")
        for label, (idle, peak_p, peak_c) in peaks.items():
            cells = "; ".join(f"persist {peak_p[w]:.0f} MiB, compute {peak_c[w]:.0f} MiB "
                              f"(idle {idle[w]:.0f})" for w in sorted(idle))
            print(f"  {label}: {cells}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _classify(lazy, rois, labels, store, size, scale, sr, a, client) -> None:
    """RoIPooler-style rows -> SGDClassifier.partial_fit one block at a time."""
    try:
        from sklearn.linear_model import SGDClassifier

        from roicore.sklearn import RoIPooler
    except ImportError:
        print("\nclassifier step skipped: scikit-learn is not installed")
        return
    import zarr

    K = rois.shape[0]
    # channel-major (C, PH, PW) rows, exactly RoIPooler's columns; kept in worker memory
    # for the epochs (for outputs larger than the cluster's memory, drop the persist:
    # each epoch then recomputes the features block by block)
    rows = client.persist(lazy.reshape(K, -1))
    # the same columns as roicore.sklearn.RoIPooler on the first two images
    z = zarr.open_array(store=store, mode="r")
    pooler = RoIPooler("align", size, scale, sr, aligned=True)
    first = rois[:, 0] < 2
    X = [(z[i], rois[rois[:, 0] == i, 1:]) for i in range(2)]
    assert np.array_equal(pooler.transform(X), rows[: int(first.sum())].compute())

    train = rois[:, 0] < int(0.8 * a.images)
    clf = SGDClassifier(loss="log_loss", alpha=1e-3, average=True, random_state=0)
    t = time.perf_counter()
    blocks = rows.to_delayed().ravel()
    starts = np.cumsum([0, *rows.chunks[0]])
    for _epoch in range(3):
        for b, s, e in zip(blocks, starts[:-1], starts[1:], strict=True):
            keep = train[s:e]
            if e == s or not keep.any():
                continue
            Xb = client.compute(b).result()
            clf.partial_fit(Xb[keep], labels[s:e][keep], classes=[0, 1])
    correct = total = 0
    for b, s, e in zip(blocks, starts[:-1], starts[1:], strict=True):
        test = ~train[s:e]
        if e == s or not test.any():
            continue
        Xb = client.compute(b).result()
        correct += int((clf.predict(Xb[test]) == labels[s:e][test]).sum())
        total += int(test.sum())
    dt = time.perf_counter() - t
    print(f"\nscikit-learn: RoIPooler-layout rows ({rows.shape[1]} features) -> "
          f"averaged SGDClassifier.partial_fit, 3 epochs, one block at a time: held-out accuracy "
          f"{correct / max(total, 1):.3f} on {total} boxes ({dt:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
