"""Dask front end: RoI Pool / Align / Warp over a chunked collection of feature maps.

:func:`roi_pool`, :func:`roi_align` and :func:`roi_warp` take a
:class:`dask.array.Array` of feature maps (N, C, H, W) (or (N, H, W, C) with
``layout="NHWC"``) chunked along N, and boxes held in memory (a (K, 5) NumPy
array, sorted by image or not, or a list of N (K_i, 4) arrays).  They return a
lazy dask array of shape (K, C, PH, PW) (or (K, PH, PW, C)) whose rows are in
the order of the input boxes; nothing is computed until ``.compute()`` /
``.persist()`` / ``dask.array.to_zarr``.

The graph
---------
The boxes are split, once and eagerly, by the image chunk they fall in.  Each
image chunk becomes **one task** that calls the in-memory
:func:`roicore.roi_align` (or pool / warp) on that block with the chunk's
boxes (batch indices rebased to the block), so every box travels to exactly
one task and each block's result is bit-identical to the rows of one
in-memory call on the whole array.  A chunk with no boxes gets an empty block
and does not read its feature maps at all.

* Boxes grouped by image chunk (e.g. sorted by image, the usual box table):
  the output's chunks along K are the per-chunk box counts, one output block
  per image chunk, and the graph has one task per image chunk.
* Boxes not grouped: the per-chunk blocks are computed as above, then a final
  ``take`` puts the rows back in input order.  That permutation is an
  all-to-all step: its task count grows with (output chunks x image chunks they
  draw from), up to chunks**2 for boxes in random order (measured: 20 chunks ->
  ~750 tasks, 200 chunks -> ~14 000), and a ``PerformanceWarning`` fires when it
  exceeds 8 tasks per chunk.  Sort the box table by image first
  (``order = np.argsort(rois[:, 0], kind="stable")``; ``rois[order]``, and the
  labels with the same ``order``) to keep the graph at one task per chunk.

Feature maps chunked along C, H or W are rechunked to whole maps along those
axes (each task needs whole feature maps); a
:class:`dask.array.core.PerformanceWarning` says so.  Store the features with
chunks ``(n, C, H, W)`` to avoid the rechunk.

Threads per task
----------------
With ``num_threads=None`` (the default) each task picks its OpenMP thread
count so that the worker's cores are not oversubscribed:

* on a ``dask.distributed`` worker running several threads
  (``Worker.state.nthreads > 1``), several tasks run at once, one per thread:
  each uses **1** thread;
* on a worker running one thread, the task uses the worker process's OpenMP
  default (``OMP_NUM_THREADS``).  ``dask.distributed``'s nanny sets
  ``OMP_NUM_THREADS=1`` in every worker process unless configured otherwise
  (``distributed.nanny.pre-spawn-environ``), so to give a one-thread worker
  ``k`` cores start it with ``OMP_NUM_THREADS=k`` in that setting;
* with dask's local schedulers: 1 thread inside the threaded or process pool
  (they already run one task per core), the OpenMP default with the
  synchronous scheduler.

An explicit ``num_threads`` is passed to every task unchanged.  Results do
not depend on the thread count (roicore's kernels are bit-identical across
thread counts).

This module needs ``dask[array]`` (``pip install 'roicore[dask]'`` brings
``dask[distributed]``); ``import roicore`` never imports dask.
"""

from __future__ import annotations

import functools
import multiprocessing
import threading
import warnings
from typing import Any

import numpy as np

try:
    import dask.array as da
    from dask.array.core import PerformanceWarning
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as _exc:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "roicore.dask needs dask: pip install 'roicore[dask]' (dask[distributed])"
    ) from _exc

from . import _api, _interop

__all__ = ["roi_align", "roi_pool", "roi_warp", "task_num_threads"]


