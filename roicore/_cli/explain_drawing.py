"""Drawing of ``python -m roicore explain``: the figures, with matplotlib's Agg canvas.

:func:`draw` (one operator) and :func:`draw_compare` (the three side by side)
render a :class:`~roicore._cli.explain_geometry.Geometry`; :func:`layout_problems`
checks a drawn figure for overlapping text.  matplotlib is imported lazily, with
an install hint (``pip install 'roicore[plot]'``) when it is missing; no GUI
backend and no global pyplot state are touched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .demo import SEED_MAP, SEED_ROI
from .explain_geometry import Geometry, Sample, T


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


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#17becf", "#bcbd22", "#7f7f7f"]


def bilinear_terms(y: float, x: float, fmap: np.ndarray | None = None
                   ) -> list[tuple[int, int, Any, Any]]:
    """The four ``(row, column, weight, pixel value)`` terms of one bilinear sample, as
    the kernels compute them (in T); their sum, in this order, is the sample's value."""
    fm = np.asarray(SEED_MAP if fmap is None else fmap, dtype=T)
    H, W = fm.shape
    y, x = max(T(y), T(0)), max(T(x), T(0))
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
    return [(yl, xl, hy * hx, fm[yl, xl]), (yl, xh, hy * lx, fm[yl, xh]),
            (yh, xl, ly * hx, fm[yh, xl]), (yh, xh, ly * lx, fm[yh, xh])]


def inset_sample(geo: Geometry) -> Sample | None:
    """The sample the inset magnifies: the first one whose four neighbours are four
    different pixels (not clamped at the border), else the first valid one."""
    H, W = SEED_MAP.shape
    valid = [s for b in geo.bins for s in b.samples if s.valid]
    for s in valid:
        if 0 <= s.y < H - 1 and 0 <= s.x < W - 1 and s.y % 1 and s.x % 1:
            return s
    return valid[0] if valid else None


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(fig: Any, ax: Any, items: list[tuple[float, float, str, str]],
                  obstacles: list[Any], fontsize: float) -> int:
    """Annotate each point with its label at the first free spot around it (right, left,
    above, below, diagonals), so that no label covers a pixel value, a point or another
    label; a label with no free spot is left out.  Returns how many were left out."""
    renderer = fig.canvas.get_renderer()
    spots = [(5, 0, "left", "center"), (-5, 0, "right", "center"),
             (0, 5, "center", "bottom"), (0, -5, "center", "top"),
             (5, 5, "left", "bottom"), (-5, 5, "right", "bottom"),
             (5, -5, "left", "top"), (-5, -5, "right", "top")]
    frame = fig.bbox
    dropped = 0
    for x, y, text, color in items:
        for dx, dy, ha, va in spots:
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha,
                            va=va, fontsize=fontsize, color=color, fontweight="bold",
                            bbox=dict(boxstyle="round,pad=0.1", facecolor="white", alpha=0.9,
                                      edgecolor="none"))
            bb = t.get_window_extent(renderer).expanded(1.12, 1.2)  # with some clearance
            inside = (bb.x0 >= frame.x0 and bb.y0 >= frame.y0 and bb.x1 <= frame.x1
                      and bb.y1 <= frame.y1)
            if inside and not any(_overlap(bb, o) for o in obstacles):
                obstacles.append(bb)
                break
            t.remove()
        else:
            dropped += 1
    return dropped


def _value_corners(geo: Geometry) -> dict[tuple[int, int], tuple[int, int]]:
    """For each pixel, the corner (-1/+1 in x, -1/+1 in y) of its cell where its value is
    printed: the first of top-left, top-right, bottom-left, bottom-right that no sampling
    point, bin edge or box edge crosses."""
    H, W = SEED_MAP.shape
    points = [(s.x, s.y) for b in geo.bins for s in b.samples]
    rects = [(b.x0, b.y0, b.x1, b.y1) for b in geo.bins] + [geo.roi]
    if geo.given_roi is not None:
        rects.append(geo.given_roi)
    hlines = [(y, min(x0, x1), max(x0, x1)) for x0, y0, x1, y1 in rects for y in (y0, y1)]
    vlines = [(x, min(y0, y1), max(y0, y1)) for x0, y0, x1, y1 in rects for x in (x0, x1)]
    out = {}
    for y in range(H):
        for x in range(W):
            best = None
            for cx, cy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
                xa, xb = sorted((x + 0.47 * cx, x + 0.08 * cx))
                ya, yb = sorted((y + 0.47 * cy, y + 0.25 * cy))
                m = 0.12  # a point's marker
                hits = sum(xa - m < px < xb + m and ya - m < py < yb + m for px, py in points)
                hits += sum(ya < ly < yb and lx0 < xb and lx1 > xa for ly, lx0, lx1 in hlines)
                hits += sum(xa < lx < xb and ly0 < yb and ly1 > ya for lx, ly0, ly1 in vlines)
                if best is None or hits < best[0]:
                    best = (hits, (cx, cy))
                if hits == 0:
                    break
            out[y, x] = best[1]
    return out


