/* roicore CPU kernels: the crop path of the NCHW forward.
 *
 * With few RoIs, packing the whole NCHW map into channel blocks costs more
 * than the work (v_pack_pays), and the call used to run the scalar reference
 * kernels.  The crop path runs the same lane kernels (v_sampled_fwd,
 * v_pool_fwd) on a per-thread copy of only the input window a RoI reads:
 * each item (RoI k, channel block b) transposes the rows [y0, y1) and
 * columns [x0, x1) its sample / bin tables touch, for the block's L
 * channels, into [y1-y0][x1-x0][L] scratch (zero padded past C), rebases the
 * tables onto that window, runs the lane kernel and stores the tile as the
 * packed path does (v_store_tile).  Same tables, same lane arithmetic:
 * bit-identical to the reference kernels.
 *
 *   crop_windows         per-call window statistics (cost, scratch size)
 *   crop_pays            crop vs reference vs whole-map packing, by cost
 *   crop_forward         the parallel loop over (RoI, channel block) items
 *   crop_{sampled,pool}_forward_{baseline,avx2,avx512}   its item kernels
 */
#ifndef ROICORE_CPU_CROP_H_
#define ROICORE_CPU_CROP_H_

#include "roicore/cpu/isa_entry.h"

namespace roicore {

/* Window width: widened to a multiple of 8 columns where the map allows it
 * (moving x0 left if needed), so the 8x8 / 4x4 transposes have no scalar
 * tail; the window stays inside the map. */
inline void crop_widen(rc_index W, rc_index* x0, rc_index* x1) {
  rc_index ww = (*x1 - *x0 + 7) & ~static_cast<rc_index>(7);
  if (ww > W) ww = W;
  if (*x0 + ww > W) *x0 = W - ww;
  *x1 = *x0 + ww;
}

/* Rows (or columns) a sample table filled with stride 1 reads: [*a, *b),
 * empty (0, 0) when no sample is inside the map. */
template <typename T>
inline void crop_span_sampled(const SampleTab<T>& t, rc_index n, rc_index* a,
                              rc_index* b) {
  rc_index lo = std::numeric_limits<rc_index>::max(), hi = -1;
  for (rc_index i = 0; i < n; ++i) {
    if (!t.ok[i]) continue;
    if (t.lo[i] < lo) lo = t.lo[i];
    if (t.hi[i] > hi) hi = t.hi[i];
  }
  if (hi < 0) {
    *a = *b = 0;
    return;
  }
  *a = lo;
  *b = hi + 1;
}

/* Rows (or columns) the bins [lo[p], hi[p]) of one axis read. */
inline void crop_span_pool(const rc_index* lo, const rc_index* hi, rc_index P,
                           rc_index* a, rc_index* b) {
  rc_index s = std::numeric_limits<rc_index>::max(), e = -1;
  for (rc_index p = 0; p < P; ++p) {
    if (hi[p] <= lo[p]) continue;
    if (lo[p] < s) s = lo[p];
    if (hi[p] > e) e = hi[p];
  }
  if (e < 0) {
    *a = *b = 0;
    return;
  }
  *a = s;
  *b = e;
}

/* Stride-1 table entries -> offsets into the window (origin o, stride st);
 * entries outside the map (never read) -> 0. */
template <typename T>
inline void crop_rebase_sampled(SampleTab<T>* t, rc_index n, rc_index o,
                                rc_index st) {
  for (rc_index i = 0; i < n; ++i) {
    if (t->ok[i]) {
      t->lo[i] = (t->lo[i] - o) * st;
      t->hi[i] = (t->hi[i] - o) * st;
    } else {
      t->lo[i] = t->hi[i] = 0;
    }
  }
}

/* The window [*y0, *y1) x [*x0, *x1) of RoI `roi` of a sampled op (tables
 * in ty / tx, filled with stride 1 on return). */
template <typename T>
inline void crop_window_sampled(const SampledParams& sp, const T* roi,
                                T scale, const Geom& g, SampleTab<T>* ty,
                                SampleTab<T>* tx, rc_index* y0, rc_index* y1,
                                rc_index* x0, rc_index* x1) {
  T ys, bh, xs, bw;
  rc_index gh, gw;
  sampled_geometry<T>(sp, roi, scale, g, &ys, &bh, &gh, &xs, &bw, &gw);
  sample_tab_fill<T>(ty, sp.kind, ys, bh, gh, g.PH, g.H, 1);
  sample_tab_fill<T>(tx, sp.kind, xs, bw, gw, g.PW, g.W, 1);
  crop_span_sampled(*ty, g.PH * gh, y0, y1);
  crop_span_sampled(*tx, g.PW * gw, x0, x1);
  if (*y1 <= *y0 || *x1 <= *x0) {
    *y0 = *y1 = *x0 = *x1 = 0;
    return;
  }
  crop_widen(g.W, x0, x1);
}

/* The window of RoI `roi` of RoI Pool (bin tables in ptab, absolute). */
template <typename T>
inline void crop_window_pool(int bins, const T* roi, T scale, const Geom& g,
                             rc_index* ptab, rc_index* y0, rc_index* y1,
                             rc_index* x0, rc_index* x1) {
  rc_index *hlo = ptab, *hhi = ptab + g.PH, *wlo = ptab + 2 * g.PH,
           *whi = ptab + 2 * g.PH + g.PW;
  pool_tabs<T>(bins, roi, scale, g, hlo, hhi, wlo, whi);
  crop_span_pool(hlo, hhi, g.PH, y0, y1);
  crop_span_pool(wlo, whi, g.PW, x0, x1);
  if (*y1 <= *y0 || *x1 <= *x0) {
    *y0 = *y1 = *x0 = *x1 = 0;
    return;
  }
  crop_widen(g.W, x0, x1);
}

/* Per-thread scratch of the crop path. */
template <typename T>
struct CropScratch {
  SampleTab<T> ty, tx;
  rc_index* ptab; /* pool: hlo[PH] hhi[PH] wlo[PW] whi[PW] */
  T* tile;        /* [PH*PW][L] */
  T* win;         /* [window][L] */
};

template <typename T>
inline size_t crop_scratch_bytes(const Geom& g, rc_index ny, rc_index nx,
                                 rc_index L, rc_index area) {
  return sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx) +
         rc_align64(sizeof(rc_index) * 2 * static_cast<size_t>(g.PH + g.PW)) +
         rc_align64(sizeof(T) * static_cast<size_t>(g.PH * g.PW * L)) +
         sizeof(T) * static_cast<size_t>((area > 0 ? area : 1) * L);
}

