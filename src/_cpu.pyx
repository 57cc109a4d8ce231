# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# distutils: language = c++
"""CPU backend of roicore: thin wrappers over the OpenMP C++ kernels.

The public functions in :mod:`roicore._api` validate and normalise every
argument; these wrappers only read shapes and pointers and release the GIL.
Inputs must be C-contiguous, aligned arrays of one float dtype (float32 or
float64); ``batch`` is the exact int64 batch index of each RoI.

The kernels run their work in chunks of bounded cost and call back here
between chunks (on the calling thread); the callback takes the GIL and runs
``PyErr_CheckSignals``, so Ctrl-C interrupts a long call with
KeyboardInterrupt (error 3 from the kernel, the exception re-raised here).
"""
from cpython.exc cimport PyErr_CheckSignals
from cython cimport floating
from libc.stdlib cimport free
from libcpp cimport bool as cbool

cimport numpy as cnp
import numpy as np

from _omp cimport ROICORE_OPENMP, rc_omp_get_max_threads

cnp.import_array()

cdef extern from "roicore/roi_common.h":
    # limits (macros of roi_common.h, shared with the CUDA kernels)
    long long RC_BIN_SAMPLE_LIMIT
    long long RC_SIDE_SAMPLE_LIMIT
    long long RC_ROI_SAMPLE_LIMIT
    double RC_CALL_SAMPLE_LIMIT
    double RC_GRID_CAP
    double RC_COORD_LIMIT
    int RC_CSR_THREADS

cdef extern from "roicore/roi_cpu.h" namespace "roicore":
    ctypedef long long rc_index
    enum:
        RC_OK
        RC_ERR_NOMEM
        RC_ERR_COST
        RC_ERR_INTERRUPTED
        RC_ERR_INDICES
        RC_CROP_NOT_TAKEN
        RC_ALIGN
        RC_WARP
        RC_MNC
        RC_BINS_FAST_RCNN
        RC_BINS_EQUAL
        RC_ISA_REFERENCE
        RC_ISA_BASELINE
        RC_ISA_AVX2
        RC_ISA_AVX512
    ctypedef int (*rc_check_fn)(void*) noexcept nogil

    cdef cppclass Geom:
        rc_index N, C, H, W, K, PH, PW
        cbool channels_last
        const rc_index* batch
        rc_check_fn check
        void* check_ctx

    cdef cppclass SampledParams:
        int kind
        cbool aligned
        cbool max_mode
        int sampling_ratio

    int sampled_forward[T](const T* inp, const T* rois, T* out, const Geom& g,
                           T scale, SampledParams sp, int nthreads) nogil
    int sampled_backward[T](const T* grad_out, const T* inp, const T* rois,
                            const rc_index* order, const rc_index* batch_start,
                            T* grad_in, const Geom& g, T scale, SampledParams sp,
                            int nthreads) nogil
    int pool_forward[T](const T* inp, const T* rois, T* out, const Geom& g,
                        T scale, int bins, int nthreads) nogil
    int pool_backward[T](const T* grad_out, const T* inp, const T* rois,
                         const rc_index* order, const rc_index* batch_start,
                         T* grad_in, const Geom& g, T scale, int bins,
                         int nthreads) nogil
    int pool_forward_indices[T](const T* inp, const T* rois, T* out, void* idx,
                                int idx_bytes, const Geom& g, T scale, int bins,
                                int nthreads) nogil
    int pool_forward_indices_crop[T](const T* inp, const T* rois, T* out, void* idx,
                                     int idx_bytes, const Geom& g, T scale, int bins,
                                     int nthreads) nogil
    int pool_backward_indices[T](const T* grad_out, const void* idx, int idx_bytes,
                                 const rc_index* order, const rc_index* batch_start,
                                 T* grad_in, const Geom& g, int nthreads) nogil

    int sampled_forward_indices[T](const T* inp, const T* rois, T* out, int* idx,
                                   const Geom& g, T scale, SampledParams sp,
                                   int nthreads) nogil
    int sampled_backward_indices[T](const T* grad_out, const int* idx, const T* rois,
                                    const rc_index* order, const rc_index* batch_start,
                                    T* grad_in, const Geom& g, T scale, SampledParams sp,
                                    int nthreads) nogil

    void sampled_cost[T](const T* rois, const Geom& g, T scale, SampledParams sp,
                         double* max_bin, rc_index* bin_roi, double* max_side,
                         rc_index* side_roi, double* max_roi, rc_index* roi_roi,
                         double* total) nogil

    void rc_pool_bin[T](int bins, rc_index start, rc_index end, rc_index p, rc_index P,
                        rc_index size, rc_index* lo, rc_index* hi) nogil
    T rc_round[T](T v) nogil
    void rc_sample_axis[T](int kind, T c1, T c2, T scale, cbool aligned, rc_index P,
                           int sampling_ratio, T* start, T* bin, rc_index* grid) nogil
    T rc_sample_coord[T](int kind, T start, T bin, rc_index p, rc_index i,
                         rc_index grid) nogil
    cbool rc_sample[T](int kind, T start, T bin, rc_index p, rc_index i, rc_index grid,
                       rc_index size, rc_index* lo, rc_index* hi, T* wl, T* wh) nogil

    int rc_thread_ceiling() nogil
    double rc_set_chunk_work(double w) nogil
    int rc_isa() nogil
    int rc_set_isa(int isa) nogil
    int rc_isa_supported() nogil
    int rc_set_pack_policy(int policy) nogil

