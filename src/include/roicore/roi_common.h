/* roicore: the per-element RoI arithmetic shared by the CPU (C++ through
 * Cython) and CUDA (NVRTC through CuPy) backends: per axis (bin bounds,
 * sample positions, bilinear clamps) and per bin (bilinear gather and
 * scatter, the avg and max rules, the pool max/argmax, strides, the batch
 * check, the sampled-op parameters), with the limits and kinds they use.
 * The CPU kernels (the cpu/ headers) and src/cuda/roicore_kernels.cu both call these
 * functions; neither writes this maths again.
 *
 * Rules (see README "Semantics"):
 *  - no #include here: NVRTC has no libc headers.  The CPU side includes
 *    <cmath> and brings floor/ceil/round into scope before this header.
 *  - every function is an inline template marked RC_HD so one copy of the
 *    maths serves both backends.
 *  - all index arithmetic is 64-bit (rc_index).
 *
 * The operation order of every floating-point expression follows
 * torchvision (roi_align / roi_pool kernels) so float32 results match it
 * bit for bit.
 */
#ifndef ROICORE_ROI_COMMON_H_
#define ROICORE_ROI_COMMON_H_

#if defined(__CUDACC__)
#define RC_HD __host__ __device__ __forceinline__
#else
#define RC_HD inline
#endif

