/* roicore CPU kernels: Channel lanes: lane widths, the job and scratch of the vectorised kernels.
 */
#ifndef ROICORE_CPU_LANES_H_
#define ROICORE_CPU_LANES_H_

#include "roicore/cpu/transpose.h"

namespace roicore {
/* Lanes per channel block: 256 bytes with AVX-512 (32 registers), else 128. */
inline int rc_lane_bytes(int isa) { return isa >= RC_ISA_AVX512 ? 256 : 128; }

template <typename T>
inline rc_index v_lanes(int isa) {
  return static_cast<rc_index>(rc_lane_bytes(isa) / sizeof(T));
}

/* Vector operations per sample of a channel block of L lanes (chunk costs). */
template <typename T>
inline double v_width(int isa, rc_index L) {
  const double vbytes = isa >= RC_ISA_AVX512 ? 64.0
                        : isa == RC_ISA_AVX2  ? 32.0
                                              : 16.0;
  return static_cast<double>(L) * sizeof(T) / vbytes;
}

/* x / d == x * (1 / d) exactly (both are the correctly rounded x / d) when
 * d is a power of two, so the kernels multiply by *inv instead of dividing. */
template <typename T>
inline bool rc_pow2_recip(rc_index d, T* inv) {
  if (d < 1 || (d & (d - 1)) != 0 || d > (static_cast<rc_index>(1) << 60))
    return false;
  *inv = (T)1 / static_cast<T>(d);
  return true;
}

/* Everything an item kernel reads. */
template <typename T>
struct VJob {
  Geom g;
  T scale;
  SampledParams sp;
  int bins;                  /* RoI Pool bin rule */
  const T* in;               /* NHWC input, or the packed NCHW input (fwd) */
  const T* grad_out;
  const T* rois;
  const rc_index* order;
  const rc_index* batch_start;
  T* out;                    /* forward output, or grad_input */
  rc_index L;                /* lanes per channel block */
  int packed;                /* forward: `in` is the packed copy */
  rc_index group;            /* forward item order: groups of `group` RoIs,
                                block-major within a group */
  int stream;                /* forward: stream the output (large) */
  int whole_roi;             /* forward: items are whole RoIs (NHWC stream) */
  rc_index nb;               /* channel blocks */
  rc_index bsn, bsb, sy, sx; /* lane view of `in`: (n, b, y, x) at
                                n*bsn + b*bsb + y*sy + x*sx */
  rc_index ny, nx;           /* sample table lengths */
  const double* cost;        /* forward: per-RoI cost per channel */
  const SampleTab<T>* tabs;  /* forward: every RoI's sample tables (y, x)
                                when shared by its blocks, else null */
  const RcSegs* seg;         /* backward: RoI segments ... */
  rc_index round;            /* ... and the round being run */
  rc_index nband, brows;     /* backward: row bands of brows rows (band b:
                                rows b*brows .. min(H, (b+1)*brows)) */
  int team;                  /* backward: most threads (band tiles' memory) */
  const rc_index* roi_rows;  /* backward with bands: rows [first, last] each
                                RoI can scatter to (2 per RoI) */
  const T* pin;              /* backward with bands, max / pool: the input
                                packed once, [N][nb][H][W][L] */
};

/* Per-thread scratch. */
template <typename T>
struct VScratch {
  SampleTab<T> ty, tx;
  rc_index* ptab;            /* pool: hlo[PH] hhi[PH] wlo[PW] whi[PW] */
  T* tile;                   /* [PH*PW][L]: forward result / grad_out */
  T* stage;                  /* [PH*PW][L]: forward output staging */
  T* rstage;                 /* [PH*PW][C]: whole-RoI NHWC staging */
  T* gtile;                  /* [H*W][L]: NCHW backward accumulator */
  T* itile;                  /* [H*W][L]: NCHW backward packed input */
  rc_index *sylo, *syhi;     /* backward: scatter row offsets (ny each) */
  unsigned char* bon;        /* backward: bin rows reaching the band (PH) */
  unsigned char* yok;        /* backward: sample rows reaching it (ny) */
};
}  // namespace roicore

#endif  // ROICORE_CPU_LANES_H_
