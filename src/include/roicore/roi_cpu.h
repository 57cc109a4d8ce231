/* roicore CPU kernels: RoI Pool and the sampled ops (RoI Align, RoI Warp,
 * MNC RoI Warp), forward and backward, NCHW and NHWC, OpenMP-parallel.
 *
 * Work decomposition
 *  - forward:  items are (RoI, channel block); each item builds the RoI's
 *    per-axis tables (bin bounds or sample positions and bilinear weights)
 *    once and reuses them for every channel of the block.  Every output
 *    element is computed by one thread in a fixed order, so results do not
 *    depend on the thread count.
 *  - backward: items are (image, channel block); each item walks the RoIs of
 *    its image in their original order and scatters into its own slice of
 *    grad_input.  No two threads write the same element and the summation
 *    order is fixed, so gradients are bit-identical for any thread count
 *    (no atomics, no per-thread partials).
 *
 * Two implementations share these rules: the scalar *_reference kernels
 * (one channel at a time; the definition of the results) and the vectorised
 * kernels at the end of this file (channel lanes, runtime ISA dispatch),
 * which the entry points sampled_forward / sampled_backward / pool_forward /
 * pool_backward use and which are bit-identical to the reference.
 *
 * Interruptible: every parallel loop runs its items in chunks of bounded
 * estimated cost (rc_chunk_end); between chunks the calling thread runs
 * Geom::check (from _cpu.pyx: PyErr_CheckSignals with the GIL) and the call
 * stops when it says so.  Items are independent, so the chunking never
 * changes a result.
 *
 * Error codes: 0 ok, 1 out of memory, 2 sampling cost above a limit
 * (roi_common.h), 3 interrupted by Geom::check.
 */
#ifndef ROICORE_ROI_CPU_H_
#define ROICORE_ROI_CPU_H_

#include <cmath>
#include <cfloat>
#include <cstdlib>
#include <cstring>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef _WIN32
#include <malloc.h>
#endif
#if (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

using std::ceil;
using std::floor;
using std::round;

#include "roi_common.h"

