"""Call strategies of the fuzz harness (tests/support/roicore_fuzz.py).

The outcome classes, the public functions and argument names the harness
knows, the hypothesis strategy ``specs()`` that draws one call as a JSON-able
spec, and the helpers that build its arrays, boxes, views and expected shape.
"""

from __future__ import annotations

import re
from typing import Any

#: Classes that are defects (the pytest wrapper fails on them).
DEFECTS = ("unnamed_error", "wrong", "unclean_error", "crash", "hang")
CLASSES = ("correct", "ok_unchecked", "clean_error", *DEFECTS)

NUMPY_FUNCS = ("roi_pool", "roi_align", "roi_warp",
               "roi_pool_backward", "roi_align_backward", "roi_warp_backward")
TORCH_FUNCS = ("torch.roi_pool", "torch.roi_align", "torch.roi_warp")
ARG_NAMES = ("input", "rois", "boxes", "output_size", "spatial_scale", "sampling_ratio",
             "aligned", "mode", "layout", "num_threads", "out", "bins", "compat",
             "grad_output", "deterministic")
_NAMED = re.compile(r"`(" + "|".join(ARG_NAMES) + r")[`\[.:]")

#: Largest reference cost (bins x channels x samples) checked against the oracle.
REF_BUDGET = 40_000


# --------------------------------------------------------------------------- strategies
def specs() -> Any:
    """Hypothesis strategy of call specs (JSON-able dicts; arrays are built
    from ``seed`` in the worker)."""
    from hypothesis import strategies as st

    def weighted(common: list, rare: list, p_rare: float = 2) -> Any:
        """``rare`` values ``p_rare`` % of the time (bad options are rare so that
        most calls get past validation and reach the kernels)."""
        # Hypothesis favours 0 and the bounds of an integer range; scramble the draw
        # (Knuth's multiplicative hash) so "rare" really is p_rare % of the calls.
        return st.integers(0, 2**32 - 1).map(
            lambda v: ((v + 12345) * 2654435761) % 2**32 % 1000).flatmap(
            lambda i: st.sampled_from(rare if i < 10 * p_rare and rare else common))

    return st.fixed_dictionaries({
        "fn": st.sampled_from(NUMPY_FUNCS + TORCH_FUNCS),
        "lib": st.sampled_from(["numpy", "numpy", "torch"]),
        "seed": st.integers(0, 2**32 - 1),
        "N": weighted([1, 2, 3], [0], 3), "C": weighted([1, 2, 3, 4], [0], 3),
        "H": weighted(list(range(1, 10)), [0], 3), "W": weighted(list(range(1, 10)), [0], 3),
        # K = 100000 runs with num_threads=10**6 for odd seeds (what killed the process)
        "K": weighted([1, 2, 3, 4], [0, 100_000], 5),
        "dtype": weighted(["float32", "float64", "float16"],
                          ["int32", "complex64", "bool", "uint8"], 2),
        "values": weighted(["normal"], ["nan00", "inf00", "nan_random", "inf_random",
                                        "huge", "tiny", "neg_huge"], 20),
        "layout": weighted(["NCHW", "NHWC"], ["nchw", "array", "list", 0, None, "bytes"], 1),
        "input_mod": weighted(["none"], ["noncontig", "fortran", "negstride", "misaligned",
                                         "readonly", "neg_view", "conj_imag", "requires_grad",
                                         "rank3", "rank5"], 20),
        "rois_form": weighted(["array", "list"], ["emptylist", "wrong_len", "k4", "1d",
                                                  "nonarray_entry", "pylist", "scalar"], 4),
        "rois_dtype": weighted(["same", "float64", "float32"],
                               ["float16", "int64", "int32", "bool", "complex128",
                                "uint8"], 4),
        "rois_mod": weighted(["none"], ["neg_view", "noncontig", "readonly"], 8),
        "coords": weighted(["normal", "normal", "inside", "outside", "degenerate"],
                           ["huge", "enormous", "negative_size", "nan", "inf", "frac_batch",
                            "batch_oob", "batch_neg", "big_batch"], 15),
        "output_size": weighted([1, 2, 3, [2, 3], [3, 1], (1, 2)],
                                [0, -1, 2**21, "7", 2.0, [2], [1, 2, 3], True, 300,
                                 [2**20, 1]], 2),
        "spatial_scale": weighted([1.0, 0.5, 0.25, 1 / 16, 2.0],
                                  [0.0, -1.0, "nan", "inf", 1e30, 1e-30, "1", True], 2),
        "sampling_ratio": weighted([-1, 0, 1, 2, 3],
                                   [65536, 65537, 2**31, -2**40, True, 2.5, "2", 1000,
                                    10**5], 3),
        "aligned": weighted([False, True], [1, "no", None], 1),
        "mode": weighted(["avg", "max"], ["mean", None, ["avg"]], 1),
        "bins": weighted(["fast_rcnn", "equal"], ["fast", 1, None], 1),
        "compat": weighted([None, None, "mnc"], ["", "MNC", 0], 1),
        "num_threads": weighted([None, 1, 2, 4], [0, -1, 10**6, 2**31, 2**63, True, 2.0,
                                                  "2", 2**31 - 1], 4),
        "out": weighted(["none", "none", "right"],
                        ["wrong_shape", "wrong_dtype", "noncontig", "readonly",
                         "alias_input", "alias_rois", "list", "neg_view"], 20),
        "grad": weighted(["normal"], ["nan", "wrong_shape", "int", "float64", "neg_view",
                                      "noncontig"], 6),
        "deterministic": weighted([False, True], ["yes", 1, None], 1),
        "requires_grad": st.booleans(),
    })


