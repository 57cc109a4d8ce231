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
from libcpp cimport bool as cbool

cimport numpy as cnp

from _omp cimport ROICORE_OPENMP, rc_omp_get_max_threads

cnp.import_array()

cdef extern from "roicore/roi_cpu.h" namespace "roicore":
    ctypedef long long rc_index
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

    void sampled_cost[T](const T* rois, const Geom& g, T scale, SampledParams sp,
                         double* max_bin, rc_index* bin_roi, double* max_side,
                         rc_index* side_roi, double* max_roi, rc_index* roi_roi,
                         double* total) nogil

    int rc_thread_ceiling() nogil
    double rc_set_chunk_work(double w) nogil
    int rc_isa() nogil
    int rc_set_isa(int isa) nogil
    int rc_isa_supported() nogil
    int rc_set_pack_policy(int policy) nogil

#: Instruction sets of the CPU kernels, in the order of roi_cpu.h's RC_ISA_*.
ISA_NAMES = ("reference", "baseline", "avx2", "avx512")


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
    kernels for every NCHW call), 2 never (NHWC in place, NCHW reference)."""
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
    if err == 3 and box:
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


def sampled_cost_of(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch, cnp.ndarray out,
                    int kind, bint aligned, int sampling_ratio, double scale,
                    bint channels_last):
    """(max samples per bin, its RoI, max samples along a RoI side, its RoI,
    max samples per RoI, its RoI, samples of the call x C), with the kernels'
    own arithmetic."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, out, batch, channels_last, box)
    cdef SampledParams sp = _params(kind, aligned, False, sampling_ratio)
    cdef double mb = 0, ms = 0, mr = 0, tot = 0
    cdef rc_index kb = -1, ks = -1, kr = -1
    if inp.dtype.itemsize == 4:
        sampled_cost[float](<const float*>cnp.PyArray_DATA(rois), g, <float>scale, sp,
                            &mb, &kb, &ms, &ks, &mr, &kr, &tot)
    else:
        sampled_cost[double](<const double*>cnp.PyArray_DATA(rois), g, scale, sp,
                             &mb, &kb, &ms, &ks, &mr, &kr, &tot)
    return mb, kb, ms, ks, mr, kr, tot


def sampled_fwd(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch, cnp.ndarray out,
                int kind, bint aligned, bint max_mode, int sampling_ratio, double scale,
                bint channels_last, int nthreads):
    """Forward of RoI Align / RoI Warp / MNC RoI Warp into ``out``."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, out, batch, channels_last, box)
    cdef SampledParams sp = _params(kind, aligned, max_mode, sampling_ratio)
    cdef int err
    if inp.dtype.itemsize == 4:
        with nogil:
            err = sampled_forward[float](
                <const float*>cnp.PyArray_DATA(inp), <const float*>cnp.PyArray_DATA(rois),
                <float*>cnp.PyArray_DATA(out), g, <float>scale, sp, nthreads)
    else:
        with nogil:
            err = sampled_forward[double](
                <const double*>cnp.PyArray_DATA(inp), <const double*>cnp.PyArray_DATA(rois),
                <double*>cnp.PyArray_DATA(out), g, scale, sp, nthreads)
    return _finish(err, box)


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
    cdef int err
    if inp.dtype.itemsize == 4:
        with nogil:
            err = sampled_backward[float](
                <const float*>cnp.PyArray_DATA(grad_out), <const float*>cnp.PyArray_DATA(inp),
                <const float*>cnp.PyArray_DATA(rois), o, bs,
                <float*>cnp.PyArray_DATA(grad_in), g, <float>scale, sp, nthreads)
    else:
        with nogil:
            err = sampled_backward[double](
                <const double*>cnp.PyArray_DATA(grad_out), <const double*>cnp.PyArray_DATA(inp),
                <const double*>cnp.PyArray_DATA(rois), o, bs,
                <double*>cnp.PyArray_DATA(grad_in), g, scale, sp, nthreads)
    return _finish(err, box)


def pool_fwd(cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch, cnp.ndarray out,
             int bins, double scale, bint channels_last, int nthreads):
    """Forward of RoI Pool into ``out``."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, out, batch, channels_last, box)
    cdef int err
    if inp.dtype.itemsize == 4:
        with nogil:
            err = pool_forward[float](
                <const float*>cnp.PyArray_DATA(inp), <const float*>cnp.PyArray_DATA(rois),
                <float*>cnp.PyArray_DATA(out), g, <float>scale, bins, nthreads)
    else:
        with nogil:
            err = pool_forward[double](
                <const double*>cnp.PyArray_DATA(inp), <const double*>cnp.PyArray_DATA(rois),
                <double*>cnp.PyArray_DATA(out), g, scale, bins, nthreads)
    return _finish(err, box)


def pool_bwd(cnp.ndarray grad_out, cnp.ndarray inp, cnp.ndarray rois, cnp.ndarray batch,
             cnp.ndarray order, cnp.ndarray batch_start, cnp.ndarray grad_in,
             int bins, double scale, bint channels_last, int nthreads):
    """Backward of RoI Pool, accumulated into zeroed ``grad_in``."""
    cdef list box = []
    cdef Geom g = _geom(inp, rois, grad_out, batch, channels_last, box)
    cdef const rc_index* o = <const rc_index*>cnp.PyArray_DATA(order)
    cdef const rc_index* bs = <const rc_index*>cnp.PyArray_DATA(batch_start)
    cdef int err
    if inp.dtype.itemsize == 4:
        with nogil:
            err = pool_backward[float](
                <const float*>cnp.PyArray_DATA(grad_out), <const float*>cnp.PyArray_DATA(inp),
                <const float*>cnp.PyArray_DATA(rois), o, bs,
                <float*>cnp.PyArray_DATA(grad_in), g, <float>scale, bins, nthreads)
    else:
        with nogil:
            err = pool_backward[double](
                <const double*>cnp.PyArray_DATA(grad_out), <const double*>cnp.PyArray_DATA(inp),
                <const double*>cnp.PyArray_DATA(rois), o, bs,
                <double*>cnp.PyArray_DATA(grad_in), g, scale, bins, nthreads)
    return _finish(err, box)
