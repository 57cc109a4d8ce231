/* roicore CUDA kernels: RoI Pool and the sampled ops (RoI Align, RoI Warp,
 * MNC RoI Warp), forward and backward, NCHW and NHWC.
 *
 * Compiled at run time by NVRTC through cupy.RawModule (roicore/_gpu.py).
 * The line including roi_common.h below is REPLACED by the header's text
 * before compilation (roicore/_cuda_source.py), so all per-element maths
 * (per axis and per bin: bilinear gather/scatter, avg/max rules, pool
 * max/argmax, strides, batch check, parameters, limits) is the CPU backend's,
 * character for character, and CuPy's binary cache key
 * (source text + options) covers the header.  No other #include: NVRTC has
 * no libc headers.
 *
 * Exactness: compiled with --fmad=false (no a*b+c contraction; the CPU
 * build uses -ffp-contract=off) and the same operation order per output
 * element as the CPU kernels (both call roi_common.h), so float32/float64 results are meant to be
 * bit-identical to the CPU backend (forward and deterministic backward).
 *
 * Every kernel is a grid-stride loop with 64-bit indices.  Every kernel
 * bounds-checks the batch index (out of range / NaN -> output 0, no
 * gradient) and refuses a RoI above the per-bin or per-side sampling limit
 * of roi_common.h (output 0, no gradient; the Python side raises before
 * launching when its RoI check is on), so no input can read or write out of
 * bounds.  Batch indices come as an exact int64 array (`batch`, one per RoI),
 * never from the rois cast to the compute dtype.
 *
 * Kernels (T = float | double, CL = channels_last):
 *   rc_roi_count<T>, rc_roi_csr<T>  RoIs grouped by image (CSR) for the
 *                              deterministic backward
 *   rc_pool_fwd<T, CL>         RoI Pool forward, one thread per output
 *   rc_pool_arg<T, CL>         winner (y*W + x, -1 none) per output
 *   rc_pool_fwd_arg<T, CL>     forward and winner in one pass (stored winners)
 *   rc_pool_bwd_atomic_idx<T, CL>  backward from stored winners, atomicAdd
 *   rc_pool_bwd_atomic<T, CL>  backward, atomicAdd scatter (fast)
 *   rc_pool_bwd_gather<T, CL>  backward, one thread per input element, no
 *                              atomics (deterministic; same summation order
 *                              as the CPU backend)
 *   rc_sampled_fwd / rc_sampled_arg / rc_sampled_bwd_atomic /
 *   rc_sampled_bwd_gather<T, CL>  the same for the sampled ops (RoI Align,
 *                              RoI Warp, MNC warp; the CUDA forward of RoI
 *                              Align is rc_sampled_fwd)
 */
#include "roicore/roi_common.h"

