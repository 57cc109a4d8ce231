/* roicore CPU kernels: Per-RoI tables of the CPU kernels: the sampled ops' (RoI Align, RoI Warp,
 * MNC warp) sample positions and bilinear weights, the sampling-cost check, the
 * image segments of the backward, and the per-bin gather/scatter of one channel.
 */
#ifndef ROICORE_CPU_TABLES_H_
#define ROICORE_CPU_TABLES_H_

#include "roicore/cpu/geometry.h"

namespace roicore {
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
  return rc_align64(b);
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
      rc_index lo, hi;
      T wl, wh;
      const bool ok = rc_sample<T>(kind, start, bin, p, i, grid, size, &lo,
                                   &hi, &wl, &wh);
      t->ok[j] = ok ? 1 : 0;
      t->lo[j] = lo * stride;
      t->hi[j] = hi * stride;
      t->wl[j] = wl;
      t->wh[j] = wh;
    }
  }
}

template <typename T>
inline void sampled_geometry(const SampledParams& sp, const T* roi, T scale,
                             const Geom& g, T* ys, T* bh, rc_index* gh,
                             T* xs, T* bw, rc_index* gw) {
  rc_sampled_geometry<T>(sp, roi, scale, g.PH, g.PW, ys, bh, gh, xs, bw, gw);
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

/* The bilinear sample (iy, ix) of the tables (roi_common.h RcBilinear). */
template <typename T>
inline RcBilinear<T> tab_sample(const SampleTab<T>& ty, rc_index iy,
                                const SampleTab<T>& tx, rc_index ix) {
  return RcBilinear<T>(ty.lo[iy], ty.hi[iy], ty.wh[iy], ty.wl[iy], tx.lo[ix],
                       tx.hi[ix], tx.wh[ix], tx.wl[ix]);
}

/* Value of the bilinear sample (iy, ix) of the tables at plane p. */
template <typename T>
inline T bilinear_at(const T* p, const SampleTab<T>& ty, rc_index iy,
                     const SampleTab<T>& tx, rc_index ix) {
  return tab_sample(ty, iy, tx, ix).gather(p);
}

/* Scatter g to the four corners of sample (iy, ix); div is applied as
 * (g * w) / div, the torchvision order. */
template <typename T>
inline void bilinear_scatter(T* p, const SampleTab<T>& ty, rc_index iy,
                             const SampleTab<T>& tx, rc_index ix, T g, T div) {
  tab_sample(ty, iy, tx, ix).scatter(p, g, div, RcAdd());
}

/* The samples of bin (ph, pw) read from the tables, for rc_sampled_bin. */
template <typename T>
struct TabBin {
  struct Row {
    rc_index i;
    bool ok;
  };
  typedef Row Col;
  const T* plane;
  const SampleTab<T>& ty;
  const SampleTab<T>& tx;
  rc_index y0, x0;
  Row row(rc_index iy) const {
    const Row r = {y0 + iy, ty.ok[y0 + iy] != 0};
    return r;
  }
  Col col(rc_index ix) const {
    const Col c = {x0 + ix, tx.ok[x0 + ix] != 0};
    return c;
  }
  T value(const Row& a, const Col& b) const {
    return bilinear_at(plane, ty, a.i, tx, b.i);
  }
};

/* Forward of one bin of one channel (plane = start of the (n, c) slice),
 * by the avg / max rules of roi_common.h.  Max mode also returns the
 * winning sample as table entries (*win_y = -1 if none). */
template <typename T>
inline T sampled_bin(const T* plane, const SampledParams& sp,
                     const SampleTab<T>& ty, const SampleTab<T>& tx,
                     rc_index ph, rc_index pw, rc_index* win_y,
                     rc_index* win_x) {
  const rc_index gh = ty.grid, gw = tx.grid;
  const TabBin<T> s = {plane, ty, tx, ph * gh, pw * gw};
  rc_index wy = -1, wx = -1;
  const T v = rc_sampled_bin<T>(s, sp.max_mode, gh, gw, &wy, &wx);
  if (sp.max_mode) {
    *win_y = wy < 0 ? -1 : s.y0 + wy;
    *win_x = s.x0 + wx;
  }
  return v;
}
}  // namespace roicore

#endif  // ROICORE_CPU_TABLES_H_