# --- constants shared by C++, CUDA and Python: defined once in roi_common.h /
# cpu/isa.h, read by the Python side from here.
#: Error codes of the kernels (cpu/geometry.h RC_ERR_*).
ERR_NOMEM = RC_ERR_NOMEM
ERR_COST = RC_ERR_COST
ERR_INTERRUPTED = RC_ERR_INTERRUPTED
ERR_INDICES = RC_ERR_INDICES
#: pool_fwd_indices_crop: the crop path does not pay (cpu/crop_entry.h).
CROP_NOT_TAKEN = RC_CROP_NOT_TAKEN
#: Kinds of sampled op (roi_common.h RC_ALIGN / RC_WARP / RC_MNC).
KIND_ALIGN = RC_ALIGN
KIND_WARP = RC_WARP
KIND_MNC = RC_MNC
#: RoI Pool bin rules (roi_common.h RC_BINS_*).
BINS_FAST_RCNN = RC_BINS_FAST_RCNN
BINS_EQUAL = RC_BINS_EQUAL
#: Sampling-cost limits (roi_common.h RC_*_SAMPLE_LIMIT).
BIN_SAMPLE_LIMIT = RC_BIN_SAMPLE_LIMIT
SIDE_SAMPLE_LIMIT = RC_SIDE_SAMPLE_LIMIT
ROI_SAMPLE_LIMIT = RC_ROI_SAMPLE_LIMIT
CALL_SAMPLE_LIMIT = int(RC_CALL_SAMPLE_LIMIT)
#: Adaptive-grid cap and coordinate clamp (roi_common.h RC_GRID_CAP, RC_COORD_LIMIT).
GRID_CAP = RC_GRID_CAP
COORD_LIMIT = RC_COORD_LIMIT
#: Block size the CUDA kernel rc_roi_csr needs (roi_common.h RC_CSR_THREADS).
CSR_BLOCK = RC_CSR_THREADS
#: Instruction sets of the CPU kernels, indexed by cpu/isa.h's RC_ISA_*.
ISA_NAMES = tuple(name for _, name in sorted({
    RC_ISA_REFERENCE: "reference", RC_ISA_BASELINE: "baseline",
    RC_ISA_AVX2: "avx2", RC_ISA_AVX512: "avx512"}.items()))


def openmp_enabled():
    """Whether this build was compiled with OpenMP."""
    return bool(ROICORE_OPENMP)


def max_threads():
    """OpenMP's default team size (honours OMP_NUM_THREADS, threadpoolctl)."""
    return rc_omp_get_max_threads()


def cpu_isa():
    """Instruction set the kernels use now: 'avx512', 'avx2', 'baseline' (any
    x86-64 / other CPUs) or 'reference' (the scalar kernels)."""
    return ISA_NAMES[rc_isa()]


def cpu_isa_supported():
    """Best instruction set this CPU runs."""
    return ISA_NAMES[rc_isa_supported()]


def set_cpu_isa(name):
    """Use instruction set ``name`` (capped at what the CPU supports; 'auto':
    the best).  Results never depend on it.  Returns the one in use."""
    if name == "auto":
        return ISA_NAMES[rc_set_isa(-1)]
    if name not in ISA_NAMES:
        raise ValueError(f"unknown instruction set {name!r}; choose from "
                         f"{', '.join(ISA_NAMES)} or 'auto'")
    return ISA_NAMES[rc_set_isa(ISA_NAMES.index(name))]


def _set_pack_policy(int policy):
    """Testing: 0 choose by cost, 1 always pack the input (the vectorised
    kernels for every NCHW call), 2 never (NHWC in place, NCHW reference),
    3 NCHW forwards on the crop path (the window each RoI reads, transposed per
    item; cpu/crop.h), everything else as 2."""
    return rc_set_pack_policy(policy)


def _set_chunk_work(double work):
    """Testing: estimated cost of one chunk of work per thread (<= 0: the
    default).  Results never depend on it.  Returns the previous value."""
    return rc_set_chunk_work(work)


def thread_ceiling():
    """Largest team the kernels start (larger requests are clamped to it)."""
    return rc_thread_ceiling()


