/* roicore CPU kernels: the drivers.  The cost model (pack or not, which
 * instruction set), the parallel forward / backward loops over work items,
 * and the entry points called from _cpu.pyx:
 *   sampled_forward / sampled_backward   RoI Align, RoI Warp, MNC warp
 *   pool_forward / pool_backward         RoI Pool
 *   sampled_cost                         the sampling cost, for error texts
 */
#ifndef ROICORE_CPU_DRIVER_H_
#define ROICORE_CPU_DRIVER_H_

#include "roicore/cpu/crop.h"

namespace roicore {

/* --- drivers ---------------------------------------------------------- */
/* Per-channel work of a call (sum of the per-RoI costs), to decide whether
 * packing NCHW pays off. */
inline double v_work(const double* cost, rc_index K) {
  double w = 0;
  for (rc_index k = 0; k < K; ++k) w += cost[k];
  return w;
}

/* Packing policy (tests): 0 by cost, 1 always pack, 2 never pack (NHWC
 * runs in place, NCHW on the reference kernels), 3 NCHW forwards take the
 * crop path (cpu/crop.h; the rest as 2). */
inline int* rc_pack_policy_slot() {
  static int policy = 0;
  return &policy;
}

inline int rc_set_pack_policy(int policy) {
  *rc_pack_policy_slot() = policy >= 0 && policy <= 3 ? policy : 0;
  return *rc_pack_policy_slot();
}

/* Extra memory the packed path may take: twice the input, or 16 MiB. */
inline bool v_pack_fits(double extra_bytes, double input_bytes) {
  return extra_bytes <= 2.0 * input_bytes ||
         extra_bytes <= static_cast<double>(16 << 20);
}

/* Whether the vectorised kernels on channel blocks (NCHW packed, or the
 * per-thread tiles of the backward) beat the reference kernels: packing
 * (`passes` times the padded input) plus the lane work (every padded lane
 * is computed, at the ISA's vector width) against twice the per-channel work,
 * and only if the copy (`extra` elements) stays within v_pack_fits: with a
 * few channels a block is mostly padding (C = 1: 32x the input in float32). */
template <typename T>
inline bool v_pack_pays(const Geom& g, double work, double passes, int isa,
                        double extra) {
  if (*rc_pack_policy_slot()) return *rc_pack_policy_slot() == 1;
  const rc_index L = v_lanes<T>(isa);
  const double padded = static_cast<double>((g.C + L - 1) / L * L);
  const double HW = static_cast<double>(g.H * g.W);
  const double input = static_cast<double>(g.N) * static_cast<double>(g.C) * HW;
  if (!v_pack_fits(extra * sizeof(T), input * sizeof(T))) return false;
  const double simd = static_cast<double>(L) / v_width<T>(isa, L);
  const double pack = passes * static_cast<double>(g.N) * padded * HW;
  return pack + work * padded / simd <= 2.0 * work * static_cast<double>(g.C);
}

/* Backward tiles of one thread, in elements: with one band the gradient and
 * the packed input of a whole (image, block), [H*W][L] each; with more, the
 * gradient of one band plus its sink row, [brows + 1][W][L]. */
inline size_t v_bwd_tile_elems(const Geom& g, rc_index nband, rc_index brows,
                               rc_index L) {
  if (nband > 1)
    return static_cast<size_t>((brows + 1) * g.W) * static_cast<size_t>(L);
  return 2 * static_cast<size_t>(g.H * g.W) * static_cast<size_t>(L);
}

template <typename T>
inline size_t v_scratch_bytes(const VJob<T>& j, bool backward) {
  const size_t L = static_cast<size_t>(j.L);
  size_t b = sample_tab_bytes<T>(j.ny) + sample_tab_bytes<T>(j.nx);
  b += rc_align64(sizeof(rc_index) * 2 * static_cast<size_t>(j.g.PH + j.g.PW));
  b += 2 * sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW) * L;
  if (j.whole_roi)
    b += sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW * j.g.C) + 64;
  if (backward) {
    b += rc_align64(sizeof(rc_index) * 2 * static_cast<size_t>(j.ny));
    b += rc_align64(static_cast<size_t>(j.g.PH));
    b += rc_align64(static_cast<size_t>(j.ny));
  }
  if (backward && j.packed)
    b += sizeof(T) * v_bwd_tile_elems(j.g, j.nband, j.brows, j.L);
  return b;
}

template <typename T>
inline bool v_scratch_bind(VScratch<T>* s, char* mem, const VJob<T>& j,
                           bool backward) {
  if (!mem) return false;
  const size_t L = static_cast<size_t>(j.L);
  sample_tab_bind(&s->ty, mem, j.ny);
  mem += sample_tab_bytes<T>(j.ny);
  sample_tab_bind(&s->tx, mem, j.nx);
  mem += sample_tab_bytes<T>(j.nx);
  s->ptab = reinterpret_cast<rc_index*>(mem);
  mem += rc_align64(sizeof(rc_index) * 2 *
                    static_cast<size_t>(j.g.PH + j.g.PW));
  s->tile = reinterpret_cast<T*>(mem);
  mem += sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW) * L;
  s->stage = reinterpret_cast<T*>(mem);
  mem += sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW) * L;
  s->rstage = nullptr;
  if (j.whole_roi) {
    s->rstage = reinterpret_cast<T*>(mem);
    mem += rc_align64(sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW * j.g.C));
  }
  s->gtile = s->itile = nullptr;
  s->sylo = s->syhi = nullptr;
  s->bon = s->yok = nullptr;
  if (backward) {
    s->sylo = reinterpret_cast<rc_index*>(mem);
    s->syhi = s->sylo + j.ny;
    mem += rc_align64(sizeof(rc_index) * 2 * static_cast<size_t>(j.ny));
    s->bon = reinterpret_cast<unsigned char*>(mem);
    mem += rc_align64(static_cast<size_t>(j.g.PH));
    s->yok = reinterpret_cast<unsigned char*>(mem);
    mem += rc_align64(static_cast<size_t>(j.ny));
  }
  if (backward && j.packed) {
    s->gtile = reinterpret_cast<T*>(mem);
    if (j.nband <= 1)
      s->itile = s->gtile + static_cast<size_t>(j.g.H * j.g.W) * L;
  }
  return true;
}

