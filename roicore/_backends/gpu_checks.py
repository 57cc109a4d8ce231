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

from .. import _cpu

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
#: roi_common.h RC_COORD_LIMIT (read from the extension).
COORD_LIMIT = _cpu.COORD_LIMIT


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


def sampling_cost(plan: Any, rois_T: np.ndarray) -> tuple:
    """The CPU kernels' ``sampled_cost`` (the compiled roi_common.h geometry,
    not a re-implementation): (largest samples per bin, its RoI, largest
    samples along a RoI side, its RoI, largest samples per RoI, its RoI,
    samples of the call times C).  ``rois_T``: (K, 5) host RoIs already cast
    to the compute dtype."""
    s = plan.shapes
    K = rois_T.shape[0]
    if plan.op != "sampled" or K == 0:
        return 0.0, -1, 0.0, -1, 0.0, -1, 0.0
    return _cpu.sampled_cost_for(np.ascontiguousarray(rois_T), s.C, s.PH, s.PW, plan.kind,
                                 plan.aligned, plan.sampling_ratio, plan.spatial_scale)


def grid_too_large(plan: Any, rois_T: np.ndarray) -> bool:
    """True when the call is above a sampling limit of :mod:`roicore._backends.limits`
    (the CPU backend refuses exactly these calls)."""
    from . import limits as _limits

    mb, _, ms, _, mr, _, tot = sampling_cost(plan, rois_T)
    return (mb > _limits.BIN_SAMPLE_LIMIT or ms > _limits.SIDE_SAMPLE_LIMIT
            or mr > _limits.ROI_SAMPLE_LIMIT or tot > _limits.CALL_SAMPLE_LIMIT)