cdef int _check_signals(void* ctx) noexcept nogil:
    # Between chunks, on the calling thread: run Python's signal handlers.
    # An exception (KeyboardInterrupt) is kept in ctx (a list) and re-raised
    # by the wrapper once the kernel has stopped.
    with gil:
        try:
            PyErr_CheckSignals()
        except BaseException as e:
            (<object>ctx).append(e)
            return 1
    return 0


cdef _finish(int err, list box):
    if err == RC_ERR_INTERRUPTED and box:
        raise box[0]
    return err  # 0 or an error code for roicore._cpu_backend


cdef Geom _geom(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray out,
                cnp.ndarray batch, bint channels_last, list box):
    cdef Geom g
    if batch.shape[0] != rois.shape[0] or batch.dtype.itemsize != 8:
        raise ValueError("batch must be an int64 array with one entry per RoI")
    g.batch = <const rc_index*>cnp.PyArray_DATA(batch)
    g.check = _check_signals
    g.check_ctx = <void*>box
    g.channels_last = channels_last
    g.N = inp.shape[0]
    if channels_last:
        g.H = inp.shape[1]
        g.W = inp.shape[2]
        g.C = inp.shape[3]
        g.PH = out.shape[1]
        g.PW = out.shape[2]
    else:
        g.C = inp.shape[1]
        g.H = inp.shape[2]
        g.W = inp.shape[3]
        g.PH = out.shape[2]
        g.PW = out.shape[3]
    g.K = rois.shape[0]
    return g


cdef SampledParams _params(int kind, bint aligned, bint max_mode, int sampling_ratio):
    cdef SampledParams sp
    sp.kind = kind
    sp.aligned = aligned
    sp.max_mode = max_mode
    sp.sampling_ratio = sampling_ratio
    return sp


# --- the kernels' per-axis geometry, for explanations (float32, as the seed map)

def pool_axis_bins(double c1, double c2, double scale, rc_index P, rc_index size, int bins):
    """RoI Pool bins of one axis as the kernels compute them in float32: the
    rounded, scaled RoI ends (roi_common.h rc_round) and each bin's clamped
    ``[lo, hi)`` (rc_pool_bin)."""
    cdef rc_index start = <rc_index>rc_round[float](<float>c1 * <float>scale)
    cdef rc_index end = <rc_index>rc_round[float](<float>c2 * <float>scale)
    cdef rc_index lo, hi, p
    out = []
    for p in range(P):
        rc_pool_bin[float](bins, start, end, p, P, size, &lo, &hi)
        out.append((lo, hi))
    return start, end, out


def sample_axis(int kind, double c1, double c2, double scale, bint aligned, rc_index P,
                int sampling_ratio, rc_index size):
    """One axis of a sampled op as the kernels compute it in float32: (start,
    bin size, samples per bin, [(coordinate, in range) of sample i of bin p at
    p * grid + i]) (roi_common.h rc_sample_axis / rc_sample_coord / rc_sample)."""
    cdef float start, bin_, wl, wh
    cdef rc_index grid, p, i, lo, hi
    rc_sample_axis[float](kind, <float>c1, <float>c2, <float>scale, aligned, P,
                          sampling_ratio, &start, &bin_, &grid)
    coords = []
    for p in range(P):
        for i in range(grid):
            ok = rc_sample[float](kind, start, bin_, p, i, grid, size, &lo, &hi, &wl, &wh)
            coords.append((rc_sample_coord[float](kind, start, bin_, p, i, grid), bool(ok)))
    return start, bin_, grid, coords


# --- one generic path per kernel (fused over float / double: `scale` picks T)

cdef void _cost(const floating* rois, const Geom& g, floating scale, SampledParams sp,
                double* out, rc_index* roi) noexcept nogil:
    sampled_cost(rois, g, scale, sp, &out[0], &roi[0], &out[1], &roi[1], &out[2], &roi[2],
                 &out[3])


cdef int _sfwd(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray out, const Geom& g,
               floating scale, SampledParams sp, int nthreads):
    cdef const floating* x = <const floating*>cnp.PyArray_DATA(inp)
    cdef const floating* r = <const floating*>cnp.PyArray_DATA(rois)
    cdef floating* y = <floating*>cnp.PyArray_DATA(out)
    with nogil:
        return sampled_forward(x, r, y, g, scale, sp, nthreads)


cdef int _sbwd(cnp.ndarray grad_out, cnp.ndarray inp, cnp.ndarray rois, const rc_index* o,
               const rc_index* bs, cnp.ndarray grad_in, const Geom& g, floating scale,
               SampledParams sp, int nthreads):
    cdef const floating* go = <const floating*>cnp.PyArray_DATA(grad_out)
    cdef const floating* x = <const floating*>cnp.PyArray_DATA(inp)
    cdef const floating* r = <const floating*>cnp.PyArray_DATA(rois)
    cdef floating* gi = <floating*>cnp.PyArray_DATA(grad_in)
    with nogil:
        return sampled_backward(go, x, r, o, bs, gi, g, scale, sp, nthreads)


