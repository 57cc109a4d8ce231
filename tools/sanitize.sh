#!/usr/bin/env bash
# Build roicore's CPU extension with AddressSanitizer + UndefinedBehaviorSanitizer and run
# tests under it.  The build happens in a temporary copy of the tree, so the normal in-place
# extension (roicore/_cpu.*.so) is never touched.
#
#   tools/sanitize.sh                      # the default subset below (~2 min on 2 cores)
#   tools/sanitize.sh tests/test_kernels.py -k chunking    # any pytest arguments
#   ROICORE_SANITIZE_KEEP=1 tools/sanitize.sh ...             # keep the copy (path printed)
#
# Any sanitizer report aborts the test process (-fno-sanitize-recover=all, ASan's
# halt_on_error), so the script's exit status is the verdict.  Leak detection is off:
# CPython and NumPy keep allocations alive until exit by design.  Tests that measure memory
# (ru_maxrss; ASan's shadow memory inflates it) are deselected.  torch (and triton,
# torchvision) cannot be imported under the libasan preload (triton's import aborts), so a
# sitecustomize here makes importing them a ModuleNotFoundError: tests that use
# pytest.importorskip("torch") skip, and the fuzz harness runs NumPy inputs only.  A fuzz harness, if the tree
# has one as tests/test_fuzz*.py, runs as part of the default subset; set
# ROICORE_SANITIZE_EXTRA to a shell command to run something more under the same build.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"
CXX="${CXX:-g++}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/roicore-sanitize.XXXXXX")"
if [[ -z "${ROICORE_SANITIZE_KEEP:-}" ]]; then
  trap 'rm -rf "$WORK"' EXIT
else
  echo "sanitize: keeping $WORK"
fi

echo "== copy of the tree -> $WORK"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | grep -zv '\.so$' |
  xargs -0 cp --parents -t "$WORK")

echo "== build with -fsanitize=address,undefined"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
(cd "$WORK" && CXX="$CXX" CFLAGS="$SAN" CXXFLAGS="$SAN" LDFLAGS="$SAN" "$PY" setup.py -q build_ext --inplace \
  -j 2 >"$WORK/build.log" 2>&1) || { tail -40 "$WORK/build.log"; exit 1; }
# the extension must really be instrumented (setuptools reads CFLAGS / CXXFLAGS)
SYMS="$(nm -D "$WORK"/roicore/_cpu*.so)"
[[ "$SYMS" == *__ubsan_handle* && "$SYMS" == *__asan_init* ]] ||
  { echo "sanitize: the build is not instrumented" >&2; exit 1; }
LIBASAN="$("$CXX" -print-file-name=libasan.so)"
[[ -f "$LIBASAN" ]] || { echo "sanitize: libasan.so not found for $CXX" >&2; exit 1; }

export LD_PRELOAD="$LIBASAN"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export PYTHONMALLOC=malloc  # every Python allocation through ASan's malloc
mkdir -p "$WORK/.sanitize_site"
cat >"$WORK/.sanitize_site/sitecustomize.py" <<'PY'
import sys


class _NoTorch:
    """tools/sanitize.sh: torch/triton abort under the libasan preload."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "torchvision", "triton"):
            raise ModuleNotFoundError(f"{name} is not importable under tools/sanitize.sh")
        return None


sys.meta_path.insert(0, _NoTorch())
PY
export PYTHONPATH="$WORK/.sanitize_site:$WORK"

cd "$WORK"
"$PY" -c "import roicore, sys; print('sanitized build:', roicore.__file__)"
if [[ $# -gt 0 ]]; then
  ARGS=("$@")
else
  ARGS=(tests/test_reference.py tests/test_roi_pool.py tests/test_roi_align.py
        tests/test_roi_warp.py tests/test_kernels.py tests/test_bench.py
        -k "not peak_memory and not bench_quick and not bench_options")
  for f in tests/test_hardening.py tests/test_fuzz*.py; do
    if [[ -f "$f" ]]; then ARGS=("$f" "${ARGS[@]}"); fi
  done
fi
echo "== pytest ${ARGS[*]}"
"$PY" -m pytest -q -p no:cacheprovider "${ARGS[@]}"
if [[ -n "${ROICORE_SANITIZE_EXTRA:-}" ]]; then
  echo "== $ROICORE_SANITIZE_EXTRA"
  bash -c "$ROICORE_SANITIZE_EXTRA"
fi
echo "sanitize: no AddressSanitizer / UndefinedBehaviorSanitizer report"
