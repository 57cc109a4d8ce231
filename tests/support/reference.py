"""Slow, plain NumPy reference ("oracle") for the roicore operators.

Written directly from the operator formulas, independently of roicore (it never imports it).
Everything is an explicit Python loop over K, PH, PW, samples and C; every arithmetic
operation is done on NumPy scalars of the compute dtype ``T`` so that each step rounds
exactly like the corresponding C expression evaluated in ``T``:

* ``T = float32`` for float16 / float32 input, ``T = float64`` for float64 input;
* rois and ``spatial_scale`` are cast to ``T`` before use;
* results are returned in ``T`` (callers cast to float16 themselves when they need to).

All functions take NCHW input ``(N, C, H, W)`` and produce ``(K, C, PH, PW)`` outputs
(backward functions return ``(N, C, H, W)`` gradients of dtype ``T``).  ``rois`` is either a
``(K, 5)`` array of rows ``[batch_index, x1, y1, x2, y2]`` or a list of ``N`` arrays of shape
``(K_i, 4)`` (rows ``[x1, y1, x2, y2]`` for batch ``i``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "align_bin_samples",
    "c_round",
    "compute_dtype",
    "normalize_rois",
    "pair",
    "quantize_rois",
    "roi_align",
    "roi_align_backward",
    "roi_align_max_winners",
    "roi_pool",
    "roi_pool_argmax",
    "roi_pool_backward",
    "roi_warp",
    "roi_warp_backward",
]


# --------------------------------------------------------------------------- helpers


def compute_dtype(dtype) -> type:
    """The arithmetic dtype used for an input dtype (float16 is computed in float32)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.float64
    if dtype in (np.float32, np.float16):
        return np.float32
    raise TypeError(f"unsupported dtype {dtype}")


def c_round(v) -> int:
    """C ``round()``: nearest integer, halfway cases away from zero, returned as ``int``.

    Computed exactly (no ``floor(v + 0.5)`` double-rounding trap): the fractional part of a
    binary floating point number is exactly representable, so ``a - floor(a)`` is exact.
    """
    a = abs(float(v))
    f = math.floor(a)
    r = f + 1 if a - f >= 0.5 else f
    return -r if v < 0 else r


def pair(output_size) -> tuple[int, int]:
    """``output_size`` as ``(PH, PW)``."""
    if isinstance(output_size, (int, np.integer)):
        return int(output_size), int(output_size)
    ph, pw = output_size
    return int(ph), int(pw)


def normalize_rois(rois, T) -> list[tuple]:
    """Return a list of ``(batch_index, x1, y1, x2, y2)`` with coordinates as ``T`` scalars."""
    out = []
    if isinstance(rois, (list, tuple)):
        for b, arr in enumerate(rois):
            arr = np.asarray(arr).astype(T)
            assert arr.ndim == 2 and arr.shape[1] == 4, arr.shape
            for row in arr:
                out.append((b, row[0], row[1], row[2], row[3]))
        return out
    arr = np.asarray(rois).astype(T)
    assert arr.ndim == 2 and arr.shape[1] == 5, arr.shape
    for row in arr:
        out.append((int(row[0]), row[1], row[2], row[3], row[4]))
    return out


def quantize_rois(rois, spatial_scale, T) -> np.ndarray:
    """RoI Warp's quantization: ``[b, round(x1*s), round(y1*s), round(x2*s), round(y2*s)]``.

    The products are evaluated in ``T`` and rounded with C ``round``.  Returns a ``(K, 5)``
    array of dtype ``T``.
    """
    s = T(spatial_scale)
    rows = []
    for b, x1, y1, x2, y2 in normalize_rois(rois, T):
        rows.append(
            [T(b), T(c_round(x1 * s)), T(c_round(y1 * s)), T(c_round(x2 * s)), T(c_round(y2 * s))]
        )
    return np.array(rows, dtype=T).reshape(-1, 5)


