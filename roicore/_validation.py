"""Argument checking shared by every backend.

Every public function validates here, once, before any kernel runs, and
raises a ``TypeError`` or ``ValueError`` that names the argument and says
how to fix it.  The kernels also bounds-check the batch index, so a skipped
check can never read or write out of bounds.
"""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Largest output side: keeps every bin boundary product in 64 bits.
MAX_OUTPUT_SIDE = 1 << 20

_LAYOUTS = ("NCHW", "NHWC")
_MODES = ("avg", "max")
_BINS = ("fast_rcnn", "equal")
_COMPAT = (None, "mnc")


@dataclass(frozen=True)
class Shapes:
    """Normalised geometry of one call."""

    N: int
    C: int
    H: int
    W: int
    K: int
    PH: int
    PW: int
    layout: str

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        if self.layout == "NHWC":
            return (self.K, self.PH, self.PW, self.C)
        return (self.K, self.C, self.PH, self.PW)


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float16 is computed in float32; float32/float64 in themselves."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def check_input(x: Any, name: str = "input") -> None:
    """Check the feature map's rank and dtype (shape-only; no copy)."""
    ndim = getattr(x, "ndim", None)
    if ndim != 4:
        raise ValueError(
            f"`{name}` must be a 4-D array (N, C, H, W) or (N, H, W, C) with "
            f"layout='NHWC'; got shape {getattr(x, 'shape', None)}"
        )
    dt = np.dtype(x.dtype)
    if dt not in (np.float16, np.float32, np.float64):
        raise TypeError(
            f"`{name}` must have a floating dtype (float16, float32 or float64); got {dt}. "
            f"Convert it first, e.g. {name}.astype(np.float32)."
        )


def check_choice(value: Any, name: str, choices: tuple) -> None:
    if not any(value is c or (c is not None and value == c) for c in choices):
        raise ValueError(f"`{name}` must be one of {choices}; got {value!r}")


def check_layout(layout: Any) -> str:
    check_choice(layout, "layout", _LAYOUTS)
    return layout


def check_mode(mode: Any) -> str:
    check_choice(mode, "mode", _MODES)
    return mode


def check_bins(bins: Any) -> str:
    check_choice(bins, "bins", _BINS)
    return bins


def check_compat(compat: Any) -> str | None:
    check_choice(compat, "compat", _COMPAT)
    return compat


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer; got {value!r} ({type(value).__name__})")
    return operator.index(value)


