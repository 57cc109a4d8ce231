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
 * The forward runs channels in lanes on an NHWC view (as the lane kernels),
 * the backward one channel at a time (as cpu/reference_sampled.h).
 */
#ifndef ROICORE_CPU_SAMPLED_INDICES_H_
#define ROICORE_CPU_SAMPLED_INDICES_H_

#include <cstdint>
#include <cstring>

#include "roicore/cpu/pool_indices.h"
#include "roicore/cpu/tables.h"

namespace roicore {

/* One bin of one group of lanes (channels in lanes of an NHWC view; L at
 * compile time when FULL): the running max and its winning sample per
 * channel, branch-free, with rc_sampled_bin's rules sample by sample (strict
 * '>', an out-of-range sample is the value 0 and leads as -2) and the lane
 * forward's arithmetic (v_sampled_fwd), so `dv` is the plain forward's value
 * bit for bit. */
template <typename T, int L, bool FULL>
RC_AI void sampled_idx_bin(const T* src, int nc, const SampleTab<T>& ty,
                           const SampleTab<T>& tx, rc_index ph, rc_index pw,
                           T* dv, int32_t* di) {
  const int n = FULL ? L : nc;
  const rc_index gh = ty.grid, gw = tx.grid;
  if (gh * gw == 0) {
    for (int l = 0; l < n; ++l) {
      dv[l] = (T)0;
      di[l] = -1;
    }
    return;
  }
  T best[L];
  int32_t arg[L];
  for (int l = 0; l < n; ++l) {
    best[l] = rc_lowest<T>();
    arg[l] = -1;
  }
  for (rc_index iy = 0; iy < gh; ++iy) {
    const rc_index Y = ph * gh + iy;
    const T hy = ty.wh[Y], ly = ty.wl[Y];
    const T* r0 = src + ty.lo[Y];
    const T* r1 = src + ty.hi[Y];
    for (rc_index ix = 0; ix < gw; ++ix) {
      const rc_index X = pw * gw + ix;
      const int32_t smp = static_cast<int32_t>(iy * gw + ix);
      if (ty.ok[Y] && tx.ok[X]) {
        const T hx = tx.wh[X], lx = tx.wl[X];
        T w1, w2, w3, w4;
        rc_bilinear_weights(hy, ly, hx, lx, &w1, &w2, &w3, &w4);
        const T* p1 = r0 + tx.lo[X];
        const T* p2 = r0 + tx.hi[X];
        const T* p3 = r1 + tx.lo[X];
        const T* p4 = r1 + tx.hi[X];
#pragma omp simd
        for (int l = 0; l < n; ++l) {
          const T v = w1 * p1[l] + w2 * p2[l] + w3 * p3[l] + w4 * p4[l];
          const bool gt = v > best[l];
          arg[l] = gt ? smp : arg[l];
          best[l] = gt ? v : best[l];
        }
      } else {
#pragma omp simd
        for (int l = 0; l < n; ++l) {
          const bool gt = (T)0 > best[l];
          arg[l] = gt ? -2 : arg[l];
          best[l] = gt ? (T)0 : best[l];
        }
      }
    }
  }
  for (int l = 0; l < n; ++l) {
    dv[l] = best[l];
    di[l] = arg[l];
  }
}

/* Every bin of one item (a RoI's tables, channels c0 .. c0+nc of an NHWC
 * view at src) into the bin-major tiles tv / ti (CB lanes per bin), L lanes at
 * a time; compiled once per instruction set below. */
template <typename T, int L>
RC_AI void sampled_idx_bins(const T* src, const SampleTab<T>& ty,
                            const SampleTab<T>& tx, rc_index PH, rc_index PW,
                            rc_index nc, rc_index CB, T* tv, int32_t* ti) {
  for (rc_index ph = 0; ph < PH; ++ph)
    for (rc_index pw = 0; pw < PW; ++pw) {
      T* dv = tv + (ph * PW + pw) * CB;
      int32_t* di = ti + (ph * PW + pw) * CB;
      rc_index l0 = 0;
      for (; l0 + L <= nc; l0 += L)
        sampled_idx_bin<T, L, true>(
            src + l0, L, ty, tx, ph, pw, dv + l0, di + l0);
      if (l0 < nc)
        sampled_idx_bin<T, L, false>(
            src + l0, static_cast<int>(nc - l0), ty, tx, ph, pw, dv + l0,
            di + l0);
    }
}

template <typename T>
struct SampledIdxBins {
  typedef void (*Fn)(const T*, const SampleTab<T>&, const SampleTab<T>&,
                     rc_index, rc_index, rc_index, rc_index, T*, int32_t*);
};

template <typename T>
void sampled_idx_bins_baseline(const T* src, const SampleTab<T>& ty,
                               const SampleTab<T>& tx, rc_index PH, rc_index PW,
                               rc_index nc, rc_index CB, T* tv, int32_t* ti) {
  sampled_idx_bins<T, Lanes<T, RC_ISA_BASELINE>::value>(
      src, ty, tx, PH, PW, nc, CB, tv, ti);
}
#if RC_X86_DISPATCH
template <typename T>
RC_TARGET_AVX2 void sampled_idx_bins_avx2(const T* src, const SampleTab<T>& ty,
                                          const SampleTab<T>& tx, rc_index PH,
                                          rc_index PW, rc_index nc,
                                          rc_index CB, T* tv, int32_t* ti) {
  sampled_idx_bins<T, Lanes<T, RC_ISA_AVX2>::value>(
      src, ty, tx, PH, PW, nc, CB, tv, ti);
}
template <typename T>
RC_TARGET_AVX512 void sampled_idx_bins_avx512(
    const T* src, const SampleTab<T>& ty, const SampleTab<T>& tx, rc_index PH,
    rc_index PW, rc_index nc, rc_index CB, T* tv, int32_t* ti) {
  sampled_idx_bins<T, Lanes<T, RC_ISA_AVX512>::value>(
      src, ty, tx, PH, PW, nc, CB, tv, ti);
}
#endif

template <typename T>
typename SampledIdxBins<T>::Fn sampled_idx_bins_for_isa() {
#if RC_X86_DISPATCH
  const int isa = rc_isa();
  if (isa >= RC_ISA_AVX512) return sampled_idx_bins_avx512<T>;
  if (isa >= RC_ISA_AVX2) return sampled_idx_bins_avx2<T>;
#endif
  return sampled_idx_bins_baseline<T>;
}

/* Forward of the max mode into out and idx (both of g's layout).  `in` is
 * always NHWC (the caller transposes an NCHW map).  Items are (RoI, block of
 * up to 64 channels), chunked and interruptible as the reference forward;
 * each bins into per-thread tiles copied out with contiguous stores. */
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
  const rc_index sy = g.W * g.C, sx = g.C, sn = g.H * g.W * g.C;
  const rc_index ny = g.PH * mgh, nx = g.PW * mgw;
  const rc_index CB = 64;
  const rc_index nblk = (g.C + CB - 1) / CB;
  const rc_index items = g.K * nblk;
  const rc_index nbins = g.PH * g.PW;
  const typename SampledIdxBins<T>::Fn run = sampled_idx_bins_for_isa<T>();
  int err = 0;
  const int nt_all = rc_threads(nthreads, items);
  const auto item_cost = [&](rc_index it) {
    const rc_index c0 = (it % nblk) * CB;
    return rcost[it / nblk] *
           static_cast<double>((c0 + CB < g.C ? c0 + CB : g.C) - c0);
  };
  for (rc_index i0 = 0; i0 < items && !err;) {
    const rc_index i1 = rc_chunk_end(i0, items, nt_all, item_cost);
    const int nt = rc_threads(nt_all, i1 - i0);
#pragma omp parallel num_threads(nt)
    {
      const size_t tabs = sample_tab_bytes<T>(ny) + sample_tab_bytes<T>(nx);
      const size_t tile = static_cast<size_t>(nbins * CB);
      char* mem = static_cast<char*>(
          std::malloc(tabs + tile * (sizeof(T) + sizeof(int32_t)) + 64));
      if (!mem) {
#pragma omp atomic write
        err = RC_ERR_NOMEM;
      }
      SampleTab<T> ty = SampleTab<T>(), tx = SampleTab<T>();
      T* tv = nullptr;
      int32_t* ti = nullptr;
      if (mem) {
        sample_tab_bind(&ty, mem, ny);
        sample_tab_bind(&tx, mem + sample_tab_bytes<T>(ny), nx);
        tv = reinterpret_cast<T*>(mem + tabs);
        ti = reinterpret_cast<int32_t*>(mem + tabs + tile * sizeof(T));
      }
      rc_index last_k = -1;
#pragma omp for schedule(dynamic, 1)
      for (rc_index it = i0; it < i1; ++it) {
        if (!mem) continue;
        const rc_index k = it / nblk;
        const rc_index c0 = (it % nblk) * CB;
        const rc_index nc = g.C - c0 < CB ? g.C - c0 : CB;
        const rc_index n = rc_batch(g, k);
        if (n < 0) { /* validated in Python; never read out of bounds */
          for (rc_index i = 0; i < nbins * CB; ++i) {
            tv[i] = (T)0;
            ti[i] = -1;
          }
        } else {
          if (k != last_k) {
            T ys, bh, xs, bw;
            rc_index gh, gw;
            sampled_geometry<T>(sp, rois + 5 * k, scale, g, &ys, &bh, &gh, &xs,
                                &bw, &gw);
            sample_tab_fill<T>(&ty, sp.kind, ys, bh, gh, g.PH, g.H, sy);
            sample_tab_fill<T>(&tx, sp.kind, xs, bw, gw, g.PW, g.W, sx);
            last_k = k;
          }
          run(in + n * sn + c0, ty, tx, g.PH, g.PW, nc, CB, tv, ti);
        }
        const rc_index ob = k * st.on + c0 * st.oc;
        if (g.channels_last) {
          for (rc_index b = 0; b < nbins; ++b) {
            std::memcpy(out + ob + b * g.C, tv + b * CB, sizeof(T) * nc);
            std::memcpy(idx + ob + b * g.C, ti + b * CB, sizeof(int32_t) * nc);
          }
        } else {
          for (rc_index l = 0; l < nc; ++l) {
            T* ov = out + ob + l * nbins;
            int32_t* oi = idx + ob + l * nbins;
            for (rc_index b = 0; b < nbins; ++b) ov[b] = tv[b * CB + l];
            for (rc_index b = 0; b < nbins; ++b) oi[b] = ti[b * CB + l];
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