/* Forward: items (block, RoI); NCHW input packed first (same team). */
/* Pack every channel block of every image of `in` into dst, [N][nb][H][W][L]
 * (zero padded past C), in chunks of 128 pixels ([chunk][L] stays in L1
 * while transposing) over nthreads threads. */
template <typename T>
inline void v_pack_all(typename VFns<T>::Pack packfn, const T* in,
                       const Geom& g, rc_index L, rc_index nb, T* dst,
                       int nthreads) {
  const rc_index HW = g.H * g.W;
  const rc_index chunk = 128;
  const rc_index nchunk = (HW + chunk - 1) / chunk;
  const rc_index items = g.N * nb * nchunk;
  const int nt = rc_threads(nthreads, items);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (rc_index p = 0; p < items; ++p) {
    const rc_index nbk = p / nchunk, i0 = (p % nchunk) * chunk;
    const rc_index i1 = i0 + chunk < HW ? i0 + chunk : HW;
    packfn(in, g, L, nbk / nb, (nbk % nb) * L, i0, i1, dst + nbk * HW * L);
  }
}

template <typename T>
int v_forward(VJob<T> j, int which, int nthreads, int isa, bool pack) {
  const Geom& g = j.g;
  const bool wide = v_fwd_wide<T>(g, isa);
  const rc_index L = j.L = v_fwd_lanes<T>(g, isa);
  const rc_index HW = g.H * g.W;
  j.nb = (g.C + L - 1) / L;
  T* packed = nullptr;
  const T* in = j.in;
  if (pack) {
    /* -> channel-block planes [N][nb][H][W][L], zero padded: an item's
     * pixels are L * sizeof(T) bytes apart, and items run block-major so
     * one plane stays in L2 */
    packed = static_cast<T*>(
        rc_alloc(sizeof(T) * static_cast<size_t>(g.N * j.nb * HW * L)));
    if (!packed) return 1;
    j.in = packed;
    j.packed = 1;
    j.group = g.K;
    j.bsn = j.nb * HW * L;
    j.bsb = HW * L;
    j.sy = g.W * L;
    j.sx = L;
  } else { /* NHWC in place, RoI-major */
    j.bsn = HW * g.C;
    j.bsb = L;
    j.sy = g.W * g.C;
    j.sx = g.C;
  }
  /* Outputs well beyond the caches' share of one core are streamed (no
   * read-for-ownership).  A fresh one (not yet faulted in) is populated by
   * all threads first; if that is not possible, ordinary stores fault in
   * the pages, which then are in cache. */
  const size_t ob = sizeof(T) * static_cast<size_t>(g.K * g.C * g.PH * g.PW);
  j.stream = 0;
  if (ob > (static_cast<size_t>(8) << 20))
    j.stream = rc_resident(j.out, ob) ||
               rc_populate(j.out, ob, rc_threads(nthreads, g.K));
  if (!j.packed) j.group = 1; /* NHWC in place: RoI-major */
  /* A streamed NHWC output is written a whole RoI at a time ([PH*PW][C],
   * contiguous, streaming stores).  That needs RoI-major items (every block
   * of one RoI), which reread the RoI's pixels from all block planes: fine
   * while one image's packed planes stay in the caches (8 MiB: W1, W3, W4),
   * 1.5-2.5x the CPU time of NCHW on W2 (55 MB per image).  There a packed
   * input runs block-major like NCHW instead, and each bin's L lanes go
   * into the output rows with ordinary stores (streaming 128-256 byte
   * pieces C apart took 1.3-1.5x NCHW; ordinary stores 1.06-1.08x). */
  const double image_bytes = static_cast<double>(HW) *
                             static_cast<double>(j.nb * L) * sizeof(T);
  j.whole_roi = g.channels_last && j.stream &&
                (!j.packed || image_bytes <= static_cast<double>(8 << 20));
  const typename VFns<T>::Item fn = fwd_item_kernel<T>(which, isa, wide);
  const typename VFns<T>::Pack packfn = pack_kernel<T>(isa, wide);
  const rc_index items = j.whole_roi ? g.K : j.nb * g.K;
  int err = 0;
  if (packed) {
    v_pack_all<T>(packfn, in, g, L, j.nb, packed, nthreads);
    if (rc_interrupted(g)) err = RC_ERR_INTERRUPTED;
  }
  const int nt_all = rc_threads(nthreads, items);
  /* The sampled ops' tables of every RoI, filled once when several channel
   * blocks run it (each (RoI, block) item filled them again: ~8 % of W1's
   * instructions with C = 256), within 16 MiB. */
  char* tabmem = nullptr;
  if (which == RC_V_SFWD && j.nb > 1) {
    const size_t per = sample_tab_bytes<T>(j.ny) + sample_tab_bytes<T>(j.nx);
    const size_t head =
        rc_align64(sizeof(SampleTab<T>) * 2 * static_cast<size_t>(g.K));
    if (per * static_cast<size_t>(g.K) <= (static_cast<size_t>(16) << 20))
      tabmem = static_cast<char*>(rc_alloc(head + per * static_cast<size_t>(g.K)));
    if (tabmem) {
      SampleTab<T>* tabs = reinterpret_cast<SampleTab<T>*>(tabmem);
      const int ntt = rc_threads(nt_all, g.K / 64 + 1);
#pragma omp parallel for num_threads(ntt) schedule(static)
      for (rc_index k = 0; k < g.K; ++k) {
        char* m = tabmem + head + per * static_cast<size_t>(k);
        sample_tab_bind(&tabs[2 * k], m, j.ny);
        sample_tab_bind(&tabs[2 * k + 1], m + sample_tab_bytes<T>(j.ny), j.nx);
        T ys, bh, xs, bw;
        rc_index gh, gw;
        sampled_geometry<T>(j.sp, j.rois + 5 * k, j.scale, g, &ys, &bh, &gh,
                            &xs, &bw, &gw);
        sample_tab_fill<T>(&tabs[2 * k], j.sp.kind, ys, bh, gh, g.PH, g.H,
                           j.sy);
        sample_tab_fill<T>(&tabs[2 * k + 1], j.sp.kind, xs, bw, gw, g.PW,
                           g.W, j.sx);
      }
      j.tabs = tabs;
    }
  }
  const size_t sbytes = v_scratch_bytes(j, false);
  const double width = v_width<T>(isa, L);
  const auto item_cost = [&](rc_index it) {
    if (j.whole_roi) return j.cost[it] * static_cast<double>(j.nb) * width;
    rc_index k, b;
    v_item_kb(j, it, &k, &b);
    return j.cost[k] * width;
  };
  for (rc_index i0 = 0; i0 < items && !err;) {
    const rc_index i1 = rc_chunk_end(i0, items, nt_all, item_cost);
    const int nt = rc_threads(nt_all, i1 - i0);
#pragma omp parallel num_threads(nt)
    {
      char* mem = static_cast<char*>(rc_alloc(sbytes));
      VScratch<T> s = VScratch<T>();
      if (!v_scratch_bind(&s, mem, j, false)) {
#pragma omp atomic write
        err = RC_ERR_NOMEM;
      }
#pragma omp for schedule(dynamic, 4)
      for (rc_index it = i0; it < i1; ++it) {
        if (!mem) continue;
        fn(j, s, it);
      }
      if (j.stream) rc_stream_fence();
      rc_free(mem);
    }
    i0 = i1;
    if (!err && i0 < items && rc_interrupted(g)) err = RC_ERR_INTERRUPTED;
  }
  rc_free(packed);
  rc_free(tabmem);
  return err;
}

