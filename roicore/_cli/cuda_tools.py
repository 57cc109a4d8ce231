"""Where roicore finds the CUDA compilers (no CuPy import, no GPU needed).

One place for every CUDA library or tool that roicore looks up itself
(``python -m roicore cuda-check`` and ``python -m roicore info``; the GPU
backend compiles through CuPy, which finds its own NVRTC):

* NVRTC: located and loaded by NVIDIA's ``cuda-pathfinder`` (pip CUDA wheels
  such as ``nvidia/cu13/lib`` of the CUDA build of torch, conda, the system
  loader, ``CUDA_PATH`` / ``CUDA_HOME``), driven through ``cuda-bindings``
  (``cuda.bindings.nvrtc``).  NVRTC then finds its ``libnvrtc-builtins``
  beside itself, so no ``LD_LIBRARY_PATH`` is needed.  Both packages come
  with ``pip install 'roicore[cuda]'``.
* nvcc: an explicit path, else ``cuda-pathfinder``'s search for the binary
  (when installed), else ``$CUDA_PATH/bin``, ``$CUDA_HOME/bin``, ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install cuda-pathfinder cuda-bindings (or pip install 'roicore[cuda]')"


@dataclass
class NVRTC:
    """NVRTC loaded by cuda-pathfinder, called through ``cuda.bindings.nvrtc``."""

    module: Any  # cuda.bindings.nvrtc
    path: str  # the loaded libnvrtc
    found_via: str  # cuda-pathfinder's answer: site-packages, conda, system, CUDA_HOME, ...

    def version(self) -> str:
        _, major, minor = self.module.nvrtcVersion()
        return f"{major}.{minor}"


def find_nvrtc() -> tuple[NVRTC | None, str]:
    """NVRTC, or ``(None, why not)``."""
    try:
        from cuda import pathfinder
        from cuda.bindings import nvrtc
    except ImportError as exc:
        return None, f"cuda-pathfinder / cuda-bindings are not installed ({exc}); {INSTALL_HINT}"
    try:
        lib = pathfinder.load_nvidia_dynamic_lib("nvrtc")
    except Exception as exc:  # DynamicLibNotFoundError and relatives
        return None, f"cuda-pathfinder found no NVRTC: {exc}"
    try:
        err, _, _ = nvrtc.nvrtcVersion()
    except Exception as exc:  # e.g. cuda-bindings built for another CUDA major version
        return None, f"cuda-bindings cannot use {lib.abs_path}: {exc}"
    if int(err) != 0:
        return None, f"nvrtcVersion failed ({err!r}) for {lib.abs_path}"
    return NVRTC(nvrtc, lib.abs_path, str(getattr(lib, "found_via", "cuda-pathfinder"))), ""


def find_nvcc(explicit: str | None = None) -> tuple[str | None, str]:
    """Path of nvcc, or ``(None, why not)``."""
    if explicit:
        found = shutil.which(explicit)
        return (found, "") if found else (None, f"--nvcc {explicit}: no such executable")
    try:
        from cuda import pathfinder

        finder = getattr(pathfinder, "find_nvidia_binary_utility", None)
        found = finder("nvcc") if finder is not None else None
        if found:
            return str(found), ""
    except Exception:  # not installed, or an old cuda-pathfinder: search below
        pass
    for env in ("CUDA_PATH", "CUDA_HOME"):
        root = os.environ.get(env)
        if root:
            found = shutil.which(str(Path(root) / "bin" / "nvcc"))
            if found:
                return found, ""
    found = shutil.which("nvcc")
    if found:
        return found, ""
    return None, "nvcc is not on PATH (nor in $CUDA_PATH/bin or $CUDA_HOME/bin)"


def nvcc_version(nvcc: str) -> str:
    """``13.0`` from ``nvcc --version``, or ``?``."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r"release (\S+),", out)
    return m.group(1) if m else "?"