# --------------------------------------------------------------------------- threads
def task_num_threads(num_threads: int | None = None) -> int | None:
    """Thread count a task of this module passes to the in-memory kernel.

    Called inside a task (see the module docstring for the rule).

    Parameters
    ----------
    num_threads : int or None
        The caller's ``num_threads``; an int is returned unchanged.

    Returns
    -------
    int or None
        ``1`` where several tasks share the process's cores, ``None`` (the
        OpenMP default of the process) where the task has the process alone.
    """
    if num_threads is not None:
        return num_threads
    worker = None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # no distributed, or not inside a worker
        worker = None
    if worker is not None:
        state = getattr(worker, "state", None)
        nthreads = getattr(state, "nthreads", None) or getattr(worker, "nthreads", 1)
        return None if int(nthreads) == 1 else 1
    if threading.current_thread() is not threading.main_thread():
        return 1  # dask's threaded scheduler: one task per core already
    if multiprocessing.parent_process() is not None:
        return 1  # dask's process pool: one process per core already
    return None  # synchronous scheduler: the task has the process to itself


# --------------------------------------------------------------------------- tasks
def _block(op: str, kwargs: dict, x: np.ndarray, rois: np.ndarray) -> np.ndarray:
    """One task: the in-memory operator on one image chunk and its boxes."""
    kw = dict(kwargs)
    kw["num_threads"] = task_num_threads(kw.get("num_threads"))
    return getattr(_api, op)(x, rois, **kw)


def _empty(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return np.empty(shape, dtype=np.dtype(dtype))


# --------------------------------------------------------------------------- graph
def _as_dask_input(input: Any) -> Any:
    if not isinstance(input, da.Array):
        raise TypeError(
            f"`input` must be a dask.array.Array of feature maps chunked along N; got "
            f"{type(input).__module__}.{type(input).__name__}. Wrap an in-memory or Zarr "
            f"array with dask.array.from_array(x, chunks=(n, -1, -1, -1)) / "
            f"dask.array.from_zarr(...), or call roicore.{{roi_pool,roi_align,roi_warp}} "
            f"directly on a NumPy array."
        )
    meta = getattr(input, "_meta", None)
    if meta is not None and not isinstance(meta, np.ndarray):
        raise TypeError(
            f"roicore.dask runs on NumPy (CPU) blocks; `input`'s blocks are "
            f"{type(meta).__module__}.{type(meta).__name__}. Convert them with "
            f"input.map_blocks(numpy.asarray) (for CuPy: lambda b: b.get())"
        )
    if input.ndim >= 1 and any(np.isnan(c) for c in input.chunks[0]):
        raise ValueError(
            "`input` has unknown chunk sizes along N (e.g. after boolean indexing): boxes "
            "are routed to image chunks by their batch index, so the chunk sizes must be "
            "known; call input.compute_chunk_sizes() first"
        )
    return input


def _native_rois(rois: Any) -> Any:
    """Boxes as NumPy (DLPack CPU arrays viewed zero-copy); dask boxes refused."""
    def one(r: Any, name: str) -> Any:
        if isinstance(r, da.Array):
            raise TypeError(
                f"`{name}` must be in memory (a NumPy array): the boxes are split by image "
                f"chunk when the graph is built; call .compute() on it first"
            )
        r = _interop.to_native(r, name) if _interop.is_foreign(r) else r
        if _interop.is_native(r) and not isinstance(r, np.ndarray):
            raise TypeError(
                f"`{name}` is a {type(r).__module__}.{type(r).__name__}; roicore.dask works "
                f"on CPU (NumPy) blocks: pass the boxes as a NumPy array"
            )
        return r

    if isinstance(rois, (list, tuple)) and any(hasattr(r, "ndim") for r in rois):
        return [one(r, f"rois[{i}]") for i, r in enumerate(rois)]
    return one(rois, "rois")


def _meta(input: Any) -> np.ndarray:
    """A NumPy array with ``input``'s shape and dtype and no memory (validation only)."""
    return np.broadcast_to(np.zeros((), dtype=input.dtype), tuple(int(s) for s in input.shape))


def _whole_maps(input: Any) -> Any:
    if input.ndim == 4 and any(n > 1 for n in input.numblocks[1:]):
        warnings.warn(
            f"roicore.dask: `input` is chunked along its C/H/W axes (chunks "
            f"{tuple(c if len(c) <= 4 else (*c[:3], '...') for c in input.chunks[1:])}); each "
            f"task needs whole feature maps, so those axes are rechunked to one chunk each "
            f"(chunks along N are kept). Store the features with chunks (n, C, H, W) / "
            f"(n, H, W, C) to avoid this rechunk.",
            PerformanceWarning,
            stacklevel=4,
        )
        input = input.rechunk({1: -1, 2: -1, 3: -1})
    return input


def _build(op: str, input: Any, rois: Any, plan_fn: Any, plan_args: tuple,
           kwargs: dict) -> Any:
    input = _as_dask_input(input)
    rois = _native_rois(rois)
    # The in-memory validation, on a memory-less array of input's shape and dtype:
    # the same errors as the in-memory call, raised now.
    plan, _backend, r = plan_fn(_meta(input), rois, *plan_args)
    r = np.asarray(r)
    input = _whole_maps(input)
    s = plan.shapes
    out_tail = s.out_shape[1:]
    dtype = np.dtype(input.dtype)

    # Route every box to its image chunk (stable: within a chunk, input order).
    starts = np.concatenate([[0], np.cumsum(input.chunks[0])]).astype(np.int64)
    batch = r[:, 0].astype(np.int64) if r.shape[0] else np.zeros(0, np.int64)
    chunk_of = np.searchsorted(starts, batch, side="right") - 1
    nchunks = len(input.chunks[0])
    order = np.argsort(chunk_of, kind="stable")
    counts = np.bincount(chunk_of, minlength=nchunks).astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    # float16 boxes are rebased in float32 (exact; the kernel casts them to >= float32)
    r_local_dtype = np.float32 if r.dtype == np.float16 else r.dtype

    name = f"roicore-{op}-" + tokenize(input, r, plan_args, kwargs)
    fn = functools.partial(_block, op, kwargs)
    dsk: dict = {}
    for i in range(nchunks):
        key = (name, i) + (0,) * (len(out_tail))
        if counts[i] == 0:
            dsk[key] = (_empty, (0, *out_tail), dtype.str)
            continue
        idx = order[bounds[i]:bounds[i + 1]]
        sub = r[idx].astype(r_local_dtype, copy=True)
        sub[:, 0] = batch[idx] - starts[i]
        dsk[key] = (fn, (input.name, i, 0, 0, 0), sub)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[input])
    chunks = (tuple(int(c) for c in counts), *((int(n),) for n in out_tail))
    grouped = da.Array(graph, name, chunks=chunks, dtype=dtype,
                       meta=np.empty((0,) * 4, dtype=dtype))
    if r.shape[0] == 0 or np.all(order == np.arange(r.shape[0])):
        return grouped
    # Boxes not grouped by image chunk: put the rows back in input order.
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.shape[0])
    out = grouped[inverse]
    extra = len(out.dask) - len(grouped.dask)
    if extra > max(_PERMUTATION_WARN * nchunks, 256):
        warnings.warn(
            f"roicore.dask: the boxes are not grouped by image chunk, so putting the rows "
            f"back in input order adds an all-to-all step of {extra} tasks across "
            f"{nchunks} image chunks (the pooling itself is {nchunks} tasks). Sort the "
            f"boxes by image first (order = np.argsort(rois[:, 0], kind='stable'); "
            f"rois = rois[order], and reorder labels with the same `order`) for a graph "
            f"of one task per chunk.",
            PerformanceWarning,
            stacklevel=3,
        )
    return out


