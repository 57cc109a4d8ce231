/* roicore CPU kernels: Lane kernels of the sampled ops (RoI Align, RoI Warp, MNC warp): forward and
 * backward of one RoI over L channels at once, bit-identical to
 * cpu/reference_sampled.h.
 */
#ifndef ROICORE_CPU_LANES_SAMPLED_H_
#define ROICORE_CPU_LANES_SAMPLED_H_

#include "roicore/cpu/lanes.h"

namespace roicore {
/* --- lanes as native vectors ---------------------------------------------
 * A channel block's L lanes as L / VL vectors of the ISA's width (VB bytes,
 * GCC/Clang vector types) in a small array that the compiler keeps in
 * registers: a T[L] array updated by an `omp simd` loop went through the
 * stack on every pixel (a store and a reload per vector), and one L-wide
 * vector type was split into scalars.  The operations are the scalar ones,
 * lane by lane, so results do not change. */
template <int ISA>
struct RcVecBytes {
  static constexpr int value = ISA >= RC_ISA_AVX512 ? 64
                               : ISA == RC_ISA_AVX2  ? 32
                                                     : 16;
};

#if defined(__GNUC__) || defined(__clang__)
#define RC_LANE_VECTORS 1
template <typename T, int VB>
struct RcVec {
  typedef T type __attribute__((vector_size(VB)));
  /* the same, for unaligned loads and stores through any T* */
  typedef T unaligned
      __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));
};

template <typename T, int VB>
RC_AI void rc_vload(typename RcVec<T, VB>::type* v, const T* p) {
  *v = *reinterpret_cast<const typename RcVec<T, VB>::unaligned*>(p);
}

template <typename T, int VB>
RC_AI void rc_vstore(T* p, const typename RcVec<T, VB>::type& v) {
  *reinterpret_cast<typename RcVec<T, VB>::unaligned*>(p) = v;
}

template <typename T, int VB>
RC_AI void rc_vsplat(typename RcVec<T, VB>::type* v, T x) {
  T a[VB / sizeof(T)];
  for (size_t l = 0; l < VB / sizeof(T); ++l) a[l] = x;
  rc_vload<T, VB>(v, a);
}
#else
#define RC_LANE_VECTORS 0
#endif

/* --- forward of one RoI, L lanes --------------------------------------- */
/* src: lane view of one (image, channel block); the tables hold offsets
 * already multiplied by the view's strides.  FULL: n == L at compile time. */
