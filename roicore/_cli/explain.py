"""``python -m roicore explain``: draw an operator's bins and sampling points.

The seed's 8x8 feature map (:data:`roicore._cli.demo.SEED_MAP`) with its values,
the RoI, the bins of the chosen operator and, for RoI Align / RoI Warp, the
bilinear sampling points with their interpolated values; the PH x PW result
(computed by roicore itself) is drawn beside it in the bins' colours.

The geometry (:mod:`.explain_geometry`, :func:`geometry`) is plain NumPy on the
compiled per-axis geometry and mirrors the kernels' formulas; the tests check that
it reproduces roicore's output.  Drawing (:mod:`.explain_drawing`) needs matplotlib
(``pip install matplotlib`` or ``pip install 'roicore[plot]'``) and uses its Agg
canvas directly, so no GUI backend and no global pyplot state are touched.  This
module is the command line: its arguments, their checks, and the run.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from .demo import SEED_MAP, SEED_ROI
from .explain_drawing import (
    COLORS,
    _matplotlib,
    bilinear_terms,
    draw,
    draw_compare,
    inset_sample,
    layout_problems,
)
from .explain_geometry import MAX_SIDE, Bin, Geometry, Sample, geometry, roicore_output

__all__ = ["COLORS", "MAX_SIDE", "SEED_MAP", "SEED_ROI", "Bin", "Geometry", "Sample",
           "add_arguments", "bilinear_terms", "draw", "draw_compare", "geometry",
           "inset_sample", "layout_problems", "roicore_output", "run"]


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--op", required=True, choices=["pool", "align", "warp", "compare"],
                        help="operator to draw; compare: the three side by side on the same "
                             "box and map")
    parser.add_argument("--out", metavar="FILE.png", default=None,
                        help="PNG to write (default: explain_<op>.png)")
    parser.add_argument("--output-size", type=int, nargs="+", metavar="N", default=[2],
                        help=f"output bins: N (square) or PH PW, each 1..{MAX_SIDE} (default 2)")
    parser.add_argument("--roi", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                        default=None, help="the box, in image coordinates (default: 0 3 7 8, the "
                        "worked example of 'roicore demo')")
    parser.add_argument("--spatial-scale", type=float, default=1.0, metavar="S",
                        help="factor from image to feature-map coordinates (default 1.0)")
    parser.add_argument("--bins", choices=["equal", "fast_rcnn"], default=None,
                        help="pool only: how the box is split into bins; equal: equal whole-pixel "
                             "sections (default), fast_rcnn: torchvision's roi_pool")
    parser.add_argument("--sampling-ratio", type=int, default=None, metavar="N",
                        help="align/warp only: sampling points per bin side; 0 or less: chosen "
                             "from the bin size (default 2)")
    parser.add_argument("--aligned", action="store_true", default=None,
                        help="align only: shift the box by half a pixel "
                             "(torchvision's aligned=True)")
    parser.add_argument("--mode", choices=["avg", "max"], default=None,
                        help="align/warp only: average (default) or maximum of a bin's samples")
    parser.add_argument("--compat", choices=["mnc"], default=None,
                        help="warp only: reproduce the original MNC layer (one sample at "
                             "each bin's top-left corner)")
    parser.add_argument("--dpi", type=int, default=100, metavar="DPI",
                        help="resolution in dots per inch, 20..600 (default 100)")


_APPLIES = {"bins": ("pool", "compare"), "sampling_ratio": ("align", "warp", "compare"),
            "aligned": ("align", "compare"), "mode": ("align", "warp", "compare"),
            "compat": ("warp",)}


def _options(args: argparse.Namespace) -> dict:
    for name, ops in _APPLIES.items():
        if getattr(args, name) is not None and args.op not in ops:
            flag = "--" + name.replace("_", "-")
            named = " or ".join(o for o in ops if o != "compare")  # compare: implied
            raise ValueError(f"{flag} applies to --op {named}, not --op {args.op}")
    size = args.output_size
    if len(size) not in (1, 2) or any(not 1 <= v <= MAX_SIDE for v in size):
        raise ValueError(f"--output-size takes 1 or 2 integers in 1..{MAX_SIDE}; got {size}")
    if not (math.isfinite(args.spatial_scale) and args.spatial_scale > 0):
        raise ValueError(f"--spatial-scale must be finite and > 0; got {args.spatial_scale}")
    if args.roi is not None and not all(math.isfinite(v) for v in args.roi):
        raise ValueError(f"--roi must be 4 finite numbers; got {args.roi}")
    if args.dpi < 20 or args.dpi > 600:
        raise ValueError(f"--dpi must be in 20..600; got {args.dpi}")
    sr = 2 if args.sampling_ratio is None else args.sampling_ratio
    if args.compat == "mnc":
        if args.sampling_ratio is not None and sr > 1:
            raise ValueError(f"--compat mnc takes one sample per bin: --sampling-ratio must "
                             f"be <= 1, got {sr}")
        sr = -1
    if sr > 16:
        raise ValueError(f"--sampling-ratio must be <= 16 to be drawn; got {sr}")
    if sr <= 0 and args.op in ("align", "warp", "compare") and args.compat is None:
        # adaptive grid: keep the drawing legible
        roi = args.roi or SEED_ROI[0, 1:]
        side = max(abs(roi[2] - roi[0]), abs(roi[3] - roi[1])) * args.spatial_scale
        if side / min(size) > 16:
            raise ValueError("the adaptive sampling grid would exceed 16 samples per bin side; "
                             "pass a positive --sampling-ratio")
    return dict(
        roi=None if args.roi is None else tuple(args.roi),
        output_size=size[0] if len(size) == 1 else (size[0], size[1]),
        spatial_scale=args.spatial_scale,
        bins=args.bins or "equal",
        sampling_ratio=sr,
        aligned=bool(args.aligned),
        mode=args.mode or "avg",
        compat=args.compat,
    )


def run(args: argparse.Namespace) -> int:
    opts = _options(args)
    _matplotlib()  # fail early, with the install hint, before computing anything
    ops = ("pool", "align", "warp") if args.op == "compare" else (args.op,)
    geos, outs = [], []
    for op in ops:
        geo = geometry(op, **opts)
        out = roicore_output(op, **opts)
        if not np.array_equal(geo.output.astype(out.dtype), out):  # the figure must tell the truth
            raise RuntimeError(f"explain's geometry of {op} disagrees with roicore: "
                               f"{geo.output} vs {out}")
        geos.append(geo)
        outs.append(out)
    path = args.out or f"explain_{args.op}.png"
    if args.op == "compare":
        draw_compare(geos, outs, path, dpi=args.dpi, roi=opts["roi"])
    else:
        draw(geos[0], outs[0], path, dpi=args.dpi)
    print(f"wrote {path}")
    return 0