#: Warn when restoring the input order costs more than this many tasks per image chunk
#: (and more than 256 tasks in all).
_PERMUTATION_WARN = 8


# --------------------------------------------------------------------------- public API
def roi_pool(
    input: Any, rois: Any, output_size: int | tuple[int, int], spatial_scale: float = 1.0, *,
    bins: str = "fast_rcnn", layout: str = "NCHW", num_threads: int | None = None,
) -> Any:
    """Lazy :func:`roicore.roi_pool` over a dask array of feature maps.

    Parameters
    ----------
    input : dask.array.Array, shape (N, C, H, W) or (N, H, W, C)
        Feature maps (float16/32/64) chunked along N (any chunk sizes, known);
        chunks along C/H/W are merged with a ``PerformanceWarning``.
    rois : ndarray (K, 5) or list of N ndarrays (K_i, 4)
        Boxes ``[batch_index, x1, y1, x2, y2]`` in memory, in any order.
    output_size, spatial_scale, bins, layout
        As in :func:`roicore.roi_pool`.
    num_threads : int, optional
        OpenMP threads per task; default: the rule in :mod:`roicore.dask`
        (no oversubscription of a worker's cores).

    Returns
    -------
    dask.array.Array, shape (K, C, PH, PW) or (K, PH, PW, C)
        Rows in the order of the input boxes; ``input``'s dtype.  Equal bit
        for bit to ``roicore.roi_pool(input.compute(), rois, ...)``.

    Raises
    ------
    TypeError, ValueError
        The in-memory function's errors for bad arguments, raised when the
        graph is built (not at compute time).

    Examples
    --------
    >>> import dask.array as da, numpy as np, roicore.dask
    >>> x = da.from_array(np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4),
    ...                   chunks=(1, -1, -1, -1))
    >>> boxes = np.array([[1, 0, 0, 3, 3], [0, 0, 0, 3, 3]], np.float32)
    >>> roicore.dask.roi_pool(x, boxes, 1).compute().ravel()
    array([31., 15.], dtype=float32)
    """
    kwargs = {"output_size": output_size, "spatial_scale": spatial_scale, "bins": bins,
              "layout": layout, "num_threads": num_threads}
    return _build("roi_pool", input, rois, _api._pool_plan,
                  (output_size, spatial_scale, bins, layout, num_threads), kwargs)


