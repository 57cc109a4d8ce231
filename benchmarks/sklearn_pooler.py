"""RoIPooler.transform against one direct roicore.roi_align call (issue 13).

2000 one-box samples, three ways of holding their feature maps:

* ``views``    -- ``[(batch[i], box_i)]``: maps cut from one (2000, C, H, W) array
                  (pooled in place, no copy);
* ``shared``   -- 500 images x 4 boxes through ``one_box_per_sample`` (500 separate
                  maps, stacked once into a (500, C, H, W) batch);
* ``separate`` -- 2000 separate map arrays (all stacked: a 2000-map copy).

``direct`` is one ``roicore.roi_align`` call on the already-stacked batch (the goal:
transform within 1.5x of it); ``loop`` is one call per sample (the old transform).

Run from the repository root::

    python -m benchmarks.sklearn_pooler            # add --quick for fewer repeats
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import roicore
from roicore.sklearn import RoIPooler, one_box_per_sample


def best_ms(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def boxes(rng, n, size):
    xy = rng.uniform(0, size * 0.6, (n, 2))
    return np.hstack([xy, xy + rng.uniform(2, size * 0.4, (n, 2))]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--size", type=int, default=32, help="feature map height and width")
    ap.add_argument("--output-size", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 repeats instead of 10")
    args = ap.parse_args()
    repeat = 3 if args.quick else 10
    n, C, S, P = args.samples, args.channels, args.size, args.output_size
    rng = np.random.default_rng(0)
    pooler = RoIPooler(output_size=P, sampling_ratio=2)

    def direct(x, r):
        return roicore.roi_align(x, r, P, 1.0, 2)

    rows = []
    # views: maps are slices of one batch
    batch = rng.random((n, C, S, S), dtype=np.float32)
    b = boxes(rng, n, S)
    rois = np.hstack([np.arange(n, dtype=np.float32)[:, None], b])
    X_views = [(batch[i], b[i]) for i in range(n)]
    ref = direct(batch, rois).reshape(n, -1)
    assert np.array_equal(pooler.transform(X_views), ref)
    t_direct = best_ms(lambda: direct(batch, rois), repeat)
    rows.append(("views", t_direct, best_ms(lambda: pooler.transform(X_views), repeat)))
    # shared: 4 boxes per image, one_box_per_sample
    n_img = n // 4
    maps = [rng.random((C, S, S), dtype=np.float32) for _ in range(n_img)]
    X_img = [(m, boxes(rng, 4, S)) for m in maps]
    Xb, _, groups = one_box_per_sample(X_img)
    stacked = np.stack(maps)
    rois_s = np.hstack([groups[:, None].astype(np.float32),
                        np.concatenate([bb for _, bb in X_img])])
    assert np.array_equal(pooler.transform(Xb), direct(stacked, rois_s).reshape(n, -1))
    rows.append(("shared", best_ms(lambda: direct(stacked, rois_s), repeat),
                 best_ms(lambda: pooler.transform(Xb), repeat)))
    # separate: every sample its own map
    X_sep = [(batch[i].copy(), b[i]) for i in range(n)]
    rows.append(("separate", t_direct, best_ms(lambda: pooler.transform(X_sep), repeat)))
    t_loop = best_ms(lambda: [direct(f[None], [bb[None]]) for f, bb in X_views], 1)

    print(f"{n} one-box samples, maps ({C}, {S}, {S}) float32, roi_align output {P}x{P}, "
          f"sampling_ratio=2, {roicore.default_num_threads()} threads")
    print(f"{'maps':10s} {'direct ms':>10s} {'transform ms':>13s} {'ratio':>6s}")
    for name, d, t in rows:
        print(f"{name:10s} {d:10.2f} {t:13.2f} {t / d:6.2f}")
    print(f"{'loop':10s} {t_direct:10.2f} {t_loop:13.2f} {t_loop / t_direct:6.2f}"
          "   (one call per sample, the old transform)")


if __name__ == "__main__":
    main()
