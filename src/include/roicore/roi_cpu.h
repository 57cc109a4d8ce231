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
 * Error codes: 0 ok, 1 out of memory, 2 sampling grid too large.
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

using std::ceil;
using std::floor;
using std::round;

#include "roi_common.h"

namespace roicore {

/* Geometry of one call. */
struct Geom {
  rc_index N, C, H, W;   /* input */
  rc_index K, PH, PW;    /* rois / output */
  bool channels_last;    /* NHWC */
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

inline int rc_threads(int requested, rc_index items) {
  int n = requested < 1 ? 1 : requested;
  if (items < n) n = static_cast<int>(items < 1 ? 1 : items);
  return n;
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

template <typename T>
inline rc_index rc_batch(const T* roi, rc_index N) {
  T b = roi[0];
  if (!(b >= (T)0 && b < static_cast<T>(N))) return -1;
  return static_cast<rc_index>(b);
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
}

/* Largest grid over all RoIs; 2 if any exceeds RC_GRID_LIMIT. */
template <typename T>
inline int sampled_max_grid(const SampledParams& sp, const T* rois, T scale,
                            const Geom& g, rc_index* mgh, rc_index* mgw) {
  rc_index a = 0, b = 0;
  for (rc_index k = 0; k < g.K; ++k) {
    T ys, bh, xs, bw;
    rc_index gh, gw;
    sampled_geometry<T>(sp, rois + 5 * k, scale, g, &ys, &bh, &gh, &xs, &bw,
                        &gw);
    if (gh > a) a = gh;
    if (gw > b) b = gw;
  }
  *mgh = a;
  *mgw = b;
  return (a > RC_GRID_LIMIT || b > RC_GRID_LIMIT) ? 2 : 0;
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
int sampled_forward(const T* in, const T* rois, T* out, const Geom& g,
                    T scale, SampledParams sp, int nthreads) {
  rc_index mgh, mgw;
  if (sampled_max_grid<T>(sp, rois, scale, g, &mgh, &mgw)) return 2;
  const Strides<T> st(g);
  const rc_index ny = g.PH * mgh, nx = g.PW * mgw;
  const rc_index cb = rc_channel_block(g.C, g.K, nthreads < 1 ? 1 : nthreads);
  const rc_index nblk = (g.C + cb - 1) / cb;
  const rc_index items = g.K * nblk;
  int err = 0;
  int nt = rc_threads(nthreads, items);
#pragma omp parallel num_threads(nt)
  {
    char* mem = static_cast<char*>(
        std::malloc(sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx) +
                    sizeof(T) * static_cast<size_t>(cb) + 64));
    if (!mem) {
#pragma omp atomic write
      err = 1;
    }
    SampleTab<T> ty, tx;
    T* acc = nullptr;
    if (mem) {
      sample_tab_bind(&ty, mem, ny);
      sample_tab_bind(&tx, mem + sample_tab_bytes<T>(ny), nx);
      acc = reinterpret_cast<T*>(
          mem + ((sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx) + 15) &
                 ~static_cast<size_t>(15)));
    }
#pragma omp for schedule(dynamic, 1)
    for (rc_index it = 0; it < items; ++it) {
      if (!mem) continue;
      const rc_index k = it / nblk;
      const rc_index c0 = (it % nblk) * cb;
      const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
      const T* roi = rois + 5 * k;
      T* o = out + k * st.on;
      const rc_index n = rc_batch(roi, g.N);
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
  return err;
}

/* ------------------------------------------------------------------ */
/* Sampled ops: backward (gather by image, fixed order)                */
/* ------------------------------------------------------------------ */
template <typename T>
int sampled_backward(const T* grad_out, const T* in, const T* rois,
                     const rc_index* order, const rc_index* batch_start,
                     T* grad_in, const Geom& g, T scale, SampledParams sp,
                     int nthreads) {
  rc_index mgh, mgw;
  if (sampled_max_grid<T>(sp, rois, scale, g, &mgh, &mgw)) return 2;
  const Strides<T> st(g);
  const rc_index ny = g.PH * mgh, nx = g.PW * mgw;
  const rc_index cb = rc_channel_block(g.C, g.N, nthreads < 1 ? 1 : nthreads);
  const rc_index nblk = (g.C + cb - 1) / cb;
  const rc_index items = g.N * nblk;
  int err = 0;
  int nt = rc_threads(nthreads, items);
#pragma omp parallel num_threads(nt)
  {
    char* mem = static_cast<char*>(std::malloc(
        sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx) + 64));
    if (!mem) {
#pragma omp atomic write
      err = 1;
    }
    SampleTab<T> ty, tx;
    if (mem) {
      sample_tab_bind(&ty, mem, ny);
      sample_tab_bind(&tx, mem + sample_tab_bytes<T>(ny), nx);
    }
#pragma omp for schedule(dynamic, 1)
    for (rc_index it = 0; it < items; ++it) {
      if (!mem) continue;
      const rc_index n = it / nblk;
      const rc_index c0 = (it % nblk) * cb;
      const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
      T* gbase = grad_in + n * st.sn;
      const T* ibase = in + n * st.sn;
      for (rc_index r = batch_start[n]; r < batch_start[n + 1]; ++r) {
        const rc_index k = order[r];
        const T* roi = rois + 5 * k;
        if (rc_batch(roi, g.N) != n) continue;
        T ys, bh, xs, bw;
        rc_index gh, gw;
        sampled_geometry<T>(sp, roi, scale, g, &ys, &bh, &gh, &xs, &bw, &gw);
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
int pool_forward(const T* in, const T* rois, T* out, const Geom& g, T scale,
                 int bins, int nthreads) {
  const Strides<T> st(g);
  const rc_index cb = rc_channel_block(g.C, g.K, nthreads < 1 ? 1 : nthreads);
  const rc_index nblk = (g.C + cb - 1) / cb;
  const rc_index items = g.K * nblk;
  int err = 0;
  int nt = rc_threads(nthreads, items);
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
    for (rc_index it = 0; it < items; ++it) {
      if (!tab) continue;
      const rc_index k = it / nblk;
      const rc_index c0 = (it % nblk) * cb;
      const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
      const T* roi = rois + 5 * k;
      T* o = out + k * st.on;
      const rc_index n = rc_batch(roi, g.N);
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
  return err;
}

template <typename T>
int pool_backward(const T* grad_out, const T* in, const T* rois,
                  const rc_index* order, const rc_index* batch_start,
                  T* grad_in, const Geom& g, T scale, int bins,
                  int nthreads) {
  const Strides<T> st(g);
  const rc_index cb = rc_channel_block(g.C, g.N, nthreads < 1 ? 1 : nthreads);
  const rc_index nblk = (g.C + cb - 1) / cb;
  const rc_index items = g.N * nblk;
  int err = 0;
  int nt = rc_threads(nthreads, items);
#pragma omp parallel num_threads(nt)
  {
    rc_index* tab = static_cast<rc_index*>(
        std::malloc(sizeof(rc_index) * 2 * static_cast<size_t>(g.PH + g.PW)));
    if (!tab) {
#pragma omp atomic write
      err = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (rc_index it = 0; it < items; ++it) {
      if (!tab) continue;
      const rc_index n = it / nblk;
      const rc_index c0 = (it % nblk) * cb;
      const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
      rc_index *hlo = tab, *hhi = tab + g.PH, *wlo = tab + 2 * g.PH,
               *whi = tab + 2 * g.PH + g.PW;
      const T* ibase = in + n * st.sn;
      T* gbase = grad_in + n * st.sn;
      for (rc_index r = batch_start[n]; r < batch_start[n + 1]; ++r) {
        const rc_index k = order[r];
        const T* roi = rois + 5 * k;
        if (rc_batch(roi, g.N) != n) continue;
        pool_tabs<T>(bins, roi, scale, g, hlo, hhi, wlo, whi);
        const T* go = grad_out + k * st.on;
        for (rc_index c = c0; c < c1; ++c)
          for (rc_index ph = 0; ph < g.PH; ++ph)
            for (rc_index pw = 0; pw < g.PW; ++pw) {
              rc_index a;
              pool_bin(ibase + c * st.sc, st, g.W, hlo[ph], hhi[ph], wlo[pw],
                       whi[pw], &a);
              if (a >= 0)
                gbase[c * st.sc + (a / g.W) * st.sy + (a % g.W) * st.sx] +=
                    go[c * st.oc + ph * st.oy + pw * st.ox];
            }
      }
    }
    std::free(tab);
  }
  return err;
}

}  // namespace roicore

#endif  // ROICORE_ROI_CPU_H_
