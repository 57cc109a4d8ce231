"""PyTorch front end: registered custom ops, autograd and ``nn.Module`` s (CPU and CUDA).

Drop-in for ``torchvision.ops.roi_pool`` / ``roi_align`` / ``MultiScaleRoIAlign``
(same arguments, same results), plus RoI Warp and roicore's extra options
(``mode="max"``, ``bins="equal"``, ``compat="mnc"``, NHWC layout).  Every
function calls an op registered with the PyTorch dispatcher
(``torch.ops.roicore.*``, see :mod:`roicore._torch.ops`), so ``torch.compile``
(``fullgraph=True``), ``torch.export`` and the ONNX exporter (with
:func:`onnx_translation_table`) see one opaque node per call.  CPU tensors run
on the OpenMP kernels on views of their memory, CUDA tensors on the CuPy
backend; bfloat16 is computed in float32.  Gradients flow to ``input``;
``rois`` get none (as in torchvision).

>>> import torch
>>> from roicore.torch import RoIAlign
>>> x = torch.rand(2, 16, 32, 32, requires_grad=True)
>>> boxes = [torch.tensor([[0.0, 0.0, 15.0, 15.0]]), torch.tensor([[4.0, 4.0, 31.0, 20.0]])]
>>> y = RoIAlign(7, spatial_scale=1.0, sampling_ratio=2)(x, boxes)
>>> y.shape
torch.Size([2, 16, 7, 7])
>>> y.sum().backward()
"""

from __future__ import annotations

import math
from typing import Any

try:
    import torch
    from torch import Tensor, nn
except ImportError as _exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "roicore.torch needs PyTorch: pip install torch (or pip install 'roicore[torch]')"
    ) from _exc

from . import _validation as V
from ._torch import ops as _ops


def _as_rois(boxes: Tensor | list[Tensor] | tuple[Tensor, ...], input: Tensor) -> Tensor:
    """torchvision's box formats -> one (K, 5) tensor on ``input``'s device.

    ``boxes`` is a Tensor[K, 5] of rows ``[batch_index, x1, y1, x2, y2]`` or a
    list with one Tensor[K_i, 4] ``[x1, y1, x2, y2]`` per image (the list index
    is the batch index).
    """
    if isinstance(boxes, (list, tuple)):
        parts = []
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor):
                raise TypeError(
                    f"`rois[{i}]` must be a torch.Tensor of shape (K_i, 4); got {type(b).__name__}"
                )
            if b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(
                    f"`rois[{i}]` must have shape (K_i, 4) [x1, y1, x2, y2]; got {tuple(b.shape)}"
                )
            if b.is_complex() or b.dtype == torch.bool:
                raise TypeError(f"`rois[{i}]` must hold real numbers; got dtype {b.dtype}")
            # the boxes' own float dtype (as torchvision: the FPN level rule sees the
            # same values), float64 where that dtype cannot hold every batch index exactly
            b = b.detach().to(device=input.device).resolve_conj().resolve_neg()
            dtype = b.dtype if b.is_floating_point() else input.dtype
            if len(boxes) - 1 > 1 / torch.finfo(dtype).eps:  # 2**(mantissa bits + 1) > that
                dtype = torch.float64
            idx = torch.full((b.shape[0], 1), float(i), dtype=dtype, device=input.device)
            parts.append(torch.cat([idx, b.to(dtype)], dim=1))
        N = int(input.shape[0]) if input.dim() > 0 else 0
        if len(boxes) != N:
            raise ValueError(
                f"`rois` given as a list must have one Tensor[K_i, 4] per image: input has "
                f"N={N} images but the list has {len(boxes)} entries (use an empty "
                f"Tensor[0, 4] for an image without boxes)"
            )
        if not parts:
            return torch.zeros((0, 5), dtype=input.dtype, device=input.device)
        return torch.cat(parts, dim=0)
    if not isinstance(boxes, Tensor):
        raise TypeError(
            "`rois` must be a Tensor[K, 5] [batch_index, x1, y1, x2, y2] or a list of "
            f"Tensor[K_i, 4] (one per image); got {type(boxes).__name__}"
        )
    return boxes.detach().to(device=input.device)


def _common(input: Any, boxes: Any, output_size: Any, spatial_scale: Any, layout: Any,
            num_threads: Any) -> tuple[Tensor, list[int], float]:
    """Validate what needs no data (so it also runs under torch.compile / export)."""
    _ops.check_input(input)
    V.check_layout(layout)
    ph, pw = V.check_output_size(output_size)
    scale = V.check_spatial_scale(spatial_scale)
    if num_threads is not None:
        V.check_num_threads(num_threads, 1)
    rois = _as_rois(boxes, input)
    _ops.check_rois(rois)
    return rois, [ph, pw], scale


