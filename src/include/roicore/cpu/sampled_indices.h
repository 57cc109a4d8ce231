/* roicore CPU kernels: the max modes of RoI Align / RoI Warp with stored
 * winners.  The forward also writes each output element's winning SAMPLE,
 * iy * gw + ix within its bin's gh x gw sampling grid (int32: a bin has at
 * most RC_BIN_SAMPLE_LIMIT = 2^24 samples), -1 when the bin has no samples or
 * no sample wins (all NaN), -2 when an out-of-range sample (the value 0)
 * leads: rc_sampled_bin's max rule, winner for winner, so -1 and -2 get no
 * gradient exactly where the recomputing backward gives none.  The backward
 * scatters grad_out to the 4 bilinear corners of the stored sample with the
 * recomputing backward's arithmetic (g * w / 1, corner order) and order (per
 * image, RoIs in their original order, channel, bins row-major), so the
 * gradient is bit-identical to sampled_backward for any thread count.
 * Both follow the scalar reference kernels (cpu/reference_sampled.h).
 */
#ifndef ROICORE_CPU_SAMPLED_INDICES_H_
#define ROICORE_CPU_SAMPLED_INDICES_H_

#include <cstdint>

#include "roicore/cpu/tables.h"

namespace roicore {

/* Max of one bin of one channel and its winner (see the file comment). */
template <typename T>
inline T sampled_bin_winner(const T* plane, const SampleTab<T>& ty,
                            const SampleTab<T>& tx, rc_index ph, rc_index pw,
                            int32_t* win) {
  const rc_index gh = ty.grid, gw = tx.grid;
  if (gh * gw == 0) {
    *win = -1;
    return (T)0;
  }
  const rc_index y0 = ph * gh, x0 = pw * gw;
  T best = rc_lowest<T>();
  int32_t w = -1;
  for (rc_index iy = 0; iy < gh; ++iy) {
    const bool oky = ty.ok[y0 + iy] != 0;
    for (rc_index ix = 0; ix < gw; ++ix) {
      const bool ok = oky && tx.ok[x0 + ix] != 0;
      const T v = ok ? bilinear_at(plane, ty, y0 + iy, tx, x0 + ix) : (T)0;
      if (v > best) {
        best = v;
        w = ok ? static_cast<int32_t>(iy * gw + ix) : -2;
      }
    }
  }
  *win = w;
  return best;
}

/* Forward of the max mode into out and idx (both of g's layout); items are
 * (RoI, channel block), chunked and interruptible as the reference forward. */
template <typename T>
int sampled_forward_indices(const T* in, const T* rois, T* out, int32_t* idx,
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
      char* mem = static_cast<char*>(std::malloc(
          sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx) + 64));
      if (!mem) {
#pragma omp atomic write
        err = RC_ERR_NOMEM;
      }
      SampleTab<T> ty = SampleTab<T>(), tx = SampleTab<T>();
      if (mem) {
        sample_tab_bind(&ty, mem, ny);
        sample_tab_bind(&tx, mem + sample_tab_bytes<T>(ny), nx);
      }
      rc_index last_k = -1;
#pragma omp for schedule(dynamic, 1)
      for (rc_index it = i0; it < i1; ++it) {
        if (!mem) continue;
        const rc_index k = it / nblk;
        const rc_index c0 = (it % nblk) * cb;
        const rc_index c1 = c0 + cb < g.C ? c0 + cb : g.C;
        const rc_index n = rc_batch(g, k);
        if (n < 0) { /* validated in Python; never read out of bounds */
          for (rc_index c = c0; c < c1; ++c)
            for (rc_index ph = 0; ph < g.PH; ++ph)
              for (rc_index pw = 0; pw < g.PW; ++pw) {
                const rc_index o = k * st.on + c * st.oc + ph * st.oy + pw * st.ox;
                out[o] = (T)0;
                idx[o] = -1;
              }
          continue;
        }
        if (k != last_k) {
          T ys, bh, xs, bw;
          rc_index gh, gw;
          sampled_geometry<T>(sp, rois + 5 * k, scale, g, &ys, &bh, &gh, &xs,
                              &bw, &gw);
          sample_tab_fill<T>(&ty, sp.kind, ys, bh, gh, g.PH, g.H, st.sy);
          sample_tab_fill<T>(&tx, sp.kind, xs, bw, gw, g.PW, g.W, st.sx);
          last_k = k;
        }
        const T* base = in + n * st.sn;
        for (rc_index c = c0; c < c1; ++c) {
          const T* plane = base + c * st.sc;
          for (rc_index ph = 0; ph < g.PH; ++ph)
            for (rc_index pw = 0; pw < g.PW; ++pw) {
              const rc_index o = k * st.on + c * st.oc + ph * st.oy + pw * st.ox;
              out[o] = sampled_bin_winner(plane, ty, tx, ph, pw, idx + o);
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

/* Backward of the max mode from stored winners; grad_in must be zero on
 * entry.  A winner outside [-2, gh*gw), or naming an out-of-range sample, is
 * skipped and the call returns RC_ERR_INDICES. */
template <typename T>
int sampled_backward_indices(const T* grad_out, const int32_t* idx,
                             const T* rois, const rc_index* order,
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
  /* the scatter costs one sample per bin, not the grid */
  for (rc_index k = 0; k < g.K; ++k)
    rcost[k] = 2.0 * static_cast<double>(g.PH * g.PW);
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
  int err = 0, bad = 0;
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
#pragma omp parallel num_threads(nt) reduction(| : bad)
      {
        char* mem = static_cast<char*>(std::malloc(
            sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx) + 64));
        if (!mem) {
#pragma omp atomic write
          err = RC_ERR_NOMEM;
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
          rc_index r0, r1;
          rc_segment(sg, batch_start, n, t, &r0, &r1);
          for (rc_index r = r0; r < r1; ++r) {
            const rc_index k = order[r];
            if (rc_batch(g, k) != n) continue;
            T ys, bh, xs, bw;
            rc_index gh, gw;
            sampled_geometry<T>(sp, rois + 5 * k, scale, g, &ys, &bh, &gh,
                                &xs, &bw, &gw);
            sample_tab_fill<T>(&ty, sp.kind, ys, bh, gh, g.PH, g.H, st.sy);
            sample_tab_fill<T>(&tx, sp.kind, xs, bw, gw, g.PW, g.W, st.sx);
            const rc_index cnt = gh * gw;
            for (rc_index c = c0; c < c1; ++c) {
              T* gp = gbase + c * st.sc;
              for (rc_index ph = 0; ph < g.PH; ++ph)
                for (rc_index pw = 0; pw < g.PW; ++pw) {
                  const rc_index o =
                      k * st.on + c * st.oc + ph * st.oy + pw * st.ox;
                  const rc_index w = idx[o];
                  if (w < 0 || w >= cnt) {
                    if (w != -1 && w != -2) bad = 1;
                    continue;
                  }
                  const rc_index wy = ph * gh + w / gw, wx = pw * gw + w % gw;
                  if (!ty.ok[wy] || !tx.ok[wx]) { /* never a winner */
                    bad = 1;
                    continue;
                  }
                  bilinear_scatter(gp, ty, wy, tx, wx, grad_out[o], (T)1);
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
  if (err) return err;
  return bad ? RC_ERR_INDICES : 0;
}

}  // namespace roicore

#endif  // ROICORE_CPU_SAMPLED_INDICES_H_