template <typename T>
inline void crop_scratch_bind(CropScratch<T>* s, char* mem, const Geom& g,
                              rc_index ny, rc_index nx, rc_index L) {
  sample_tab_bind(&s->ty, mem, ny);
  mem += sample_tab_bytes<T>(ny);
  sample_tab_bind(&s->tx, mem, nx);
  mem += sample_tab_bytes<T>(nx);
  s->ptab = reinterpret_cast<rc_index*>(mem);
  mem += rc_align64(sizeof(rc_index) * 2 * static_cast<size_t>(g.PH + g.PW));
  s->tile = reinterpret_cast<T*>(mem);
  mem += rc_align64(sizeof(T) * static_cast<size_t>(g.PH * g.PW * L));
  s->win = reinterpret_cast<T*>(mem);
}

/* Window statistics of a call: the sum of the windows' pixels (every
 * channel block transposes its RoI's window) and the largest window. */
struct CropStats {
  double sum;
  rc_index max_area;
};

/* which: RC_V_SFWD or RC_V_PFWD.  Returns false without memory. */
template <typename T>
inline bool crop_windows(int which, const T* rois, T scale, const Geom& g,
                         const SampledParams& sp, int bins, rc_index ny,
                         rc_index nx, CropStats* st) {
  st->sum = 0;
  st->max_area = 0;
  char* mem = static_cast<char*>(
      rc_alloc(crop_scratch_bytes<T>(g, ny, nx, 1, 0)));
  if (!mem) return false;
  CropScratch<T> s;
  crop_scratch_bind(&s, mem, g, ny, nx, 1);
  for (rc_index k = 0; k < g.K; ++k) {
    if (rc_batch(g, k) < 0) continue;
    rc_index y0, y1, x0, x1;
    if (which == RC_V_PFWD)
      crop_window_pool<T>(bins, rois + 5 * k, scale, g, s.ptab, &y0, &y1, &x0,
                          &x1);
    else
      crop_window_sampled<T>(sp, rois + 5 * k, scale, g, &s.ty, &s.tx, &y0,
                             &y1, &x0, &x1);
    const rc_index area = (y1 - y0) * (x1 - x0);
    st->sum += static_cast<double>(area);
    if (area > st->max_area) st->max_area = area;
  }
  rc_free(mem);
  return true;
}

