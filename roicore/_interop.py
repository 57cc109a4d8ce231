"""DLPack interop: accept any array with ``__dlpack__``, answer in the caller's type.

The public functions call :func:`from_caller` first.  NumPy and CuPy arrays
pass through untouched (so their validation and error messages are the
backends' own).  Any other object with ``__dlpack__`` / ``__dlpack_device__``
(torch tensors, JAX arrays, ...) is viewed zero-copy as

* a NumPy array (``np.from_dlpack``) when it lives on the CPU (``kDLCPU``), or
* a CuPy array (``cupy.from_dlpack``, CuPy imported only then) when it lives
  on a CUDA device (``kDLCUDA`` / ``kDLCUDAManaged``),

and the result is handed back through the caller's own ``from_dlpack``
(``torch.from_dlpack(result)`` for a torch tensor, ...), so it lands on the
caller's device as the caller's type, again without a copy.

Nothing here imports torch, JAX or CuPy up front: foreign arrays are
recognised by ``type(x).__module__`` and by having ``__dlpack__``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

#: DLPack device types (dlpack.h ``DLDeviceType``).
KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal",
                 10: "rocm", 11: "rocm_host", 13: "cuda_managed", 14: "oneapi"}

#: Top-level module -> dotted path of its ``from_dlpack`` (when not ``<module>.from_dlpack``).
_FROM_DLPACK = {"jax": "jax.numpy", "jaxlib": "jax.numpy"}


def _top(x: Any) -> str:
    return type(x).__module__.split(".", 1)[0]


def _typename(x: Any) -> str:
    return f"{type(x).__module__}.{type(x).__name__}"


def is_native(x: Any) -> bool:
    """NumPy or CuPy array: handled by a backend directly."""
    return isinstance(x, np.ndarray) or _top(x) == "cupy"


def is_foreign(x: Any) -> bool:
    """An array of another library that can be exchanged through DLPack."""
    return (
        not is_native(x)
        and hasattr(type(x), "__dlpack__")
        and hasattr(type(x), "__dlpack_device__")
    )


def _device(x: Any) -> tuple[int, int]:
    """(DLPack device type, device id) of any array; NumPy is (1, 0)."""
    if isinstance(x, np.ndarray):
        return (KDL_CPU, 0)
    if _top(x) == "cupy":
        return (KDL_CUDA, int(x.device.id))
    try:
        dev_type, dev_id = x.__dlpack_device__()
    except Exception as exc:  # e.g. torch's "meta" device
        raise TypeError(f"{_typename(x)} cannot be exchanged through DLPack: {exc}") from exc
    return (int(dev_type), int(dev_id))


def _device_str(dev: tuple[int, int]) -> str:
    name = _DEVICE_NAMES.get(dev[0], f"DLPack device type {dev[0]}")
    return name if dev[0] == KDL_CPU else f"{name}:{dev[1]}"


def _lazy_bits(x: Any) -> list[str]:
    """The lazy-view bits set on a torch tensor ("negative", "conjugate")."""
    bits = []
    if callable(getattr(x, "is_neg", None)) and x.is_neg():
        bits.append("negative")
    if callable(getattr(x, "is_conj", None)) and x.is_conj():
        bits.append("conjugate")
    return bits


def _exportable(x: Any, name: str) -> Any:
    if _top(x) != "torch":
        return x
    # torch refuses to export a tensor that requires grad ("use tensor.detach()").
    if getattr(x, "requires_grad", False):
        x = x.detach()
    # A view with the negative / conjugate bit (torch._neg_view(t), z.conj().imag,
    # z.conj()) stores the values un-negated and negates them lazily; DLPack exports
    # the raw memory, so it must be materialised first (a copy).
    bits = _lazy_bits(x)
    if bits:
        if name == "out":
            raise ValueError(
                f"`out` is a torch view with the {' and '.join(bits)} bit set (e.g. from "
                f"torch._neg_view, .conj() or .conj().imag): its memory holds the values "
                f"un-negated, so a result written into it would read back negated. Pass a "
                f"plain tensor as `out` (e.g. torch.empty_like(out)) or omit `out`."
            )
        x = x.resolve_conj().resolve_neg()
    return x


def to_native(x: Any, name: str = "input") -> Any:
    """View a DLPack-capable array as NumPy (CPU) or CuPy (CUDA), zero-copy.

    NumPy and CuPy arrays are returned unchanged.
    """
    if not is_foreign(x):
        return x
    dev = _device(x)
    x = _exportable(x, name)
    if dev[0] in (KDL_CPU, KDL_CUDA_HOST):
        try:
            return np.from_dlpack(x)
        except (BufferError, RuntimeError, TypeError, ValueError) as exc:
            if name == "out":  # a copy would silently drop the result
                raise TypeError(
                    f"`out` ({_typename(x)}, dtype {getattr(x, 'dtype', '?')}) cannot be "
                    f"exported through DLPack without a copy ({exc}); pass a plain "
                    f"C-contiguous tensor of the input's dtype, or omit `out`"
                ) from exc
            # e.g. a read-only or oddly strided export, or a dtype DLPack/NumPy lacks:
            # fall back to the buffer / __array__ protocol (may copy).
            try:
                return np.asarray(x)
            except Exception:
                raise TypeError(
                    f"`{name}` ({_typename(x)}, dtype {getattr(x, 'dtype', '?')}) cannot be "
                    f"viewed as a NumPy array ({exc}); convert it to float32 or float64 first"
                ) from exc
    if dev[0] in (KDL_CUDA, KDL_CUDA_MANAGED):
        try:
            import cupy  # lazy: only for CUDA arrays
        except ImportError as exc:
            raise ImportError(
                f"`{name}` is a CUDA array ({_typename(x)} on {_device_str(dev)}); the GPU "
                f"backend needs CuPy: pip install 'roicore[cuda]'"
            ) from exc
        return cupy.from_dlpack(x)
    raise TypeError(
        f"`{name}` ({_typename(x)}) lives on {_device_str(dev)}; roicore runs on the CPU "
        f"(NumPy) and on CUDA devices (CuPy) only"
    )


def caller_from_dlpack(like: Any) -> Callable[[Any], Any] | None:
    """The ``from_dlpack`` of the library that ``like`` comes from, or None."""
    top = _top(like)
    path = _FROM_DLPACK.get(top, top)
    mod = sys.modules.get(path)
    if mod is None:
        try:
            mod = importlib.import_module(path)  # already imported: `like` exists
        except ImportError:
            return None
    fn = getattr(mod, "from_dlpack", None)
    return fn if callable(fn) else None


def _convert(value: Any, name: str) -> Any:
    if isinstance(value, (list, tuple)):  # rois as a list of (K_i, 4) boxes
        if any(is_foreign(v) for v in value):
            return [to_native(v, f"{name}[{i}]") for i, v in enumerate(value)]
        return value
    return to_native(value, name)


def _check_devices(named: tuple[tuple[str, Any], ...]) -> None:
    """Same-device check phrased with the caller's own types (only when a foreign
    array takes part; NumPy/CuPy mixes are left to the backend's check)."""
    arrays: list[tuple[str, Any]] = []
    for name, v in named:
        if isinstance(v, (list, tuple)):
            arrays += [(f"{name}[{i}]", e) for i, e in enumerate(v)]
        elif v is not None:
            arrays.append((name, v))
    arrays = [(n, a) for n, a in arrays if is_native(a) or is_foreign(a)]
    if len(arrays) < 2 or not any(is_foreign(a) for _, a in arrays):
        return
    name0, a0 = arrays[0]
    dev0 = _device(a0)
    for name, a in arrays[1:]:
        dev = _device(a)
        cpu_like = {KDL_CPU, KDL_CUDA_HOST}
        if dev == dev0 or (dev[0] in cpu_like and dev0[0] in cpu_like):
            continue
        raise TypeError(
            f"`{name}` is a {_typename(a)} on {_device_str(dev)} but `{name0}` is a "
            f"{_typename(a0)} on {_device_str(dev0)}: all arrays must be on the same device"
        )


