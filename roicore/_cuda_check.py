"""``python -m roicore cuda-check``: compile every CUDA kernel instantiation.

Compiles the exact source text that :mod:`roicore._gpu` hands to
``cupy.RawModule`` (``roi_common.h`` pasted in, same options) for one GPU
architecture, with every template instantiation the GPU backend can ask for
(each kernel x dtype x layout, the deterministic-backward kernels included),
then checks that each one is in the resulting cubin.  No GPU is needed.

Compilers, in the order ``--compiler auto`` tries them:

* ``nvrtc``: the run-time compiler CuPy uses, through CuPy's own binding when
  CuPy is importable, else ``libnvrtc`` loaded with ctypes (CUDA toolkit or
  the ``nvidia-cuda-nvrtc`` wheel); name expressions as ``RawModule``.
* ``nvcc``: one ``nvcc --cubin`` run on the source plus explicit
  instantiations.

Exit status: 0 when everything compiled, or when no compiler exists (a
clear "skipped" line is printed); 1 when anything failed to compile.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import _cuda_source as S

DEFAULT_ARCH = "sm_80"
_ARCH_RE = re.compile(r"^(sm|compute)_\d+[a-z]?$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compiler", choices=("auto", "nvrtc", "nvcc", "all"), default="auto",
        help="auto: NVRTC if available, else nvcc (default); all: every one available",
    )
    parser.add_argument(
        "--arch", default=DEFAULT_ARCH,
        help=f"GPU architecture to compile for (default {DEFAULT_ARCH}; e.g. sm_90)",
    )
    parser.add_argument("--nvcc", default=None, metavar="PATH",
                        help="nvcc to use (default: $CUDA_PATH/bin/nvcc or nvcc on PATH)")
    parser.add_argument("--nvrtc", default=None, metavar="LIB",
                        help="libnvrtc to load with ctypes (default: CuPy's, then a search)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the compiler's log and every instantiation")


# --------------------------------------------------------------------------- cubin
def cubin_kernels(cubin: bytes) -> set[str]:
    """Names of the kernels in a cubin (its ``.text.<name>`` ELF sections)."""
    if cubin[:4] != b"\x7fELF" or cubin[4] != 2:
        raise RuntimeError("the compiler did not produce a 64-bit ELF cubin")
    shoff = struct.unpack_from("<Q", cubin, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + i * shentsize)
               for i in range(shnum)]
    strtab = headers[shstrndx][4]
    names = set()
    for h in headers:
        start = strtab + h[0]
        name = cubin[start:cubin.index(b"\0", start)].decode("ascii", "replace")
        if name.startswith(".text."):
            names.add(name[len(".text."):])
    return names


def missing_instantiations(cubin: bytes, names: tuple[str, ...]) -> list[str]:
    present = cubin_kernels(cubin)
    return [n for n in names
            if not any(k.startswith(S.mangled_prefix(n)) for k in present)]


# --------------------------------------------------------------------------- nvcc
def find_nvcc(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if shutil.which(explicit) else None
    for env in ("CUDA_PATH", "CUDA_HOME", "CUDA_ROOT"):
        root = os.environ.get(env)
        if root:
            cand = shutil.which(str(Path(root) / "bin" / "nvcc"))
            if cand:
                return cand
    return shutil.which("nvcc") or shutil.which("/usr/local/cuda/bin/nvcc")


def _nvcc_version(nvcc: str) -> str:
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r"release (\S+),", out)
    return m.group(1) if m else "?"


def compile_nvcc(nvcc: str, source: str, names: tuple[str, ...], options: tuple[str, ...],
                 arch: str) -> tuple[bytes | None, str]:
    """One nvcc run: the source plus an explicit instantiation per name."""
    inst = "\n".join(f"template __global__ decltype({n}) {n};" for n in names)
    text = f"{source}\n/* explicit instantiations (roicore cuda-check) */\n{inst}\n"
    with tempfile.TemporaryDirectory(prefix="roicore-cuda-check-") as tmp:
        cu = Path(tmp) / "roicore_kernels.cu"
        cubin = Path(tmp) / "roicore_kernels.cubin"
        cu.write_text(text, encoding="utf-8")
        cmd = [nvcc, "-std=c++17", "--cubin", f"-arch={arch}", *options, "-o", str(cubin), str(cu)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return None, "nvcc timed out after 900 s"
        log = " ".join(cmd) + "\n" + res.stdout + res.stderr
        if res.returncode != 0 or not cubin.is_file():
            return None, log
        return cubin.read_bytes(), log


# --------------------------------------------------------------------------- nvrtc
class _CupyNVRTC:
    """NVRTC through CuPy's binding (the library CuPy itself loads)."""

    def __init__(self) -> None:
        from cupy_backends.cuda.libs import nvrtc

        self.nvrtc = nvrtc
        self.where = "CuPy's binding"

    def version(self) -> str:
        major, minor = self.nvrtc.getVersion()
        return f"{major}.{minor}"

    def compile(self, source: str, names: tuple[str, ...],
                options: tuple[str, ...]) -> tuple[bytes | None, str, dict]:
        nv = self.nvrtc
        prog = nv.createProgram(source, "roicore_kernels.cu", [], [])
        try:
            for n in names:
                nv.addNameExpression(prog, n)
            try:
                nv.compileProgram(prog, list(options))
            except nv.NVRTCError as exc:
                return None, f"{exc}\n{nv.getProgramLog(prog)}", {}
            lowered = {n: nv.getLoweredName(prog, n) for n in names}
            return nv.getCUBIN(prog), nv.getProgramLog(prog), lowered
        finally:
            nv.destroyProgram(prog)


