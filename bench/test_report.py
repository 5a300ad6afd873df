"""``python -m bench`` in a smoke run: it measures every contender, writes its files, and refuses
bad arguments."""

from __future__ import annotations

import json
import statistics

import pytest

from bench.report import main


def test_report_writes_table_json_and_chart(tmp_path, capsys):
    argv = ["--workloads", "small", "--rounds", "2", "--seconds", "0.001", "--no-memory",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    data = json.loads((tmp_path / "cpu.json").read_text())
    assert data["device"] == "cpu" and data["machine"]["blas"]
    (res,) = data["results"]
    assert res["workload"] == "small" and res["rounds"] == 2
    assert {"vnn-numpy", "gemm-floor"} <= set(res["rates"])
    for name, rates in res["rates"].items():
        assert len(rates) == 2 and all(r > 0 for r in rates), name
        assert res["median"][name] == statistics.median(rates)
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
])
def test_report_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
