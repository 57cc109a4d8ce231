/* roicore CPU kernels: RoI Pool with stored winners on the crop path
 * (cpu/crop.h).  pool_forward_indices (cpu/pool_indices.h) reads an NHWC
 * map, so an NCHW call first transposes the whole map; with a few RoIs,
 * transposing only each RoI's window costs a fraction of that. */
#ifndef ROICORE_CPU_CROP_ENTRY_H_
#define ROICORE_CPU_CROP_ENTRY_H_

#include "roicore/cpu/driver.h"

namespace roicore {

/* Returned when the crop path does not pay (or the map is NHWC): the caller
 * then runs pool_forward_indices on the transposed map. */
enum { RC_CROP_NOT_TAKEN = -1 };

/* The forward of RoI Pool with its winners (as pool_forward_indices) for an
 * NCHW map `in`, when the crop path pays by v_pack_pays' cost model (or the
 * pack policy is 3); else RC_CROP_NOT_TAKEN, nothing written. */
template <typename T>
int pool_forward_indices_crop(const T* in, const T* rois, T* out, void* idx,
                              int idx_bytes, const Geom& g, T scale, int bins,
                              int nthreads) {
  const int isa = rc_isa_for<T>(g);
  if (g.channels_last || isa == RC_ISA_REFERENCE) return RC_CROP_NOT_TAKEN;
  double* cost = pool_cost_array<T>(bins, rois, scale, g, 0);
  if (!cost) return RC_ERR_NOMEM;
  rc_index area;
  if (!crop_chosen<T>(RC_V_PFWD, rois, scale, g, SampledParams(), bins, 0, 0,
                      v_work(cost, g.K), isa, nthreads, *rc_pack_policy_slot(),
                      &area)) {
    std::free(cost);
    return RC_CROP_NOT_TAKEN;
  }
  VJob<T> j = v_job<T>(g, scale, in, rois, out);
  j.bins = bins;
  j.cost = cost;
  const int err =
      crop_forward<T>(j, RC_V_PFWD, nthreads, isa, area, idx, idx_bytes);
  std::free(cost);
  return err;
}

}  // namespace roicore

#endif  // ROICORE_CPU_CROP_ENTRY_H_