/* Crop-path policy (tests): the pack policy slot of driver.h, value 3. */
enum { RC_PACK_BY_COST = 0, RC_PACK_ALWAYS = 1, RC_PACK_NEVER = 2,
       RC_PACK_CROP = 3 };

/* Whether the crop path beats the reference kernels (2x the per-channel
 * work) and whole-map packing (the padded input plus the lane work), by the
 * cost model of v_pack_pays: the window transposes (`st.sum` pixels, for
 * every padded channel) plus the lane work; and only if the per-thread
 * windows ([max_area][L] each, at most the map's H*W*L) stay within twice
 * the input or 16 MiB.  policy: the pack policy (RC_PACK_*). */
template <typename T>
inline bool crop_pays(const Geom& g, double work, int isa, int nthreads,
                      const CropStats& st, int policy) {
  if (policy != RC_PACK_BY_COST) return policy == RC_PACK_CROP;
  const rc_index L = v_lanes<T>(isa);
  const double padded = static_cast<double>((g.C + L - 1) / L * L);
  const double HW = static_cast<double>(g.H * g.W);
  const double input = static_cast<double>(g.N) * static_cast<double>(g.C) * HW;
  const double nt = static_cast<double>(
      rc_threads(nthreads, g.K * ((g.C + L - 1) / L)));
  const double extra = nt * static_cast<double>(st.max_area) *
                       static_cast<double>(L) * sizeof(T);
  if (extra > 2.0 * input * sizeof(T) &&
      extra > static_cast<double>(16 << 20))
    return false;
  const double simd = static_cast<double>(L) / v_width<T>(isa, L);
  const double lanes = work * padded / simd;
  const double crop = st.sum * padded + lanes;
  const double pack = static_cast<double>(g.N) * padded * HW + lanes;
  return crop <= 2.0 * work * static_cast<double>(g.C) && crop < pack;
}

/* A cheap upper bound of the windows' pixels of a sampled op (O(K)): the
 * span of each RoI's sample coordinates plus the bilinear neighbour and the
 * widening, clipped to the map.  Lets crop_chosen skip the exact window
 * pass when even the bound cannot beat whole-map packing by much. */
template <typename T>
inline double crop_bound_sampled(const SampledParams& sp, const T* rois,
                                 T scale, const Geom& g) {
  double sum = 0;
  for (rc_index k = 0; k < g.K; ++k) {
    T ys, bh, xs, bw;
    rc_index gh, gw;
    sampled_geometry<T>(sp, rois + 5 * k, scale, g, &ys, &bh, &gh, &xs, &bw,
                        &gw);
    double h = std::fabs(static_cast<double>(bh)) * static_cast<double>(g.PH);
    double w = std::fabs(static_cast<double>(bw)) * static_cast<double>(g.PW);
    h = h + 3 < static_cast<double>(g.H) ? h + 3 : static_cast<double>(g.H);
    w = w + 10 < static_cast<double>(g.W) ? w + 10 : static_cast<double>(g.W);
    sum += h * w;  /* NaN geometry: NaN, the comparison below then fails */
  }
  return sum;
}

/* Whether a forward (which: RC_V_SFWD / RC_V_PFWD) takes the crop path;
 * *max_area: the largest window.  NCHW only (NHWC is read in place). */