cdef int _pfwd(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray out, const Geom& g,
               floating scale, int bins, int nthreads):
    cdef const floating* x = <const floating*>cnp.PyArray_DATA(inp)
    cdef const floating* r = <const floating*>cnp.PyArray_DATA(rois)
    cdef floating* y = <floating*>cnp.PyArray_DATA(out)
    with nogil:
        return pool_forward(x, r, y, g, scale, bins, nthreads)


cdef int _pbwd(cnp.ndarray grad_out, cnp.ndarray inp, cnp.ndarray rois, const rc_index* o,
               const rc_index* bs, cnp.ndarray grad_in, const Geom& g, floating scale,
               int bins, int nthreads):
    cdef const floating* go = <const floating*>cnp.PyArray_DATA(grad_out)
    cdef const floating* x = <const floating*>cnp.PyArray_DATA(inp)
    cdef const floating* r = <const floating*>cnp.PyArray_DATA(rois)
    cdef floating* gi = <floating*>cnp.PyArray_DATA(grad_in)
    with nogil:
        return pool_backward(go, x, r, o, bs, gi, g, scale, bins, nthreads)


cdef int _pfwd_idx(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray out, cnp.ndarray idx,
                   const Geom& g, floating scale, int bins, int nthreads, bint crop=False):
    """RoI Pool's forward with winners: the NHWC-map kernels, or with ``crop`` the
    NCHW crop path (RC_CROP_NOT_TAKEN where it does not pay)."""
    cdef const floating* x = <const floating*>cnp.PyArray_DATA(inp)
    cdef const floating* r = <const floating*>cnp.PyArray_DATA(rois)
    cdef floating* y = <floating*>cnp.PyArray_DATA(out)
    cdef void* a = cnp.PyArray_DATA(idx)
    cdef int ib = idx.dtype.itemsize
    with nogil:
        if crop:
            return pool_forward_indices_crop(x, r, y, a, ib, g, scale, bins, nthreads)
        return pool_forward_indices(x, r, y, a, ib, g, scale, bins, nthreads)


cdef int _pbwd_idx(cnp.ndarray grad_out, cnp.ndarray idx, const rc_index* o,
                   const rc_index* bs, cnp.ndarray grad_in, const Geom& g,
                   floating scale, int nthreads):
    cdef const floating* go = <const floating*>cnp.PyArray_DATA(grad_out)
    cdef const void* a = cnp.PyArray_DATA(idx)
    cdef int ib = idx.dtype.itemsize
    cdef floating* gi = <floating*>cnp.PyArray_DATA(grad_in)
    with nogil:
        return pool_backward_indices(go, a, ib, o, bs, gi, g, nthreads)


cdef tuple _sampled_cost(cnp.ndarray rois, const Geom& g, int kind, bint aligned,
                         int sampling_ratio, double scale):
    cdef SampledParams sp = _params(kind, aligned, False, sampling_ratio)
    cdef double c[4]
    cdef rc_index k[3]
    c[0] = c[1] = c[2] = c[3] = 0
    k[0] = k[1] = k[2] = -1
    if rois.dtype.itemsize == 4:
        _cost(<const float*>cnp.PyArray_DATA(rois), g, <float>scale, sp, c, k)
    else:
        _cost(<const double*>cnp.PyArray_DATA(rois), g, scale, sp, c, k)
    return c[0], k[0], c[1], k[1], c[2], k[2], c[3]


def sampled_cost_of(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch, cnp.ndarray out,
                    int kind, bint aligned, int sampling_ratio, double scale,
                    bint channels_last):
    """(max samples per bin, its RoI, max samples along a RoI side, its RoI,
    max samples per RoI, its RoI, samples of the call x C), with the kernels'
    own arithmetic."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, out, batch, channels_last, box)
    return _sampled_cost(rois, g, kind, aligned, sampling_ratio, scale)


def sampled_cost_for(cnp.ndarray rois, rc_index C, rc_index PH, rc_index PW, int kind,
                     bint aligned, int sampling_ratio, double scale):
    """:func:`sampled_cost_of` from shapes alone: ``rois`` is a C-contiguous
    (K, 5) float32/float64 host array already in the compute dtype (the GPU
    backend's RoI check runs the kernels' own arithmetic through this)."""
    if (rois.ndim != 2 or rois.shape[1] != 5 or not rois.flags.c_contiguous
            or rois.dtype.kind != "f" or rois.dtype.itemsize not in (4, 8)):
        raise ValueError("rois must be a C-contiguous (K, 5) float32 or float64 array")
    cdef Geom g
    g.N = g.H = g.W = 0
    g.C = C
    g.K = rois.shape[0]
    g.PH = PH
    g.PW = PW
    g.channels_last = False
    g.batch = NULL
    g.check = NULL
    g.check_ctx = NULL
    return _sampled_cost(rois, g, kind, aligned, sampling_ratio, scale)


def sampled_fwd(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch, cnp.ndarray out,
                int kind, bint aligned, bint max_mode, int sampling_ratio, double scale,
                bint channels_last, int nthreads):
    """Forward of RoI Align / RoI Warp / MNC RoI Warp into ``out``."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, out, batch, channels_last, box)
    cdef SampledParams sp = _params(kind, aligned, max_mode, sampling_ratio)
    if inp.dtype.itemsize == 4:
        return _finish(_sfwd(inp, rois, out, g, <float>scale, sp, nthreads), box)
    return _finish(_sfwd(inp, rois, out, g, scale, sp, nthreads), box)