namespace roicore {

__device__ __forceinline__ void rc_atomic_add(float* p, float v) {
  atomicAdd(p, v);
}
__device__ __forceinline__ void rc_atomic_add(double* p, double v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 600
  unsigned long long* a = reinterpret_cast<unsigned long long*>(p);
  unsigned long long old = *a, assumed;
  do {
    assumed = old;
    old = atomicCAS(a, assumed,
                    __double_as_longlong(v + __longlong_as_double(assumed)));
  } while (assumed != old);
#else
  atomicAdd(p, v);
#endif
}

/* Element strides of the input (roi_common.h rc_strides). */
template <bool CL>
struct RcStrides {
  rc_index sn, sc, sy, sx;
  __device__ __forceinline__ RcStrides(rc_index C, rc_index H, rc_index W) {
    rc_strides(CL, C, H, W, &sn, &sc, &sy, &sx);
  }
};

/* atomicAdd, for RcBilinear::scatter. */
struct RcAtomicAdd {
  template <typename T>
  __device__ __forceinline__ void operator()(T* p, T v) const {
    rc_atomic_add(p, v);
  }
};

/* Output element o -> (k, c, ph, pw) and back (C-contiguous output). */
template <bool CL>
__device__ __forceinline__ void rc_out_coords(rc_index o, rc_index C,
                                              rc_index PH, rc_index PW,
                                              rc_index* k, rc_index* c,
                                              rc_index* ph, rc_index* pw) {
  if (CL) {
    *c = o % C; o /= C;
    *pw = o % PW; o /= PW;
    *ph = o % PH; *k = o / PH;
  } else {
    *pw = o % PW; o /= PW;
    *ph = o % PH; o /= PH;
    *c = o % C; *k = o / C;
  }
}

template <bool CL>
__device__ __forceinline__ rc_index rc_out_index(rc_index k, rc_index c,
                                                 rc_index ph, rc_index pw,
                                                 rc_index C, rc_index PH,
                                                 rc_index PW) {
  return CL ? ((k * PH + ph) * PW + pw) * C + c
            : ((k * C + c) * PH + ph) * PW + pw;
}

/* Input element i -> (n, c, y, x) (C-contiguous input). */
template <bool CL>
__device__ __forceinline__ void rc_in_coords(rc_index i, rc_index C,
                                             rc_index H, rc_index W,
                                             rc_index* n, rc_index* c,
                                             rc_index* y, rc_index* x) {
  if (CL) {
    *c = i % C; i /= C;
    *x = i % W; i /= W;
    *y = i % H; *n = i / H;
  } else {
    *x = i % W; i /= W;
    *y = i % H; i /= H;
    *c = i % C; *n = i / C;
  }
}

#define RC_GRID_STRIDE(i, total)                                        \
  for (rc_index i = static_cast<rc_index>(blockIdx.x) * blockDim.x +    \
                    threadIdx.x;                                        \
       i < (total);                                                     \
       i += static_cast<rc_index>(blockDim.x) * gridDim.x)

/* ------------------------------------------------------------------ */
/* RoI Pool helpers                                                     */
/* ------------------------------------------------------------------ */

/* Value and winner of output (k, c, ph, pw); n < 0 -> 0, no winner. */
template <typename T, bool CL>
__device__ __forceinline__ T rc_pool_out(const T* x, const T* rois,
                                         const rc_index* batch,
                                         rc_index N, rc_index C, rc_index H,
                                         rc_index W, rc_index PH, rc_index PW,
                                         T scale, int bins, rc_index k,
                                         rc_index c, rc_index ph, rc_index pw,
                                         rc_index* n_out, rc_index* arg) {
  const T* roi = rois + 5 * k;
  const rc_index n = rc_batch_index(batch, k, N);
  *n_out = n;
  *arg = -1;
  if (n < 0) return (T)0;
  const RcPoolRoi<T> r(roi, scale);
  rc_index hlo, hhi, wlo, whi;
  rc_pool_bin<T>(bins, r.ys, r.ye, ph, PH, H, &hlo, &hhi);
  rc_pool_bin<T>(bins, r.xs, r.xe, pw, PW, W, &wlo, &whi);
  const RcStrides<CL> st(C, H, W);
  return rc_pool_max(x + n * st.sn + c * st.sc, st.sy, st.sx, W, hlo, hhi,
                     wlo, whi, arg);
}

/* ------------------------------------------------------------------ */
/* Sampled-op helpers                                                   */
/* ------------------------------------------------------------------ */

/* Per-axis geometry of one RoI (roi_cpu.h sampled_geometry). */
template <typename T>
struct RcSampledRoi {
  T ys, bh, xs, bw;
  rc_index gh, gw;
  __device__ __forceinline__ RcSampledRoi(const SampledParams& sp,
                                          const T* roi, T scale, rc_index PH,
                                          rc_index PW) {
    rc_sampled_geometry<T>(sp, roi, scale, PH, PW, &ys, &bh, &gh, &xs, &bw,
                           &gw);
    big = rc_grid_too_large(gh, gw, PH, PW);
  }
  bool big;
  /* Above a sampling limit of roi_common.h: only reachable when the
   * Python-side check was skipped (output 0, no gradient). */
  __device__ __forceinline__ bool too_large() const { return big; }
};

/* One bilinear sample along one axis (roi_common.h rc_sample; lo/hi are
 * cell indices, not yet multiplied by the stride). */
template <typename T>
struct RcSample {
  rc_index lo, hi;
  T wl, wh;
  bool ok;
  RC_HD RcSample(int kind, T start, T bin, rc_index p, rc_index i,
                 rc_index grid, rc_index size) {
    ok = rc_sample<T>(kind, start, bin, p, i, grid, size, &lo, &hi, &wl, &wh);
  }
  __device__ __forceinline__ bool touches(rc_index v) const {
    return ok && (lo == v || hi == v);
  }
};

/* Sample (a, b) on a plane with strides sy, sx (roi_common.h RcBilinear). */
template <typename T>
RC_HD RcBilinear<T> rc_corners(const RcSample<T>& a, const RcSample<T>& b,
                               rc_index sy, rc_index sx) {
  return RcBilinear<T>(a.lo * sy, a.hi * sy, a.wh, a.wl, b.lo * sx, b.hi * sx,
                       b.wh, b.wl);
}

/* The samples of bin (ph, pw), computed per thread, for rc_sampled_bin. */
template <typename T>
struct RcThreadBin {
  typedef RcSample<T> Row;
  typedef RcSample<T> Col;
  const T* plane;
  rc_index sy, sx;
  int kind;
  const RcSampledRoi<T>& g;
  rc_index H, W, ph, pw;
  RC_HD Row row(rc_index iy) const {
    return Row(kind, g.ys, g.bh, ph, iy, g.gh, H);
  }
  RC_HD Col col(rc_index ix) const {
    return Col(kind, g.xs, g.bw, pw, ix, g.gw, W);
  }
  RC_HD T value(const Row& a, const Col& b) const {
    return rc_corners(a, b, sy, sx).gather(plane);
  }
};

/* Forward of one bin (roi_common.h rc_sampled_bin); *win = winning sample
 * (local iy * gw + ix) in max mode, -1 if none. */
template <typename T>
__device__ T rc_sampled_out(const T* plane, rc_index sy, rc_index sx,
                            const SampledParams& sp,
                            const RcSampledRoi<T>& g, rc_index H, rc_index W,
                            rc_index ph, rc_index pw, rc_index* win) {
  const RcThreadBin<T> s = {plane, sy, sx, sp.kind, g, H, W, ph, pw};
  rc_index wy = -1, wx = -1;
  const T v = rc_sampled_bin<T>(s, sp.max_mode, g.gh, g.gw, &wy, &wx);
  *win = wy >= 0 ? wy * g.gw + wx : -1;
  return v;
}

/* Conservative test: may a sample of bins [p0, p1) of this axis have a
 * corner on cell v?  False only when no sample can (so skipping is exact);
 * true means "check the samples one by one".  The exact sample coordinates
 * of bins [p0, p1) lie between start + p0*bin and start + p1*bin; the
 * computed ones differ from them by a few ulps of |start| + P*|bin|, far
 * below the margin.  NaN never rejects.  A sample with a corner on v has a
 * clamped coordinate max(s, 0) in [v-1, v+1), or >= v-1 when v is the last
 * cell. */
template <typename T>
__device__ __forceinline__ bool rc_may_touch(T start, T bin, rc_index p0,
                                             rc_index p1, rc_index P,
                                             rc_index v, rc_index size) {
  T a = start + static_cast<T>(p0) * bin;
  T b = start + static_cast<T>(p1) * bin;
  if (a > b) {
    const T t = a; a = b; b = t;
  }
  const T abs_s = start < (T)0 ? -start : start;
  const T abs_b = bin < (T)0 ? -bin : bin;
  const T m = (T)1e-3 * ((T)1 + abs_s + static_cast<T>(P + 1) * abs_b);
  a = a - m;
  b = b + m;
  if (v >= 2 && b < static_cast<T>(v - 1)) return false;
  if (v != size - 1 && a >= static_cast<T>(v + 1)) return false;
  return true;
}

}  // namespace roicore