def check_output_size(output_size: Any) -> tuple[int, int]:
    """int or (PH, PW), each in [1, 2**20]."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(
                f"`output_size` must be an int or a pair (PH, PW); got {output_size!r}"
            )
        ph, pw = (_as_int(v, "output_size") for v in output_size)
    else:
        ph = pw = _as_int(output_size, "output_size")
    for v in (ph, pw):
        if v < 1:
            raise ValueError(f"`output_size` must be >= 1; got {output_size!r}")
        if v > MAX_OUTPUT_SIDE:
            raise ValueError(f"`output_size` must be <= {MAX_OUTPUT_SIDE}; got {output_size!r}")
    return ph, pw


def check_spatial_scale(spatial_scale: Any) -> float:
    if isinstance(spatial_scale, (bool, np.bool_)) or not isinstance(spatial_scale, numbers.Real):
        raise TypeError(f"`spatial_scale` must be a real number; got {spatial_scale!r}")
    s = float(spatial_scale)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"`spatial_scale` must be finite and > 0; got {spatial_scale!r}")
    return s


def check_sampling_ratio(sampling_ratio: Any) -> int:
    """Any integer; <= 0 means the adaptive grid ceil(roi / output)."""
    sr = _as_int(sampling_ratio, "sampling_ratio")
    if sr > 1 << 16:
        raise ValueError(f"`sampling_ratio` must be <= 65536; got {sr}")
    return max(sr, 0)  # every value <= 0 means adaptive; keeps it in a C int


def check_aligned(aligned: Any) -> bool:
    if not isinstance(aligned, (bool, np.bool_)):
        raise TypeError(f"`aligned` must be a bool; got {aligned!r}")
    return bool(aligned)


def check_num_threads(num_threads: Any, default: int) -> int:
    if num_threads is None:
        return max(1, int(default))
    n = _as_int(num_threads, "num_threads")
    if n < 1:
        raise ValueError(f"`num_threads` must be None or an integer >= 1; got {num_threads!r}")
    return n


def shapes_of(input_shape: tuple, layout: str, K: int, ph: int, pw: int) -> Shapes:
    if layout == "NHWC":
        n, h, w, c = input_shape
    else:
        n, c, h, w = input_shape
    return Shapes(int(n), int(c), int(h), int(w), int(K), ph, pw, layout)


def rois_to_array(rois: Any, N: int, xp: Any = np) -> Any:
    """Normalise ``rois`` to a (K, 5) array of the caller's namespace.

    Accepts a (K, 5) array-like of rows ``[batch_index, x1, y1, x2, y2]`` or a
    list/tuple of N arrays of shape (K_i, 4), one per image.
    """
    if isinstance(rois, (list, tuple)) and len(rois) > 0 and all(
        hasattr(r, "ndim") for r in rois
    ):
        if len(rois) != N:
            raise ValueError(
                f"`rois` given as a list must have one (K_i, 4) array per image: "
                f"input has N={N} images but the list has {len(rois)} entries"
            )
        parts = []
        for i, r in enumerate(rois):
            if r.ndim != 2 or r.shape[1] != 4:
                raise ValueError(
                    f"`rois[{i}]` must have shape (K_i, 4) [x1, y1, x2, y2]; got {tuple(r.shape)}"
                )
            _check_real(r, f"rois[{i}]")
            r = xp.asarray(r, dtype=xp.float64)
            idx = xp.full((r.shape[0], 1), float(i), dtype=xp.float64)
            parts.append(xp.concatenate([idx, r], axis=1))
        return xp.concatenate(parts, axis=0)
    if isinstance(rois, (list, tuple)):
        rois = np.asarray(rois, dtype=np.float64)
        if rois.size == 0:
            rois = rois.reshape(0, 5)
    if getattr(rois, "ndim", None) != 2 or rois.shape[1] != 5:
        shape = getattr(rois, "shape", None)
        hint = (
            " A (K, 4) box array needs the batch index: pass a list with one (K_i, 4) "
            "array per image, or prepend a column of image indices."
            if getattr(rois, "ndim", None) == 2 and rois.shape[1] == 4
            else ""
        )
        raise ValueError(
            f"`rois` must have shape (K, 5) with rows [batch_index, x1, y1, x2, y2]; "
            f"got {shape}.{hint}"
        )
    _check_real(rois, "rois")
    return rois


def _check_real(a: Any, name: str) -> None:
    kind = np.dtype(a.dtype).kind
    if kind not in "iuf":
        raise TypeError(f"`{name}` must hold real numbers (int or float); got dtype {a.dtype}")


def check_rois_values(rois64: np.ndarray, N: int) -> None:
    """Finite coordinates; integral batch indices in [0, N).  ``rois64`` is a
    float64 NumPy array (host copy for GPU input)."""
    if rois64.shape[0] == 0:
        return
    if not np.isfinite(rois64).all():
        i, j = np.argwhere(~np.isfinite(rois64))[0]
        raise ValueError(f"`rois` must be finite: row {i} column {j} is {float(rois64[i, j])}")
    b = rois64[:, 0]
    nonint = b != np.floor(b)
    if nonint.any():
        i = int(np.argmax(nonint))
        raise ValueError(f"`rois[:, 0]` (batch index) must be integral; row {i} has {float(b[i])}")
    out = (b < 0) | (b >= N)
    if out.any():
        i = int(np.argmax(out))
        raise ValueError(
            f"`rois[:, 0]` (batch index) must be in [0, N) = [0, {N}); row {i} has {int(b[i])}"
        )