def _draw_map(fig: Any, ax: Any, geo: Geometry, *, values: str, sample_labels: bool,
              small: bool = False) -> int:
    """The map with its pixel values, the RoI, the bins and the samples; returns how many
    sample values were left out for lack of room."""
    from matplotlib import patches

    fm = SEED_MAP
    H, W = fm.shape
    ax.imshow(fm, cmap="Greys", vmin=-0.8, vmax=3.0, extent=(-0.5, W - 0.5, H - 0.5, -0.5),
              interpolation="nearest")
    value_texts = []
    corners = _value_corners(geo) if values == "corner" else {}
    for y in range(H):
        for x in range(W):
            if values == "corner":  # the pixel centre stays free for the sampling points
                cx, cy = corners[y, x]
                value_texts.append(ax.text(x + 0.46 * cx, y + 0.46 * cy, f"{fm[y, x]:.2f}",
                                           ha="left" if cx < 0 else "right",
                                           va="top" if cy < 0 else "bottom",
                                           fontsize=6.5 if small else 7.5, color="#444444"))
                ax.plot(x, y, marker="+", color="#888888", markersize=4, mew=0.8)
            elif values == "centre":
                value_texts.append(ax.text(x, y, f"{fm[y, x]:.2f}", ha="center", va="center",
                                           fontsize=8 if small else 10, color="#222222"))
            else:  # "none": pixel centres only
                ax.plot(x, y, marker="+", color="#888888", markersize=4, mew=0.8)
    ax.set_xticks(range(W))
    ax.set_yticks(range(H))
    ax.set_xticks(np.arange(-0.5, W), minor=True)
    ax.set_yticks(np.arange(-0.5, H), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.2)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(labelsize=8 if small else 10)
    ax.xaxis.tick_top()
    if not small:
        ax.set_xlabel("x (columns)")
        ax.xaxis.set_label_position("top")
        ax.set_ylabel("y (rows)")
    bx = [v for b in geo.bins for v in (b.x0, b.x1)] + [geo.roi[0], geo.roi[2]]
    by = [v for b in geo.bins for v in (b.y0, b.y1)] + [geo.roi[1], geo.roi[3]]
    ax.set_xlim(min(-0.5, *bx) - 0.3, max(W - 0.5, *bx) + 0.3)
    ax.set_ylim(max(H - 0.5, *by) + 0.3, min(-0.5, *by) - 0.3)

    inset = inset_sample(geo) if not small else None
    labels: list[tuple[float, float, str, str]] = []
    points = []
    for n, b in enumerate(geo.bins):
        c = COLORS[n % len(COLORS)]
        d = 0.06 if geo.op == "pool" else 0.0  # pool: show overlapping bins apart
        rect = (b.x0 + d, b.y0 + d), b.x1 - b.x0 - 2 * d, b.y1 - b.y0 - 2 * d
        ax.add_patch(patches.Rectangle(*rect, facecolor=c, alpha=0.16, edgecolor="none"))
        ax.add_patch(patches.Rectangle(*rect, fill=False, edgecolor=c, linewidth=1.8,
                                       linestyle="--" if geo.op != "pool" else "-"))
        if b.winner is not None:
            ax.add_patch(patches.Circle(b.winner, 0.36, fill=False, edgecolor=c, linewidth=2.4))
        size = 4 if small else 6
        for s in b.samples:
            points.append((s.x, s.y))
            if not s.valid:
                ax.plot(s.x, s.y, marker="x", color=c, markersize=size + 2, mew=2)
                continue
            ax.plot(s.x, s.y, marker="o", color=c, markersize=size + 3 if s.winner else size,
                    markeredgecolor="black" if s.winner else "white",
                    mew=1.5 if s.winner else 0.8)
            if s is inset:
                ax.plot(s.x, s.y, marker="o", markersize=15, fillstyle="none", color="black",
                        mew=1.4)
            if sample_labels:
                labels.append((s.x, s.y, f"{s.value:.2f}", c))
    if geo.given_roi is not None:
        gx0, gy0, gx1, gy1 = geo.given_roi
        ax.add_patch(patches.Rectangle((gx0, gy0), gx1 - gx0, gy1 - gy0, fill=False,
                                       edgecolor="#666666", linewidth=1.5, linestyle=":"))
    x0, y0, x1, y1 = geo.roi
    ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="black",
                                   linewidth=2.6))
    if labels:
        fig.canvas.draw()  # final axes position (equal aspect), so extents are exact
        renderer = fig.canvas.get_renderer()
        obstacles = [t.get_window_extent(renderer) for t in value_texts]
        for px, py in points:  # keep every sampling point visible
            cx, cy = ax.transData.transform((px, py))
            obstacles.append(type(obstacles[0]).from_extents(cx - 4, cy - 4, cx + 4, cy + 4))
        return _place_labels(fig, ax, labels, obstacles, 7.5)
    return 0