template <typename T, int L, int VB, bool FULL>
RC_AI void v_sampled_fwd(const T* src, int nc, const SampleTab<T>& ty,
                         const SampleTab<T>& tx, rc_index PH, rc_index PW,
                         bool max_mode, T* tile) {
  const int n = FULL ? L : nc;
  const rc_index gh = ty.grid, gw = tx.grid;
  const rc_index cnt = gh * gw;
  const T div = rc_avg_divisor<T>(gh, gw);
  T inv = (T)1;
  const bool pow2 = rc_pow2_recip<T>(cnt > 1 ? cnt : 1, &inv);
  for (rc_index ph = 0; ph < PH; ++ph)
    for (rc_index pw = 0; pw < PW; ++pw) {
      T acc[L];
      T* dst = tile + (ph * PW + pw) * L;
#if RC_LANE_VECTORS
      if (FULL && !max_mode) { /* the loop below, sums in registers */
        typedef typename RcVec<T, VB>::type V;
        constexpr int VL = VB / static_cast<int>(sizeof(T)), NV = L / VL;
        V sum[NV];
        for (int v = 0; v < NV; ++v) rc_vsplat<T, VB>(&sum[v], (T)0);
        for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
          if (!ty.ok[iy]) continue;
          const T hy = ty.wh[iy], ly = ty.wl[iy];
          const T* r0 = src + ty.lo[iy];
          const T* r1 = src + ty.hi[iy];
          for (rc_index ix = pw * gw; ix < (pw + 1) * gw; ++ix) {
            if (!tx.ok[ix]) continue;
            T w1, w2, w3, w4;
            rc_bilinear_weights(hy, ly, tx.wh[ix], tx.wl[ix], &w1, &w2, &w3,
                                &w4);
            const T* p1 = r0 + tx.lo[ix];
            const T* p2 = r0 + tx.hi[ix];
            const T* p3 = r1 + tx.lo[ix];
            const T* p4 = r1 + tx.hi[ix];
            for (int v = 0; v < NV; ++v) {
              V a, b, c, d;
              rc_vload<T, VB>(&a, p1 + v * VL);
              rc_vload<T, VB>(&b, p2 + v * VL);
              rc_vload<T, VB>(&c, p3 + v * VL);
              rc_vload<T, VB>(&d, p4 + v * VL);
              sum[v] += w1 * a + w2 * b + w3 * c + w4 * d;
            }
          }
        }
        for (int v = 0; v < NV; ++v)
          rc_vstore<T, VB>(dst + v * VL, pow2 ? sum[v] * inv : sum[v] / div);
        continue;
      }
#endif
      if (!max_mode) {
        for (int l = 0; l < n; ++l) acc[l] = (T)0;
        for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
          if (!ty.ok[iy]) continue;
          const T hy = ty.wh[iy], ly = ty.wl[iy];
          const T* r0 = src + ty.lo[iy];
          const T* r1 = src + ty.hi[iy];
          for (rc_index ix = pw * gw; ix < (pw + 1) * gw; ++ix) {
            if (!tx.ok[ix]) continue;
            const T hx = tx.wh[ix], lx = tx.wl[ix];
            T w1, w2, w3, w4;
            rc_bilinear_weights(hy, ly, hx, lx, &w1, &w2, &w3, &w4);
            const T* p1 = r0 + tx.lo[ix];
            const T* p2 = r0 + tx.hi[ix];
            const T* p3 = r1 + tx.lo[ix];
            const T* p4 = r1 + tx.hi[ix];
#pragma omp simd
            for (int l = 0; l < n; ++l)
              acc[l] += w1 * p1[l] + w2 * p2[l] + w3 * p3[l] + w4 * p4[l];
          }
        }
        if (pow2)
          for (int l = 0; l < n; ++l) dst[l] = acc[l] * inv;
        else
          for (int l = 0; l < n; ++l) dst[l] = acc[l] / div;
        continue;
      }
      /* max: an out-of-range sample is the value 0 and takes part */
      if (cnt == 0) {
        for (int l = 0; l < n; ++l) dst[l] = (T)0;
        continue;
      }
      for (int l = 0; l < n; ++l) acc[l] = rc_lowest<T>();
      for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
        const T hy = ty.wh[iy], ly = ty.wl[iy];
        const T* r0 = src + ty.lo[iy];
        const T* r1 = src + ty.hi[iy];
        for (rc_index ix = pw * gw; ix < (pw + 1) * gw; ++ix) {
          if (ty.ok[iy] && tx.ok[ix]) {
            const T hx = tx.wh[ix], lx = tx.wl[ix];
            T w1, w2, w3, w4;
            rc_bilinear_weights(hy, ly, hx, lx, &w1, &w2, &w3, &w4);
            const T* p1 = r0 + tx.lo[ix];
            const T* p2 = r0 + tx.hi[ix];
            const T* p3 = r1 + tx.lo[ix];
            const T* p4 = r1 + tx.hi[ix];
#pragma omp simd
            for (int l = 0; l < n; ++l) {
              const T v = w1 * p1[l] + w2 * p2[l] + w3 * p3[l] + w4 * p4[l];
              acc[l] = v > acc[l] ? v : acc[l];
            }
          } else {
            for (int l = 0; l < n; ++l) acc[l] = (T)0 > acc[l] ? (T)0 : acc[l];
          }
        }
      }
      for (int l = 0; l < n; ++l) dst[l] = acc[l];
    }
}



/* Scatter the gradient of one RoI into the lane view gp (and read the input
 * view ip for the max mode).  The scatter's row offsets are sylo / syhi
 * (ty.lo / ty.hi, or for a row band of the gradient those remapped into the
 * band, rows outside it pointing at a sink row); the max mode reads ip
 * through ty.lo / ty.hi.  The average skips the sample rows with yok[iy]
 * zero (ty.ok, or for a band also those with no corner in it).  bon (null:
 * all) marks the bin rows that can reach the band; the others are skipped. */