template <typename T>
inline bool crop_chosen(int which, const T* rois, T scale, const Geom& g,
                        const SampledParams& sp, int bins, rc_index ny,
                        rc_index nx, double work, int isa, int nthreads,
                        int policy, rc_index* max_area) {
  *max_area = 0;
  if (g.channels_last || isa == RC_ISA_REFERENCE) return false;
  if (policy != RC_PACK_BY_COST && policy != RC_PACK_CROP) return false;
  if (policy == RC_PACK_BY_COST) {
    const rc_index L = v_lanes<T>(isa);
    const double padded = static_cast<double>((g.C + L - 1) / L * L);
    const double lanes = work * padded / (static_cast<double>(L) /
                                          v_width<T>(isa, L));
    if (lanes > 2.0 * work * static_cast<double>(g.C)) return false;
    if (which != RC_V_PFWD) {
      const double pack = static_cast<double>(g.N) * padded *
                          static_cast<double>(g.H * g.W);
      const double bound = crop_bound_sampled<T>(sp, rois, scale, g);
      if (!(bound * padded <= 2.0 * pack)) return false;
    }
  }
  CropStats st;
  if (!crop_windows<T>(which, rois, scale, g, sp, bins, ny, nx, &st))
    return false;
  *max_area = st.max_area;
  return crop_pays<T>(g, work, isa, nthreads, st, policy);
}

/* --- one item: (RoI k, channel block b) -------------------------------- */
/* NCHW channels c0 .. c0+L of image n, window [y0, y1) x [x0, x1) ->
 * win[((y - y0) * (x1 - x0) + x - x0) * L + l], zero past C: a block pack
 * per window row. */
template <typename T, int L, int ISA>
RC_AI void crop_load(const T* in, const Geom& g, rc_index n, rc_index c0,
                     rc_index y0, rc_index y1, rc_index x0, rc_index x1,
                     T* win) {
  const rc_index ww = x1 - x0;
  for (rc_index y = y0; y < y1; ++y)
    v_pack_block<T, ISA>(in, g, L, n, c0, y * g.W + x0, y * g.W + x1,
                         win + (y - y0) * ww * L, L);
}

template <typename T, int L, int ISA, bool POOL>
RC_AI void crop_fwd_item(const VJob<T>& j, CropScratch<T>& s, rc_index it) {
  const Geom& g = j.g;
  const rc_index k = it / j.nb, c0 = (it % j.nb) * L;
  const int nc = static_cast<int>(g.C - c0 < L ? g.C - c0 : L);
  const rc_index n = rc_batch(g, k);
  if (n < 0) { /* validated in Python; never read out of bounds */
    for (rc_index i = 0; i < g.PH * g.PW * L; ++i) s.tile[i] = (T)0;
    v_store_tile<T, L, ISA>(j, s.tile, nullptr, k, c0, nc);
    return;
  }
  const T* roi = j.rois + 5 * k;
  rc_index y0, y1, x0, x1;
  if (POOL) {
    crop_window_pool<T>(j.bins, roi, j.scale, g, s.ptab, &y0, &y1, &x0, &x1);
    for (rc_index p = 0; p < g.PH; ++p) {
      s.ptab[p] -= y0;
      s.ptab[g.PH + p] -= y0;
    }
    for (rc_index p = 0; p < g.PW; ++p) {
      s.ptab[2 * g.PH + p] -= x0;
      s.ptab[2 * g.PH + g.PW + p] -= x0;
    }
  } else {
    crop_window_sampled<T>(j.sp, roi, j.scale, g, &s.ty, &s.tx, &y0, &y1, &x0,
                           &x1);
    crop_rebase_sampled(&s.ty, g.PH * s.ty.grid, y0, (x1 - x0) * L);
    crop_rebase_sampled(&s.tx, g.PW * s.tx.grid, x0, static_cast<rc_index>(L));
  }
  crop_load<T, L, ISA>(j.in, g, n, c0, y0, y1, x0, x1, s.win);
  if (POOL) {
    const rc_index* t = s.ptab;
    v_pool_fwd<T, L, RcVecBytes<ISA>::value, true>(s.win, L, (x1 - x0) * L, L, t, t + g.PH,
                           t + 2 * g.PH, t + 2 * g.PH + g.PW, g.PH, g.PW,
                           s.tile);
  } else {
    v_sampled_fwd<T, L, RcVecBytes<ISA>::value, true>(s.win, L, s.ty, s.tx, g.PH, g.PW, j.sp.max_mode,
                              s.tile);
  }
  v_store_tile<T, L, ISA>(j, s.tile, nullptr, k, c0, nc);
}

