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

/* The bodies, shared by every instruction set. */
template <typename T, int ISA>
RC_AI void pack_input(const T* in, const Geom& g, rc_index L, rc_index n,
                      rc_index c0, rc_index i0, rc_index i1, T* dst) {
  if (g.channels_last)
    v_pack_nhwc<T, Lanes<T, ISA>::value>(in, g, n, c0, i0, i1, dst);
  else
    v_pack_block<T, ISA>(in, g, L, n, c0, i0, i1, dst, L);
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
template <typename T>
inline typename VFns<T>::Pack pack_kernel(int isa) {
#if RC_X86_DISPATCH
  if (isa >= RC_ISA_AVX512) return pack_input_avx512<T>;
  if (isa == RC_ISA_AVX2) return pack_input_avx2<T>;
#endif
  (void)isa;
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

}  // namespace roicore

#endif  // ROICORE_CPU_ISA_ENTRY_H_