/* Row bands of the backward (tests): 0 chosen from the work, n > 0 forces
 * n bands on the packed path (more than H: the rows past H give empty
 * items).  Results never depend on it. */
inline rc_index* rc_band_slot() {
  static rc_index bands = 0;
  return &bands;
}

inline rc_index rc_set_backward_bands(rc_index n) {
  const rc_index old = *rc_band_slot();
  *rc_band_slot() = n > 0 ? n : 0;
  return old;
}

/* Least rows of a band chosen from the work. */
#define RC_BAND_MIN_ROWS 2
/* Least items per thread a band count must make to be chosen (where rows
 * allow): 1 lets the cost model decide alone; more trades the bands' extra
 * work for slack in the dynamic schedule (e.g. on a loaded machine). */
#define RC_BAND_MIN_ITEMS_PER_THREAD 1

/* Rows each bin row of every RoI can scatter to: rows[2 * (k * PH + ph)]
 * .. rows[... + 1] (first > last: none): the corners of its in-range
 * samples (sampled ops) or its cells (RoI Pool).  Returns null without
 * memory; the caller frees. */
template <typename T>
inline rc_index* v_bin_rows(const VJob<T>& j, bool pool) {
  const Geom& g = j.g;
  rc_index* rows = static_cast<rc_index*>(std::malloc(
      sizeof(rc_index) * static_cast<size_t>(2 * g.K * g.PH + 1)));
  char* mem = static_cast<char*>(std::malloc(
      sample_tab_bytes<T>(j.ny) +
      sizeof(rc_index) * static_cast<size_t>(2 * (g.PH + g.PW)) + 64));
  if (!rows || !mem) {
    std::free(rows);
    std::free(mem);
    return nullptr;
  }
  SampleTab<T> ty;
  sample_tab_bind(&ty, mem, j.ny);
  rc_index* ptab = reinterpret_cast<rc_index*>(mem + sample_tab_bytes<T>(j.ny));
  for (rc_index k = 0; k < g.K; ++k) {
    rc_index* rr = rows + 2 * k * g.PH;
    const T* roi = j.rois + 5 * k;
    if (pool) {
      rc_index *hlo = ptab, *hhi = ptab + g.PH, *wlo = ptab + 2 * g.PH,
               *whi = ptab + 2 * g.PH + g.PW;
      pool_tabs<T>(j.bins, roi, j.scale, g, hlo, hhi, wlo, whi);
      for (rc_index ph = 0; ph < g.PH; ++ph) {
        rr[2 * ph] = hlo[ph];
        rr[2 * ph + 1] = hhi[ph] - 1;
      }
      continue;
    }
    T ys, bh, xs, bw;
    rc_index gh, gw;
    sampled_geometry<T>(j.sp, roi, j.scale, g, &ys, &bh, &gh, &xs, &bw, &gw);
    sample_tab_fill<T>(&ty, j.sp.kind, ys, bh, gh, g.PH, g.H, 1);
    for (rc_index ph = 0; ph < g.PH; ++ph) {
      rc_index lo = g.H, hi = -1;
      for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
        if (!ty.ok[iy]) continue;
        const rc_index a = ty.lo[iy] < ty.hi[iy] ? ty.lo[iy] : ty.hi[iy];
        const rc_index b = ty.lo[iy] < ty.hi[iy] ? ty.hi[iy] : ty.lo[iy];
        if (a < lo) lo = a;
        if (b > hi) hi = b;
      }
      rr[2 * ph] = lo;
      rr[2 * ph + 1] = hi;
    }
  }
  std::free(mem);
  return rows;
}

/* The kernels' cost model of a banded backward (per channel): a RoI costs,
 * in each band it reaches, its per-RoI cost (j.cost) times the share of its
 * bin rows that reach the band (bins straddling bands count in each: the
 * max / pool modes search them in each) plus its grad_out tile (PH * PW);
 * an item adds one per RoI it scans and its tile traffic (zero / unpack,
 * 2 x rows x W).  Item (position range [r0, r1) of image n, band b) ->
 * c[b] for every band, with nband bands of brows rows; touched: nband
 * scratch, zero on entry and on return. */
