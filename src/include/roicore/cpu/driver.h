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

template <typename T>
inline size_t v_scratch_bytes(const VJob<T>& j, bool backward) {
  const size_t L = static_cast<size_t>(j.L);
  size_t b = sample_tab_bytes<T>(j.ny) + sample_tab_bytes<T>(j.nx);
  b += (sizeof(rc_index) * 2 * static_cast<size_t>(j.g.PH + j.g.PW) + 63) &
       ~static_cast<size_t>(63);
  b += 2 * sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW) * L;
  if (j.whole_roi)
    b += sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW * j.g.C) + 64;
  if (backward && j.packed)
    b += 2 * sizeof(T) * static_cast<size_t>(j.g.H * j.g.W) * L;
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
  mem += (sizeof(rc_index) * 2 * static_cast<size_t>(j.g.PH + j.g.PW) + 63) &
         ~static_cast<size_t>(63);
  s->tile = reinterpret_cast<T*>(mem);
  mem += sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW) * L;
  s->stage = reinterpret_cast<T*>(mem);
  mem += sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW) * L;
  s->rstage = nullptr;
  if (j.whole_roi) {
    s->rstage = reinterpret_cast<T*>(mem);
    mem += (sizeof(T) * static_cast<size_t>(j.g.PH * j.g.PW * j.g.C) + 63) &
           ~static_cast<size_t>(63);
  }
  s->gtile = s->itile = nullptr;
  if (backward && j.packed) {
    s->gtile = reinterpret_cast<T*>(mem);
    mem += sizeof(T) * static_cast<size_t>(j.g.H * j.g.W) * L;
    s->itile = reinterpret_cast<T*>(mem);
  }
  return true;
}

/* Forward: items (block, RoI); NCHW input packed first (same team). */
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
  const rc_index chunk = 128; /* [chunk][L] stays in L1 while transposing */
  const rc_index nchunk = (HW + chunk - 1) / chunk;
  const rc_index pack_items = packed ? g.N * j.nb * nchunk : 0;
  int err = 0;
  if (packed) {
    const int npt = rc_threads(nthreads, pack_items);
#pragma omp parallel for num_threads(npt) schedule(static)
    for (rc_index p = 0; p < pack_items; ++p) {
      const rc_index nbk = p / nchunk, i0 = (p % nchunk) * chunk;
      const rc_index n = nbk / j.nb, b = nbk % j.nb;
      const rc_index i1 = i0 + chunk < HW ? i0 + chunk : HW;
      T* dst = packed + n * j.bsn + b * j.bsb;
      packfn(in, g, L, n, b * L, i0, i1, dst);
    }
    if (rc_interrupted(g)) err = RC_ERR_INTERRUPTED;
  }
  const int nt_all = rc_threads(nthreads, items);
  /* The sampled ops' tables of every RoI, filled once when several channel
   * blocks run it (each (RoI, block) item filled them again: ~8 % of W1's
   * instructions with C = 256), within 16 MiB. */
  char* tabmem = nullptr;
  if (which == RC_V_SFWD && j.nb > 1) {
    const size_t per = sample_tab_bytes<T>(j.ny) + sample_tab_bytes<T>(j.nx);
    const size_t head = (sizeof(SampleTab<T>) * 2 * static_cast<size_t>(g.K) +
                         63) & ~static_cast<size_t>(63);
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

/* Backward: items (image, block); grad_in must be zero on entry. */
template <typename T>
int v_backward(VJob<T> j, int which, int nthreads, int isa, bool pack) {
  const Geom& g = j.g;
  const rc_index L = j.L = v_lanes<T>(isa);
  j.nb = (g.C + L - 1) / L;
  j.packed = pack ? 1 : 0;
  const typename VFns<T>::Item fn = item_kernel<T>(which, isa);
  RcSegs sg;
  const double width = v_width<T>(isa, L);
  if (!rc_segments(g, j.order, j.batch_start, j.cost, width,
                   j.packed ? 2.0 * static_cast<double>(g.H * g.W) : 0.0, &sg))
    return RC_ERR_NOMEM;
  j.seg = &sg;
  int err = 0;
  const int nt_all = rc_threads(nthreads, g.N * j.nb);
  const size_t sbytes = v_scratch_bytes(j, true);
  for (rc_index t = 0; t < sg.rounds && !err; ++t) {
    j.round = t;
    const rc_index items = rc_round_images(g, &sg, t) * j.nb;
    const auto item_cost = [&](rc_index it) {
      return sg.cost[sg.ptr[sg.imgs[it / j.nb]] + t] * width;
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
 * mostly padding for C * sizeof(T) <= 128, and a backward (one item per
 * image and channel block) with fewer blocks than threads gets twice as many
 * items from 128-byte blocks; such calls take the AVX2 kernels.  Results never
 * depend on it. */
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
  double* cost = static_cast<double*>(
      std::malloc(sizeof(double) * static_cast<size_t>(g.K + g.N + 1)));
  if (!cost) return RC_ERR_NOMEM;
  rc_index mgh, mgw;
  if (sampled_max_grid<T>(sp, rois, scale, g, &mgh, &mgw, cost)) {
    std::free(cost);
    return RC_ERR_COST;
  }
  const bool pack = v_pack_pays<T>(g, v_work(cost, g.K),
                                   sp.max_mode ? 3.0 : 2.0, isa,
                                   v_tile_extra<T>(g, nthreads, isa));
  int err;
  if (!pack && !g.channels_last) {
    err = sampled_backward_reference<T>(grad_out, in, rois, order, batch_start,
                                        grad_in, g, scale, sp, nthreads);
  } else {
    VJob<T> j = v_job<T>(g, scale, in, rois, grad_in);
    j.sp = sp;
    j.grad_out = grad_out;
    j.order = order;
    j.batch_start = batch_start;
    j.ny = g.PH * mgh;
    j.nx = g.PW * mgw;
    j.cost = cost;
    err = v_backward<T>(j, RC_V_SBWD, nthreads, isa, pack);
  }
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
  double* cost = pool_cost_array<T>(bins, rois, scale, g, g.N);
  if (!cost) return RC_ERR_NOMEM;
  const bool pack = v_pack_pays<T>(g, v_work(cost, g.K), 3.0, isa,
                                   v_tile_extra<T>(g, nthreads, isa));
  int err;
  if (!pack && !g.channels_last) {
    err = pool_backward_reference<T>(grad_out, in, rois, order, batch_start,
                                     grad_in, g, scale, bins, nthreads);
  } else {
    VJob<T> j = v_job<T>(g, scale, in, rois, grad_in);
    j.bins = bins;
    j.grad_out = grad_out;
    j.order = order;
    j.batch_start = batch_start;
    j.cost = cost;
    err = v_backward<T>(j, RC_V_PBWD, nthreads, isa, pack);
  }
  std::free(cost);
  return err;
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
