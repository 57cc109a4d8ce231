/* roicore CPU kernels: Lane kernels of RoI Pool: forward and backward of one RoI over L channels at
 * once, bit-identical to cpu/reference_pool.h.
 */
#ifndef ROICORE_CPU_LANES_POOL_H_
#define ROICORE_CPU_LANES_POOL_H_

#include "roicore/cpu/lanes_sampled.h"

namespace roicore {
/* VB: bytes of the ISA's vectors (RcVecBytes). */
template <typename T, int L, int VB, bool FULL>
RC_AI void v_pool_fwd(const T* src, int nc, rc_index sy, rc_index sx,
                      const rc_index* hlo, const rc_index* hhi,
                      const rc_index* wlo, const rc_index* whi, rc_index PH,
                      rc_index PW, T* tile) {
  const int n = FULL ? L : nc;
  for (rc_index ph = 0; ph < PH; ++ph)
    for (rc_index pw = 0; pw < PW; ++pw) {
      T* dst = tile + (ph * PW + pw) * L;
      if (hhi[ph] <= hlo[ph] || whi[pw] <= wlo[pw]) {
        for (int l = 0; l < n; ++l) dst[l] = (T)0;
        continue;
      }
#if RC_LANE_VECTORS
      if (FULL) {
        typedef typename RcVec<T, VB>::type V;
        constexpr int VL = VB / static_cast<int>(sizeof(T)), NV = L / VL;
        V best[NV];
        for (int v = 0; v < NV; ++v) rc_vsplat<T, VB>(&best[v], rc_lowest<T>());
        const rc_index w0 = wlo[pw], w1 = whi[pw];
        for (rc_index h = hlo[ph]; h < hhi[ph]; ++h) {
          const T* row = src + h * sy;
          for (rc_index w = w0; w < w1; ++w) {
            const T* p = row + w * sx;
            for (int v = 0; v < NV; ++v) {
              V x;
              rc_vload<T, VB>(&x, p + v * VL);
              best[v] = x > best[v] ? x : best[v];
            }
          }
        }
        for (int v = 0; v < NV; ++v) rc_vstore<T, VB>(dst + v * VL, best[v]);
        continue;
      }
#endif
      T best[L];
      for (int l = 0; l < n; ++l) best[l] = rc_lowest<T>();
      for (rc_index h = hlo[ph]; h < hhi[ph]; ++h)
        for (rc_index w = wlo[pw]; w < whi[pw]; ++w) {
          const T* p = src + h * sy + w * sx;
#pragma omp simd
          for (int l = 0; l < n; ++l) best[l] = p[l] > best[l] ? p[l] : best[l];
        }
      for (int l = 0; l < n; ++l) dst[l] = best[l];
    }
}


/* Backward of one RoI: the winners are found in ip (the whole bin).  BAND:
 * only those at offsets [blo, bhi) land, at gp[offset - blo] (a row band of
 * the gradient), the others in the sink row at gp[bhi - blo] (branch free:
 * whether a lane's winner is in the band is data, not predictable); bon
 * marks the bin rows that reach the band.  Else the whole map (blo, bhi and
 * bon unused). */
template <typename T, int L, bool FULL, bool BAND>
RC_AI void v_pool_bwd(T* gp, const T* ip, int nc, rc_index sy, rc_index sx,
                      const rc_index* hlo, const rc_index* hhi,
                      const rc_index* wlo, const rc_index* whi, rc_index PH,
                      rc_index PW, const T* gtile, const unsigned char* bon,
                      rc_index blo, rc_index bhi) {
  const int n = FULL ? L : nc;
  for (rc_index ph = 0; ph < PH; ++ph) {
    if (BAND && !bon[ph]) continue;
    for (rc_index pw = 0; pw < PW; ++pw) {
      if (hhi[ph] <= hlo[ph] || whi[pw] <= wlo[pw]) continue;
      const T* gv = gtile + (ph * PW + pw) * L;
      /* The reference keeps the first cell (row-major) with v > best,
       * starting from lowest.  That is the first cell equal to the bin's
       * running max M, and no cell when M == lowest: two branch-free
       * passes, max then the smallest offset holding it (offsets grow in
       * row-major order). */
      T best[L];
      rc_index arg[L];
      const T lowest = rc_lowest<T>();
      const rc_index none = std::numeric_limits<rc_index>::max();
      for (int l = 0; l < n; ++l) {
        best[l] = lowest;
        arg[l] = none;
      }
      for (rc_index h = hlo[ph]; h < hhi[ph]; ++h)
        for (rc_index w = wlo[pw]; w < whi[pw]; ++w) {
          const T* p = ip + h * sy + w * sx;
#pragma omp simd
          for (int l = 0; l < n; ++l) best[l] = p[l] > best[l] ? p[l] : best[l];
        }
      for (rc_index h = hlo[ph]; h < hhi[ph]; ++h)
        for (rc_index w = wlo[pw]; w < whi[pw]; ++w) {
          const rc_index off = h * sy + w * sx;
          const T* p = ip + off;
#pragma omp simd
          for (int l = 0; l < n; ++l) {
            const rc_index cand = p[l] == best[l] ? off : none;
            arg[l] = cand < arg[l] ? cand : arg[l];
          }
        }
      if (BAND) {
        const rc_index span = bhi - blo;
        for (int l = 0; l < n; ++l) {
          const rc_index d = arg[l] - blo;
          const bool in = best[l] > lowest && d >= 0 && d < span;
          gp[(in ? d : span) + l] += gv[l];
        }
      } else {
        for (int l = 0; l < n; ++l)
          if (best[l] > lowest) gp[arg[l] + l] += gv[l];
      }
    }
  }
}
}  // namespace roicore

#endif  // ROICORE_CPU_LANES_POOL_H_