class _CtypesNVRTC:
    """NVRTC's C API through ctypes."""

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)
        self.where = path
        for fn in ("nvrtcCreateProgram", "nvrtcAddNameExpression", "nvrtcCompileProgram",
                   "nvrtcGetProgramLogSize", "nvrtcGetProgramLog", "nvrtcGetCUBINSize",
                   "nvrtcGetCUBIN", "nvrtcGetLoweredName", "nvrtcDestroyProgram",
                   "nvrtcVersion"):
            getattr(self.lib, fn).restype = ctypes.c_int

    def version(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        return f"{major.value}.{minor.value}"

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed with nvrtcResult {status}")

    def compile(self, source: str, names: tuple[str, ...],
                options: tuple[str, ...]) -> tuple[bytes | None, str, dict]:
        lib = self.lib
        prog = ctypes.c_void_p()
        self._check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(),
                                           b"roicore_kernels.cu", 0, None, None),
                    "nvrtcCreateProgram")
        try:
            for n in names:
                self._check(lib.nvrtcAddNameExpression(prog, n.encode()),
                            "nvrtcAddNameExpression")
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            status = lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value or 1)
            lib.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode("utf-8", "replace")
            if status != 0:
                return None, f"nvrtcCompileProgram failed with nvrtcResult {status}\n{log}", {}
            lowered = {}
            for n in names:
                ptr = ctypes.c_char_p()
                self._check(lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(ptr)),
                            "nvrtcGetLoweredName")
                lowered[n] = (ptr.value or b"").decode()
            lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
            cubin = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
            return cubin.raw, log, lowered
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _nvrtc_candidates() -> list[str]:
    cands: list[str] = []
    found = ctypes.util.find_library("nvrtc")
    if found:
        cands.append(found)
    pats = ["libnvrtc.so", "libnvrtc.so.*[0-9]", "nvrtc64_*.dll"]
    roots = [os.environ.get(e) for e in ("CUDA_PATH", "CUDA_HOME", "CUDA_ROOT")]
    dirs = [str(Path(r) / d) for r in roots if r for d in ("lib64", "lib", "bin")]
    dirs += ["/usr/local/cuda/lib64"]
    dirs += [str(Path(p) / "nvidia" / "*" / "lib") for p in sys.path if p]
    dirs += [str(Path(p) / "nvidia" / "*" / "bin") for p in sys.path if p]
    for d in dirs:
        for pat in pats:
            cands += sorted(glob.glob(str(Path(d) / pat)))
    return [c for c in dict.fromkeys(cands) if "builtins" not in Path(c).name]


