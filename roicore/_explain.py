"""``python -m roicore explain``: draw an operator's bins and sampling points.

The seed's 8x8 feature map (:data:`roicore._demo.SEED_MAP`) with its values,
the RoI, the bins of the chosen operator and, for RoI Align / RoI Warp, the
bilinear sampling points with their interpolated values; the PH x PW result
(computed by roicore itself) is drawn beside it in the bins' colours.

The geometry (:func:`geometry`) is plain NumPy and mirrors the kernels'
formulas; the tests check that it reproduces roicore's output.  Drawing
needs matplotlib (``pip install matplotlib`` or ``pip install 'roicore[plot]'``)
and uses its Agg canvas directly, so no GUI backend and no global pyplot
state are touched.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._demo import SEED_MAP, SEED_ROI

#: Largest output side the figure draws legibly.
MAX_SIDE = 8


# --------------------------------------------------------------------------- geometry
@dataclass
class Sample:
    """One bilinear sampling point: feature-map coordinates, value (0 when out of range)."""

    x: float
    y: float
    value: float
    valid: bool
    winner: bool = False


@dataclass
class Bin:
    """One output bin: a rectangle in feature-map coordinates (pixel centres
    are at integer coordinates; pixel (x, y) covers [x-0.5, x+0.5] x [y-0.5, y+0.5])."""

    i: int
    j: int
    x0: float
    y0: float
    x1: float
    y1: float
    value: float
    samples: list[Sample] = field(default_factory=list)
    winner: tuple[int, int] | None = None  # RoI Pool: (x, y) of the max pixel


@dataclass
class Geometry:
    op: str
    title: str
    notes: list[str]
    roi: tuple[float, float, float, float]  # the box the op uses, feature-map coordinates
    roi_label: str
    bins: list[Bin]
    ph: int
    pw: int
    given_roi: tuple[float, float, float, float] | None = None  # before rounding (warp)

    @property
    def output(self) -> np.ndarray:
        out = np.zeros((self.ph, self.pw))
        for b in self.bins:
            out[b.i, b.j] = b.value
        return out


def _c_round(v: float) -> int:
    """C round(): half away from zero."""
    a = abs(v)
    f = math.floor(a)
    r = f + 1 if a - f >= 0.5 else f
    return int(-r if v < 0 else r)


#: The kernels' compute dtype for the float32 seed map: every coordinate below is
#: computed in it, in the kernels' operation order, so that samples on a range
#: boundary (e.g. y == -1) fall on the same side as in roicore.
T = np.float32


def _scaled(v: float, s: float) -> Any:
    """``v * s`` as the kernels compute it (matters for rounding at .5)."""
    return T(v) * T(s)


def _bilinear(fmap: np.ndarray, y: Any, x: Any, check_range: bool = True) -> Any:
    """The kernels' bilinear interpolation (in T); None when out of range."""
    H, W = fmap.shape
    if check_range and (y < T(-1) or y > T(H) or x < T(-1) or x > T(W)):
        return None
    if y <= 0:
        y = T(0)
    if x <= 0:
        x = T(0)
    yl, xl = int(y), int(x)
    if yl >= H - 1:
        yl = yh = H - 1
        y = T(yl)
    else:
        yh = yl + 1
    if xl >= W - 1:
        xl = xh = W - 1
        x = T(xl)
    else:
        xh = xl + 1
    ly, lx = y - T(yl), x - T(xl)
    hy, hx = T(1) - ly, T(1) - lx
    return (hy * hx * fmap[yl, xl] + hy * lx * fmap[yl, xh]
            + ly * hx * fmap[yh, xl] + ly * lx * fmap[yh, xh])


