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

#include <cstring>

#include "roicore/cpu/isa_entry.h"

namespace roicore {

/* One bin of one group of lanes (L at compile time when FULL, so the
 * running max and winner stay in registers): the running max and its winner
 * per channel (strict '>', row-major: rc_pool_max's rules), as two
 * branch-free passes (as v_pool_bwd): the max, then, scanning backwards, the
 * first pixel (row-major) holding it; a max still at lowest means no pixel
 * won. */
template <typename T, typename I, int L, bool FULL>
RC_AI void pool_idx_bin(const T* base, int nc, rc_index sy, rc_index sx,
                        rc_index W, rc_index h0, rc_index h1, rc_index w0,
                        rc_index w1, T* dv, I* di) {
  const int n = FULL ? L : nc;
  const T lowest = rc_lowest<T>();
  T best[L];
  I arg[L];
  for (int l = 0; l < n; ++l) {
    best[l] = lowest;
    arg[l] = -1;
  }
  for (rc_index h = h0; h < h1; ++h)
    for (rc_index w = w0; w < w1; ++w) {
      const T* p = base + h * sy + w * sx;
#pragma omp simd
      for (int l = 0; l < n; ++l) best[l] = p[l] > best[l] ? p[l] : best[l];
    }
  for (rc_index h = h1 - 1; h >= h0; --h)
    for (rc_index w = w1 - 1; w >= w0; --w) {
      const T* p = base + h * sy + w * sx;
      const I cand = static_cast<I>(h * W + w);
#pragma omp simd
      for (int l = 0; l < n; ++l) arg[l] = p[l] == best[l] ? cand : arg[l];
    }
  for (int l = 0; l < n; ++l) {
    dv[l] = best[l];
    di[l] = best[l] > lowest ? arg[l] : static_cast<I>(-1);
  }
}

/* The bins of one item (image n >= 0, channels c0 .. c0+nc) into the
 * bin-major tiles tv / ti (CB lanes per bin), L lanes at a time.  Compiled
 * once per instruction set below (the loops over lanes vectorise). */
template <typename T, typename I, int L>
RC_AI void pool_idx_bins_l(const T* base, rc_index sy, rc_index sx, rc_index W,
                           const rc_index* hlo, const rc_index* hhi,
                           const rc_index* wlo, const rc_index* whi,
                           rc_index PH, rc_index PW, rc_index nc, rc_index CB,
                           T* tv, I* ti) {
  for (rc_index ph = 0; ph < PH; ++ph)
    for (rc_index pw = 0; pw < PW; ++pw) {
      T* dv = tv + (ph * PW + pw) * CB;
      I* di = ti + (ph * PW + pw) * CB;
      if (hhi[ph] <= hlo[ph] || whi[pw] <= wlo[pw]) {
        for (rc_index l = 0; l < nc; ++l) {
          dv[l] = (T)0;
          di[l] = -1;
        }
        continue;
      }
      rc_index l0 = 0;
      for (; l0 + L <= nc; l0 += L)
        pool_idx_bin<T, I, L, true>(base + l0, L, sy, sx, W, hlo[ph], hhi[ph],
                                    wlo[pw], whi[pw], dv + l0, di + l0);
      if (l0 < nc)
        pool_idx_bin<T, I, L, false>(base + l0, static_cast<int>(nc - l0), sy,
                                     sx, W, hlo[ph], hhi[ph], wlo[pw], whi[pw],
                                     dv + l0, di + l0);
    }
}

/* Lanes per group: the lane kernels' (cpu/isa_entry.h Lanes: 256 bytes with
 * AVX-512, 128 otherwise), so a bin's pixel loops run once per 64 floats. */
template <typename T, typename I, int ISA>
RC_AI void pool_idx_bins(const T* base, rc_index sy, rc_index sx, rc_index W,
                         const rc_index* hlo, const rc_index* hhi,
                         const rc_index* wlo, const rc_index* whi, rc_index PH,
                         rc_index PW, rc_index nc, rc_index CB, T* tv, I* ti) {
  pool_idx_bins_l<T, I, Lanes<T, ISA>::value>(
      base, sy, sx, W, hlo, hhi, wlo, whi, PH, PW, nc, CB, tv, ti);
}

template <typename T, typename I>
struct PoolIdxBins {
  typedef void (*Fn)(const T*, rc_index, rc_index, rc_index, const rc_index*,
                     const rc_index*, const rc_index*, const rc_index*,
                     rc_index, rc_index, rc_index, rc_index, T*, I*);
};

template <typename T, typename I>
void pool_idx_bins_baseline(const T* base, rc_index sy, rc_index sx, rc_index W,
                            const rc_index* hlo, const rc_index* hhi,
                            const rc_index* wlo, const rc_index* whi,
                            rc_index PH, rc_index PW, rc_index nc, rc_index CB,
                            T* tv, I* ti) {
  pool_idx_bins<T, I, RC_ISA_BASELINE>(base, sy, sx, W, hlo, hhi, wlo, whi, PH,
                                       PW, nc, CB, tv, ti);
}
#if RC_X86_DISPATCH
template <typename T, typename I>
RC_TARGET_AVX2 void pool_idx_bins_avx2(
    const T* base, rc_index sy, rc_index sx, rc_index W, const rc_index* hlo,
    const rc_index* hhi, const rc_index* wlo, const rc_index* whi, rc_index PH,
    rc_index PW, rc_index nc, rc_index CB, T* tv, I* ti) {
  pool_idx_bins<T, I, RC_ISA_AVX2>(base, sy, sx, W, hlo, hhi, wlo, whi, PH, PW,
                                   nc, CB, tv, ti);
}
template <typename T, typename I>
RC_TARGET_AVX512 void pool_idx_bins_avx512(
    const T* base, rc_index sy, rc_index sx, rc_index W, const rc_index* hlo,
    const rc_index* hhi, const rc_index* wlo, const rc_index* whi, rc_index PH,
    rc_index PW, rc_index nc, rc_index CB, T* tv, I* ti) {
  pool_idx_bins<T, I, RC_ISA_AVX512>(base, sy, sx, W, hlo, hhi, wlo, whi, PH,
                                     PW, nc, CB, tv, ti);
}
#endif

template <typename T, typename I>
typename PoolIdxBins<T, I>::Fn pool_idx_bins_for_isa() {
#if RC_X86_DISPATCH
  const int isa = rc_isa();
  if (isa >= RC_ISA_AVX512) return pool_idx_bins_avx512<T, I>;
  if (isa >= RC_ISA_AVX2) return pool_idx_bins_avx2<T, I>;
#endif
  return pool_idx_bins_baseline<T, I>;
}

/* `in` is always NHWC (the caller transposes an NCHW map): an item is a RoI
 * and a block of up to 64 channels (pool_idx_bins).  Every bin writes its
 * lanes to a per-thread tile (bin-major); the item then copies the tile to
 * `out` and `idx` (which have g's layout) with contiguous stores (a
 * transpose for NCHW) rather than 2 x 64 strided stores per bin. */
template <typename T, typename I>
int pool_forward_idx(const T* in, const T* rois, T* out, I* idx,
                     const Geom& g, T scale, int bins, int nthreads) {
  const Strides<T> st(g);
  const rc_index CB = 64;
  const rc_index nblk = (g.C + CB - 1) / CB;
  const rc_index items = g.K * nblk;
  const rc_index nbins = g.PH * g.PW;
  const rc_index sy = g.W * g.C, sx = g.C, sn = g.H * g.W * g.C;
  const int nt = rc_threads(nthreads, items);
  const typename PoolIdxBins<T, I>::Fn run = pool_idx_bins_for_isa<T, I>();
  int err = 0;
#pragma omp parallel num_threads(nt)
  {
    const size_t tab_bytes =
        sizeof(rc_index) * 2 * static_cast<size_t>(g.PH + g.PW);
    const size_t tile = static_cast<size_t>(nbins * CB);
    char* mem = static_cast<char*>(
        std::malloc(tab_bytes + tile * (sizeof(T) + sizeof(I)) + 64));
    if (!mem) {
#pragma omp atomic write
      err = RC_ERR_NOMEM;
    }
    rc_index last_k = -1;
    rc_index* tab = reinterpret_cast<rc_index*>(mem);
    rc_index *hlo = tab, *hhi = tab + g.PH, *wlo = tab + 2 * g.PH,
             *whi = tab + 2 * g.PH + g.PW;
    T* tv = mem ? reinterpret_cast<T*>(mem + tab_bytes) : nullptr;
    I* ti = mem ? reinterpret_cast<I*>(mem + tab_bytes + tile * sizeof(T))
                : nullptr;
#pragma omp for schedule(dynamic, 4)
    for (rc_index it = 0; it < items; ++it) {
      if (!mem) continue;
      const rc_index k = it / nblk, c0 = (it % nblk) * CB;
      const rc_index nc = g.C - c0 < CB ? g.C - c0 : CB;
      const rc_index n = rc_batch(g, k);
      if (n < 0) {
        for (rc_index i = 0; i < nbins * CB; ++i) {
          tv[i] = (T)0;
          ti[i] = -1;
        }
      } else {
        if (k != last_k) {
          pool_tabs<T>(bins, rois + 5 * k, scale, g, hlo, hhi, wlo, whi);
          last_k = k;
        }
        run(in + n * sn + c0, sy, sx, g.W, hlo, hhi, wlo, whi, g.PH, g.PW, nc,
            CB, tv, ti);
      }
      const rc_index ob = k * st.on + c0 * st.oc;
      if (g.channels_last) {
        for (rc_index b = 0; b < nbins; ++b) {
          std::memcpy(out + ob + b * g.C, tv + b * CB, sizeof(T) * nc);
          std::memcpy(idx + ob + b * g.C, ti + b * CB, sizeof(I) * nc);
        }
      } else {
        for (rc_index l = 0; l < nc; ++l) {
          T* ov = out + ob + l * nbins;
          I* oi = idx + ob + l * nbins;
          for (rc_index b = 0; b < nbins; ++b) ov[b] = tv[b * CB + l];
          for (rc_index b = 0; b < nbins; ++b) oi[b] = ti[b * CB + l];
        }
      }
    }
    std::free(mem);
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
 * the call returns RC_ERR_INDICES.
 *
 * Items are (image, block of cb channels): each walks its image's RoIs in
 * their original order and, for each RoI, the block's channels and bins, so
 * it reads grad_out and idx in runs of cb * PH * PW contiguous elements (NCHW;
 * one item per channel read 4-byte runs PH * PW long, C * PH * PW apart: the
 * prefetchers could not follow) and adds into cb gradient planes.  Every
 * element of grad_in receives its additions in the same order (RoI, then bin)
 * for any block size and thread count: bit-identical results. */
/* Channels per item of pool_backward_idx: its cb gradient planes within
 * ~256 KiB (they take the scattered additions), at most 16 channels (NHWC: at
 * least 16, a cache line of a bin's contiguous channels), and at least 4 items
 * per thread where the channels allow. */
inline rc_index pool_idx_block(const Geom& g, size_t tsize, int nthreads) {
  const rc_index want = nthreads > 0 ? nthreads : 1;
  rc_index cb = static_cast<rc_index>(
      static_cast<double>(256 << 10) /
      (static_cast<double>(g.H * g.W) * static_cast<double>(tsize) + 1.0));
  if (cb > 16) cb = 16;
  if (g.channels_last && cb < 16) cb = 16;
  const rc_index spread = (g.N * g.C) / (4 * want);
  if (cb > spread) cb = spread;
  if (cb > g.C) cb = g.C;
  return cb < 1 ? 1 : cb;
}

template <typename T, typename I>
int pool_backward_idx(const T* grad_out, const I* idx,
                      const rc_index* order, const rc_index* batch_start,
                      T* grad_in, const Geom& g, int nthreads) {
  const Strides<T> st(g);
  const rc_index nbins = g.PH * g.PW;
  const rc_index HW = g.H * g.W;
  const rc_index cb = pool_idx_block(g, sizeof(T), nthreads);
  const rc_index nb = (g.C + cb - 1) / cb;
  const rc_index items = g.N * nb;
  const int nt = rc_threads(nthreads, items);
  int bad = 0;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) \
    reduction(| : bad)
  for (rc_index it = 0; it < items; ++it) {
    const rc_index n = it / nb, c0 = (it % nb) * cb;
    const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
    T* img = grad_in + n * st.sn;
    for (rc_index r = batch_start[n]; r < batch_start[n + 1]; ++r) {
      const rc_index k = order[r];
      if (rc_batch(g, k) != n) continue;
      if (!g.channels_last) {
        for (rc_index c = c0; c < c1; ++c) {
          const rc_index ob = k * st.on + c * st.oc;
          const I* a = idx + ob;
          const T* go = grad_out + ob;
          T* plane = img + c * st.sc;
          for (rc_index i = 0; i < nbins; ++i) {
            const rc_index w = a[i];
            if (w >= 0 && w < HW)
              plane[w] += go[i];
            else if (w != -1)
              bad = 1;
          }
        }
      } else {
        for (rc_index i = 0; i < nbins; ++i) {
          const rc_index ob = k * st.on + i * st.ox;
          for (rc_index c = c0; c < c1; ++c) {
            const rc_index a = idx[ob + c];
            if (a >= 0 && a < HW)
              img[a * st.sx + c] += /* == y * sy + x * sx: sy == W * sx */
                  grad_out[ob + c];
            else if (a != -1)
              bad = 1;
          }
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
