/* roicore CPU kernels: recycled memory for large fresh outputs.
 *
 * A large result array (>= RC_CACHE_MIN_BYTES) that roicore allocates lives in
 * an anonymous mapping of its own, asked for transparent huge pages
 * (MADV_HUGEPAGE, where the kernel allows it: THP "madvise" or "always").
 * When the last NumPy reference to it dies, the mapping goes back to a small
 * cache instead of to the kernel, and the next output of a similar size reuses
 * it: its pages are already populated, so the call pays no page faults (on a
 * virtual machine a fresh 50 MB output cost 3-60 ms of kernel time, more than
 * the RoI Align forward itself; measured in the README).  glibc returns every
 * allocation above its mmap threshold (at most 32 MiB) to the kernel on free.
 *
 * Bounded: at most RC_CACHE_SLOTS mappings and rc_cache_limit() bytes are kept
 * (the least recently returned are unmapped first); limit 0 disables the cache.
 * Thread-safe (a mutex).  The cache itself is never destroyed, so arrays that
 * outlive the interpreter's module teardown still return safely.
 * Linux only: elsewhere rc_cache_alloc returns null and callers allocate as
 * before.
 */
#ifndef ROICORE_CPU_OUTPUT_CACHE_H_
#define ROICORE_CPU_OUTPUT_CACHE_H_

#include <cstddef>
#include <cstring>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace roicore {

#define RC_CACHE_SLOTS 8
#define RC_CACHE_MIN_BYTES (static_cast<size_t>(4) << 20)
#define RC_CACHE_GRAIN (static_cast<size_t>(2) << 20)

struct OutputCache {
  std::mutex m;
  size_t limit = static_cast<size_t>(256) << 20;
  size_t held = 0;
  bool bypass = false; /* benchmarks: serve nothing, keep what is held */
  size_t reused = 0;  /* allocations served from the cache */
  size_t mapped = 0;  /* allocations that made a new mapping */
  void* p[RC_CACHE_SLOTS] = {};
  size_t n[RC_CACHE_SLOTS] = {};
  int count = 0;  /* slots 0..count-1, oldest first */
};

inline OutputCache& rc_cache() {
  static OutputCache* c = new OutputCache();  // never destroyed (see above)
  return *c;
}

/* Bytes a request of `bytes` maps: whole 2 MiB grains. */
inline size_t rc_cache_size(size_t bytes) {
  return (bytes + RC_CACHE_GRAIN - 1) / RC_CACHE_GRAIN * RC_CACHE_GRAIN;
}

inline void rc_cache_unmap(void* p, size_t n) {
#if defined(__linux__)
  munmap(p, n);
#else
  (void)p;
  (void)n;
#endif
}

/* Take slot i out of the cache (the caller holds c.m). */
inline void rc_cache_pop(OutputCache& c, int i, void** p, size_t* n) {
  *p = c.p[i];
  *n = c.n[i];
  c.held -= c.n[i];
  for (; i + 1 < c.count; ++i) {
    c.p[i] = c.p[i + 1];
    c.n[i] = c.n[i + 1];
  }
  --c.count;
}

/* A new mapping of n bytes (a multiple of 2 MiB), 2 MiB aligned, zero. */
inline void* rc_cache_map(size_t n) {
#if defined(__linux__)
  const size_t span = n + RC_CACHE_GRAIN;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const size_t a = reinterpret_cast<size_t>(raw);
  const size_t b = (a + RC_CACHE_GRAIN - 1) & ~(RC_CACHE_GRAIN - 1);
  if (b > a) munmap(raw, b - a);
  if (a + span > b + n) munmap(reinterpret_cast<void*>(b + n), a + span - (b + n));
  void* p = reinterpret_cast<void*>(b);
#ifdef MADV_HUGEPAGE
  madvise(p, n, MADV_HUGEPAGE);  // a hint: refused where THP is "never"
#endif
  return p;
#else
  (void)n;
  return nullptr;
#endif
}

/* Memory for an output of `bytes` bytes: *size receives the mapped size (pass
 * it to rc_cache_free) and *fresh whether the memory is a new (zero) mapping
 * rather than a recycled one (any content).  Null when the output is below
 * RC_CACHE_MIN_BYTES, the cache is off, or on failure: allocate otherwise. */
