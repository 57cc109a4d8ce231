"""roicore.jax: jax.jit / jax.grad / jax.vmap over roicore's kernels.

Oracles: the eager NumPy functions (bit for bit), roicore's backward, central
finite differences in float64, tests/support/reference.py, and Python loops for vmap."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="JAX not installed (pip install 'roicore[jax]')")
jnp = pytest.importorskip("jax.numpy", reason="JAX not installed")

import reference  # noqa: E402

import roicore  # noqa: E402
import roicore.jax as rj  # noqa: E402

# (op, positional args after output_size, keywords)
CASES = [
    ("pool", (0.8,), {}),
    ("pool", (0.5,), {"bins": "equal"}),
    ("align", (0.8, 2, True), {}),
    ("align", (0.5, -1, False), {"mode": "max"}),
    ("warp", (0.8, 2), {}),
    ("warp", (1.0, 1), {"compat": "mnc"}),
]
IDS = [f"{op}-{'-'.join(map(str, kw.values())) or 'default'}-{args[-1]}" for op, args, kw in CASES]


def data(dtype=np.float32, seed=0, N=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 3, 10, 12)).astype(dtype)
    rois = np.array([[0, 1, 1, 8, 7], [N - 1, 0.5, 2, 11, 9], [N - 1, 3, 3, 5, 6],
                     [0, -2, 4, 14, 12]], np.float32)
    return x, rois


def fns(op):
    return getattr(rj, f"roi_{op}"), getattr(roicore, f"roi_{op}"), getattr(
        roicore, f"roi_{op}_backward")


# ---------------------------------------------------------------- jit
@pytest.mark.parametrize(("op", "args", "kw"), CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_jit_equals_numpy_bitwise(op, args, kw, dtype):
    f, ref, _ = fns(op)
    x, rois = data(dtype)
    out = jax.jit(lambda x, r: f(x, r, (3, 2), *args, **kw))(x, rois)
    want = ref(x, rois, (3, 2), *args, **kw)
    assert out.dtype == want.dtype and out.shape == want.shape
    np.testing.assert_array_equal(np.asarray(out), want)
    np.testing.assert_array_equal(np.asarray(f(x, rois, (3, 2), *args, **kw)), want)  # eager


def test_jit_layout_and_list_rois():
    x, rois = data()
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    per_image = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    f = jax.jit(lambda x, r0, r1: rj.roi_align(x, [r0, r1], 2, 0.8, 2, True, layout="NHWC"))
    out = f(xh, *per_image)
    np.testing.assert_array_equal(
        np.asarray(out), roicore.roi_align(xh, per_image, 2, 0.8, 2, True, layout="NHWC"))
    # and against the plain NumPy oracle
    ref = reference.roi_align(x.astype(np.float64), np.concatenate(
        [np.c_[np.full(len(p), i), p] for i, p in enumerate(per_image)]), 2, 0.8, 2, True)
    np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), ref, rtol=1e-5,
                               atol=1e-5)


# ---------------------------------------------------------------- grad
@pytest.mark.parametrize(("op", "args", "kw"), CASES, ids=IDS)
def test_grad_equals_roicore_backward(op, args, kw):
    f, ref, back = fns(op)
    x, rois = data()
    G = np.random.default_rng(1).normal(size=ref(x, rois, 3, *args, **kw).shape).astype(
        np.float32)
    loss = jax.jit(jax.grad(lambda x, r: jnp.sum(f(x, r, 3, *args, **kw) * G), argnums=(0, 1)))
    gx, grois = loss(x, rois)
    np.testing.assert_array_equal(np.asarray(gx), back(G, x, rois, 3, *args, **kw))
    np.testing.assert_array_equal(np.asarray(grois), np.zeros_like(rois))  # boxes: none


@pytest.mark.parametrize(("op", "args", "kw"), CASES, ids=IDS)
def test_grad_matches_finite_differences_float64(op, args, kw):
    f, _, _ = fns(op)
    with jax.enable_x64(True):
        x, rois = data(np.float64, seed=3)
        rois = rois.astype(np.float64)
        rng = np.random.default_rng(4)
        G = jnp.asarray(rng.normal(size=(4, 3, 3, 3)))

        def loss(x):
            return jnp.sum(f(x, rois, 3, *args, **kw) * G)

        g = np.asarray(jax.grad(loss)(jnp.asarray(x)))
        assert g.dtype == np.float64
        eps = 1e-6
        for _ in range(4):  # directional derivatives along random directions
            v = rng.normal(size=x.shape)
            fd = (float(loss(x + eps * v)) - float(loss(x - eps * v))) / (2 * eps)
            assert abs(fd - float(np.sum(g * v))) <= 1e-6 * max(1.0, abs(fd)), (fd, np.sum(g * v))
        assert np.abs(g).sum() > 0


# ---------------------------------------------------------------- vmap
def _count(monkeypatch, op):
    calls = []
    real = rj._FORWARD[op]

    def spy(x, r, **kw):
        calls.append((x.shape, r.shape))
        return real(x, r, **kw)

    monkeypatch.setitem(rj._FORWARD, op, spy)
    return calls


@pytest.mark.parametrize(("op", "args", "kw"), CASES, ids=IDS)
def test_vmap_equals_python_loop(monkeypatch, op, args, kw):
    f, ref, back = fns(op)
    x, rois = data()
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(5, *x.shape)).astype(np.float32)
    rs = np.stack([rois + np.array([0, i * 0.3, i * 0.2, i * 0.1, 0], np.float32)
                   for i in range(5)])
    calls = _count(monkeypatch, op)
    g = lambda x, r: f(x, r, 3, *args, **kw)  # noqa: E731
    both = jax.jit(jax.vmap(g))(xs, rs)
    assert len(calls) == 1 and calls[0][0] == (10, 3, 10, 12)  # folded into one call
    np.testing.assert_array_equal(
        np.asarray(both),
        np.stack([ref(a, b, 3, *args, **kw) for a, b in zip(xs, rs, strict=True)]))
    over_x = jax.vmap(g, in_axes=(0, None))(xs, rois)
    np.testing.assert_array_equal(
        np.asarray(over_x), np.stack([ref(a, rois, 3, *args, **kw) for a in xs]))
    calls.clear()
    over_r = jax.vmap(g, in_axes=(None, 0))(x, rs)
    assert calls[0][0] == x.shape  # shared input: not replicated
    np.testing.assert_array_equal(
        np.asarray(over_r), np.stack([ref(x, b, 3, *args, **kw) for b in rs]))
    # nested vmap (two batch axes)
    nested = jax.vmap(jax.vmap(g, in_axes=(0, None)), in_axes=(None, 0))(xs, rs[:3])
    np.testing.assert_array_equal(
        np.asarray(nested),
        np.stack([np.stack([ref(a, b, 3, *args, **kw) for a in xs]) for b in rs[:3]]))
    # per-example gradients: vmap of grad, over the input and over the boxes
    G = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    loss = jax.grad(lambda x, r: jnp.sum(g(x, r) * G))
    np.testing.assert_array_equal(
        np.asarray(jax.vmap(loss)(xs, rs)),
        np.stack([back(G, a, b, 3, *args, **kw) for a, b in zip(xs, rs, strict=True)]))
    np.testing.assert_array_equal(
        np.asarray(jax.vmap(loss, in_axes=(None, 0))(x, rs)),
        np.stack([back(G, x, b, 3, *args, **kw) for b in rs]))


# ---------------------------------------------------------------- errors
def test_bad_input():
    x, rois = data()
    with pytest.raises(ValueError, match="`input` must be a 4-D array"):
        rj.roi_align(x[0], rois, 2)
    with pytest.raises(TypeError, match="`input` must have a floating dtype"):
        rj.roi_align(x.astype(np.int32), rois, 2)
    with pytest.raises(ValueError, match=r"`rois` must have shape \(K, 5\).*needs the batch"):
        rj.roi_pool(x, rois[:, 1:], 2)
    with pytest.raises(ValueError, match="N=2 images but the list has 1"):
        rj.roi_pool(x, [rois[:, 1:]], 2)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        jax.jit(lambda x: rj.roi_align(x, rois, 2, mode="mean"))(x)
    with pytest.raises(ValueError, match="`output_size` must be >= 1"):
        rj.roi_warp(x, rois, 0)
    with pytest.raises(ValueError, match="`sampling_ratio` must be <= 1"):
        rj.roi_warp(x, rois, 2, 1.0, 2, compat="mnc")
    with pytest.raises(TypeError, match="`spatial_scale` must be a Python float"):
        jax.jit(lambda x, s: rj.roi_align(x, rois, 2, s))(x, 0.5)
    bad = rois.copy()
    bad[1, 0] = 2
    with pytest.raises(ValueError, match=r"`rois\[:, 0\]` \(batch index\) must be in \[0, N\)"):
        rj.roi_align(x, bad, 2)  # concrete rois: checked before the call
    bad[1, 0] = 1
    bad[2, 3] = np.nan
    # traced rois: the kernel call's own check fails at run time, inside JAX's error
    with pytest.raises(Exception, match="`rois` must be finite"):
        jax.block_until_ready(jax.jit(lambda x, r: rj.roi_align(x, r, 2))(x, bad))


def test_docstring_examples():
    import doctest

    res = doctest.testmod(rj, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0
