"""Host side of the GPU backend's RoI check, and its switch (no CuPy import here).

For CuPy input, roicore copies ``rois`` to the host once per call to check
that batch indices are integers in ``[0, N)``, that coordinates are finite
and that the sampling cost is within roicore's limits (samples per bin,
per RoI side and per call, :mod:`roicore._backends.limits`).  That copy synchronises
the current stream.  Skip it with::

    with roicore.gpu_checks(False):
        y = roicore.roi_align(x_gpu, rois_gpu, 7)

or for the whole process with the environment variable
``ROICORE_GPU_SKIP_ROI_CHECK=1``.  Skipping is memory-safe: the kernels
bounds-check the batch index themselves and give 0 (no gradient) for a RoI
with an invalid batch index or above the per-bin / per-side sampling limit
(the per-call limit is not enforced then).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

#: Environment variable that turns the check off by default.
ENV_SKIP = "ROICORE_GPU_SKIP_ROI_CHECK"

_enabled: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "roicore_gpu_checks", default=None
)


def checks_enabled() -> bool:
    """True unless turned off by :func:`gpu_checks` or ``ROICORE_GPU_SKIP_ROI_CHECK``."""
    value = _enabled.get()
    if value is None:
        return os.environ.get(ENV_SKIP, "").strip().lower() not in ("1", "true", "yes", "on")
    return value


@contextlib.contextmanager
def gpu_checks(enabled: bool = True) -> Iterator[None]:
    """Turn the GPU backend's host-side RoI check on or off inside a ``with`` block.

    Parameters
    ----------
    enabled : bool, optional
        ``False`` skips the device-to-host copy of ``rois`` (a stream
        synchronisation) that validates batch indices, coordinates and
        sampling grids.  Invalid RoIs then give 0 and no gradient instead of
        an error; nothing is read or written out of bounds.

    Notes
    -----
    The setting is a :mod:`contextvars` variable: it applies to the current
    thread (or asyncio task) and overrides ``ROICORE_GPU_SKIP_ROI_CHECK``.
    It has no effect on NumPy input, which is always checked (no sync is
    involved there).

    Examples
    --------
    ``with roicore.gpu_checks(False): y = roicore.roi_pool(x_gpu, rois_gpu, 7)``
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"`enabled` must be a bool; got {enabled!r}")
    token = _enabled.set(enabled)
    try:
        yield
    finally:
        _enabled.reset(token)


# --------------------------------------------------------------------------- sampling grid
#: roi_common.h RC_GRID_CAP / RC_COORD_LIMIT and kinds.
GRID_CAP = 2147483648.0
COORD_LIMIT = 1099511627776.0
_ALIGN, _WARP, _MNC = 0, 1, 2


def c_round(v: np.ndarray) -> np.ndarray:
    """roi_common.h rc_round, elementwise in v's dtype: C round() (half away
    from zero, exact: ``a - floor(a)`` is exact) clamped to +-2**40."""
    a = np.abs(v)
    f = np.floor(a)
    with np.errstate(invalid="ignore"):
        r = f + (a - f >= 0.5).astype(v.dtype)
    r = np.copysign(r, v)
    lim = v.dtype.type(COORD_LIMIT)
    r = np.where(r > lim, lim, r)
    return np.where(r < -lim, -lim, r)


def adaptive_grid(kind: int, aligned: bool, c1: np.ndarray, c2: np.ndarray, scale: Any,
                  P: int) -> np.ndarray:
    """Samples per bin side of one axis with ``sampling_ratio <= 0``: the
    arithmetic of roi_common.h rc_sample_axis, operation by operation in the
    coordinates' dtype (float32 or float64, IEEE-rounded like the kernels'
    --fmad=false / -ffp-contract=off code), as int64 capped at GRID_CAP."""
    T = c1.dtype.type
    sc = T(scale)
    if kind == _MNC:
        return np.ones(c1.shape, np.int64)
    with np.errstate(all="ignore"):
        if kind == _WARP:
            s, e = c_round(c1 * sc), c_round(c2 * sc)
        else:
            off = T(0.5) if aligned else T(0.0)
            s, e = c1 * sc - off, c2 * sc - off
        ln = e - s
        if not aligned or kind == _WARP:
            ln = np.where(ln > T(1), ln, T(1))  # rc_max(len, 1): NaN -> 1
        g = np.ceil(ln / T(P))
        g = np.where(g > T(0), g, T(0))  # !(g > 0) -> 0, NaN included
        g = np.where(g > T(GRID_CAP), T(GRID_CAP), g)
    return g.astype(np.int64)


def sampling_cost(plan: Any, rois_T: np.ndarray) -> tuple:
    """The CPU kernels' ``sampled_cost`` replayed in NumPy: (largest samples
    per bin, its RoI, largest samples along a RoI side, its RoI, largest
    samples per RoI, its RoI, samples of the call times C).  ``rois_T``:
    (K, 5) host RoIs already cast to the compute dtype."""
    s = plan.shapes
    K = rois_T.shape[0]
    if plan.op != "sampled" or K == 0:
        return 0.0, -1, 0.0, -1, 0.0, -1, 0.0
    if plan.kind == _MNC:
        gh = gw = np.ones(K, np.int64)
    elif plan.sampling_ratio > 0:
        gh = gw = np.full(K, int(plan.sampling_ratio), np.int64)
    else:
        gh = adaptive_grid(plan.kind, plan.aligned, rois_T[:, 2], rois_T[:, 4],
                           plan.spatial_scale, s.PH)
        gw = adaptive_grid(plan.kind, plan.aligned, rois_T[:, 1], rois_T[:, 3],
                           plan.spatial_scale, s.PW)
    empty = (gh == 0) | (gw == 0)  # roi_common.h rc_grid_pair
    gh = np.where(empty, 0, gh)
    gw = np.where(empty, 0, gw)
    binc = gh.astype(np.float64) * gw.astype(np.float64)
    side = np.maximum(s.PH * gh, s.PW * gw).astype(np.float64)
    roi = binc * float(s.PH * s.PW)
    kb, ks, kr = int(np.argmax(binc)), int(np.argmax(side)), int(np.argmax(roi))
    total = float(binc.sum()) * float(s.PH * s.PW) * float(s.C)
    return (float(binc[kb]), kb if binc[kb] > 0 else -1, float(side[ks]),
            ks if side[ks] > 0 else -1, float(roi[kr]), kr if roi[kr] > 0 else -1, total)


def grid_too_large(plan: Any, rois_T: np.ndarray) -> bool:
    """True when the call is above a sampling limit of :mod:`roicore._backends.limits`
    (the CPU backend refuses exactly these calls)."""
    from . import limits as _limits

    mb, _, ms, _, mr, _, tot = sampling_cost(plan, rois_T)
    return (mb > _limits.BIN_SAMPLE_LIMIT or ms > _limits.SIDE_SAMPLE_LIMIT
            or mr > _limits.ROI_SAMPLE_LIMIT or tot > _limits.CALL_SAMPLE_LIMIT)