/* RoI Pool with stored winners (cf. cpu/pool_indices.h, whose rules these
 * are): the running max (strict '>', from the lowest value), then, scanning
 * backwards, the first pixel (row-major) holding it, as y * W + x of the
 * whole map; -1 for an empty bin, or when the max stayed at the lowest
 * value.  `out` is NCHW; idx[(k * C + c) * PH * PW + bin]. */
template <typename T, typename I, int L, int ISA>
RC_AI void crop_pool_idx_item(const VJob<T>& j, CropScratch<T>& s, I* idx,
                              rc_index it) {
  const Geom& g = j.g;
  const rc_index k = it / j.nb, c0 = (it % j.nb) * L;
  const int nc = static_cast<int>(g.C - c0 < L ? g.C - c0 : L);
  const rc_index n = rc_batch(g, k);
  const rc_index nbins = g.PH * g.PW;
  I* ib = idx + (k * g.C + c0) * nbins;
  if (n < 0) { /* validated in Python; never read out of bounds */
    for (rc_index i = 0; i < nbins * L; ++i) s.tile[i] = (T)0;
    for (int l = 0; l < nc; ++l)
      for (rc_index i = 0; i < nbins; ++i) ib[l * nbins + i] = -1;
    v_store_tile<T, L, ISA>(j, s.tile, nullptr, k, c0, nc);
    return;
  }
  rc_index y0, y1, x0, x1;
  crop_window_pool<T>(j.bins, j.rois + 5 * k, j.scale, g, s.ptab, &y0, &y1,
                      &x0, &x1);
  const rc_index *hlo = s.ptab, *hhi = s.ptab + g.PH, *wlo = s.ptab + 2 * g.PH,
                 *whi = s.ptab + 2 * g.PH + g.PW;
  crop_load<T, L, ISA>(j.in, g, n, c0, y0, y1, x0, x1, s.win);
  const rc_index sy = (x1 - x0) * L;
  const T lowest = rc_lowest<T>();
  for (rc_index ph = 0; ph < g.PH; ++ph)
    for (rc_index pw = 0; pw < g.PW; ++pw) {
      const rc_index bin = ph * g.PW + pw;
      T* best = s.tile + bin * L;
      if (hhi[ph] <= hlo[ph] || whi[pw] <= wlo[pw]) {
        for (int l = 0; l < L; ++l) best[l] = (T)0;
        for (int l = 0; l < nc; ++l) ib[l * nbins + bin] = -1;
        continue;
      }
      I arg[L];
      for (int l = 0; l < L; ++l) {
        best[l] = lowest;
        arg[l] = -1;
      }
      for (rc_index h = hlo[ph]; h < hhi[ph]; ++h)
        for (rc_index w = wlo[pw]; w < whi[pw]; ++w) {
          const T* p = s.win + (h - y0) * sy + (w - x0) * L;
#pragma omp simd
          for (int l = 0; l < L; ++l) best[l] = p[l] > best[l] ? p[l] : best[l];
        }
      for (rc_index h = hhi[ph] - 1; h >= hlo[ph]; --h)
        for (rc_index w = whi[pw] - 1; w >= wlo[pw]; --w) {
          const T* p = s.win + (h - y0) * sy + (w - x0) * L;
          const I cand = static_cast<I>(h * g.W + w);
#pragma omp simd
          for (int l = 0; l < L; ++l) arg[l] = p[l] == best[l] ? cand : arg[l];
        }
      for (int l = 0; l < nc; ++l)
        ib[l * nbins + bin] = best[l] > lowest ? arg[l] : static_cast<I>(-1);
    }
  v_store_tile<T, L, ISA>(j, s.tile, nullptr, k, c0, nc);
}