using namespace roicore;

/* ==================================================================== */
/* Kernels                                                               */
/* ==================================================================== */

/* Deterministic backward: the RoIs of each image in increasing index order
 * (the CPU backend's stable argsort), as CSR (starts, order), built without
 * sorting, float atomics or a host round trip.  rc_roi_count: RoIs per
 * image (integer atomics: exact, order-independent). */
template <typename T>
__global__ void rc_roi_count(const T* __restrict__ rois,
                             const rc_index* __restrict__ batch, const rc_index K,
                             const rc_index N,
                             unsigned long long* __restrict__ count) {
  RC_GRID_STRIDE(k, K) {
    const rc_index b = rc_batch_index(batch, k, N);
    if (b >= 0) atomicAdd(count + b, 1ULL);
  }
}

/* One block of exactly RC_CSR_THREADS threads per image n (grid-stride over
 * images): starts[n] = count[0] + ... + count[n-1] (starts[N] by the block
 * of image N-1), then the indices of the image's RoIs, in increasing order,
 * at order[starts[n]...] (a block-wide prefix sum per chunk of RoIs). */
template <typename T>
__global__ void rc_roi_csr(const T* __restrict__ rois,
                           const rc_index* __restrict__ batch, const rc_index K,
                           const rc_index N,
                           const rc_index* __restrict__ count,
                           rc_index* __restrict__ starts,
                           rc_index* __restrict__ order) {
  __shared__ rc_index buf[RC_CSR_THREADS];
  __shared__ rc_index base;
  const int t = static_cast<int>(threadIdx.x);
  const int nt = static_cast<int>(blockDim.x);  /* RC_CSR_THREADS */
  for (rc_index n = blockIdx.x; n < N; n += gridDim.x) {
    rc_index part = 0;
    for (rc_index m = t; m < n; m += nt) part += count[m];
    buf[t] = part;
    __syncthreads();
    for (int off = nt / 2; off > 0; off >>= 1) {
      if (t < off) buf[t] += buf[t + off];
      __syncthreads();
    }
    if (t == 0) {
      base = buf[0];
      starts[n] = buf[0];
      if (n == N - 1) starts[N] = buf[0] + count[n];
    }
    __syncthreads();
    for (rc_index k0 = 0; k0 < K; k0 += nt) {
      const rc_index k = k0 + t;
      const rc_index flag =
          (k < K && rc_batch_index(batch, k, N) == n) ? 1 : 0;
      buf[t] = flag;
      __syncthreads();
      for (int off = 1; off < nt; off <<= 1) { /* inclusive scan */
        const rc_index v = t >= off ? buf[t - off] : 0;
        __syncthreads();
        buf[t] += v;
        __syncthreads();
      }
      if (flag) order[base + buf[t] - 1] = k;
      __syncthreads();
      if (t == nt - 1) base += buf[t];
      __syncthreads();
    }
  }
}