def sampled_bwd(cnp.ndarray grad_out, cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch,
                cnp.ndarray order, cnp.ndarray batch_start, cnp.ndarray grad_in,
                int kind, bint aligned, bint max_mode, int sampling_ratio,
                double scale, bint channels_last, int nthreads):
    """Backward of the sampled ops, accumulated into zeroed ``grad_in``."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, grad_out, batch, channels_last, box)
    cdef SampledParams sp = _params(kind, aligned, max_mode, sampling_ratio)
    cdef const rc_index* o = <const rc_index*>cnp.PyArray_DATA(order)
    cdef const rc_index* bs = <const rc_index*>cnp.PyArray_DATA(batch_start)
    if inp.dtype.itemsize == 4:
        return _finish(_sbwd(grad_out, inp, rois, o, bs, grad_in, g, <float>scale, sp,
                             nthreads), box)
    return _finish(_sbwd(grad_out, inp, rois, o, bs, grad_in, g, scale, sp, nthreads), box)


def pool_fwd(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch, cnp.ndarray out,
             int bins, double scale, bint channels_last, int nthreads):
    """Forward of RoI Pool into ``out``."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, out, batch, channels_last, box)
    if inp.dtype.itemsize == 4:
        return _finish(_pfwd(inp, rois, out, g, <float>scale, bins, nthreads), box)
    return _finish(_pfwd(inp, rois, out, g, scale, bins, nthreads), box)


def pool_bwd(cnp.ndarray grad_out, cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch,
             cnp.ndarray order, cnp.ndarray batch_start, cnp.ndarray grad_in,
             int bins, double scale, bint channels_last, int nthreads):
    """Backward of RoI Pool, accumulated into zeroed ``grad_in``."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, grad_out, batch, channels_last, box)
    cdef const rc_index* o = <const rc_index*>cnp.PyArray_DATA(order)
    cdef const rc_index* bs = <const rc_index*>cnp.PyArray_DATA(batch_start)
    if inp.dtype.itemsize == 4:
        return _finish(_pbwd(grad_out, inp, rois, o, bs, grad_in, g, <float>scale, bins,
                             nthreads), box)
    return _finish(_pbwd(grad_out, inp, rois, o, bs, grad_in, g, scale, bins, nthreads), box)


cdef _check_nhwc(cnp.ndarray nhwc, cnp.ndarray inp, const Geom& g):
    """``nhwc`` is ``inp``'s map as a C-contiguous NHWC array (the stored-winner kernels)."""
    if (nhwc.ndim != 4 or not nhwc.flags.c_contiguous or nhwc.dtype != inp.dtype
            or nhwc.shape[0] != g.N or nhwc.shape[1] != g.H or nhwc.shape[2] != g.W
            or nhwc.shape[3] != g.C):
        raise ValueError("nhwc must be the input map as a C-contiguous NHWC array")


def pool_fwd_indices(cnp.ndarray nhwc, cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch,
                     cnp.ndarray out, cnp.ndarray indices, int bins, double scale,
                     bint channels_last, int nthreads):
    """Forward of RoI Pool into ``out``, each element's winner (y * W + x, or
    -1) into ``indices`` (C-contiguous int32 or int64, ``out``'s shape).  The
    kernel reads ``nhwc``, the map ``inp`` (of layout ``channels_last``) as a
    C-contiguous NHWC array."""
    _check_indices_array(indices, out)
    cdef list box = []
    cdef Geom g = _geom(inp, rois, out, batch, channels_last, box)
    _check_nhwc(nhwc, inp, g)
    if inp.dtype.itemsize == 4:
        return _finish(_pfwd_idx(nhwc, rois, out, indices, g, <float>scale, bins, nthreads),
                       box)
    return _finish(_pfwd_idx(nhwc, rois, out, indices, g, scale, bins, nthreads), box)


