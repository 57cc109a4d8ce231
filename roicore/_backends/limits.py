"""Sampling-cost limits of the sampled ops and the error that names them.

What a sampled op (RoI Align / RoI Warp) costs is its bilinear samples, so
that is what is bounded, on both backends, with the limits of
``roi_common.h`` (``RC_BIN_SAMPLE_LIMIT``, ``RC_SIDE_SAMPLE_LIMIT``,
``RC_ROI_SAMPLE_LIMIT``, ``RC_CALL_SAMPLE_LIMIT``; ``tests/test_kernel_hardening.py``
checks they agree):

* samples per bin (``gh * gw``): at most 2**24;
* samples along one side of a RoI (``PH * gh``, ``PW * gw``; the CPU kernels
  keep per-thread tables of that length): at most 2**21;
* samples per RoI (``PH * PW * gh * gw``; one RoI is the smallest piece of
  work the CPU kernels run between two checks for Ctrl-C): at most 2**28;
* samples of the whole call (sum over RoIs of ``PH * PW * gh * gw``, times
  ``C``): at most 2**40 (hours of work on any machine).

``gh``/``gw`` are ``sampling_ratio`` when it is positive, else the adaptive
``ceil(roi_side / output_side)``.  The numbers come from the kernels'
own arithmetic (``roicore._cpu.sampled_cost_of``; for the GPU backend's RoI
check, ``roicore._cpu.sampled_cost_for`` from :mod:`roicore._backends.gpu_checks`).  The
limits themselves are defined once, in ``roi_common.h``, and read from the
extension.  No import of CuPy here.
"""

from __future__ import annotations

from typing import Any

from .._cpu import (  # defined in roi_common.h
    BIN_SAMPLE_LIMIT,
    CALL_SAMPLE_LIMIT,
    ROI_SAMPLE_LIMIT,
    SIDE_SAMPLE_LIMIT,
)


def check_sampling_cost(plan: Any, max_bin: float, bin_roi: int, max_side: float,
                        side_roi: int, max_roi: float, roi_roi: int, total: float) -> None:
    """Raise a ValueError naming the argument and the fix when a call is above
    a limit; ``max_bin``/``bin_roi``: the largest samples per bin and its RoI,
    ``max_side``/``side_roi`` and ``max_roi``/``roi_roi`` the same along a RoI
    side and per RoI, ``total`` the samples of the call times C."""
    sr = int(plan.sampling_ratio)
    if max_bin > BIN_SAMPLE_LIMIT:
        if sr > 0:
            raise ValueError(
                f"`sampling_ratio`={sr} gives {float(sr) * sr:.3g} samples per bin "
                f"(sampling_ratio**2), above the limit of {BIN_SAMPLE_LIMIT} (2**24): pass a "
                f"smaller `sampling_ratio` (at most 4096), or 0 for the adaptive grid"
            )
        raise ValueError(
            f"RoI {bin_roi} needs {max_bin:.3g} samples per bin with the adaptive grid "
            f"(`sampling_ratio` <= 0: ceil(box side / output side) per side), above the limit "
            f"of {BIN_SAMPLE_LIMIT} (2**24): the box is enormous compared with `output_size`; "
            f"check `rois` / `spatial_scale`, or pass a positive `sampling_ratio`"
        )
    if max_side > SIDE_SAMPLE_LIMIT:
        what = (f"`sampling_ratio`={sr}" if sr > 0
                else "the adaptive grid (`sampling_ratio` <= 0)")
        raise ValueError(
            f"RoI {side_roi} needs {max_side:.3g} samples along one side (output_size x "
            f"samples per bin side) with {what}, above the limit of {SIDE_SAMPLE_LIMIT} "
            f"(2**21): pass a smaller `sampling_ratio` or `output_size`, or check `rois` / "
            f"`spatial_scale`"
        )
    if max_roi > ROI_SAMPLE_LIMIT:
        what = (f"`sampling_ratio`={sr}" if sr > 0
                else "the adaptive grid (`sampling_ratio` <= 0)")
        raise ValueError(
            f"RoI {roi_roi} needs {max_roi:.3g} samples (output bins x samples per bin) with "
            f"{what}, above the limit of {ROI_SAMPLE_LIMIT} (2**28) per RoI: pass a smaller "
            f"`sampling_ratio` or `output_size`, or check `rois` / `spatial_scale`"
        )
    if total > CALL_SAMPLE_LIMIT:
        raise ValueError(
            f"this call needs {total:.3g} bilinear samples (over all RoIs: bins x samples per "
            f"bin x channels), above the limit of {CALL_SAMPLE_LIMIT} (2**40, hours of work): "
            f"pass a smaller `sampling_ratio` or fewer `rois` per call"
        )
