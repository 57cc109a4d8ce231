"""Fuzz harness for roicore's public API (issue 9).

Hypothesis mutates valid calls of every public function -- the six NumPy
functions (``roi_pool``, ``roi_align``, ``roi_warp`` and their backwards, with
NumPy arrays or torch tensors through DLPack) and ``roicore.torch``'s
``roi_pool`` / ``roi_align`` / ``roi_warp`` (forward, and backward through
autograd) -- over odd dtypes, shapes, strides, values (NaN, inf, huge
coordinates, negative box sizes, out-of-range batch indices), options of
the wrong type or value, absurd ``sampling_ratio`` / ``num_threads`` and
``out=`` variants (aliasing included).

Each call runs in a worker subprocess, so a segfault or an abort inside the
OpenMP runtime is recorded instead of killing the harness, and a call that
takes longer than ``--timeout`` seconds is recorded as a hang (the worker is
killed and restarted).  Every call is classified as:

``clean_error``
    a ``TypeError``, ``ValueError`` or ``MemoryError`` whose message names an
    argument in backticks (`` `rois` ``, `` `num_threads` ``...).
``correct``
    returned, and equal to ``tests/support/reference.py`` (forward: bit-identical;
    backward: within rounding), or an empty / zero result where the spec says so.
``ok_unchecked``
    returned with the right shape and dtype, but too expensive (or not
    defined) for the slow reference.
``unnamed_error``, ``wrong``, ``unclean_error``, ``crash``, ``hang``
    defects: an allowed exception type whose message names no argument, a
    result different from the reference, another exception type
    (``OverflowError``, ``RuntimeError``, ``IndexError``...), the worker died
    (signal or exit code), or the call timed out.

Run ``python tests/support/roicore_fuzz.py --calls 10000`` for a campaign (prints
the counts by class and the first example of each defect class);
``tests/test_fuzz.py`` runs a bounded version in CI (``ROICORE_FUZZ_CALLS``
overrides its size).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import select
import subprocess
import sys
import time
import traceback
from collections import Counter
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))  # tests/support: reference.py
ROOT = os.path.dirname(os.path.dirname(HERE))

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


def run_spec(spec: dict) -> tuple[str, str]:
    """Build and run one call in this process; return (class, detail)."""
    import numpy as np
    import reference as ref

    import roicore

    torch = None
    fn = spec["fn"]
    use_torch = fn.startswith("torch.") or spec["lib"] == "torch"
    if use_torch:
        import torch

        import roicore.torch as rtorch
    rng = np.random.default_rng(spec["seed"])
    x = _make_input(spec, rng)
    rois, rois_ref = _make_rois(spec, rng, x.dtype if x.dtype.kind == "f" else np.float32)
    layout = _weird_option(spec["layout"])
    lay = layout if layout in ("NCHW", "NHWC") else "NCHW"
    x_call = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if lay == "NHWC" else x
    op = fn.split(".")[-1].replace("_backward", "")
    backward = fn.endswith("_backward")
    kind = op[4:]  # pool / align / warp
    nt = 10**6 if spec["K"] >= 10_000 and spec["seed"] % 2 else spec["num_threads"]
    kw: dict[str, Any] = {"layout": layout, "num_threads": nt}
    args: list[Any] = [spec["output_size"], _weird_option(spec["spatial_scale"])]
    if kind in ("align", "warp"):
        args.append(spec["sampling_ratio"])
        kw["mode"] = _weird_option(spec["mode"])
    if kind == "align":
        args.append(spec["aligned"])
    if kind == "pool":
        kw["bins"] = spec["bins"]
    if kind == "warp":
        kw["compat"] = spec["compat"]
    if isinstance(args[0], list):
        args[0] = tuple(args[0]) if len(args[0]) != 2 or spec["seed"] % 2 else list(args[0])

    mod = spec["input_mod"]
    shape_out = _out_shape(spec, lay, _num_rois(rois))
    g = None
    if backward or (fn.startswith("torch.") and spec["requires_grad"]):
        g = rng.standard_normal(shape_out) if min(shape_out, default=1) >= 0 else None
        if g is not None:
            gm = spec["grad"]
            gd = np.float64 if gm == "float64" else (x.dtype if x.dtype.kind == "f"
                                                    else np.float32)
            g = g.astype(gd)
            if gm == "nan" and g.size:
                g.flat[0] = np.nan
            elif gm == "wrong_shape" and backward:  # (torch autograd checks it itself)
                g = g[..., :0] if g.ndim else g
            elif gm == "int":
                g = g.astype(np.int32)
    g_ref = g

    out = None
    oo = spec["out"]
    if not backward and not fn.startswith("torch.") and oo != "none":
        odt = x.dtype
        if oo == "right" or oo == "neg_view":
            out = np.empty(shape_out, odt)
        elif oo == "wrong_shape":
            out = np.empty((*shape_out[:-1], shape_out[-1] + 1), odt)
        elif oo == "wrong_dtype":
            out = np.empty(shape_out, np.float64 if odt != np.float64 else np.float32)
        elif oo == "noncontig":
            out = np.empty((*shape_out[:-1], 2 * shape_out[-1]), odt)[..., ::2]
        elif oo == "readonly":
            out = np.empty(shape_out, odt)
            out.flags.writeable = False
        elif oo == "list":
            out = [0.0]
        elif oo == "alias_input" and mod == "none":
            n_out = int(np.prod(shape_out))
            buf = np.zeros(max(x_call.size, n_out) + 8, x_call.dtype)
            buf[: x_call.size] = x_call.ravel()
            x_call = buf[: x_call.size].reshape(x_call.shape)
            off = int(rng.integers(0, 8))
            out = buf[off: off + n_out].reshape(shape_out)
        elif oo == "alias_rois" and spec["rois_form"] == "array" and \
                getattr(rois, "dtype", None) == x.dtype:
            n_out = int(np.prod(shape_out))
            buf = np.zeros(max(rois.size, n_out) + 8, x.dtype)
            buf[: rois.size] = rois.ravel()
            rois = buf[: rois.size].reshape(rois.shape)
            out = buf[1: 1 + n_out].reshape(shape_out)
    if mod not in ("neg_view", "conj_imag", "requires_grad"):
        x_call = _np_view(x_call, mod)
    if spec["rois_mod"] in ("noncontig", "readonly") and hasattr(rois, "ndim"):
        rois = _np_view(rois, spec["rois_mod"])

    if use_torch:
        def T(a: Any, how: str = "none") -> Any:
            if not isinstance(a, np.ndarray):
                return a
            if a.dtype.kind == "u" and a.dtype != np.uint8:
                return a
            try:
                t = torch.from_numpy(np.ascontiguousarray(a) if a.flags.writeable
                                     else a.copy())
            except TypeError:
                return a
            return _torch_view(t, how, torch)

        x_call = T(x_call, mod)
        if mod == "requires_grad" and x_call.is_floating_point():
            x_call.requires_grad_(True)
        rmod = spec["rois_mod"]
        rois = [T(r, rmod) for r in rois] if isinstance(rois, list) and rois and \
            isinstance(rois[0], np.ndarray) else T(rois, rmod)
        if g is not None:
            g = T(g, spec["grad"])
        if isinstance(out, np.ndarray) and out.flags.c_contiguous:
            shared = out  # keep aliasing: torch view of the same memory
            out = torch.from_numpy(shared) if shared.flags.writeable else out
            if oo == "neg_view":
                out = torch._neg_view(out)

    # ---- the call
    try:
        if fn.startswith("torch."):
            f = getattr(rtorch, op)
            kw["deterministic"] = spec["deterministic"]
            if g is not None and isinstance(x_call, torch.Tensor) and \
                    x_call.is_floating_point():
                x_call = x_call.detach().requires_grad_(True)
                y = f(x_call, rois, *args, **kw)
                y.backward(g if isinstance(g, torch.Tensor) else torch.as_tensor(g))
                res = x_call.grad
                backward = True
            else:
                res = f(x_call, rois, *args, **kw)
        elif backward:
            kw["deterministic"] = spec["deterministic"]
            res = getattr(roicore, fn)(g, x_call, rois, *args, **kw)
        else:
            res = getattr(roicore, fn)(x_call, rois, *args, out=out, **kw)
    except (TypeError, ValueError, MemoryError) as exc:
        msg = str(exc)
        if _NAMED.search(msg):
            return "clean_error", f"{type(exc).__name__}: {msg[:200]}"
        return "unnamed_error", f"{type(exc).__name__}: {msg[:300]}"
    except Exception as exc:
        return "unclean_error", f"{type(exc).__name__}: {str(exc)[:300]}\n" + \
            "".join(traceback.format_exc(limit=4))[-1500:]

    # ---- the result
    if use_torch and isinstance(res, torch.Tensor):
        res = res.detach().resolve_conj().resolve_neg().numpy()
    res = np.asarray(res)
    want_shape = x_call.shape if backward else shape_out
    if tuple(res.shape) != tuple(want_shape):
        return "wrong", f"shape {res.shape} != {tuple(want_shape)}"
    if res.dtype != x.dtype:
        return "wrong", f"dtype {res.dtype} != {x.dtype}"
    if lay == "NHWC":
        res = res.transpose(0, 3, 1, 2)
    if res.size == 0:
        return "correct", "empty"
    if spec["H"] == 0 or spec["W"] == 0:
        return ("correct", "zeros") if not res.any() else ("wrong", "non-zero on empty map")
    if rois_ref is None or not isinstance(spec["output_size"], (int, list, tuple)):
        return "ok_unchecked", "no reference input"
    if isinstance(spec["sampling_ratio"], int) and not isinstance(spec["sampling_ratio"], bool):
        sr = spec["sampling_ratio"]
    else:
        sr = 2
    if kind != "align" and _max_coord(rois_ref) * abs(float(args[1])) > 2.0**40:
        # README: rounded coordinates are clamped to +-2**40; the oracle does not model it
        return "ok_unchecked", "coordinates beyond the +-2**40 clamp"
    cost = _ref_cost(spec, rois_ref, kind, sr, args)
    if cost > REF_BUDGET:
        return "ok_unchecked", f"reference cost {cost:.3g}"
    T_ = ref.compute_dtype(x.dtype)
    try:
        with np.errstate(all="ignore"):
            if backward:
                gn = np.asarray(g_ref)
                if lay == "NHWC":
                    gn = gn.transpose(0, 3, 1, 2)
                want = _reference(ref, kind, True, x, rois_ref, args, kw, gn)
            else:
                want = _reference(ref, kind, False, x, rois_ref, args, kw, None)
    except Exception as exc:
        return "ok_unchecked", f"reference: {type(exc).__name__}: {exc}"
    with np.errstate(all="ignore"):
        want_c = want.astype(x.dtype)
    if not backward:
        if np.array_equal(res, want_c, equal_nan=True):
            return "correct", "bit-identical"
        bad = np.argwhere(~((res == want_c) | (np.isnan(res) & np.isnan(want_c))))[:3]
        return "wrong", "forward differs at " + ", ".join(
            f"{tuple(i)}: {res[tuple(i)]!r} vs {want_c[tuple(i)]!r}" for i in bad)
    eps = float(np.finfo(x.dtype).eps)
    finite = want_c[np.isfinite(want_c)]
    mag = max(1.0, float(np.abs(finite.astype(np.float64)).max(initial=0.0)))
    ok = np.isclose(res.astype(np.float64), want_c.astype(np.float64), rtol=64 * eps,
                    atol=64 * eps * mag, equal_nan=True)
    if ok.all():
        return "correct", "within rounding"
    i = tuple(np.argwhere(~ok)[0])
    return "wrong", f"backward differs at {i}: {res[i]!r} vs {want_c[i]!r} ({T_.__name__})"


def _max_coord(rois_ref: Any) -> float:
    import numpy as np

    if isinstance(rois_ref, list):
        parts = [np.abs(np.asarray(r, np.float64)).ravel() for r in rois_ref]
        return float(max((p.max(initial=0.0) for p in parts), default=0.0))
    a = np.asarray(rois_ref, np.float64).reshape(-1, 5)[:, 1:]
    return float(np.abs(a).max(initial=0.0))


def _ref_cost(spec: dict, rois_ref: Any, kind: str, sr: int, args: list) -> float:
    import numpy as np

    ph, pw = _pair(spec["output_size"])
    K = _num_rois(rois_ref)
    bins = K * spec["C"] * max(ph, 1) * max(pw, 1)
    if kind == "pool":
        return bins * (spec["H"] + 1) * (spec["W"] + 1) / max(ph * pw, 1) + bins
    if sr > 0:
        return bins * sr * sr
    s = args[1] if isinstance(args[1], float) and math.isfinite(args[1]) else 1.0
    rows = np.concatenate([np.asarray(r, np.float64).reshape(-1, 4) for r in rois_ref]) \
        if isinstance(rois_ref, list) and rois_ref else np.asarray(rois_ref,
                                                                   np.float64).reshape(-1, 5)[:, 1:]
    if rows.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        side = np.nanmax(np.abs(rows[:, 2:] - rows[:, :2])) * abs(s) + 2
    if not np.isfinite(side):
        return math.inf
    return bins * (side / max(ph, 1) + 1) * (side / max(pw, 1) + 1)


def _reference(ref: Any, kind: str, backward: bool, x: Any, rois: Any, args: list,
               kw: dict, g: Any) -> Any:
    output_size, scale = args[0], args[1]
    if kind == "pool":
        if backward:
            return ref.roi_pool_backward(g, x, rois, output_size, scale, kw["bins"])
        return ref.roi_pool(x, rois, output_size, scale, kw["bins"])
    if kind == "align":
        sr, aligned = args[2], bool(args[3])
        if backward:
            return ref.roi_align_backward(g, x, rois, output_size, scale, sr, aligned,
                                          kw["mode"])
        return ref.roi_align(x, rois, output_size, scale, sr, aligned, kw["mode"])
    sr = args[2]
    if backward:
        return ref.roi_warp_backward(g, x, rois, output_size, scale, sr, kw["mode"],
                                     kw["compat"])
    return ref.roi_warp(x, rois, output_size, scale, sr, kw["mode"], kw["compat"])


# --------------------------------------------------------------------------- worker process
def worker_main() -> None:
    """Read one JSON spec per line on stdin, answer one JSON line on stdout."""
    sys.path[:0] = [ROOT, HERE]
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    for line in sys.stdin:
        spec = json.loads(line)
        try:
            cls, detail = run_spec(spec)
        except Exception as exc:
            cls, detail = "harness_error", f"{type(exc).__name__}: {exc}\n" + \
                traceback.format_exc()[-1500:]
        out.write(json.dumps({"cls": cls, "detail": detail}) + "\n")
        out.flush()


class Worker:
    """A restartable worker subprocess with a per-call timeout."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self._buf = b""

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([ROOT, HERE, env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        self._buf = b""

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def run(self, spec: dict) -> tuple[str, str]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write((json.dumps(spec) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            return "crash", "worker died before the call"
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                return "hang", f"no answer within {self.timeout} s"
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                rc = self.proc.wait()
                self.proc = None
                sig = f" (signal {-rc})" if rc < 0 else ""
                return "crash", f"worker exited with code {rc}{sig}"
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        ans = json.loads(line)
        return ans["cls"], ans["detail"]


# --------------------------------------------------------------------------- campaign
def campaign(calls: int, seed: int = 0, timeout: float = 10.0, fail_on: tuple = (),
             shrink: bool = False, progress: bool = False) -> tuple[Counter, dict]:
    """Run ``calls`` hypothesis-generated calls; return (counts by class,
    first (spec, detail) per class).  Raises AssertionError (after shrinking
    when ``shrink``) on the first call of a class in ``fail_on``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    counts: Counter = Counter()
    first: dict = {}
    reasons: Counter = Counter()
    worker = Worker(timeout)
    t0 = time.monotonic()
    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]

    @hseed(seed)
    @settings(max_examples=calls, database=None, deadline=None, phases=phases,
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(spec=specs())
    def one(spec: dict) -> None:
        cls, detail = worker.run(spec)
        counts[cls] += 1
        first.setdefault(cls, (spec, detail))
        reasons[(cls, re.sub(r"\d[\d.e+-]*", "#", detail.split("\n")[0])[:90])] += 1
        if progress and sum(counts.values()) % 500 == 0:
            print(f"  {sum(counts.values())} calls, {time.monotonic() - t0:.0f} s: "
                  f"{dict(counts)}", file=sys.stderr, flush=True)
        if cls in fail_on:
            raise AssertionError(f"{cls}: {detail}\nspec: {json.dumps(spec)}")

    try:
        one()
    finally:
        worker.close()
    counts["_reasons"] = reasons  # type: ignore[assignment]
    return counts, first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=10_000, help="number of calls (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds after which a call counts as a hang (default 10)")
    p.add_argument("--reasons", type=int, default=0, metavar="M",
                   help="also print the M most frequent outcomes (class: message)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker_main()
        return 0
    sys.path[:0] = [ROOT, HERE]
    t0 = time.monotonic()
    counts, first = campaign(a.calls, a.seed, a.timeout, progress=True)
    reasons = counts.pop("_reasons")
    total = sum(counts.values())
    print(f"roicore fuzz: {total} calls in {time.monotonic() - t0:.0f} s (seed {a.seed}, "
          f"timeout {a.timeout} s)")
    for cls in (*CLASSES, "harness_error"):
        if counts.get(cls):
            print(f"  {cls:14s} {counts[cls]}")
    for (cls, msg), n in reasons.most_common(a.reasons):
        print(f"  {n:6d}  {cls}: {msg}")
    bad = [c for c in (*DEFECTS, "harness_error") if counts.get(c)]
    for cls in bad:
        spec, detail = first[cls]
        print(f"\nfirst {cls}: {detail}\n  spec: {json.dumps(spec)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