template <typename T>
inline void v_band_cost_of(const VJob<T>& j, const rc_index* rows,
                           rc_index n, rc_index r0, rc_index r1,
                           rc_index nband, rc_index brows, double* c,
                           rc_index* touched) {
  const Geom& g = j.g;
  const double nbins = static_cast<double>(g.PH * g.PW);
  for (rc_index b = 0; b < nband; ++b) {
    const rc_index y0 = b * brows < g.H ? b * brows : g.H;
    const rc_index y1 = y0 + brows < g.H ? y0 + brows : g.H;
    c[b] = 2.0 * static_cast<double>((y1 - y0) * g.W) +
           static_cast<double>(r1 - r0);
  }
  for (rc_index r = r0; r < r1; ++r) {
    const rc_index k = j.order[r];
    if (rc_batch(g, k) != n) continue;
    const rc_index* rr = rows + 2 * k * g.PH;
    rc_index bmin = nband, bmax = -1;
    for (rc_index ph = 0; ph < g.PH; ++ph) {
      if (rr[2 * ph] > rr[2 * ph + 1]) continue;
      const rc_index b0 = rr[2 * ph] / brows;
      rc_index b1 = rr[2 * ph + 1] / brows;
      if (b1 >= nband) b1 = nband - 1;
      for (rc_index b = b0; b <= b1; ++b) ++touched[b];
      if (b0 < bmin) bmin = b0;
      if (b1 > bmax) bmax = b1;
    }
    for (rc_index b = bmin; b <= bmax; ++b) {
      if (touched[b])
        c[b] += j.cost[k] * static_cast<double>(touched[b]) /
                    static_cast<double>(g.PH) +
                nbins;
      touched[b] = 0;
    }
  }
}

/* Row bands of a packed backward over nb channel blocks for a team of nt
 * threads, chosen from the work: one with NHWC in place or a single thread;
 * else, of the band counts that keep bands at least RC_BAND_MIN_ROWS rows
 * and make at most 8 items per thread, the one with the least modelled time:
 * the makespan of the items (v_band_cost_of: bands cost work, the bins
 * straddling them are searched in each) taken in order by the first free
 * thread, the fewest bands on ties (among the counts that make at least
 * RC_BAND_MIN_ITEMS_PER_THREAD items per thread, if any).
 * The memory stays within v_pack_fits: the input packed once (max / pool
 * modes) plus one band tile per thread; *team is the most threads whose
 * tiles fit (one band if not even one does).  *brows: rows per band. */
template <typename T>
inline rc_index v_bands(const VJob<T>& j, const rc_index* rows, int nt,
                        bool need_in, rc_index* brows, int* team) {
  const Geom& g = j.g;
  const rc_index nb = j.nb, L = j.L;
  *brows = g.H;
  *team = nt;
  if (!j.packed || g.H < 1) return 1;
  const rc_index forced = *rc_band_slot();
  if (forced > 0) {
    *brows = (g.H + forced - 1) / forced;
    if (*brows < 1) *brows = 1;
    return forced;
  }
  if (nt <= 1 || !rows) return 1;
  const rc_index per = g.N * nb < 1 ? 1 : g.N * nb;
  const rc_index most = (8 * static_cast<rc_index>(nt) + per - 1) / per;
  const double HW = static_cast<double>(g.H * g.W);
  const double pin = need_in ? static_cast<double>(g.N * nb * L) * HW : 0.0;
  const double input = static_cast<double>(g.N * g.C) * HW;
  const rc_index most_rows = g.H < most ? g.H : most;
  double* c = static_cast<double*>(std::malloc(
      sizeof(double) * static_cast<size_t>(g.N * most_rows + nt + 1)));
  double* heap = c + g.N * most_rows;
  rc_index* touched = static_cast<rc_index*>(
      std::calloc(static_cast<size_t>(g.H + 1), sizeof(rc_index)));
  rc_index best_b = 1, best_rows = g.H;
  double best_t = -1;
  int best_enough = -1;
  for (rc_index bands = 1; c && touched && bands <= most_rows; ++bands) {
    const rc_index r = (g.H + bands - 1) / bands;
    if (bands > 1 && r < RC_BAND_MIN_ROWS) break;
    if ((g.H + r - 1) / r != bands) continue; /* same rows as another count */
    const double tile = static_cast<double>((r + 1) * g.W * L);
    if (bands > 1 && !v_pack_fits((pin + tile) * sizeof(T), input * sizeof(T)))
      continue;
    for (rc_index n = 0; n < g.N; ++n)
      v_band_cost_of(j, rows, n, j.batch_start[n], j.batch_start[n + 1], bands,
                     r, c + n * bands, touched);
    /* the makespan of the items taken in order (image, block, band) by the
     * first free thread: OpenMP's dynamic schedule */
    const int team = static_cast<int>(
        per * bands < nt ? per * bands : static_cast<rc_index>(nt));
    for (int q = 0; q < team; ++q) heap[q] = 0;
    for (rc_index n = 0; n < g.N; ++n)
      for (rc_index b = 0; b < nb; ++b)
        for (rc_index band = 0; band < bands; ++band) {
          std::pop_heap(heap, heap + team, std::greater<double>());
          heap[team - 1] += c[n * bands + band];
          std::push_heap(heap, heap + team, std::greater<double>());
        }
    const double t = *std::max_element(heap, heap + team);
    const bool enough = per * bands >= RC_BAND_MIN_ITEMS_PER_THREAD *
                                           static_cast<rc_index>(nt);
    if (enough && best_enough < 0) best_t = -1; /* the first with enough */
    if (enough) best_enough = 1;
    if ((enough || best_enough < 0) && (best_t < 0 || t < best_t)) {
      best_t = t;
      best_b = bands;
      best_rows = r;
    }
  }
  std::free(c);
  std::free(touched);
  if (best_b <= 1) return 1;
  const double tile = static_cast<double>((best_rows + 1) * g.W * L);
  /* the most threads whose tiles fit (v_pack_fits is monotonic) */
  const double items = static_cast<double>(per * best_b);
  const double fit = items < nt ? items : static_cast<double>(nt);
  if (!v_pack_fits((pin + fit * tile) * sizeof(T), input * sizeof(T))) {
    const double cap = 2.0 * input * sizeof(T) > static_cast<double>(16 << 20)
                           ? 2.0 * input * sizeof(T)
                           : static_cast<double>(16 << 20);
    const double f = std::floor((cap / sizeof(T) - pin) / tile);
    *team = f < 1 ? 1 : static_cast<int>(f);
  }
  *brows = best_rows;
  return best_b;
}

