"""Geometry of ``python -m roicore explain``: an operator's bins and samples in NumPy.

:func:`geometry` lays out the bins of RoI Pool and the bilinear sampling points of
RoI Align / RoI Warp on a feature map, with each sample's value, calling the
compiled per-axis geometry (``roicore._cpu``) and mirroring the kernels'
per-bin formulas; :func:`roicore_output` runs roicore itself on the same call,
so the tests (and ``explain`` before it draws) can check that the two agree.
No matplotlib here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _cpu
from .demo import SEED_MAP, SEED_ROI

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
    # the kernels' own bins (roi_common.h rc_round / rc_pool_bin, compiled)
    rule = _cpu.BINS_FAST_RCNN if bins == "fast_rcnn" else _cpu.BINS_EQUAL
    xs, xe, wr = _cpu.pool_axis_bins(x1, x2, scale, pw, W, rule)
    ys, ye, hr = _cpu.pool_axis_bins(y1, y2, scale, ph, H, rule)
    if bins == "fast_rcnn":
        box = (xs - 0.5, ys - 0.5, xe + 0.5, ye + 0.5)
        label = f"RoI, end inclusive: columns {xs}..{xe}, rows {ys}..{ye}"
        if xs < 0 or ys < 0 or xe >= W or ye >= H:
            label += " (clipped to the map)"
        notes = ["bins='fast_rcnn' (torchvision/Caffe): the end pixel is included; bin edges",
                 "floor(i*size/PH) / ceil((i+1)*size/PH), so neighbouring bins may overlap.",
                 "Each output is the max of its bin (circled)."]
    else:
        box = (xs - 0.5, ys - 0.5, xe - 0.5, ye - 0.5)
        label = f"RoI, end exclusive: columns {xs}..{xe - 1}, rows {ys}..{ye - 1}"
        if xs < 0 or ys < 0 or xe > W or ye > H:
            label += " (clipped to the map)"
        notes = ["bins='equal' (the RoI-pooling explainer): a non-overlapping partition with",
                 "edges floor(i*size/PH); the end pixel is excluded.",
                 "Each output is the max of its bin (circled)."]
    out = []
    for i, (hs_, he_) in enumerate(hr):
        for j, (ws_, we_) in enumerate(wr):
            b = Bin(i, j, ws_ - 0.5, hs_ - 0.5, we_ - 0.5, he_ - 0.5, 0.0)
            if he_ > hs_ and we_ > ws_:
                block = fmap[hs_:he_, ws_:we_]
                r, c = np.unravel_index(int(np.argmax(block)), block.shape)
                b.value = float(block[r, c])
                b.winner = (ws_ + int(c), hs_ + int(r))
            out.append(b)
    title = f"RoI Pool, bins='{bins}': max over whole pixels"
    return Geometry("pool", title, notes, box, label, out, ph, pw)


def _sampled_geometry(fmap, roi, ph, pw, sr, mode, kind, aligned, scale):
    """Bins and samples of a sampled op (RoI Align / RoI Warp) on ``roi`` in image
    coordinates: the kernels' own per-axis geometry (roi_common.h, compiled)."""
    H, W = fmap.shape
    ys, bh, gh, yc = _cpu.sample_axis(kind, roi[1], roi[3], scale, aligned, ph, sr, H)
    xs, bw, gw, xc = _cpu.sample_axis(kind, roi[0], roi[2], scale, aligned, pw, sr, W)
    ys, bh, xs, bw = T(ys), T(bh), T(xs), T(bw)
    count = T(max(gh * gw, 1))
    out = []
    for i in range(ph):
        for j in range(pw):
            b = Bin(i, j, float(xs + T(j) * bw), float(ys + T(i) * bh),
                    float(xs + T(j + 1) * bw), float(ys + T(i + 1) * bh), 0.0)
            acc = T(0)
            for iy in range(gh):
                y, oky = yc[i * gh + iy]
                for ix in range(gw):
                    x, okx = xc[j * gw + ix]
                    v = _bilinear(fmap, T(y), T(x), check_range=False) if oky and okx else None
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
        bs, gh, gw = _sampled_geometry(fm, roi, ph, pw, sampling_ratio, mode, _cpu.KIND_ALIGN,
                                       aligned, s)
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
    (qx1, qx2, _), (qy1, qy2, _) = (_cpu.pool_axis_bins(roi[a], roi[a + 2], s, 1, 1, 0)
                                    for a in (0, 1))  # rc_round, compiled
    q = (T(qx1), T(qy1), T(qx2), T(qy2))
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
        bs, gh, gw = _sampled_geometry(fm, roi, ph, pw, sampling_ratio, mode, _cpu.KIND_WARP,
                                       False, s)
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
    from .. import _api

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