/* ------------------------------------------------------------ pool -- */
template <typename T, bool CL>
__global__ void rc_pool_fwd(const T* __restrict__ x, const T* __restrict__ rois,
                            const rc_index* __restrict__ batch,
                            T* __restrict__ out, const rc_index N,
                            const rc_index C, const rc_index H,
                            const rc_index W, const rc_index K,
                            const rc_index PH, const rc_index PW,
                            const T scale, const int bins) {
  RC_GRID_STRIDE(o, K * C * PH * PW) {
    rc_index k, c, ph, pw, n, arg;
    rc_out_coords<CL>(o, C, PH, PW, &k, &c, &ph, &pw);
    out[o] = rc_pool_out<T, CL>(x, rois, batch, N, C, H, W, PH, PW, scale, bins, k,
                                c, ph, pw, &n, &arg);
  }
}

template <typename T, bool CL>
__global__ void rc_pool_arg(const T* __restrict__ x, const T* __restrict__ rois,
                            const rc_index* __restrict__ batch,
                            rc_index* __restrict__ argmax, const rc_index N,
                            const rc_index C, const rc_index H,
                            const rc_index W, const rc_index K,
                            const rc_index PH, const rc_index PW,
                            const T scale, const int bins) {
  RC_GRID_STRIDE(o, K * C * PH * PW) {
    rc_index k, c, ph, pw, n, arg;
    rc_out_coords<CL>(o, C, PH, PW, &k, &c, &ph, &pw);
    rc_pool_out<T, CL>(x, rois, batch, N, C, H, W, PH, PW, scale, bins, k, c, ph, pw,
                       &n, &arg);
    argmax[o] = arg;
  }
}

