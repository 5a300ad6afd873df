"""Mini-batch training throughput: backend x workload x dtype, peers side by side.

Each benchmark times ``run()``: a fixed number of full SGD steps (forward, loss, backward,
update) on data already on the device, synchronised before the clock is read. The samples/s
of each round is in ``extra_info``; ``python -m bench`` prints the alternating comparison table.
"""

from __future__ import annotations

import pytest

from bench.runners import GemmFloor, JaxRunner, SklearnRunner, TorchRunner, VnnRunner, cuda_available, has
from bench.workloads import WORKLOADS

CPU_WORKLOADS = [n for n, w in WORKLOADS.items() if not w.cuda_only]
STEPS = {"small": 200, "mnist": 40, "wide": 4, "deep": 200, "gpu-wide": 20}

CONTENDERS = {
    "vnn-compiled": (lambda w, d, s: VnnRunner(w, d, s, loops=True), "numba"),
    "vnn-numpy": (lambda w, d, s: VnnRunner(w, d, s, loops=False), None),
    "vnn-numpy-portable": (lambda w, d, s: VnnRunner(w, d, s, fast_path=False), None),
    "vnn-array_api_strict": (lambda w, d, s: VnnRunner(w, d, s, backend="array_api_strict"),
                             "array_api_strict"),
    "vnn-torch": (lambda w, d, s: VnnRunner(w, d, s, backend="torch"), "torch"),
    "vnn-jax": (lambda w, d, s: VnnRunner(w, d, s, backend="jax"), "jax"),
    "torch-eager": (lambda w, d, s: TorchRunner(w, d, s), "torch"),
    "jax-jit": (lambda w, d, s: JaxRunner(w, d, s), "jax"),
    "sklearn-mlp": (lambda w, d, s: SklearnRunner(w, d, s), "sklearn"),
    "gemm-floor": (lambda w, d, s: GemmFloor(w, d, s), None),
}


def _bench(benchmark, request, runner) -> None:
    rounds = 1 if request.config.bench_smoke else 5
    benchmark.pedantic(runner.run, rounds=rounds, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        benchmark.extra_info["samples_per_second_median"] = (
            runner.samples / benchmark.stats.stats.median)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("workload", CPU_WORKLOADS)
@pytest.mark.parametrize("contender", sorted(CONTENDERS))
def test_cpu_throughput(benchmark, request, contender, workload, dtype):
    factory, needs = CONTENDERS[contender]
    if needs and not has(needs):
        pytest.skip(f"{needs} is not installed")
    smoke = request.config.bench_smoke
    if smoke and contender == "vnn-array_api_strict" and workload == "wide":
        pytest.skip("smoke mode: the wide workload on array_api_strict takes too long")
    benchmark.group = f"{workload}-{dtype}"
    _bench(benchmark, request, factory(WORKLOADS[workload], dtype, 2 if smoke else STEPS[workload]))


@pytest.mark.skipif(not cuda_available(), reason="no CUDA GPU visible to CuPy")
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("contender", ["vnn-cupy", "torch-eager", "gemm-floor"])
def test_cuda_throughput(benchmark, request, contender, workload):
    w, steps = WORKLOADS[workload], 2 if request.config.bench_smoke else STEPS[workload]
    if contender == "vnn-cupy":
        runner = VnnRunner(w, "float32", steps, device="cuda")
    elif contender == "torch-eager":
        if not has("torch"):
            pytest.skip("torch is not installed")
        runner = TorchRunner(w, "float32", steps, device="cuda")
    else:
        runner = GemmFloor(w, "float32", steps, device="cuda")
    benchmark.group = f"cuda-{workload}"
    _bench(benchmark, request, runner)
