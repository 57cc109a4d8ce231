"""asv suites: roicore beside torchvision, onnxruntime and OpenVINO, over time.

Every suite is parameterised by ``implementation``, so the dashboard draws
roicore and its peers as lines of the same graph:

==============  ===================================================  ==================
implementation  what is timed                                        ops / directions
==============  ===================================================  ==================
roicore         ``roicore.roi_*`` on NumPy arrays, NCHW              all
roicore-nhwc    the same, channels-last (``layout="NHWC"``)          all
roicore-gpu     the same on CuPy arrays (synchronised after a call)  all
torchvision     ``torchvision.ops.roi_align`` / ``roi_pool``         align, pool; both
onnxruntime     ``RoiAlign`` (opset 16) / ``MaxRoiPool``, CPU        align, pool; fwd
openvino        ``ROIAlign`` (opset 13) / ``ROIPooling``, CPU        align, pool; fwd
==============  ===================================================  ==================

A combination that is not installed (torchvision, onnxruntime, openvino,
CuPy or a CUDA device) or that the library lacks (RoI Warp outside roicore,
backward in ONNX/OpenVINO, a thread count on the GPU) is skipped:
``NotImplementedError`` in ``setup``, which asv records as "n/a".

Workloads are the standard ones of :mod:`roicore._cli.workloads` (fixed seeds,
float32): RoI Align on W1 and W3, RoI Pool on W4 (W1's arrays), RoI Warp on
W1's geometry; backward on W1 and W4 only.  Every implementation runs with
roicore's default thread count (all cores, or OMP_NUM_THREADS), peers set to
the same number.  W2 (the largest workload), float64 and a thread sweep are
left out to keep a full run to a few minutes on 2 cores: ``python -m roicore
bench --workload W2 --threads 1,2 --dtype float64`` times them.  No ``peakmem_``
suite: asv measures the whole process, which holds every peer's libraries
(about 840 MB here) and would hide roicore's own memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import roicore
from roicore._cli import workloads as _workloads

IMPLEMENTATIONS = ("roicore", "roicore-nhwc", "roicore-gpu", "torchvision", "onnxruntime",
                   "openvino")
PARAM_NAMES = ("implementation", "workload")
#: what each peer implements: (ops, directions)
PEERS = {
    "torchvision": (("align", "pool"), ("forward", "backward")),
    "onnxruntime": (("align", "pool"), ("forward",)),
    "openvino": (("align", "pool"), ("forward",)),
}


def _preload() -> None:
    """Import the installed peers once, here: asv forks every benchmark from a process
    that has imported this file, so no benchmark pays for importing torch again."""
    import importlib

    for mod in ("torch", "torchvision.ops", "onnxruntime", "onnx", "openvino"):
        try:
            importlib.import_module(mod)
        except Exception:  # not installed or broken: that implementation is skipped
            pass


_preload()


def get_workload(name: str) -> _workloads.Workload:
    """The workload of a suite (tests swap in the reduced ``.quick()`` ones)."""
    return _workloads.get(name)


def _cupy() -> Any:
    try:
        import cupy
    except ImportError:
        raise NotImplementedError("CuPy is not installed: no GPU backend") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise NotImplementedError("no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        raise NotImplementedError(f"no usable CUDA device: {exc}") from None
    return cupy


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise NotImplementedError(f"{module} is not installed")


def _roicore_call(op: str, direction: str, w: _workloads.Workload, x, rois, g,
                  kw: dict) -> Callable[[], Any]:
    size, scale = w.output_size, w.spatial_scale
    if op == "align":
        sr, al = w.sampling_ratio, w.aligned
        if direction == "forward":
            return lambda: roicore.roi_align(x, rois, size, scale, sr, al, **kw)
        return lambda: roicore.roi_align_backward(g, x, rois, size, scale, sr, al, **kw)
    if op == "warp":
        sr = w.sampling_ratio
        if direction == "forward":
            return lambda: roicore.roi_warp(x, rois, size, scale, sr, **kw)
        return lambda: roicore.roi_warp_backward(g, x, rois, size, scale, sr, **kw)
    if direction == "forward":
        return lambda: roicore.roi_pool(x, rois, size, scale, **kw)
    return lambda: roicore.roi_pool_backward(g, x, rois, size, scale, **kw)


def _peer_call(impl: str, op: str, direction: str, w: _workloads.Workload, threads: int
               ) -> Callable[[], Any]:
    ops, directions = PEERS[impl]
    if op not in ops:
        raise NotImplementedError(f"{impl} has no RoI {op.capitalize()}")
    if direction not in directions:
        raise NotImplementedError(f"{impl} has no {direction} pass")
    from roicore._cli import bench as _bench

    x, rois = w.input(np.float32), w.rois(np.float32)
    if impl == "torchvision":
        _require("torchvision")
        d = "fwd" if direction == "forward" else "bwd"
        g = w.grad_output(np.float32) if direction == "backward" else None
        cand = _bench._torchvision_candidate(w, d, threads, x, rois, g, "NCHW")
        return lambda: cand.call().numpy()
    if impl == "onnxruntime":
        _require("onnxruntime")
        _require("onnx")
        sess = _bench._onnx_session(w, np.dtype(np.float32), threads)
        if op == "align":
            feed = {"X": x, "rois": np.ascontiguousarray(rois[:, 1:]),
                    "batch_indices": rois[:, 0].astype(np.int64)}
        else:
            feed = {"X": x, "rois": rois}
        return lambda: sess.run(None, feed)[0]
    _require("openvino")
    return _bench._openvino_call(w, x, rois, threads)


def make_call(impl: str, op: str, direction: str, w: _workloads.Workload,
              threads: str = "all") -> tuple[Callable[[], Any], Callable[[], None]]:
    """(call, synchronise) for one suite cell; NotImplementedError when it cannot run.

    Every call returns its result, NCHW except for ``roicore-nhwc`` (NHWC)."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {impl!r}")
    nt = roicore.default_num_threads() if threads == "all" else int(threads)
    if impl == "roicore-gpu":
        cp = _cupy()
        if threads != "all":
            raise NotImplementedError("a thread count is a CPU setting: GPU runs use 'all'")
        layout, conv = "NCHW", cp.asarray
        sync = cp.cuda.get_current_stream().synchronize
        kw: dict[str, Any] = {"layout": layout}
    elif impl.startswith("roicore"):
        layout = "NHWC" if impl == "roicore-nhwc" else "NCHW"
        conv, sync = (lambda a: a), (lambda: None)
        kw = {"layout": layout, "num_threads": nt}
    else:
        return _peer_call(impl, op, direction, w, nt), (lambda: None)
    x = conv(w.input(np.float32, layout))
    rois = conv(w.rois(np.float32))
    g = conv(w.grad_output(np.float32, layout)) if direction == "backward" else None
    return _roicore_call(op, direction, w, x, rois, g, kw), sync


