/* roicore CPU kernels: Memory helpers: aligned allocation, non-temporal (streaming) copies,
 * residency checks and MADV_POPULATE_WRITE pre-faulting of large outputs.
 */
#ifndef ROICORE_CPU_MEMORY_H_
#define ROICORE_CPU_MEMORY_H_

#include "roicore/cpu/isa.h"

namespace roicore {
inline void* rc_alloc(size_t bytes) {
  bytes = rc_align64(bytes);
  if (bytes == 0) bytes = 64;
#ifdef _WIN32
  return _aligned_malloc(bytes, 64);
#else
  void* p = nullptr;
  return posix_memalign(&p, 64, bytes) == 0 ? p : nullptr;
#endif
}

inline void rc_free(void* p) {
#ifdef _WIN32
  _aligned_free(p);
#else
  std::free(p);
#endif
}


/* memcpy with non-temporal stores for the aligned middle: a large output
 * is written once and not read back soon, so it skips the read-for-ownership
 * of every cache line (half the memory traffic). */
#if RC_X86_DISPATCH
inline void rc_stream_copy(void* dst, const void* src, size_t bytes) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  size_t head = (16 - (reinterpret_cast<size_t>(d) & 15)) & 15;
  if (head > bytes) head = bytes;
  std::memcpy(d, s, head);
  d += head;
  s += head;
  bytes -= head;
  const size_t body = bytes & ~static_cast<size_t>(63);
  for (size_t i = 0; i < body; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i b =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    const __m128i c =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    const __m128i e =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
  }
  std::memcpy(d + body, s + body, bytes - body);
}
inline void rc_stream_fence() { _mm_sfence(); }
#else
inline void rc_stream_copy(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}
inline void rc_stream_fence() {}
#endif

/* Whether [p, p + bytes) is already backed by memory (sampled at three
 * pages).  A fresh np.empty result is not: its first touch faults in zeroed
 * pages that are then in cache, and ordinary stores beat streaming ones. */
inline bool rc_resident(const void* p, size_t bytes) {
#ifdef __linux__
  const long pg = sysconf(_SC_PAGESIZE);
  if (pg <= 0 || bytes == 0) return true;
  const size_t mask = ~(static_cast<size_t>(pg) - 1);
  const size_t a = reinterpret_cast<size_t>(p);
  const size_t at[3] = {a, a + bytes / 2, a + bytes - 1};
  for (int i = 0; i < 3; ++i) {
    unsigned char v = 0;
    if (mincore(reinterpret_cast<void*>(at[i] & mask),
                static_cast<size_t>(pg), &v) != 0)
      return true;
    if (!(v & 1)) return false;
  }
  return true;
#else
  (void)p;
  (void)bytes;
  return true;
#endif
}

/* Fault in [p, p + bytes) with nt threads (MADV_POPULATE_WRITE, Linux
 * 5.14+, in 2 MiB pieces): the kernel zeroes the pages of a fresh np.empty
 * result in parallel and without a trap per page, and the output can then be
 * streamed.  Returns false where that is not available. */
inline bool rc_populate(void* p, size_t bytes, int nt) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  const long pg = sysconf(_SC_PAGESIZE);
  if (pg <= 0 || bytes == 0) return false;
  const size_t a = reinterpret_cast<size_t>(p) & ~(static_cast<size_t>(pg) - 1);
  const size_t e = reinterpret_cast<size_t>(p) + bytes;
  const size_t piece = static_cast<size_t>(2) << 20;
  const rc_index n = static_cast<rc_index>((e - a + piece - 1) / piece);
  int fails = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : fails)
  for (rc_index i = 0; i < n; ++i) {
    const size_t s0 = a + static_cast<size_t>(i) * piece;
    const size_t s1 = s0 + piece < e ? s0 + piece : e;
    fails += madvise(reinterpret_cast<void*>(s0), s1 - s0, MADV_POPULATE_WRITE) != 0;
  }
  return fails == 0;
#else
  (void)p;
  (void)bytes;
  (void)nt;
  return false;
#endif
}
}  // namespace roicore

#endif  // ROICORE_CPU_MEMORY_H_