/* Forward and winner of every output in one pass (stored winners). */
template <typename T, bool CL>
__global__ void rc_pool_fwd_arg(const T* __restrict__ x, const T* __restrict__ rois,
                                const rc_index* __restrict__ batch,
                                T* __restrict__ out, rc_index* __restrict__ argmax,
                                const rc_index N, const rc_index C, const rc_index H,
                                const rc_index W, const rc_index K,
                                const rc_index PH, const rc_index PW,
                                const T scale, const int bins) {
  RC_GRID_STRIDE(o, K * C * PH * PW) {
    rc_index k, c, ph, pw, n, arg;
    rc_out_coords<CL>(o, C, PH, PW, &k, &c, &ph, &pw);
    out[o] = rc_pool_out<T, CL>(x, rois, batch, N, C, H, W, PH, PW, scale, bins, k,
                                c, ph, pw, &n, &arg);
    argmax[o] = arg;
  }
}

/* Backward from stored winners, atomicAdd scatter; a winner outside
 * [0, H*W) or a RoI with an invalid batch index adds nothing. */
template <typename T, bool CL>
__global__ void rc_pool_bwd_atomic_idx(const T* __restrict__ grad_out,
                                       const rc_index* __restrict__ argmax,
                                       const rc_index* __restrict__ batch,
                                       T* __restrict__ grad_in, const rc_index N,
                                       const rc_index C, const rc_index H,
                                       const rc_index W, const rc_index K,
                                       const rc_index PH, const rc_index PW) {
  const RcStrides<CL> st(C, H, W);
  RC_GRID_STRIDE(o, K * C * PH * PW) {
    rc_index k, c, ph, pw;
    rc_out_coords<CL>(o, C, PH, PW, &k, &c, &ph, &pw);
    const rc_index n = rc_batch_index(batch, k, N);
    const rc_index arg = argmax[o];
    if (n < 0 || arg < 0 || arg >= H * W) continue;
    rc_atomic_add(grad_in + n * st.sn + c * st.sc + (arg / W) * st.sy +
                      (arg % W) * st.sx,
                  grad_out[o]);
  }
}

template <typename T, bool CL>
__global__ void rc_pool_bwd_atomic(const T* __restrict__ grad_out,
                                   const T* __restrict__ x,
                                   const T* __restrict__ rois,
                                   const rc_index* __restrict__ batch,
                                   T* __restrict__ grad_in, const rc_index N,
                                   const rc_index C, const rc_index H,
                                   const rc_index W, const rc_index K,
                                   const rc_index PH, const rc_index PW,
                                   const T scale, const int bins) {
  const RcStrides<CL> st(C, H, W);
  RC_GRID_STRIDE(o, K * C * PH * PW) {
    rc_index k, c, ph, pw, n, arg;
    rc_out_coords<CL>(o, C, PH, PW, &k, &c, &ph, &pw);
    rc_pool_out<T, CL>(x, rois, batch, N, C, H, W, PH, PW, scale, bins, k, c, ph, pw,
                       &n, &arg);
    if (arg < 0) continue;
    rc_atomic_add(grad_in + n * st.sn + c * st.sc + (arg / W) * st.sy +
                      (arg % W) * st.sx,
                  grad_out[o]);
  }
}