namespace roicore {

enum { RC_OK = 0, RC_ERR_NOMEM = 1, RC_ERR_COST = 2, RC_ERR_INTERRUPTED = 3 };

/* Called between chunks of work on the calling thread; nonzero stops. */
typedef int (*rc_check_fn)(void*);

/* Geometry of one call. */
struct Geom {
  rc_index N, C, H, W;   /* input */
  rc_index K, PH, PW;    /* rois / output */
  bool channels_last;    /* NHWC */
  const rc_index* batch; /* exact batch index of each RoI (K); the kernels
                            never read it from the (float) rois */
  rc_check_fn check;     /* may be null */
  void* check_ctx;
};

template <typename T>
struct Strides {
  /* element offset of (n, c, y, x) = n*sn + c*sc + y*sy + x*sx */
  rc_index sn, sc, sy, sx;
  /* output offset of (k, c, ph, pw) = k*on + c*oc + ph*oy + pw*ox */
  rc_index on, oc, oy, ox;
  explicit Strides(const Geom& g) {
    if (g.channels_last) {
      sn = g.H * g.W * g.C; sc = 1; sy = g.W * g.C; sx = g.C;
      on = g.PH * g.PW * g.C; oc = 1; oy = g.PW * g.C; ox = g.C;
    } else {
      sn = g.C * g.H * g.W; sc = g.H * g.W; sy = g.W; sx = 1;
      on = g.C * g.PH * g.PW; oc = g.PH * g.PW; oy = g.PW; ox = 1;
    }
  }
};

/* Most threads a team may have: OpenMP's thread limit, and at most
 * max(64, 4 x the processors or the default team): a larger request (e.g.
 * num_threads=10**6) would make the runtime abort the process when it fails
 * to create the threads.  Results never depend on the team size. */
inline int rc_thread_ceiling() {
#ifdef _OPENMP
  int c = omp_get_num_procs();
  const int m = omp_get_max_threads();
  if (m > c) c = m;
  int ceil_ = c > 16 ? 4 * c : 64;
  const int lim = omp_get_thread_limit();
  if (lim > 0 && lim < ceil_) ceil_ = lim;
  return ceil_ < 1 ? 1 : ceil_;
#else
  return 1;
#endif
}

/* Team size for `items` independent items. */
inline int rc_threads(int requested, rc_index items) {
  int n = requested < 1 ? 1 : requested;
  const int top = rc_thread_ceiling();
  if (n > top) n = top;
  if (items < n) n = static_cast<int>(items < 1 ? 1 : items);
  return n;
}

/* Estimated cost of one chunk per thread, in bilinear samples x channels (or
 * pool cells x channels) for the scalar kernels and in vector operations for
 * the vectorised ones (v_width): about 0.1 s, so Ctrl-C is honoured within a
 * fraction of a second while a typical call runs in one chunk. */
#define RC_CHUNK_WORK 1.0e8
inline double* rc_chunk_work_slot() {
  static double w = RC_CHUNK_WORK;
  return &w;
}

/* Testing: set the chunk cost (<= 0: the default); returns the old one. */
inline double rc_set_chunk_work(double w) {
  const double old = *rc_chunk_work_slot();
  *rc_chunk_work_slot() = w > 0 ? w : RC_CHUNK_WORK;
  return old;
}

/* End of the chunk of items starting at i0: items are added until their
 * cost reaches nt chunk budgets (at least one item). */
template <typename CostF>
inline rc_index rc_chunk_end(rc_index i0, rc_index items, int nt,
                             const CostF& cost) {
  const double budget = *rc_chunk_work_slot() * (nt < 1 ? 1 : nt);
  double acc = 0;
  rc_index i = i0;
  while (i < items) {
    acc += cost(i) + 1.0;
    ++i;
    if (acc >= budget) break;
  }
  return i;
}

/* Whether the caller asked to stop (runs the check on the calling thread,
 * outside any parallel region). */
inline bool rc_interrupted(const Geom& g) {
  return g.check != nullptr && g.check(g.check_ctx) != 0;
}

/* Channel block: enough items for load balance, large enough that the
 * per-RoI tables are amortised.  The results never depend on it. */
inline rc_index rc_channel_block(rc_index C, rc_index outer, int nthreads) {
  rc_index want = static_cast<rc_index>(nthreads) * 8;
  rc_index blocks = outer >= want ? 1 : (want + outer - 1) / outer;
  rc_index cb = (C + blocks - 1) / blocks;
  if (cb < 8) cb = C < 8 ? C : 8;
  if (cb > 256) cb = 256;
  return cb < 1 ? 1 : cb;
}

/* rc_channel_block, small enough that one item (its channels times the
 * costliest RoI, cost per channel) stays within a chunk's budget, so every
 * item is short enough to wait for after Ctrl-C. */
inline rc_index rc_channel_block_for(rc_index C, rc_index outer, int nthreads,
                                     const double* cost, rc_index K) {
  rc_index cb = rc_channel_block(C, outer, nthreads);
  double top = 1;
  for (rc_index k = 0; k < K; ++k)
    if (cost[k] > top) top = cost[k];
  const double fit = *rc_chunk_work_slot() / top;
  if (fit < static_cast<double>(cb))
    cb = fit < 1 ? 1 : static_cast<rc_index>(fit);
  return cb;
}

/* Batch index of RoI k, -1 when out of [0, N) (validated in Python; the
 * kernels never read out of bounds).  From the exact int64 array, never from
 * the rois cast to the compute dtype (float32 holds integers exactly only up
 * to 2^24). */
inline rc_index rc_batch(const Geom& g, rc_index k) {
  const rc_index b = g.batch[k];
  return (b >= 0 && b < g.N) ? b : -1;
}

/* ------------------------------------------------------------------ */
/* Per-RoI tables                                                      */
/* ------------------------------------------------------------------ */

/* Sampled ops: one entry per sample (bin-major), offsets already multiplied
 * by the axis stride. */
template <typename T>
struct SampleTab {
  rc_index* lo;
  rc_index* hi;
  T* wl;
  T* wh;
  unsigned char* ok;
  rc_index grid;
};

template <typename T>
inline size_t sample_tab_bytes(rc_index n) {
  /* rounded up to 64 bytes so a second table bound after it stays aligned */
  size_t b = static_cast<size_t>(n) *
             (2 * sizeof(rc_index) + 2 * sizeof(T) + sizeof(unsigned char));
  return (b + 63) & ~static_cast<size_t>(63);
}

template <typename T>
inline void sample_tab_bind(SampleTab<T>* t, char* mem, rc_index n) {
  t->lo = reinterpret_cast<rc_index*>(mem);
  t->hi = t->lo + n;
  t->wl = reinterpret_cast<T*>(t->hi + n);
  t->wh = t->wl + n;
  t->ok = reinterpret_cast<unsigned char*>(t->wh + n);
}

template <typename T>
inline void sample_tab_fill(SampleTab<T>* t, int kind, T start, T bin,
                            rc_index grid, rc_index P, rc_index size,
                            rc_index stride) {
  t->grid = grid;
  rc_index j = 0;
  for (rc_index p = 0; p < P; ++p) {
    for (rc_index i = 0; i < grid; ++i, ++j) {
      T v = rc_sample_coord<T>(kind, start, bin, p, i, grid);
      rc_index lo = 0, hi = 0;
      T wl = 0, wh = 0;
      bool ok = rc_bilinear_axis<T>(kind, v, size, &lo, &hi, &wl, &wh);
      t->ok[j] = ok ? 1 : 0;
      t->lo[j] = lo * stride;
      t->hi[j] = hi * stride;
      t->wl[j] = wl;
      t->wh[j] = wh;
    }
  }
}

struct SampledParams {
  int kind;            /* RC_ALIGN / RC_WARP / RC_MNC */
  bool aligned;
  bool max_mode;
  int sampling_ratio;
};

template <typename T>
inline void sampled_geometry(const SampledParams& sp, const T* roi, T scale,
                             const Geom& g, T* ys, T* bh, rc_index* gh,
                             T* xs, T* bw, rc_index* gw) {
  rc_sample_axis<T>(sp.kind, roi[2], roi[4], scale, sp.aligned, g.PH,
                    sp.sampling_ratio, ys, bh, gh);
  rc_sample_axis<T>(sp.kind, roi[1], roi[3], scale, sp.aligned, g.PW,
                    sp.sampling_ratio, xs, bw, gw);
  rc_grid_pair(gh, gw);
}

/* Largest grid over all RoIs, and (if cost is not null) each RoI's cost per
 * channel: its samples plus its table entries and bins.  Returns
 * RC_ERR_COST when a RoI or the call is above a limit of roi_common.h. */
template <typename T>
inline int sampled_max_grid(const SampledParams& sp, const T* rois, T scale,
                            const Geom& g, rc_index* mgh, rc_index* mgw,
                            double* cost = nullptr) {
  rc_index a = 0, b = 0;
  double total = 0;
  int err = RC_OK;
  for (rc_index k = 0; k < g.K; ++k) {
    T ys, bh, xs, bw;
    rc_index gh, gw;
    sampled_geometry<T>(sp, rois + 5 * k, scale, g, &ys, &bh, &gh, &xs, &bw,
                        &gw);
    if (rc_grid_too_large(gh, gw, g.PH, g.PW)) {
      err = RC_ERR_COST;
      gh = gw = 0;
    }
    if (gh > a) a = gh;
    if (gw > b) b = gw;
    const double samples = static_cast<double>(g.PH * g.PW) *
                           static_cast<double>(gh * gw);
    total += samples;
    if (cost)
      cost[k] = samples + static_cast<double>(g.PH * gh + g.PW * gw) +
                static_cast<double>(g.PH * g.PW);
  }
  *mgh = a;
  *mgw = b;
  if (total * static_cast<double>(g.C) > RC_CALL_SAMPLE_LIMIT)
    err = RC_ERR_COST;
  return err;
}

/* Backward work: the RoIs of image n (order[batch_start[n] ..
 * batch_start[n+1]]) are cut into consecutive segments of bounded cost, so
 * that one image with many RoIs cannot make one long uninterruptible item.
 * Round t runs segment t of every image that has one, as items (image,
 * channel block) chunked as usual: the segments of one (image, block) run
 * one after the other, in order, accumulating into the same grad_input
 * slice, so the summation order is that of one unsplit item. */
struct RcSegs {
  rc_index* ptr;    /* N + 1: segments of image n are ptr[n] .. ptr[n+1]-1 */
  rc_index* start;  /* first position (into order) of each segment */
  double* cost;     /* per-channel cost of each segment */
  rc_index* imgs;   /* N: images of the current round */
  rc_index rounds;  /* most segments of one image */
  void* mem;
};

/* width: channels per item (the per-item cost is cost x width); extra: a
 * fixed per-segment cost (e.g. the packed path's tile traffic): a segment is
 * cut only once its RoIs cost at least that much, so splitting never costs
 * more than the work.  Returns false without memory. */
inline bool rc_segments(const Geom& g, const rc_index* order,
                        const rc_index* batch_start, const double* rcost,
                        double width, double extra, RcSegs* sg) {
  double budget = *rc_chunk_work_slot() / (width < 1 ? 1 : width);
  if (budget < extra) budget = extra;
  rc_index count = 0;
  for (rc_index n = 0; n < g.N; ++n) {
    if (batch_start[n + 1] <= batch_start[n]) continue;
    ++count;
    double acc = 0;
    for (rc_index r = batch_start[n]; r < batch_start[n + 1]; ++r) {
      if (acc >= budget) {
        ++count;
        acc = 0;
      }
      acc += rcost[order[r]] + 1.0;
    }
  }
  const size_t bytes =
      sizeof(rc_index) * static_cast<size_t>(2 * g.N + 1 + count) +
      sizeof(double) * static_cast<size_t>(count) + 64;
  sg->mem = std::malloc(bytes);
  if (!sg->mem) return false;
  sg->cost = static_cast<double*>(sg->mem);
  sg->ptr = reinterpret_cast<rc_index*>(sg->cost + count);
  sg->start = sg->ptr + g.N + 1;
  sg->imgs = sg->start + count;
  sg->rounds = 0;
  rc_index s = 0;
  for (rc_index n = 0; n < g.N; ++n) {
    sg->ptr[n] = s;
    if (batch_start[n + 1] <= batch_start[n]) continue;
    sg->start[s] = batch_start[n];
    sg->cost[s] = 0;
    for (rc_index r = batch_start[n]; r < batch_start[n + 1]; ++r) {
      if (sg->cost[s] >= budget) {
        sg->cost[s] += extra;
        ++s;
        sg->start[s] = r;
        sg->cost[s] = 0;
      }
      sg->cost[s] += rcost[order[r]] + 1.0;
    }
    sg->cost[s] += extra;
    ++s;
    if (s - sg->ptr[n] > sg->rounds) sg->rounds = s - sg->ptr[n];
  }
  sg->ptr[g.N] = s;
  return true;
}

/* Images with a segment in round t -> sg->imgs; returns how many. */
inline rc_index rc_round_images(const Geom& g, RcSegs* sg, rc_index t) {
  rc_index m = 0;
  for (rc_index n = 0; n < g.N; ++n)
    if (sg->ptr[n + 1] - sg->ptr[n] > t) sg->imgs[m++] = n;
  return m;
}

/* RoI positions [*r0, *r1) of image n in round t. */
inline void rc_segment(const RcSegs& sg, const rc_index* batch_start,
                       rc_index n, rc_index t, rc_index* r0, rc_index* r1) {
  const rc_index i = sg.ptr[n] + t;
  *r0 = sg.start[i];
  *r1 = i + 1 < sg.ptr[n + 1] ? sg.start[i + 1] : batch_start[n + 1];
}

/* Value of the bilinear sample (iy, ix) of the tables at plane p. */
template <typename T>
inline T bilinear_at(const T* p, const SampleTab<T>& ty, rc_index iy,
                     const SampleTab<T>& tx, rc_index ix) {
  T hy = ty.wh[iy], ly = ty.wl[iy], hx = tx.wh[ix], lx = tx.wl[ix];
  T w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
  return w1 * p[ty.lo[iy] + tx.lo[ix]] + w2 * p[ty.lo[iy] + tx.hi[ix]] +
         w3 * p[ty.hi[iy] + tx.lo[ix]] + w4 * p[ty.hi[iy] + tx.hi[ix]];
}

/* Scatter g to the four corners of sample (iy, ix); div is applied as
 * (g * w) / div, the torchvision order. */
template <typename T>
inline void bilinear_scatter(T* p, const SampleTab<T>& ty, rc_index iy,
                             const SampleTab<T>& tx, rc_index ix, T g, T div) {
  T hy = ty.wh[iy], ly = ty.wl[iy], hx = tx.wh[ix], lx = tx.wl[ix];
  T w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
  p[ty.lo[iy] + tx.lo[ix]] += g * w1 / div;
  p[ty.lo[iy] + tx.hi[ix]] += g * w2 / div;
  p[ty.hi[iy] + tx.lo[ix]] += g * w3 / div;
  p[ty.hi[iy] + tx.hi[ix]] += g * w4 / div;
}

/* Forward of one bin of one channel (plane = start of the (n, c) slice).
 * Max mode also returns the winning sample (-1 if none). */
template <typename T>
inline T sampled_bin(const T* plane, const SampledParams& sp,
                     const SampleTab<T>& ty, const SampleTab<T>& tx,
                     rc_index ph, rc_index pw, rc_index* win_y,
                     rc_index* win_x) {
  const rc_index gh = ty.grid, gw = tx.grid;
  const rc_index y0 = ph * gh, x0 = pw * gw;
  if (!sp.max_mode) {
    T acc = 0;
    for (rc_index iy = y0; iy < y0 + gh; ++iy) {
      if (!ty.ok[iy]) continue;
      for (rc_index ix = x0; ix < x0 + gw; ++ix) {
        if (!tx.ok[ix]) continue;
        acc += bilinear_at(plane, ty, iy, tx, ix);
      }
    }
    rc_index cnt = gh * gw;
    return acc / static_cast<T>(cnt > 1 ? cnt : 1);
  }
  /* mmcv max: an out-of-range sample is the value 0 and takes part. */
  if (gh * gw == 0) {
    *win_y = -1;
    return (T)0;
  }
  T best = std::numeric_limits<T>::lowest();
  rc_index by = -1, bx = -1;
  for (rc_index iy = y0; iy < y0 + gh; ++iy) {
    for (rc_index ix = x0; ix < x0 + gw; ++ix) {
      T v = (ty.ok[iy] && tx.ok[ix]) ? bilinear_at(plane, ty, iy, tx, ix)
                                     : (T)0;
      if (v > best) {
        best = v;
        if (ty.ok[iy] && tx.ok[ix]) {
          by = iy;
          bx = ix;
        } else {
          by = -2;  /* an out-of-range sample leads: no gradient */
        }
      }
    }
  }
  *win_y = by < 0 ? -1 : by;
  *win_x = bx;
  return best;
}

/* ------------------------------------------------------------------ */
/* Sampled ops: forward                                                 */
/* ------------------------------------------------------------------ */
template <typename T>
int sampled_forward_reference(const T* in, const T* rois, T* out,
                              const Geom& g, T scale, SampledParams sp,
                              int nthreads) {
  rc_index mgh, mgw;
  double* rcost = static_cast<double*>(
      std::malloc(sizeof(double) * static_cast<size_t>(g.K + 1)));
  if (!rcost) return RC_ERR_NOMEM;
  if (sampled_max_grid<T>(sp, rois, scale, g, &mgh, &mgw, rcost)) {
    std::free(rcost);
    return RC_ERR_COST;
  }
  const Strides<T> st(g);
  const rc_index ny = g.PH * mgh, nx = g.PW * mgw;
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
      char* mem = static_cast<char*>(
          std::malloc(sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx) +
                      sizeof(T) * static_cast<size_t>(cb) + 64));
      if (!mem) {
#pragma omp atomic write
        err = 1;
      }
      SampleTab<T> ty = SampleTab<T>(), tx = SampleTab<T>();
      T* acc = nullptr;
      if (mem) {
        sample_tab_bind(&ty, mem, ny);
        sample_tab_bind(&tx, mem + sample_tab_bytes<T>(ny), nx);
        acc = reinterpret_cast<T*>(
            mem + ((sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx) + 15) &
                   ~static_cast<size_t>(15)));
      }
