"""Worker side of the fuzz harness (tests/support/roicore_fuzz.py).

``run_spec`` builds one call from a spec, runs it and classifies the outcome
against ``tests/support/reference.py``; ``worker_main`` serves specs over a
JSON-lines pipe inside the worker subprocess; ``Worker`` is the parent's
handle on that subprocess (per-call timeout, restart after a crash or hang).
"""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import sys
import time
import traceback
from typing import Any

from fuzz_calls import (
    _NAMED,
    REF_BUDGET,
    _make_input,
    _make_rois,
    _np_view,
    _num_rois,
    _out_shape,
    _pair,
    _torch_view,
    _weird_option,
)

HERE = os.path.dirname(os.path.abspath(__file__))  # tests/support: reference.py
ROOT = os.path.dirname(os.path.dirname(HERE))
#: The script the worker subprocess runs (with ``--worker``).
ENTRY = os.path.join(HERE, "roicore_fuzz.py")


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
            [sys.executable, ENTRY, "--worker"], stdin=subprocess.PIPE,
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