/* One thread per input element; RoIs of its image in CSR order (order /
 * batch_start), then (ph, pw): the CPU backend's summation order. */
template <typename T, bool CL>
__global__ void rc_pool_bwd_gather(const T* __restrict__ grad_out,
                                   const rc_index* __restrict__ argmax,
                                   const T* __restrict__ rois,
                                   const rc_index* __restrict__ batch,
                                   const rc_index* __restrict__ order,
                                   const rc_index* __restrict__ batch_start,
                                   T* __restrict__ grad_in, const rc_index N,
                                   const rc_index C, const rc_index H,
                                   const rc_index W, const rc_index K,
                                   const rc_index PH, const rc_index PW,
                                   const T scale, const int bins) {
  RC_GRID_STRIDE(i, N * C * H * W) {
    rc_index n, c, y, x;
    rc_in_coords<CL>(i, C, H, W, &n, &c, &y, &x);
    const rc_index me = y * W + x;
    T acc = 0;
    for (rc_index r = batch_start[n]; r < batch_start[n + 1]; ++r) {
      const rc_index k = order[r];
      if (k < 0 || k >= K) continue;
      const T* roi = rois + 5 * k;
      if (rc_batch_index(batch, k, N) != n) continue;
      const RcPoolRoi<T> q(roi, scale);
      /* bin bounds are monotone in the bin index: the union of the bins is
       * [lo(0), hi(P-1)) */
      rc_index lo0, hi0, loL, hiL;
      rc_pool_bin<T>(bins, q.ys, q.ye, 0, PH, H, &lo0, &hi0);
      rc_pool_bin<T>(bins, q.ys, q.ye, PH - 1, PH, H, &loL, &hiL);
      if (y < lo0 || y >= hiL) continue;
      rc_pool_bin<T>(bins, q.xs, q.xe, 0, PW, W, &lo0, &hi0);
      rc_pool_bin<T>(bins, q.xs, q.xe, PW - 1, PW, W, &loL, &hiL);
      if (x < lo0 || x >= hiL) continue;
      for (rc_index ph = 0; ph < PH; ++ph) {
        rc_index hlo, hhi;
        rc_pool_bin<T>(bins, q.ys, q.ye, ph, PH, H, &hlo, &hhi);
        if (y < hlo || y >= hhi) continue;
        for (rc_index pw = 0; pw < PW; ++pw) {
          rc_index wlo, whi;
          rc_pool_bin<T>(bins, q.xs, q.xe, pw, PW, W, &wlo, &whi);
          if (x < wlo || x >= whi) continue;
          const rc_index o = rc_out_index<CL>(k, c, ph, pw, C, PH, PW);
          if (argmax[o] == me) acc += grad_out[o];
        }
      }
    }
    grad_in[i] = acc;
  }
}

/* --------------------------------------------------------- sampled -- */
template <typename T, bool CL>
__global__ void rc_sampled_fwd(const T* __restrict__ x,
                               const T* __restrict__ rois,
                               const rc_index* __restrict__ batch, T* __restrict__ out,
                               const rc_index N, const rc_index C,
                               const rc_index H, const rc_index W,
                               const rc_index K, const rc_index PH,
                               const rc_index PW, const T scale,
                               const int kind, const int aligned,
                               const int max_mode, const int sampling_ratio) {
  const SampledParams sp = {kind, aligned != 0, max_mode != 0,
                              sampling_ratio};
  const RcStrides<CL> st(C, H, W);
  RC_GRID_STRIDE(o, K * C * PH * PW) {
    rc_index k, c, ph, pw;
    rc_out_coords<CL>(o, C, PH, PW, &k, &c, &ph, &pw);
    const T* roi = rois + 5 * k;
    const rc_index n = rc_batch_index(batch, k, N);
    if (n < 0) {
      out[o] = (T)0;
      continue;
    }
    const RcSampledRoi<T> g(sp, roi, scale, PH, PW);
    if (g.too_large()) {
      out[o] = (T)0;
      continue;
    }
    rc_index win;
    out[o] = rc_sampled_out<T>(x + n * st.sn + c * st.sc, st.sy, st.sx, sp, g,
                               H, W, ph, pw, &win);
  }
}

