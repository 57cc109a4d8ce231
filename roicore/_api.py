"""Public operators: validate once, then dispatch on the array type.

NumPy arrays run on the Cython/OpenMP CPU backend (:mod:`roicore._backends.cpu`);
CuPy arrays run on the CUDA backend (:mod:`roicore._backends.cuda`, imported lazily so
``import roicore`` never imports CuPy).  Any other array with ``__dlpack__``
(torch, JAX, ...) is viewed zero-copy as NumPy or CuPy according to its
``__dlpack_device__`` and the result is returned as the caller's type
(:mod:`roicore._interop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _interop
from . import _validation as V
from ._backends import shared
from ._backends.cpu import _cpu  # the extension, or an ImportError saying how to build it

#: Kinds of sampled operator (defined in roi_common.h, read from the extension).
ALIGN, WARP, MNC = _cpu.KIND_ALIGN, _cpu.KIND_WARP, _cpu.KIND_MNC
#: Bin rules of RoI Pool (roi_common.h RC_BINS_*).
BINS = {"fast_rcnn": _cpu.BINS_FAST_RCNN, "equal": _cpu.BINS_EQUAL}


@dataclass(frozen=True)
class Plan:
    """Everything a backend needs besides the arrays."""

    op: str  # "pool" or "sampled"
    shapes: V.Shapes
    spatial_scale: float
    num_threads: int | None
    bins: int = 0
    kind: int = ALIGN
    aligned: bool = False
    max_mode: bool = False
    sampling_ratio: int = -1

    @property
    def channels_last(self) -> bool:
        return self.shapes.layout == "NHWC"


# --------------------------------------------------------------------------- dispatch
def _array_module(a: Any) -> str:
    mod = type(a).__module__.split(".", 1)[0]
    if isinstance(a, np.ndarray):
        return "numpy"
    if mod == "cupy":
        return "cupy"
    return mod


def _backend(input: Any, *others: Any) -> Any:
    """Return the backend module for ``input``; every array argument must live
    on the same device."""
    kind = _array_module(input)
    if kind not in ("numpy", "cupy"):
        raise TypeError(
            f"`input` must be a numpy.ndarray (CPU), a cupy.ndarray (GPU) or an array with "
            f"__dlpack__ (torch, JAX, ...); got {type(input).__module__}.{type(input).__name__}"
        )
    for name, o in others:
        if o is None or not hasattr(o, "shape") or isinstance(o, (list, tuple)):
            continue
        ok = _array_module(o)
        if ok == "numpy" and kind == "numpy":
            continue
        if ok != kind:
            raise TypeError(
                f"`{name}` is a {type(o).__module__}.{type(o).__name__} but `input` is a "
                f"{type(input).__module__}.{type(input).__name__}: all arrays must be on the "
                f"same device (use numpy for CPU or cupy for GPU for every argument)"
            )
        if kind == "cupy" and o.device != input.device:
            raise TypeError(f"`{name}` is on {o.device} but `input` is on {input.device}")
    if kind == "numpy":
        from ._backends import cpu

        return cpu
    from ._backends import cuda  # lazy: never import cupy for NumPy input

    return cuda


def _prepare(
    input: Any, rois: Any, output_size: Any, spatial_scale: Any, layout: Any,
    num_threads: Any, grad_output: Any = None, out: Any = None,
) -> tuple[Any, Any, V.Shapes, float]:
    list_rois = [(f"rois[{i}]", r) for i, r in enumerate(rois)] if isinstance(
        rois, (list, tuple)) else [("rois", rois)]
    backend = _backend(input, *list_rois, ("grad_output", grad_output), ("out", out))
    V.check_input(input)
    layout = V.check_layout(layout)
    ph, pw = V.check_output_size(output_size)
    scale = V.check_spatial_scale(spatial_scale)
    if num_threads is not None:
        V.check_num_threads(num_threads, 1)
    N = int(input.shape[0])
    rois_arr = V.rois_to_array(rois, N, backend.xp)
    backend.check_rois(rois_arr, N)
    V.check_batch_exact(rois_arr, N)
    shapes = V.shapes_of(tuple(input.shape), layout, rois_arr.shape[0], ph, pw)
    return backend, rois_arr, shapes, scale


def _check_grad_output(grad_output: Any, shapes: V.Shapes) -> None:
    shape = getattr(grad_output, "shape", None)
    if shape is None or tuple(shape) != shapes.out_shape:
        raise ValueError(
            f"`grad_output` must have the forward output's shape {shapes.out_shape} "
            f"(K, C, PH, PW) or (K, PH, PW, C) for NHWC; got {shape}"
        )
    if np.dtype(grad_output.dtype).kind != "f":
        raise TypeError(f"`grad_output` must have a floating dtype; got {grad_output.dtype}")


def _forward(plan: Plan, backend: Any, input: Any, rois_given: Any, rois: Any,
             out: Any, return_indices: Any = False) -> Any:
    """Run the forward (an ``out`` that overlaps an operand gets a copy of the
    result: :func:`roicore._backends.shared.call_forward`)."""
    if V.check_bool(return_indices, "return_indices"):
        _indices_supported(plan, backend, "return_indices=True")
        return shared.call_forward(backend, plan, input, rois_given, rois, out, True)
    return shared.call_forward(backend, plan, input, rois_given, rois, out)


def _indices_supported(plan: Plan, backend: Any, what: str) -> None:
    """Stored winners: RoI Pool on both backends; the max modes of RoI Align /
    RoI Warp on the CPU backend."""
    if plan.op == "pool":
        return
    if not plan.max_mode:
        raise ValueError(
            f"{what} needs mode='max' (and no compat='mnc'): only the max mode has "
            f"winners to store; the average mode's backward needs none"
        )
    if backend.NAME != "NumPy":
        raise NotImplementedError(
            f"{what} for roi_align / roi_warp is implemented on the CPU backend only "
            f"(NumPy input); the GPU backend recomputes the winners: call without it"
        )


def _cpu_backend() -> Any:
    from ._backends import cpu

    return cpu


def _check_indices(indices: Any, shapes: V.Shapes, backend: Any, op: str = "pool") -> Any:
    """``indices`` from ``roi_pool(..., return_indices=True)``: an integer array of
    the output's shape with values -1 (no winner) or in [0, H*W)."""
    if backend.NAME != "NumPy":
        if not isinstance(indices, backend.xp.ndarray):
            raise TypeError(f"`indices` must be a {backend.xp.__name__}.ndarray on the "
                            f"input's device; got {type(indices)}")
        if tuple(indices.shape) != shapes.out_shape:
            raise ValueError(f"`indices` must have the forward output's shape "
                             f"{shapes.out_shape}; got {tuple(indices.shape)}")
        if np.dtype(indices.dtype).kind not in "iu":
            raise TypeError(f"`indices` must be an integer array; got {indices.dtype}")
        return indices  # range checked on the device (roicore._backends.cuda)
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"`indices` must be a numpy.ndarray (from roi_pool(..., "
                        f"return_indices=True)); got {type(indices)}")
    if tuple(indices.shape) != shapes.out_shape:
        raise ValueError(f"`indices` must have the forward output's shape "
                         f"{shapes.out_shape}; got {tuple(indices.shape)}")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"`indices` must be an integer array; got {indices.dtype}")
    # int32/int64 as given (no copy); other integer types widened.  The range
    # [-1, H*W) is checked by the kernel as it reads them (ValueError).
    if op == "sampled":  # the kernels read int32 (a sample of a bin: < 2**24)
        if indices.dtype != np.int32 and indices.size and (
                int(indices.min()) < -2 or int(indices.max()) >= 2**31):
            raise ValueError(_cpu_backend().SAMPLED_INDICES)
        return np.ascontiguousarray(indices, dtype=np.int32)
    if indices.dtype in (np.int32, np.int64):
        return np.ascontiguousarray(indices)
    if indices.size and int(indices.max()) >= 2**63:
        raise ValueError("`indices` must hold -1 or winner positions y * W + x in [0, H*W)")
    return np.ascontiguousarray(indices, dtype=np.int64)


