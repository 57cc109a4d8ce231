#!/usr/bin/env bash
# One GPU session's checks, from the repository root, in one command of < 10 minutes:
#
#   bash benchmarks/gpu_session.sh            # everything
#   STEPS="memcheck racecheck" bash benchmarks/gpu_session.sh   # a subset (names below)
#
# Steps (each under `timeout`, each continues on failure; a summary of exit codes at the end):
#   env        nvidia-smi, versions, `python -m roicore info`
#   install    pip install -e . --no-build-isolation --no-index, only if roicore._cpu
#              does not import (no network: numpy>=2, Cython>=3, setuptools>=64 must be there)
#   pytest     python -m pytest -m gpu tests/test_gpu.py -q
#   bench      python -m roicore bench --device cuda --repeat 9 --no-progress
#   cudacheck  python -m roicore cuda-check   (NVRTC if cuda-bindings is there, else nvcc)
#   memcheck   compute-sanitizer --tool memcheck over a small subset of tests/test_gpu.py
#   racecheck  compute-sanitizer --tool racecheck over the deterministic / CSR tests
# (bench and cudacheck run before the sanitizers so that a slow sanitizer cannot cost
# the numbers.)  Under compute-sanitizer, CuPy's memory pool is turned off
# (cupy.cuda.set_allocator(None)) so that memcheck sees each array's own bounds.
#
# Output: ${OUT:-benchmarks/results}/YYYY-MM-DD_<device>_<step>.txt, each starting with
# the date, the device, the git commit and the exact command.
# Environment: BUDGET (seconds for the whole script, default 570), STEPS, PYTHON.
set -u

cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python}
OUTDIR=${OUT:-benchmarks/results}
BUDGET=${BUDGET:-570}
STEPS=${STEPS:-env install pytest bench cudacheck memcheck racecheck}
mkdir -p "$OUTDIR"

DATE=$(date +%F)
if command -v nvidia-smi >/dev/null 2>&1; then
    GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
fi
GPU_NAME=${GPU_NAME:-no-gpu}
DEVICE=$(printf '%s' "$GPU_NAME" | tr '[:upper:]' '[:lower:]' | sed -e 's/[^a-z0-9]\{1,\}/-/g' \
    -e 's/^-//' -e 's/-$//')
DEVICE=${DEVICE:-no-gpu}
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    COMMIT="$COMMIT (+ uncommitted changes)"
fi

declare -a NAMES=() CODES=() SECS=()

# run_step NAME TIMEOUT_S COMMAND...: run with a timeout (cut to what is left of BUDGET),
# output to $OUTDIR/${DATE}_${DEVICE}_NAME.txt after a header, tail to the console.
run_step() {
    local name=$1 limit=$2
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    local file="$OUTDIR/${DATE}_${DEVICE}_${name}.txt"
    local left=$((BUDGET - SECONDS - 5))
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    NAMES+=("$name")
    if [ "$limit" -lt 10 ]; then
        CODES+=("skipped (budget)")
        SECS+=(0)
        echo "== $name: skipped, ${BUDGET}s budget spent"
        return 0
    fi
    {
        echo "date: $(date -Iseconds)"
        echo "device: $GPU_NAME"
        echo "git commit: $COMMIT"
        echo "command: timeout ${limit} $(printf '%q ' "$@")"
        echo
    } >"$file"
    echo "== $name (timeout ${limit}s) -> $file"
    local t0=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" >>"$file" 2>&1
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "TIMED OUT after ${limit}s (exit $rc)" >>"$file"
    fi
    echo "exit status: $rc ($((SECONDS - t0)) s)" >>"$file"
    tail -n 15 "$file"
    CODES+=("$rc")
    SECS+=($((SECONDS - t0)))
}

