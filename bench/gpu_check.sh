#!/usr/bin/env bash
# The GPU check, in one go (under 7 minutes): on a machine with an NVIDIA GPU, CuPy, PyTorch,
# pytest, pytest-benchmark and scikit-learn, and no package index, it
#   1. names the machine (nvidia-smi, library versions),
#   2. runs every test that touches CuPy or CUDA (the kernel compile tests among them),
#   3. runs `python -m bench --device cuda` (vnn-cupy, PyTorch eager CUDA, cuBLAS GEMM floor),
#   4. trains the README's demo on the GPU,
# each under its own time budget, and writes machine.txt, tests.txt, bench.txt, cuda.txt,
# cuda.json, cuda.png, demo.txt and steps.txt (each step's exit status and seconds) to $OUT
# (default bench/results/gpu). It exits non-zero when a test or a step fails.
#
# Packages the machine lacks travel as wheels in .whl/ (pure-Python ones need no platform tag):
#   python3 -m pip download --no-deps -d .whl array-api-compat array-api-strict
# A dry run on a machine without a GPU (VNN_CHECK_DEVICE=cpu, a stand-in nvidia-smi on PATH)
# runs every step with the benchmark and the demo on the CPU: see bench/README.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
# the device of the benchmark and the demo (a dry run without a GPU sets cpu)
DEVICE=${VNN_CHECK_DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0
: >"$OUT/steps.txt"

# step NAME BUDGET COMMAND...: COMMAND under a budget of BUDGET seconds, its output in
# $OUT/NAME.txt (the last lines shown here), its exit status and seconds in $OUT/steps.txt
step() {
    local name=$1 budget=$2 t0 rc
    shift 2
    t0=$(date +%s)
    timeout "$budget" bash -c '"$@"' "$name" "$@" >"$OUT/$name.txt" 2>&1  # functions too
    rc=$?
    echo "$name: exit $rc, $(( $(date +%s) - t0 )) s of $budget s" | tee -a "$OUT/steps.txt"
    tail -n 25 "$OUT/$name.txt"
    [ "$rc" -eq 0 ] || status=1
}

install() {
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/vnn-site .whl/*.whl || return 1
    fi
    # this checkout, without its dependencies (nothing can be fetched); else the source tree
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
        || echo "not installed: the checkout runs from PYTHONPATH"
}

machine() {
    date -u '+%Y-%m-%d %H:%M UTC'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" - <<'PYTHON'
import importlib
for name in ("vnn", "numpy", "cupy", "torch", "jax", "array_api_compat", "array_api_strict",
             "sklearn", "scipy"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as exc:
        print(f"{name}: {type(exc).__name__}: {exc}")
import cupy
try:
    print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "GPUs",
          cupy.cuda.runtime.getDeviceCount())
except Exception as exc:
    print(f"CUDA: {type(exc).__name__}: {exc}")
PYTHON
}

export -f install machine
export PY
# the carried wheels and the checkout itself come first on the path, whatever pip managed
export PYTHONPATH=/tmp/vnn-site:$PWD${PYTHONPATH:+:$PYTHONPATH}
# Budgets: 30 + 20 + 200 + 150 + 45 s = 7 min 25 s at the very most, under the 8 minutes given.
step install 30 install
step machine 20 machine
step tests 200 "$PY" -m pytest -q -k "cupy or cuda" -p no:cacheprovider tests bench \
    --benchmark-disable
step bench 150 "$PY" -m bench --device "$DEVICE" --rounds 9 --seconds 0.1 --out "$OUT" \
    --tag "$DEVICE"
step demo 45 "$PY" -m vnn train --dataset digits --epochs 20 --device "$DEVICE"

echo "gpu_check: $([ $status -eq 0 ] && echo passed || echo FAILED); results in $OUT"
exit $status
