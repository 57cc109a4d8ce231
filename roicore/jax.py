"""JAX front end: RoI Pool / Align / Warp that work under ``jax.jit``,
``jax.grad`` and ``jax.vmap``.

The kernels are roicore's CPU (Cython/OpenMP) forward and backward, called
from the traced program through :func:`jax.pure_callback`; the gradient is a
:func:`jax.custom_vjp` whose backward is :func:`roicore.roi_align_backward`
(and friends).  Results are bit-identical to the NumPy functions.

* ``jax.jit``: options (``output_size``, ``spatial_scale``, ``mode``, ...) are
  static Python values; arrays may be traced.  Shapes, dtypes and options are
  checked while tracing; ROI *values* (finite coordinates, batch indices in
  [0, N)) are checked before the call when ``rois`` is concrete, otherwise by
  the kernel call at run time (the error then surfaces wrapped in JAX's
  runtime error, with roicore's message).
* ``jax.grad`` / ``jax.vjp``: gradients flow to ``input``; ``rois`` get a zero
  gradient (as in torchvision).  Reverse mode only (a ``custom_vjp``): no
  ``jax.jvp`` / ``jacfwd``, no second derivatives.
* ``jax.vmap``: any number of leading batch axes, on ``input``, ``rois`` or
  both, folds into ONE kernel call: the batch is flattened into the image
  axis and the ROIs' batch indices are offset accordingly.

JAX arrays on a GPU are copied to the host for the callback; for GPU work
use CuPy / torch CUDA tensors with the CUDA backend.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

try:
    import jax
    import jax.numpy as jnp
except ImportError as _exc:  # pragma: no cover - exercised only without JAX
    raise ImportError(
        "roicore.jax needs JAX: pip install jax jaxlib (or pip install 'roicore[jax]')"
    ) from _exc

from . import _api
from . import _validation as V

_FORWARD = {"pool": _api.roi_pool, "align": _api.roi_align, "warp": _api.roi_warp}
_BACKWARD = {"pool": _api.roi_pool_backward, "align": _api.roi_align_backward,
             "warp": _api.roi_warp_backward}


# --------------------------------------------------------------------------- host side
def _fold(x: np.ndarray, rois: np.ndarray, lead: tuple[int, ...], share_x: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    """Flatten leading (vmap) axes: x (*lx, N, C, H, W), rois (*lr, K, 5) ->
    one (N', C, H, W) input and (B*K, 5) rois with offset batch indices.

    ``share_x``: when x has no batch axis of its own, every batch element
    reads the same N images (forward only; the backward needs a gradient per
    batch element, so it broadcasts x)."""
    B = math.prod(lead)
    N = x.shape[-4]
    K = rois.shape[-2]
    r = np.array(np.broadcast_to(rois, (*lead, K, 5)).reshape(B, K, 5))
    if share_x and math.prod(x.shape[:-4]) == 1:
        return x.reshape(x.shape[-4:]), r.reshape(B * K, 5)
    xb = np.broadcast_to(x, (*lead, *x.shape[-4:])).reshape(B * N, *x.shape[-3:])
    r[:, :, 0] += (np.arange(B) * N)[:, None].astype(r.dtype)
    return xb, r.reshape(B * K, 5)


def _host_forward(spec: tuple, x: Any, rois: Any) -> np.ndarray:
    op, kw = spec[0], dict(spec[1])
    x, rois = np.asarray(x), np.asarray(rois)
    lead = np.broadcast_shapes(x.shape[:-4], rois.shape[:-2])
    xf, rf = _fold(x, rois, lead, share_x=True)
    out = _FORWARD[op](xf, rf, **kw)
    return out.reshape(*lead, rois.shape[-2], *out.shape[1:]) if lead else out


def _host_backward(spec: tuple, g: Any, x: Any, rois: Any) -> np.ndarray:
    op, kw = spec[0], dict(spec[1])
    g, x, rois = np.asarray(g), np.asarray(x), np.asarray(rois)
    lead = np.broadcast_shapes(g.shape[:-4], x.shape[:-4], rois.shape[:-2])
    xf, rf = _fold(x, rois, lead, share_x=False)
    gf = np.broadcast_to(g, (*lead, *g.shape[-4:])).reshape(-1, *g.shape[-3:])
    gx = _BACKWARD[op](gf, xf, rf, **kw)
    return gx.reshape(*lead, *x.shape[-4:]) if lead else gx


# --------------------------------------------------------------------------- traced side
def _out_struct(spec: tuple, x: Any, rois: Any) -> jax.ShapeDtypeStruct:
    kw = dict(spec[1])
    ph, pw = kw["output_size"]
    shapes = V.shapes_of(tuple(x.shape), kw["layout"], rois.shape[0], ph, pw)
    return jax.ShapeDtypeStruct(shapes.out_shape, x.dtype)


def _call_forward(spec: tuple, x: Any, rois: Any) -> Any:
    return jax.pure_callback(functools.partial(_host_forward, spec), _out_struct(spec, x, rois),
                             x, rois, vmap_method="expand_dims")


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _roi(spec: tuple, x: Any, rois: Any) -> Any:
    return _call_forward(spec, x, rois)


def _roi_fwd(spec: tuple, x: Any, rois: Any) -> tuple[Any, tuple[Any, Any]]:
    return _call_forward(spec, x, rois), (x, rois)


def _roi_bwd(spec: tuple, res: tuple[Any, Any], g: Any) -> tuple[Any, Any]:
    x, rois = res
    gx = jax.pure_callback(functools.partial(_host_backward, spec),
                           jax.ShapeDtypeStruct(x.shape, x.dtype), g, x, rois,
                           vmap_method="expand_dims")
    return gx, jnp.zeros_like(rois)  # no gradient for the boxes (as torchvision)


_roi.defvjp(_roi_fwd, _roi_bwd)


def _is_tracer(a: Any) -> bool:
    return isinstance(a, jax.core.Tracer)


def _prepare(input: Any, rois: Any, layout: Any, output_size: Any, spatial_scale: Any,
             num_threads: Any) -> tuple[Any, Any, dict]:
    input = jnp.asarray(input)
    V.check_input(input)
    layout = V.check_layout(layout)
    size = V.check_output_size(output_size)
    if _is_tracer(spatial_scale):
        raise TypeError("`spatial_scale` must be a Python float (a static option), not a traced "
                        "value: close over it or mark it static in jax.jit")
    scale = V.check_spatial_scale(spatial_scale)
    if num_threads is not None:
        V.check_num_threads(num_threads, 1)
    N = int(input.shape[0])
    T = jnp.float64 if input.dtype == jnp.float64 else jnp.float32
    if isinstance(rois, (list, tuple)):
        if len(rois) != N:
            raise ValueError(
                f"`rois` given as a list must have one (K_i, 4) array per image: "
                f"input has N={N} images but the list has {len(rois)} entries"
            )
        parts = []
        for i, r in enumerate(rois):
            r = jnp.asarray(r)
            if r.ndim != 2 or r.shape[1] != 4:
                raise ValueError(
                    f"`rois[{i}]` must have shape (K_i, 4) [x1, y1, x2, y2]; got {tuple(r.shape)}"
                )
            r = r.astype(jnp.result_type(r.dtype, T) if r.dtype.kind == "f" else T)
            parts.append(jnp.concatenate([jnp.full((r.shape[0], 1), i, r.dtype), r], axis=1))
        rois = jnp.concatenate(parts, axis=0) if parts else jnp.zeros((0, 5), T)
    else:
        rois = jnp.asarray(rois)
        if rois.ndim != 2 or rois.shape[1] != 5:
            hint = (" A (K, 4) box array needs the batch index: pass a list with one (K_i, 4) "
                    "array per image." if rois.ndim == 2 and rois.shape[1] == 4 else "")
            raise ValueError(
                f"`rois` must have shape (K, 5) with rows [batch_index, x1, y1, x2, y2]; "
                f"got {tuple(rois.shape)}.{hint}"
            )
        if rois.dtype.kind not in "fiu":
            raise TypeError(f"`rois` must be real numbers; got dtype {rois.dtype}")
        if rois.dtype.kind != "f":
            rois = rois.astype(T)
    if not _is_tracer(rois):  # concrete: check the values now, with roicore's own message
        V.check_rois_values(np.asarray(rois, dtype=np.float64), N)
    kw = {"output_size": size, "spatial_scale": scale, "layout": layout,
          "num_threads": num_threads}
    return input, rois, kw


def _spec(op: str, kw: dict) -> tuple:
    return (op, tuple(sorted(kw.items())))


# --------------------------------------------------------------------------- public API
def roi_pool(
    input: Any, rois: Any, output_size: int | tuple[int, int], spatial_scale: float = 1.0, *,
    bins: str = "fast_rcnn", layout: str = "NCHW", num_threads: int | None = None,
) -> jax.Array:
    """:func:`roicore.roi_pool` for JAX: traceable by ``jit``, ``grad``, ``vmap``.

    Parameters
    ----------
    input : jax.Array, shape (N, C, H, W) or (N, H, W, C)
        float16 / float32 / float64 (float64 needs ``jax_enable_x64``).
    rois : jax.Array (K, 5) or list of N arrays (K_i, 4)
        ``[batch_index, x1, y1, x2, y2]`` rows in image coordinates.
    output_size, spatial_scale, bins, layout, num_threads
        As in :func:`roicore.roi_pool`; static Python values.

    Returns
    -------
    jax.Array, shape (K, C, PH, PW) or (K, PH, PW, C)
        Bit-identical to :func:`roicore.roi_pool`; the gradient with respect
        to ``input`` is :func:`roicore.roi_pool_backward`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, roicore.jax as rj
    >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
    >>> rois = jnp.array([[0, 0, 0, 3, 3]], jnp.float32)
    >>> jax.jit(lambda x: rj.roi_pool(x, rois, 2))(x)[0, 0]
    Array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    input, rois, kw = _prepare(input, rois, layout, output_size, spatial_scale, num_threads)
    kw["bins"] = V.check_bins(bins)
    return _roi(_spec("pool", kw), input, rois)


def roi_align(
    input: Any, rois: Any, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
    sampling_ratio: int = -1, aligned: bool = False, *, mode: str = "avg",
    layout: str = "NCHW", num_threads: int | None = None,
) -> jax.Array:
    """:func:`roicore.roi_align` for JAX: traceable by ``jit``, ``grad``, ``vmap``.

    Parameters
    ----------
    input, rois, output_size, spatial_scale
        As in :func:`roi_pool`.
    sampling_ratio, aligned, mode, layout, num_threads
        As in :func:`roicore.roi_align`; static Python values.

    Returns
    -------
    jax.Array, shape (K, C, PH, PW) or (K, PH, PW, C)
        Bit-identical to :func:`roicore.roi_align`; the gradient with respect
        to ``input`` is :func:`roicore.roi_align_backward`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, roicore.jax as rj
    >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
    >>> rois = jnp.array([[0, 0, 0, 2, 2]], jnp.float32)
    >>> f = lambda x: rj.roi_align(x, rois, 1, aligned=True).sum()
    >>> float(jax.jit(f)(x)), jax.grad(f)(x)[0, 0]
    (2.5, Array([[0.25, 0.25, 0.  , 0.  ],
           [0.25, 0.25, 0.  , 0.  ],
           [0.  , 0.  , 0.  , 0.  ],
           [0.  , 0.  , 0.  , 0.  ]], dtype=float32))
    """
    input, rois, kw = _prepare(input, rois, layout, output_size, spatial_scale, num_threads)
    kw["sampling_ratio"] = V.check_sampling_ratio(sampling_ratio)
    kw["aligned"] = V.check_aligned(aligned)
    kw["mode"] = V.check_mode(mode)
    return _roi(_spec("align", kw), input, rois)


def roi_warp(
    input: Any, rois: Any, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
    sampling_ratio: int = -1, *, mode: str = "avg", compat: str | None = None,
    layout: str = "NCHW", num_threads: int | None = None,
) -> jax.Array:
    """:func:`roicore.roi_warp` for JAX: traceable by ``jit``, ``grad``, ``vmap``.

    Parameters
    ----------
    input, rois, output_size, spatial_scale
        As in :func:`roi_pool`.
    sampling_ratio, mode, compat, layout, num_threads
        As in :func:`roicore.roi_warp`; static Python values.

    Returns
    -------
    jax.Array, shape (K, C, PH, PW) or (K, PH, PW, C)
        Bit-identical to :func:`roicore.roi_warp`; the gradient with respect
        to ``input`` is :func:`roicore.roi_warp_backward`.
    """
    input, rois, kw = _prepare(input, rois, layout, output_size, spatial_scale, num_threads)
    kw["sampling_ratio"] = V.check_sampling_ratio(sampling_ratio)
    kw["mode"] = V.check_mode(mode)
    kw["compat"] = V.check_compat(compat)
    V.check_compat_sampling(kw["compat"], kw["sampling_ratio"])
    return _roi(_spec("warp", kw), input, rois)


__all__ = ["roi_align", "roi_pool", "roi_warp"]