/* Per-channel cost of every (segment, band) item of a banded backward
 * (v_band_cost_of), and each RoI's rows [first, last] in roi_rows (first >
 * last: none) so an item skips the RoIs that miss its band.  Returns null
 * without memory; the caller frees. */
template <typename T>
inline double* v_band_costs(const VJob<T>& j, const rc_index* rows,
                            const RcSegs& sg, rc_index* roi_rows) {
  const Geom& g = j.g;
  const rc_index nseg = sg.ptr[g.N];
  const rc_index nband = j.nband;
  double* bc = static_cast<double*>(std::calloc(
      static_cast<size_t>(nseg * nband + 1), sizeof(double)));
  rc_index* touched = static_cast<rc_index*>(
      std::calloc(static_cast<size_t>(nband + 1), sizeof(rc_index)));
  if (!bc || !touched) {
    std::free(bc);
    std::free(touched);
    return nullptr;
  }
  for (rc_index k = 0; k < g.K; ++k) {
    rc_index lo = g.H, hi = -1;
    for (rc_index ph = 0; ph < g.PH; ++ph) {
      const rc_index* rr = rows + 2 * (k * g.PH + ph);
      if (rr[0] > rr[1]) continue;
      if (rr[0] < lo) lo = rr[0];
      if (rr[1] > hi) hi = rr[1];
    }
    roi_rows[2 * k] = lo;
    roi_rows[2 * k + 1] = hi;
  }
  for (rc_index n = 0; n < g.N; ++n)
    for (rc_index i = sg.ptr[n]; i < sg.ptr[n + 1]; ++i) {
      const rc_index r0 = sg.start[i];
      const rc_index r1 = i + 1 < sg.ptr[n + 1] ? sg.start[i + 1]
                                                : j.batch_start[n + 1];
      v_band_cost_of(j, rows, n, r0, r1, nband, j.brows, bc + i * nband,
                     touched);
    }
  std::free(touched);
  return bc;
}

/* The plan of a vectorised backward for a team of nt threads: channel
 * blocks, segments (sg), bands and, with more than one band, the per-item
 * costs (*bc) and the RoIs' rows (j->roi_rows); the caller frees both.
 * Returns false without memory. */
template <typename T>
inline bool v_bwd_plan(VJob<T>* j, bool pool, int nt, int isa, RcSegs* sg,
                       double** bc) {
  const Geom& g = j->g;
  j->L = v_lanes<T>(isa);
  j->nb = (g.C + j->L - 1) / j->L;
  const bool need_in = pool || j->sp.max_mode;
  *bc = nullptr;
  j->roi_rows = nullptr;
  /* bands are considered only where the (image, block) items are fewer
   * than 4 per thread */
  rc_index* rows = nullptr;
  const bool consider = j->packed && g.H > 0 &&
                        (*rc_band_slot() > 0 ||
                         (nt > 1 && g.N * j->nb < 4 * static_cast<rc_index>(nt)));
  if (consider) {
    rows = v_bin_rows<T>(*j, pool);
    if (!rows) return false;
  }
  j->nband = consider ? v_bands<T>(*j, rows, nt, need_in, &j->brows, &j->team)
                      : 1;
  if (!consider) {
    j->brows = g.H;
    j->team = nt;
  }
  const double width = v_width<T>(isa, j->L);
  if (!rc_segments(g, j->order, j->batch_start, j->cost, width,
                   j->packed ? 2.0 * static_cast<double>(g.H * g.W) : 0.0, sg)) {
    std::free(rows);
    return false;
  }
  if (j->nband > 1) {
    rc_index* rr = static_cast<rc_index*>(
        std::malloc(sizeof(rc_index) * static_cast<size_t>(2 * g.K + 1)));
    *bc = rr ? v_band_costs<T>(*j, rows, *sg, rr) : nullptr;
    if (!*bc) {
      std::free(rr);
      std::free(rows);
      std::free(sg->mem);
      return false;
    }
    j->roi_rows = rr;
  }
  std::free(rows);
  return true;
}

/* Backward: items (image, block, band), band fastest; grad_in must be zero
 * on entry. */
