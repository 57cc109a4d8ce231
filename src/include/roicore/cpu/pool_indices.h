/* roicore CPU kernels: RoI Pool with stored winners.  The forward also
 * writes each output element's winner (y * W + x in its image and channel
 * plane, -1 for an empty bin or no winner, as torchvision's argmax), and the
 * backward scatters grad_out through them instead of recomputing the maxima:
 * per (image, channel) plane, RoIs in their original order, bins row-major --
 * the additions of pool_backward_reference in the same order, so the gradient
 * is bit-identical to pool_backward for any thread count.  The winners are
 * int32 (idx_bytes 4) when H * W fits, else int64 (idx_bytes 8).
 */
#ifndef ROICORE_CPU_POOL_INDICES_H_
#define ROICORE_CPU_POOL_INDICES_H_

#include "roicore/cpu/reference_pool.h"

namespace roicore {

/* `in` is always NHWC (the caller transposes an NCHW map): an item is a RoI
 * and a block of up to 64 channels, the running max and its winner kept per
 * channel in lanes (strict '>', row-major: rc_pool_max's rules).  `out` and
 * `idx` have g's layout. */
template <typename T, typename I>
int pool_forward_idx(const T* in, const T* rois, T* out, I* idx,
                     const Geom& g, T scale, int bins, int nthreads) {
  const Strides<T> st(g);
  const rc_index CB = 64;
  const rc_index nblk = (g.C + CB - 1) / CB;
  const rc_index items = g.K * nblk;
  const rc_index sy = g.W * g.C, sx = g.C, sn = g.H * g.W * g.C;
  const int nt = rc_threads(nthreads, items);
  int err = 0;
#pragma omp parallel num_threads(nt)
  {
    rc_index* tab = static_cast<rc_index*>(
        std::malloc(sizeof(rc_index) * 2 * static_cast<size_t>(g.PH + g.PW)));
    if (!tab) {
#pragma omp atomic write
      err = RC_ERR_NOMEM;
    }
    rc_index last_k = -1;
    rc_index *hlo = tab, *hhi = tab + g.PH, *wlo = tab + 2 * g.PH,
             *whi = tab + 2 * g.PH + g.PW;
    T best[CB];
    I arg[CB];
#pragma omp for schedule(dynamic, 4)
    for (rc_index it = 0; it < items; ++it) {
      if (!tab) continue;
      const rc_index k = it / nblk, c0 = (it % nblk) * CB;
      const rc_index nc = g.C - c0 < CB ? g.C - c0 : CB;
      const rc_index n = rc_batch(g, k);
      if (n >= 0 && k != last_k) {
        pool_tabs<T>(bins, rois + 5 * k, scale, g, hlo, hhi, wlo, whi);
        last_k = k;
      }
      const T* base = in + (n < 0 ? 0 : n) * sn + c0;
      for (rc_index ph = 0; ph < g.PH; ++ph)
        for (rc_index pw = 0; pw < g.PW; ++pw) {
          const rc_index o = k * st.on + c0 * st.oc + ph * st.oy + pw * st.ox;
          if (n < 0 || hhi[ph] <= hlo[ph] || whi[pw] <= wlo[pw]) {
            for (rc_index l = 0; l < nc; ++l) {
              out[o + l * st.oc] = (T)0;
              idx[o + l * st.oc] = -1;
            }
            continue;
          }
          for (rc_index l = 0; l < nc; ++l) {
            best[l] = rc_lowest<T>();
            arg[l] = -1;
          }
          /* two branch-free passes (as v_pool_bwd): the running max, then,
           * scanning backwards, the first pixel (row-major) holding it; a
           * max still at lowest means no pixel won */
          for (rc_index h = hlo[ph]; h < hhi[ph]; ++h)
            for (rc_index w = wlo[pw]; w < whi[pw]; ++w) {
              const T* p = base + h * sy + w * sx;
#pragma omp simd
              for (rc_index l = 0; l < nc; ++l)
                best[l] = p[l] > best[l] ? p[l] : best[l];
            }
          for (rc_index h = hhi[ph] - 1; h >= hlo[ph]; --h)
            for (rc_index w = whi[pw] - 1; w >= wlo[pw]; --w) {
              const T* p = base + h * sy + w * sx;
              const I cand = static_cast<I>(h * g.W + w);
#pragma omp simd
              for (rc_index l = 0; l < nc; ++l)
                arg[l] = p[l] == best[l] ? cand : arg[l];
            }
          const T lowest = rc_lowest<T>();
          for (rc_index l = 0; l < nc; ++l)
            if (!(best[l] > lowest)) arg[l] = -1;
          for (rc_index l = 0; l < nc; ++l) {
            out[o + l * st.oc] = best[l];
            idx[o + l * st.oc] = arg[l];
          }
        }
    }
    std::free(tab);
  }
  return err;
}

template <typename T>
int pool_forward_indices(const T* in, const T* rois, T* out, void* idx,
                         int idx_bytes, const Geom& g, T scale, int bins,
                         int nthreads) {
  if (idx_bytes == 4)
    return pool_forward_idx<T, int32_t>(in, rois, out,
                                        static_cast<int32_t*>(idx), g, scale,
                                        bins, nthreads);
  return pool_forward_idx<T, rc_index>(in, rois, out,
                                       static_cast<rc_index*>(idx), g, scale,
                                       bins, nthreads);
}

/* grad_in must be zero on entry.  A winner outside [-1, H*W) is skipped and
 * the call returns RC_ERR_INDICES. */
template <typename T, typename I>
int pool_backward_idx(const T* grad_out, const I* idx,
                      const rc_index* order, const rc_index* batch_start,
                      T* grad_in, const Geom& g, int nthreads) {
  const Strides<T> st(g);
  const rc_index items = g.N * g.C;
  const int nt = rc_threads(nthreads, items);
  const rc_index nbins = g.PH * g.PW;
  const rc_index HW = g.H * g.W;
  int bad = 0;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 4) \
    reduction(| : bad)
  for (rc_index it = 0; it < items; ++it) {
    const rc_index n = it / g.C, c = it % g.C;
    T* plane = grad_in + n * st.sn + c * st.sc;
    for (rc_index r = batch_start[n]; r < batch_start[n + 1]; ++r) {
      const rc_index k = order[r];
      if (rc_batch(g, k) != n) continue;
      const rc_index ob = k * st.on + c * st.oc;
      if (!g.channels_last) {
        const I* a = idx + ob;
        const T* go = grad_out + ob;
        for (rc_index i = 0; i < nbins; ++i) {
          const rc_index w = a[i];
          if (w >= 0 && w < HW)
            plane[w] += go[i];
          else if (w != -1)
            bad = 1;
        }
      } else {
        for (rc_index i = 0; i < nbins; ++i) {
          const rc_index a = idx[ob + i * st.ox];
          if (a >= 0 && a < HW)
            plane[a * st.sx] += /* == y * sy + x * sx: sy == W * sx */
                grad_out[ob + i * st.ox];
          else if (a != -1)
            bad = 1;
        }
      }
    }
  }
  return bad ? RC_ERR_INDICES : 0;
}

template <typename T>
int pool_backward_indices(const T* grad_out, const void* idx, int idx_bytes,
                          const rc_index* order, const rc_index* batch_start,
                          T* grad_in, const Geom& g, int nthreads) {
  if (idx_bytes == 4)
    return pool_backward_idx<T, int32_t>(
        grad_out, static_cast<const int32_t*>(idx), order, batch_start,
        grad_in, g, nthreads);
  return pool_backward_idx<T, rc_index>(
      grad_out, static_cast<const rc_index*>(idx), order, batch_start,
      grad_in, g, nthreads);
}

}  // namespace roicore

#endif  // ROICORE_CPU_POOL_INDICES_H_
