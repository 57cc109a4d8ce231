"""Command line: ``python -m roicore <command>`` (also the ``roicore`` script).

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so a
missing optional dependency affects that command alone.  Errors are printed
as one line (``roicore: error: ...``) with exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

DESCRIPTION = (
    "roicore: RoI Pool, RoI Align and RoI Warp (forward and backward) on the CPU and the GPU. "
    "Run 'roicore COMMAND -h' for a command's options."
)

COMMANDS = {
    "demo": ("roicore._cli.demo",
             "worked example: RoI Pool, RoI Align and RoI Warp on one small 8x8 feature map"),
    "info": ("roicore._cli.info",
             "show the version, threads, CPU instruction set, CUDA compilers and GPUs"),
    "explain": ("roicore._cli.explain",
                "draw where an operator's bins and sampling points fall on a map (PNG)"),
    "bench": ("roicore._cli.bench",
              "time roicore against the other installed libraries (torchvision, onnxruntime)"),
    "cuda-check": ("roicore._cli.cuda_check",
                   "compile every GPU kernel with NVRTC or nvcc (no GPU needed)"),
}


def _version() -> str:
    from . import __version__

    return __version__


def _parser(load: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roicore", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"roicore {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (modname, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == load:
            importlib.import_module(modname).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    load = next((a for a in argv if a in COMMANDS), None)
    try:
        parser = _parser(load)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except KeyboardInterrupt:
        print("roicore: interrupted", file=sys.stderr)
        return 130
    except (ImportError, ValueError, TypeError, OSError, RuntimeError, MemoryError) as exc:
        print(f"roicore: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