def _pool_geometry(fmap, roi, ph, pw, scale, bins):
    H, W = fmap.shape
    x1, y1, x2, y2 = roi
    xs, ys, xe, ye = (_c_round(_scaled(v, scale)) for v in (x1, y1, x2, y2))
    if bins == "fast_rcnn":
        rw, rh = max(xe - xs + 1, 1), max(ye - ys + 1, 1)
        bh, bw = T(rh) / T(ph), T(rw) / T(pw)  # the kernel's operation order
        hr = [(int(np.floor(T(i) * bh)) + ys, int(np.ceil(T(i + 1) * bh)) + ys)
              for i in range(ph)]
        wr = [(int(np.floor(T(j) * bw)) + xs, int(np.ceil(T(j + 1) * bw)) + xs)
              for j in range(pw)]
        box = (xs - 0.5, ys - 0.5, xe + 0.5, ye + 0.5)
        label = f"RoI, end inclusive: columns {xs}..{xe}, rows {ys}..{ye}"
        if xs < 0 or ys < 0 or xe >= W or ye >= H:
            label += " (clipped to the map)"
        notes = ["bins='fast_rcnn' (torchvision/Caffe): the end pixel is included; bin edges",
                 "floor(i*size/PH) / ceil((i+1)*size/PH), so neighbouring bins may overlap.",
                 "Each output is the max of its bin (circled)."]
    else:
        sh, sw = max(ye - ys, 1), max(xe - xs, 1)

        def sec(lo, size, n, k):
            a = k * size // n
            return lo + a, lo + max((k + 1) * size // n, a + 1)

        hr = [sec(ys, sh, ph, i) for i in range(ph)]
        wr = [sec(xs, sw, pw, j) for j in range(pw)]
        box = (xs - 0.5, ys - 0.5, xe - 0.5, ye - 0.5)
        label = f"RoI, end exclusive: columns {xs}..{xe - 1}, rows {ys}..{ye - 1}"
        if xs < 0 or ys < 0 or xe > W or ye > H:
            label += " (clipped to the map)"
        notes = ["bins='equal' (the RoI-pooling explainer): a non-overlapping partition with",
                 "edges floor(i*size/PH); the end pixel is excluded.",
                 "Each output is the max of its bin (circled)."]
    out = []
    for i, (hs, he) in enumerate(hr):
        for j, (ws, we) in enumerate(wr):
            hs_, he_ = min(max(hs, 0), H), min(max(he, 0), H)
            ws_, we_ = min(max(ws, 0), W), min(max(we, 0), W)
            b = Bin(i, j, ws_ - 0.5, hs_ - 0.5, we_ - 0.5, he_ - 0.5, 0.0)
            if he_ > hs_ and we_ > ws_:
                block = fmap[hs_:he_, ws_:we_]
                r, c = np.unravel_index(int(np.argmax(block)), block.shape)
                b.value = float(block[r, c])
                b.winner = (ws_ + int(c), hs_ + int(r))
            out.append(b)
    title = f"RoI Pool, bins='{bins}': max over whole pixels"
    return Geometry("pool", title, notes, box, label, out, ph, pw)


def _sampled_geometry(fmap, box, ph, pw, sr, mode, clamp_size):
    """RoI Align's bins and samples on a box (T values) in feature-map coordinates."""
    xs, ys, xe, ye = box
    rw, rh = xe - xs, ye - ys
    if clamp_size:
        rw, rh = max(rw, T(1)), max(rh, T(1))
    bh, bw = rh / T(ph), rw / T(pw)
    gh = sr if sr > 0 else int(np.ceil(rh / T(ph)))
    gw = sr if sr > 0 else int(np.ceil(rw / T(pw)))
    count = T(max(gh * gw, 1))
    out = []
    for i in range(ph):
        for j in range(pw):
            b = Bin(i, j, float(xs + T(j) * bw), float(ys + T(i) * bh),
                    float(xs + T(j + 1) * bw), float(ys + T(i + 1) * bh), 0.0)
            acc = T(0)
            for iy in range(gh):
                y = ys + T(i) * bh + T(iy + 0.5) * bh / T(gh)
                for ix in range(gw):
                    x = xs + T(j) * bw + T(ix + 0.5) * bw / T(gw)
                    v = _bilinear(fmap, y, x)
                    if v is not None:
                        acc = acc + v
                    b.samples.append(Sample(float(x), float(y), 0.0 if v is None else float(v),
                                            v is not None))
            if mode == "avg":
                b.value = float(acc / count)
            elif b.samples:
                best = max(range(len(b.samples)), key=lambda k: (b.samples[k].value, -k))
                b.samples[best].winner = True
                b.value = b.samples[best].value
            out.append(b)
    return out, gh, gw


def geometry(op: str, *, roi: tuple[float, float, float, float] | None = None,
             output_size: int = 2, spatial_scale: float = 1.0, bins: str = "equal",
             sampling_ratio: int = 2, aligned: bool = False, mode: str = "avg",
             compat: str | None = None, fmap: np.ndarray | None = None) -> Geometry:
    """Bins, samples and values of one op on a 2-D map (default: the seed's).

    ``roi`` is ``(x1, y1, x2, y2)`` in image coordinates (default: the seed's
    RoI); ``output_size`` is one int (square output) or ``(PH, PW)``.
    """
    fm = np.asarray(SEED_MAP if fmap is None else fmap, dtype=T)
    roi = tuple(float(v) for v in (SEED_ROI[0, 1:] if roi is None else roi))
    ph, pw = (output_size, output_size) if np.isscalar(output_size) else output_size
    s = float(spatial_scale)
    if op == "pool":
        return _pool_geometry(fm, roi, ph, pw, s, bins)
    if op == "align":
        off = T(0.5) if aligned else T(0)
        box = tuple(_scaled(v, s) - off for v in roi)
        bs, gh, gw = _sampled_geometry(fm, box, ph, pw, sampling_ratio, mode,
                                       clamp_size=not aligned)
        how = "mean" if mode == "avg" else "max"
        notes = [f"{gh}x{gw} bilinear samples per bin (sampling_ratio={sampling_ratio}); each "
                 f"output is the {how} of its bin's samples.",
                 "A sample interpolates the 4 nearest pixel centres (pixel centres sit at "
                 "integer coordinates)."]
        notes.append("aligned=True: the box is shifted by -0.5 px, so it covers whole pixels."
                     if aligned else
                     "aligned=False: the box is not shifted (half a pixel off the pixel grid).")
        title = f"RoI Align, aligned={aligned}, mode='{mode}': no rounding, bilinear samples"
        box = tuple(float(v) for v in box)
        label = f"RoI ({roi[0]:g}, {roi[1]:g})-({roi[2]:g}, {roi[3]:g})"
        if box != roi:
            label += f" -> box ({box[0]:.4g}, {box[1]:.4g})-({box[2]:.4g}, {box[3]:.4g})"
        return Geometry("align", title, notes, box, label, bs, ph, pw)
    if op != "warp":
        raise ValueError(f"--op must be pool, align or warp; got {op!r}")
    q = tuple(T(_c_round(_scaled(v, s))) for v in roi)
    given = tuple(float(_scaled(v, s)) for v in roi)
    label = f"RoI ({roi[0]:g}, {roi[1]:g})-({roi[2]:g}, {roi[3]:g})"
    if given != tuple(float(v) for v in q):
        label += " (dotted)"
    label += f" -> rounded ({q[0]:g}, {q[1]:g})-({q[2]:g}, {q[3]:g})"
    if compat == "mnc":
        bw, bh = max(q[2] - q[0], T(0)) / T(pw), max(q[3] - q[1], T(0)) / T(ph)
        H, W = fm.shape
        bs = []
        for i in range(ph):
            for j in range(pw):
                y, x = q[1] + T(i) * bh, q[0] + T(j) * bw
                b = Bin(i, j, float(x), float(y), float(q[0] + T(j + 1) * bw),
                        float(q[1] + T(i + 1) * bh), 0.0)
                ok = not (y < T(-0.5) or y > T(H) - T(0.5) or x < T(-0.5) or x > T(W) - T(0.5))
                v = float(_bilinear(fm, y, x, check_range=False)) if ok else 0.0
                b.samples.append(Sample(float(x), float(y), v, ok))
                b.value = v
                bs.append(b)
        notes = ["compat='mnc' (MNC's Caffe ROIWarping): the box is rounded to whole pixels,",
                 "then each bin takes ONE bilinear sample at its top-left corner."]
        title = "RoI Warp, compat='mnc': rounded box, one sample per bin"
    else:
        bs, gh, gw = _sampled_geometry(fm, q, ph, pw, sampling_ratio, mode, clamp_size=True)
        how = "mean" if mode == "avg" else "max"
        notes = ["The box is rounded to whole pixels like RoI Pool (C round, half away from 0),",
                 f"then sampled like RoI Align (aligned=False): {gh}x{gw} bilinear samples per "
                 f"bin, output = {how}."]
        title = f"RoI Warp, mode='{mode}': rounded box, bilinear samples"
    q = tuple(float(v) for v in q)
    return Geometry("warp", title, notes, q, label, bs, ph, pw,
                    given_roi=given if given != q else None)


def roicore_output(op: str, *, roi=None, output_size=2, spatial_scale=1.0, bins="equal",
                   sampling_ratio=2, aligned=False, mode="avg", compat=None) -> np.ndarray:
    """The same op computed by roicore on the seed map (float32, as the demo), shape (PH, PW)."""
    from . import _api

    x = SEED_MAP[None, None]
    r = SEED_ROI if roi is None else np.array([[0.0, *roi]], np.float32)
    if op == "pool":
        y = _api.roi_pool(x, r, output_size, spatial_scale, bins=bins)
    elif op == "align":
        y = _api.roi_align(x, r, output_size, spatial_scale, sampling_ratio, aligned, mode=mode)
    else:
        y = _api.roi_warp(x, r, output_size, spatial_scale, sampling_ratio, mode=mode,
                          compat=compat)
    return np.asarray(y)[0, 0]


# --------------------------------------------------------------------------- drawing
def _matplotlib() -> Any:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "explain needs matplotlib: pip install matplotlib (or pip install 'roicore[plot]')"
        ) from None
    return Figure, FigureCanvasAgg


