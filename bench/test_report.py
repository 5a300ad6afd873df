"""``python -m bench`` in a smoke run: it measures every contender, writes its files, and refuses
bad arguments."""

from __future__ import annotations

import json
import statistics

import pytest

from bench.report import main


def test_report_writes_table_json_and_chart(tmp_path, capsys):
    argv = ["--workloads", "small", "--optimizers", "momentum", "--rounds", "2", "--seconds",
            "0.001", "--no-memory", "--out", str(tmp_path)]
    assert main(argv) == 0
    data = json.loads((tmp_path / "cpu.json").read_text())
    assert data["device"] == "cpu" and data["machine"]["blas"]
    (res,) = data["results"]
    assert res["workload"] == "small" and res["rounds"] == 2 and res["optimizer"] == "momentum"
    assert {"vnn-numpy", "gemm-floor"} <= set(res["rates"])
    assert len(res["load"]) == 2
    kept = [k for k in range(2) if k not in res["dropped"]]
    for name, rates in res["rates"].items():
        assert len(rates) == 2 and all(r > 0 for r in rates), name
        assert res["median"][name] == statistics.median([rates[k] for k in kept])
    text = (tmp_path / "cpu.txt").read_text()
    row = next(line for line in text.splitlines() if line.strip().startswith("vnn-numpy"))
    floor = 100 * res["median"]["vnn-numpy"] / res["median"]["gemm-floor"]
    assert row.split()[-1] == f"{floor:.0f}%"
    if "torch-eager" in res["median"]:
        ratio = res["median"]["vnn-numpy"] / res["median"]["torch-eager"]
        assert f"{ratio:.2f}x" in row
    pytest.importorskip("matplotlib")
    assert (tmp_path / "cpu.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["--workloads", "tiny"], "--workloads: unknown ['tiny']"),
    (["--dtype", "float16"], "invalid choice: 'float16'"),
    (["--optimizers", "sgd,rmsprop"], "--optimizers: 'sgd,rmsprop'"),
])
def test_report_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_rounds_with_load_from_other_processes_are_dropped():
    from bench.report import clean

    rates = {"a": [10.0, 1.0, 12.0, 11.0], "b": [5.0, 50.0, 6.0, 7.0]}
    median, dropped = clean(rates, [0.1, 1.7, 0.0, 0.3], max_load=0.5)
    assert dropped == [1]
    assert median == {"a": 11.0, "b": 6.0}
    # nothing clean, or no load known: every round counts
    assert clean(rates, [2.0] * 4, 0.5) == ({"a": 10.5, "b": 6.5}, [])
    nan = float("nan")
    assert clean(rates, [nan] * 4, 0.5)[1] == []


def test_load_sees_another_process_busy():
    import subprocess
    import sys
    import time

    from bench.machine import Load

    with Load() as idle:
        time.sleep(0.3)
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        with Load() as busy:
            time.sleep(0.5)
    finally:
        spin.kill()
        spin.wait()
    if busy.cores is None:
        pytest.skip("no /proc/stat here")
    assert busy.cores > 0.6 and busy.cores > idle.cores + 0.4, (idle.cores, busy.cores)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_peers_run_the_same_update_as_vnn(optimizer):
    # the benchmark compares like with like: after 3 steps from the same weights, PyTorch's and
    # JAX's parameters equal vnn's (float64)
    import dataclasses

    import numpy as np

    import vnn
    from bench.runners import JaxRunner, TorchRunner, VnnRunner, has
    from bench.workloads import WORKLOADS

    w = dataclasses.replace(WORKLOADS["small"], optimizer=optimizer)
    ref = VnnRunner(w, "float64", 3)
    ref.run()
    want = np.concatenate([np.ravel(vnn.to_numpy(p)) for p in ref.net.weights])
    checked = 0
    # PyTorch's momentum starts its buffer at g, not (1 − β)g (no dampening on its first
    # step): the same work per step, different numbers
    if has("torch") and optimizer != "momentum":
        t = TorchRunner(w, "float64", 3)
        t.run()
        got = np.concatenate([m.weight.detach().numpy().ravel() for m in t.model
                              if hasattr(m, "weight")])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        checked += 1
    if has("jax"):
        j = JaxRunner(w, "float64", 3)
        j.run()
        got = np.concatenate([np.asarray(W).ravel() for W, _ in j.params[0]])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        checked += 1
    if not checked:
        pytest.skip("neither torch nor jax is installed")
