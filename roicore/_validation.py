"""Argument checking shared by every backend.

Every public function validates here, once, before any kernel runs, and
raises a ``TypeError`` or ``ValueError`` that names the argument and says
how to fix it.  The kernels also bounds-check the batch index, so a skipped
check can never read or write out of bounds.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import os
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


def check_choice(value: Any, name: str, choices: tuple) -> Any:
    """``value`` as one of the string ``choices`` (``None`` only where listed).

    Only a ``str`` (``np.str_`` included) can match: an array such as
    ``np.array(["NCHW"])`` or a number is a ``TypeError`` naming ``name``
    (``array == "NCHW"`` would otherwise compare element-wise and pass).
    """
    if value is None and None in choices:
        return None
    if not isinstance(value, str):
        raise TypeError(
            f"`{name}` must be a str, one of {choices}; got {value!r} ({type(value).__name__})"
        )
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; got {value!r}")
    return str(value)


def check_layout(layout: Any) -> str:
    return check_choice(layout, "layout", _LAYOUTS)


def check_mode(mode: Any) -> str:
    return check_choice(mode, "mode", _MODES)


def check_bins(bins: Any) -> str:
    return check_choice(bins, "bins", _BINS)


def check_compat(compat: Any) -> str | None:
    return check_choice(compat, "compat", _COMPAT)


def check_compat_sampling(compat: str | None, sampling_ratio: int) -> None:
    """``compat="mnc"`` takes one sample per bin: ``sampling_ratio`` <= 1."""
    if compat == "mnc" and sampling_ratio > 1:
        raise ValueError(
            f"compat='mnc' takes one sample per bin (the bin's top-left corner); "
            f"`sampling_ratio` must be <= 1, got {sampling_ratio}"
        )


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


def check_bool(value: Any, name: str) -> bool:
    """A ``bool`` or ``np.bool_`` (not 0/1, not a string): ``TypeError`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool; got {value!r} ({type(value).__name__})")
    return bool(value)


def check_aligned(aligned: Any) -> bool:
    return check_bool(aligned, "aligned")


#: Largest ``num_threads`` accepted at all (the kernels take a C ``int``).
MAX_NUM_THREADS = (1 << 31) - 1
#: The team-size ceiling is never below this, so explicit counts up to 64 are
#: honoured on any machine (e.g. to test oversubscription on a small box).
THREADS_CEILING_FLOOR = 64


@functools.lru_cache(maxsize=1)
def cpu_count() -> int:
    """``os.cpu_count()``, read once: it reads ``/sys`` on every call (a few
    microseconds, twice per kernel call before it was cached)."""
    return os.cpu_count() or 1


def threads_ceiling(default: int = 1) -> int:
    """Largest OpenMP team roicore starts: ``max(os.cpu_count(), default, 64)``.

    ``default`` is OpenMP's default team size (``omp_get_max_threads()``, i.e.
    ``OMP_NUM_THREADS`` when set), so a machine configured for more threads
    than cores keeps its setting.  Results do not depend on the thread count
    (bit-identical), so clamping never changes a result; it only keeps an
    absurd request (``num_threads=10**6``) from making the OpenMP runtime
    abort the process ("Thread creation failed").
    """
    return max(cpu_count(), int(default), THREADS_CEILING_FLOOR)


def check_num_threads(num_threads: Any, default: int, work_items: int | None = None) -> int:
    """The OpenMP team size to use for ``num_threads``.

    Rule (documented in the README, "Bad input"):

    * ``None`` -> ``default`` (OpenMP's default team, at least 1);
    * not an integer (``bool``, ``float``, ``str``, array) -> ``TypeError``;
      NumPy integers are accepted;
    * ``< 1`` or ``>= 2**31`` -> ``ValueError`` naming ``num_threads``;
    * otherwise the team is ``min(num_threads, threads_ceiling(default))`` and,
      when the caller knows its number of parallel work items, at most
      ``work_items`` (never below 1): threads beyond either bound could only
      idle or fail to start.  Results are bit-identical for any team size.
    """
    if num_threads is None:
        n = max(1, int(default))
    else:
        n = _as_int(num_threads, "num_threads")
        if n < 1 or n > MAX_NUM_THREADS:
            raise ValueError(
                f"`num_threads` must be None or an integer >= 1 and < 2**31; got {num_threads!r}"
                f" (None uses OpenMP's default; larger counts are clamped to "
                f"max(os.cpu_count(), OMP_NUM_THREADS, {THREADS_CEILING_FLOOR}))"
            )
        n = min(n, threads_ceiling(default))
    if work_items is not None:
        n = min(n, max(1, int(work_items)))
    return n


def shapes_of(input_shape: tuple, layout: str, K: int, ph: int, pw: int) -> Shapes:
    if layout == "NHWC":
        n, h, w, c = input_shape
    else:
        n, c, h, w = input_shape
    return Shapes(int(n), int(c), int(h), int(w), int(K), ph, pw, layout)


def _is_array(a: Any) -> bool:
    return hasattr(a, "ndim") and hasattr(a, "shape") and hasattr(a, "dtype")


def rois_to_array(rois: Any, N: int, xp: Any = np) -> Any:
    """Normalise ``rois`` to a (K, 5) array of the caller's namespace.

    Accepts a (K, 5) array-like of rows ``[batch_index, x1, y1, x2, y2]`` or a
    list/tuple of exactly N arrays of shape (K_i, 4), one per image (a list
    holding any array is the per-image form; an empty list is the per-image
    form with 0 entries, so it needs N == 0).  The per-image form is
    assembled in float64, so its batch indices (the list positions) are exact.
    A (K, 5) array is returned as given (no cast): take its batch indices
    with :func:`batch_indices` *before* casting it to the computing dtype.
    """
    if isinstance(rois, (list, tuple)) and (
        len(rois) == 0 or any(_is_array(r) and not isinstance(r, np.generic) for r in rois)
    ):
        if len(rois) != N:
            raise ValueError(
                f"`rois` given as a list must have one (K_i, 4) array per image: "
                f"input has N={N} images but the list has {len(rois)} entries "
                f"(for an image without boxes pass an empty array of shape (0, 4); "
                f"for no boxes at all, a (0, 5) array)"
            )
        parts = []
        for i, r in enumerate(rois):
            if not _is_array(r):
                raise TypeError(
                    f"`rois[{i}]` must be an array of shape (K_i, 4) like the other entries; "
                    f"got {type(r).__name__}"
                )
            if r.ndim != 2 or r.shape[1] != 4:
                raise ValueError(
                    f"`rois[{i}]` must have shape (K_i, 4) [x1, y1, x2, y2]; got {tuple(r.shape)}"
                )
            _check_real(r, f"rois[{i}]")
            r = xp.asarray(r, dtype=xp.float64)
            idx = xp.full((r.shape[0], 1), float(i), dtype=xp.float64)
            parts.append(xp.concatenate([idx, r], axis=1))
        if not parts:
            return xp.zeros((0, 5), dtype=xp.float64)
        return xp.concatenate(parts, axis=0)
    if isinstance(rois, (list, tuple)):
        try:
            rois = np.asarray(rois, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"`rois` must be a (K, 5) array of [batch_index, x1, y1, x2, y2] rows or a list "
                f"of N (K_i, 4) arrays; got a {type(rois).__name__} that is neither ({exc})"
            ) from exc
        if rois.size == 0:
            rois = rois.reshape(0, 5)
    if not _is_array(rois):
        raise TypeError(
            f"`rois` must be a (K, 5) array of [batch_index, x1, y1, x2, y2] rows or a list "
            f"of N (K_i, 4) arrays; got {type(rois).__name__}"
        )
    if rois.ndim != 2 or rois.shape[1] != 5:
        shape = tuple(rois.shape)
        hint = (
            " A (K, 4) box array needs the batch index: pass a list with one (K_i, 4) "
            "array per image, or prepend a column of image indices."
            if rois.ndim == 2 and rois.shape[1] == 4
            else ""
        )
        raise ValueError(
            f"`rois` must have shape (K, 5) with rows [batch_index, x1, y1, x2, y2]; "
            f"got {shape}.{hint}"
        )
    _check_real(rois, "rois")
    return rois


def exact_index_limit(dtype: Any) -> int | None:
    """Batch indices below this value are exact in ``dtype`` (2**p for a float
    with a p-bit significand: 2**11 float16, 2**24 float32, 2**53 float64);
    None for integer dtypes (always exact)."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        return None
    return 1 << (np.finfo(dt).nmant + 1)


def check_batch_exact(rois: Any, N: int) -> None:
    """Refuse (K, 5) float rows whose batch index the dtype cannot represent.

    A float32 column cannot hold 16777217: the caller's 16777217 was already
    rounded to 16777216, a valid index of another image.  So when ``N``
    exceeds the dtype's exact-integer range (2**24 for float32, 2**11 for
    float16), an index at or above that range is ambiguous and refused with a
    ``ValueError`` that names ``rois`` and the fix (float64 or integer rois,
    or the per-image list form).  Indices below the range are exact, and with
    ``N`` within the range every valid index is, so the common case costs
    nothing (no read of the column, no device sync).
    """
    limit = exact_index_limit(rois.dtype)
    if limit is None or N <= limit or rois.shape[0] == 0:
        return
    col = rois[:, 0]
    host = np.asarray(col.get() if hasattr(col, "get") else col, dtype=np.float64)
    bad = np.abs(host) >= limit
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"`rois[:, 0]` (batch index) is {host[i]:.0f} in row {i}, at or above 2**"
            f"{limit.bit_length() - 1}, the largest integer {np.dtype(rois.dtype)} holds "
            f"exactly, while input has N={N} images: the index is ambiguous (e.g. 16777217 "
            f"is stored as 16777216 in float32). Pass rois as float64 or int64, or as a "
            f"list of N (K_i, 4) arrays."
        )


def batch_indices(rois: Any, xp: Any = np) -> Any:
    """Exact int64 batch indices of a validated (K, 5) ``rois`` array.

    The interface for the backends: call it on the array returned by
    :func:`rois_to_array` (the caller's dtype, after :func:`check_rois_values`
    and :func:`check_batch_exact`) **before** casting the boxes to the
    computing dtype, and hand the result to the kernels as the batch index
    (the boxes may then be cast to float32 freely).  Returns a C-contiguous
    int64 array of shape (K,) in the namespace ``xp`` (NumPy or CuPy).
    """
    return xp.ascontiguousarray(rois[:, 0]).astype(xp.int64)


def _check_real(a: Any, name: str) -> None:
    kind = np.dtype(a.dtype).kind
    if kind not in "iuf":
        raise TypeError(f"`{name}` must hold real numbers (int or float); got dtype {a.dtype}")


#: Up to this many RoIs, :func:`check_rois_values` first checks them in plain
#: Python (one ``tolist``): the NumPy checks are ~9 array operations, ~5 us,
#: a sizeable part of a small call.
_FEW_ROIS = 8


def _few_rois_valid(rois64: np.ndarray, N: int) -> bool:
    """Whether every value is finite and every batch index integral and in
    [0, N) (False: let the NumPy checks find and name the first bad value)."""
    for row in rois64.tolist():
        b = row[0]
        if not (0 <= b < N and b == math.floor(b)):  # NaN fails the comparisons
            return False
        for v in row:
            if not math.isfinite(v):
                return False
    return True


def check_rois_values(rois64: np.ndarray, N: int) -> None:
    """Finite coordinates; integral batch indices in [0, N).  ``rois64`` is a
    float64 NumPy array (host copy for GPU input)."""
    if rois64.shape[0] == 0:
        return
    if rois64.shape[0] <= _FEW_ROIS and _few_rois_valid(rois64, N):
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


# --------------------------------------------------------------------------- out= aliasing
def _byte_range(a: Any) -> tuple[int, int] | None:
    """[lo, hi) address range spanned by a NumPy or CuPy array (None if empty)."""
    if int(np.prod(a.shape)) == 0:
        return None
    if isinstance(a, np.ndarray):
        lo = hi = int(a.__array_interface__["data"][0])
    else:  # CuPy (or anything with .data.ptr)
        lo = hi = int(a.data.ptr)
    for n, st in zip(a.shape, a.strides, strict=True):
        if st > 0:
            hi += (n - 1) * st
        else:
            lo += (n - 1) * st
    return lo, hi + int(a.itemsize)


def may_share_memory(a: Any, b: Any) -> bool:
    """Conservative overlap test of two arrays of one backend.

    NumPy: :func:`numpy.may_share_memory` (bounds only, so it may say True
    for interleaved views that never touch the same element; that costs a
    copy, never a wrong result).  Other arrays (CuPy): the same test on the
    ``data.ptr`` address ranges.  ``None`` and non-arrays never overlap.
    """
    if a is None or b is None or not hasattr(a, "shape") or not hasattr(b, "shape"):
        return False
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.may_share_memory(a, b))
    if isinstance(a, np.ndarray) != isinstance(b, np.ndarray):
        return False  # host and device memory never alias
    ra, rb = _byte_range(a), _byte_range(b)
    if ra is None or rb is None:
        return False
    return ra[0] < rb[1] and rb[0] < ra[1]


def check_out(out: Any, shape: tuple, dtype: Any) -> None:
    """``out`` of the result's shape and dtype, C-contiguous and writeable."""
    if tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != np.dtype(dtype):
        raise ValueError(
            f"`out` must have shape {tuple(shape)} and dtype {np.dtype(dtype)}; "
            f"got {tuple(out.shape)} {out.dtype}"
        )
    flags = out.flags
    if not flags.c_contiguous or not getattr(flags, "writeable", True):
        raise ValueError("`out` must be C-contiguous and writeable")
