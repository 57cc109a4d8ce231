"""``python -m roicore demo``: the worked example of the RoI-pooling explainer.

One 8x8 feature map, one RoI with top-left (0, 3) and bottom-right (7, 8)
(7 wide, 5 tall), pooled to 2x2 with the explainer's equal sections; then
the same map through the other operators.
"""

from __future__ import annotations

import argparse

import numpy as np

#: The 8x8 feature map of the explainer (rows are y, columns are x).
SEED_MAP = np.array(
    [
        [0.88, 0.44, 0.14, 0.16, 0.37, 0.77, 0.96, 0.27],
        [0.19, 0.45, 0.57, 0.16, 0.63, 0.29, 0.71, 0.70],
        [0.66, 0.26, 0.82, 0.64, 0.54, 0.73, 0.59, 0.26],
        [0.85, 0.34, 0.76, 0.84, 0.29, 0.75, 0.62, 0.25],
        [0.32, 0.74, 0.21, 0.39, 0.34, 0.03, 0.33, 0.48],
        [0.20, 0.14, 0.16, 0.13, 0.73, 0.65, 0.96, 0.32],
        [0.19, 0.69, 0.09, 0.86, 0.88, 0.07, 0.01, 0.48],
        [0.83, 0.24, 0.97, 0.04, 0.24, 0.35, 0.50, 0.91],
    ],
    dtype=np.float32,
)
#: [batch_index, x1, y1, x2, y2]
SEED_ROI = np.array([[0, 0, 3, 7, 8]], dtype=np.float32)
#: The explainer's printed output.
SEED_OUTPUT = np.array([[0.85, 0.84], [0.97, 0.96]], dtype=np.float32)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="data type of the feature map (default float32)")


def _fmt(a: np.ndarray) -> str:
    return "\n".join("    " + " ".join(f"{v:5.2f}" for v in row) for row in a)


def _sections(lo: int, hi: int, n: int) -> list[tuple[int, int]]:
    size = max(hi - lo, 1)
    out = []
    for i in range(n):
        a, b = i * size // n, (i + 1) * size // n
        out.append((lo + a, lo + max(b, a + 1)))
    return out


def run(args: argparse.Namespace) -> int:
    import roicore

    roicore.openmp_enabled()  # an unbuilt checkout fails here, before anything is printed
    x = SEED_MAP.astype(args.dtype)[None, None]
    rois = SEED_ROI.astype(args.dtype)
    _, x1, y1, x2, y2 = (int(v) for v in SEED_ROI[0])
    print("roicore demo: the RoI pooling explainer's worked example\n")
    print("feature map (8x8, rows y=0..7, columns x=0..7):")
    print(_fmt(SEED_MAP))
    print(f"\nRoI: top-left (x={x1}, y={y1}), bottom-right (x={x2}, y={y2}) "
          f"-> {x2 - x1} wide x {y2 - y1} tall (rows {y1}..{y2 - 1}, columns {x1}..{x2 - 1})")
    print("\nsections for a 2x2 output (bins='equal'; end exclusive):")
    for i, (r0, r1) in enumerate(_sections(y1, y2, 2)):
        for j, (c0, c1) in enumerate(_sections(x1, x2, 2)):
            block = SEED_MAP[r0:r1, c0:c1]
            print(f"  [{i},{j}] rows {r0}..{r1 - 1}, columns {c0}..{c1 - 1}: "
                  f"max {block.max():.2f}")
    pooled = roicore.roi_pool(x, rois, 2, bins="equal")[0, 0]
    print("\nroi_pool(x, rois, 2, bins='equal'):")
    print(_fmt(pooled))
    ok = np.array_equal(pooled.astype(np.float32), SEED_OUTPUT)
    print(f"  matches the explainer's [[0.85, 0.84], [0.97, 0.96]]: {'yes' if ok else 'NO'}")
    print("\nroi_pool(x, rois, 2) (bins='fast_rcnn', torchvision/Caffe; inclusive end, "
          "bins may overlap):")
    print(_fmt(roicore.roi_pool(x, rois, 2)[0, 0]))
    print("\nroi_align(x, rois, 2, sampling_ratio=2, aligned=True) (bilinear, no rounding):")
    print(_fmt(roicore.roi_align(x, rois, 2, sampling_ratio=2, aligned=True)[0, 0]))
    print("\nroi_align(x, rois, 2, sampling_ratio=2, aligned=True, mode='max'):")
    print(_fmt(roicore.roi_align(x, rois, 2, sampling_ratio=2, aligned=True, mode="max")[0, 0]))
    print("\nroi_warp(x, rois, 2, sampling_ratio=2) (rounded box, then bilinear):")
    print(_fmt(roicore.roi_warp(x, rois, 2, sampling_ratio=2)[0, 0]))
    print("\nroi_warp(x, rois, 2, compat='mnc') (MNC: one sample at each bin's top-left):")
    print(_fmt(roicore.roi_warp(x, rois, 2, compat="mnc")[0, 0]))
    return 0 if ok else 1
