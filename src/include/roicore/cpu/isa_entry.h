/* roicore CPU kernels: the per-ISA entry points, one named function per item
 * kind and instruction set (no token pasting, so grep finds each one):
 *
 *   sampled_forward_{baseline,avx2,avx512}   RoI Align / RoI Warp / MNC warp
 *   sampled_backward_{baseline,avx2,avx512}
 *   pool_forward_{baseline,avx2,avx512}      RoI Pool
 *   pool_backward_{baseline,avx2,avx512}
 *   pack_input_{baseline,avx2,avx512}        NCHW -> channel blocks
 *
 * Each runs one work item (cpu/items.h) compiled for its instruction set;
 * the lanes per channel block are rc_lane_bytes(ISA) / sizeof(T).
 * item_kernel() / pack_kernel() pick one at run time (cpu/isa.h).
 */
#ifndef ROICORE_CPU_ISA_ENTRY_H_
#define ROICORE_CPU_ISA_ENTRY_H_

#include "roicore/cpu/items.h"

namespace roicore {

template <typename T>
struct VFns {
  typedef void (*Item)(const VJob<T>&, VScratch<T>&, rc_index);
  typedef void (*Pack)(const T*, const Geom&, rc_index, rc_index, rc_index,
                       rc_index, rc_index, T*);
};

enum { RC_V_SFWD = 0, RC_V_PFWD = 1, RC_V_SBWD = 2, RC_V_PBWD = 3 };

/* Lanes of a channel block of T for an instruction set (cf. rc_lane_bytes). */
template <typename T, int ISA>
struct Lanes {
  static constexpr int value =
      static_cast<int>((ISA >= RC_ISA_AVX512 ? 256 : 128) / sizeof(T));
};

/* Lanes of the forward's wide channel blocks (256 bytes) under AVX2, cf.
 * v_fwd_wide. */
template <typename T>
struct WideLanes {
  static constexpr int value = static_cast<int>(256 / sizeof(T));
};

/* The bodies, shared by every instruction set. */
template <typename T, int ISA, int L = Lanes<T, ISA>::value>
RC_AI void pack_input(const T* in, const Geom& g, rc_index Lr, rc_index n,
                      rc_index c0, rc_index i0, rc_index i1, T* dst) {
  /* dst holds every pixel of the block: pixel i at dst[i * Lr] */
  if (g.channels_last)
    v_pack_nhwc<T, L>(in, g, n, c0, i0, i1, dst + i0 * L);
  else
    v_pack_block<T, ISA>(in, g, Lr, n, c0, i0, i1, dst + i0 * Lr, Lr);
}

/* --- baseline x86-64 (or any other CPU) ------------------------------- */
template <typename T>
void sampled_forward_baseline(const VJob<T>& j, VScratch<T>& s, rc_index it) {
  v_fwd_item<T, Lanes<T, RC_ISA_BASELINE>::value, RC_ISA_BASELINE, false>(
      j, s, it);
}
template <typename T>
void pool_forward_baseline(const VJob<T>& j, VScratch<T>& s, rc_index it) {
  v_fwd_item<T, Lanes<T, RC_ISA_BASELINE>::value, RC_ISA_BASELINE, true>(
      j, s, it);
}
template <typename T>
void sampled_backward_baseline(const VJob<T>& j, VScratch<T>& s, rc_index it) {
  v_bwd_item<T, Lanes<T, RC_ISA_BASELINE>::value, false, RC_ISA_BASELINE>(
      j, s, it);
}
template <typename T>
void pool_backward_baseline(const VJob<T>& j, VScratch<T>& s, rc_index it) {
  v_bwd_item<T, Lanes<T, RC_ISA_BASELINE>::value, true, RC_ISA_BASELINE>(
      j, s, it);
}
template <typename T>
void pack_input_baseline(const T* in, const Geom& g, rc_index L, rc_index n,
                         rc_index c0, rc_index i0, rc_index i1, T* dst) {
  pack_input<T, RC_ISA_BASELINE>(in, g, L, n, c0, i0, i1, dst);
}

#if RC_X86_DISPATCH
/* --- AVX2 -------------------------------------------------------------- */
template <typename T>
RC_TARGET_AVX2 void sampled_forward_avx2(const VJob<T>& j, VScratch<T>& s,
                                         rc_index it) {
  v_fwd_item<T, Lanes<T, RC_ISA_AVX2>::value, RC_ISA_AVX2, false>(j, s, it);
}
template <typename T>
RC_TARGET_AVX2 void pool_forward_avx2(const VJob<T>& j, VScratch<T>& s,
                                      rc_index it) {
  v_fwd_item<T, Lanes<T, RC_ISA_AVX2>::value, RC_ISA_AVX2, true>(j, s, it);
}
template <typename T>
RC_TARGET_AVX2 void sampled_backward_avx2(const VJob<T>& j, VScratch<T>& s,
                                          rc_index it) {
  v_bwd_item<T, Lanes<T, RC_ISA_AVX2>::value, false, RC_ISA_AVX2>(j, s, it);
}
template <typename T>
RC_TARGET_AVX2 void pool_backward_avx2(const VJob<T>& j, VScratch<T>& s,
                                       rc_index it) {
  v_bwd_item<T, Lanes<T, RC_ISA_AVX2>::value, true, RC_ISA_AVX2>(j, s, it);
}
template <typename T>
RC_TARGET_AVX2 void pack_input_avx2(const T* in, const Geom& g, rc_index L,
                                    rc_index n, rc_index c0, rc_index i0,
                                    rc_index i1, T* dst) {
  pack_input<T, RC_ISA_AVX2>(in, g, L, n, c0, i0, i1, dst);
}

/* AVX2 forward on 256-byte channel blocks (v_fwd_wide): each sample's
 * table reads, weights and broadcasts serve twice the channels. */
template <typename T>
RC_TARGET_AVX2 void sampled_forward_avx2_wide(const VJob<T>& j,
                                              VScratch<T>& s, rc_index it) {
  v_fwd_item<T, WideLanes<T>::value, RC_ISA_AVX2, false>(j, s, it);
}
template <typename T>
RC_TARGET_AVX2 void pool_forward_avx2_wide(const VJob<T>& j, VScratch<T>& s,
                                           rc_index it) {
  v_fwd_item<T, WideLanes<T>::value, RC_ISA_AVX2, true>(j, s, it);
}
template <typename T>
RC_TARGET_AVX2 void pack_input_avx2_wide(const T* in, const Geom& g,
                                         rc_index L, rc_index n, rc_index c0,
                                         rc_index i0, rc_index i1, T* dst) {
  pack_input<T, RC_ISA_AVX2, WideLanes<T>::value>(in, g, L, n, c0, i0, i1,
                                                   dst);
}

/* --- AVX-512 ----------------------------------------------------------- */
template <typename T>
RC_TARGET_AVX512 void sampled_forward_avx512(const VJob<T>& j, VScratch<T>& s,
                                             rc_index it) {
  v_fwd_item<T, Lanes<T, RC_ISA_AVX512>::value, RC_ISA_AVX512, false>(j, s,
                                                                      it);
}
template <typename T>
RC_TARGET_AVX512 void pool_forward_avx512(const VJob<T>& j, VScratch<T>& s,
                                          rc_index it) {
  v_fwd_item<T, Lanes<T, RC_ISA_AVX512>::value, RC_ISA_AVX512, true>(j, s, it);
}
template <typename T>
RC_TARGET_AVX512 void sampled_backward_avx512(const VJob<T>& j,
                                              VScratch<T>& s, rc_index it) {
  v_bwd_item<T, Lanes<T, RC_ISA_AVX512>::value, false, RC_ISA_AVX512>(j, s,
                                                                      it);
}
template <typename T>
RC_TARGET_AVX512 void pool_backward_avx512(const VJob<T>& j, VScratch<T>& s,
                                           rc_index it) {
  v_bwd_item<T, Lanes<T, RC_ISA_AVX512>::value, true, RC_ISA_AVX512>(j, s, it);
}
template <typename T>
RC_TARGET_AVX512 void pack_input_avx512(const T* in, const Geom& g,
                                        rc_index L, rc_index n, rc_index c0,
                                        rc_index i0, rc_index i1, T* dst) {
  pack_input<T, RC_ISA_AVX512>(in, g, L, n, c0, i0, i1, dst);
}
#endif

/* --- run-time choice ---------------------------------------------------- */
/* Whether a forward under `isa` runs the AVX2 kernels on 256-byte channel
 * blocks: AVX2 only (AVX-512's blocks are 256 bytes already), and only where
 * that pads no more channels than 128-byte blocks (C = 256: yes; C = 72
 * float32: 96 -> 128 lanes, no). */
template <typename T>
inline bool v_fwd_wide(const Geom& g, int isa) {
#if RC_X86_DISPATCH
  if (isa != RC_ISA_AVX2) return false;
  const rc_index Ln = Lanes<T, RC_ISA_AVX2>::value, Lw = WideLanes<T>::value;
  return g.C > Ln && (g.C + Lw - 1) / Lw * Lw == (g.C + Ln - 1) / Ln * Ln;
#else
  (void)g;
  (void)isa;
  return false;
#endif
}

/* Lanes per channel block of a forward (v_fwd_wide: 256 bytes). */
template <typename T>
inline rc_index v_fwd_lanes(const Geom& g, int isa) {
  return v_fwd_wide<T>(g, isa) ? WideLanes<T>::value : v_lanes<T>(isa);
}

template <typename T>
inline typename VFns<T>::Pack pack_kernel(int isa, bool wide = false) {
#if RC_X86_DISPATCH
  if (isa >= RC_ISA_AVX512) return pack_input_avx512<T>;
  if (isa == RC_ISA_AVX2)
    return wide ? pack_input_avx2_wide<T> : pack_input_avx2<T>;
#endif
  (void)isa;
  (void)wide;
  return pack_input_baseline<T>;
}

template <typename T>
inline typename VFns<T>::Item item_kernel(int which, int isa) {
#if RC_X86_DISPATCH
  if (isa >= RC_ISA_AVX512) {
    switch (which) {
      case RC_V_SFWD: return sampled_forward_avx512<T>;
      case RC_V_PFWD: return pool_forward_avx512<T>;
      case RC_V_SBWD: return sampled_backward_avx512<T>;
      default: return pool_backward_avx512<T>;
    }
  }
  if (isa == RC_ISA_AVX2) {
    switch (which) {
      case RC_V_SFWD: return sampled_forward_avx2<T>;
      case RC_V_PFWD: return pool_forward_avx2<T>;
      case RC_V_SBWD: return sampled_backward_avx2<T>;
      default: return pool_backward_avx2<T>;
    }
  }
#endif
  (void)isa;
  switch (which) {
    case RC_V_SFWD: return sampled_forward_baseline<T>;
    case RC_V_PFWD: return pool_forward_baseline<T>;
    case RC_V_SBWD: return sampled_backward_baseline<T>;
    default: return pool_backward_baseline<T>;
  }
}

/* The forward item kernel (RC_V_SFWD / RC_V_PFWD) for v_fwd_wide's choice. */
template <typename T>
inline typename VFns<T>::Item fwd_item_kernel(int which, int isa, bool wide) {
#if RC_X86_DISPATCH
  if (wide && isa == RC_ISA_AVX2)
    return which == RC_V_PFWD ? pool_forward_avx2_wide<T>
                              : sampled_forward_avx2_wide<T>;
#endif
  (void)wide;
  return item_kernel<T>(which, isa);
}

}  // namespace roicore

#endif  // ROICORE_CPU_ISA_ENTRY_H_