/* Winner of every output in max mode (local sample iy * gw + ix, -1 none). */
template <typename T, bool CL>
__global__ void rc_sampled_arg(const T* __restrict__ x,
                               const T* __restrict__ rois,
                               const rc_index* __restrict__ batch,
                               rc_index* __restrict__ winner,
                               const rc_index N, const rc_index C,
                               const rc_index H, const rc_index W,
                               const rc_index K, const rc_index PH,
                               const rc_index PW, const T scale,
                               const int kind, const int aligned,
                               const int max_mode, const int sampling_ratio) {
  const SampledParams sp = {kind, aligned != 0, max_mode != 0,
                              sampling_ratio};
  const RcStrides<CL> st(C, H, W);
  RC_GRID_STRIDE(o, K * C * PH * PW) {
    rc_index k, c, ph, pw;
    rc_out_coords<CL>(o, C, PH, PW, &k, &c, &ph, &pw);
    const T* roi = rois + 5 * k;
    const rc_index n = rc_batch_index(batch, k, N);
    rc_index win = -1;
    if (n >= 0) {
      const RcSampledRoi<T> g(sp, roi, scale, PH, PW);
      if (!g.too_large())
        rc_sampled_out<T>(x + n * st.sn + c * st.sc, st.sy, st.sx, sp, g, H,
                          W, ph, pw, &win);
    }
    winner[o] = win;
  }
}

template <typename T, bool CL>
__global__ void rc_sampled_bwd_atomic(
    const T* __restrict__ grad_out, const T* __restrict__ x,
    const T* __restrict__ rois,
    const rc_index* __restrict__ batch, T* __restrict__ grad_in, const rc_index N,
    const rc_index C, const rc_index H, const rc_index W, const rc_index K,
    const rc_index PH, const rc_index PW, const T scale, const int kind,
    const int aligned, const int max_mode, const int sampling_ratio) {
  const SampledParams sp = {kind, aligned != 0, max_mode != 0,
                              sampling_ratio};
  const RcStrides<CL> st(C, H, W);
  RC_GRID_STRIDE(o, K * C * PH * PW) {
    rc_index k, c, ph, pw;
    rc_out_coords<CL>(o, C, PH, PW, &k, &c, &ph, &pw);
    const T* roi = rois + 5 * k;
    const rc_index n = rc_batch_index(batch, k, N);
    if (n < 0) continue;
    const RcSampledRoi<T> g(sp, roi, scale, PH, PW);
    if (g.too_large()) continue;
    const T gv = grad_out[o];
    T* gp = grad_in + n * st.sn + c * st.sc;
    if (sp.max_mode) {
      rc_index win;
      rc_sampled_out<T>(x + n * st.sn + c * st.sc, st.sy, st.sx, sp, g, H, W,
                        ph, pw, &win);
      if (win < 0) continue;
      const RcSample<T> a(sp.kind, g.ys, g.bh, ph, win / g.gw, g.gh, H);
      const RcSample<T> b(sp.kind, g.xs, g.bw, pw, win % g.gw, g.gw, W);
      rc_corners(a, b, st.sy, st.sx).scatter(gp, gv, (T)1, RcAtomicAdd());
      continue;
    }
    const T div = rc_avg_divisor<T>(g.gh, g.gw);
    for (rc_index iy = 0; iy < g.gh; ++iy) {
      const RcSample<T> a(sp.kind, g.ys, g.bh, ph, iy, g.gh, H);
      if (!a.ok) continue;
      for (rc_index ix = 0; ix < g.gw; ++ix) {
        const RcSample<T> b(sp.kind, g.xs, g.bw, pw, ix, g.gw, W);
        if (!b.ok) continue;
        rc_corners(a, b, st.sy, st.sx).scatter(gp, gv, div, RcAtomicAdd());
      }
    }
  }
}