#pragma omp for schedule(dynamic, 1)
      for (rc_index it = i0; it < i1; ++it) {
        if (!mem) continue;
        const rc_index k = it / nblk;
        const rc_index c0 = (it % nblk) * cb;
        const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
        const T* roi = rois + 5 * k;
        T* o = out + k * st.on;
        const rc_index n = rc_batch(g, k);
        if (n < 0) {  /* validated in Python; never read out of bounds */
          for (rc_index c = c0; c < c1; ++c)
            for (rc_index ph = 0; ph < g.PH; ++ph)
              for (rc_index pw = 0; pw < g.PW; ++pw)
                o[c * st.oc + ph * st.oy + pw * st.ox] = (T)0;
          continue;
        }
        T ys, bh, xs, bw;
        rc_index gh, gw;
        sampled_geometry<T>(sp, roi, scale, g, &ys, &bh, &gh, &xs, &bw, &gw);
        sample_tab_fill<T>(&ty, sp.kind, ys, bh, gh, g.PH, g.H, st.sy);
        sample_tab_fill<T>(&tx, sp.kind, xs, bw, gw, g.PW, g.W, st.sx);
        const T* base = in + n * st.sn;
        if (!g.channels_last || sp.max_mode) {
          for (rc_index c = c0; c < c1; ++c) {
            const T* plane = base + c * st.sc;
            for (rc_index ph = 0; ph < g.PH; ++ph)
              for (rc_index pw = 0; pw < g.PW; ++pw) {
                rc_index wy, wx;
                o[c * st.oc + ph * st.oy + pw * st.ox] =
                    sampled_bin(plane, sp, ty, tx, ph, pw, &wy, &wx);
              }
          }
        } else {
          /* NHWC average: channel-contiguous inner loop, same per-channel
           * summation order as the NCHW path. */
          const rc_index nc = c1 - c0;
          const T* b0 = base + c0;
          for (rc_index ph = 0; ph < g.PH; ++ph)
            for (rc_index pw = 0; pw < g.PW; ++pw) {
              for (rc_index c = 0; c < nc; ++c) acc[c] = 0;
              for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
                if (!ty.ok[iy]) continue;
                for (rc_index ix = pw * gw; ix < (pw + 1) * gw; ++ix) {
                  if (!tx.ok[ix]) continue;
                  const T hy = ty.wh[iy], ly = ty.wl[iy];
                  const T hx = tx.wh[ix], lx = tx.wl[ix];
                  const T w1 = hy * hx, w2 = hy * lx, w3 = ly * hx,
                          w4 = ly * lx;
                  const T* p1 = b0 + ty.lo[iy] + tx.lo[ix];
                  const T* p2 = b0 + ty.lo[iy] + tx.hi[ix];
                  const T* p3 = b0 + ty.hi[iy] + tx.lo[ix];
                  const T* p4 = b0 + ty.hi[iy] + tx.hi[ix];
#pragma omp simd
                  for (rc_index c = 0; c < nc; ++c)
                    acc[c] += w1 * p1[c] + w2 * p2[c] + w3 * p3[c] + w4 * p4[c];
                }
              }
              rc_index cnt = gh * gw;
              const T div = static_cast<T>(cnt > 1 ? cnt : 1);
              T* dst = o + ph * st.oy + pw * st.ox + c0;
              for (rc_index c = 0; c < nc; ++c) dst[c] = acc[c] / div;
            }
        }
      }
      std::free(mem);
    }
    i0 = i1;
    if (!err && i0 < items && rc_interrupted(g)) err = RC_ERR_INTERRUPTED;
  }
  std::free(rcost);
  return err;
}

/* ------------------------------------------------------------------ */
/* Sampled ops: backward (gather by image, fixed order)                */
/* ------------------------------------------------------------------ */
template <typename T>
int sampled_backward_reference(const T* grad_out, const T* in, const T* rois,
                               const rc_index* order,
                               const rc_index* batch_start, T* grad_in,
                               const Geom& g, T scale, SampledParams sp,
                               int nthreads) {
  rc_index mgh, mgw;
  double* rcost = static_cast<double*>(
      std::malloc(sizeof(double) * static_cast<size_t>(g.K + g.N + 1)));
  if (!rcost) return RC_ERR_NOMEM;
  if (sampled_max_grid<T>(sp, rois, scale, g, &mgh, &mgw, rcost)) {
    std::free(rcost);
    return RC_ERR_COST;
  }
  const Strides<T> st(g);
  const rc_index ny = g.PH * mgh, nx = g.PW * mgw;
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
        char* mem = static_cast<char*>(std::malloc(
            sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx) + 64));
        if (!mem) {
#pragma omp atomic write
          err = 1;
        }
        SampleTab<T> ty = SampleTab<T>(), tx = SampleTab<T>();
        if (mem) {
          sample_tab_bind(&ty, mem, ny);
          sample_tab_bind(&tx, mem + sample_tab_bytes<T>(ny), nx);
        }
#pragma omp for schedule(dynamic, 1)
        for (rc_index it = i0; it < i1; ++it) {
          if (!mem) continue;
          const rc_index n = sg.imgs[it / nblk];
          const rc_index c0 = (it % nblk) * cb;
          const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
          T* gbase = grad_in + n * st.sn;
          const T* ibase = in + n * st.sn;
          rc_index r0, r1;
          rc_segment(sg, batch_start, n, t, &r0, &r1);
          for (rc_index r = r0; r < r1; ++r) {
            const rc_index k = order[r];
            const T* roi = rois + 5 * k;
            if (rc_batch(g, k) != n) continue;
            T ys, bh, xs, bw;
            rc_index gh, gw;
            sampled_geometry<T>(sp, roi, scale, g, &ys, &bh, &gh, &xs, &bw,
                                &gw);
            sample_tab_fill<T>(&ty, sp.kind, ys, bh, gh, g.PH, g.H, st.sy);
            sample_tab_fill<T>(&tx, sp.kind, xs, bw, gw, g.PW, g.W, st.sx);
            const rc_index cnt = gh * gw;
            const T div = static_cast<T>(cnt > 1 ? cnt : 1);
            const T* go = grad_out + k * st.on;
            for (rc_index c = c0; c < c1; ++c) {
              T* gp = gbase + c * st.sc;
              const T* ip = ibase + c * st.sc;
              for (rc_index ph = 0; ph < g.PH; ++ph)
                for (rc_index pw = 0; pw < g.PW; ++pw) {
                  const T gv = go[c * st.oc + ph * st.oy + pw * st.ox];
                  if (sp.max_mode) {
                    rc_index wy = -1, wx = -1;
                    sampled_bin(ip, sp, ty, tx, ph, pw, &wy, &wx);
                    if (wy >= 0) bilinear_scatter(gp, ty, wy, tx, wx, gv, (T)1);
                    continue;
                  }
                  for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
                    if (!ty.ok[iy]) continue;
                    for (rc_index ix = pw * gw; ix < (pw + 1) * gw; ++ix) {
                      if (!tx.ok[ix]) continue;
                      bilinear_scatter(gp, ty, iy, tx, ix, gv, div);
                    }
                  }
                }
            }
          }
        }
        std::free(mem);
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

