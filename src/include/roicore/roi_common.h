/* roicore: the per-axis RoI arithmetic shared by the CPU (C++ through Cython)
 * and CUDA (NVRTC through CuPy) backends.
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

/* Kinds of sampled (bilinear) operator. */
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

}  // namespace roicore

#endif  // ROICORE_ROI_COMMON_H_