/* One thread per input element; RoIs of its image in CSR order, then
 * (ph, pw, iy, ix, corner): the CPU backend's summation order.  `winner`
 * (from rc_sampled_arg) is read in max mode only. */
template <typename T, bool CL>
__global__ void rc_sampled_bwd_gather(
    const T* __restrict__ grad_out, const rc_index* __restrict__ winner,
    const T* __restrict__ rois,
    const rc_index* __restrict__ batch, const rc_index* __restrict__ order,
    const rc_index* __restrict__ batch_start, T* __restrict__ grad_in,
    const rc_index N, const rc_index C, const rc_index H, const rc_index W,
    const rc_index K, const rc_index PH, const rc_index PW, const T scale,
    const int kind, const int aligned, const int max_mode,
    const int sampling_ratio) {
  const SampledParams sp = {kind, aligned != 0, max_mode != 0,
                              sampling_ratio};
  RC_GRID_STRIDE(i, N * C * H * W) {
    rc_index n, c, y, x;
    rc_in_coords<CL>(i, C, H, W, &n, &c, &y, &x);
    T acc = 0;
    for (rc_index r = batch_start[n]; r < batch_start[n + 1]; ++r) {
      const rc_index k = order[r];
      if (k < 0 || k >= K) continue;
      const T* roi = rois + 5 * k;
      if (rc_batch_index(batch, k, N) != n) continue;
      const RcSampledRoi<T> g(sp, roi, scale, PH, PW);
      if (g.too_large()) continue;
      if (!rc_may_touch<T>(g.ys, g.bh, 0, PH, PH, y, H)) continue;
      if (!rc_may_touch<T>(g.xs, g.bw, 0, PW, PW, x, W)) continue;
      const T div = rc_avg_divisor<T>(g.gh, g.gw);
      for (rc_index ph = 0; ph < PH; ++ph) {
        if (!rc_may_touch<T>(g.ys, g.bh, ph, ph + 1, PH, y, H)) continue;
        for (rc_index pw = 0; pw < PW; ++pw) {
          if (!rc_may_touch<T>(g.xs, g.bw, pw, pw + 1, PW, x, W)) continue;
          const rc_index o = rc_out_index<CL>(k, c, ph, pw, C, PH, PW);
          const T gv = grad_out[o];
          if (sp.max_mode) {
            const rc_index win = winner[o];
            if (win < 0) continue;
            const RcSample<T> a(sp.kind, g.ys, g.bh, ph, win / g.gw, g.gh, H);
            if (!a.touches(y)) continue;
            const RcSample<T> b(sp.kind, g.xs, g.bw, pw, win % g.gw, g.gw, W);
            if (!b.touches(x)) continue;
            rc_corners(a, b, 1, 1).gather_grad(&acc, y, x, gv, (T)1);
            continue;
          }
          for (rc_index iy = 0; iy < g.gh; ++iy) {
            const RcSample<T> a(sp.kind, g.ys, g.bh, ph, iy, g.gh, H);
            if (!a.touches(y)) continue;
            for (rc_index ix = 0; ix < g.gw; ++ix) {
              const RcSample<T> b(sp.kind, g.xs, g.bw, pw, ix, g.gw, W);
              if (!b.touches(x)) continue;
              rc_corners(a, b, 1, 1).gather_grad(&acc, y, x, gv, div);
            }
          }
        }
      }
    }
    grad_in[i] = acc;
  }
}