def _backward(plan: Plan, backend: Any, grad_output: Any, input: Any, rois: Any,
              deterministic: Any, indices: Any = None) -> Any:
    _check_grad_output(grad_output, plan.shapes)
    deterministic = V.check_bool(deterministic, "deterministic")
    if indices is not None:
        _indices_supported(plan, backend, "indices=")
        idx = _check_indices(indices, plan.shapes, backend, plan.op)
        return backend.backward(plan, grad_output, input, rois, deterministic, idx)
    return backend.backward(plan, grad_output, input, rois, deterministic)


# --------------------------------------------------------------------------- plans
def _pool_plan(input, rois, output_size, spatial_scale, bins, layout, num_threads,
               grad_output=None, out=None):
    bins = V.check_bins(bins)
    backend, r, shapes, scale = _prepare(
        input, rois, output_size, spatial_scale, layout, num_threads, grad_output, out)
    plan = Plan("pool", shapes, scale, num_threads, bins=BINS[bins])
    return plan, backend, r


def _align_plan(input, rois, output_size, spatial_scale, sampling_ratio, aligned, mode,
                layout, num_threads, grad_output=None, out=None):
    sr = V.check_sampling_ratio(sampling_ratio)
    aligned = V.check_aligned(aligned)
    mode = V.check_mode(mode)
    backend, r, shapes, scale = _prepare(
        input, rois, output_size, spatial_scale, layout, num_threads, grad_output, out)
    plan = Plan("sampled", shapes, scale, num_threads, kind=ALIGN, aligned=aligned,
                max_mode=mode == "max", sampling_ratio=sr)
    return plan, backend, r