/* ------------------------------------------------------------------ */
/* RoI Pool                                                             */
/* ------------------------------------------------------------------ */
template <typename T>
inline void pool_tabs(int bins, const T* roi, T scale, const Geom& g,
                      rc_index* hlo, rc_index* hhi, rc_index* wlo,
                      rc_index* whi) {
  const rc_index xs = static_cast<rc_index>(rc_round(roi[1] * scale));
  const rc_index ys = static_cast<rc_index>(rc_round(roi[2] * scale));
  const rc_index xe = static_cast<rc_index>(rc_round(roi[3] * scale));
  const rc_index ye = static_cast<rc_index>(rc_round(roi[4] * scale));
  for (rc_index ph = 0; ph < g.PH; ++ph)
    rc_pool_bin<T>(bins, ys, ye, ph, g.PH, g.H, hlo + ph, hhi + ph);
  for (rc_index pw = 0; pw < g.PW; ++pw)
    rc_pool_bin<T>(bins, xs, xe, pw, g.PW, g.W, wlo + pw, whi + pw);
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
  *arg = -1;
  if (he <= hs || we <= ws) return (T)0;
  T best = std::numeric_limits<T>::lowest();
  for (rc_index h = hs; h < he; ++h)
    for (rc_index w = ws; w < we; ++w) {
      const T v = plane[h * st.sy + w * st.sx];
      if (v > best) {
        best = v;
        *arg = h * W + w;
      }
    }
  return best;
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
                best[c] = std::numeric_limits<T>::lowest();
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
                  if (a >= 0)
                    gbase[c * st.sc + (a / g.W) * st.sy + (a % g.W) * st.sx] +=
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


/* ================================================================== */
/* Vectorised kernels                                                   */
/* ================================================================== */
/* The *_reference kernels above compute one channel at a time.  The kernels
 * below compute L channels ("lanes", L * sizeof(T) = 128 bytes) at once with
 * exactly the reference's per-element operation order (same expressions,
 * same summation order, no FMA: the build uses -ffp-contract=off), so every
 * result is bit-identical to the reference, for any thread count and any
 * instruction set.
 *  - NHWC: the lanes are the contiguous channels of a pixel; no copies.
 *  - NCHW forward: the input is packed once per call into channel blocks
 *    [N][C/L][H][W][L] (zero padded), then read like NHWC.
 *  - NCHW backward: each (image, channel block) item accumulates into a
 *    per-thread [H][W][L] tile (and packs its input block for the max
 *    modes), then copies the tile to grad_input, which is zero on entry.
 * The per-item kernels are compiled for baseline x86-64, AVX2 and AVX-512
 * and the best one the CPU supports is picked at run time (no -march=native
 * needed); ROICORE_CPU_ISA=reference|baseline|avx2|avx512 or rc_set_isa()
 * caps the choice ("reference" runs the scalar kernels above).  NCHW calls
 * whose packing would cost more than the work itself (a few RoIs on a large
 * map) also run the reference kernels. */

#if (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__x86_64__) || defined(__i386__))
#define RC_X86_DISPATCH 1
#define RC_TARGET_AVX2 __attribute__((target("avx2")))
#define RC_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2")))
#else
#define RC_X86_DISPATCH 0
#endif
#if defined(__GNUC__) || defined(__clang__)
#define RC_AI inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define RC_AI __forceinline
#else
#define RC_AI inline
#endif

enum { RC_ISA_REFERENCE = 0, RC_ISA_BASELINE = 1, RC_ISA_AVX2 = 2,
       RC_ISA_AVX512 = 3 };

/* Best instruction set this CPU runs. */
inline int rc_isa_supported() {
#if RC_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return RC_ISA_AVX512;
  if (__builtin_cpu_supports("avx2")) return RC_ISA_AVX2;
#endif
  return RC_ISA_BASELINE;
}

inline int rc_isa_initial() {
  const int best = rc_isa_supported();
  const char* e = std::getenv("ROICORE_CPU_ISA");
  int want = best;
  if (e) {
    if (!std::strcmp(e, "reference")) want = RC_ISA_REFERENCE;
    else if (!std::strcmp(e, "baseline")) want = RC_ISA_BASELINE;
    else if (!std::strcmp(e, "avx2")) want = RC_ISA_AVX2;
    else if (!std::strcmp(e, "avx512")) want = RC_ISA_AVX512;
  }
  return want < best ? want : best;
}

inline int* rc_isa_slot() {
  static int isa = rc_isa_initial();
  return &isa;
}

/* Instruction set the kernels use now (RC_ISA_*). */
inline int rc_isa() { return *rc_isa_slot(); }

/* Use `isa` (capped at what the CPU supports; out of range: the best);
 * returns the one in use. */
inline int rc_set_isa(int isa) {
  const int best = rc_isa_supported();
  if (isa < RC_ISA_REFERENCE || isa > best) isa = best;
  *rc_isa_slot() = isa;
  return isa;
}

inline void* rc_alloc(size_t bytes) {
  bytes = (bytes + 63) & ~static_cast<size_t>(63);
  if (bytes == 0) bytes = 64;
#ifdef _WIN32
  return _aligned_malloc(bytes, 64);
#else
  void* p = nullptr;
  return posix_memalign(&p, 64, bytes) == 0 ? p : nullptr;
#endif
}

inline void rc_free(void* p) {
#ifdef _WIN32
  _aligned_free(p);
#else
  std::free(p);
#endif
}

/* Lanes per channel block: 256 bytes with AVX-512 (32 registers), else 128. */
inline int rc_lane_bytes(int isa) { return isa >= RC_ISA_AVX512 ? 256 : 128; }

template <typename T>
inline rc_index v_lanes(int isa) {
  return static_cast<rc_index>(rc_lane_bytes(isa) / sizeof(T));
}

/* Vector operations per sample of a channel block of L lanes (chunk costs). */
template <typename T>
inline double v_width(int isa, rc_index L) {
  const double vbytes = isa >= RC_ISA_AVX512 ? 64.0
                        : isa == RC_ISA_AVX2  ? 32.0
                                              : 16.0;
  return static_cast<double>(L) * sizeof(T) / vbytes;
}

/* x / d == x * (1 / d) exactly (both are the correctly rounded x / d) when
 * d is a power of two, so the kernels multiply by *inv instead of dividing. */
template <typename T>
inline bool rc_pow2_recip(rc_index d, T* inv) {
  if (d < 1 || (d & (d - 1)) != 0 || d > (static_cast<rc_index>(1) << 60))
    return false;
  *inv = (T)1 / static_cast<T>(d);
  return true;
}

/* Everything an item kernel reads. */
template <typename T>
struct VJob {
  Geom g;
  T scale;
  SampledParams sp;
  int bins;                  /* RoI Pool bin rule */
  const T* in;               /* NHWC input, or the packed NCHW input (fwd) */
  const T* grad_out;
  const T* rois;
  const rc_index* order;
  const rc_index* batch_start;
  T* out;                    /* forward output, or grad_input */
  rc_index L;                /* lanes per channel block */
  int packed;                /* forward: `in` is the packed copy */
  rc_index group;            /* forward item order: groups of `group` RoIs,
                                block-major within a group */
  int stream;                /* forward: stream the output (large) */
  int whole_roi;             /* forward: items are whole RoIs (NHWC stream) */
  rc_index nb;               /* channel blocks */
  rc_index bsn, bsb, sy, sx; /* lane view of `in`: (n, b, y, x) at
                                n*bsn + b*bsb + y*sy + x*sx */
  rc_index ny, nx;           /* sample table lengths */
  const double* cost;        /* forward: per-RoI cost per channel */
  const RcSegs* seg;         /* backward: RoI segments ... */
  rc_index round;            /* ... and the round being run */
};

/* Per-thread scratch. */
template <typename T>
struct VScratch {
  SampleTab<T> ty, tx;
  rc_index* ptab;            /* pool: hlo[PH] hhi[PH] wlo[PW] whi[PW] */
  T* tile;                   /* [PH*PW][L]: forward result / grad_out */
  T* stage;                  /* [PH*PW][L]: forward output staging */
  T* rstage;                 /* [PH*PW][C]: whole-RoI NHWC staging */
  T* gtile;                  /* [H*W][L]: NCHW backward accumulator */
  T* itile;                  /* [H*W][L]: NCHW backward packed input */
};

/* --- forward of one RoI, L lanes --------------------------------------- */
/* src: lane view of one (image, channel block); the tables hold offsets
 * already multiplied by the view's strides.  FULL: n == L at compile time. */
template <typename T, int L, bool FULL>
RC_AI void v_sampled_fwd(const T* src, int nc, const SampleTab<T>& ty,
                         const SampleTab<T>& tx, rc_index PH, rc_index PW,
                         bool max_mode, T* tile) {
  const int n = FULL ? L : nc;
  const rc_index gh = ty.grid, gw = tx.grid;
  const rc_index cnt = gh * gw;
  const T div = static_cast<T>(cnt > 1 ? cnt : 1);
  T inv = (T)1;
  const bool pow2 = rc_pow2_recip<T>(cnt > 1 ? cnt : 1, &inv);
  for (rc_index ph = 0; ph < PH; ++ph)
    for (rc_index pw = 0; pw < PW; ++pw) {
      T acc[L];
      T* dst = tile + (ph * PW + pw) * L;
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
            const T w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
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
      for (int l = 0; l < n; ++l) acc[l] = std::numeric_limits<T>::lowest();
      for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
        const T hy = ty.wh[iy], ly = ty.wl[iy];
        const T* r0 = src + ty.lo[iy];
        const T* r1 = src + ty.hi[iy];
        for (rc_index ix = pw * gw; ix < (pw + 1) * gw; ++ix) {
          if (ty.ok[iy] && tx.ok[ix]) {
            const T hx = tx.wh[ix], lx = tx.wl[ix];
            const T w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
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

template <typename T, int L, bool FULL>
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
      T best[L];
      for (int l = 0; l < n; ++l) best[l] = std::numeric_limits<T>::lowest();
      for (rc_index h = hlo[ph]; h < hhi[ph]; ++h)
        for (rc_index w = wlo[pw]; w < whi[pw]; ++w) {
          const T* p = src + h * sy + w * sx;
#pragma omp simd
          for (int l = 0; l < n; ++l) best[l] = p[l] > best[l] ? p[l] : best[l];
        }
      for (int l = 0; l < n; ++l) dst[l] = best[l];
    }
}

/* --- transposes between lane tiles and NCHW planes ----------------------
 * b[c * ldb + r] = a[r * lda + c] for r < rows, c < cols.  Pure data
 * movement (no arithmetic), so the instruction set cannot change results. */
template <typename T>
inline void rc_transpose_scalar(const T* a, rc_index lda, T* b, rc_index ldb,
                                rc_index rows, rc_index cols) {
  for (rc_index r0 = 0; r0 < rows; r0 += 8) {
    const rc_index r1 = r0 + 8 < rows ? r0 + 8 : rows;
    for (rc_index c = 0; c < cols; ++c)
      for (rc_index r = r0; r < r1; ++r) b[c * ldb + r] = a[r * lda + c];
  }
}

#if RC_X86_DISPATCH
/* baseline x86-64 (SSE2): 4x4 float / 2x2 double blocks */
inline void rc_transpose_sse(const float* a, rc_index lda, float* b,
                             rc_index ldb, rc_index rows, rc_index cols) {
  const rc_index R = rows & ~static_cast<rc_index>(3);
  const rc_index Cc = cols & ~static_cast<rc_index>(3);
  for (rc_index r = 0; r < R; r += 4) {
    for (rc_index c = 0; c < Cc; c += 4) {
      __m128 r0 = _mm_loadu_ps(a + (r + 0) * lda + c);
      __m128 r1 = _mm_loadu_ps(a + (r + 1) * lda + c);
      __m128 r2 = _mm_loadu_ps(a + (r + 2) * lda + c);
      __m128 r3 = _mm_loadu_ps(a + (r + 3) * lda + c);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(b + (c + 0) * ldb + r, r0);
      _mm_storeu_ps(b + (c + 1) * ldb + r, r1);
      _mm_storeu_ps(b + (c + 2) * ldb + r, r2);
      _mm_storeu_ps(b + (c + 3) * ldb + r, r3);
    }
    for (rc_index c = Cc; c < cols; ++c)
      for (rc_index q = r; q < r + 4; ++q) b[c * ldb + q] = a[q * lda + c];
  }
  for (rc_index c = 0; c < cols; ++c)
    for (rc_index q = R; q < rows; ++q) b[c * ldb + q] = a[q * lda + c];
}

inline void rc_transpose_sse(const double* a, rc_index lda, double* b,
                             rc_index ldb, rc_index rows, rc_index cols) {
  const rc_index R = rows & ~static_cast<rc_index>(1);
  const rc_index Cc = cols & ~static_cast<rc_index>(1);
  for (rc_index r = 0; r < R; r += 2) {
    for (rc_index c = 0; c < Cc; c += 2) {
      const __m128d r0 = _mm_loadu_pd(a + r * lda + c);
      const __m128d r1 = _mm_loadu_pd(a + (r + 1) * lda + c);
      _mm_storeu_pd(b + c * ldb + r, _mm_unpacklo_pd(r0, r1));
      _mm_storeu_pd(b + (c + 1) * ldb + r, _mm_unpackhi_pd(r0, r1));
    }
    for (rc_index c = Cc; c < cols; ++c) {
      b[c * ldb + r] = a[r * lda + c];
      b[c * ldb + r + 1] = a[(r + 1) * lda + c];
    }
  }
  for (rc_index c = 0; c < cols; ++c)
    for (rc_index q = R; q < rows; ++q) b[c * ldb + q] = a[q * lda + c];
}

/* AVX2 (also used by the AVX-512 variant): 8x8 float / 4x4 double */
RC_TARGET_AVX2 inline void rc_transpose_avx(const float* a, rc_index lda,
                                            float* b, rc_index ldb,
                                            rc_index rows, rc_index cols) {
  const rc_index R = rows & ~static_cast<rc_index>(7);
  const rc_index Cc = cols & ~static_cast<rc_index>(7);
  for (rc_index r = 0; r < R; r += 8) {
    for (rc_index c = 0; c < Cc; c += 8) {
      const float* p = a + r * lda + c;
      const __m256 r0 = _mm256_loadu_ps(p);
      const __m256 r1 = _mm256_loadu_ps(p + lda);
      const __m256 r2 = _mm256_loadu_ps(p + 2 * lda);
      const __m256 r3 = _mm256_loadu_ps(p + 3 * lda);
      const __m256 r4 = _mm256_loadu_ps(p + 4 * lda);
      const __m256 r5 = _mm256_loadu_ps(p + 5 * lda);
      const __m256 r6 = _mm256_loadu_ps(p + 6 * lda);
      const __m256 r7 = _mm256_loadu_ps(p + 7 * lda);
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1);
      const __m256 t1 = _mm256_unpackhi_ps(r0, r1);
      const __m256 t2 = _mm256_unpacklo_ps(r2, r3);
      const __m256 t3 = _mm256_unpackhi_ps(r2, r3);
      const __m256 t4 = _mm256_unpacklo_ps(r4, r5);
      const __m256 t5 = _mm256_unpackhi_ps(r4, r5);
      const __m256 t6 = _mm256_unpacklo_ps(r6, r7);
      const __m256 t7 = _mm256_unpackhi_ps(r6, r7);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
      const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
      const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
      const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
      const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
      float* q = b + c * ldb + r;
      _mm256_storeu_ps(q, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(q + ldb, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(q + 2 * ldb, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(q + 3 * ldb, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(q + 4 * ldb, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(q + 5 * ldb, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(q + 6 * ldb, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(q + 7 * ldb, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (rc_index c = Cc; c < cols; ++c)
      for (rc_index q = r; q < r + 8; ++q) b[c * ldb + q] = a[q * lda + c];
  }
  for (rc_index c = 0; c < cols; ++c)
    for (rc_index q = R; q < rows; ++q) b[c * ldb + q] = a[q * lda + c];
}

RC_TARGET_AVX2 inline void rc_transpose_avx(const double* a, rc_index lda,
                                            double* b, rc_index ldb,
                                            rc_index rows, rc_index cols) {
  const rc_index R = rows & ~static_cast<rc_index>(3);
  const rc_index Cc = cols & ~static_cast<rc_index>(3);
  for (rc_index r = 0; r < R; r += 4) {
    for (rc_index c = 0; c < Cc; c += 4) {
      const double* p = a + r * lda + c;
      const __m256d r0 = _mm256_loadu_pd(p);
      const __m256d r1 = _mm256_loadu_pd(p + lda);
      const __m256d r2 = _mm256_loadu_pd(p + 2 * lda);
      const __m256d r3 = _mm256_loadu_pd(p + 3 * lda);
      const __m256d t0 = _mm256_unpacklo_pd(r0, r1);
      const __m256d t1 = _mm256_unpackhi_pd(r0, r1);
      const __m256d t2 = _mm256_unpacklo_pd(r2, r3);
      const __m256d t3 = _mm256_unpackhi_pd(r2, r3);
      double* q = b + c * ldb + r;
      _mm256_storeu_pd(q, _mm256_permute2f128_pd(t0, t2, 0x20));
      _mm256_storeu_pd(q + ldb, _mm256_permute2f128_pd(t1, t3, 0x20));
      _mm256_storeu_pd(q + 2 * ldb, _mm256_permute2f128_pd(t0, t2, 0x31));
      _mm256_storeu_pd(q + 3 * ldb, _mm256_permute2f128_pd(t1, t3, 0x31));
    }
    for (rc_index c = Cc; c < cols; ++c)
      for (rc_index q = r; q < r + 4; ++q) b[c * ldb + q] = a[q * lda + c];
  }
  for (rc_index c = 0; c < cols; ++c)
    for (rc_index q = R; q < rows; ++q) b[c * ldb + q] = a[q * lda + c];
}
#endif

template <typename T, int ISA>
RC_AI void rc_transpose(const T* a, rc_index lda, T* b, rc_index ldb,
                        rc_index rows, rc_index cols) {
#if RC_X86_DISPATCH
  if (ISA >= RC_ISA_AVX2) {
    rc_transpose_avx(a, lda, b, ldb, rows, cols);
    return;
  }
  rc_transpose_sse(a, lda, b, ldb, rows, cols);
#else
  rc_transpose_scalar(a, lda, b, ldb, rows, cols);
#endif
}

/* memcpy with non-temporal stores for the aligned middle: a large output
 * is written once and not read back soon, so it skips the read-for-ownership
 * of every cache line (half the memory traffic). */
#if RC_X86_DISPATCH
inline void rc_stream_copy(void* dst, const void* src, size_t bytes) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  size_t head = (16 - (reinterpret_cast<size_t>(d) & 15)) & 15;
  if (head > bytes) head = bytes;
  std::memcpy(d, s, head);
  d += head;
  s += head;
  bytes -= head;
  const size_t body = bytes & ~static_cast<size_t>(63);
  for (size_t i = 0; i < body; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i b =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    const __m128i c =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    const __m128i e =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
  }
  std::memcpy(d + body, s + body, bytes - body);
}
inline void rc_stream_fence() { _mm_sfence(); }
#else
inline void rc_stream_copy(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}
inline void rc_stream_fence() {}
#endif

/* Whether [p, p + bytes) is already backed by memory (sampled at three
 * pages).  A fresh np.empty result is not: its first touch faults in zeroed
 * pages that are then in cache, and ordinary stores beat streaming ones. */
inline bool rc_resident(const void* p, size_t bytes) {
#ifdef __linux__
  const long pg = sysconf(_SC_PAGESIZE);
  if (pg <= 0 || bytes == 0) return true;
  const size_t mask = ~(static_cast<size_t>(pg) - 1);
  const size_t a = reinterpret_cast<size_t>(p);
  const size_t at[3] = {a, a + bytes / 2, a + bytes - 1};
  for (int i = 0; i < 3; ++i) {
    unsigned char v = 0;
    if (mincore(reinterpret_cast<void*>(at[i] & mask),
                static_cast<size_t>(pg), &v) != 0)
      return true;
    if (!(v & 1)) return false;
  }
  return true;
#else
  (void)p;
  (void)bytes;
  return true;
#endif
}

/* Fault in [p, p + bytes) with nt threads (MADV_POPULATE_WRITE, Linux
 * 5.14+, in 2 MiB pieces): the kernel zeroes the pages of a fresh np.empty
 * result in parallel and without a trap per page, and the output can then be
 * streamed.  Returns false where that is not available. */
inline bool rc_populate(void* p, size_t bytes, int nt) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  const long pg = sysconf(_SC_PAGESIZE);
  if (pg <= 0 || bytes == 0) return false;
  const size_t a = reinterpret_cast<size_t>(p) & ~(static_cast<size_t>(pg) - 1);
  const size_t e = reinterpret_cast<size_t>(p) + bytes;
  const size_t piece = static_cast<size_t>(2) << 20;
  const rc_index n = static_cast<rc_index>((e - a + piece - 1) / piece);
  int fails = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : fails)
  for (rc_index i = 0; i < n; ++i) {
    const size_t s0 = a + static_cast<size_t>(i) * piece;
    const size_t s1 = s0 + piece < e ? s0 + piece : e;
    fails += madvise(reinterpret_cast<void*>(s0), s1 - s0, MADV_POPULATE_WRITE) != 0;
  }
  return fails == 0;
#else
  (void)p;
  (void)bytes;
  (void)nt;
  return false;
#endif
}

/* tile [PH*PW][L] -> output of RoI k, channels c0 .. c0+nc.  `stage`
 * ([PH*PW][L] scratch) is used to stream large NCHW outputs. */
template <typename T, int L, int ISA>
RC_AI void v_store_tile(const VJob<T>& j, const T* tile, T* stage, rc_index k,
                        rc_index c0, int nc) {
  const Geom& g = j.g;
  const rc_index nbins = g.PH * g.PW;
  if (g.channels_last) {
    T* o = j.out + k * nbins * g.C + c0;
    for (rc_index i = 0; i < nbins; ++i)
      for (int l = 0; l < nc; ++l) o[i * g.C + l] = tile[i * L + l];
  } else if (j.stream) {
    rc_transpose<T, ISA>(tile, L, stage, nbins, nbins, nc);
    rc_stream_copy(j.out + (k * g.C + c0) * nbins, stage,
                   sizeof(T) * static_cast<size_t>(nbins * nc));
  } else {
    rc_transpose<T, ISA>(tile, L, j.out + (k * g.C + c0) * nbins, nbins,
                         nbins, nc);
  }
}

/* Forward item `it` -> (RoI k, channel block b).  RoIs go in groups of
 * j.group; within a group all RoIs run block 0, then block 1, ...: one input
 * plane is reused across the group while the group's output stays cached
 * until all its blocks are written. */
template <typename T>
RC_AI void v_item_kb(const VJob<T>& j, rc_index it, rc_index* k, rc_index* b) {
  const rc_index per = j.group * j.nb;
  const rc_index grp = it / per, rem = it % per;
  const rc_index g0 = grp * j.group;
  const rc_index gsz = j.g.K - g0 < j.group ? j.g.K - g0 : j.group;
  *b = rem / gsz;
  *k = g0 + rem % gsz;
}

/* dst[r * ldd + l] = src[r * lds + l] for r < rows, l < nc (<= L); FILL:
 * also zero lanes nc .. L. */
template <typename T, int L, bool FILL>
RC_AI void v_copy_rows(T* dst, rc_index ldd, const T* src, rc_index lds,
                       rc_index rows, int nc) {
  if (nc == L) {
    for (rc_index r = 0; r < rows; ++r) {
      T* d = dst + r * ldd;
      const T* q = src + r * lds;
#pragma omp simd
      for (int l = 0; l < L; ++l) d[l] = q[l];
    }
    return;
  }
  for (rc_index r = 0; r < rows; ++r) {
    T* d = dst + r * ldd;
    const T* q = src + r * lds;
    for (int l = 0; l < nc; ++l) d[l] = q[l];
    if (FILL)
      for (int l = nc; l < L; ++l) d[l] = (T)0;
  }
}

/* Forward of RoI k, channel block b -> s.tile [PH*PW][L]. */
template <typename T, int L, bool POOL>
RC_AI void v_fwd_block(const VJob<T>& j, VScratch<T>& s, rc_index k,
                       rc_index b) {
  const Geom& g = j.g;
  const rc_index c0 = b * L;
  const int nc = static_cast<int>(g.C - c0 < L ? g.C - c0 : L);
  const T* roi = j.rois + 5 * k;
  const rc_index n = rc_batch(g, k);
  if (n < 0) { /* validated in Python; never read out of bounds */
    for (rc_index i = 0; i < g.PH * g.PW * L; ++i) s.tile[i] = (T)0;
    return;
  }
  const T* src = j.in + n * j.bsn + b * j.bsb;
  const bool full = nc == L || j.packed;
  if (POOL) {
    rc_index *hlo = s.ptab, *hhi = s.ptab + g.PH, *wlo = s.ptab + 2 * g.PH,
             *whi = s.ptab + 2 * g.PH + g.PW;
    pool_tabs<T>(j.bins, roi, j.scale, g, hlo, hhi, wlo, whi);
    if (full)
      v_pool_fwd<T, L, true>(src, L, j.sy, j.sx, hlo, hhi, wlo, whi, g.PH,
                             g.PW, s.tile);
    else
      v_pool_fwd<T, L, false>(src, nc, j.sy, j.sx, hlo, hhi, wlo, whi, g.PH,
                              g.PW, s.tile);
    return;
  }
  T ys, bh, xs, bw;
  rc_index gh, gw;
  sampled_geometry<T>(j.sp, roi, j.scale, g, &ys, &bh, &gh, &xs, &bw, &gw);
  sample_tab_fill<T>(&s.ty, j.sp.kind, ys, bh, gh, g.PH, g.H, j.sy);
  sample_tab_fill<T>(&s.tx, j.sp.kind, xs, bw, gw, g.PW, g.W, j.sx);
  if (full)
    v_sampled_fwd<T, L, true>(src, L, s.ty, s.tx, g.PH, g.PW, j.sp.max_mode,
                              s.tile);
  else
    v_sampled_fwd<T, L, false>(src, nc, s.ty, s.tx, g.PH, g.PW,
                               j.sp.max_mode, s.tile);
}

/* One forward item: (RoI, block) stored at once, or, for a streamed NHWC
 * output (j.whole_roi), every block of RoI `it` gathered in s.rstage and
 * streamed as one contiguous [PH*PW][C] piece. */
template <typename T, int L, int ISA, bool POOL>
RC_AI void v_fwd_item(const VJob<T>& j, VScratch<T>& s, rc_index it) {
  const Geom& g = j.g;
  if (!j.whole_roi) {
    rc_index k, b;
    v_item_kb(j, it, &k, &b);
    v_fwd_block<T, L, POOL>(j, s, k, b);
    const rc_index c0 = b * L;
    v_store_tile<T, L, ISA>(j, s.tile, s.stage, k, c0,
                            static_cast<int>(g.C - c0 < L ? g.C - c0 : L));
    return;
  }
  const rc_index nbins = g.PH * g.PW;
  for (rc_index b = 0; b < j.nb; ++b) {
    v_fwd_block<T, L, POOL>(j, s, it, b);
    const rc_index c0 = b * L;
    v_copy_rows<T, L, false>(s.rstage + c0, g.C, s.tile, L, nbins,
                             static_cast<int>(g.C - c0 < L ? g.C - c0 : L));
  }
  rc_stream_copy(j.out + it * nbins * g.C, s.rstage,
                 sizeof(T) * static_cast<size_t>(nbins * g.C));
}

/* --- backward -------------------------------------------------------- */
/* grad_out of RoI k, channels c0 .. c0+nc -> tile [PH*PW][L] (zero padded) */
template <typename T, int L, int ISA>
RC_AI void v_load_grad(const Geom& g, const T* go, rc_index k, rc_index c0,
                       int nc, T* tile) {
  const rc_index nbins = g.PH * g.PW;
  if (nc < L)
    for (rc_index i = 0; i < nbins * L; ++i) tile[i] = (T)0;
  if (g.channels_last) {
    const T* o = go + k * nbins * g.C + c0;
    for (rc_index i = 0; i < nbins; ++i)
      for (int l = 0; l < nc; ++l) tile[i * L + l] = o[i * g.C + l];
  } else {
    rc_transpose<T, ISA>(go + (k * g.C + c0) * nbins, nbins, tile, L, nc,
                         nbins);
  }
}

/* Scatter the gradient of one RoI into the lane view gp (and read the input
 * view ip for the max mode). */
template <typename T, int L, bool FULL>
RC_AI void v_sampled_bwd(T* gp, const T* ip, int nc, const SampleTab<T>& ty,
                         const SampleTab<T>& tx, rc_index PH, rc_index PW,
                         bool max_mode, const T* gtile) {
  const int n = FULL ? L : nc;
  const rc_index gh = ty.grid, gw = tx.grid;
  const rc_index cnt = gh * gw;
  const T div = static_cast<T>(cnt > 1 ? cnt : 1);
  T inv = (T)1;
  const bool pow2 = rc_pow2_recip<T>(cnt > 1 ? cnt : 1, &inv);
  for (rc_index ph = 0; ph < PH; ++ph)
    for (rc_index pw = 0; pw < PW; ++pw) {
      const T* gv = gtile + (ph * PW + pw) * L;
      if (!max_mode) {
        for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
          if (!ty.ok[iy]) continue;
          const T hy = ty.wh[iy], ly = ty.wl[iy];
          T* r0 = gp + ty.lo[iy];
          T* r1 = gp + ty.hi[iy];
          for (rc_index ix = pw * gw; ix < (pw + 1) * gw; ++ix) {
            if (!tx.ok[ix]) continue;
            const T hx = tx.wh[ix], lx = tx.wl[ix];
            const T w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
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
        best[l] = std::numeric_limits<T>::lowest();
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
            const T w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
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
        const T w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
        const T gval = gv[l];
        T* q = gp + l;
        q[ty.lo[wy] + tx.lo[wx]] += gval * w1 / (T)1;
        q[ty.lo[wy] + tx.hi[wx]] += gval * w2 / (T)1;
        q[ty.hi[wy] + tx.lo[wx]] += gval * w3 / (T)1;
        q[ty.hi[wy] + tx.hi[wx]] += gval * w4 / (T)1;
      }
    }
}

template <typename T, int L, bool FULL>
RC_AI void v_pool_bwd(T* gp, const T* ip, int nc, rc_index sy, rc_index sx,
                      const rc_index* hlo, const rc_index* hhi,
                      const rc_index* wlo, const rc_index* whi, rc_index PH,
                      rc_index PW, const T* gtile) {
  const int n = FULL ? L : nc;
  for (rc_index ph = 0; ph < PH; ++ph)
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
      const T lowest = std::numeric_limits<T>::lowest();
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
      for (int l = 0; l < n; ++l)
        if (best[l] > lowest) gp[arg[l] + l] += gv[l];
    }
}

/* NCHW channels c0 .. c0+L of image n, pixels i0 .. i1 -> dst[i * ld + l]
 * (zero padded past C). */
template <typename T, int ISA>
RC_AI void v_pack_block(const T* in, const Geom& g, rc_index L, rc_index n,
                        rc_index c0, rc_index i0, rc_index i1, T* dst,
                        rc_index ld) {
  const rc_index HW = g.H * g.W;
  const rc_index nc = g.C - c0 < L ? g.C - c0 : L;
  rc_transpose<T, ISA>(in + (n * g.C + c0) * HW + i0, HW, dst + i0 * ld, ld,
                       nc, i1 - i0);
  for (rc_index i = i0; i < i1; ++i)
    for (rc_index l = nc; l < L; ++l) dst[i * ld + l] = (T)0;
}

/* NHWC channels c0 .. c0+L of image n, pixels i0 .. i1 -> dst[i * L + l]
 * (zero padded past C). */
template <typename T, int L>
RC_AI void v_pack_nhwc(const T* in, const Geom& g, rc_index n, rc_index c0,
                       rc_index i0, rc_index i1, T* dst) {
  const int nc = static_cast<int>(g.C - c0 < L ? g.C - c0 : L);
  v_copy_rows<T, L, true>(dst + i0 * L, L, in + (n * g.H * g.W + i0) * g.C + c0,
                          g.C, i1 - i0, nc);
}

template <typename T, int L, int ISA>
RC_AI void v_unpack_block(const T* tile, const Geom& g, rc_index n,
                          rc_index c0, T* out) {
  const rc_index HW = g.H * g.W;
  const int nc = static_cast<int>(g.C - c0 < L ? g.C - c0 : L);
  const rc_index chunk = 128;
  for (rc_index i0 = 0; i0 < HW; i0 += chunk) {
    const rc_index i1 = i0 + chunk < HW ? i0 + chunk : HW;
    rc_transpose<T, ISA>(tile + i0 * L, L, out + (n * g.C + c0) * HW + i0, HW,
                         i1 - i0, nc);
  }
}

/* Backward items are (image, channel block); each walks its image's RoIs in
 * their original order. */
template <typename T, int L, bool POOL, int ISA>
RC_AI void v_bwd_item(const VJob<T>& j, VScratch<T>& s, rc_index it) {
  const Geom& g = j.g;
  const rc_index n = j.seg->imgs[it / j.nb], b = it % j.nb;
  rc_index r0, r1;
  rc_segment(*j.seg, j.batch_start, n, j.round, &r0, &r1);
  const rc_index c0 = b * L;
  const int nc = static_cast<int>(g.C - c0 < L ? g.C - c0 : L);
  const rc_index HW = g.H * g.W;
  const bool packed = j.packed != 0;
  const bool need_in = POOL || j.sp.max_mode;
  T* gp;
  const T* ip;
  rc_index sy, sx;
  if (packed) {
    gp = s.gtile;
    if (j.round == 0) {
      for (rc_index i = 0; i < HW * L; ++i) gp[i] = (T)0;
    } else if (g.channels_last) { /* continue the sums of the last round */
      v_pack_nhwc<T, L>(j.out, g, n, c0, 0, HW, gp);
    } else {
      for (rc_index i0 = 0; i0 < HW; i0 += 128)
        v_pack_block<T, ISA>(j.out, g, L, n, c0, i0,
                             i0 + 128 < HW ? i0 + 128 : HW, gp, L);
    }
    if (need_in && g.channels_last) {
      v_pack_nhwc<T, L>(j.in, g, n, c0, 0, HW, s.itile);
    } else if (need_in) {
      const rc_index chunk = 128;
      for (rc_index i0 = 0; i0 < HW; i0 += chunk)
        v_pack_block<T, ISA>(j.in, g, L, n, c0, i0,
                             i0 + chunk < HW ? i0 + chunk : HW, s.itile, L);
    }
    ip = s.itile;
    sy = g.W * L;
    sx = L;
  } else {
    gp = j.out + n * HW * g.C + c0;
    ip = j.in + n * HW * g.C + c0;
    sy = g.W * g.C;
    sx = g.C;
  }
  const bool full = packed || nc == L;
  for (rc_index r = r0; r < r1; ++r) {
    const rc_index k = j.order[r];
    const T* roi = j.rois + 5 * k;
    if (rc_batch(g, k) != n) continue;
    v_load_grad<T, L, ISA>(g, j.grad_out, k, c0, nc, s.tile);
    if (POOL) {
      rc_index *hlo = s.ptab, *hhi = s.ptab + g.PH, *wlo = s.ptab + 2 * g.PH,
               *whi = s.ptab + 2 * g.PH + g.PW;
      pool_tabs<T>(j.bins, roi, j.scale, g, hlo, hhi, wlo, whi);
      if (full)
        v_pool_bwd<T, L, true>(gp, ip, L, sy, sx, hlo, hhi, wlo, whi, g.PH,
                               g.PW, s.tile);
      else
        v_pool_bwd<T, L, false>(gp, ip, nc, sy, sx, hlo, hhi, wlo, whi, g.PH,
                                g.PW, s.tile);
    } else {
      T ys, bh, xs, bw;
      rc_index gh, gw;
      sampled_geometry<T>(j.sp, roi, j.scale, g, &ys, &bh, &gh, &xs, &bw, &gw);
      sample_tab_fill<T>(&s.ty, j.sp.kind, ys, bh, gh, g.PH, g.H, sy);
      sample_tab_fill<T>(&s.tx, j.sp.kind, xs, bw, gw, g.PW, g.W, sx);
      if (full)
        v_sampled_bwd<T, L, true>(gp, ip, L, s.ty, s.tx, g.PH, g.PW,
                                  j.sp.max_mode, s.tile);
      else
        v_sampled_bwd<T, L, false>(gp, ip, nc, s.ty, s.tx, g.PH, g.PW,
                                   j.sp.max_mode, s.tile);
    }
  }
  if (packed && g.channels_last) {
    v_copy_rows<T, L, false>(j.out + n * HW * g.C + c0, g.C, gp, L, HW, nc);
  } else if (packed) {
    v_unpack_block<T, L, ISA>(gp, g, n, c0, j.out);
  }
}

/* --- one function per item kind and instruction set ------------------ */
template <typename T>
struct VFns {
  typedef void (*Item)(const VJob<T>&, VScratch<T>&, rc_index);
  typedef void (*Pack)(const T*, const Geom&, rc_index, rc_index, rc_index,
                       rc_index, rc_index, T*);
};

enum { RC_V_SFWD = 0, RC_V_PFWD = 1, RC_V_SBWD = 2, RC_V_PBWD = 3 };

/* BYTES: bytes per channel block (rc_lane_bytes of the ISA). */
#define RC_V_VARIANTS(SUF, ATTR, BYTES, ISA)                                  \
  template <typename T>                                                       \
  ATTR void v_sfwd_##SUF(const VJob<T>& j, VScratch<T>& s, rc_index it) {     \
    v_fwd_item<T, static_cast<int>(BYTES / sizeof(T)), ISA, false>(j, s, it); \
  }                                                                           \
  template <typename T>                                                       \
  ATTR void v_pfwd_##SUF(const VJob<T>& j, VScratch<T>& s, rc_index it) {     \
    v_fwd_item<T, static_cast<int>(BYTES / sizeof(T)), ISA, true>(j, s, it);  \
  }                                                                           \
  template <typename T>                                                       \
  ATTR void v_sbwd_##SUF(const VJob<T>& j, VScratch<T>& s, rc_index it) {     \
    v_bwd_item<T, static_cast<int>(BYTES / sizeof(T)), false, ISA>(j, s, it); \
  }                                                                           \
  template <typename T>                                                       \
  ATTR void v_pbwd_##SUF(const VJob<T>& j, VScratch<T>& s, rc_index it) {     \
    v_bwd_item<T, static_cast<int>(BYTES / sizeof(T)), true, ISA>(j, s, it);  \
  }                                                                           \
  template <typename T>                                                       \
  ATTR void v_pack_##SUF(const T* in, const Geom& g, rc_index L, rc_index n,  \
                         rc_index c0, rc_index i0, rc_index i1, T* dst) {     \
    if (g.channels_last)                                                      \
      v_pack_nhwc<T, static_cast<int>(BYTES / sizeof(T))>(in, g, n, c0, i0,   \
                                                          i1, dst);           \
    else                                                                      \
      v_pack_block<T, ISA>(in, g, L, n, c0, i0, i1, dst, L);                  \
  }                                                                           \
  template <typename T>                                                       \
  inline typename VFns<T>::Item v_pick_##SUF(int which) {                     \
    switch (which) {                                                          \
      case RC_V_SFWD: return v_sfwd_##SUF<T>;                                 \
      case RC_V_PFWD: return v_pfwd_##SUF<T>;                                 \
      case RC_V_SBWD: return v_sbwd_##SUF<T>;                                 \
      default: return v_pbwd_##SUF<T>;                                        \
    }                                                                         \
  }

RC_V_VARIANTS(base, , 128, RC_ISA_BASELINE)
#if RC_X86_DISPATCH
RC_V_VARIANTS(avx2, RC_TARGET_AVX2, 128, RC_ISA_AVX2)
RC_V_VARIANTS(avx512, RC_TARGET_AVX512, 256, RC_ISA_AVX512)
#endif

template <typename T>
inline typename VFns<T>::Pack v_pick_pack(int isa) {
#if RC_X86_DISPATCH
  if (isa >= RC_ISA_AVX512) return v_pack_avx512<T>;
  if (isa == RC_ISA_AVX2) return v_pack_avx2<T>;
#endif
  (void)isa;
  return v_pack_base<T>;
}

template <typename T>
inline typename VFns<T>::Item v_pick(int which, int isa) {
#if RC_X86_DISPATCH
  if (isa >= RC_ISA_AVX512) return v_pick_avx512<T>(which);
  if (isa == RC_ISA_AVX2) return v_pick_avx2<T>(which);
#endif
  (void)isa;
  return v_pick_base<T>(which);
}

/* --- drivers ---------------------------------------------------------- */
/* Per-channel work of a call (sum of the per-RoI costs), to decide whether
 * packing NCHW pays off. */
inline double v_work(const double* cost, rc_index K) {
  double w = 0;
  for (rc_index k = 0; k < K; ++k) w += cost[k];
  return w;
}

/* Packing policy (tests): 0 by cost, 1 always pack, 2 never pack (NHWC
 * runs in place, NCHW on the reference kernels). */
inline int* rc_pack_policy_slot() {
  static int policy = 0;
  return &policy;
}

inline int rc_set_pack_policy(int policy) {
  *rc_pack_policy_slot() = policy >= 0 && policy <= 2 ? policy : 0;
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
  const rc_index L = j.L = v_lanes<T>(isa);
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
  j.whole_roi = g.channels_last && j.stream;
  const typename VFns<T>::Item fn = v_pick<T>(which, isa);
  const typename VFns<T>::Pack packfn = v_pick_pack<T>(isa);
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
  return err;
}

/* Backward: items (image, block); grad_in must be zero on entry. */
template <typename T>
int v_backward(VJob<T> j, int which, int nthreads, int isa, bool pack) {
  const Geom& g = j.g;
  const rc_index L = j.L = v_lanes<T>(isa);
  j.nb = (g.C + L - 1) / L;
  j.packed = pack ? 1 : 0;
  const typename VFns<T>::Item fn = v_pick<T>(which, isa);
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

template <typename T>
int pool_forward(const T* in, const T* rois, T* out, const Geom& g, T scale,
                 int bins, int nthreads) {
  const int isa = rc_isa_for<T>(g);
  if (isa == RC_ISA_REFERENCE)
    return pool_forward_reference<T>(in, rois, out, g, scale, bins, nthreads);
  double* cost = pool_cost_array<T>(bins, rois, scale, g, 0);
  if (!cost) return RC_ERR_NOMEM;
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

#endif  // ROICORE_ROI_CPU_H_