def from_caller(*named: tuple[str, Any]) -> tuple[list[Any], Callable[[Any], Any]]:
    """Convert the named array arguments for a backend.

    Parameters
    ----------
    *named : (name, value)
        The call's array arguments, the one whose type the result takes
        (``input``) first; ``None`` values and non-array values pass through.

    Returns
    -------
    values : list
        The arguments, DLPack-capable foreign arrays replaced by NumPy / CuPy
        views of the same memory.
    restore : callable
        Maps the backend's result back to the type of the first argument (the
        caller's ``out`` object itself when the result was written into it).
    """
    if not any(
        is_foreign(v) or (isinstance(v, (list, tuple)) and any(is_foreign(e) for e in v))
        for _, v in named
    ):
        return [v for _, v in named], _identity
    _check_devices(named)
    values = [_convert(v, n) for n, v in named]
    like = named[0][1]
    pairs = [(c, o) for (_, o), c in zip(named, values, strict=True)
             if c is not None and not isinstance(o, (list, tuple))]

    def restore(result: Any) -> Any:
        for converted, original in pairs:
            if result is converted:  # written into the caller's own `out`
                return original
        if not is_foreign(like):
            return result
        fn = caller_from_dlpack(like)
        return result if fn is None else fn(result)

    return values, restore


def _identity(result: Any) -> Any:
    return result


__all__ = ["caller_from_dlpack", "from_caller", "is_foreign", "is_native", "to_native"]
