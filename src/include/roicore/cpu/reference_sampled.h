/* roicore CPU kernels: The specification of the sampled ops (RoI Align, RoI Warp, MNC warp) on the
 * CPU: scalar reference kernels, one channel at a time.  Every vectorised kernel
 * is bit-identical to these.  roi_align_forward / roi_align_backward in
 * cpu/driver.h are the entry points.
 */
#ifndef ROICORE_CPU_REFERENCE_SAMPLED_H_
#define ROICORE_CPU_REFERENCE_SAMPLED_H_

#include "roicore/cpu/tables.h"

namespace roicore {
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
                  T w1, w2, w3, w4;
                  rc_bilinear_weights(hy, ly, hx, lx, &w1, &w2, &w3, &w4);
                  const T* p1 = b0 + ty.lo[iy] + tx.lo[ix];
                  const T* p2 = b0 + ty.lo[iy] + tx.hi[ix];
                  const T* p3 = b0 + ty.hi[iy] + tx.lo[ix];
                  const T* p4 = b0 + ty.hi[iy] + tx.hi[ix];
#pragma omp simd
                  for (rc_index c = 0; c < nc; ++c)
                    acc[c] += w1 * p1[c] + w2 * p2[c] + w3 * p3[c] + w4 * p4[c];
                }
              }
              const T div = rc_avg_divisor<T>(gh, gw);
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
            const T div = rc_avg_divisor<T>(gh, gw);
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
}  // namespace roicore

#endif  // ROICORE_CPU_REFERENCE_SAMPLED_H_