template <typename T, int L, bool FULL>
RC_AI void v_sampled_bwd(T* gp, const T* ip, int nc, const SampleTab<T>& ty,
                         const SampleTab<T>& tx, rc_index PH, rc_index PW,
                         bool max_mode, const T* gtile, const rc_index* sylo,
                         const rc_index* syhi, const unsigned char* yok,
                         const unsigned char* bon) {
  const int n = FULL ? L : nc;
  const rc_index gh = ty.grid, gw = tx.grid;
  const rc_index cnt = gh * gw;
  const T div = rc_avg_divisor<T>(gh, gw);
  T inv = (T)1;
  const bool pow2 = rc_pow2_recip<T>(cnt > 1 ? cnt : 1, &inv);
  for (rc_index ph = 0; ph < PH; ++ph) {
    if (bon && !bon[ph]) continue;
    for (rc_index pw = 0; pw < PW; ++pw) {
      const T* gv = gtile + (ph * PW + pw) * L;
      if (!max_mode) {
        for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
          if (!yok[iy]) continue;
          const T hy = ty.wh[iy], ly = ty.wl[iy];
          T* r0 = gp + sylo[iy];
          T* r1 = gp + syhi[iy];
          for (rc_index ix = pw * gw; ix < (pw + 1) * gw; ++ix) {
            if (!tx.ok[ix]) continue;
            const T hx = tx.wh[ix], lx = tx.wl[ix];
            T w1, w2, w3, w4;
            rc_bilinear_weights(hy, ly, hx, lx, &w1, &w2, &w3, &w4);
            /* one loop per corner: corners may coincide at the border, and
             * the reference adds them in this order */
            T* q1 = r0 + tx.lo[ix];
            T* q2 = r0 + tx.hi[ix];
            T* q3 = r1 + tx.lo[ix];
            T* q4 = r1 + tx.hi[ix];
            if (pow2) {
#pragma omp simd
              for (int l = 0; l < n; ++l) q1[l] += gv[l] * w1 * inv;
#pragma omp simd
              for (int l = 0; l < n; ++l) q2[l] += gv[l] * w2 * inv;
#pragma omp simd
              for (int l = 0; l < n; ++l) q3[l] += gv[l] * w3 * inv;
#pragma omp simd
              for (int l = 0; l < n; ++l) q4[l] += gv[l] * w4 * inv;
            } else {
#pragma omp simd
              for (int l = 0; l < n; ++l) q1[l] += gv[l] * w1 / div;
#pragma omp simd
              for (int l = 0; l < n; ++l) q2[l] += gv[l] * w2 / div;
#pragma omp simd
              for (int l = 0; l < n; ++l) q3[l] += gv[l] * w3 / div;
#pragma omp simd
              for (int l = 0; l < n; ++l) q4[l] += gv[l] * w4 / div;
            }
          }
        }
        continue;
      }
      if (cnt == 0) continue;
      T best[L];
      rc_index by[L], bx[L];
      for (int l = 0; l < n; ++l) {
        best[l] = rc_lowest<T>();
        by[l] = -1;
        bx[l] = -1;
      }
      for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
        const T hy = ty.wh[iy], ly = ty.wl[iy];
        const T* r0 = ip + ty.lo[iy];
        const T* r1 = ip + ty.hi[iy];
        for (rc_index ix = pw * gw; ix < (pw + 1) * gw; ++ix) {
          if (ty.ok[iy] && tx.ok[ix]) {
            const T hx = tx.wh[ix], lx = tx.wl[ix];
            T w1, w2, w3, w4;
            rc_bilinear_weights(hy, ly, hx, lx, &w1, &w2, &w3, &w4);
            const T* p1 = r0 + tx.lo[ix];
            const T* p2 = r0 + tx.hi[ix];
            const T* p3 = r1 + tx.lo[ix];
            const T* p4 = r1 + tx.hi[ix];
            for (int l = 0; l < n; ++l) {
              const T v = w1 * p1[l] + w2 * p2[l] + w3 * p3[l] + w4 * p4[l];
              if (v > best[l]) {
                best[l] = v;
                by[l] = iy;
                bx[l] = ix;
              }
            }
          } else {
            for (int l = 0; l < n; ++l)
              if ((T)0 > best[l]) {
                best[l] = (T)0;
                by[l] = -2; /* an out-of-range sample leads: no gradient */
              }
          }
        }
      }
      for (int l = 0; l < n; ++l) {
        if (by[l] < 0) continue;
        const rc_index wy = by[l], wx = bx[l];
        const T hy = ty.wh[wy], ly = ty.wl[wy], hx = tx.wh[wx], lx = tx.wl[wx];
        T w1, w2, w3, w4;
        rc_bilinear_weights(hy, ly, hx, lx, &w1, &w2, &w3, &w4);
        const T gval = gv[l];
        T* q = gp + l;
        q[sylo[wy] + tx.lo[wx]] += gval * w1 / (T)1;
        q[sylo[wy] + tx.hi[wx]] += gval * w2 / (T)1;
        q[syhi[wy] + tx.lo[wx]] += gval * w3 / (T)1;
        q[syhi[wy] + tx.hi[wx]] += gval * w4 / (T)1;
      }
    }
  }
}
}  // namespace roicore

#endif  // ROICORE_CPU_LANES_SAMPLED_H_
