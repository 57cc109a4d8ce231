/* roicore CPU kernels: Work items of the vectorised kernels: one (RoI, channel block) forward item,
 * one (image, channel block) backward item, tile load/store and NCHW packing.
 */
#ifndef ROICORE_CPU_ITEMS_H_
#define ROICORE_CPU_ITEMS_H_

#include "roicore/cpu/lanes_pool.h"

namespace roicore {
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

/* rc_stream_copy with 32-byte streaming stores (half the instructions of
 * the SSE2 one; the forward's output copy was ~8 % of W1's instructions). */
#if RC_X86_DISPATCH
RC_TARGET_AVX2 inline void rc_stream_copy_avx(void* dst, const void* src,
                                              size_t bytes) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  size_t head = (32 - (reinterpret_cast<size_t>(d) & 31)) & 31;
  if (head > bytes) head = bytes;
  std::memcpy(d, s, head);
  d += head;
  s += head;
  bytes -= head;
  const size_t body = bytes & ~static_cast<size_t>(63);
  for (size_t i = 0; i < body; i += 64) {
    const __m256i a =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    const __m256i b =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 32));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i), a);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i + 32), b);
  }
  std::memcpy(d + body, s + body, bytes - body);
}
#endif

template <int ISA>
RC_AI void v_stream_copy(void* dst, const void* src, size_t bytes) {
#if RC_X86_DISPATCH
  if (ISA >= RC_ISA_AVX2) {
    rc_stream_copy_avx(dst, src, bytes);
    return;
  }
#endif
  rc_stream_copy(dst, src, bytes);
}

/* tile [PH*PW][L] -> output of RoI k, channels c0 .. c0+nc.  `stage`
 * ([PH*PW][L] scratch) is used to stream large NCHW outputs. */
