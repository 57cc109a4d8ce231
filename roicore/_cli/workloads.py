"""Standard benchmark workloads (issue 4), shared by ``python -m roicore bench``
and the asv suites in ``benchmarks/``.

Every workload is fully determined by its parameters and seed: the same
workload always gives the same arrays, in any process.  Boxes lie inside the
image (``0 <= x1 < x2 <= image width``, likewise for y), with each side drawn
uniformly from ``side`` pixels (clipped to the image).

- W1 "fast-rcnn": input (2, 256, 50, 68), 1000 RoIs, sides 16..600 px in an
  800x1088 image, scale 1/16, roi_align 7x7, sampling_ratio 2.
- W2 "mask-rcnn-p2": input (2, 256, 200, 272), 1024 RoIs, sides 16..600 px in
  800x1088, scale 1/4, roi_align 14x14, sampling_ratio 2.
- W3 "many-small": input (8, 64, 64, 64), 8000 RoIs, sides 8..128 px in
  512x512, scale 1/8, roi_align 7x7, sampling_ratio 2.
- W4 "fast-rcnn-pool": W1's arrays through roi_pool 7x7.
- S1 "small-align": input (1, 256, 50, 68), ONE RoI (sides 150..250 px in
  800x1088), scale 1/16, roi_align 7x7, sampling_ratio 2: the latency of a
  small call (issue 14: it must not collapse when another process holds a
  core, and must be at least as fast as torchvision's).
- S2 "small-pool": S1's arrays through roi_pool 7x7.

RoI Align runs with ``aligned=True``.  ``Workload.quick()`` is a reduced copy
(fewer channels and RoIs) for smoke runs in CI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["WORKLOADS", "Workload", "get"]


def _uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 uniform in [-1, 1) (several times faster to draw than normals)."""
    a = rng.random(shape, dtype=np.float32)
    a *= 2
    a -= 1
    return a