/* --- per-ISA entry points (cf. isa_entry.h) ----------------------------- */
template <typename T>
struct CropFns {
  typedef void (*Item)(const VJob<T>&, CropScratch<T>&, rc_index);
  typedef void (*IdxItem)(const VJob<T>&, CropScratch<T>&, void*, int,
                          rc_index);
};

template <typename T>
void crop_sampled_forward_baseline(const VJob<T>& j, CropScratch<T>& s,
                                   rc_index it) {
  crop_fwd_item<T, Lanes<T, RC_ISA_BASELINE>::value, RC_ISA_BASELINE, false>(
      j, s, it);
}
template <typename T>
void crop_pool_forward_baseline(const VJob<T>& j, CropScratch<T>& s,
                                rc_index it) {
  crop_fwd_item<T, Lanes<T, RC_ISA_BASELINE>::value, RC_ISA_BASELINE, true>(
      j, s, it);
}

/* RoI Pool with stored winners: `idx` int32 (idx_bytes 4) or int64; the
 * body shared by every instruction set. */
template <typename T, int ISA>
RC_AI void crop_pool_indices_item(const VJob<T>& j, CropScratch<T>& s,
                                  void* idx, int idx_bytes, rc_index it) {
  constexpr int L = Lanes<T, ISA>::value;
  if (idx_bytes == 4)
    crop_pool_idx_item<T, int32_t, L, ISA>(j, s, static_cast<int32_t*>(idx),
                                           it);
  else
    crop_pool_idx_item<T, rc_index, L, ISA>(j, s, static_cast<rc_index*>(idx),
                                            it);
}

template <typename T>
void crop_pool_indices_baseline(const VJob<T>& j, CropScratch<T>& s,
                                void* idx, int idx_bytes, rc_index it) {
  crop_pool_indices_item<T, RC_ISA_BASELINE>(j, s, idx, idx_bytes, it);
}

#if RC_X86_DISPATCH
template <typename T>
RC_TARGET_AVX2 void crop_pool_indices_avx2(const VJob<T>& j,
                                           CropScratch<T>& s, void* idx,
                                           int idx_bytes, rc_index it) {
  crop_pool_indices_item<T, RC_ISA_AVX2>(j, s, idx, idx_bytes, it);
}
template <typename T>
RC_TARGET_AVX512 void crop_pool_indices_avx512(const VJob<T>& j,
                                               CropScratch<T>& s, void* idx,
                                               int idx_bytes, rc_index it) {
  crop_pool_indices_item<T, RC_ISA_AVX512>(j, s, idx, idx_bytes, it);
}
template <typename T>
RC_TARGET_AVX2 void crop_sampled_forward_avx2(const VJob<T>& j,
                                              CropScratch<T>& s, rc_index it) {
  crop_fwd_item<T, Lanes<T, RC_ISA_AVX2>::value, RC_ISA_AVX2, false>(j, s, it);
}
template <typename T>
RC_TARGET_AVX2 void crop_pool_forward_avx2(const VJob<T>& j,
                                           CropScratch<T>& s, rc_index it) {
  crop_fwd_item<T, Lanes<T, RC_ISA_AVX2>::value, RC_ISA_AVX2, true>(j, s, it);
}
template <typename T>
RC_TARGET_AVX512 void crop_sampled_forward_avx512(const VJob<T>& j,
                                                  CropScratch<T>& s,
                                                  rc_index it) {
  crop_fwd_item<T, Lanes<T, RC_ISA_AVX512>::value, RC_ISA_AVX512, false>(j, s,
                                                                         it);
}
template <typename T>
RC_TARGET_AVX512 void crop_pool_forward_avx512(const VJob<T>& j,
                                               CropScratch<T>& s,
                                               rc_index it) {
  crop_fwd_item<T, Lanes<T, RC_ISA_AVX512>::value, RC_ISA_AVX512, true>(j, s,
                                                                        it);
}
#endif