def find_nvrtc(explicit: str | None = None) -> _CupyNVRTC | _CtypesNVRTC | None:
    if explicit:
        return _CtypesNVRTC(explicit)
    try:
        binding = _CupyNVRTC()
        binding.version()
        return binding
    except Exception:  # CuPy missing, or its NVRTC cannot be loaded
        pass
    for cand in _nvrtc_candidates():
        try:
            lib = _CtypesNVRTC(cand)
            lib.version()
            return lib
        except (OSError, AttributeError):
            continue
    return None


def nvrtc_options(arch: str, options: tuple[str, ...]) -> tuple[str, ...]:
    """The options CuPy's RawModule passes (besides ours) for one architecture."""
    return (*options, f"-arch={arch}", "--device-as-default-execution-space", "-std=c++17")


# --------------------------------------------------------------------------- command
def _summary() -> str:
    return (f"{len(S.LAYOUT_KERNELS)} kernels x {{{', '.join(S.DTYPES)}}} x {{NCHW, NHWC}} + "
            f"{len(S.DTYPE_KERNELS)} x {{{', '.join(S.DTYPES)}}}")


def run(args: argparse.Namespace) -> int:
    arch = args.arch
    if not _ARCH_RE.match(arch):
        raise ValueError(f"--arch must look like sm_80 or compute_80; got {arch!r}")
    arch = arch.replace("compute_", "sm_")  # a cubin, so every instantiation can be checked
    source = S.source()
    options = S.options(source)
    names = S.name_expressions()
    want = ("nvrtc", "nvcc") if args.compiler in ("auto", "all") else (args.compiler,)

    tools = []
    for kind in want:
        if kind == "nvrtc":
            lib = find_nvrtc(args.nvrtc)
            if lib is not None:
                tools.append(("nvrtc", lib))
        else:
            nvcc = find_nvcc(args.nvcc)
            if nvcc is not None:
                tools.append(("nvcc", nvcc))
        if tools and args.compiler == "auto":
            break
    if not tools:
        which = " or ".join(want)
        print(f"roicore cuda-check: SKIPPED: no CUDA compiler found ({which}); install the CUDA "
              f"toolkit (nvcc) or CuPy with NVRTC (pip install 'roicore[cuda]')")
        return 0

    print(f"roicore cuda-check: {len(names)} kernel instantiations ({_summary()}), "
          f"source {S.source_hash(source)}, -arch={arch}")
    failed = False
    for kind, tool in tools:
        t0 = time.perf_counter()
        if kind == "nvrtc":
            label = f"NVRTC {tool.version()} ({tool.where})"
            cubin, log, lowered = tool.compile(source, names, nvrtc_options(arch, options))
        else:
            label = f"nvcc {_nvcc_version(tool)} ({tool})"
            cubin, log = compile_nvcc(tool, source, names, options, arch)
            lowered = {}
        dt = time.perf_counter() - t0
        if cubin is None:
            print(f"  {label}: FAILED to compile ({dt:.1f} s); compiler output:")
            print(log.rstrip())
            print(f"  compiled 0/{len(names)} kernel instantiations")
            failed = True
            continue
        missing = missing_instantiations(cubin, names)
        ok = len(names) - len(missing)
        if args.verbose:
            if log.strip():
                print(log.rstrip())
            for n in names:
                mark = "MISSING" if n in missing else "ok"
                print(f"    {mark:7s} {n}  {lowered.get(n, S.mangled_prefix(n) + '...')}")
        print(f"  {label}: compiled {ok}/{len(names)} kernel instantiations in {dt:.1f} s")
        for n in missing:
            print(f"    missing from the cubin: {n}")
        failed = failed or bool(missing)
    return 1 if failed else 0
