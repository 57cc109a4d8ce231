/* roicore CPU kernels: The specification of RoI Pool on the CPU: bin bounds, per-RoI costs and the
 * scalar reference kernels, one channel at a time.  roi_pool_forward /
 * roi_pool_backward in cpu/driver.h are the entry points.
 */
#ifndef ROICORE_CPU_REFERENCE_POOL_H_
#define ROICORE_CPU_REFERENCE_POOL_H_

#include "roicore/cpu/reference_sampled.h"

namespace roicore {
/* ------------------------------------------------------------------ */
/* RoI Pool                                                             */
/* ------------------------------------------------------------------ */
template <typename T>
inline void pool_tabs(int bins, const T* roi, T scale, const Geom& g,
                      rc_index* hlo, rc_index* hhi, rc_index* wlo,
                      rc_index* whi) {
  const RcPoolRoi<T> r(roi, scale);
  for (rc_index ph = 0; ph < g.PH; ++ph)
    rc_pool_bin<T>(bins, r.ys, r.ye, ph, g.PH, g.H, hlo + ph, hhi + ph);
  for (rc_index pw = 0; pw < g.PW; ++pw)
    rc_pool_bin<T>(bins, r.xs, r.xe, pw, g.PW, g.W, wlo + pw, whi + pw);
}

/* tab: 2 * (PH + PW) scratch entries. */
template <typename T>
inline void pool_costs(int bins, const T* rois, T scale, const Geom& g,
                       rc_index* tab, double* cost) {
  rc_index *hlo = tab, *hhi = tab + g.PH, *wlo = tab + 2 * g.PH,
           *whi = tab + 2 * g.PH + g.PW;
  for (rc_index k = 0; k < g.K; ++k) {
    pool_tabs<T>(bins, rois + 5 * k, scale, g, hlo, hhi, wlo, whi);
    double sh = 0, sw = 0;
    for (rc_index p = 0; p < g.PH; ++p)
      sh += static_cast<double>(hhi[p] - hlo[p]);
    for (rc_index p = 0; p < g.PW; ++p)
      sw += static_cast<double>(whi[p] - wlo[p]);
    cost[k] = sh * sw + static_cast<double>(g.PH * g.PW + g.PH + g.PW);
  }
}

/* Per-RoI costs of RoI Pool (K doubles, then `extra` more); null: no memory. */
template <typename T>
inline double* pool_cost_array(int bins, const T* rois, T scale,
                               const Geom& g, rc_index extra) {
  double* cost = static_cast<double*>(
      std::malloc(sizeof(double) * static_cast<size_t>(g.K + extra + 1)));
  rc_index* tab = static_cast<rc_index*>(
      std::malloc(sizeof(rc_index) * 2 * static_cast<size_t>(g.PH + g.PW) + 8));
  if (cost && tab) pool_costs<T>(bins, rois, scale, g, tab, cost);
  std::free(tab);
  if (!tab) {
    std::free(cost);
    return nullptr;
  }
  return cost;
}

/* Max of one bin; *arg = flat (y*W + x) pixel of the winner, -1 if none.
 * Running max starts at the lowest finite value (torchvision: -FLT_MAX),
 * strict '>' so the first maximum in row-major order wins and NaN never
 * wins; an empty bin gives 0. */
template <typename T>
inline T pool_bin(const T* plane, const Strides<T>& st, rc_index W,
                  rc_index hs, rc_index he, rc_index ws, rc_index we,
                  rc_index* arg) {
  return rc_pool_max<T>(plane, st.sy, st.sx, W, hs, he, ws, we, arg);
}

template <typename T>
int pool_forward_reference(const T* in, const T* rois, T* out, const Geom& g,
                           T scale, int bins, int nthreads) {
  double* rcost = pool_cost_array<T>(bins, rois, scale, g, 0);
  if (!rcost) return RC_ERR_NOMEM;
  const Strides<T> st(g);
  const rc_index cb = rc_channel_block_for(
      g.C, g.K, nthreads < 1 ? 1 : nthreads, rcost, g.K);
  const rc_index nblk = (g.C + cb - 1) / cb;
  const rc_index items = g.K * nblk;
  int err = 0;
  const int nt_all = rc_threads(nthreads, items);
  const auto item_cost = [&](rc_index it) {
    const rc_index c0 = (it % nblk) * cb;
    return rcost[it / nblk] *
           static_cast<double>((c0 + cb < g.C ? c0 + cb : g.C) - c0);
  };
  for (rc_index i0 = 0; i0 < items && !err;) {
    const rc_index i1 = rc_chunk_end(i0, items, nt_all, item_cost);
    const int nt = rc_threads(nt_all, i1 - i0);
#pragma omp parallel num_threads(nt)
    {
      rc_index* tab = static_cast<rc_index*>(
          std::malloc(sizeof(rc_index) * 2 * static_cast<size_t>(g.PH + g.PW) +
                      sizeof(T) * static_cast<size_t>(cb)));
      if (!tab) {
#pragma omp atomic write
        err = 1;
      }
#pragma omp for schedule(dynamic, 1)
      for (rc_index it = i0; it < i1; ++it) {
        if (!tab) continue;
        const rc_index k = it / nblk;
        const rc_index c0 = (it % nblk) * cb;
        const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
        const T* roi = rois + 5 * k;
        T* o = out + k * st.on;
        const rc_index n = rc_batch(g, k);
        rc_index *hlo = tab, *hhi = tab + g.PH, *wlo = tab + 2 * g.PH,
                 *whi = tab + 2 * g.PH + g.PW;
        T* best = reinterpret_cast<T*>(tab + 2 * (g.PH + g.PW));
        if (n >= 0) pool_tabs<T>(bins, roi, scale, g, hlo, hhi, wlo, whi);
        const T* base = in + (n < 0 ? 0 : n) * st.sn;
        for (rc_index ph = 0; ph < g.PH; ++ph)
          for (rc_index pw = 0; pw < g.PW; ++pw) {
            T* dst = o + ph * st.oy + pw * st.ox;
            if (n < 0 || hhi[ph] <= hlo[ph] || whi[pw] <= wlo[pw]) {
              for (rc_index c = c0; c < c1; ++c) dst[c * st.oc] = (T)0;
              continue;
            }
            if (!g.channels_last) {
              for (rc_index c = c0; c < c1; ++c) {
                rc_index a;
                dst[c * st.oc] = pool_bin(base + c * st.sc, st, g.W, hlo[ph],
                                          hhi[ph], wlo[pw], whi[pw], &a);
              }
            } else {
              const rc_index nc = c1 - c0;
              for (rc_index c = 0; c < nc; ++c)
                best[c] = rc_lowest<T>();
              for (rc_index h = hlo[ph]; h < hhi[ph]; ++h)
                for (rc_index w = wlo[pw]; w < whi[pw]; ++w) {
                  const T* p = base + h * st.sy + w * st.sx + c0;
#pragma omp simd
                  for (rc_index c = 0; c < nc; ++c)
                    best[c] = p[c] > best[c] ? p[c] : best[c];
                }
              for (rc_index c = 0; c < nc; ++c) dst[c0 + c] = best[c];
            }
          }
      }
      std::free(tab);
    }
    i0 = i1;
    if (!err && i0 < items && rc_interrupted(g)) err = RC_ERR_INTERRUPTED;
  }
  std::free(rcost);
  return err;
}

template <typename T>
int pool_backward_reference(const T* grad_out, const T* in, const T* rois,
                            const rc_index* order, const rc_index* batch_start,
                            T* grad_in, const Geom& g, T scale, int bins,
                            int nthreads) {
  double* rcost = pool_cost_array<T>(bins, rois, scale, g, g.N);
  if (!rcost) return RC_ERR_NOMEM;
  const Strides<T> st(g);
  const rc_index cb = rc_channel_block_for(
      g.C, g.N, nthreads < 1 ? 1 : nthreads, rcost, g.K);
  const rc_index nblk = (g.C + cb - 1) / cb;
  RcSegs sg;
  if (!rc_segments(g, order, batch_start, rcost, static_cast<double>(cb), 0.0,
                   &sg)) {
    std::free(rcost);
    return RC_ERR_NOMEM;
  }
  int err = 0;
  const int nt_all = rc_threads(nthreads, g.N * nblk);
  for (rc_index t = 0; t < sg.rounds && !err; ++t) {
    const rc_index items = rc_round_images(g, &sg, t) * nblk;
    const auto item_cost = [&](rc_index it) {
      const rc_index c0 = (it % nblk) * cb;
      return sg.cost[sg.ptr[sg.imgs[it / nblk]] + t] *
             static_cast<double>((c0 + cb < g.C ? c0 + cb : g.C) - c0);
    };
    for (rc_index i0 = 0; i0 < items && !err;) {
      const rc_index i1 = rc_chunk_end(i0, items, nt_all, item_cost);
      const int nt = rc_threads(nt_all, i1 - i0);
#pragma omp parallel num_threads(nt)
      {
        rc_index* tab = static_cast<rc_index*>(
            std::malloc(sizeof(rc_index) * 2 *
                        static_cast<size_t>(g.PH + g.PW)));
        if (!tab) {
#pragma omp atomic write
          err = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (rc_index it = i0; it < i1; ++it) {
          if (!tab) continue;
          const rc_index n = sg.imgs[it / nblk];
          const rc_index c0 = (it % nblk) * cb;
          const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
          rc_index *hlo = tab, *hhi = tab + g.PH, *wlo = tab + 2 * g.PH,
                   *whi = tab + 2 * g.PH + g.PW;
          const T* ibase = in + n * st.sn;
          T* gbase = grad_in + n * st.sn;
          rc_index r0, r1;
          rc_segment(sg, batch_start, n, t, &r0, &r1);
          for (rc_index r = r0; r < r1; ++r) {
            const rc_index k = order[r];
            const T* roi = rois + 5 * k;
            if (rc_batch(g, k) != n) continue;
            pool_tabs<T>(bins, roi, scale, g, hlo, hhi, wlo, whi);
            const T* go = grad_out + k * st.on;
            for (rc_index c = c0; c < c1; ++c)
              for (rc_index ph = 0; ph < g.PH; ++ph)
                for (rc_index pw = 0; pw < g.PW; ++pw) {
                  rc_index a;
                  pool_bin(ibase + c * st.sc, st, g.W, hlo[ph], hhi[ph],
                           wlo[pw], whi[pw], &a);
                  /* y * sy + x * sx == a * sx: sy == W * sx in both layouts
                   * (no integer division per bin) */
                  if (a >= 0)
                    gbase[c * st.sc + a * st.sx] +=
                        go[c * st.oc + ph * st.oy + pw * st.ox];
                }
          }
        }
        std::free(tab);
      }
      i0 = i1;
      if (!err && (i0 < items || t + 1 < sg.rounds) && rc_interrupted(g))
        err = RC_ERR_INTERRUPTED;
    }
  }
  std::free(sg.mem);
  std::free(rcost);
  return err;
}
}  // namespace roicore

#endif  // ROICORE_CPU_REFERENCE_POOL_H_