def _draw_output(ax: Any, geo: Geometry, out_values: np.ndarray, title: str,
                 fontsize: float | None = None) -> None:
    from matplotlib import patches

    out = np.asarray(out_values, dtype=np.float64)
    ax.set_xlim(-0.5, geo.pw - 0.5)
    ax.set_ylim(geo.ph - 0.5, -0.5)
    ax.set_aspect("equal")
    for n, b in enumerate(geo.bins):
        c = COLORS[n % len(COLORS)]
        ax.add_patch(patches.Rectangle((b.j - 0.5, b.i - 0.5), 1, 1, facecolor=c, alpha=0.18,
                                       edgecolor=c, linewidth=2))
        ax.text(b.j, b.i, f"{out[b.i, b.j]:.2f}", ha="center", va="center",
                fontsize=fontsize or max(8, 22 - 2 * max(geo.ph, geo.pw)), fontweight="bold",
                color=c)
    ax.set_xticks(range(geo.pw))
    ax.set_yticks(range(geo.ph))
    ax.xaxis.tick_top()
    ax.set_title(title, fontsize=11, pad=22)


def _draw_inset(ax: Any, s: Sample) -> None:
    """One sample magnified: its four neighbouring pixel centres and bilinear weights."""
    from matplotlib import patches

    terms = bilinear_terms(s.y, s.x)
    rows = sorted({t[0] for t in terms})
    cols = sorted({t[1] for t in terms})
    ax.set_xlim(cols[0] - 0.75, cols[-1] + 0.75)
    ax.set_ylim(rows[-1] + 0.75, rows[0] - 0.75)
    ax.set_aspect("equal")
    ax.set_xticks(cols)
    ax.set_yticks(rows)
    ax.tick_params(labelsize=8)
    ax.xaxis.tick_top()
    seen = set()
    for r, c, w, v in terms:
        ax.plot([s.x, c], [s.y, r], color="#999999", linewidth=1, linestyle=":", zorder=1)
        if (r, c) in seen:
            continue  # clamped at the border: the same pixel twice
        seen.add((r, c))
        ax.add_patch(patches.Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor="#eeeeee",
                                       edgecolor="white", linewidth=2, zorder=0))
        ax.plot(c, r, marker="+", color="#555555", markersize=9, mew=1.2)
        below = r > s.y
        ax.text(c, r + (0.2 if below else -0.2), f"v = {float(v):.2f}\nw = {float(w):.3f}",
                ha="center", va="top" if below else "bottom", fontsize=8.5, color="#222222")
    ax.plot(s.x, s.y, marker="o", markersize=9, color="black", markeredgecolor="white")
    total = sum(float(w) * float(v) for _, _, w, v in terms)
    ax.set_title(f"one sample at ({s.x:.3g}, {s.y:.3g}), magnified", fontsize=10, pad=18)
    ax.set_xlabel(f"value = sum of w x v = {total:.2f}", fontsize=9.5)


def _caption(fig: Any, lines: list[str], top: float, fontsize: float = 10.0) -> None:
    """Notes under the drawing, wrapped to the figure's width."""
    import textwrap

    width_pt = fig.get_figwidth() * 72 * 0.9
    chars = max(40, int(width_pt / (fontsize * 0.56)))
    text = "\n".join(w for line in lines for w in textwrap.wrap(line, chars))
    fig.text(0.04, top, text, ha="left", va="top", fontsize=fontsize)


