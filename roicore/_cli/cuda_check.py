"""``python -m roicore cuda-check``: compile every CUDA kernel instantiation.

Compiles the exact source text that the GPU backend hands to
``cupy.RawModule`` (``roi_common.h`` pasted in, same options) for one GPU
architecture, with every template instantiation the GPU backend can ask for
(each kernel x dtype x layout, the deterministic-backward kernels included),
then checks that each one is in the resulting cubin.  No GPU is needed.

Compilers (found as described in :mod:`roicore._cli.cuda_tools`):

* ``nvrtc``: NVIDIA's run-time compiler, the one CuPy uses, located and loaded
  by ``cuda-pathfinder`` and called through ``cuda-bindings``; kernels are
  named by name expressions, as ``RawModule`` does.
* ``nvcc``: one ``nvcc --cubin`` run on the source plus explicit
  instantiations.

Exit status: 0 when every requested compiler was found and compiled every
instantiation; 1 when a requested compiler is missing (``auto``: neither was
found) or anything failed to compile.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

from .._backends import cuda_source as S
from . import cuda_tools as T

DEFAULT_ARCH = "sm_80"
_ARCH_RE = re.compile(r"^(sm|compute)_\d+[a-z]?$")


def _arch(text: str) -> str:
    if not _ARCH_RE.match(text):
        raise argparse.ArgumentTypeError(f"expected e.g. sm_80, sm_90 or compute_80, got {text!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compiler", choices=("auto", "nvrtc", "nvcc", "all"), default="auto",
        help="auto: NVRTC if found, else nvcc (default); all: both, each must be found",
    )
    parser.add_argument(
        "--arch", default=DEFAULT_ARCH, type=_arch,
        help=f"GPU architecture to compile for (default {DEFAULT_ARCH}; e.g. sm_90)",
    )
    parser.add_argument("--nvcc", default=None, metavar="PATH",
                        help="the nvcc to use (default: found automatically, PATH included)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print the compiler's messages and each kernel variant")


# --------------------------------------------------------------------------- cubin
def missing_instantiations(cubin: bytes, names: tuple[str, ...],
                           lowered: dict[str, str] | None = None) -> list[str]:
    """Names whose kernel has no code section (``.text.<mangled name>``) in the cubin.

    With NVRTC the full mangled name of each name expression is known
    (``lowered``); with nvcc its mangled prefix is searched.
    """
    def present(n: str) -> bool:
        if lowered and lowered.get(n):
            return f".text.{lowered[n]}\0".encode() in cubin
        return f".text.{S.mangled_prefix(n)}".encode() in cubin

    return [n for n in names if not present(n)]


# --------------------------------------------------------------------------- compilers
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


def nvrtc_options(arch: str, options: tuple[str, ...]) -> tuple[str, ...]:
    """The options CuPy's RawModule passes (besides ours) for one architecture."""
    return (*options, f"-arch={arch}", "--device-as-default-execution-space", "-std=c++17")


def compile_nvrtc(lib: T.NVRTC, source: str, names: tuple[str, ...],
                  options: tuple[str, ...]) -> tuple[bytes | None, str, dict[str, str]]:
    """Compile with NVRTC (cuda.bindings); returns (cubin or None, log, lowered names)."""
    nv = lib.module

    def check(result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"{what} failed: {err!r}")
        return rest[0] if rest else None

    prog = check(nv.nvrtcCreateProgram(source.encode(), b"roicore_kernels.cu", 0, [], []),
                 "nvrtcCreateProgram")
    try:
        for n in names:
            check(nv.nvrtcAddNameExpression(prog, n.encode()), "nvrtcAddNameExpression")
        opts = [o.encode() for o in options]
        (status,) = nv.nvrtcCompileProgram(prog, len(opts), opts)
        size = check(nv.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
        buf = b" " * size
        check(nv.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
        log = buf.rstrip(b"\0").decode("utf-8", "replace")
        if int(status) != 0:
            return None, f"nvrtcCompileProgram: {status!r}\n{log}", {}
        lowered = {n: check(nv.nvrtcGetLoweredName(prog, n.encode()),
                            "nvrtcGetLoweredName").decode() for n in names}
        size = check(nv.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = b" " * size
        check(nv.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin, log, lowered
    finally:
        nv.nvrtcDestroyProgram(prog)


# --------------------------------------------------------------------------- command
def _summary() -> str:
    return (f"{len(S.LAYOUT_KERNELS)} kernels x {{{', '.join(S.DTYPES)}}} x {{NCHW, NHWC}} + "
            f"{len(S.DTYPE_KERNELS)} x {{{', '.join(S.DTYPES)}}}")


def _find(kind: str, args: argparse.Namespace):
    return T.find_nvrtc() if kind == "nvrtc" else T.find_nvcc(args.nvcc)


def run(args: argparse.Namespace) -> int:
    arch = _arch(args.arch).replace("compute_", "sm_")  # a cubin: every instantiation checkable
    source = S.source()
    options = S.options(source)
    names = S.name_expressions()

    tools, why = [], []
    want = ("nvrtc", "nvcc") if args.compiler in ("auto", "all") else (args.compiler,)
    for kind in want:
        tool, reason = _find(kind, args)
        if tool is None:
            why.append(f"{kind}: {reason}")
            continue
        tools.append((kind, tool))
        if args.compiler == "auto":
            why = []  # auto needs any one compiler
            break
    print(f"roicore cuda-check: {len(names)} kernel instantiations ({_summary()}), "
          f"source {S.source_hash(source)}, -arch={arch}")
    for line in why:
        print(f"  FAILED: compiler not found: {line}")
    if not tools:
        if args.compiler == "auto":
            print("  FAILED: no CUDA compiler found: install the CUDA toolkit (nvcc) or NVRTC "
                  f"with {T.INSTALL_HINT}")
        return 1

    failed = bool(why)
    for kind, tool in tools:
        t0 = time.perf_counter()
        if kind == "nvrtc":
            label = f"NVRTC {tool.version()} ({tool.path}, found via {tool.found_via})"
            cubin, log, lowered = compile_nvrtc(tool, source, names, nvrtc_options(arch, options))
        else:
            label = f"nvcc {T.nvcc_version(tool)} ({tool})"
            cubin, log = compile_nvcc(tool, source, names, options, arch)
            lowered = {}
        dt = time.perf_counter() - t0
        if cubin is None:
            print(f"  {label}: FAILED to compile ({dt:.1f} s); compiler output:")
            print(log.rstrip())
            print(f"  compiled 0/{len(names)} kernel instantiations")
            failed = True
            continue
        missing = missing_instantiations(cubin, names, lowered)
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