inline void* rc_cache_alloc(size_t bytes, size_t* size, bool* fresh) {
  OutputCache& c = rc_cache();
  const size_t n = rc_cache_size(bytes);
  *size = n;
  *fresh = false;
  if (bytes < RC_CACHE_MIN_BYTES) return nullptr;
  {
    std::lock_guard<std::mutex> lock(c.m);
    if (c.limit == 0 || c.bypass) return nullptr;
    /* best fit among blocks of n .. 1.5 n bytes (a bigger one would hold
     * memory the output does not use for as long as the output lives) */
    int best = -1;
    for (int i = 0; i < c.count; ++i)
      if (c.n[i] >= n && c.n[i] <= n + n / 2 && (best < 0 || c.n[i] < c.n[best]))
        best = i;
    if (best >= 0) {
      void* p;
      rc_cache_pop(c, best, &p, size);
      ++c.reused;
      return p;
    }
    ++c.mapped;
  }
  void* p = rc_cache_map(n);
  *fresh = p != nullptr;
  return p;
}

/* Give back what rc_cache_alloc returned (n: its *size). */
inline void rc_cache_free(void* p, size_t n) {
  if (!p) return;
  OutputCache& c = rc_cache();
  void* drop[RC_CACHE_SLOTS + 1];
  size_t dropn[RC_CACHE_SLOTS + 1];
  int ndrop = 0;
  {
    std::lock_guard<std::mutex> lock(c.m);
    if (n > c.limit) {
      drop[ndrop] = p;
      dropn[ndrop++] = n;
    } else {
      while (c.count > 0 && (c.held + n > c.limit || c.count == RC_CACHE_SLOTS)) {
        rc_cache_pop(c, 0, &drop[ndrop], &dropn[ndrop]);
        ++ndrop;
      }
      c.p[c.count] = p;
      c.n[c.count++] = n;
      c.held += n;
    }
  }
  for (int i = 0; i < ndrop; ++i) rc_cache_unmap(drop[i], dropn[i]);  // outside the lock
}

/* Set the limit (bytes; 0 disables and empties the cache); returns the old
 * one.  Blocks over the new limit are unmapped, oldest first. */
inline size_t rc_cache_set_limit(size_t limit) {
  OutputCache& c = rc_cache();
  void* drop[RC_CACHE_SLOTS];
  size_t dropn[RC_CACHE_SLOTS];
  int ndrop = 0;
  size_t old;
  {
    std::lock_guard<std::mutex> lock(c.m);
    old = c.limit;
    c.limit = limit;
    while (c.count > 0 && c.held > limit) {
      rc_cache_pop(c, 0, &drop[ndrop], &dropn[ndrop]);
      ++ndrop;
    }
  }
  for (int i = 0; i < ndrop; ++i) rc_cache_unmap(drop[i], dropn[i]);
  return old;
}

/* Benchmarks: while on, rc_cache_alloc serves nothing (results get fresh
 * memory) but the cache keeps its blocks; returns the previous setting. */
inline bool rc_cache_set_bypass(bool on) {
  OutputCache& c = rc_cache();
  std::lock_guard<std::mutex> lock(c.m);
  const bool old = c.bypass;
  c.bypass = on;
  return old;
}

/* (limit, held bytes, blocks held, allocations reused, new mappings). */
inline void rc_cache_stats(size_t* limit, size_t* held, int* count,
                           size_t* reused, size_t* mapped) {
  OutputCache& c = rc_cache();
  std::lock_guard<std::mutex> lock(c.m);
  *limit = c.limit;
  *held = c.held;
  *count = c.count;
  *reused = c.reused;
  *mapped = c.mapped;
}

/* Zero [p, p + bytes) with nt threads (a recycled block for a gradient). */
inline void rc_zero(void* p, size_t bytes, int nt) {
  const size_t piece = static_cast<size_t>(1) << 20;
  const long long n = static_cast<long long>((bytes + piece - 1) / piece);
  char* b = static_cast<char*>(p);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (long long i = 0; i < n; ++i) {
    const size_t s0 = static_cast<size_t>(i) * piece;
    const size_t s1 = s0 + piece < bytes ? s0 + piece : bytes;
    std::memset(b + s0, 0, s1 - s0);
  }
}
}  // namespace roicore

#endif  // ROICORE_CPU_OUTPUT_CACHE_H_