def pool_fwd_indices_crop(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch,
                          cnp.ndarray out, cnp.ndarray indices, int bins, double scale,
                          int nthreads):
    """:func:`pool_fwd_indices` for an NCHW map with a few RoIs, reading only
    each RoI's window (no NHWC copy of the map); ``CROP_NOT_TAKEN`` (nothing
    written) when that does not pay: then transpose and call
    :func:`pool_fwd_indices`."""
    _check_indices_array(indices, out)
    cdef list box = []
    cdef Geom g = _geom(inp, rois, out, batch, False, box)
    if inp.dtype.itemsize == 4:
        return _finish(_pfwd_idx(inp, rois, out, indices, g, <float>scale, bins, nthreads,
                                 True), box)
    return _finish(_pfwd_idx(inp, rois, out, indices, g, scale, bins, nthreads, True), box)


def pool_bwd_indices(cnp.ndarray grad_out, cnp.ndarray indices, cnp.ndarray inp,
                     cnp.ndarray rois, cnp.ndarray batch, cnp.ndarray order,
                     cnp.ndarray batch_start, cnp.ndarray grad_in, bint channels_last,
                     int nthreads):
    """Backward of RoI Pool from stored winners (C-contiguous int32 or int64
    ``indices`` of ``grad_out``'s shape; values outside [-1, H*W) are skipped
    and reported as ERR_INDICES), accumulated into zeroed ``grad_in``."""
    _check_indices_array(indices, grad_out)
    cdef list box = []
    cdef Geom g = _geom(inp, rois, grad_out, batch, channels_last, box)
    cdef const rc_index* o = <const rc_index*>cnp.PyArray_DATA(order)
    cdef const rc_index* bs = <const rc_index*>cnp.PyArray_DATA(batch_start)
    if grad_out.dtype.itemsize == 4:
        return _finish(_pbwd_idx(grad_out, indices, o, bs, grad_in, g, <float>0,
                                 nthreads), box)
    return _finish(_pbwd_idx(grad_out, indices, o, bs, grad_in, g, <double>0, nthreads),
                   box)


def _check_indices_array(cnp.ndarray indices, cnp.ndarray like):
    if (indices.dtype.kind != "i" or indices.dtype.itemsize not in (4, 8)
            or not indices.flags.c_contiguous or indices.size != like.size):
        raise ValueError("indices must be a C-contiguous int32 or int64 array of the "
                         "output's size")


# --- backward items and row bands (issue 14): the report of roicore._backends.cpu
# .backward_items and the band-count test hook.
cdef extern from "roicore/roi_cpu.h" namespace "roicore":
    rc_index rc_set_backward_bands(rc_index n) nogil
    rc_index backward_items[T](cbool pool, const T* rois, const rc_index* order,
                               const rc_index* batch_start, const Geom& g, T scale,
                               SampledParams sp, int bins, int nthreads, double** costs,
                               rc_index* info) nogil


def set_backward_bands(rc_index bands):
    """Testing: force ``bands`` row bands on the packed backward (0: chosen from
    the work; more than the map's rows gives empty items).  Results never depend
    on it.  Returns the previous value."""
    return rc_set_backward_bands(bands)


cdef tuple _items(cbool pool, cnp.ndarray rois, const rc_index* o, const rc_index* bs,
                  const Geom& g, double scale, SampledParams sp, int bins, int nthreads):
    cdef double* costs = NULL
    cdef rc_index info[6]
    cdef rc_index n, i
    info[0] = info[1] = info[2] = info[3] = info[4] = info[5] = 0
    if rois.dtype.itemsize == 4:
        n = backward_items(pool, <const float*>cnp.PyArray_DATA(rois), o, bs, g,
                           <float>scale, sp, bins, nthreads, &costs, info)
    else:
        n = backward_items(pool, <const double*>cnp.PyArray_DATA(rois), o, bs, g,
                           scale, sp, bins, nthreads, &costs, info)
    if n < 0:
        free(costs)
        raise MemoryError("backward_items: out of memory (or a sampling cost error)")
    out = cnp.PyArray_ZEROS(1, [n], cnp.NPY_FLOAT64, 0)
    rnd = cnp.PyArray_ZEROS(1, [n], cnp.NPY_INT64, 0)
    cdef double* d = <double*>cnp.PyArray_DATA(out)
    cdef rc_index* t = <rc_index*>cnp.PyArray_DATA(rnd)
    for i in range(n):
        d[i] = costs[i]
        t[i] = <rc_index>costs[n + i]
    free(costs)
    return (("reference", "nhwc-in-place", "packed")[info[0]], ISA_NAMES[info[1]],
            int(info[2]), int(info[3]), int(info[4]), int(info[5]), out, rnd)