template <typename T>
inline typename CropFns<T>::Item crop_kernel(int which, int isa) {
  const bool pool = which == RC_V_PFWD;
#if RC_X86_DISPATCH
  if (isa >= RC_ISA_AVX512)
    return pool ? crop_pool_forward_avx512<T> : crop_sampled_forward_avx512<T>;
  if (isa == RC_ISA_AVX2)
    return pool ? crop_pool_forward_avx2<T> : crop_sampled_forward_avx2<T>;
#endif
  (void)isa;
  return pool ? crop_pool_forward_baseline<T> : crop_sampled_forward_baseline<T>;
}

template <typename T>
inline typename CropFns<T>::IdxItem crop_idx_kernel(int isa) {
#if RC_X86_DISPATCH
  if (isa >= RC_ISA_AVX512) return crop_pool_indices_avx512<T>;
  if (isa == RC_ISA_AVX2) return crop_pool_indices_avx2<T>;
#endif
  (void)isa;
  return crop_pool_indices_baseline<T>;
}

/* --- the forward loop ---------------------------------------------------- */
/* Items (RoI, channel block), RoI-major; j.ny / j.nx: sample table lengths
 * (sampled ops), j.cost: per-RoI cost per channel; max_area: the largest
 * window (crop_windows); idx (RoI Pool only): also store the winners there
 * (int32 for idx_bytes 4, else int64).  The output is written with ordinary stores (the
 * crop path is for calls with few RoIs: small outputs). */
template <typename T>
int crop_forward(VJob<T> j, int which, int nthreads, int isa,
                 rc_index max_area, void* idx = nullptr, int idx_bytes = 0) {
  const Geom& g = j.g;
  const rc_index L = j.L = v_lanes<T>(isa);
  j.nb = (g.C + L - 1) / L;
  j.packed = 0;
  j.stream = 0;
  j.whole_roi = 0;
  const typename CropFns<T>::Item fn = crop_kernel<T>(which, isa);
  const typename CropFns<T>::IdxItem ifn = crop_idx_kernel<T>(isa);
  const auto run = [&](CropScratch<T>& s, rc_index it) {
    if (idx)
      ifn(j, s, idx, idx_bytes, it);
    else
      fn(j, s, it);
  };
  const rc_index items = g.K * j.nb;
  const int nt_all = rc_threads(nthreads, items);
  const size_t sbytes = crop_scratch_bytes<T>(g, j.ny, j.nx, L, max_area);
  const double width = v_width<T>(isa, L);
  const double per_pixel = static_cast<double>(L) / width;
  const auto item_cost = [&](rc_index it) {
    return j.cost[it / j.nb] * width +
           static_cast<double>(max_area) * per_pixel;
  };
  int err = 0;
  for (rc_index i0 = 0; i0 < items && !err;) {
    const rc_index i1 = rc_chunk_end(i0, items, nt_all, item_cost);
    const int nt = rc_threads(nt_all, i1 - i0);
    if (nt == 1) { /* no team for a small call */
      char* mem = static_cast<char*>(rc_alloc(sbytes));
      if (!mem) return RC_ERR_NOMEM;
      CropScratch<T> s;
      crop_scratch_bind(&s, mem, g, j.ny, j.nx, L);
      for (rc_index it = i0; it < i1; ++it) run(s, it);
      rc_free(mem);
    } else {
#pragma omp parallel num_threads(nt)
      {
        char* mem = static_cast<char*>(rc_alloc(sbytes));
        CropScratch<T> s = CropScratch<T>();
        if (mem) {
          crop_scratch_bind(&s, mem, g, j.ny, j.nx, L);
        } else {
#pragma omp atomic write
          err = RC_ERR_NOMEM;
        }
#pragma omp for schedule(dynamic, 1)
        for (rc_index it = i0; it < i1; ++it) {
          if (!mem) continue;
          run(s, it);
        }
        rc_free(mem);
      }
    }
    i0 = i1;
    if (!err && i0 < items && rc_interrupted(g)) err = RC_ERR_INTERRUPTED;
  }
  return err;
}

}  // namespace roicore

#endif  // ROICORE_CPU_CROP_H_