# The two functions below run under `timeout` as `bash -c NAME` (exported with export -f).
# shellcheck disable=SC2317
env_info() {
    echo "--- nvidia-smi"
    nvidia-smi || echo "nvidia-smi: not available"
    echo "--- tools"
    for t in nvcc compute-sanitizer ncu g++; do
        printf '%s: %s\n' "$t" "$(command -v "$t" || echo 'not found')"
    done
    nvcc --version 2>/dev/null | tail -n 2
    echo "--- python packages"
    "$PY" - <<'PYEOF'
import importlib
import sys

print("python", sys.version.split()[0], sys.executable)
for mod in ("numpy", "Cython", "setuptools", "cupy", "torch", "torchvision", "pytest"):
    try:
        m = importlib.import_module(mod)
        print(f"{mod} {getattr(m, '__version__', '?')}")
    except Exception as exc:  # report and go on
        print(f"{mod}: not importable ({type(exc).__name__}: {exc})")
try:
    import torch

    print("torch.cuda.is_available():", torch.cuda.is_available(), "CUDA", torch.version.cuda)
except Exception:
    pass
try:
    import cupy

    print("cupy CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "devices", cupy.cuda.runtime.getDeviceCount())
except Exception as exc:
    print("cupy: no device", exc)
PYEOF
    echo "--- roicore info"
    "$PY" -m roicore info
}

# shellcheck disable=SC2317
install_if_needed() {
    if "$PY" -c "import roicore, roicore._cpu" 2>/dev/null; then
        echo "roicore (with its compiled CPU extension) already imports: not reinstalling"
        "$PY" -c "import roicore; print(roicore.__file__, roicore.__version__)"
        return 0
    fi
    echo "roicore._cpu does not import: building (no network, so no build isolation)"
    "$PY" - <<'PYEOF'
import importlib

missing = []
for mod, need in (("numpy", "2"), ("Cython", "3"), ("setuptools", "64")):
    try:
        print(mod, importlib.import_module(mod).__version__, f"(need >= {need})")
    except ImportError:
        missing.append(mod)
if missing:
    print("MISSING build dependencies:", ", ".join(missing), "- the build will fail")
PYEOF
    "$PY" -m pip install --no-build-isolation --no-index -e . -q || return $?
    "$PY" -c "import roicore, roicore._cpu; print('installed', roicore.__file__)"
}

export -f env_info install_if_needed
export PY

# pytest with CuPy's memory pool off (exact allocation bounds for compute-sanitizer)
SANITIZE_PY='import sys, cupy, pytest; cupy.cuda.set_allocator(None); sys.exit(pytest.main(sys.argv[1:]))'
MEMCHECK_K='(test_bit_exact_with_cpu and float32) or test_invalid_batch_index or test_non_finite or test_empty_rois or test_out_parameter or test_sampling_grid'
RACECHECK_K='test_csr_groups or test_deterministic_many_overlapping_rois'

run_step env 30 bash -c env_info
run_step install 180 bash -c install_if_needed
run_step pytest 180 "$PY" -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider
run_step bench 150 "$PY" -m roicore bench --device cuda --repeat 9 --no-progress
run_step cudacheck 60 "$PY" -m roicore cuda-check
run_step memcheck 120 compute-sanitizer --tool memcheck --error-exitcode 99 \
    "$PY" -c "$SANITIZE_PY" -m gpu tests/test_gpu.py -q -p no:cacheprovider -x -k "$MEMCHECK_K"
run_step racecheck 120 compute-sanitizer --tool racecheck --racecheck-report all \
    --error-exitcode 99 \
    "$PY" -c "$SANITIZE_PY" -m gpu tests/test_gpu.py -q -p no:cacheprovider -x -k "$RACECHECK_K"

summary="$OUTDIR/${DATE}_${DEVICE}_summary.txt"
{
    echo "date: $(date -Iseconds)"
    echo "device: $GPU_NAME"
    echo "git commit: $COMMIT"
    echo "command: bash benchmarks/gpu_session.sh (STEPS=\"$STEPS\", BUDGET=$BUDGET)"
    echo
    printf '%-10s %-18s %6s\n' step "exit status" seconds
    for i in "${!NAMES[@]}"; do
        printf '%-10s %-18s %6s\n' "${NAMES[$i]}" "${CODES[$i]}" "${SECS[$i]}"
    done
    echo "total ${SECONDS} s; outputs in $OUTDIR/${DATE}_${DEVICE}_*.txt"
} >"$summary"
echo
echo "== summary"
cat "$summary"
fail=0
for c in "${CODES[@]}"; do
    [ "$c" = 0 ] || fail=1
done
exit "$fail"