# --------------------------------------------------------------------------- building a call
def _np_dtype(name: str) -> Any:
    import numpy as np

    return np.dtype(name)


def _make_input(spec: dict, rng: Any) -> Any:
    import numpy as np

    shape = (spec["N"], spec["C"], spec["H"], spec["W"])
    dt = _np_dtype(spec["dtype"])
    base = rng.standard_normal(shape) * 3
    v = spec["values"]
    if v == "huge":
        base = base * 1e300 if dt == np.float64 else base * 1e38
    elif v == "neg_huge":
        base = -np.abs(base) * (1e300 if dt == np.float64 else 1e38) - 1
    elif v == "tiny":
        base = base * 1e-310 if dt == np.float64 else base * 1e-40
    elif v in ("nan00", "inf00") and base.size:
        base[..., 0, 0] = np.nan if v == "nan00" else np.inf
    elif v in ("nan_random", "inf_random") and base.size:
        m = rng.random(shape) < 0.2
        base[m] = np.nan if v == "nan_random" else -np.inf
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        if dt.kind in "iub":
            return np.nan_to_num(base).clip(-100, 100).astype(dt)
        return base.astype(dt)


def _make_rois(spec: dict, rng: Any, in_dtype: Any) -> tuple[Any, Any]:
    """(rois for the call, rois for the reference or None)."""
    import numpy as np

    N, H, W, K = spec["N"], spec["H"], spec["W"], spec["K"]
    s = spec["spatial_scale"] if isinstance(spec["spatial_scale"], float) else 1.0
    s = s if 0 < s < 1e6 else 1.0
    iw, ih = max(W, 1) / s, max(H, 1) / s
    b = rng.integers(0, max(N, 1), K).astype(np.float64)
    x1 = rng.uniform(-0.2 * iw, iw, K)
    y1 = rng.uniform(-0.2 * ih, ih, K)
    x2 = x1 + rng.uniform(0, iw, K)
    y2 = y1 + rng.uniform(0, ih, K)
    c = spec["coords"]
    if c == "inside":
        x1, y1 = rng.uniform(0, iw / 2, K), rng.uniform(0, ih / 2, K)
        x2, y2 = x1 + rng.uniform(0, iw / 2, K), y1 + rng.uniform(0, ih / 2, K)
    elif c == "outside":
        x1, y1 = x1 - 3 * iw, y1 + 3 * ih
        x2, y2 = x1 + 1, y1 + 2
    elif c == "degenerate":
        x2, y2 = x1, y1 + rng.uniform(0, 0.5, K)
    elif c == "huge":
        x2, y2 = x1 + 1e5, y2 + 3e4
    elif c == "enormous":
        x1, x2 = -1e30 * np.ones(K), 1e30 * np.ones(K)
    elif c == "negative_size":
        x2, y2 = x1 - rng.uniform(0, 5, K), y1 - rng.uniform(0, 5, K)
    elif c == "nan" and K:
        y1[0] = np.nan
    elif c == "inf" and K:
        x2[-1] = np.inf
    elif c == "frac_batch" and K:
        b[0] += 0.5
    elif c == "batch_oob" and K:
        b[-1] = N
    elif c == "batch_neg" and K:
        b[0] = -1
    elif c == "big_batch" and K:
        b[0] = 2.0**40 + 1
    rows = np.stack([b, x1, y1, x2, y2], axis=1).reshape(K, 5)
    rd = spec["rois_dtype"]
    rdt = np.dtype(in_dtype) if rd == "same" else np.dtype(rd)
    if rdt.kind not in "f":  # int rois are coordinates too
        with np.errstate(invalid="ignore"):
            rows = np.nan_to_num(rows, posinf=2**31, neginf=-2**31).clip(-2**31, 2**31)
    with np.errstate(over="ignore", invalid="ignore"):
        arr = rows.astype(rdt)
    form = spec["rois_form"]
    if form == "array":
        return arr, arr
    if form == "list":
        lst = [np.ascontiguousarray(arr[arr[:, 0] == i, 1:]) if arr.dtype.kind != "c"
               else arr[:0, 1:] for i in range(N)]
        return lst, lst
    if form == "emptylist":
        return [], ([] if N == 0 else None)
    if form == "wrong_len":
        lst = [arr[:, 1:]] * (N + 1)
        return lst, None
    if form == "k4":
        return arr[:, 1:], None
    if form == "1d":
        return arr.ravel(), None
    if form == "nonarray_entry":
        return [arr[:, 1:], [[0, 0, 1, 1]]], None
    if form == "pylist":
        return arr.tolist(), arr.astype(np.float64) if arr.dtype.kind != "c" else None
    return 3.0, None  # "scalar"