def _warp_plan(input, rois, output_size, spatial_scale, sampling_ratio, mode, compat,
               layout, num_threads, grad_output=None, out=None):
    sr = V.check_sampling_ratio(sampling_ratio)
    mode = V.check_mode(mode)
    compat = V.check_compat(compat)
    V.check_compat_sampling(compat, sr)
    backend, r, shapes, scale = _prepare(
        input, rois, output_size, spatial_scale, layout, num_threads, grad_output, out)
    # compat="mnc" takes one sample per bin, so `mode` is irrelevant: always run the
    # plain kernel (the max kernel would let a NaN sample lose to its -DBL_MAX start).
    plan = Plan("sampled", shapes, scale, num_threads, kind=MNC if compat else WARP,
                aligned=False, max_mode=mode == "max" and not compat, sampling_ratio=sr)
    return plan, backend, r


def _restore(restore: Any, res: Any) -> Any:
    """The result (or the pair with the winners) as the caller's array type."""
    if isinstance(res, tuple):
        return restore(res[0]), restore(res[1])
    return restore(res)


# --------------------------------------------------------------------------- public API
def roi_pool(
    input: Any, rois: Any, output_size: int | tuple[int, int], spatial_scale: float = 1.0, *,
    bins: str = "fast_rcnn", layout: str = "NCHW", num_threads: int | None = None,
    out: Any = None, return_indices: bool = False,
) -> Any:
    """RoI max pooling (Fast R-CNN).

    Parameters
    ----------
    input : ndarray, shape (N, C, H, W) or (N, H, W, C)
        Feature map, float16/float32/float64 (float16 is computed in float32).
        NumPy runs on the CPU, CuPy on the GPU.  Any other array with
        ``__dlpack__`` (a torch tensor, a JAX array) is used zero-copy on its
        device and the result is returned as that library's array.
    rois : ndarray (K, 5) or list of N ndarrays (K_i, 4)
        Boxes ``[batch_index, x1, y1, x2, y2]`` in input-image coordinates.
        A list must have exactly N entries (one per image, possibly (0, 4)).
    output_size : int or (int, int)
        Output bins (PH, PW).
    spatial_scale : float, optional
        Factor from image to feature-map coordinates (e.g. 1/16).
    bins : {"fast_rcnn", "equal"}, optional
        ``"fast_rcnn"``: torchvision/Caffe bins (inclusive end, floor/ceil
        edges, may overlap), bit-exact with ``torchvision.ops.roi_pool``.
        ``"equal"``: the non-overlapping partition of the RoI-pooling
        explainer (exclusive end, boundaries ``floor(i*size/out)``).
    layout : {"NCHW", "NHWC"}, optional
        Memory layout of ``input`` and of the result.
    num_threads : int, optional
        OpenMP threads (CPU); default: OpenMP's default (``OMP_NUM_THREADS``).
        A request in [1, 2**31): the team is clamped to
        ``max(os.cpu_count(), OMP_NUM_THREADS, 64)`` (results never depend
        on it); other values raise ``ValueError``, non-integers ``TypeError``.
    out : ndarray, optional
        C-contiguous array of the output's shape and the input's dtype to
        write into (saves the allocation in serving loops).  It may share
        memory with ``input`` or ``rois``: the result is then computed into a
        temporary and copied into ``out`` (NumPy ufunc semantics).
    return_indices : bool, optional
        Also return each output element's winner (CPU and GPU backends), for
        :func:`roi_pool_backward`'s ``indices=``: the backward then scatters
        through them instead of recomputing the maxima.

    Returns
    -------
    ndarray, shape (K, C, PH, PW) or (K, PH, PW, C)
        Same dtype and array type as ``input``.
    indices : ndarray of int32 (int64 if H * W >= 2**31), same shape
        Only with ``return_indices=True``.
        Position ``y * W + x`` of the winning pixel in the element's image and
        channel plane (torchvision's argmax convention); -1 for an empty bin
        or a bin with no winner (its gradient is dropped).

    Examples
    --------
    >>> import numpy as np, roicore
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> roicore.roi_pool(x, np.array([[0, 0, 0, 3, 3]], np.float32), 2)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    (input, rois, out), restore = _interop.from_caller(("input", input), ("rois", rois),
                                                       ("out", out))
    plan, backend, r = _pool_plan(input, rois, output_size, spatial_scale, bins, layout,
                                  num_threads, out=out)
    return _restore(restore, _forward(plan, backend, input, rois, r, out, return_indices))


def roi_align(
    input: Any, rois: Any, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
    sampling_ratio: int = -1, aligned: bool = False, *, mode: str = "avg",
    layout: str = "NCHW", num_threads: int | None = None, out: Any = None,
    return_indices: bool = False,
) -> Any:
    """RoI Align (Mask R-CNN): bilinear samples averaged (or maxed) per bin.

    ``mode="avg"`` matches ``torchvision.ops.roi_align`` (same formula and
    operation order); ``mode="max"`` is mmcv's max over the interpolated
    samples.

    Parameters
    ----------
    input, rois, output_size, spatial_scale
        As in :func:`roi_pool`.
    sampling_ratio : int, optional
        Samples per bin side; ``<= 0`` means adaptive ``ceil(roi / output)``.
    aligned : bool, optional
        Shift boxes by -0.5 pixel (the half-pixel-correct variant).
    mode : {"avg", "max"}, optional
        Reduction over the samples of a bin.
    layout, num_threads, out
        As in :func:`roi_pool`.
    return_indices : bool, optional
        ``mode="max"`` only (CPU backend): also return each output element's
        winning sample, for :func:`roi_align_backward`'s ``indices=``.

    Returns
    -------
    ndarray, shape (K, C, PH, PW) or (K, PH, PW, C)
    indices : ndarray of int32, same shape
        Only with ``return_indices=True``: the winning sample ``iy * gw + ix``
        of the element's bin (``gh x gw`` its sampling grid), -1 when the bin
        has no samples or none wins (all NaN), -2 when an out-of-range sample
        (the value 0) leads; -1 and -2 get no gradient.

    Examples
    --------
    >>> import numpy as np, roicore
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> roicore.roi_align(x, np.array([[0, 0, 0, 2, 2]], np.float32), 1, aligned=True)
    array([[[[2.5]]]], dtype=float32)
    """
    (input, rois, out), restore = _interop.from_caller(("input", input), ("rois", rois),
                                                       ("out", out))
    plan, backend, r = _align_plan(input, rois, output_size, spatial_scale, sampling_ratio,
                                   aligned, mode, layout, num_threads, out=out)
    return _restore(restore, _forward(plan, backend, input, rois, r, out, return_indices))


def roi_warp(
    input: Any, rois: Any, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
    sampling_ratio: int = -1, *, mode: str = "avg", compat: str | None = None,
    layout: str = "NCHW", num_threads: int | None = None, out: Any = None,
    return_indices: bool = False,
) -> Any:
    """RoI Warp (MNC): quantize the box like RoI Pool, then sample like RoI Align.

    ``roi_warp(x, r, out, s, sr, mode=m)`` equals
    ``roi_align(x, r2, out, 1.0, sr, aligned=False, mode=m)`` with
    ``r2 = [b, round(x1*s), round(y1*s), round(x2*s), round(y2*s)]`` (C round,
    half away from zero).  ``compat="mnc"`` reproduces the forward of MNC's
    Caffe ``ROIWarping`` layer (one bilinear sample at each bin's top-left
    corner) with an exact backward.

    Parameters
    ----------
    input, rois, output_size, spatial_scale, sampling_ratio
        As in :func:`roi_align`.
    mode : {"avg", "max"}, optional
        Reduction over the samples of a bin (irrelevant with ``compat="mnc"``).
    compat : {None, "mnc"}, optional
        ``"mnc"``: the original MNC layer's sampling.
    layout, num_threads, out
        As in :func:`roi_pool`.
    return_indices : bool, optional
        ``mode="max"`` without ``compat`` only (CPU backend): also return the
        winners, as in :func:`roi_align`.

    Returns
    -------
    ndarray, shape (K, C, PH, PW) or (K, PH, PW, C)
    indices : ndarray of int32, same shape
        Only with ``return_indices=True`` (see :func:`roi_align`).
    """
    (input, rois, out), restore = _interop.from_caller(("input", input), ("rois", rois),
                                                       ("out", out))
    plan, backend, r = _warp_plan(input, rois, output_size, spatial_scale, sampling_ratio,
                                  mode, compat, layout, num_threads, out=out)
    return _restore(restore, _forward(plan, backend, input, rois, r, out, return_indices))


def roi_pool_backward(
    grad_output: Any, input: Any, rois: Any, output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, *, bins: str = "fast_rcnn", layout: str = "NCHW",
    num_threads: int | None = None, deterministic: bool = False, indices: Any = None,
) -> Any:
    """Gradient of :func:`roi_pool` with respect to ``input``.

    Returns ``d(sum(grad_output * roi_pool(input, ...))) / d(input)``: each
    bin's gradient goes to the pixel that won its maximum.

    Parameters
    ----------
    grad_output : ndarray
        Shape of the forward output.
    input, rois, output_size, spatial_scale, bins, layout, num_threads
        As in :func:`roi_pool` (``input`` is needed to find the winners).
    deterministic : bool, optional
        Bit-identical gradients run to run.  The CPU backend is always
        deterministic (for any thread count); on the GPU this selects the
        atomic-free kernel.
    indices : ndarray, optional
        The winners from ``roi_pool(..., return_indices=True)`` on the same
        arguments (CPU or GPU): the gradient is scattered through them
        instead of recomputing the forward's maxima from ``input`` (same
        result, bit for bit; ``input`` then only gives the shape).

    Returns
    -------
    ndarray
        Same shape, dtype and layout as ``input``.
    """
    (input, grad_output, rois, indices), restore = _interop.from_caller(
        ("input", input), ("grad_output", grad_output), ("rois", rois),
        ("indices", indices))
    plan, backend, r = _pool_plan(input, rois, output_size, spatial_scale, bins, layout,
                                  num_threads, grad_output=grad_output)
    return restore(_backward(plan, backend, grad_output, input, r, deterministic, indices))


def roi_align_backward(
    grad_output: Any, input: Any, rois: Any, output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False, *,
    mode: str = "avg", layout: str = "NCHW", num_threads: int | None = None,
    deterministic: bool = False, indices: Any = None,
) -> Any:
    """Gradient of :func:`roi_align` with respect to ``input``.

    ``mode="avg"``: every in-range sample scatters ``g * w / count`` to its
    four corners; ``mode="max"``: the winning sample scatters ``g * w``.

    Parameters
    ----------
    grad_output : ndarray
        Shape of the forward output.
    input, rois, output_size, spatial_scale, sampling_ratio, aligned, mode, layout, num_threads
        As in :func:`roi_align`.
    deterministic : bool, optional
        See :func:`roi_pool_backward`.
    indices : ndarray, optional
        ``mode="max"`` only (CPU backend): the winners from ``roi_align(...,
        mode="max", return_indices=True)`` on the same arguments; each bin's
        gradient goes to the 4 corners of its stored winning sample instead of
        recomputing the samples (same result, bit for bit; ``input`` then only
        gives the shape).  A value the forward cannot have stored raises
        ``ValueError``.

    Returns
    -------
    ndarray
        Same shape, dtype and layout as ``input``.
    """
    (input, grad_output, rois, indices), restore = _interop.from_caller(
        ("input", input), ("grad_output", grad_output), ("rois", rois),
        ("indices", indices))
    plan, backend, r = _align_plan(input, rois, output_size, spatial_scale, sampling_ratio,
                                   aligned, mode, layout, num_threads, grad_output=grad_output)
    return restore(_backward(plan, backend, grad_output, input, r, deterministic, indices))


def roi_warp_backward(
    grad_output: Any, input: Any, rois: Any, output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, sampling_ratio: int = -1, *, mode: str = "avg",
    compat: str | None = None, layout: str = "NCHW", num_threads: int | None = None,
    deterministic: bool = False, indices: Any = None,
) -> Any:
    """Gradient of :func:`roi_warp` with respect to ``input`` (exact adjoint,
    also for ``compat="mnc"``, whose original Caffe backward drops part of
    the gradient).

    Parameters
    ----------
    grad_output : ndarray
        Shape of the forward output.
    input, rois, output_size, spatial_scale, sampling_ratio, mode, compat, layout, num_threads
        As in :func:`roi_warp`.
    deterministic : bool, optional
        See :func:`roi_pool_backward`.
    indices : ndarray, optional
        ``mode="max"`` without ``compat`` only (CPU backend): the winners from
        ``roi_warp(..., mode="max", return_indices=True)``, as in
        :func:`roi_align_backward`.

    Returns
    -------
    ndarray
        Same shape, dtype and layout as ``input``.
    """
    (input, grad_output, rois, indices), restore = _interop.from_caller(
        ("input", input), ("grad_output", grad_output), ("rois", rois),
        ("indices", indices))
    plan, backend, r = _warp_plan(input, rois, output_size, spatial_scale, sampling_ratio,
                                  mode, compat, layout, num_threads, grad_output=grad_output)
    return restore(_backward(plan, backend, grad_output, input, r, deterministic, indices))


__all__ = [
    "Plan",
    "roi_align",
    "roi_align_backward",
    "roi_pool",
    "roi_pool_backward",
    "roi_warp",
    "roi_warp_backward",
]
