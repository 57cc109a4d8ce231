/* roicore CPU kernels: Transposes between lane tiles and NCHW planes (SSE / AVX / scalar).
 */
#ifndef ROICORE_CPU_TRANSPOSE_H_
#define ROICORE_CPU_TRANSPOSE_H_

#include "roicore/cpu/memory.h"

namespace roicore {
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
}  // namespace roicore

#endif  // ROICORE_CPU_TRANSPOSE_H_