template <typename T>
int v_backward(VJob<T> j, int which, int nthreads, int isa, bool pack) {
  const Geom& g = j.g;
  j.packed = pack ? 1 : 0;
  const bool pool = which == RC_V_PBWD;
  RcSegs sg;
  double* bc;
  if (!v_bwd_plan<T>(
          &j, pool, rc_threads(nthreads, std::numeric_limits<rc_index>::max()),
          isa, &sg, &bc))
    return RC_ERR_NOMEM;
  const rc_index L = j.L;
  const typename VFns<T>::Item fn = item_kernel<T>(which, isa);
  const double width = v_width<T>(isa, L);
  j.seg = &sg;
  int err = 0;
  const rc_index per = j.nb * j.nband;
  const int nt_all = rc_threads(j.team < nthreads ? j.team : nthreads,
                                g.N * per);
  T* pin = nullptr;
  if (j.nband > 1 && (pool || j.sp.max_mode)) {
    /* the input packed once, as the forward's; every band reads it */
    const rc_index HW = g.H * g.W;
    pin = static_cast<T*>(
        rc_alloc(sizeof(T) * static_cast<size_t>(g.N * j.nb * HW * L)));
    if (!pin) err = RC_ERR_NOMEM;
    if (pin) v_pack_all<T>(pack_kernel<T>(isa), j.in, g, L, j.nb, pin, nthreads);
    j.pin = pin;
    if (!err && rc_interrupted(g)) err = RC_ERR_INTERRUPTED;
  }
  const size_t sbytes = v_scratch_bytes(j, true);
  for (rc_index t = 0; t < sg.rounds && !err; ++t) {
    j.round = t;
    const rc_index items = rc_round_images(g, &sg, t) * per;
    const auto item_cost = [&](rc_index it) {
      const rc_index seg = sg.ptr[sg.imgs[it / per]] + t;
      if (!bc) return sg.cost[seg] * width;
      return bc[seg * j.nband + it % j.nband] * width;
    };
    for (rc_index i0 = 0; i0 < items && !err;) {
      const rc_index i1 = rc_chunk_end(i0, items, nt_all, item_cost);
      const int nt = rc_threads(nt_all, i1 - i0);
#pragma omp parallel num_threads(nt)
      {
        char* mem = static_cast<char*>(rc_alloc(sbytes));
        VScratch<T> s = VScratch<T>();
        if (!v_scratch_bind(&s, mem, j, true)) {
#pragma omp atomic write
          err = RC_ERR_NOMEM;
        }
#pragma omp for schedule(dynamic, 1)
        for (rc_index it = i0; it < i1; ++it) {
          if (!mem) continue;
          fn(j, s, it);
        }
        rc_free(mem);
      }
      i0 = i1;
      if (!err && (i0 < items || t + 1 < sg.rounds) && rc_interrupted(g))
        err = RC_ERR_INTERRUPTED;
    }
  }
  rc_free(pin);
  std::free(bc);
  std::free(const_cast<rc_index*>(j.roi_rows));
  std::free(sg.mem);
  return err;
}

template <typename T>
inline VJob<T> v_job(const Geom& g, T scale, const T* in, const T* rois,
                     T* out) {
  VJob<T> j;
  std::memset(static_cast<void*>(&j), 0, sizeof(j));
  j.g = g;
  j.scale = scale;
  j.in = in;
  j.rois = rois;
  j.out = out;
  return j;
}

/* ------------------------------------------------------------------ */
/* Entry points (called from _cpu.pyx)                                  */
/* ------------------------------------------------------------------ */
/* The instruction set for a call: AVX-512's 256-byte channel blocks would be
 * mostly padding for C * sizeof(T) <= 128, and a backward with fewer (image,
 * channel block) items than threads gets twice as many from 128-byte blocks,
 * which cost no extra work (row bands do: v_bands); such calls take the AVX2
 * kernels.  Results never depend on it. */
template <typename T>
inline int rc_isa_for(const Geom& g, int backward_threads = 0) {
  const int isa = rc_isa();
  if (isa < RC_ISA_AVX512) return isa;
  const size_t cb = static_cast<size_t>(g.C) * sizeof(T);
  if (cb <= 128) return RC_ISA_AVX2;
  if (backward_threads > 1 &&
      static_cast<double>(g.N) * static_cast<double>((cb + 255) / 256) <
          static_cast<double>(backward_threads))
    return RC_ISA_AVX2;
  return isa;
}

/* Backward: extra elements of the per-thread tiles ([H*W][L], two). */
template <typename T>
inline double v_tile_extra(const Geom& g, int nthreads, int isa) {
  const int nt = rc_threads(nthreads, g.N * ((g.C + v_lanes<T>(isa) - 1) /
                                             v_lanes<T>(isa)));
  return 2.0 * nt * static_cast<double>(g.H * g.W) *
         static_cast<double>(v_lanes<T>(isa));
}

/* Forward: elements of the packed input [N][nb][H][W][L]. */
template <typename T>
inline double v_pack_extra(const Geom& g, int isa) {
  const rc_index L = v_lanes<T>(isa);
  return static_cast<double>(g.N) * static_cast<double>((g.C + L - 1) / L * L) *
         static_cast<double>(g.H * g.W);
}

/* The CPU forward of RoI Align (kind RC_ALIGN), RoI Warp and MNC warp:
 * sampled_forward_reference (cpu/reference_sampled.h) is its specification,
 * sampled_forward_{baseline,avx2,avx512} (cpu/isa_entry.h) its lane kernels. */
template <typename T>
int sampled_forward(const T* in, const T* rois, T* out, const Geom& g,
                    T scale, SampledParams sp, int nthreads) {
  const int isa = rc_isa_for<T>(g);
  if (isa == RC_ISA_REFERENCE)
    return sampled_forward_reference<T>(in, rois, out, g, scale, sp, nthreads);
  double* cost = static_cast<double*>(
      std::malloc(sizeof(double) * static_cast<size_t>(g.K + 1)));
  if (!cost) return RC_ERR_NOMEM;
  rc_index mgh, mgw;
  if (sampled_max_grid<T>(sp, rois, scale, g, &mgh, &mgw, cost)) {
    std::free(cost);
    return RC_ERR_COST;
  }
  rc_index crop_area;
  if (crop_chosen<T>(RC_V_SFWD, rois, scale, g, sp, 0, g.PH * mgh, g.PW * mgw,
                     v_work(cost, g.K), isa, nthreads, *rc_pack_policy_slot(),
                     &crop_area)) {
    VJob<T> j = v_job<T>(g, scale, in, rois, out);
    j.sp = sp;
    j.ny = g.PH * mgh;
    j.nx = g.PW * mgw;
    j.cost = cost;
    const int err = crop_forward<T>(j, RC_V_SFWD, nthreads, isa, crop_area);
    std::free(cost);
    return err;
  }
  const bool pack = v_pack_pays<T>(g, v_work(cost, g.K), 1.0, isa,
                                   v_pack_extra<T>(g, isa));
  int err;
  if (!pack && !g.channels_last) {
    err = sampled_forward_reference<T>(in, rois, out, g, scale, sp, nthreads);
  } else {
    VJob<T> j = v_job<T>(g, scale, in, rois, out);
    j.sp = sp;
    j.ny = g.PH * mgh;
    j.nx = g.PW * mgw;
    j.cost = cost;
    err = v_forward<T>(j, RC_V_SFWD, nthreads, isa, pack);
  }
  std::free(cost);
  return err;
}