def sampled_bwd_items(cnp.ndarray grad_out, cnp.ndarray inp, cnp.ndarray rois,
                      cnp.ndarray batch, cnp.ndarray order, cnp.ndarray batch_start,
                      int kind, bint aligned, bint max_mode, int sampling_ratio,
                      double scale, bint channels_last, int nthreads):
    """The parallel items :func:`sampled_bwd` would run with these arguments:
    (path, isa, bands, rounds, channels per item, team, float64 array of
    each item's cost in the kernels' model, int64 array of each item's
    round)."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, grad_out, batch, channels_last, box)
    cdef SampledParams sp = _params(kind, aligned, max_mode, sampling_ratio)
    return _items(False, rois, <const rc_index*>cnp.PyArray_DATA(order),
                  <const rc_index*>cnp.PyArray_DATA(batch_start), g, scale, sp, 0,
                  nthreads)


def pool_bwd_items(cnp.ndarray grad_out, cnp.ndarray inp, cnp.ndarray rois,
                   cnp.ndarray batch, cnp.ndarray order, cnp.ndarray batch_start,
                   int bins, double scale, bint channels_last, int nthreads):
    """:func:`sampled_bwd_items` for :func:`pool_bwd`."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, grad_out, batch, channels_last, box)
    cdef SampledParams sp = _params(RC_ALIGN, False, False, 1)
    return _items(True, rois, <const rc_index*>cnp.PyArray_DATA(order),
                  <const rc_index*>cnp.PyArray_DATA(batch_start), g, scale, sp, bins,
                  nthreads)


# --- max-mode RoI Align / RoI Warp with stored winners (cpu/sampled_indices.h)

cdef int _sfwd_idx(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray out, cnp.ndarray idx,
                   const Geom& g, floating scale, SampledParams sp, int nthreads):
    cdef const floating* x = <const floating*>cnp.PyArray_DATA(inp)
    cdef const floating* r = <const floating*>cnp.PyArray_DATA(rois)
    cdef floating* y = <floating*>cnp.PyArray_DATA(out)
    cdef int* a = <int*>cnp.PyArray_DATA(idx)
    with nogil:
        return sampled_forward_indices(x, r, y, a, g, scale, sp, nthreads)


cdef int _sbwd_idx(cnp.ndarray grad_out, cnp.ndarray idx, cnp.ndarray rois, const rc_index* o,
                   const rc_index* bs, cnp.ndarray grad_in, const Geom& g, floating scale,
                   SampledParams sp, int nthreads):
    cdef const floating* go = <const floating*>cnp.PyArray_DATA(grad_out)
    cdef const int* a = <const int*>cnp.PyArray_DATA(idx)
    cdef const floating* r = <const floating*>cnp.PyArray_DATA(rois)
    cdef floating* gi = <floating*>cnp.PyArray_DATA(grad_in)
    with nogil:
        return sampled_backward_indices(go, a, r, o, bs, gi, g, scale, sp, nthreads)


def _check_sampled_indices(cnp.ndarray indices, cnp.ndarray like):
    if (indices.dtype.kind != "i" or indices.dtype.itemsize != 4
            or not indices.flags.c_contiguous or indices.size != like.size):
        raise ValueError("indices must be a C-contiguous int32 array of the output's size")


def sampled_fwd_indices(cnp.ndarray nhwc, cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch,
                        cnp.ndarray out, cnp.ndarray indices, int kind, bint aligned,
                        int sampling_ratio, double scale, bint channels_last, int nthreads):
    """Max-mode forward of RoI Align / RoI Warp into ``out``, each element's
    winning sample (iy * gw + ix in its bin's grid; -1 none, -2 an out-of-range
    sample leads) into ``indices`` (C-contiguous int32, ``out``'s shape).  The
    kernel reads ``nhwc``, the map ``inp`` (of layout ``channels_last``) as a
    C-contiguous NHWC array."""
    _check_sampled_indices(indices, out)
    cdef list box = []
    cdef Geom g = _geom(inp, rois, out, batch, channels_last, box)
    _check_nhwc(nhwc, inp, g)
    cdef SampledParams sp = _params(kind, aligned, True, sampling_ratio)
    if inp.dtype.itemsize == 4:
        return _finish(_sfwd_idx(nhwc, rois, out, indices, g, <float>scale, sp, nthreads),
                       box)
    return _finish(_sfwd_idx(nhwc, rois, out, indices, g, scale, sp, nthreads), box)


def sampled_bwd_indices(cnp.ndarray grad_out, cnp.ndarray indices, cnp.ndarray inp,
                        cnp.ndarray rois, cnp.ndarray batch, cnp.ndarray order,
                        cnp.ndarray batch_start, cnp.ndarray grad_in, int kind, bint aligned,
                        int sampling_ratio, double scale, bint channels_last, int nthreads):
    """Max-mode backward of RoI Align / RoI Warp from stored winners (``inp``
    gives only the shape), accumulated into zeroed ``grad_in``; a winner that
    the forward cannot have stored is skipped and reported as ERR_INDICES."""
    _check_sampled_indices(indices, grad_out)
    cdef list box = []
    cdef Geom g = _geom(inp, rois, grad_out, batch, channels_last, box)
    cdef SampledParams sp = _params(kind, aligned, True, sampling_ratio)
    cdef const rc_index* o = <const rc_index*>cnp.PyArray_DATA(order)
    cdef const rc_index* bs = <const rc_index*>cnp.PyArray_DATA(batch_start)
    if grad_out.dtype.itemsize == 4:
        return _finish(_sbwd_idx(grad_out, indices, rois, o, bs, grad_in, g, <float>scale, sp,
                                 nthreads), box)
    return _finish(_sbwd_idx(grad_out, indices, rois, o, bs, grad_in, g, scale, sp, nthreads),
                   box)


