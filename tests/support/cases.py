"""Random cases shared by the parity tests (oracle) and the GPU tests (CPU backend).

Every case draws its input map and a mixed bag of RoIs from a NumPy RNG seeded by the case's
parameters, so a failing case is reproducible from its test id alone.
"""

import zlib

import numpy as np

N, C, H, W = 2, 3, 9, 11  # non-square map, non-square outputs: H/W mix-ups show up


def case_id(v):
    """pytest id for a parameter value (dtypes by name)."""
    return v.__name__ if isinstance(v, type) else repr(v)


def case_rng(*key):
    """RNG seeded from the case parameters (stable across runs and processes)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def make_input(rng, dtype, shape=(N, C, H, W)):
    """Distinct values (no ties for the max modes).

    float16 gets multiples of 1/64 (exact in float16); the wider types get an additional
    random fraction so their mantissas are fully used.
    """
    n = int(np.prod(shape))
    base = rng.permutation(n).astype(np.float64) - n / 2
    if dtype != np.float16:
        base = base + rng.uniform(0.05, 0.95, n)
    return (base / 64).reshape(shape).astype(dtype)


def make_rois(rng, scale, n_batch=N, h=H, w=W, k=12):
    """(k, 5) float64 RoIs in image coordinates (feature coordinates / scale)."""

    def interval(kind, size):
        if kind == "inside":
            a = rng.uniform(0, size - 1)
            return a, a + rng.uniform(0.5, size - a)
        if kind == "partial":
            if rng.random() < 0.5:
                return rng.uniform(-4, 0), rng.uniform(1, size)
            return rng.uniform(0, size - 1), rng.uniform(size, size + 4)
        if kind == "outside":
            if rng.random() < 0.5:
                a = rng.uniform(size + 1.5, size + 6)
                return a, a + rng.uniform(0, 3)
            a = rng.uniform(-9, -4)
            return a, a + rng.uniform(0, 2)
        if kind == "degenerate":
            a = rng.uniform(1, size)
            return a, a - rng.uniform(0.1, 1.5)
        if kind == "very_degenerate":  # x2 < x1 by more than the output size
            a = rng.uniform(size / 2, size + 2)
            return a, a - rng.uniform(3.5, 8)
        if kind == "tiny":
            a = rng.uniform(0, size - 1)
            return a, a + rng.uniform(0.01, 0.45)
        if kind == "huge":
            c = rng.uniform(0, size)
            return c - 5 * size, c + 5 * size
        if kind == "half":  # exact .5 coordinates in feature space: C round goes away from 0
            a = rng.integers(-3, size) + 0.5
            return a, a + rng.integers(0, size) + 0.5
        if kind == "integer":
            a = float(rng.integers(-2, size))
            return a, a + float(rng.integers(0, size))
        raise AssertionError(kind)

    kinds = [
        "inside",
        "inside",
        "partial",
        "partial",
        "outside",
        "degenerate",
        "very_degenerate",
        "tiny",
        "huge",
        "half",
        "integer",
    ]
    kinds = (kinds + list(rng.choice([*kinds[:6], "tiny", "half"], size=max(0, k - 11))))[:k]
    rows = []
    for kind in kinds:
        # mix categories between the axes a little: the other axis is usually "inside"
        other = kind if rng.random() < 0.5 else "inside"
        x1, x2 = interval(kind, w)
        y1, y2 = interval(other, h)
        if rng.random() < 0.5:
            (x1, x2), (y1, y2) = interval(other, w), interval(kind, h)
        rows.append([rng.integers(0, n_batch), x1, y1, x2, y2])
    rois = np.array(rows, dtype=np.float64)
    rois[:, 1:] /= scale
    return rois
