"""PyTorch front end: autograd functions and ``nn.Module`` s (CPU and CUDA tensors).

Drop-in for ``torchvision.ops.roi_pool`` / ``roi_align`` (same arguments,
same results), plus RoI Warp and roicore's extra options (``mode="max"``,
``bins="equal"``, ``compat="mnc"``, NHWC layout).  The tensors' memory goes
to roicore's kernels through DLPack without a copy: CPU tensors run on the
OpenMP backend, CUDA tensors on the CuPy backend.  Gradients flow to
``input``; ``rois`` get none (as in torchvision).

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

from typing import Any

try:
    import torch
    from torch import Tensor, nn
    from torch.autograd.function import once_differentiable
except ImportError as _exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "roicore.torch needs PyTorch: pip install torch (or pip install 'roicore[torch]')"
    ) from _exc

from . import _api
from . import _validation as _V

_FORWARD = {"pool": _api.roi_pool, "align": _api.roi_align, "warp": _api.roi_warp}
_BACKWARD = {
    "pool": _api.roi_pool_backward,
    "align": _api.roi_align_backward,
    "warp": _api.roi_warp_backward,
}


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
            # float64 (like the NumPy list form): the list position is the batch index
            # and must stay exact beyond 2**24 images; float32 boxes convert exactly.
            b = b.detach().to(device=input.device).resolve_conj().resolve_neg()
            idx = torch.full((b.shape[0], 1), float(i), dtype=torch.float64, device=input.device)
            parts.append(torch.cat([idx, b.to(torch.float64)], dim=1))
        N = int(input.shape[0]) if input.dim() > 0 else 0
        if len(boxes) != N:
            raise ValueError(
                f"`rois` given as a list must have one Tensor[K_i, 4] per image: input has "
                f"N={N} images but the list has {len(boxes)} entries (use an empty "
                f"Tensor[0, 4] for an image without boxes)"
            )
        if not parts:
            return torch.zeros((0, 5), dtype=torch.float64, device=input.device)
        return torch.cat(parts, dim=0)
    if not isinstance(boxes, Tensor):
        raise TypeError(
            "`rois` must be a Tensor[K, 5] [batch_index, x1, y1, x2, y2] or a list of "
            f"Tensor[K_i, 4] (one per image); got {type(boxes).__name__}"
        )
    return boxes.detach().to(device=input.device)


class _RoIFunction(torch.autograd.Function):
    """``input`` -> roicore forward; ``grad_output`` -> roicore backward."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, rois: Tensor, op: str, kwargs: dict,
                deterministic: bool) -> Tensor:
        ctx.op = op
        ctx.kwargs = kwargs
        ctx.deterministic = deterministic
        ctx.save_for_backward(input, rois)
        return _FORWARD[op](input.detach(), rois, **kwargs)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        input, rois = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = _BACKWARD[ctx.op](grad_output.contiguous(), input.detach(), rois,
                                           deterministic=ctx.deterministic, **ctx.kwargs)
        return grad_input, None, None, None, None


def _apply(op: str, input: Tensor, boxes: Any, kwargs: dict, deterministic: bool) -> Tensor:
    if not isinstance(input, Tensor):
        raise TypeError(f"`input` must be a torch.Tensor; got {type(input).__name__}")
    rois = _as_rois(boxes, input)
    _V.check_bool(deterministic, "deterministic")
    if input.requires_grad and torch.is_grad_enabled():
        return _RoIFunction.apply(input, rois, op, kwargs,
                                  _V.check_bool(deterministic, "deterministic"))
    return _FORWARD[op](input.detach(), rois, **kwargs)


# --------------------------------------------------------------------------- functions
def roi_pool(
    input: Tensor, boxes: Tensor | list[Tensor], output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, *, bins: str = "fast_rcnn", layout: str = "NCHW",
    num_threads: int | None = None, deterministic: bool = False,
) -> Tensor:
    """RoI max pooling with autograd; ``torchvision.ops.roi_pool``'s arguments.

    Parameters
    ----------
    input : Tensor[N, C, H, W]
        Feature map (CPU or CUDA; float16/32/64).
    boxes : Tensor[K, 5] or list of Tensor[K_i, 4]
        ``[batch_index, x1, y1, x2, y2]`` rows, or one ``[x1, y1, x2, y2]``
        tensor per image, in input-image coordinates.
    output_size : int or (int, int)
    spatial_scale : float
    bins, layout, num_threads
        As in :func:`roicore.roi_pool`.
    deterministic : bool
        Bit-identical gradients on CUDA (the CPU is always deterministic).

    Returns
    -------
    Tensor[K, C, PH, PW]
    """
    kw = dict(output_size=output_size, spatial_scale=spatial_scale, bins=bins, layout=layout,
              num_threads=num_threads)
    return _apply("pool", input, boxes, kw, deterministic)


def roi_align(
    input: Tensor, boxes: Tensor | list[Tensor], output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False, *,
    mode: str = "avg", layout: str = "NCHW", num_threads: int | None = None,
    deterministic: bool = False,
) -> Tensor:
    """RoI Align with autograd; ``torchvision.ops.roi_align``'s arguments.

    ``mode="max"`` takes the max of the bilinear samples (mmcv); other
    arguments as in :func:`roi_pool` and :func:`roicore.roi_align`.
    """
    kw = dict(output_size=output_size, spatial_scale=spatial_scale,
              sampling_ratio=sampling_ratio, aligned=aligned, mode=mode, layout=layout,
              num_threads=num_threads)
    return _apply("align", input, boxes, kw, deterministic)


def roi_warp(
    input: Tensor, boxes: Tensor | list[Tensor], output_size: int | tuple[int, int],
    spatial_scale: float = 1.0, sampling_ratio: int = -1, *, mode: str = "avg",
    compat: str | None = None, layout: str = "NCHW", num_threads: int | None = None,
    deterministic: bool = False,
) -> Tensor:
    """RoI Warp (MNC) with autograd; arguments as in :func:`roicore.roi_warp`."""
    kw = dict(output_size=output_size, spatial_scale=spatial_scale,
              sampling_ratio=sampling_ratio, mode=mode, compat=compat, layout=layout,
              num_threads=num_threads)
    return _apply("warp", input, boxes, kw, deterministic)


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


__all__ = ["RoIAlign", "RoIPool", "RoIWarp", "roi_align", "roi_pool", "roi_warp"]
