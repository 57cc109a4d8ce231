/* roicore CPU kernels: Geometry of a call (Geom, Strides), thread counts, interruptible chunks of work,
 * channel blocks and the batch check.
 */
#ifndef ROICORE_CPU_GEOMETRY_H_
#define ROICORE_CPU_GEOMETRY_H_

#include <algorithm>
#include <cmath>
#include <functional>
#include <cfloat>
#include <cstdlib>
#include <cstring>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef _WIN32
#include <malloc.h>
#endif
#if (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

using std::ceil;
using std::floor;
using std::round;

#include "roicore/roi_common.h"

namespace roicore {
/* bytes rounded up to a whole number of 64-byte cache lines (the scratch
 * layouts: a size and the offset that binds it must agree) */
inline size_t rc_align64(size_t bytes) {
  return (bytes + 63) & ~static_cast<size_t>(63);
}

enum {
  RC_OK = 0,
  RC_ERR_NOMEM = 1,
  RC_ERR_COST = 2,
  RC_ERR_INTERRUPTED = 3,
  RC_ERR_INDICES = 4 /* stored winners out of [-1, H*W) */
};

/* Called between chunks of work on the calling thread; nonzero stops. */
typedef int (*rc_check_fn)(void*);

/* Geometry of one call. */
struct Geom {
  rc_index N, C, H, W;   /* input */
  rc_index K, PH, PW;    /* rois / output */
  bool channels_last;    /* NHWC */
  const rc_index* batch; /* exact batch index of each RoI (K); the kernels
                            never read it from the (float) rois */
  rc_check_fn check;     /* may be null */
  void* check_ctx;
};

template <typename T>
struct Strides {
  /* element offset of (n, c, y, x) = n*sn + c*sc + y*sy + x*sx */
  rc_index sn, sc, sy, sx;
  /* output offset of (k, c, ph, pw) = k*on + c*oc + ph*oy + pw*ox */
  rc_index on, oc, oy, ox;
  explicit Strides(const Geom& g) {
    rc_strides(g.channels_last, g.C, g.H, g.W, &sn, &sc, &sy, &sx);
    rc_strides(g.channels_last, g.C, g.PH, g.PW, &on, &oc, &oy, &ox);
  }
};

/* Most threads a team may have: OpenMP's thread limit, and at most
 * max(64, 4 x the processors or the default team): a larger request (e.g.
 * num_threads=10**6) would make the runtime abort the process when it fails
 * to create the threads.  Results never depend on the team size. */
inline int rc_thread_ceiling() {
#ifdef _OPENMP
  int c = omp_get_num_procs();
  const int m = omp_get_max_threads();
  if (m > c) c = m;
  int ceil_ = c > 16 ? 4 * c : 64;
  const int lim = omp_get_thread_limit();
  if (lim > 0 && lim < ceil_) ceil_ = lim;
  return ceil_ < 1 ? 1 : ceil_;
#else
  return 1;
#endif
}

/* Team size for `items` independent items. */
inline int rc_threads(int requested, rc_index items) {
  int n = requested < 1 ? 1 : requested;
  const int top = rc_thread_ceiling();
  if (n > top) n = top;
  if (items < n) n = static_cast<int>(items < 1 ? 1 : items);
  return n;
}

/* Estimated cost of one chunk per thread, in bilinear samples x channels (or
 * pool cells x channels) for the scalar kernels and in vector operations for
 * the vectorised ones (v_width): about 0.1 s, so Ctrl-C is honoured within a
 * fraction of a second while a typical call runs in one chunk. */
#define RC_CHUNK_WORK 1.0e8
inline double* rc_chunk_work_slot() {
  static double w = RC_CHUNK_WORK;
  return &w;
}

/* Testing: set the chunk cost (<= 0: the default); returns the old one. */
inline double rc_set_chunk_work(double w) {
  const double old = *rc_chunk_work_slot();
  *rc_chunk_work_slot() = w > 0 ? w : RC_CHUNK_WORK;
  return old;
}

/* End of the chunk of items starting at i0: items are added until their
 * cost reaches nt chunk budgets (at least one item). */
template <typename CostF>
inline rc_index rc_chunk_end(rc_index i0, rc_index items, int nt,
                             const CostF& cost) {
  const double budget = *rc_chunk_work_slot() * (nt < 1 ? 1 : nt);
  double acc = 0;
  rc_index i = i0;
  while (i < items) {
    acc += cost(i) + 1.0;
    ++i;
    if (acc >= budget) break;
  }
  return i;
}

/* Whether the caller asked to stop (runs the check on the calling thread,
 * outside any parallel region). */
inline bool rc_interrupted(const Geom& g) {
  return g.check != nullptr && g.check(g.check_ctx) != 0;
}

/* Channel block: enough items for load balance, large enough that the
 * per-RoI tables are amortised.  The results never depend on it. */
inline rc_index rc_channel_block(rc_index C, rc_index outer, int nthreads) {
  rc_index want = static_cast<rc_index>(nthreads) * 8;
  rc_index blocks = outer >= want ? 1 : (want + outer - 1) / outer;
  rc_index cb = (C + blocks - 1) / blocks;
  if (cb < 8) cb = C < 8 ? C : 8;
  if (cb > 256) cb = 256;
  return cb < 1 ? 1 : cb;
}

/* rc_channel_block, small enough that one item (its channels times the
 * costliest RoI, cost per channel) stays within a chunk's budget, so every
 * item is short enough to wait for after Ctrl-C. */
inline rc_index rc_channel_block_for(rc_index C, rc_index outer, int nthreads,
                                     const double* cost, rc_index K) {
  rc_index cb = rc_channel_block(C, outer, nthreads);
  double top = 1;
  for (rc_index k = 0; k < K; ++k)
    if (cost[k] > top) top = cost[k];
  const double fit = *rc_chunk_work_slot() / top;
  if (fit < static_cast<double>(cb))
    cb = fit < 1 ? 1 : static_cast<rc_index>(fit);
  return cb;
}

/* Batch index of RoI k, -1 when out of [0, N) (validated in Python; the
 * kernels never read out of bounds).  From the exact int64 array, never from
 * the rois cast to the compute dtype (float32 holds integers exactly only up
 * to 2^24). */
inline rc_index rc_batch(const Geom& g, rc_index k) {
  return rc_batch_index(g.batch, k, g.N);
}
}  // namespace roicore

#endif  // ROICORE_CPU_GEOMETRY_H_
