"""``python -m roicore bench --device cuda``: roicore's GPU backend against
torchvision.ops on CUDA tensors (see :mod:`roicore._cli.bench`, whose table,
cases and timing loop it shares).  Imported only for ``--device cuda``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
from collections.abc import Callable
from typing import Any

import numpy as np

from . import workloads as _workloads
from .bench import (
    Candidate,
    Case,
    _have,
    _print_context,
    _time_and_report,
    _to_layout,
    torchvision_version,
)


def _cuda_device() -> tuple[Any, str]:
    """(cupy, a description of device 0); RuntimeError "no CUDA device" without one."""
    if not _have("cupy"):
        raise RuntimeError("no CUDA device (CuPy is not installed)")
    try:
        import cupy

        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CuPy present but no driver / device
        raise RuntimeError(f"no CUDA device ({type(exc).__name__}: {exc})") from None
    if n < 1:
        raise RuntimeError("no CUDA device (CuPy sees 0 devices)")
    dev = cupy.cuda.Device()
    desc = f"CUDA device {dev.id}"
    try:
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        desc += f" {name} (sm_{props['major']}{props['minor']}, " \
                f"{props['totalGlobalMem'] / 2**30:.0f} GiB)"
    except Exception:  # not every CuPy build (or stand-in) has the properties
        pass
    try:
        v = int(cupy.cuda.runtime.runtimeGetVersion())
        desc += f", CUDA runtime {v // 1000}.{v % 1000 // 10}"
    except Exception:
        pass
    return cupy, desc


def _cuda_peers() -> tuple[dict[str, str], list[str]]:
    found: dict[str, str] = {}
    notes = ["onnxruntime: CPU only (not run with --device cuda)"]
    if not _have("torchvision"):
        notes.append("torchvision: not installed (skipped)")
        return found, notes
    try:
        import torch
        import torchvision.ops  # noqa: F401

        if torch.cuda.is_available():
            found["torchvision"] = (f"{torchvision_version()} (torch {torch.__version__}, "
                                    f"CUDA {torch.version.cuda})")
        else:
            notes.append(f"torchvision: torch {torch.__version__} sees no CUDA device (skipped)")
    except Exception as exc:
        notes.append(f"torchvision: import failed ({exc})")
    return found, notes


def _cuda_cases(cupy: Any, w: _workloads.Workload, directions: list[str], dtype: np.dtype,
                layout_arg: str, peers: dict[str, str]) -> list[Case]:
    import roicore

    layouts = ["NCHW", "NHWC"] if layout_arg == "both" else [layout_arg]
    layout = layouts[0]
    x_nchw = w.input(dtype)
    rois_np = w.rois(dtype)
    rois = cupy.asarray(rois_np)
    xs = {lay: cupy.asarray(_to_layout(x_nchw, lay)) for lay in layouts}

    def sync() -> None:
        cupy.cuda.Device().synchronize()

    def host(lay: str) -> Callable[[Any], np.ndarray]:
        def conv(a: Any) -> np.ndarray:
            a = cupy.asnumpy(a)
            if lay != layout:  # NHWC row next to NCHW roicore: compare in NCHW
                a = np.ascontiguousarray(a.transpose(0, 3, 1, 2))
            return a
        return conv

    def checked(f: Callable[[], Any], on: bool) -> Callable[[], Any]:
        if on:
            return f

        def call() -> Any:
            with roicore.gpu_checks(False):
                return f()
        return call

    cases: list[Case] = []
    for d in directions:
        g_nchw = w.grad_output(dtype) if d == "bwd" else None
        gs = {lay: cupy.asarray(_to_layout(g_nchw, lay)) for lay in layouts} \
            if g_nchw is not None else {}
        cands: list[Candidate] = []
        for lay in layouts:
            x = xs[lay]
            tag = "" if lay == layout else f" {lay}"
            if d == "fwd":
                def f(x: Any = x, lay: str = lay) -> Any:
                    return w.forward(x, rois, layout=lay)
                for on in (True, False):
                    cands.append(Candidate(
                        f"roicore{tag}{'' if on else ' (checks off)'}", checked(f, on),
                        host(lay), sync=sync))
            else:
                for det in (False, True):
                    def b(x: Any = x, g: Any = gs[lay], lay: str = lay,
                          det: bool = det) -> Any:
                        return w.backward(g, x, rois, layout=lay, deterministic=det)
                    for on in (True, False):
                        name = f"roicore{tag}{' deterministic' if det else ''}"
                        cands.append(Candidate(
                            name + ("" if on else " (checks off)"), checked(b, on),
                            host(lay), sync=sync))
        if "torchvision" in peers:
            cands.append(_torchvision_cuda_candidate(w, d, x_nchw, rois_np, g_nchw, layout))
        floor_shape = w.output_shape(layout) if d == "fwd" else w.input_shape(layout)

        def floor(shape: tuple[int, ...] = floor_shape) -> None:
            a = cupy.empty(shape, dtype)
            a.fill(0)

        cands.append(Candidate("fresh output (floor)", floor, sync=sync))
        cases.append(Case(w, d, 0, cands))
    return cases


def _torchvision_cuda_candidate(w: _workloads.Workload, d: str, x: np.ndarray,
                                rois: np.ndarray, g: np.ndarray | None,
                                layout: str) -> Candidate:
    import torch
    import torchvision.ops as tvo

    dev = torch.device("cuda", torch.cuda.current_device())
    xt = torch.from_numpy(x).to(dev)
    rt = torch.from_numpy(rois).to(dev)

    def fwd(inp: Any) -> Any:
        if w.op == "align":
            return tvo.roi_align(inp, rt, w.output_size, w.spatial_scale, w.sampling_ratio,
                                 w.aligned)
        return tvo.roi_pool(inp, rt, w.output_size, w.spatial_scale)

    def host(t: Any) -> np.ndarray:
        return _to_layout(t.detach().cpu().numpy(), layout)

    name = f"torchvision {'roi_align' if w.op == 'align' else 'roi_pool'}"
    if d == "fwd":
        def call() -> Any:
            with torch.no_grad():
                return fwd(xt)

        return Candidate(name, call, host, sync=torch.cuda.synchronize)
    xg = xt.clone().requires_grad_(True)
    y = fwd(xg)
    gt = torch.from_numpy(g).to(dev)

    def bcall() -> Any:
        xg.grad = None
        y.backward(gt, retain_graph=True)
        return xg.grad

    return Candidate(name + " (autograd backward)", bcall, host, sync=torch.cuda.synchronize)


def run_cuda(args: argparse.Namespace, repeat: int, dtype: np.dtype,
              workloads: list[_workloads.Workload], directions: list[str]) -> int:
    import roicore

    cupy, desc = _cuda_device()
    peers, notes = _cuda_peers()

    print(f"roicore {roicore.__version__} bench: {desc}, CuPy {cupy.__version__}, "
          f"{platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    lay = "NCHW and NHWC" if args.layout == "both" else args.layout
    print(f"dtype {dtype.name}, roicore layout {lay} (peers NCHW), device cuda (T: -), "
          f"{repeat} repeats round-robin after 1 warm-up, device synchronised around each call"
          f"{', QUICK (reduced workloads)' if args.quick else ''}")
    _print_context(peers, notes, workloads,
                   "checks off = inside roicore.gpu_checks(False) (no RoI check, no host sync)")
    cases: list[Case] = []
    for w in workloads:
        cases.extend(_cuda_cases(cupy, w, directions, dtype, args.layout, peers))
    return _time_and_report(cases, repeat, args)