@dataclass(frozen=True)
class Workload:
    """One benchmark problem: shapes, box distribution and operator settings."""

    name: str
    title: str
    op: str  # "align" or "pool"
    N: int
    C: int
    H: int
    W: int
    K: int  # total RoIs, split evenly over the N images
    image_hw: tuple[int, int]  # image size in pixels (height, width)
    side: tuple[float, float]  # box side range in pixels
    spatial_scale: float
    output_size: tuple[int, int]
    sampling_ratio: int = 2
    aligned: bool = True
    seed: int = 0

    # ------------------------------------------------------------------ arrays
    def input_shape(self, layout: str = "NCHW") -> tuple[int, int, int, int]:
        if layout == "NHWC":
            return (self.N, self.H, self.W, self.C)
        return (self.N, self.C, self.H, self.W)

    def output_shape(self, layout: str = "NCHW") -> tuple[int, int, int, int]:
        ph, pw = self.output_size
        if layout == "NHWC":
            return (self.K, ph, pw, self.C)
        return (self.K, self.C, ph, pw)

    def input(self, dtype: Any = np.float32, layout: str = "NCHW") -> np.ndarray:
        """Feature map, uniform in [-1, 1), C-contiguous in ``layout``.

        The values are drawn in NCHW order, so the NHWC array is the NCHW one
        transposed (both layouts see the same numbers)."""
        rng = np.random.default_rng([self.seed, 1])
        x = _uniform(rng, (self.N, self.C, self.H, self.W)).astype(dtype, copy=False)
        if layout == "NHWC":
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return x

    def rois(self, dtype: Any = np.float32) -> np.ndarray:
        """(K, 5) boxes ``[batch_index, x1, y1, x2, y2]`` inside the image,
        grouped by image (K/N per image)."""
        rng = np.random.default_rng([self.seed, 2])
        ih, iw = self.image_hw
        lo, hi = self.side
        k = self.K
        w = np.minimum(rng.uniform(lo, hi, k), iw)
        h = np.minimum(rng.uniform(lo, hi, k), ih)
        x1 = rng.uniform(0.0, 1.0, k) * (iw - w)
        y1 = rng.uniform(0.0, 1.0, k) * (ih - h)
        b = np.repeat(np.arange(self.N), -(-k // self.N))[:k]
        r = np.stack([b, x1, y1, x1 + w, y1 + h], axis=1)
        # float32 rounding must not push a box outside the image
        r[:, 3] = np.minimum(r[:, 3], iw)
        r[:, 4] = np.minimum(r[:, 4], ih)
        return r.astype(dtype)

    def grad_output(self, dtype: Any = np.float32, layout: str = "NCHW") -> np.ndarray:
        rng = np.random.default_rng([self.seed, 3])
        g = _uniform(rng, self.output_shape("NCHW")).astype(dtype, copy=False)
        if layout == "NHWC":
            return np.ascontiguousarray(g.transpose(0, 2, 3, 1))
        return g

    # ------------------------------------------------------------------ running
    def kwargs(self) -> dict[str, Any]:
        """Operator keywords after (input, rois, output_size, spatial_scale)."""
        if self.op == "pool":
            return {}
        return {"sampling_ratio": self.sampling_ratio, "aligned": self.aligned}

    def forward(self, x: Any, rois: Any, **kw: Any) -> Any:
        import roicore

        f = roicore.roi_pool if self.op == "pool" else roicore.roi_align
        return f(x, rois, self.output_size, self.spatial_scale, **self.kwargs(), **kw)

    def backward(self, g: Any, x: Any, rois: Any, **kw: Any) -> Any:
        import roicore

        f = roicore.roi_pool_backward if self.op == "pool" else roicore.roi_align_backward
        return f(g, x, rois, self.output_size, self.spatial_scale, **self.kwargs(), **kw)

    def quick(self) -> Workload:
        """A reduced copy (C/8, K/10, at least one RoI per image) for smoke runs
        (a small-call workload keeps its one RoI)."""
        return dataclasses.replace(
            self, name=self.name + "-quick", C=max(self.C // 8, 1),
            K=max(self.K // 10, self.N))

    def describe(self) -> str:
        ph, pw = self.output_size
        op = (f"roi_align {ph}x{pw} sr={self.sampling_ratio} aligned={self.aligned}"
              if self.op == "align" else f"roi_pool {ph}x{pw}")
        return (f"{self.name} {self.title}: input {self.input_shape()}, {self.K} RoIs "
                f"(sides {self.side[0]:g}..{self.side[1]:g} px in {self.image_hw[0]}x"
                f"{self.image_hw[1]}), scale 1/{round(1 / self.spatial_scale)}, {op}")


WORKLOADS: dict[str, Workload] = {
    "W1": Workload("W1", "fast-rcnn", "align", 2, 256, 50, 68, 1000, (800, 1088),
                   (16.0, 600.0), 1.0 / 16, (7, 7), seed=1),
    "W2": Workload("W2", "mask-rcnn-p2", "align", 2, 256, 200, 272, 1024, (800, 1088),
                   (16.0, 600.0), 1.0 / 4, (14, 14), seed=2),
    "W3": Workload("W3", "many-small", "align", 8, 64, 64, 64, 8000, (512, 512),
                   (8.0, 128.0), 1.0 / 8, (7, 7), seed=3),
    # W1's inputs (same seed, same arrays) through RoI Pool.
    "W4": Workload("W4", "fast-rcnn-pool", "pool", 2, 256, 50, 68, 1000, (800, 1088),
                   (16.0, 600.0), 1.0 / 16, (7, 7), seed=1),
    "S1": Workload("S1", "small-align", "align", 1, 256, 50, 68, 1, (800, 1088),
                   (150.0, 250.0), 1.0 / 16, (7, 7), seed=5),
    # S1's inputs through RoI Pool.
    "S2": Workload("S2", "small-pool", "pool", 1, 256, 50, 68, 1, (800, 1088),
                   (150.0, 250.0), 1.0 / 16, (7, 7), seed=5),
}


def get(name: str) -> Workload:
    """The workload called ``name`` (``W1``..``W4``, ``S1``, ``S2``; case-insensitive)."""
    try:
        return WORKLOADS[name.upper()]
    except KeyError:
        raise ValueError(
            f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}") from None
