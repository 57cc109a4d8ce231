/* roicore CPU kernels: RoI Pool and the sampled ops (RoI Align, RoI Warp,
 * MNC RoI Warp), forward and backward, NCHW and NHWC, OpenMP-parallel.
 *
 * Work decomposition
 *  - forward:  items are (RoI, channel block); each item builds the RoI's
 *    per-axis tables (bin bounds or sample positions and bilinear weights)
 *    once and reuses them for every channel of the block.  Every output
 *    element is computed by one thread in a fixed order, so results do not
 *    depend on the thread count.
 *  - backward: items are (image, channel block); each item walks the RoIs of
 *    its image in their original order and scatters into its own slice of
 *    grad_input.  No two threads write the same element and the summation
 *    order is fixed, so gradients are bit-identical for any thread count
 *    (no atomics, no per-thread partials).
 *
 * Two implementations share these rules: the scalar *_reference kernels
 * (one channel at a time; the definition of the results) and the vectorised
 * kernels (channel lanes, runtime ISA dispatch),
 * which the entry points sampled_forward / sampled_backward / pool_forward /
 * pool_backward use and which are bit-identical to the reference.
 *
 * Interruptible: every parallel loop runs its items in chunks of bounded
 * estimated cost (rc_chunk_end); between chunks the calling thread runs
 * Geom::check (from _cpu.pyx: PyErr_CheckSignals with the GIL) and the call
 * stops when it says so.  Items are independent, so the chunking never
 * changes a result.
 *
 * Error codes: 0 ok, 1 out of memory, 2 sampling cost above a limit
 * (roi_common.h), 3 interrupted by Geom::check.
 *
 * Where things are (src/include/roicore/cpu/):
 *   geometry.h           Geom, strides, threads, interruptible chunks, batch
 *   tables.h             per-RoI sample / bin tables, sampling-cost check
 *   reference_sampled.h  RoI Align / Warp / MNC warp, scalar (specification)
 *   reference_pool.h     RoI Pool, scalar (specification)
 *   isa.h                instruction-set detection and the ISA cap
 *   memory.h             allocation, streaming stores, pre-faulting
 *   transpose.h          lane tile <-> NCHW plane transposes
 *   lanes.h              lane widths, job and scratch of the lane kernels
 *   lanes_sampled.h      RoI Align / Warp / MNC warp lane kernels
 *   lanes_pool.h         RoI Pool lane kernels
 *   items.h              forward / backward work items, NCHW packing
 *   isa_entry.h          sampled_forward_avx2 ...: named per-ISA entry points
 *   crop.h               NCHW forward of a few RoIs: only each RoI's window
 *   crop_entry.h         ... and RoI Pool's stored winners on that path
 *   driver.h             cost model, parallel loops, entry points
 *   pool_indices.h       RoI Pool with stored winners (return_indices / indices=)
 *   sampled_indices.h    max-mode RoI Align / Warp with stored winners
 *   output_cache.h       recycled memory for large fresh outputs
 * The per-element maths shared with the CUDA kernels is in roi_common.h.
 */
#ifndef ROICORE_ROI_CPU_H_
#define ROICORE_ROI_CPU_H_

#include "roicore/cpu/driver.h"
#include "roicore/cpu/pool_indices.h"
#include "roicore/cpu/crop_entry.h"
#include "roicore/cpu/sampled_indices.h"
#include "roicore/cpu/output_cache.h"

#endif  // ROICORE_ROI_CPU_H_