def _bilinear(y, x, H, W, T, check_range=True):
    """Bilinear sampling weights at (y, x) on an H x W map.

    Returns ``None`` when the point is out of range (contributes nothing), otherwise
    ``(yl, yh, xl, xh, w1, w2, w3, w4)``; the value is
    ``w1*v[yl,xl] + w2*v[yl,xh] + w3*v[yh,xl] + w4*v[yh,xh]``.
    """
    if check_range and (y < T(-1) or y > T(H) or x < T(-1) or x > T(W)):
        return None
    if y <= 0:
        y = T(0)
    if x <= 0:
        x = T(0)
    yl = int(y)
    xl = int(x)
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
    ly = y - T(yl)
    lx = x - T(xl)
    hy = T(1) - ly
    hx = T(1) - lx
    w1 = hy * hx
    w2 = hy * lx
    w3 = ly * hx
    w4 = ly * lx
    return (yl, yh, xl, xh, w1, w2, w3, w4)


def _interp(plane, smp):
    """Value of a bilinear sample (``smp`` from ``_bilinear``) on a 2-D ``plane``."""
    yl, yh, xl, xh, w1, w2, w3, w4 = smp
    return w1 * plane[yl, xl] + w2 * plane[yl, xh] + w3 * plane[yh, xl] + w4 * plane[yh, xh]


def _scatter(gplane, smp, g):
    """Add ``g * w_i`` to the four corners of a bilinear sample (in corner order 1..4)."""
    yl, yh, xl, xh, w1, w2, w3, w4 = smp
    gplane[yl, xl] += g * w1
    gplane[yl, xh] += g * w2
    gplane[yh, xl] += g * w3
    gplane[yh, xh] += g * w4


def _check_input(input):
    x = np.asarray(input)
    assert x.ndim == 4, x.shape
    T = compute_dtype(x.dtype)
    return x.astype(T), T


# --------------------------------------------------------------------------- RoI Pool