# --- recycled memory for large fresh outputs (cpu/output_cache.h)
cdef extern from "roicore/roi_cpu.h" namespace "roicore":
    void* rc_cache_alloc(size_t nbytes, size_t* size, cbool* fresh) nogil
    void rc_cache_free(void* p, size_t n) nogil
    size_t rc_cache_set_limit(size_t limit) nogil
    cbool rc_cache_set_bypass(cbool on) nogil
    void rc_cache_stats(size_t* limit, size_t* held, int* count, size_t* reused,
                        size_t* mapped) nogil
    void rc_zero(void* p, size_t nbytes, int nthreads) nogil


cdef class _CachedBlock:
    """Owner of one output-cache mapping: the base of the arrays made from it;
    when the last of them dies the mapping goes back to the cache."""
    cdef void* ptr
    cdef size_t size

    def __dealloc__(self):
        if self.ptr != NULL:
            rc_cache_free(self.ptr, self.size)
            self.ptr = NULL


def cached_empty(tuple shape, dtype, bint zero=False, int nthreads=1):
    """A C-contiguous array of ``shape`` and ``dtype`` in output-cache memory
    (zeroed with ``nthreads`` threads when ``zero``), or None when the array is
    below the cache's size floor, the cache is off, or the platform has none
    (the caller then allocates with NumPy)."""
    cdef cnp.dtype dt = np.dtype(dtype)
    cdef Py_ssize_t count = 1
    cdef cnp.npy_intp dims[32]
    cdef int nd = len(shape)
    cdef size_t size = 0
    cdef cbool fresh = False
    cdef size_t nbytes
    cdef void* p
    if nd > 32 or dt.hasobject or not dt.isnative or dt.kind not in "fiu":
        return None
    for i in range(nd):
        dims[i] = shape[i]
        count *= shape[i]
    nbytes = <size_t>count * <size_t>dt.itemsize
    p = rc_cache_alloc(nbytes, &size, &fresh)
    if p == NULL:
        return None
    cdef _CachedBlock block = _CachedBlock.__new__(_CachedBlock)
    block.ptr = p
    block.size = size
    if zero and not fresh:
        with nogil:
            rc_zero(p, nbytes, nthreads if nthreads > 0 else 1)
    cdef cnp.ndarray arr = cnp.PyArray_SimpleNewFromData(nd, dims, dt.num, p)
    cnp.set_array_base(arr, block)
    return arr


def output_cache_limit(limit=None):
    """The output cache's limit in bytes; with ``limit``, set it (0 disables the
    cache and frees what it holds) and return the previous one."""
    cdef size_t lim, held, reused, mapped
    cdef int count
    if limit is None:
        rc_cache_stats(&lim, &held, &count, &reused, &mapped)
        return lim
    if limit < 0:
        raise ValueError(f"limit must be >= 0 bytes; got {limit}")
    return rc_cache_set_limit(<size_t>min(limit, 1 << 62))  # more is "no limit" anyway


def _output_cache_bypass(bint on):
    """Benchmarks: while on, results get fresh memory (as with the cache off) but
    the cache keeps its blocks for later calls.  Returns the previous setting."""
    return rc_cache_set_bypass(on)


def output_cache_stats():
    """dict: limit, held (bytes), blocks, reused, mapped (allocations so far)."""
    cdef size_t lim, held, reused, mapped
    cdef int count
    rc_cache_stats(&lim, &held, &count, &reused, &mapped)
    return {"limit": lim, "held": held, "blocks": count, "reused": reused,
            "mapped": mapped}


cdef extern from "roicore/roi_cpu.h" namespace "roicore":
    rc_index pool_idx_block(const Geom& g, size_t tsize, int nthreads) nogil


def pool_bwd_indices_block(rc_index N, rc_index C, rc_index H, rc_index W,
                           bint channels_last, int itemsize, int nthreads):
    """Channels per item of RoI Pool's backward from stored winners
    (cpu/pool_indices.h: items are (image, block of this many channels))."""
    cdef Geom g
    g.N = N
    g.C = C
    g.H = H
    g.W = W
    g.channels_last = channels_last
    return pool_idx_block(g, itemsize, nthreads)