def _weird_option(value: Any) -> Any:
    import numpy as np

    if value == "nan":
        return float("nan")
    if value == "inf":
        return float("inf")
    if value == "array":
        return np.array(["NCHW"])
    if value == "list":
        return ["NCHW"]
    if value == "bytes":
        return b"NCHW"
    return value


def _torch_view(t: Any, how: str, torch: Any) -> Any:
    """Equal values through a lazy or non-contiguous view."""
    if how == "neg_view" and t.is_floating_point():
        return torch._neg_view(-t)
    if how == "conj_imag" and t.dtype in (torch.float32, torch.float64):
        z = torch.complex(torch.zeros_like(t), -t)
        return z.conj().imag
    if how == "noncontig" and t.dim() >= 1:
        big = torch.repeat_interleave(t, 2, dim=-1)
        return big[..., ::2]
    return t


def _np_view(a: Any, how: str) -> Any:
    import numpy as np

    if how == "noncontig" and a.ndim >= 1:
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "negstride" and a.ndim >= 1:
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if how == "misaligned" and a.itemsize > 1:
        buf = np.empty(a.nbytes + 1, np.uint8)
        m = buf[1:].view(a.dtype).reshape(a.shape)
        m[...] = a
        return m
    if how == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if how == "rank3":
        if a.ndim == 4:
            return a[:, 0] if a.shape[1] else np.zeros((a.shape[0], *a.shape[2:]), a.dtype)
        return a
    if how == "rank5":
        return a[None]
    return a


def _pair(os_: Any) -> tuple[int, int]:
    """(PH, PW) of a valid output_size; (1, 1) stands in for an invalid one."""
    if isinstance(os_, (list, tuple)):
        ph, pw = (*os_, 1, 1)[:2]
    else:
        ph = pw = os_
    ok = all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**20
             for v in (ph, pw))
    return (ph, pw) if ok else (1, 1)


def _num_rois(rois: Any) -> int:
    """K of the call's rois (array, list of per-image arrays, or list of rows)."""
    if isinstance(rois, list):
        if rois and all(isinstance(r, list) and len(r) == 5 for r in rois):
            return len(rois)  # rows as Python lists
        return sum(int(r.shape[0]) for r in rois if getattr(r, "ndim", 0) >= 1)
    shape = getattr(rois, "shape", None)
    return int(shape[0]) if shape else 0


def _out_shape(spec: dict, layout: str, K: int) -> tuple:
    ph, pw = _pair(spec["output_size"])
    C = spec["C"]
    return (K, ph, pw, C) if layout == "NHWC" else (K, C, ph, pw)


