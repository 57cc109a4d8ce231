/* roicore CPU kernels: Instruction sets of the vectorised kernels: target attributes, runtime
 * detection, the ROICORE_CPU_ISA cap.  The per-ISA entry points are in
 * cpu/isa_entry.h.
 */
#ifndef ROICORE_CPU_ISA_H_
#define ROICORE_CPU_ISA_H_

#include "roicore/cpu/reference_pool.h"

namespace roicore {
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
}  // namespace roicore

#endif  // ROICORE_CPU_ISA_H_
