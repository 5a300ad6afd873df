#!/usr/bin/env bash
# One prepared check for a lent CUDA GPU with no package registry: the CUDA tests and the GPU
# benchmark (vnn-CuPy, PyTorch eager CUDA, cuBLAS GEMM floor), results under $OUT (or bench/results).
#
# The machine needs CuPy, NumPy, pytest and (for the peer) torch; the wheels it lacks
# (array-api-compat, array-api-strict, pytest-benchmark, py-cpuinfo) are carried in .whl/:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       array-api-compat array-api-strict pytest-benchmark py-cpuinfo
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 240 python3 -m pytest tests -k cupy -q -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.txt"
timeout 240 python3 -m bench --device cuda --rounds 7 --seconds 0.2 --out "$OUT" --tag cuda \
    2>&1 | tee "$OUT/cuda_bench.txt"