template <typename T, int L, int ISA>
RC_AI void v_store_tile(const VJob<T>& j, const T* tile, T* stage, rc_index k,
                        rc_index c0, int nc) {
  const Geom& g = j.g;
  const rc_index nbins = g.PH * g.PW;
  if (g.channels_last) { /* block-major NHWC: see v_forward */
    v_copy_rows<T, L, false>(j.out + k * nbins * g.C + c0, g.C, tile, L, nbins,
                             nc);
  } else if (j.stream) {
    rc_transpose<T, ISA>(tile, L, stage, nbins, nbins, nc);
    v_stream_copy<ISA>(j.out + (k * g.C + c0) * nbins, stage,
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

/* Forward of RoI k, channel block b -> s.tile [PH*PW][L]. */
template <typename T, int L, int ISA, bool POOL>
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
    constexpr int VB = RcVecBytes<ISA>::value;
    if (full)
      v_pool_fwd<T, L, VB, true>(src, L, j.sy, j.sx, hlo, hhi, wlo, whi, g.PH,
                                 g.PW, s.tile);
    else
      v_pool_fwd<T, L, VB, false>(src, nc, j.sy, j.sx, hlo, hhi, wlo, whi,
                                  g.PH, g.PW, s.tile);
    return;
  }
  if (!j.tabs) {
    T ys, bh, xs, bw;
    rc_index gh, gw;
    sampled_geometry<T>(j.sp, roi, j.scale, g, &ys, &bh, &gh, &xs, &bw, &gw);
    sample_tab_fill<T>(&s.ty, j.sp.kind, ys, bh, gh, g.PH, g.H, j.sy);
    sample_tab_fill<T>(&s.tx, j.sp.kind, xs, bw, gw, g.PW, g.W, j.sx);
  }
  const SampleTab<T>& ty = j.tabs ? j.tabs[2 * k] : s.ty;
  const SampleTab<T>& tx = j.tabs ? j.tabs[2 * k + 1] : s.tx;
  constexpr int VB = RcVecBytes<ISA>::value;
  if (full)
    v_sampled_fwd<T, L, VB, true>(src, L, ty, tx, g.PH, g.PW, j.sp.max_mode,
                                  s.tile);
  else
    v_sampled_fwd<T, L, VB, false>(src, nc, ty, tx, g.PH, g.PW,
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
    v_fwd_block<T, L, ISA, POOL>(j, s, k, b);
    const rc_index c0 = b * L;
    v_store_tile<T, L, ISA>(j, s.tile, s.stage, k, c0,
                            static_cast<int>(g.C - c0 < L ? g.C - c0 : L));
    return;
  }
  const rc_index nbins = g.PH * g.PW;
  for (rc_index b = 0; b < j.nb; ++b) {
    v_fwd_block<T, L, ISA, POOL>(j, s, it, b);
    const rc_index c0 = b * L;
    v_copy_rows<T, L, false>(s.rstage + c0, g.C, s.tile, L, nbins,
                             static_cast<int>(g.C - c0 < L ? g.C - c0 : L));
  }
  v_stream_copy<ISA>(j.out + it * nbins * g.C, s.rstage,
                     sizeof(T) * static_cast<size_t>(nbins * g.C));
}


/* --- backward -------------------------------------------------------- */
/* grad_out of RoI k, channels c0 .. c0+nc, bins i0 .. i1 -> tile [PH*PW][L]
 * at those bins (zero padded) */
template <typename T, int L, int ISA>
RC_AI void v_load_grad_bins(const Geom& g, const T* go, rc_index k,
                            rc_index c0, int nc, rc_index i0, rc_index i1,
                            T* tile) {
  const rc_index nbins = g.PH * g.PW;
  if (nc < L)
    for (rc_index i = i0 * L; i < i1 * L; ++i) tile[i] = (T)0;
  if (g.channels_last) {
    /* full blocks as L-wide vector copies (a scalar copy with a run-time nc
     * was ~15 % of an NHWC backward's instructions) */
    v_copy_rows<T, L, false>(tile + i0 * L, L, go + (k * nbins + i0) * g.C + c0,
                             g.C, i1 - i0, nc);
  } else {
    rc_transpose<T, ISA>(go + (k * g.C + c0) * nbins + i0, nbins, tile + i0 * L,
                         L, nc, i1 - i0);
  }
}

/* grad_out of RoI k, channels c0 .. c0+nc -> tile [PH*PW][L] (zero padded) */
template <typename T, int L, int ISA>
RC_AI void v_load_grad(const Geom& g, const T* go, rc_index k, rc_index c0,
                       int nc, T* tile) {
  v_load_grad_bins<T, L, ISA>(g, go, k, c0, nc, 0, g.PH * g.PW, tile);
}

/* The bins of the bin rows marked in bon (PH): [*i0, *i1). */
inline void v_bon_bins(const unsigned char* bon, rc_index PH, rc_index PW,
                       rc_index* i0, rc_index* i1) {
  rc_index a = 0, b = PH;
  while (a < PH && !bon[a]) ++a;
  while (b > a && !bon[b - 1]) --b;
  *i0 = a * PW;
  *i1 = b * PW;
}

/* NCHW channels c0 .. c0+L of image n, pixels i0 .. i1 -> dst[(i - i0) * ld
 * + l] (zero padded past C). */
template <typename T, int ISA>
RC_AI void v_pack_block(const T* in, const Geom& g, rc_index L, rc_index n,
                        rc_index c0, rc_index i0, rc_index i1, T* dst,
                        rc_index ld) {
  const rc_index HW = g.H * g.W;
  const rc_index nc = g.C - c0 < L ? g.C - c0 : L;
  rc_transpose<T, ISA>(in + (n * g.C + c0) * HW + i0, HW, dst, ld, nc,
                       i1 - i0);
  if (nc < L)
    for (rc_index i = 0; i < i1 - i0; ++i)
      for (rc_index l = nc; l < L; ++l) dst[i * ld + l] = (T)0;
}

/* NHWC channels c0 .. c0+L of image n, pixels i0 .. i1 -> dst[(i - i0) * L
 * + l] (zero padded past C). */
template <typename T, int L>
RC_AI void v_pack_nhwc(const T* in, const Geom& g, rc_index n, rc_index c0,
                       rc_index i0, rc_index i1, T* dst) {
  const int nc = static_cast<int>(g.C - c0 < L ? g.C - c0 : L);
  v_copy_rows<T, L, true>(dst, L, in + (n * g.H * g.W + i0) * g.C + c0, g.C,
                          i1 - i0, nc);
}

/* Channels c0 .. c0+L of image n, pixels i0 .. i1 -> dst[(i - i0) * L + l]
 * (zero padded past C), NCHW in transposes of 128 pixels, or NHWC. */
template <typename T, int L, int ISA>
RC_AI void v_pack_pixels(const T* in, const Geom& g, rc_index n, rc_index c0,
                         rc_index i0, rc_index i1, T* dst) {
  if (g.channels_last) {
    v_pack_nhwc<T, L>(in, g, n, c0, i0, i1, dst);
    return;
  }
  for (rc_index a = i0; a < i1; a += 128)
    v_pack_block<T, ISA>(in, g, L, n, c0, a, a + 128 < i1 ? a + 128 : i1,
                         dst + (a - i0) * L, L);
}

/* src[(i - i0) * L + l] -> channels c0 .. c0+nc of image n, pixels i0 .. i1
 * (NCHW or NHWC). */
template <typename T, int L, int ISA>
RC_AI void v_unpack_pixels(const T* src, const Geom& g, rc_index n,
                           rc_index c0, rc_index i0, rc_index i1, T* out) {
  const rc_index HW = g.H * g.W;
  const int nc = static_cast<int>(g.C - c0 < L ? g.C - c0 : L);
  if (g.channels_last) {
    v_copy_rows<T, L, false>(out + (n * HW + i0) * g.C + c0, g.C, src, L,
                             i1 - i0, nc);
    return;
  }
  for (rc_index a = i0; a < i1; a += 128) {
    const rc_index b = a + 128 < i1 ? a + 128 : i1;
    rc_transpose<T, ISA>(src + (a - i0) * L, L, out + (n * g.C + c0) * HW + a,
                         HW, b - a, nc);
  }
}

/* Row band of backward item `it` (j.nband bands of j.brows rows; the last
 * ones may be short or empty). */
template <typename T>
RC_AI void v_bwd_band(const VJob<T>& j, rc_index it, rc_index* n, rc_index* b,
                      rc_index* y0, rc_index* y1) {
  const rc_index per = j.nb * j.nband;
  *n = j.seg->imgs[it / per];
  const rc_index rem = it % per;
  *b = rem / j.nband;
  const rc_index band = rem % j.nband;
  *y0 = band * j.brows;
  if (*y0 > j.g.H) *y0 = j.g.H;
  *y1 = *y0 + j.brows < j.g.H ? *y0 + j.brows : j.g.H;
}

/* Sampled backward in a band [y0, y0 + R): the y table's offsets (rows times
 * sy) remapped into the band, rows outside it to the sink row R; yok[iy]:
 * whether sample row iy is in range with a corner in the band; bon[ph]:
 * whether a sample of bin row ph has one.  Returns whether
 * any does. */
template <typename T>
RC_AI bool v_band_rows_sampled(const SampleTab<T>& ty, rc_index PH,
                               rc_index sy, rc_index y0, rc_index R,
                               rc_index* sylo, rc_index* syhi,
                               unsigned char* yok, unsigned char* bon) {
  const rc_index gh = ty.grid;
  bool any = false;
  for (rc_index ph = 0; ph < PH; ++ph) {
    bool on = false;
    for (rc_index iy = ph * gh; iy < (ph + 1) * gh; ++iy) {
      const rc_index lo = ty.lo[iy] / sy - y0, hi = ty.hi[iy] / sy - y0;
      const bool lin = lo >= 0 && lo < R, hin = hi >= 0 && hi < R;
      sylo[iy] = (lin ? lo : R) * sy;
      syhi[iy] = (hin ? hi : R) * sy;
      yok[iy] = ty.ok[iy] && (lin || hin) ? 1 : 0;
      on = on || yok[iy];
    }
    bon[ph] = on ? 1 : 0;
    any = any || on;
  }
  return any;
}

/* RoI Pool in a band [y0, y1): bon[ph] whether bin row ph meets it. */
inline bool v_band_rows_pool(const rc_index* hlo, const rc_index* hhi,
                             rc_index PH, rc_index y0, rc_index y1,
                             unsigned char* bon) {
  bool any = false;
  for (rc_index ph = 0; ph < PH; ++ph) {
    const bool on = hhi[ph] > hlo[ph] && hlo[ph] < y1 && hhi[ph] > y0;
    bon[ph] = on ? 1 : 0;
    any = any || on;
  }
  return any;
}

/* Backward items are (image, channel block, row band); each walks its
 * image's RoIs in their original order and adds only what lands in its
 * rows, so every pixel receives the additions of the unbanded item in the
 * same order.  One band (j.nband == 1) is the whole map: NHWC in place, or
 * per-thread packed tiles [H*W][L]; with more, the gradient tile is
 * [band rows + 1][W][L] (the last row a sink for scatters outside the band)
 * and the max / pool modes read the input packed once (j.pin). */
template <typename T, int L, bool POOL, int ISA>
RC_AI void v_bwd_item(const VJob<T>& j, VScratch<T>& s, rc_index it) {
  const Geom& g = j.g;
  rc_index n, b, y0, y1;
  v_bwd_band(j, it, &n, &b, &y0, &y1);
  if (y1 <= y0) return; /* a band past the map (forced band counts) */
  rc_index r0, r1;
  rc_segment(*j.seg, j.batch_start, n, j.round, &r0, &r1);
  const rc_index c0 = b * L;
  const int nc = static_cast<int>(g.C - c0 < L ? g.C - c0 : L);
  const rc_index HW = g.H * g.W;
  const rc_index R = y1 - y0, P0 = y0 * g.W, P1 = y1 * g.W;
  const bool packed = j.packed != 0;
  const bool banded = j.nband > 1;
  const bool need_in = POOL || j.sp.max_mode;
  T* gp;
  const T* ip;
  rc_index sy, sx;
  if (packed) {
    gp = s.gtile;
    if (j.round == 0) {
      for (rc_index i = 0; i < (P1 - P0) * L; ++i) gp[i] = (T)0;
    } else { /* continue the sums of the last round */
      v_pack_pixels<T, L, ISA>(j.out, g, n, c0, P0, P1, gp);
    }
    if (banded) {
      /* the sink row: never read, zero so no denormals linger */
      for (rc_index i = (P1 - P0) * L; i < (P1 - P0 + g.W) * L; ++i)
        gp[i] = (T)0;
      ip = need_in ? j.pin + (n * j.nb + b) * HW * L : nullptr;
    } else {
      if (need_in) v_pack_pixels<T, L, ISA>(j.in, g, n, c0, 0, HW, s.itile);
      ip = s.itile;
    }
    sy = g.W * L;
    sx = L;
  } else {
    gp = j.out + n * HW * g.C + c0;
    ip = j.in + n * HW * g.C + c0;
    sy = g.W * g.C;
    sx = g.C;
  }
  const bool full = packed || nc == L;
  const rc_index blo = banded ? y0 * sy : 0;
  const rc_index bhi =
      banded ? y1 * sy : std::numeric_limits<rc_index>::max();
  const unsigned char* bon = banded ? s.bon : nullptr;
  for (rc_index r = r0; r < r1; ++r) {
    const rc_index k = j.order[r];
    const T* roi = j.rois + 5 * k;
    if (rc_batch(g, k) != n) continue;
    if (banded && (j.roi_rows[2 * k] >= y1 || j.roi_rows[2 * k + 1] < y0))
      continue; /* misses the band */
    if (POOL) {
      rc_index *hlo = s.ptab, *hhi = s.ptab + g.PH, *wlo = s.ptab + 2 * g.PH,
               *whi = s.ptab + 2 * g.PH + g.PW;
      pool_tabs<T>(j.bins, roi, j.scale, g, hlo, hhi, wlo, whi);
      if (banded && !v_band_rows_pool(hlo, hhi, g.PH, y0, y1, s.bon)) continue;
      rc_index i0 = 0, i1 = g.PH * g.PW;
      if (banded) v_bon_bins(s.bon, g.PH, g.PW, &i0, &i1);
      v_load_grad_bins<T, L, ISA>(g, j.grad_out, k, c0, nc, i0, i1, s.tile);
      if (banded) /* packed, so every lane is computed */
        v_pool_bwd<T, L, true, true>(gp, ip, L, sy, sx, hlo, hhi, wlo, whi,
                                     g.PH, g.PW, s.tile, bon, blo, bhi);
      else if (full)
        v_pool_bwd<T, L, true, false>(gp, ip, L, sy, sx, hlo, hhi, wlo, whi,
                                      g.PH, g.PW, s.tile, bon, blo, bhi);
      else
        v_pool_bwd<T, L, false, false>(gp, ip, nc, sy, sx, hlo, hhi, wlo, whi,
                                       g.PH, g.PW, s.tile, bon, blo, bhi);
    } else {
      T ys, bh, xs, bw;
      rc_index gh, gw;
      sampled_geometry<T>(j.sp, roi, j.scale, g, &ys, &bh, &gh, &xs, &bw, &gw);
      sample_tab_fill<T>(&s.ty, j.sp.kind, ys, bh, gh, g.PH, g.H, sy);
      if (banded && !v_band_rows_sampled<T>(s.ty, g.PH, sy, y0, R, s.sylo,
                                            s.syhi, s.yok, s.bon))
        continue;
      sample_tab_fill<T>(&s.tx, j.sp.kind, xs, bw, gw, g.PW, g.W, sx);
      rc_index i0 = 0, i1 = g.PH * g.PW;
      if (banded) v_bon_bins(s.bon, g.PH, g.PW, &i0, &i1);
      v_load_grad_bins<T, L, ISA>(g, j.grad_out, k, c0, nc, i0, i1, s.tile);
      const rc_index* sylo = banded ? s.sylo : s.ty.lo;
      const rc_index* syhi = banded ? s.syhi : s.ty.hi;
      const unsigned char* yok = banded ? s.yok : s.ty.ok;
      if (full)
        v_sampled_bwd<T, L, true>(gp, ip, L, s.ty, s.tx, g.PH, g.PW,
                                  j.sp.max_mode, s.tile, sylo, syhi, yok, bon);
      else
        v_sampled_bwd<T, L, false>(gp, ip, nc, s.ty, s.tx, g.PH, g.PW,
                                   j.sp.max_mode, s.tile, sylo, syhi, yok,
                                   bon);
    }
  }
  if (packed) v_unpack_pixels<T, L, ISA>(gp, g, n, c0, P0, P1, j.out);
}
}  // namespace roicore

#endif  // ROICORE_CPU_ITEMS_H_