def _needs_grad(input: Tensor) -> bool:
    """A gradient will be asked for (and this is not torch.export tracing an
    inference graph): run the op that stores the winners for the backward."""
    return (torch.is_grad_enabled() and input.requires_grad
            and not torch.compiler.is_exporting())


# --------------------------------------------------------------------------- functions
def roi_pool(
    input: Tensor, boxes: Tensor | list[Tensor], output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, *, bins: str = "fast_rcnn", layout: str = "NCHW",
    num_threads: int | None = None, deterministic: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """RoI max pooling with autograd; ``torchvision.ops.roi_pool``'s arguments.

    When a gradient is needed (grad mode on and ``input.requires_grad``) the
    forward stores each output element's winner and the backward scatters
    through them (``torch.ops.roicore.roi_pool_with_indices``), like
    torchvision's argmax; the input itself is not kept for the backward.
    Otherwise, and while ``torch.export`` traces, the plain op
    ``torch.ops.roicore.roi_pool`` runs (the one the ONNX exporter maps to
    ``MaxRoiPool``).  Gradients are the same either way, bit for bit.

    Parameters
    ----------
    input : Tensor[N, C, H, W]
        Feature map (CPU or CUDA; float16, bfloat16, float32 or float64; float16 and
        bfloat16 are computed in float32 and returned in their own dtype).
    boxes : Tensor[K, 5] or list of Tensor[K_i, 4]
        ``[batch_index, x1, y1, x2, y2]`` rows, or one ``[x1, y1, x2, y2]``
        tensor per image, in input-image coordinates.
    output_size : int or (int, int)
    spatial_scale : float
    bins, layout, num_threads
        As in :func:`roicore.roi_pool`.
    deterministic : bool
        Bit-identical gradients on CUDA (the CPU is always deterministic).
    return_indices : bool
        Also return the winners (not in torchvision's signature; default False).

    Returns
    -------
    Tensor[K, C, PH, PW]
        The pooled features (or ``(K, PH, PW, C)`` for ``layout="NHWC"``).
    indices : Tensor of int32 (int64 if H * W >= 2**31), same shape
        Only with ``return_indices=True``: position ``y * W + x`` of each
        element's winning pixel in its (image, channel) plane, -1 for an empty
        bin (as :func:`roicore.roi_pool`).
    """
    V.check_bins(bins)
    return_indices = V.check_bool(return_indices, "return_indices")
    rois, size, scale = _common(input, boxes, output_size, spatial_scale, layout, num_threads)
    det = V.check_bool(deterministic, "deterministic")
    if return_indices or _needs_grad(input):
        out, indices = _ops.roi_pool_with_indices(input, rois, size, scale, bins, layout,
                                                  num_threads, det)
        return (out, indices) if return_indices else out
    return _ops.roi_pool(input, rois, size, scale, bins, layout, num_threads, det)


def roi_align(
    input: Tensor, boxes: Tensor | list[Tensor], output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False, *,
    mode: str = "avg", layout: str = "NCHW", num_threads: int | None = None,
    deterministic: bool = False, return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """RoI Align with autograd; ``torchvision.ops.roi_align``'s arguments.

    ``mode="max"`` takes the max of the bilinear samples (mmcv); other
    arguments as in :func:`roi_pool` and :func:`roicore.roi_align`.
    ``return_indices=True`` (``mode="max"``, CPU) also returns each element's
    winning sample (int32, see :func:`roicore.roi_align`) and runs
    ``torch.ops.roicore.roi_align_with_indices``, whose backward scatters from
    them (same gradient, bit for bit; the input is not kept).  Without it the
    max mode recomputes the winners in the backward: its vectorised forward
    and backward together cost less than storing them (unlike RoI Pool's).
    """
    sr = V.check_sampling_ratio(sampling_ratio)
    aligned = V.check_aligned(aligned)
    V.check_mode(mode)
    return_indices = V.check_bool(return_indices, "return_indices")
    if return_indices and mode != "max":
        raise ValueError("return_indices=True needs mode='max': only the max mode has "
                         "winners to store")
    rois, size, scale = _common(input, boxes, output_size, spatial_scale, layout, num_threads)
    det = V.check_bool(deterministic, "deterministic")
    if return_indices:
        return _ops.roi_align_with_indices(input, rois, size, scale, sr, aligned, mode,
                                           layout, num_threads, det)
    return _ops.roi_align(input, rois, size, scale, sr, aligned, mode, layout, num_threads, det)


def roi_warp(
    input: Tensor, boxes: Tensor | list[Tensor], output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, sampling_ratio: int = -1, *, mode: str = "avg",
    compat: str | None = None, layout: str = "NCHW", num_threads: int | None = None,
    deterministic: bool = False, return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """RoI Warp (MNC) with autograd; arguments as in :func:`roicore.roi_warp`.

    ``return_indices=True`` (``mode="max"``, no ``compat``, CPU) also returns
    the winners and the backward scatters from them, as in :func:`roi_align`.
    """
    sr = V.check_sampling_ratio(sampling_ratio)
    V.check_mode(mode)
    V.check_compat(compat)
    V.check_compat_sampling(compat, sr)
    return_indices = V.check_bool(return_indices, "return_indices")
    max_mode = mode == "max" and compat is None
    if return_indices and not max_mode:
        raise ValueError("return_indices=True needs mode='max' and no compat='mnc': only "
                         "the max mode has winners to store")
    rois, size, scale = _common(input, boxes, output_size, spatial_scale, layout, num_threads)
    det = V.check_bool(deterministic, "deterministic")
    if return_indices:
        return _ops.roi_warp_with_indices(input, rois, size, scale, sr, mode, compat, layout,
                                          num_threads, det)
    return _ops.roi_warp(input, rois, size, scale, sr, mode, compat, layout, num_threads, det)


# --------------------------------------------------------------------------- modules
class RoIPool(nn.Module):
    """``torchvision.ops.RoIPool(output_size, spatial_scale)`` plus roicore's options.

    ``forward(input, rois)`` with ``rois`` a Tensor[K, 5] or a list of
    Tensor[K_i, 4] (one per image).
    """

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0, *,
                 bins: str = "fast_rcnn", layout: str = "NCHW",
                 num_threads: int | None = None, deterministic: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.bins = bins
        self.layout = layout
        self.num_threads = num_threads
        self.deterministic = deterministic

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale, bins=self.bins,
                        layout=self.layout, num_threads=self.num_threads,
                        deterministic=self.deterministic)

    def extra_repr(self) -> str:
        s = f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
        return s + ("" if self.bins == "fast_rcnn" else f", bins={self.bins!r}")


class RoIAlign(nn.Module):
    """``torchvision.ops.RoIAlign(output_size, spatial_scale, sampling_ratio, aligned)``
    plus roicore's options (``mode="max"``, NHWC layout, ...)."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, aligned: bool = False, *, mode: str = "avg",
                 layout: str = "NCHW", num_threads: int | None = None,
                 deterministic: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.mode = mode
        self.layout = layout
        self.num_threads = num_threads
        self.deterministic = deterministic

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned, mode=self.mode, layout=self.layout,
                         num_threads=self.num_threads, deterministic=self.deterministic)

    def extra_repr(self) -> str:
        s = (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
             f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
        return s + ("" if self.mode == "avg" else f", mode={self.mode!r}")


class RoIWarp(nn.Module):
    """RoI Warp (MNC) as a module: ``RoIWarp(output_size, spatial_scale,
    sampling_ratio, *, mode, compat)``."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, *, mode: str = "avg", compat: str | None = None,
                 layout: str = "NCHW", num_threads: int | None = None,
                 deterministic: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.mode = mode
        self.compat = compat
        self.layout = layout
        self.num_threads = num_threads
        self.deterministic = deterministic

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_warp(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                        mode=self.mode, compat=self.compat, layout=self.layout,
                        num_threads=self.num_threads, deterministic=self.deterministic)

    def extra_repr(self) -> str:
        s = (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
             f"sampling_ratio={self.sampling_ratio}")
        if self.mode != "avg":
            s += f", mode={self.mode!r}"
        return s + ("" if self.compat is None else f", compat={self.compat!r}")


# --------------------------------------------------------------------------- FPN pooler
def _infer_scale(feature: Tensor, original_size: tuple[int, int]) -> float:
    """torchvision's ``_infer_scale``: the power of two nearest the height ratio."""
    approx = float(feature.shape[-2]) / float(original_size[0])
    return 2.0 ** round(math.log2(approx))


class MultiScaleRoIAlign(nn.Module):
    """Drop-in for ``torchvision.ops.MultiScaleRoIAlign`` (the FPN RoI pooler).

    Same constructor, same ``forward(x, boxes, image_shapes)``, bit-identical
    output and input gradients: the scales are inferred from the first call's
    feature/image size ratios and each RoI goes to level
    ``clamp(floor(k0 + log2(sqrt(area) / s0 + 1e-6)), k_min, k_max)``, computed
    with torchvision's float32 expression.  All levels are pooled by ONE
    registered op, ``torch.ops.roicore.multi_scale_roi_align``: inside it the
    levels are assigned in one vectorised pass (a stable sort by level) and
    roicore's RoI Align kernel runs once per non-empty level on that level's
    RoIs.  No per-level Python loop, ``nonzero`` or host sync is visible to
    autograd, ``torch.compile`` (``fullgraph=True``) or ``torch.export``.

    Parameters
    ----------
    featmap_names : list of str
        Keys of the feature maps to pool from, finest first.
    output_size : int or (int, int)
        Output bins (PH, PW).
    sampling_ratio : int
        Samples per bin side (``<= 0``: adaptive), as in RoI Align.
    canonical_scale, canonical_level : int, optional
        ``s0`` and ``k0`` of the FPN paper's level rule (224 and 4).
    num_threads : int, optional
        OpenMP threads of the CPU kernels (default: OpenMP's default).
    deterministic : bool, optional
        Bit-identical gradients on CUDA (the CPU is always deterministic).

    Examples
    --------
    >>> import torch
    >>> from roicore.torch import MultiScaleRoIAlign
    >>> m = MultiScaleRoIAlign(["feat1", "feat3"], 3, 2)
    >>> x = {"feat1": torch.rand(1, 5, 64, 64), "feat3": torch.rand(1, 5, 16, 16)}
    >>> boxes = torch.rand(6, 4) * 256
    >>> boxes[:, 2:] += boxes[:, :2]
    >>> m(x, [boxes], [(512, 512)]).shape
    torch.Size([6, 5, 3, 3])
    """

    def __init__(self, featmap_names: list[str], output_size: int | tuple[int, int] | list[int],
                 sampling_ratio: int, *, canonical_scale: int = 224, canonical_level: int = 4,
                 num_threads: int | None = None, deterministic: bool = False) -> None:
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        V.check_output_size(tuple(output_size))
        V.check_sampling_ratio(sampling_ratio)
        if num_threads is not None:
            V.check_num_threads(num_threads, 1)
        self.featmap_names = list(featmap_names)
        self.output_size = tuple(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level
        self.num_threads = num_threads
        self.deterministic = deterministic
        self.scales: list[float] | None = None
        self.k_min: int | None = None
        self.k_max: int | None = None
        self.eps = 1e-6

    @classmethod
    def from_torchvision(cls, pooler: nn.Module, *, num_threads: int | None = None,
                         deterministic: bool = False) -> MultiScaleRoIAlign:
        """The roicore equivalent of a ``torchvision.ops.MultiScaleRoIAlign``.

        Parameters
        ----------
        pooler : torchvision.ops.MultiScaleRoIAlign
            Its featmap names, output size, sampling ratio, canonical scale and
            level are copied, and its scales and level range if it has already run.
        num_threads, deterministic
            As in the constructor.

        Returns
        -------
        MultiScaleRoIAlign

        Examples
        --------
        >>> model.roi_heads.box_roi_pool = MultiScaleRoIAlign.from_torchvision(
        ...     model.roi_heads.box_roi_pool)  # doctest: +SKIP
        """
        new = cls(pooler.featmap_names, pooler.output_size, pooler.sampling_ratio,
                  canonical_scale=pooler.canonical_scale,
                  canonical_level=pooler.canonical_level,
                  num_threads=num_threads, deterministic=deterministic)
        mapper = getattr(pooler, "map_levels", None)
        if getattr(pooler, "scales", None) is not None and mapper is not None:
            new.scales = list(pooler.scales)
            new.k_min, new.k_max, new.eps = int(mapper.k_min), int(mapper.k_max), mapper.eps
        return new

    def _setup_scales(self, features: list[Tensor], image_shapes: list[tuple[int, int]]) -> None:
        if not image_shapes:
            raise ValueError("`image_shapes` must not be empty")
        max_x = max(int(s[0]) for s in image_shapes)
        max_y = max(int(s[1]) for s in image_shapes)
        scales = [_infer_scale(f, (max_x, max_y)) for f in features]
        self.k_min = int(-math.log2(scales[0]))
        self.k_max = int(-math.log2(scales[-1]))
        self.scales = scales

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> Tensor:
        """Pool every box from its FPN level.

        Parameters
        ----------
        x : dict of str to Tensor[N, C, H_l, W_l]
            Feature maps; those named in ``featmap_names`` are used, in the
            dict's order.
        boxes : list of Tensor[K_i, 4]
            ``[x1, y1, x2, y2]`` per image, in image coordinates.
        image_shapes : list of (int, int)
            (height, width) of each image before the backbone.

        Returns
        -------
        Tensor[sum K_i, C, PH, PW]
        """
        features = [v for k, v in x.items() if k in self.featmap_names]
        if not features:
            raise ValueError(
                f"none of `featmap_names` {self.featmap_names} is a key of `x` "
                f"({list(x.keys())})"
            )
        if self.scales is None:
            self._setup_scales(features, image_shapes)
        if not isinstance(boxes, (list, tuple)) or not all(isinstance(b, Tensor) for b in boxes):
            raise TypeError("`boxes` must be a list of Tensor[K_i, 4] (one per image)")
        rois = _as_rois(list(boxes), features[0])
        return _ops.multi_scale_roi_align(
            features, rois, list(self.scales), list(self.output_size),
            V.check_sampling_ratio(self.sampling_ratio), False, self.k_min, self.k_max,
            self.canonical_scale, self.canonical_level, self.eps, self.num_threads,
            bool(self.deterministic))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
                f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})")


def replace_roi_poolers(model: nn.Module, *, num_threads: int | None = None,
                        deterministic: bool = False) -> nn.Module:
    """Swap every torchvision RoI pooler inside ``model`` for roicore's, in place.

    ``torchvision.ops.MultiScaleRoIAlign``, ``RoIAlign`` and ``RoIPool``
    modules become :class:`MultiScaleRoIAlign`, :class:`RoIAlign` and
    :class:`RoIPool` with the same settings (identical results).  Anything else
    is left alone.

    Parameters
    ----------
    model : nn.Module
        E.g. ``torchvision.models.detection.maskrcnn_resnet50_fpn(...)``.
    num_threads, deterministic
        Passed to the new modules.

    Returns
    -------
    nn.Module
        ``model`` itself (modified in place), for chaining.

    Examples
    --------
    >>> import torchvision  # doctest: +SKIP
    >>> model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None)  # doctest: +SKIP
    >>> roicore.torch.replace_roi_poolers(model)  # doctest: +SKIP
    """
    try:
        from torchvision import ops as tv_ops
    except ImportError as exc:  # pragma: no cover - needs torchvision absent
        raise ImportError("replace_roi_poolers needs torchvision: pip install torchvision") from exc

    def convert(m: nn.Module) -> nn.Module | None:
        kw: dict[str, Any] = dict(num_threads=num_threads, deterministic=deterministic)
        if isinstance(m, tv_ops.MultiScaleRoIAlign):
            return MultiScaleRoIAlign.from_torchvision(m, **kw)
        if isinstance(m, tv_ops.RoIAlign):
            return RoIAlign(m.output_size, m.spatial_scale, m.sampling_ratio, m.aligned, **kw)
        if isinstance(m, tv_ops.RoIPool):
            return RoIPool(m.output_size, m.spatial_scale, **kw)
        return None

    for name, child in list(model.named_children()):
        new = convert(child)
        if new is None:
            replace_roi_poolers(child, num_threads=num_threads, deterministic=deterministic)
        else:
            setattr(model, name, new)
    return model


# --------------------------------------------------------------------------- ONNX
def onnx_translation_table() -> dict[Any, Any]:
    """ONNX translations of roicore's ops, for ``torch.onnx.export(..., dynamo=True)``.

    Pass it as ``custom_translation_table``: ``roi_align`` (``mode="avg"``)
    becomes the standard ONNX ``RoiAlign`` (``coordinate_transformation_mode``
    ``"half_pixel"`` for ``aligned=True``, ``"output_half_pixel"`` otherwise;
    the batch indices split out as int64) and ``roi_pool`` (``bins="fast_rcnn"``)
    becomes ``MaxRoiPool``; ``MultiScaleRoIAlign`` becomes the level rule, one
    ``RoiAlign`` per level over all RoIs and a ``Where`` per level.  Ops with no
    ONNX equivalent (``mode="max"``, ``bins="equal"``, ``roi_warp``, NHWC) make
    the export fail with an error naming the op.  Needs ``onnxscript``.

    Returns
    -------
    dict
        ``{torch.ops.roicore.<op>.default: onnxscript function}``.

    Examples
    --------
    >>> table = onnx_translation_table()
    >>> prog = torch.onnx.export(model, (x, rois), dynamo=True,
    ...                          custom_translation_table=table)  # doctest: +SKIP
    """
    from ._torch import onnx as _torch_onnx

    return _torch_onnx.translation_table()


__all__ = ["MultiScaleRoIAlign", "RoIAlign", "RoIPool", "RoIWarp", "onnx_translation_table",
           "replace_roi_poolers", "roi_align", "roi_pool", "roi_warp"]