/* The backward's cost model, path choice and lane job, shared by the two
 * drivers below and backward_items (so the item report always describes what
 * runs): *cost (malloc'd, the caller frees: the per-RoI costs), *pack (the
 * lane kernels on packed channel blocks pay; never with the reference
 * kernels) and *j (the lane kernels' job).  RC_OK, RC_ERR_NOMEM or
 * RC_ERR_COST (*cost then null). */
template <typename T>
int v_bwd_setup(bool pool, const T* grad_out, const T* in, const T* rois,
                const rc_index* order, const rc_index* batch_start, T* grad_in,
                const Geom& g, T scale, SampledParams sp, int bins, int nthreads,
                int isa, double** cost, bool* pack, VJob<T>* j) {
  rc_index mgh = 0, mgw = 0;
  if (pool) {
    *cost = pool_cost_array<T>(bins, rois, scale, g, g.N);
    if (!*cost) return RC_ERR_NOMEM;
  } else {
    *cost = static_cast<double*>(
        std::malloc(sizeof(double) * static_cast<size_t>(g.K + g.N + 1)));
    if (!*cost) return RC_ERR_NOMEM;
    if (sampled_max_grid<T>(sp, rois, scale, g, &mgh, &mgw, *cost)) {
      std::free(*cost);
      *cost = nullptr;
      return RC_ERR_COST;
    }
  }
  *pack = isa != RC_ISA_REFERENCE &&
          v_pack_pays<T>(g, v_work(*cost, g.K),
                         pool || sp.max_mode ? 3.0 : 2.0, isa,
                         v_tile_extra<T>(g, nthreads, isa));
  *j = v_job<T>(g, scale, in, rois, grad_in);
  j->sp = sp;
  j->bins = bins;
  j->grad_out = grad_out;
  j->order = order;
  j->batch_start = batch_start;
  j->ny = g.PH * mgh;
  j->nx = g.PW * mgw;
  j->cost = *cost;
  return RC_OK;
}

/* The CPU backward of RoI Align, RoI Warp and MNC warp. */
template <typename T>
int sampled_backward(const T* grad_out, const T* in, const T* rois,
                     const rc_index* order, const rc_index* batch_start,
                     T* grad_in, const Geom& g, T scale, SampledParams sp,
                     int nthreads) {
  const int isa = rc_isa_for<T>(g, nthreads);
  if (isa == RC_ISA_REFERENCE)
    return sampled_backward_reference<T>(grad_out, in, rois, order,
                                         batch_start, grad_in, g, scale, sp,
                                         nthreads);
  double* cost;
  bool pack;
  VJob<T> j;
  int err = v_bwd_setup<T>(false, grad_out, in, rois, order, batch_start,
                           grad_in, g, scale, sp, 0, nthreads, isa, &cost,
                           &pack, &j);
  if (err) return err;
  if (!pack && !g.channels_last)
    err = sampled_backward_reference<T>(grad_out, in, rois, order, batch_start,
                                        grad_in, g, scale, sp, nthreads);
  else
    err = v_backward<T>(j, RC_V_SBWD, nthreads, isa, pack);
  std::free(cost);
  return err;
}

/* The CPU forward of RoI Pool. */
template <typename T>
int pool_forward(const T* in, const T* rois, T* out, const Geom& g, T scale,
                 int bins, int nthreads) {
  const int isa = rc_isa_for<T>(g);
  if (isa == RC_ISA_REFERENCE)
    return pool_forward_reference<T>(in, rois, out, g, scale, bins, nthreads);
  double* cost = pool_cost_array<T>(bins, rois, scale, g, 0);
  if (!cost) return RC_ERR_NOMEM;
  rc_index crop_area;
  if (crop_chosen<T>(RC_V_PFWD, rois, scale, g, SampledParams(), bins, 0, 0,
                     v_work(cost, g.K), isa, nthreads, *rc_pack_policy_slot(),
                     &crop_area)) {
    VJob<T> j = v_job<T>(g, scale, in, rois, out);
    j.bins = bins;
    j.cost = cost;
    const int err = crop_forward<T>(j, RC_V_PFWD, nthreads, isa, crop_area);
    std::free(cost);
    return err;
  }
  const bool pack = v_pack_pays<T>(g, v_work(cost, g.K), 1.0, isa,
                                   v_pack_extra<T>(g, isa));
  int err;
  if (!pack && !g.channels_last) {
    err = pool_forward_reference<T>(in, rois, out, g, scale, bins, nthreads);
  } else {
    VJob<T> j = v_job<T>(g, scale, in, rois, out);
    j.bins = bins;
    j.cost = cost;
    err = v_forward<T>(j, RC_V_PFWD, nthreads, isa, pack);
  }
  std::free(cost);
  return err;
}