class _Suite:
    op = "align"
    direction = "forward"
    params = (IMPLEMENTATIONS, ("W1", "W3"))
    param_names = PARAM_NAMES
    # one call per sample, no warm-up loop, one round: the workloads take milliseconds
    # to a second; at most 3 samples or 4 s per cell keeps a full run to minutes on 2 cores
    number = 1
    repeat = (1, 3, 4.0)
    rounds = 1
    warmup_time = 0.0
    timeout = 300

    def setup(self, implementation: str, workload: str) -> None:
        w = get_workload(workload)
        self._fn, self._sync = make_call(implementation, self.op, self.direction, w)
        self.result = self._fn()  # warm-up (first touch, sessions, GPU compilation)
        self._sync()

    def teardown(self, *params: Any) -> None:
        self._fn = self.result = None

    def time_call(self, *params: Any) -> None:
        self._fn()
        self._sync()


class RoiAlignForward(_Suite):
    op, direction = "align", "forward"


class RoiAlignBackward(_Suite):
    op, direction = "align", "backward"
    params = (IMPLEMENTATIONS, ("W1",))


class RoiPoolForward(_Suite):
    op, direction = "pool", "forward"
    params = (IMPLEMENTATIONS, ("W4",))


class RoiPoolBackward(_Suite):
    op, direction = "pool", "backward"
    params = (IMPLEMENTATIONS, ("W4",))


class RoiWarpForward(_Suite):
    op, direction = "warp", "forward"
    params = (IMPLEMENTATIONS, ("W1",))


class RoiWarpBackward(_Suite):
    op, direction = "warp", "backward"
    params = (IMPLEMENTATIONS, ("W1",))
