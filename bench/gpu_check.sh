#!/usr/bin/env bash
# The GPU check, in one go (about 5 minutes): on a machine with an NVIDIA GPU, CuPy, PyTorch,
# pytest, pytest-benchmark and scikit-learn, and no package index, it
#   1. names the machine (nvidia-smi, library versions),
#   2. runs every test that touches CuPy or CUDA,
#   3. runs `python -m bench --device cuda` (vnn-cupy, PyTorch eager CUDA, cuBLAS GEMM floor),
#   4. trains the README's demo on the GPU,
# and writes machine.txt, tests.txt, cuda.txt, cuda.json, cuda.png and demo.txt to $OUT
# (default bench/results/gpu). It exits non-zero when a test or a step fails.
#
# Packages the machine lacks travel as wheels in .whl/ (pure-Python ones need no platform tag):
#   python3 -m pip download --no-deps -d .whl array-api-compat array-api-strict
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/vnn-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/vnn-site${PYTHONPATH:+:$PYTHONPATH}
fi
# this checkout, without its dependencies (nothing can be fetched); the source tree as a fallback
if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>"$OUT/install.txt"; then
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

status=0
{
    date -u '+%Y-%m-%d %H:%M UTC'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" - <<'EOF'
import importlib
for name in ("vnn", "numpy", "cupy", "torch", "array_api_compat", "array_api_strict", "sklearn"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as exc:
        print(f"{name}: {type(exc).__name__}: {exc}")
import cupy
print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "GPUs", cupy.cuda.runtime.getDeviceCount())
EOF
} >"$OUT/machine.txt" 2>&1 || status=1
cat "$OUT/machine.txt"

# every test with a CuPy or CUDA parameter, and the CUDA benchmarks in smoke mode
timeout 240 "$PY" -m pytest -q -k "cupy or cuda" -p no:cacheprovider tests bench \
    --benchmark-disable 2>&1 | tee "$OUT/tests.txt" | tail -n 30
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

timeout 180 "$PY" -m bench --device cuda --rounds 9 --seconds 0.1 --out "$OUT" --tag cuda 2>&1 \
    | tee "$OUT/bench.log" | tail -n 40
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

timeout 60 "$PY" -m vnn train --dataset digits --epochs 20 --device cuda 2>&1 \
    | tee "$OUT/demo.txt" | tail -n 5
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "gpu_check: $([ $status -eq 0 ] && echo passed || echo FAILED); results in $OUT"
exit $status