def draw(geo: Geometry, out_values: np.ndarray, path: str, dpi: int = 100) -> Any:
    """Render ``geo`` (and roicore's ``out_values``) to a PNG at ``path``; returns the figure."""
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(12, 8), dpi=dpi)
    FigureCanvasAgg(fig)
    sampled = any(b.samples for b in geo.bins)
    gs = fig.add_gridspec(2, 2, width_ratios=[2.2, 1], height_ratios=[1, 1], left=0.06,
                          right=0.97, top=0.88, bottom=0.2, wspace=0.12, hspace=0.35)
    ax = fig.add_subplot(gs[:, 0])
    axo = fig.add_subplot(gs[0, 1])
    s = inset_sample(geo) if sampled else None
    if s is not None:
        _draw_inset(fig.add_subplot(gs[1, 1]), s)
    fig.suptitle(geo.title, fontsize=14, fontweight="bold", y=0.975)
    _draw_output(axo, geo, out_values, f"output {geo.ph}x{geo.pw} (roicore)")
    dropped = _draw_map(fig, ax, geo, values="corner" if sampled else "centre",
                        sample_labels=sampled)
    notes = [geo.roi_label + ".", " ".join(geo.notes)]
    if dropped:
        notes.append(f"{dropped} of the {sum(len(b.samples) for b in geo.bins)} sample values "
                     "are not printed: no free room beside their points.")
    if s is not None:
        notes.append("Circled sample: magnified on the right, with the bilinear weight w of "
                     "each of its four neighbouring pixel centres (weights sum to 1).")
    _caption(fig, notes, top=0.14)
    fig.savefig(path, dpi=dpi)
    return fig


def draw_compare(geos: list[Geometry], outs: list[np.ndarray], path: str, dpi: int = 100,
                 roi: tuple[float, float, float, float] | None = None) -> Any:
    """Pool, Align and Warp side by side on the same RoI and map; returns the figure.

    ``roi``: the box as given, image coordinates (default: the worked example's)."""
    roi = tuple(float(v) for v in (SEED_ROI[0, 1:] if roi is None else roi))
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(15, 7.6), dpi=dpi)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(2, len(geos), height_ratios=[3.2, 1], left=0.04, right=0.98,
                          top=0.86, bottom=0.2, wspace=0.15, hspace=0.3)
    names = {"pool": "RoI Pool", "align": "RoI Align", "warp": "RoI Warp"}
    for k, (geo, out) in enumerate(zip(geos, outs, strict=True)):
        ax = fig.add_subplot(gs[0, k])
        ax.set_title(geo.title.replace(": ", "\n", 1), fontsize=11, pad=20)
        # pixel values in the first panel only: the map is the same in all three
        _draw_map(fig, ax, geo, values="centre" if k == 0 else "none", sample_labels=False,
                  small=True)
        axo = fig.add_subplot(gs[1, k])
        axo.set_box_aspect(None)
        _draw_output(axo, geo, out, f"{names[geo.op]} output (roicore)", fontsize=12)
        axo.title.set_fontsize(10)
    x1, y1, x2, y2 = roi
    fig.suptitle(f"One RoI, three operators: box ({x1:g}, {y1:g})-({x2:g}, {y2:g}) on the "
                 f"same 8x8 map, {geos[0].ph}x{geos[0].pw} output", fontsize=14,
                 fontweight="bold", y=0.975)
    notes = ["The pixel values, printed in the left panel, are the same in all three. "
             "RoI Pool rounds the box to whole pixels and takes the max of each bin "
             "(circled). RoI Align keeps the box as given and averages bilinear samples "
             "(dots) in each bin; each sample mixes its four nearest pixel centres (+). "
             "RoI Warp rounds the box like RoI Pool (a dotted box is the given one, when it "
             "differs), then samples it like RoI Align with aligned=False: no half-pixel "
             "shift, so the box runs from pixel centre to pixel centre."]
    _caption(fig, notes, top=0.12)
    fig.savefig(path, dpi=dpi)
    return fig


def layout_problems(fig: Any) -> list[str]:
    """Texts that leave the figure or overlap one another (tick labels included)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    boxes = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip():
            continue
        bb = t.get_window_extent(renderer)
        boxes.append((t.get_text(), bb))
    problems = [f"{txt!r} leaves the figure" for txt, bb in boxes
                if bb.x0 < frame.x0 - 0.5 or bb.y0 < frame.y0 - 0.5
                or bb.x1 > frame.x1 + 0.5 or bb.y1 > frame.y1 + 0.5]
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            if _overlap(a, b) > 1.0:  # more than a pixel of anti-aliasing
                problems.append(f"{ta!r} overlaps {tb!r}")
    return problems
