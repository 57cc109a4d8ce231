"""asv suites: every operator x direction x backend x dtype x layout x workload x
thread count, timed (``time_*``) and peak memory (``peakmem_*``).

Workloads are the standard ones of :mod:`roicore._workloads` (fixed seeds):
RoI Align on W1-W3, RoI Pool on W4 (W1's arrays), RoI Warp on W1 and W3's
geometry.  ``threads``: ``"1"`` or ``"all"`` (roicore's default, i.e.
OMP_NUM_THREADS or the CPU count).  GPU suites move the arrays to CuPy,
synchronise after each call and are skipped (NotImplementedError in setup)
when CuPy or a CUDA device is missing; the thread count is a CPU setting, so
GPU runs only use ``threads="all"``.
"""

from __future__ import annotations

import roicore
from roicore import _workloads

BACKENDS = ("cpu", "gpu")
DTYPES = ("float32", "float64")
LAYOUTS = ("NCHW", "NHWC")
THREADS = ("1", "all")
PARAM_NAMES = ("backend", "dtype", "layout", "workload", "threads")


def _cupy():
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


def _call(op: str, direction: str, w: _workloads.Workload, x, rois, g, kw):
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


class _Suite:
    op = "align"
    direction = "forward"
    params = (BACKENDS, DTYPES, LAYOUTS, ("W1", "W2", "W3"), THREADS)
    param_names = PARAM_NAMES
    # one call per sample, no warm-up loop: the workloads take milliseconds to
    # seconds, and `asv run --quick` must stay affordable on 2 cores
    number = 1
    repeat = (1, 7, 20.0)
    warmup_time = 0.0
    timeout = 600

    def setup(self, backend, dtype, layout, workload, threads):
        w = _workloads.get(workload)
        kw = {"layout": layout}
        if backend == "gpu":
            cp = _cupy()
            if threads != "all":
                raise NotImplementedError("num_threads is a CPU setting: GPU runs use 'all'")
            conv, self._sync = cp.asarray, cp.cuda.get_current_stream().synchronize
        else:
            conv, self._sync = (lambda a: a), (lambda: None)
            kw["num_threads"] = (roicore.default_num_threads() if threads == "all"
                                 else int(threads))
        x = conv(w.input(dtype, layout))
        rois = conv(w.rois(dtype))
        g = conv(w.grad_output(dtype, layout)) if self.direction == "backward" else None
        self._fn = _call(self.op, self.direction, w, x, rois, g, kw)
        self._fn()  # warm-up (first-touch, JIT compilation on the GPU)
        self._sync()

    def teardown(self, *params):
        self._fn = None

    def time_call(self, *params):
        self._fn()
        self._sync()

    def peakmem_call(self, *params):
        self._fn()
        self._sync()


class RoiAlignForward(_Suite):
    op, direction = "align", "forward"


class RoiAlignBackward(_Suite):
    op, direction = "align", "backward"


class RoiPoolForward(_Suite):
    op, direction = "pool", "forward"
    params = (BACKENDS, DTYPES, LAYOUTS, ("W4",), THREADS)


class RoiPoolBackward(_Suite):
    op, direction = "pool", "backward"
    params = (BACKENDS, DTYPES, LAYOUTS, ("W4",), THREADS)


class RoiWarpForward(_Suite):
    op, direction = "warp", "forward"
    params = (BACKENDS, DTYPES, LAYOUTS, ("W1", "W3"), THREADS)


class RoiWarpBackward(_Suite):
    op, direction = "warp", "backward"
    params = (BACKENDS, DTYPES, LAYOUTS, ("W1", "W3"), THREADS)


class Workloads:
    """Cost of generating the workload arrays (so setup time is visible)."""

    params = (("W1", "W2", "W3", "W4"),)
    param_names = ("workload",)
    number = 1
    repeat = (1, 3, 5.0)

    def time_generate(self, workload):
        w = _workloads.get(workload)
        w.input()
        w.rois()