/* The CPU backward of RoI Pool. */
template <typename T>
int pool_backward(const T* grad_out, const T* in, const T* rois,
                  const rc_index* order, const rc_index* batch_start,
                  T* grad_in, const Geom& g, T scale, int bins,
                  int nthreads) {
  const int isa = rc_isa_for<T>(g, nthreads);
  if (isa == RC_ISA_REFERENCE)
    return pool_backward_reference<T>(grad_out, in, rois, order, batch_start,
                                      grad_in, g, scale, bins, nthreads);
  double* cost;
  bool pack;
  VJob<T> j;
  int err = v_bwd_setup<T>(true, grad_out, in, rois, order, batch_start,
                           grad_in, g, scale, SampledParams(), bins, nthreads,
                           isa, &cost, &pack, &j);
  if (err) return err;
  if (!pack && !g.channels_last)
    err = pool_backward_reference<T>(grad_out, in, rois, order, batch_start,
                                     grad_in, g, scale, bins, nthreads);
  else
    err = v_backward<T>(j, RC_V_PBWD, nthreads, isa, pack);
  std::free(cost);
  return err;
}

/* The parallel items of a backward as the drivers run it (the report of
 * roicore._cpu.backward_items): info[0] the path (0 the reference kernels,
 * 1 NHWC in place, 2 packed channel blocks), info[1] the instruction set,
 * info[2] the row bands, info[3] the rounds, info[4] the channels per
 * item, info[5] the team (nthreads, or fewer where memory caps it); *costs (malloc'd, the caller frees) each item's cost in the
 * kernels' model, round by round in the order the team takes them, then
 * each item's round.  The
 * team is nthreads as given (a machine with that many processors: not
 * clamped to this one's rc_thread_ceiling).  Returns the item count, or -1
 * without memory or on a cost error. */
template <typename T>
rc_index backward_items(bool pool, const T* rois, const rc_index* order,
                        const rc_index* batch_start, const Geom& g, T scale,
                        SampledParams sp, int bins, int nthreads,
                        double** costs, rc_index* info) {
  *costs = nullptr;
  const int isa = rc_isa_for<T>(g, nthreads);
  info[1] = isa;
  double* cost;
  bool pack;
  VJob<T> j;
  if (v_bwd_setup<T>(pool, nullptr, nullptr, rois, order, batch_start, nullptr,
                     g, scale, sp, bins, nthreads, isa, &cost, &pack, &j))
    return -1;
  RcSegs sg;
  double* bc = nullptr;
  rc_index nblk, nband = 1, cb;
  double width;
  if (isa == RC_ISA_REFERENCE || (!pack && !g.channels_last)) {
    info[0] = 0;
    info[5] = nthreads;
    cb = rc_channel_block_for(g.C, g.N, nthreads < 1 ? 1 : nthreads, cost,
                              g.K);
    nblk = (g.C + cb - 1) / cb;
    width = static_cast<double>(cb);
    if (!rc_segments(g, order, batch_start, cost, width, 0.0, &sg)) {
      std::free(cost);
      return -1;
    }
  } else {
    info[0] = pack ? 2 : 1;
    info[5] = nthreads;
    j.packed = pack ? 1 : 0;
    if (!v_bwd_plan<T>(&j, pool, nthreads < 1 ? 1 : nthreads, isa, &sg, &bc)) {
      std::free(cost);
      return -1;
    }
    std::free(const_cast<rc_index*>(j.roi_rows));
    nblk = j.nb;
    nband = j.nband;
    info[5] = j.team;
    cb = j.L;
    width = v_width<T>(isa, j.L);
  }
  info[2] = nband;
  info[3] = sg.rounds;
  info[4] = cb;
  rc_index count = 0;
  for (rc_index t = 0; t < sg.rounds; ++t)
    count += rc_round_images(g, &sg, t) * nblk * nband;
  *costs = static_cast<double*>(
      std::malloc(sizeof(double) * static_cast<size_t>(2 * count + 1)));
  if (*costs) {
    rc_index m = 0;
    for (rc_index t = 0; t < sg.rounds; ++t) {
      const rc_index imgs = rc_round_images(g, &sg, t);
      for (rc_index i = 0; i < imgs; ++i) {
        const rc_index seg = sg.ptr[sg.imgs[i]] + t;
        for (rc_index b = 0; b < nblk; ++b)
          for (rc_index band = 0; band < nband; ++band) {
            /* the reference's last block may be short: its channels */
            const double ch =
                info[0] == 0
                    ? static_cast<double>((b * cb + cb < g.C ? b * cb + cb
                                                             : g.C) -
                                          b * cb)
                    : width;
            (*costs)[count + m] = static_cast<double>(t);
            (*costs)[m++] = (bc ? bc[seg * nband + band] : sg.cost[seg]) * ch;
          }
      }
    }
  }
  std::free(bc);
  std::free(sg.mem);
  std::free(cost);
  return *costs ? count : -1;
}

/* The sampling cost of a call, for the Python-side error message: the
 * largest samples per bin, along a RoI side and per RoI (each with its RoI),
 * and the samples of the whole call (times C). */
template <typename T>
void sampled_cost(const T* rois, const Geom& g, T scale, SampledParams sp,
                  double* max_bin, rc_index* bin_roi, double* max_side,
                  rc_index* side_roi, double* max_roi, rc_index* roi_roi,
                  double* total) {
  *max_bin = *max_side = *max_roi = *total = 0;
  *bin_roi = *side_roi = *roi_roi = -1;
  for (rc_index k = 0; k < g.K; ++k) {
    T ys, bh, xs, bw;
    rc_index gh, gw;
    sampled_geometry<T>(sp, rois + 5 * k, scale, g, &ys, &bh, &gh, &xs, &bw,
                        &gw);
    const double bin = static_cast<double>(gh) * static_cast<double>(gw);
    const double side = static_cast<double>(
        g.PH * gh > g.PW * gw ? g.PH * gh : g.PW * gw);
    if (bin > *max_bin) {
      *max_bin = bin;
      *bin_roi = k;
    }
    if (side > *max_side) {
      *max_side = side;
      *side_roi = k;
    }
    const double roi = bin * static_cast<double>(g.PH * g.PW);
    if (roi > *max_roi) {
      *max_roi = roi;
      *roi_roi = k;
    }
    *total += roi;
  }
  *total *= static_cast<double>(g.C);
}

}  // namespace roicore

#endif  // ROICORE_CPU_DRIVER_H_
