"""roicore.torch.MultiScaleRoIAlign vs torchvision.ops.MultiScaleRoIAlign on the CPU.

The FPN RoI step of a torchvision detector at its default size: an 800x1088
image gives 4 levels at strides 4, 8, 16, 32 (200x272 ... 25x34), 256 channels,
2 images with 1000 boxes each (proposal-like sizes, log-uniform 8..800 px),
output 7x7, sampling_ratio 2.  Forward (no autograd) and backward (the
gradient w.r.t. the four feature maps, from a retained graph) are timed for
each thread count (``torch.set_num_threads(n)`` and roicore's ``num_threads=n``),
in interleaved rounds; the table gives medians and torchvision/roicore ratios.
The outputs and gradients are checked bit-identical first.

    python benchmarks/torch_multiscale.py              # 1 and 2 threads, 7 rounds
    python benchmarks/torch_multiscale.py --rounds 3 --threads 1,2,4
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import OrderedDict

import torch
import torchvision

import roicore.torch as rt

NAMES = ["0", "1", "2", "3"]


def make_inputs(height: int, width: int, channels: int, boxes_per_image: int, images: int,
                seed: int = 0) -> tuple[OrderedDict, list[torch.Tensor], list[tuple[int, int]]]:
    g = torch.Generator().manual_seed(seed)
    x = OrderedDict(
        (n, torch.randn(images, channels, height // s, width // s, generator=g)
         .requires_grad_(True))
        for n, s in zip(NAMES, (4, 8, 16, 32), strict=True))
    boxes = []
    for _ in range(images):
        side = torch.exp(torch.empty(boxes_per_image, 2).uniform_(
            torch.log(torch.tensor(8.0)).item(), torch.log(torch.tensor(800.0)).item(),
            generator=g))
        xy = torch.rand(boxes_per_image, 2, generator=g) * torch.tensor([width, height])
        b = torch.cat([xy, xy + side], 1)
        b[:, 0::2] = b[:, 0::2].clamp(0, width)
        b[:, 1::2] = b[:, 1::2].clamp(0, height)
        boxes.append(b)
    return x, boxes, [(height, width)] * images


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--width", type=int, default=1088)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--boxes", type=int, default=1000, help="boxes per image")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--output-size", type=int, default=7)
    p.add_argument("--sampling-ratio", type=int, default=2)
    a = p.parse_args(argv)

    x, boxes, shapes = make_inputs(a.height, a.width, a.channels, a.boxes, a.images)
    feats = [x[n] for n in NAMES]
    tv = torchvision.ops.MultiScaleRoIAlign(NAMES, a.output_size, a.sampling_ratio)
    print(f"# torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print(f"# FPN {a.height}x{a.width}, levels {[tuple(f.shape[2:]) for f in feats]}, "
          f"C={a.channels}, {a.images}x{a.boxes} boxes, output {a.output_size}, "
          f"sampling_ratio {a.sampling_ratio}; medians of {a.rounds} interleaved rounds")
    print(f"{'threads':>7} {'pass':>8} {'torchvision ms':>15} {'roicore ms':>11} {'ratio':>6}")
    for n in (int(t) for t in a.threads.split(",")):
        torch.set_num_threads(n)
        rc = rt.MultiScaleRoIAlign(NAMES, a.output_size, a.sampling_ratio, num_threads=n)
        # correctness first: bit-identical output and gradients
        y_tv, y_rc = tv(x, boxes, shapes), rc(x, boxes, shapes)
        g = torch.randn(y_tv.shape, generator=torch.Generator().manual_seed(1))
        assert torch.equal(y_tv, y_rc), "forward differs from torchvision"
        for u, v in zip(torch.autograd.grad(y_tv, feats, g, retain_graph=True),
                        torch.autograd.grad(y_rc, feats, g, retain_graph=True), strict=True):
            assert torch.equal(u, v), "gradient differs from torchvision"
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(a.rounds):
            for name, mod, y in (("tv", tv, y_tv), ("rc", rc, y_rc)):
                with torch.no_grad():
                    times.setdefault((name, "forward"), []).append(
                        _time(lambda mod=mod: mod(x, boxes, shapes)))
                times.setdefault((name, "backward"), []).append(_time(
                    lambda y=y, g=g: torch.autograd.grad(y, feats, g, retain_graph=True)))
        for phase in ("forward", "backward"):
            t_tv = statistics.median(times[("tv", phase)]) * 1e3
            t_rc = statistics.median(times[("rc", phase)]) * 1e3
            print(f"{n:>7} {phase:>8} {t_tv:>15.1f} {t_rc:>11.1f} {t_tv / t_rc:>5.2f}x")


if __name__ == "__main__":
    main()