def roi_align(
    input: Any, rois: Any, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
    sampling_ratio: int = -1, aligned: bool = False, *, mode: str = "avg",
    layout: str = "NCHW", num_threads: int | None = None,
) -> Any:
    """Lazy :func:`roicore.roi_align` over a dask array of feature maps.

    Parameters
    ----------
    input, rois
        As in :func:`roi_pool`.
    output_size, spatial_scale, sampling_ratio, aligned, mode, layout
        As in :func:`roicore.roi_align`.
    num_threads : int, optional
        As in :func:`roi_pool`.

    Returns
    -------
    dask.array.Array, shape (K, C, PH, PW) or (K, PH, PW, C)
        Rows in the order of the input boxes; equal bit for bit to
        ``roicore.roi_align(input.compute(), rois, ...)``.

    Raises
    ------
    TypeError, ValueError
        As in :func:`roi_pool`.

    Examples
    --------
    >>> import dask.array as da, numpy as np, roicore.dask
    >>> x = da.from_array(np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4),
    ...                   chunks=(1, -1, -1, -1))
    >>> boxes = [np.zeros((0, 4)), np.array([[0, 0, 2, 2]])]
    >>> roicore.dask.roi_align(x, boxes, 1, aligned=True).compute().ravel()
    array([18.5], dtype=float32)
    """
    kwargs = {"output_size": output_size, "spatial_scale": spatial_scale,
              "sampling_ratio": sampling_ratio, "aligned": aligned, "mode": mode,
              "layout": layout, "num_threads": num_threads}
    return _build("roi_align", input, rois, _api._align_plan,
                  (output_size, spatial_scale, sampling_ratio, aligned, mode, layout,
                   num_threads), kwargs)


def roi_warp(
    input: Any, rois: Any, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
    sampling_ratio: int = -1, *, mode: str = "avg", compat: str | None = None,
    layout: str = "NCHW", num_threads: int | None = None,
) -> Any:
    """Lazy :func:`roicore.roi_warp` over a dask array of feature maps.

    Parameters
    ----------
    input, rois
        As in :func:`roi_pool`.
    output_size, spatial_scale, sampling_ratio, mode, compat, layout
        As in :func:`roicore.roi_warp`.
    num_threads : int, optional
        As in :func:`roi_pool`.

    Returns
    -------
    dask.array.Array, shape (K, C, PH, PW) or (K, PH, PW, C)
        Rows in the order of the input boxes; equal bit for bit to
        ``roicore.roi_warp(input.compute(), rois, ...)``.

    Raises
    ------
    TypeError, ValueError
        As in :func:`roi_pool`.
    """
    kwargs = {"output_size": output_size, "spatial_scale": spatial_scale,
              "sampling_ratio": sampling_ratio, "mode": mode, "compat": compat,
              "layout": layout, "num_threads": num_threads}
    return _build("roi_warp", input, rois, _api._warp_plan,
                  (output_size, spatial_scale, sampling_ratio, mode, compat, layout,
                   num_threads), kwargs)