namespace roicore {

typedef long long rc_index;

/* Kinds of sampled (bilinear) operator: RoI Align, RoI Warp, MNC warp
 * (exported to Python as roicore._cpu.KIND_ALIGN / KIND_WARP / KIND_MNC). */
enum { RC_ALIGN = 0, RC_WARP = 1, RC_MNC = 2 };
/* Bin rules of RoI Pool. */
enum { RC_BINS_FAST_RCNN = 0, RC_BINS_EQUAL = 1 };

/* Largest |rounded coordinate| kept; larger ones are clamped (2^40 pixels). */
#define RC_COORD_LIMIT 1099511627776.0
/* Sampling-cost limits (README "Bad input").  What a sampled op costs is
 * its samples, so that is what is bounded (the Python side refuses a call
 * above a limit with a message naming the argument; the kernels refuse it
 * too, so skipping that check can never make a call run for hours):
 *  - samples per bin, gh * gw;
 *  - samples along one side of a RoI, PH * gh and PW * gw (the CPU
 *    kernels' per-thread sample tables);
 *  - samples per RoI, PH * PW * gh * gw (one RoI is one uninterruptible
 *    piece of work on the CPU: about a second at most);
 *  - samples per call, sum over RoIs of PH * PW * gh * gw, times C. */
#define RC_BIN_SAMPLE_LIMIT 16777216LL       /* 2^24 */
#define RC_SIDE_SAMPLE_LIMIT 2097152LL       /* 2^21 */
#define RC_ROI_SAMPLE_LIMIT 268435456LL      /* 2^28 */
#define RC_CALL_SAMPLE_LIMIT 1099511627776.0 /* 2^40 */
/* An adaptive grid is capped here before its integer conversion (anything
 * above RC_BIN_SAMPLE_LIMIT is refused anyway). */
#define RC_GRID_CAP 2147483648.0
/* Threads of one block of the CUDA kernel rc_roi_csr (RoIs grouped by image
 * for the deterministic backward); the Python launcher reads it from
 * roicore._cpu.CSR_BLOCK. */
#define RC_CSR_THREADS 256

template <typename T>
RC_HD T rc_max(T a, T b) { return a > b ? a : b; }
template <typename T>
RC_HD T rc_min(T a, T b) { return a < b ? a : b; }

/* C round(): half away from zero, clamped so the integer conversion is
 * always defined. */
template <typename T>
RC_HD T rc_round(T v) {
  T r = round(v);
  if (!(r == r)) r = (T)0; /* NaN (only reachable with GPU checks off) */
  if (r > (T)RC_COORD_LIMIT) r = (T)RC_COORD_LIMIT;
  if (r < -(T)RC_COORD_LIMIT) r = -(T)RC_COORD_LIMIT;
  return r;
}

/* ---------------------------------------------------------------- pool --
 * Bin p (of P) of one axis: [*lo, *hi), clamped to [0, size].
 * start/end are the rounded, scaled RoI coordinates. */
template <typename T>
RC_HD void rc_pool_bin(int bins, rc_index start, rc_index end, rc_index p,
                       rc_index P, rc_index size, rc_index* lo, rc_index* hi) {
  rc_index s, e;
  if (bins == RC_BINS_FAST_RCNN) {
    /* torchvision / Caffe: inclusive end, float bin size, floor/ceil. */
    rc_index len = rc_max<rc_index>(end - start + 1, 1);
    T bin = static_cast<T>(len) / static_cast<T>(P);
    s = static_cast<rc_index>(floor(static_cast<T>(p) * bin)) + start;
    e = static_cast<rc_index>(ceil(static_cast<T>(p + 1) * bin)) + start;
  } else {
    /* Equal partition: exclusive end, boundaries floor(i*len/P), every
     * section at least one cell. */
    rc_index len = rc_max<rc_index>(end - start, 1);
    rc_index a = p * len / P;
    rc_index b = (p + 1) * len / P;
    if (b < a + 1) b = a + 1;
    s = start + a;
    e = start + b;
  }
  *lo = rc_min<rc_index>(rc_max<rc_index>(s, 0), size);
  *hi = rc_min<rc_index>(rc_max<rc_index>(e, 0), size);
}

/* ------------------------------------------------------------- sampled --
 * Geometry of one axis of a sampled op: start coordinate, bin size and
 * sampling grid (samples per bin along this axis, >= 0). */
template <typename T>
RC_HD void rc_sample_axis(int kind, T c1, T c2, T scale, bool aligned,
                          rc_index P, int sampling_ratio, T* start, T* bin,
                          rc_index* grid) {
  if (kind == RC_MNC) {
    T s = rc_round(c1 * scale);
    T e = rc_round(c2 * scale);
    *start = s;
    *bin = rc_max<T>(e - s, (T)0) / static_cast<T>(P);
    *grid = 1;
    return;
  }
  T s, e;
  if (kind == RC_WARP) {
    /* RoI Warp: quantize like RoI Pool, then sample like RoI Align
     * (aligned=False, spatial_scale=1). */
    s = rc_round(c1 * scale);
    e = rc_round(c2 * scale);
  } else {
    T offset = aligned ? (T)0.5 : (T)0.0;
    s = c1 * scale - offset;
    e = c2 * scale - offset;
  }
  T len = e - s;
  if (!aligned || kind == RC_WARP) len = rc_max<T>(len, (T)1.);
  *start = s;
  *bin = static_cast<T>(len) / static_cast<T>(P);
  if (sampling_ratio > 0) {
    *grid = sampling_ratio;
  } else {
    T g = ceil(len / static_cast<T>(P));
    if (!(g > (T)0)) g = (T)0;  /* also maps NaN to 0 */
    if (g > (T)RC_GRID_CAP) g = (T)RC_GRID_CAP;
    *grid = static_cast<rc_index>(g);
  }
}

/* A bin with no sample along one axis has none at all: both grids 0 (the
 * results are the same, and no table is built for the other axis). */
RC_HD void rc_grid_pair(rc_index* gh, rc_index* gw) {
  if (*gh == 0 || *gw == 0) *gh = *gw = 0;
}

/* Whether one RoI's grid (after rc_grid_pair) is above the per-bin,
 * per-side or per-RoI limit (no product can overflow: each is evaluated only
 * when the previous ones are within their limits). */
RC_HD bool rc_grid_too_large(rc_index gh, rc_index gw, rc_index PH,
                             rc_index PW) {
  return gh * gw > RC_BIN_SAMPLE_LIMIT || PH * gh > RC_SIDE_SAMPLE_LIMIT ||
         PW * gw > RC_SIDE_SAMPLE_LIMIT ||
         (PH * gh) * (PW * gw) > RC_ROI_SAMPLE_LIMIT;
}

/* Coordinate of sample i (of grid) in bin p. */
template <typename T>
RC_HD T rc_sample_coord(int kind, T start, T bin, rc_index p, rc_index i,
                        rc_index grid) {
  if (kind == RC_MNC) return start + static_cast<T>(p) * bin;
  return start + static_cast<T>(p) * bin +
         static_cast<T>(static_cast<float>(i) + .5f) * bin /
             static_cast<T>(grid);
}

/* Clamp rule shared by every bilinear sample: v >= 0, the low index is
 * (int)v, at the last cell both indices are size-1. */
template <typename T>
RC_HD void rc_bilinear_clamp(T v, rc_index size, rc_index* lo, rc_index* hi,
                             T* wl, T* wh) {
  if (v <= (T)0) v = (T)0;
  rc_index low = static_cast<rc_index>(v);
  rc_index high;
  if (low >= size - 1) {
    high = low = size - 1;
    v = static_cast<T>(low);
  } else {
    high = low + 1;
  }
  T l = v - static_cast<T>(low);
  *lo = low;
  *hi = high;
  *wl = l;                    /* weight of the high index */
  *wh = static_cast<T>(1.) - l; /* weight of the low index */
}

/* One axis of a bilinear sample.  Returns false when the sample is outside
 * the map (torchvision: outside [-1, size]; MNC: outside [-0.5, size-0.5]),
 * in which case it contributes 0. */
template <typename T>
RC_HD bool rc_bilinear_axis(int kind, T v, rc_index size, rc_index* lo,
                            rc_index* hi, T* wl, T* wh) {
  if (kind == RC_MNC) {
    if (!(v >= (T)-0.5 && v <= static_cast<T>(size) - (T)0.5)) return false;
  } else {
    if (!(v >= (T)-1.0 && v <= static_cast<T>(size))) return false;
  }
  rc_bilinear_clamp(v, size, lo, hi, wl, wh);
  return true;
}

/* ================================================================ per bin --
 * Everything below works on one bin or one sample; the CPU kernels call it
 * with table entries, the CUDA kernels with values computed per thread. */

/* Lowest finite value (std::numeric_limits<T>::lowest() without <limits>):
 * the start of every running max. */
template <typename T>
RC_HD T rc_lowest();
template <>
RC_HD float rc_lowest<float>() { return -3.40282346638528859811704e+38f; }
template <>
RC_HD double rc_lowest<double>() { return -1.7976931348623157081452742e+308; }

/* Batch index of RoI k, -1 when out of [0, N): from the exact int64 array
 * made from the caller's rois before their cast to the compute dtype
 * (float32 holds integers exactly only up to 2^24). */
RC_HD rc_index rc_batch_index(const rc_index* batch, rc_index k, rc_index N) {
  const rc_index b = batch[k];
  return (b >= 0 && b < N) ? b : -1;
}

/* Element strides of a C-contiguous (n, c, y, x) array, NCHW or NHWC
 * (channels_last): offset = n*sn + c*sc + y*sy + x*sx.  Inputs use (C, H, W),
 * outputs (C, PH, PW). */
RC_HD void rc_strides(bool channels_last, rc_index C, rc_index H, rc_index W,
                      rc_index* sn, rc_index* sc, rc_index* sy,
                      rc_index* sx) {
  *sn = C * H * W;
  if (channels_last) {
    *sc = 1; *sy = W * C; *sx = C;
  } else {
    *sc = H * W; *sy = W; *sx = 1;
  }
}

/* Parameters of a sampled op. */
struct SampledParams {
  int kind;            /* RC_ALIGN / RC_WARP / RC_MNC */
  bool aligned;
  bool max_mode;
  int sampling_ratio;
};

/* Per-axis geometry of one RoI of a sampled op: start, bin size and grid of
 * each axis (after rc_grid_pair). */
template <typename T>
RC_HD void rc_sampled_geometry(const SampledParams& sp, const T* roi, T scale,
                               rc_index PH, rc_index PW, T* ys, T* bh,
                               rc_index* gh, T* xs, T* bw, rc_index* gw) {
  rc_sample_axis<T>(sp.kind, roi[2], roi[4], scale, sp.aligned, PH,
                    sp.sampling_ratio, ys, bh, gh);
  rc_sample_axis<T>(sp.kind, roi[1], roi[3], scale, sp.aligned, PW,
                    sp.sampling_ratio, xs, bw, gw);
  rc_grid_pair(gh, gw);
}

/* One bilinear sample along one axis: sample i (of grid) of bin p, its cell
 * indices lo/hi and weights; false when it is outside the map. */
template <typename T>
RC_HD bool rc_sample(int kind, T start, T bin, rc_index p, rc_index i,
                     rc_index grid, rc_index size, rc_index* lo, rc_index* hi,
                     T* wl, T* wh) {
  const T v = rc_sample_coord<T>(kind, start, bin, p, i, grid);
  *lo = 0; *hi = 0; *wl = 0; *wh = 0;
  return rc_bilinear_axis<T>(kind, v, size, lo, hi, wl, wh);
}

/* Weights of the four corners of a bilinear sample from the low/high
 * weights of each axis, in corner order (lo,lo) (lo,hi) (hi,lo) (hi,hi). */
template <typename T>
RC_HD void rc_bilinear_weights(T hy, T ly, T hx, T lx, T* w1, T* w2, T* w3,
                               T* w4) {
  *w1 = hy * hx;
  *w2 = hy * lx;
  *w3 = ly * hx;
  *w4 = ly * lx;
}

/* The four corners of a bilinear sample: offsets of the rows y0/y1 and
 * columns x0/x1 (cell index x stride) and their weights, in the order
 * (y0,x0) (y0,x1) (y1,x0) (y1,x1).  hy/ly: weights of the low/high row. */
template <typename T>
struct RcBilinear {
  rc_index y0, y1, x0, x1;
  T w1, w2, w3, w4;
  RC_HD RcBilinear(rc_index ylo, rc_index yhi, T hy, T ly, rc_index xlo,
                   rc_index xhi, T hx, T lx)
      : y0(ylo), y1(yhi), x0(xlo), x1(xhi) {
    rc_bilinear_weights(hy, ly, hx, lx, &w1, &w2, &w3, &w4);
  }
  /* Value of the sample on plane p. */
  RC_HD T gather(const T* p) const {
    return w1 * p[y0 + x0] + w2 * p[y0 + x1] + w3 * p[y1 + x0] +
           w4 * p[y1 + x1];
  }
  /* Gradient g of the sample to corner 0..3; div applied as (g * w) / div,
   * the torchvision order. */
  RC_HD T grad(int corner, T g, T div) const {
    const T w = corner == 0 ? w1 : corner == 1 ? w2 : corner == 2 ? w3 : w4;
    return g * w / div;
  }
  /* Scatter g to the four corners of plane p with add(T*, T), in corner
   * order (the CPU's +=, CUDA's atomicAdd). */
  template <class Add>
  RC_HD void scatter(T* p, T g, T div, Add add) const {
    add(p + y0 + x0, g * w1 / div);
    add(p + y0 + x1, g * w2 / div);
    add(p + y1 + x0, g * w3 / div);
    add(p + y1 + x1, g * w4 / div);
  }
  /* Add the corners that fall on cell offset (y, x) to *acc, in corner
   * order (one thread per input element). */
  RC_HD void gather_grad(T* acc, rc_index y, rc_index x, T g, T div) const {
    if (y0 == y && x0 == x) *acc += g * w1 / div;
    if (y0 == y && x1 == x) *acc += g * w2 / div;
    if (y1 == y && x0 == x) *acc += g * w3 / div;
    if (y1 == y && x1 == x) *acc += g * w4 / div;
  }
};

/* Plain (non-atomic) add, for RcBilinear::scatter. */
struct RcAdd {
  template <typename T>
  RC_HD void operator()(T* p, T v) const { *p += v; }
};

/* Divisor of the average rule: the samples of the bin, at least 1. */
template <typename T>
RC_HD T rc_avg_divisor(rc_index gh, rc_index gw) {
  const rc_index cnt = gh * gw;
  return static_cast<T>(cnt > 1 ? cnt : 1);
}

/* Forward of one bin of a sampled op over a gh x gw grid.  S supplies
 *   S::Row row(iy) / S::Col col(ix)  with a bool member ok,
 *   T value(row, col)                the bilinear sample,
 * so the CPU (table entries) and CUDA (samples computed per thread) share
 * the avg and max rules.  Average: sum of the in-range samples / max(gh*gw,
 * 1).  Max (mmcv): an out-of-range sample is the value 0 and takes part;
 * running max from the lowest finite value with strict '>' (the first
 * maximum in row-major order wins, NaN never wins); *win_y / *win_x = the
 * winning sample, *win_y = -1 when none or when an out-of-range sample
 * leads (no gradient).  Avg mode leaves *win_y / *win_x untouched. */
template <typename T, class S>
RC_HD T rc_sampled_bin(const S& s, bool max_mode, rc_index gh, rc_index gw,
                       rc_index* win_y, rc_index* win_x) {
  if (!max_mode) {
    T acc = 0;
    for (rc_index iy = 0; iy < gh; ++iy) {
      const typename S::Row a = s.row(iy);
      if (!a.ok) continue;
      for (rc_index ix = 0; ix < gw; ++ix) {
        const typename S::Col b = s.col(ix);
        if (!b.ok) continue;
        acc += s.value(a, b);
      }
    }
    return acc / rc_avg_divisor<T>(gh, gw);
  }
  if (gh * gw == 0) {
    *win_y = -1;
    return (T)0;
  }
  T best = rc_lowest<T>();
  rc_index by = -1, bx = -1;
  for (rc_index iy = 0; iy < gh; ++iy) {
    const typename S::Row a = s.row(iy);
    for (rc_index ix = 0; ix < gw; ++ix) {
      const typename S::Col b = s.col(ix);
      const bool ok = a.ok && b.ok;
      const T v = ok ? s.value(a, b) : (T)0;
      if (v > best) {
        best = v;
        if (ok) {
          by = iy;
          bx = ix;
        } else {
          by = -2; /* an out-of-range sample leads: no gradient */
        }
      }
    }
  }
  *win_y = by < 0 ? -1 : by;
  *win_x = bx;
  return best;
}

/* Rounded, scaled corners of a RoI Pool RoI. */
template <typename T>
struct RcPoolRoi {
  rc_index xs, ys, xe, ye;
  RC_HD RcPoolRoi(const T* roi, T scale) {
    xs = static_cast<rc_index>(rc_round(roi[1] * scale));
    ys = static_cast<rc_index>(rc_round(roi[2] * scale));
    xe = static_cast<rc_index>(rc_round(roi[3] * scale));
    ye = static_cast<rc_index>(rc_round(roi[4] * scale));
  }
};

/* Max of one RoI Pool bin [hs, he) x [ws, we) of a plane: running max from
 * the lowest finite value, strict '>' (first maximum in row-major order
 * wins, NaN never wins); *arg = y * W + x of the winner; empty bin -> 0
 * with no winner (-1). */
template <typename T>
RC_HD T rc_pool_max(const T* plane, rc_index sy, rc_index sx, rc_index W,
                    rc_index hs, rc_index he, rc_index ws, rc_index we,
                    rc_index* arg) {
  *arg = -1;
  if (he <= hs || we <= ws) return (T)0;
  T best = rc_lowest<T>();
  rc_index a = -1;
  /* selects, not branches: on random data a branch per pixel mispredicts
   * (the recomputing RoI Pool backward spent most of its time there) */
  for (rc_index h = hs; h < he; ++h)
    for (rc_index w = ws; w < we; ++w) {
      const T v = plane[h * sy + w * sx];
      const bool gt = v > best;
      best = gt ? v : best;
      a = gt ? h * W + w : a;
    }
  *arg = a;
  return best;
}

}  // namespace roicore

#endif  // ROICORE_ROI_COMMON_H_