def draw(geo: Geometry, out_values: np.ndarray, path: str, dpi: int = 100) -> None:
    """Render ``geo`` (and roicore's ``out_values``) to a PNG at ``path``."""
    Figure, FigureCanvasAgg = _matplotlib()
    from matplotlib import patches

    fm = SEED_MAP
    H, W = fm.shape
    fig = Figure(figsize=(11, 7.2), dpi=dpi)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(1, 2, width_ratios=[2.3, 1], left=0.06, right=0.97, top=0.88,
                          bottom=0.15, wspace=0.08)
    ax = fig.add_subplot(gs[0])
    axo = fig.add_subplot(gs[1])
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
              "#17becf", "#bcbd22", "#7f7f7f"]

    # feature map with its values
    ax.imshow(fm, cmap="Greys", vmin=-0.8, vmax=3.0, extent=(-0.5, W - 0.5, H - 0.5, -0.5),
              interpolation="nearest")
    sampled = any(b.samples for b in geo.bins)
    for y in range(H):
        for x in range(W):
            if sampled:  # keep the pixel centre free for the sampling points
                ax.text(x - 0.45, y - 0.45, f"{fm[y, x]:.2f}", ha="left", va="top",
                        fontsize=7.5, color="#444444")
                ax.plot(x, y, marker="+", color="#888888", markersize=5, mew=0.8)
            else:
                ax.text(x, y, f"{fm[y, x]:.2f}", ha="center", va="center", fontsize=10,
                        color="#222222")
    ax.set_xticks(range(W))
    ax.set_yticks(range(H))
    ax.set_xticks(np.arange(-0.5, W), minor=True)
    ax.set_yticks(np.arange(-0.5, H), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.2)
    ax.tick_params(which="minor", length=0)
    ax.xaxis.tick_top()
    ax.set_xlabel("x (columns)")
    ax.xaxis.set_label_position("top")
    ax.set_ylabel("y (rows)")
    bx = [v for b in geo.bins for v in (b.x0, b.x1)] + [geo.roi[0], geo.roi[2]]
    by = [v for b in geo.bins for v in (b.y0, b.y1)] + [geo.roi[1], geo.roi[3]]
    ax.set_xlim(min(-0.5, *bx) - 0.3, max(W - 0.5, *bx) + 0.3)
    ax.set_ylim(max(H - 0.5, *by) + 0.9, min(-0.5, *by) - 0.3)

    for n, b in enumerate(geo.bins):
        c = colors[n % len(colors)]
        d = 0.06 if geo.op == "pool" else 0.0  # pool: show overlapping bins apart
        ax.add_patch(patches.Rectangle((b.x0 + d, b.y0 + d), b.x1 - b.x0 - 2 * d,
                                       b.y1 - b.y0 - 2 * d, facecolor=c, alpha=0.16,
                                       edgecolor="none"))
        ax.add_patch(patches.Rectangle((b.x0 + d, b.y0 + d), b.x1 - b.x0 - 2 * d,
                                       b.y1 - b.y0 - 2 * d, fill=False, edgecolor=c,
                                       linewidth=1.8, linestyle="--" if geo.op != "pool" else "-"))
        if b.winner is not None:
            ax.add_patch(patches.Circle(b.winner, 0.36, fill=False, edgecolor=c, linewidth=2.4))
        for s in b.samples:
            if not s.valid:
                ax.plot(s.x, s.y, marker="x", color=c, markersize=8, mew=2)
                continue
            ax.plot(s.x, s.y, marker="o", color=c, markersize=9 if s.winner else 6,
                    markeredgecolor="black" if s.winner else "white", mew=1.5 if s.winner else 0.8)
            ax.annotate(f"{s.value:.2f}", (s.x, s.y), xytext=(5, -1), textcoords="offset points",
                        ha="left", va="center", fontsize=7.5, color=c, fontweight="bold",
                        bbox=dict(boxstyle="round,pad=0.12", facecolor="white", alpha=0.85,
                                  edgecolor="none"))

    if geo.given_roi is not None:
        gx0, gy0, gx1, gy1 = geo.given_roi
        ax.add_patch(patches.Rectangle((gx0, gy0), gx1 - gx0, gy1 - gy0, fill=False,
                                       edgecolor="#666666", linewidth=1.5, linestyle=":"))
    x0, y0, x1, y1 = geo.roi
    ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="black",
                                   linewidth=2.6))
    ax.text(min(x0, x1, -0.5), max(y1, y0) + 0.2, geo.roi_label, ha="left", va="top",
            fontsize=9.5, fontweight="bold")

    # the output, in the bins' colours
    out = np.asarray(out_values, dtype=np.float64)
    axo.set_xlim(-0.5, geo.pw - 0.5)
    axo.set_ylim(geo.ph - 0.5, -0.5)
    axo.set_aspect("equal")
    for n, b in enumerate(geo.bins):
        c = colors[n % len(colors)]
        axo.add_patch(patches.Rectangle((b.j - 0.5, b.i - 0.5), 1, 1, facecolor=c, alpha=0.18,
                                        edgecolor=c, linewidth=2))
        axo.text(b.j, b.i, f"{out[b.i, b.j]:.2f}", ha="center", va="center",
                 fontsize=max(8, 22 - 2 * max(geo.ph, geo.pw)), fontweight="bold", color=c)
    axo.set_xticks(range(geo.pw))
    axo.set_yticks(range(geo.ph))
    axo.xaxis.tick_top()
    axo.set_title(f"output {geo.ph}x{geo.pw} (roicore)", fontsize=11, pad=22)

    fig.suptitle(geo.title, fontsize=14, fontweight="bold", y=0.975)
    fig.text(0.06, 0.1, "\n".join(geo.notes), ha="left", va="top", fontsize=10.5)
    fig.savefig(path, dpi=dpi)


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--op", required=True, choices=["pool", "align", "warp"],
                        help="operator to draw")
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


_APPLIES = {"bins": ("pool",), "sampling_ratio": ("align", "warp"), "aligned": ("align",),
            "mode": ("align", "warp"), "compat": ("warp",)}


def _options(args: argparse.Namespace) -> dict:
    for name, ops in _APPLIES.items():
        if getattr(args, name) is not None and args.op not in ops:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} applies to --op {' or '.join(ops)}, not --op {args.op}")
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
    if sr <= 0 and args.op in ("align", "warp") and args.compat is None:
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
    geo = geometry(args.op, **opts)
    out = roicore_output(args.op, **opts)
    if not np.array_equal(geo.output.astype(out.dtype), out):  # the figure must tell the truth
        raise RuntimeError(f"explain's geometry disagrees with roicore: {geo.output} vs {out}")
    path = args.out or f"explain_{args.op}.png"
    draw(geo, out, path, dpi=args.dpi)
    print(f"wrote {path}")
    return 0
