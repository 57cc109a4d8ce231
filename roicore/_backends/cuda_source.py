"""The CUDA source of the GPU backend, as NVRTC receives it (no CuPy import).

Shared by :mod:`roicore._backends.cuda` (which hands it to ``cupy.RawModule``) and
``python -m roicore cuda-check`` (which compiles the very same text with
NVRTC or nvcc), so what the check compiles is what runs.

The sources ship inside the wheel as package data (``roicore/_csrc``, the
repository's ``src/`` mapped by ``[tool.setuptools] package-dir``); an
in-tree or editable checkout reads ``<repo>/src`` directly.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from pathlib import Path

#: Kernel file, relative to the source root.
KERNELS_CU = Path("cuda") / "roicore_kernels.cu"
#: Per-element maths shared with the CPU kernels (per axis and per bin), relative to
#: the source root.
COMMON_H = Path("include") / "roicore" / "roi_common.h"
#: The line of the .cu file that the header's text replaces.
INCLUDE_LINE = '#include "roicore/roi_common.h"'

DTYPES = ("float", "double")
LAYOUTS = (False, True)  # channels_last
#: A kernel of the .cu file: ``template <typename T[, bool CL]> __global__ void name(``.
_KERNEL_RE = re.compile(r"template <typename T(, bool CL)?>\s*__global__\s+void\s+(\w+)\s*\(")


def kernels(text: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The kernels of the source, in file order, read from the .cu itself (one
    list, no restated copy): (templated on <T, channels_last>, on <T> only)."""
    found = _KERNEL_RE.findall(source() if text is None else text)
    return (tuple(n for cl, n in found if cl), tuple(n for cl, n in found if not cl))


def __getattr__(attr: str) -> tuple[str, ...]:
    # LAYOUT_KERNELS (<T, channels_last>) and DTYPE_KERNELS (<T>), read lazily
    # from the source so that importing this module never reads files.
    if attr == "LAYOUT_KERNELS":
        return kernels()[0]
    if attr == "DTYPE_KERNELS":
        return kernels()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")

#: NVRTC options (CuPy adds -arch for the current device).  --fmad=false: no
#: a*b+c contraction, as the CPU build's -ffp-contract=off, so results can be
#: bit-identical to the CPU backend.
BASE_OPTIONS = ("--fmad=false",)


def ctype(dtype) -> str:
    """C type of a compute dtype (numpy dtype or its name)."""
    name = getattr(dtype, "name", str(dtype))
    if name == "float32":
        return "float"
    if name == "float64":
        return "double"
    raise TypeError(f"no CUDA kernel for compute dtype {name}")


def name(kernel: str, T: str, channels_last: bool | None = None) -> str:
    """Name expression of one instantiation, e.g. ``rc_pool_fwd<float, true>``."""
    if channels_last is None:
        return f"{kernel}<{T}>"
    return f"{kernel}<{T}, {'true' if channels_last else 'false'}>"


def name_expressions() -> tuple[str, ...]:
    """Every instantiation: each kernel x dtype (x layout)."""
    layout, dtype = kernels()
    out = [name(k, T, cl) for k, T, cl in itertools.product(layout, DTYPES, LAYOUTS)]
    out += [name(k, T) for k, T in itertools.product(dtype, DTYPES)]
    return tuple(out)


def mangled_prefix(expr: str) -> str:
    """Itanium-mangled prefix of a kernel instantiation (to find it in a cubin).

    ``rc_pool_fwd<float, true>`` -> ``_Z11rc_pool_fwdIfLb1EEv``.
    """
    base, args = expr[:-1].split("<", 1)
    codes = {"float": "f", "double": "d", "false": "Lb0E", "true": "Lb1E"}
    parts = "".join(codes[a.strip()] for a in args.split(","))
    return f"_Z{len(base)}{base}I{parts}Ev"


def source_roots() -> list[Path]:
    """Candidate source roots: the installed package data, then the checkout."""
    here = Path(__file__).resolve().parent.parent  # the roicore package
    return [here / "_csrc", here.parent / "src"]


def source_root() -> Path:
    for root in source_roots():
        if (root / KERNELS_CU).is_file() and (root / COMMON_H).is_file():
            return root
    tried = ", ".join(str(r) for r in source_roots())
    raise RuntimeError(
        f"roicore's CUDA sources ({KERNELS_CU.as_posix()}, {COMMON_H.as_posix()}) were not "
        f"found (looked in {tried}); reinstall roicore"
    )


@functools.cache
def _source_at(root: str) -> str:
    base = Path(root)
    kernels = (base / KERNELS_CU).read_text(encoding="utf-8")
    header = (base / COMMON_H).read_text(encoding="utf-8")
    if kernels.count(INCLUDE_LINE) != 1:
        raise RuntimeError(f"{KERNELS_CU.as_posix()} must contain the line {INCLUDE_LINE!r} once")
    pasted = f"/* ---- begin {COMMON_H.as_posix()} ---- */\n{header}\n/* ---- end ---- */"
    return kernels.replace(INCLUDE_LINE, pasted)


def source() -> str:
    """The kernel source with roi_common.h pasted in (no #include left)."""
    return _source_at(str(source_root()))


def source_hash(text: str | None = None) -> str:
    """SHA-1 prefix of the full source (kernels + header)."""
    return hashlib.sha1((source() if text is None else text).encode("utf-8")).hexdigest()[:16]


def options(text: str | None = None) -> tuple[str, ...]:
    """NVRTC options; the source hash is one of them, so an edited header can
    never reuse a binary compiled from the old text."""
    return (*BASE_OPTIONS, f"-DROICORE_SRC_HASH=0x{source_hash(text)}")