def _pool_bin_ranges(roi, PH, PW, H, W, s, bins, T):
    """Per-bin ``(hs, he, ws, we)`` (clamped, end exclusive), indexed ``[ph][pw]``."""
    _, x1, y1, x2, y2 = roi
    xs = c_round(x1 * s)
    ys = c_round(y1 * s)
    xe = c_round(x2 * s)
    ye = c_round(y2 * s)
    hranges = []
    wranges = []
    if bins == "fast_rcnn":
        rw = max(xe - xs + 1, 1)
        rh = max(ye - ys + 1, 1)
        bh = T(rh) / T(PH)
        bw = T(rw) / T(PW)
        for ph in range(PH):
            hs = int(np.floor(T(ph) * bh)) + ys
            he = int(np.ceil(T(ph + 1) * bh)) + ys
            hranges.append((min(max(hs, 0), H), min(max(he, 0), H)))
        for pw in range(PW):
            ws = int(np.floor(T(pw) * bw)) + xs
            we = int(np.ceil(T(pw + 1) * bw)) + xs
            wranges.append((min(max(ws, 0), W), min(max(we, 0), W)))
    elif bins == "equal":
        size_h = max(ye - ys, 1)
        size_w = max(xe - xs, 1)
        for ph in range(PH):
            lo = (ph * size_h) // PH
            hi = max(((ph + 1) * size_h) // PH, lo + 1)
            hranges.append((min(max(ys + lo, 0), H), min(max(ys + hi, 0), H)))
        for pw in range(PW):
            lo = (pw * size_w) // PW
            hi = max(((pw + 1) * size_w) // PW, lo + 1)
            wranges.append((min(max(xs + lo, 0), W), min(max(xs + hi, 0), W)))
    else:
        raise ValueError(f"bins={bins!r}")
    return [[hr + wr for wr in wranges] for hr in hranges]


def roi_pool_argmax(input, rois, output_size, spatial_scale=1.0, bins="fast_rcnn"):
    """RoI max pooling.  Returns ``(out, argmax)``.

    ``argmax[k, c, ph, pw]`` is the flat index ``h * W + w`` of the winning pixel, or ``-1``
    when the bin is empty or nothing won (all NaN / ``-inf``; output then stays at the
    lowest finite value of ``T``).
    """
    x, T = _check_input(input)
    _, C, H, W = x.shape
    PH, PW = pair(output_size)
    s = T(spatial_scale)
    lowest = T(np.finfo(T).min)
    roi_list = normalize_rois(rois, T)
    K = len(roi_list)
    out = np.zeros((K, C, PH, PW), dtype=T)
    argmax = np.full((K, C, PH, PW), -1, dtype=np.int64)
    for k, roi in enumerate(roi_list):
        b = roi[0]
        ranges = _pool_bin_ranges(roi, PH, PW, H, W, s, bins, T)
        for c in range(C):
            plane = x[b, c]
            for ph in range(PH):
                for pw in range(PW):
                    hs, he, ws, we = ranges[ph][pw]
                    if he <= hs or we <= ws:
                        out[k, c, ph, pw] = T(0)
                        continue
                    maxval = lowest
                    maxidx = -1
                    for h in range(hs, he):
                        for w in range(ws, we):
                            v = plane[h, w]
                            if v > maxval:
                                maxval = v
                                maxidx = h * W + w
                    out[k, c, ph, pw] = maxval
                    argmax[k, c, ph, pw] = maxidx
    return out, argmax


def roi_pool(input, rois, output_size, spatial_scale=1.0, bins="fast_rcnn"):
    """RoI max pooling forward, ``(K, C, PH, PW)`` in dtype ``T``."""
    return roi_pool_argmax(input, rois, output_size, spatial_scale, bins)[0]


def roi_pool_backward(grad_output, input, rois, output_size, spatial_scale=1.0, bins="fast_rcnn"):
    """Gradient of ``sum(grad_output * roi_pool(input))`` w.r.t. ``input`` (dtype ``T``)."""
    x, T = _check_input(input)
    _, C, _, W = x.shape
    _, argmax = roi_pool_argmax(x, rois, output_size, spatial_scale, bins)
    g = np.asarray(grad_output).astype(T)
    assert g.shape == argmax.shape, (g.shape, argmax.shape)
    roi_list = normalize_rois(rois, T)
    gi = np.zeros(x.shape, dtype=T)
    K, _, PH, PW = argmax.shape
    for k in range(K):
        b = roi_list[k][0]
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    idx = argmax[k, c, ph, pw]
                    if idx >= 0:
                        gi[b, c, idx // W, idx % W] += g[k, c, ph, pw]
    return gi


# --------------------------------------------------------------------------- RoI Align


def align_bin_samples(roi, ph, pw, PH, PW, H, W, s, sampling_ratio, aligned, T):
    """Sampling points of one RoI Align bin.

    Returns ``(samples, count)``; ``samples`` lists, in (iy outer, ix inner) order, either
    ``None`` for an out-of-range point or the tuple from ``_bilinear``; ``count`` is the
    divisor ``T(max(gh * gw, 1))`` of the average mode.
    """
    _, x1, y1, x2, y2 = roi
    off = T(0.5) if aligned else T(0)
    xs = x1 * s - off
    ys = y1 * s - off
    xe = x2 * s - off
    ye = y2 * s - off
    rw = xe - xs
    rh = ye - ys
    if not aligned:
        rw = max(rw, T(1))
        rh = max(rh, T(1))
    bh = rh / T(PH)
    bw = rw / T(PW)
    gh = sampling_ratio if sampling_ratio > 0 else int(np.ceil(rh / T(PH)))
    gw = sampling_ratio if sampling_ratio > 0 else int(np.ceil(rw / T(PW)))
    count = T(max(gh * gw, 1))
    samples = []
    for iy in range(gh):
        y = ys + T(ph) * bh + T(iy + 0.5) * bh / T(gh)
        for ix in range(gw):
            x = xs + T(pw) * bw + T(ix + 0.5) * bw / T(gw)
            samples.append(_bilinear(y, x, H, W, T))
    return samples, count


def _align_common(input, rois, output_size, spatial_scale, sampling_ratio, aligned, mode):
    if mode not in ("avg", "max"):
        raise ValueError(f"mode={mode!r}")
    x, T = _check_input(input)
    PH, PW = pair(output_size)
    return x, T, PH, PW, T(spatial_scale), normalize_rois(rois, T)


def _max_winner(plane, samples, T):
    """(value, winning sample or None) of the max mode over ``samples`` on ``plane``.

    An out-of-range sample has value 0 and takes part in the max; the running max starts at
    the lowest finite ``T`` and is replaced only by a strictly larger value (first wins).
    """
    maxval = T(np.finfo(T).min)
    winner = None
    for smp in samples:
        v = T(0) if smp is None else _interp(plane, smp)
        if v > maxval:
            maxval = v
            winner = smp
    return maxval, winner


def roi_align(
    input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, mode="avg"
):
    """RoI Align forward (torchvision ``avg``; mmcv-style ``max``), ``(K, C, PH, PW)``."""
    x, T, PH, PW, s, roi_list = _align_common(
        input, rois, output_size, spatial_scale, sampling_ratio, aligned, mode
    )
    _, C, H, W = x.shape
    out = np.zeros((len(roi_list), C, PH, PW), dtype=T)
    for k, roi in enumerate(roi_list):
        b = roi[0]
        for ph in range(PH):
            for pw in range(PW):
                samples, count = align_bin_samples(
                    roi, ph, pw, PH, PW, H, W, s, sampling_ratio, aligned, T
                )
                for c in range(C):
                    plane = x[b, c]
                    if mode == "avg":
                        acc = T(0)
                        for smp in samples:
                            if smp is not None:
                                acc = acc + _interp(plane, smp)
                        out[k, c, ph, pw] = acc / count
                    else:
                        if not samples:
                            out[k, c, ph, pw] = T(0)
                            continue
                        out[k, c, ph, pw] = _max_winner(plane, samples, T)[0]
    return out


def roi_align_max_winners(
    input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False
):
    """Max-mode RoI Align forward with its winners: ``(out, winners)``.

    ``winners[k, c, ph, pw]`` is the position ``iy * gw + ix`` of the winning sample in
    its bin's sampling grid (samples in (iy outer, ix inner) order), ``-1`` when the bin
    has no samples or no sample wins (all NaN), ``-2`` when an out-of-range sample (the
    value 0) leads (both: no gradient, as ``_max_winner`` returns ``None``).
    """
    x, T, PH, PW, s, roi_list = _align_common(
        input, rois, output_size, spatial_scale, sampling_ratio, aligned, "max"
    )
    _, C, H, W = x.shape
    out = np.zeros((len(roi_list), C, PH, PW), dtype=T)
    win = np.full((len(roi_list), C, PH, PW), -1, dtype=np.int64)
    for k, roi in enumerate(roi_list):
        b = roi[0]
        for ph in range(PH):
            for pw in range(PW):
                samples, _ = align_bin_samples(
                    roi, ph, pw, PH, PW, H, W, s, sampling_ratio, aligned, T
                )
                if not samples:
                    continue
                for c in range(C):
                    maxval, w = T(np.finfo(T).min), -1
                    for i, smp in enumerate(samples):
                        v = T(0) if smp is None else _interp(x[b, c], smp)
                        if v > maxval:
                            maxval, w = v, (i if smp is not None else -2)
                    out[k, c, ph, pw] = maxval
                    win[k, c, ph, pw] = w
    return out, win


def roi_align_backward(
    grad_output,
    input,
    rois,
    output_size,
    spatial_scale=1.0,
    sampling_ratio=-1,
    aligned=False,
    mode="avg",
):
    """Gradient of ``sum(grad_output * roi_align(input))`` w.r.t. ``input`` (dtype ``T``)."""
    x, T, PH, PW, s, roi_list = _align_common(
        input, rois, output_size, spatial_scale, sampling_ratio, aligned, mode
    )
    _, C, H, W = x.shape
    g = np.asarray(grad_output).astype(T)
    assert g.shape == (len(roi_list), C, PH, PW), g.shape
    gi = np.zeros(x.shape, dtype=T)
    for k, roi in enumerate(roi_list):
        b = roi[0]
        for ph in range(PH):
            for pw in range(PW):
                samples, count = align_bin_samples(
                    roi, ph, pw, PH, PW, H, W, s, sampling_ratio, aligned, T
                )
                for c in range(C):
                    gv = g[k, c, ph, pw]
                    gplane = gi[b, c]
                    if mode == "avg":
                        for smp in samples:
                            if smp is None:
                                continue
                            yl, yh, xl, xh, w1, w2, w3, w4 = smp
                            gplane[yl, xl] += gv * w1 / count
                            gplane[yl, xh] += gv * w2 / count
                            gplane[yh, xl] += gv * w3 / count
                            gplane[yh, xh] += gv * w4 / count
                    else:
                        _, winner = _max_winner(x[b, c], samples, T)
                        if winner is not None:
                            _scatter(gplane, winner, gv)
    return gi


# --------------------------------------------------------------------------- RoI Warp


def _mnc_sample(roi, ph, pw, PH, PW, H, W, s, T):
    """The single MNC sample of a bin: ``None`` (out of range) or a ``_bilinear`` tuple."""
    _, x1, y1, x2, y2 = roi
    xs = T(c_round(x1 * s))
    ys = T(c_round(y1 * s))
    xe = T(c_round(x2 * s))
    ye = T(c_round(y2 * s))
    bw = max(xe - xs, T(0)) / T(PW)
    bh = max(ye - ys, T(0)) / T(PH)
    ih = ys + T(ph) * bh
    iw = xs + T(pw) * bw
    if ih < T(-0.5) or ih > T(H) - T(0.5) or iw < T(-0.5) or iw > T(W) - T(0.5):
        return None
    return _bilinear(ih, iw, H, W, T, check_range=False)


def _warp_check(mode, compat, sampling_ratio):
    if mode not in ("avg", "max"):
        raise ValueError(f"mode={mode!r}")
    if compat not in (None, "mnc"):
        raise ValueError(f"compat={compat!r}")
    if compat == "mnc" and sampling_ratio > 1:
        raise ValueError("compat='mnc' takes one sample per bin (sampling_ratio <= 1)")


def roi_warp(
    input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, mode="avg", compat=None
):
    """RoI Warp forward: quantized RoI then bilinear sampling, ``(K, C, PH, PW)``."""
    _warp_check(mode, compat, sampling_ratio)
    x, T = _check_input(input)
    if compat is None:
        q = quantize_rois(rois, spatial_scale, T)
        return roi_align(x, q, output_size, 1.0, sampling_ratio, False, mode)
    _, C, H, W = x.shape
    PH, PW = pair(output_size)
    s = T(spatial_scale)
    roi_list = normalize_rois(rois, T)
    out = np.zeros((len(roi_list), C, PH, PW), dtype=T)
    for k, roi in enumerate(roi_list):
        b = roi[0]
        for ph in range(PH):
            for pw in range(PW):
                smp = _mnc_sample(roi, ph, pw, PH, PW, H, W, s, T)
                for c in range(C):
                    out[k, c, ph, pw] = T(0) if smp is None else _interp(x[b, c], smp)
    return out


def roi_warp_backward(
    grad_output,
    input,
    rois,
    output_size,
    spatial_scale=1.0,
    sampling_ratio=-1,
    mode="avg",
    compat=None,
):
    """Gradient of ``sum(grad_output * roi_warp(input))`` w.r.t. ``input`` (dtype ``T``)."""
    _warp_check(mode, compat, sampling_ratio)
    x, T = _check_input(input)
    if compat is None:
        q = quantize_rois(rois, spatial_scale, T)
        return roi_align_backward(grad_output, x, q, output_size, 1.0, sampling_ratio, False, mode)
    _, C, H, W = x.shape
    PH, PW = pair(output_size)
    s = T(spatial_scale)
    roi_list = normalize_rois(rois, T)
    g = np.asarray(grad_output).astype(T)
    assert g.shape == (len(roi_list), C, PH, PW), g.shape
    gi = np.zeros(x.shape, dtype=T)
    for k, roi in enumerate(roi_list):
        b = roi[0]
        for ph in range(PH):
            for pw in range(PW):
                smp = _mnc_sample(roi, ph, pw, PH, PW, H, W, s, T)
                if smp is None:
                    continue
                for c in range(C):
                    _scatter(gi[b, c], smp, g[k, c, ph, pw])
    return gi
