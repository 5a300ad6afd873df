"""The ``vnn`` command line under stress: a full disk, a model file replaced while it is read,
hostile data and model files, runaway sizes. Every failure must be exit status 2 with one line
``vnn: error: ...`` on stderr (never a traceback), and no write may destroy the previous file.

Most tests run the command line in-process (``vnn.cli.main``); those where the real exit status,
a hang or a traceback matter run ``python -m vnn`` in a subprocess.
"""

from __future__ import annotations

import io
import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from conftest import fill
from test_cli import write_csv

import vnn
import vnn.io
from vnn import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLORS = ["red", "green", "blue"]


# -- helpers --------------------------------------------------------------------------------------
def fails(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    """Run ``vnn ARGS`` in-process; assert status 2 and exactly one ``vnn: error:`` line on
    stderr; return that line."""
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert status == 2, (status, out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vnn: error: "), err
    return lines[0]


def succeeds(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[str, str]:
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert status == 0, (out, err)
    return out, err


def run(*args: object, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``python -m vnn ARGS`` in a subprocess."""
    env = dict(os.environ)
    env.pop("VNN_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "vnn", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, **kw)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vnn: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated classes in 4 features."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0, 0.0], [3.0, -3.0, 3.0, 0.0], [-3.0, 3.0, 0.0, 3.0]])
    codes = rng.integers(0, 3, size=n)
    return centers[codes] + rng.normal(size=(n, 4)), np.array(COLORS)[codes]


def npy_with_header(path: pathlib.Path, shape: tuple[int, ...], data: bytes = b"",
                    descr: str = "<f8") -> pathlib.Path:
    """An ``.npy`` file whose header claims ``shape`` and ``descr``, followed by ``data``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    path.write_bytes(buf.getvalue() + data)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A CSV with a header row, 4 features and string labels."""
    X, y = blobs(90, seed=1)
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv", X, y,
                     ["a", "b", "c", "d", "color"])


@pytest.fixture(scope="module")
def model(data: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A classifier written by ``vnn train``."""
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    assert cli.main(["train", "--data", str(data), "--epochs", "2", "--hidden", "4", "--quiet",
                     "--out", str(path)]) == 0
    return path


# -- a failed write leaves the old file -------------------------------------------------------
def test_predict_out_on_a_full_disk_keeps_the_previous_file(capsys, model, full_disk, tmp_path):
    X, _ = blobs(20000, seed=2)  # about 100 KB of predictions: more than the whole disk
    features = write_csv(tmp_path / "new.csv", X)
    old = full_disk / "predictions.csv"
    old.write_bytes(b"".join(f"{COLORS[i % 3]}\n".encode() for i in range(1500)))
    before = old.read_bytes()
    fill(full_disk)
    line = fails(capsys, "predict", "--model", model, "--data", features, "--out", old)
    assert "No space left" in line and str(old) in line
    assert old.read_bytes() == before
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "predictions.csv"]


def test_plot_on_a_full_disk_keeps_the_previous_file(capsys, data, full_disk):
    pytest.importorskip("matplotlib")
    old = full_disk / "curves.png"
    old.write_bytes(b"\x89PNG an older plot" * 100)
    before = old.read_bytes()
    fill(full_disk)
    line = fails(capsys, "train", "--data", data, "--epochs", "2", "--hidden", "4", "--quiet",
                 "--plot", old)
    assert "No space left" in line and "--plot" in line
    assert old.read_bytes() == before
    assert sorted(p.name for p in full_disk.iterdir()) == ["curves.png", "filler"]


def test_predict_out_replaces_the_file_whole(capsys, model, tmp_path):
    X, _ = blobs(30, seed=3)
    features = write_csv(tmp_path / "new.csv", X)
    out = tmp_path / "p.csv"
    out.write_text("an older, longer file\n" * 100)
    succeeds(capsys, "predict", "--model", model, "--data", features, "--out", out)
    lines = out.read_text().splitlines()
    assert len(lines) == 30 and set(lines) <= set(COLORS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "p.csv"]  # no temp left


@pytest.mark.parametrize("option", ["--out", "--plot", "--checkpoint"])
@pytest.mark.parametrize("kind", ["directory", "fifo", "missing-folder"])
def test_train_output_paths_are_checked_before_training(capsys, data, tmp_path, option, kind):
    target = tmp_path / ("x.png" if option == "--plot" else "x.safetensors")
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target = tmp_path / "no" / "such" / target.name
    args = ["train", "--data", str(data), "--epochs", "1", "--hidden", "4", option, str(target)]
    if kind == "fifo":  # in a subprocess: opening a FIFO to write it would block forever
        proc = run(*args, timeout=60)
        status, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        status = cli.main(args)
        out, err = capsys.readouterr()
    assert status == 2 and out == "", out  # nothing read, trained or printed
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vnn: error: {option} {target}"), err


@pytest.mark.parametrize("name", ["curves.jpg2", "curves", "curves.txt"])
def test_plot_format_is_checked_before_training(capsys, data, tmp_path, name):
    status = cli.main(["train", "--data", str(data), "--epochs", "1", "--hidden", "4",
                       "--plot", str(tmp_path / name)])
    out, err = capsys.readouterr()
    assert status == 2 and out == "", out
    assert err.startswith("vnn: error: --plot") and ".png" in err, err
    assert not (tmp_path / name).exists()


def test_predict_out_is_checked_before_loading(tmp_path):
    """A FIFO as --out and a broken model file: the --out is named, so it was checked first
    (in a subprocess: opening a FIFO to write it would block forever)."""
    X, _ = blobs(5, seed=4)
    features = write_csv(tmp_path / "new.csv", X)
    broken = tmp_path / "m.safetensors"
    broken.write_bytes(b"not a model")
    out = tmp_path / "p.csv"
    os.mkfifo(out)
    proc = run("predict", "--model", broken, "--data", features, "--out", out, timeout=60)
    assert_one_line_error(proc, f"--out {out}", "FIFO")


# -- the model file is read once --------------------------------------------------------
def _classifier_file(path: pathlib.Path, seed: int, labels: list[str], mean: float) -> vnn.MLP:
    net = vnn.MLP([4, 3], output="softmax", dtype="float64", seed=seed)
    vnn.io.save(net, path, extra={"labels": labels, "feature_names": None,
                                  "standardize": {"mean": [mean] * 4, "std": [2.0] * 4},
                                  "target_scaling": None})
    return net


def test_predict_takes_everything_from_one_read_of_the_model(capsys, tmp_path, monkeypatch):
    """The file is replaced by another model right after the first read: the predictions must
    be model A's, computed here with NumPy from A's parameters (Eqns 1-2, softmax argmax)."""
    path, other = tmp_path / "m.safetensors", tmp_path / "b.safetensors"
    a = _classifier_file(path, seed=1, labels=["a0", "a1", "a2"], mean=1.0)
    _classifier_file(other, seed=2, labels=["b0", "b1", "b2"], mean=-3.0)
    X = np.random.default_rng(5).normal(size=(200, 4)) * 3
    features = write_csv(tmp_path / "x.csv", X)
    reads = []
    real_read = vnn.io.layout.read

    def read_then_swap(*args: Any, **kw: Any) -> Any:
        result = real_read(*args, **kw)
        reads.append(args[0])
        if len(reads) == 1:
            os.replace(other, path)  # another process saves to the same path
        return result

    monkeypatch.setattr(vnn.io.layout, "read", read_then_swap)
    out, _ = succeeds(capsys, "predict", "--model", path, "--data", features)
    W, b = vnn.to_numpy(a.weights[0]), vnn.to_numpy(a.biases[0])
    z = ((X - 1.0) / 2.0) @ W.T + b
    expected = [f"a{k}" for k in z.argmax(axis=1)]
    assert out.splitlines() == expected
    assert len(reads) == 1


# -- the model's extra is checked before use ----------------------------------------------------
GOOD_EXTRA: dict[str, Any] = {
    "labels": ["x", "y", "z"], "feature_names": ["f0", "f1", "f2", "f3"],
    "standardize": {"mean": [0.0] * 4, "std": [1.0] * 4}, "target_scaling": None}


@pytest.mark.parametrize("output, field, value", [
    ("softmax", "labels", ["x", "y"]),
    ("softmax", "labels", {"0": "x", "1": "y", "2": "z"}),
    ("softmax", "labels", "xyz"),
    ("softmax", "labels", [["x"], ["y"], ["z"]]),
    ("sigmoid", "labels", ["only"]),
    ("softmax", "standardize", {"mean": [0.0] * 4}),
    ("softmax", "standardize", {"std": [1.0] * 4}),
    ("softmax", "standardize", {"mean": [0.0] * 3, "std": [1.0] * 4}),
    ("softmax", "standardize", {"mean": [0.0] * 4, "std": [1.0, 0.0, 1.0, 1.0]}),
    ("softmax", "standardize", {"mean": [0.0] * 4, "std": [1.0, -2.0, 1.0, 1.0]}),
    ("softmax", "standardize", {"mean": ["0"] * 4, "std": [1.0] * 4}),
    ("softmax", "standardize", {"mean": [0.0] * 4, "std": [1.0, True, 1.0, 1.0]}),
    ("softmax", "standardize", {"mean": [1e308 * 10] * 4, "std": [1.0] * 4}),
    ("softmax", "standardize", [[0.0] * 4, [1.0] * 4]),
    ("softmax", "feature_names", ["f0", "f1", "f2"]),
    ("softmax", "feature_names", [0, 1, 2, 3]),
    ("softmax", "feature_names", "f0,f1,f2,f3"),
    ("identity", "target_scaling", {"mean": [0.0, 0.0, 0.0], "std": [1.0]}),
    ("identity", "target_scaling", {"mean": [0.0] * 3}),
    ("identity", "target_scaling", {"mean": [0.0] * 3, "std": [1.0, 0.0, 1.0]}),
    ("identity", "labels", ["x", "y", "z"]),
    ("softmax", "target_scaling", {"mean": [0.0] * 3, "std": [1.0] * 3}),
], ids=lambda v: re.sub(r"[^\w.-]+", "", str(v))[:24])
def test_predict_refuses_a_bad_extra(capsys, tmp_path, output, field, value):
    path = tmp_path / "m.safetensors"
    sizes = [4, 1] if output == "sigmoid" else [4, 3]
    extra = dict(GOOD_EXTRA, **{field: value})
    if output == "sigmoid":
        extra["labels"] = value if field == "labels" else ["no", "yes"]
    if output == "identity" and field != "labels":
        extra["labels"] = None
    vnn.io.save(vnn.MLP(sizes, output=output, seed=0), path, extra=extra)
    X, _ = blobs(5, seed=6)
    features = write_csv(tmp_path / "x.csv", X)
    line = fails(capsys, "predict", "--model", path, "--data", features)
    assert str(path) in line and repr(field) in line


@pytest.mark.parametrize("output, sizes, extra, expected", [
    ("softmax", [4, 3], None, {"0", "1", "2"}),
    ("softmax", [4, 3], dict(GOOD_EXTRA, feature_names=None), {"x", "y", "z"}),
    ("sigmoid", [4, 1], {"labels": [False, True]}, {"False", "True"}),
    ("sigmoid", [4, 1], {"labels": [0, 7]}, {"0", "7"}),
], ids=["no-extra", "labels", "bool-labels", "int-labels"])
def test_predict_accepts_good_extras(capsys, tmp_path, output, sizes, extra, expected):
    path = tmp_path / "m.safetensors"
    vnn.io.save(vnn.MLP(sizes, output=output, seed=0), path, extra=extra)
    X = np.random.default_rng(7).normal(size=(40, 4)) * 5
    out, _ = succeeds(capsys, "predict", "--model", path, "--data", write_csv(tmp_path / "x.csv", X))
    assert set(out.split()) <= expected and len(out.split()) == 40


# -- no tracebacks ------------------------------------------------------------------------
def test_divergence_is_one_line_suggesting_a_smaller_lr(capsys, data):
    line = fails(capsys, "train", "--data", data, "--lr", "1e300", "--optimizer", "sgd",
                 "--epochs", "2", "--quiet")
    assert "diverged" in line and "smaller --lr" in line


def test_an_integer_target_beyond_int64_is_read_as_a_number(capsys, tmp_path):
    X, _ = blobs(40, seed=8)
    y = np.arange(40) % 3
    rows = [str(v) for v in y]
    rows[0] = "99999999999999999999"
    path = write_csv(tmp_path / "big.csv", X, rows, ["a", "b", "c", "d", "t"])
    out, _ = succeeds(capsys, "train", "--data", path, "--epochs", "1", "--hidden", "4",
                      "--quiet", "--task", "regress")  # (4 whole numbers: classes, unasked)
    assert "R²" in out  # read as a number, a regression


def test_a_huge_integer_label_is_read_as_the_nearest_float(capsys, tmp_path):
    X, _ = blobs(40, seed=8)
    rows = ["99999999999999999999" if i % 2 else "1" for i in range(40)]
    path = write_csv(tmp_path / "big.csv", X, rows, ["a", "b", "c", "d", "t"])
    model = tmp_path / "m.safetensors"
    succeeds(capsys, "train", "--data", path, "--epochs", "1", "--hidden", "4", "--quiet",
             "--output", "sigmoid", "--out", model)
    labels = vnn.io.read_metadata(model)["extra"]["labels"]
    assert labels == [1, 10**20]  # 99999999999999999999 as a float64 is exactly 1e20


@pytest.mark.parametrize("command", ["train", "predict"])
def test_a_corrupt_npz_is_one_line(capsys, model, tmp_path, command):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip archive" * 8)
    args = ["--data", bad] if command == "train" else ["--model", model, "--data", bad]
    line = fails(capsys, command, *args)
    assert str(bad) in line


@pytest.mark.parametrize("command", ["train", "predict"])
def test_an_npz_with_a_corrupt_member_is_one_line(capsys, model, tmp_path, command):
    path = tmp_path / "d.npz"
    X, y = blobs(50, seed=9)
    np.savez_compressed(path, X=X, y=y)
    raw = bytearray(path.read_bytes())
    raw[60:80] = b"\xff" * 20  # inside the first member's compressed data
    path.write_bytes(bytes(raw))
    args = ["--data", path] if command == "train" else ["--model", model, "--data", path]
    line = fails(capsys, command, *args)
    assert str(path) in line


@pytest.mark.parametrize("command", ["train", "predict"])
def test_an_npy_header_claiming_a_huge_shape_is_refused_without_allocating(capsys, model,
                                                                         tmp_path, command):
    path = npy_with_header(tmp_path / "huge.npy", (2**40, 4), b"\0" * 64)
    args = ["--data", path] if command == "train" else ["--model", model, "--data", path]
    line = fails(capsys, command, *args)
    assert str(path) in line and "(1099511627776, 4)" in line and "64 bytes" in line


@pytest.mark.parametrize("command", ["train", "predict"])
def test_an_npz_member_claiming_a_huge_shape_is_refused(capsys, model, tmp_path, command):
    import zipfile

    member = npy_with_header(tmp_path / "X.npy", (2**40, 4), b"\0" * 64).read_bytes()
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("X.npy", member)
        z.writestr("y.npy", npy_with_header(tmp_path / "y.npy", (2,), b"\0" * 16).read_bytes())
    args = ["--data", path] if command == "train" else ["--model", model, "--data", path]
    line = fails(capsys, command, *args)
    assert str(path) in line and "(1099511627776, 4)" in line


@pytest.mark.parametrize("case", ["truncated", "object", "zip-named-npy", "text-named-npy",
                                  "npy-named-npz", "structured"])
def test_other_bad_numpy_files_are_one_line(capsys, tmp_path, case):
    path = tmp_path / ("d.npz" if case == "npy-named-npz" else "d.npy")
    good = io.BytesIO()
    np.save(good, np.arange(40.0).reshape(10, 4))
    if case == "truncated":
        path.write_bytes(good.getvalue()[:-50])
    elif case == "object":
        np.save(path, np.array([[1, None]], dtype=object), allow_pickle=True)
    elif case == "zip-named-npy":
        np.savez(tmp_path / "z.npz", X=np.ones((3, 2)), y=np.ones(3))
        path.write_bytes((tmp_path / "z.npz").read_bytes())
    elif case == "text-named-npy":
        path.write_text("1,2,3\n4,5,6\n")
    elif case == "npy-named-npz":
        path.write_bytes(good.getvalue())
    else:
        np.save(path, np.zeros(3, dtype=[("a", "<f8"), ("b", "<i4")]))
    line = fails(capsys, "train", "--data", path)
    assert str(path) in line


def test_an_npz_with_string_labels_still_trains_and_predicts(capsys, tmp_path):
    X, y = blobs(60, seed=11)
    path, model = tmp_path / "d.npz", tmp_path / "m.safetensors"
    np.savez_compressed(path, X=X, y=y)  # y: dtype <U5
    succeeds(capsys, "train", "--data", path, "--epochs", "1", "--hidden", "4", "--quiet",
             "--out", model)
    out, _ = succeeds(capsys, "predict", "--model", model, "--data", path)
    assert len(out.split()) == 60 and set(out.split()) <= set(COLORS)


def test_a_fifo_as_data_is_refused_at_once(tmp_path):
    fifo = tmp_path / "d.csv"
    os.mkfifo(fifo)
    assert_one_line_error(run("train", "--data", fifo, timeout=60), str(fifo), "FIFO")


def test_a_directory_as_data_is_refused(capsys, tmp_path):
    (tmp_path / "d.csv").mkdir()
    assert "directory" in fails(capsys, "train", "--data", tmp_path / "d.csv")


def test_an_empty_column_name_in_the_header_is_refused(capsys, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,,c,t\n" + "".join(f"{i},{i + 1},{i * 2},{i % 2}\n" for i in range(20)))
    line = fails(capsys, "train", "--data", path, "--epochs", "1")
    assert "line 1" in line and "column 2" in line


def test_a_duplicate_column_name_in_the_header_is_refused(capsys, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,a,t\n" + "".join(f"{i},{i + 1},{i * 2},{i % 2}\n" for i in range(20)))
    line = fails(capsys, "train", "--data", path, "--epochs", "1")
    assert "'a'" in line and "line 1" in line


def test_a_first_row_with_a_missing_value_is_not_taken_for_a_header(capsys, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,,3,0\n" + "".join(f"{i},{i + 1},{i * 2},{i % 2}\n" for i in range(20)))
    line = fails(capsys, "train", "--data", path, "--epochs", "1")
    assert "line 1" in line and "empty field" in line


@pytest.mark.parametrize("column", ["a", "t"])
def test_values_too_large_to_standardize_are_refused(capsys, tmp_path, column):
    """The squares of 1e308 overflow float64: the column's std would be inf and the z-scored
    column all zeros (or NaN)."""
    X = np.random.default_rng(10).normal(size=(40, 3))
    y = X[:, 1] * 2.0
    (X if column == "a" else y)[:2] = [1e308, -1e308] if column == "t" else [[1e308] * 3,
                                                                             [-1e308] * 3]
    path = write_csv(tmp_path / "d.csv", X, [repr(float(v)) for v in y], ["a", "b", "c", "t"])
    line = fails(capsys, "train", "--data", path, "--epochs", "1", "--hidden", "4")
    assert f"column {column!r}" in line and "1e+308" in line


def test_a_huge_batch_size_is_fine(capsys, data):
    out, _ = succeeds(capsys, "train", "--data", data, "--batch-size", str(10**30), "--epochs",
                      "1", "--hidden", "4", "--quiet")
    assert "train accuracy" in out


def test_an_unexpected_error_is_one_line_and_vnn_debug_shows_it(capsys, data, monkeypatch):
    def broken(*args: Any, **kw: Any) -> None:
        raise RuntimeError("something inside vnn broke")

    monkeypatch.setattr(cli.training, "read_table", broken)
    line = fails(capsys, "train", "--data", data)
    assert "RuntimeError" in line and "something inside vnn broke" in line
    assert "VNN_DEBUG=1" in line
    monkeypatch.setenv("VNN_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something inside vnn broke"):
        cli.main(["train", "--data", str(data)])


def test_memory_error_is_one_line(capsys, data, monkeypatch):
    def too_big(*args: Any, **kw: Any) -> None:
        raise MemoryError("Unable to allocate 29.8 GiB for an array with shape (10, 4)")

    monkeypatch.setattr(vnn, "MLP", too_big)
    line = fails(capsys, "train", "--data", data)
    assert "29.8 GiB" in line and "memory" in line


def _limit_address_space() -> None:  # a safety net: never let the test take the machine's memory
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is reliable on Linux only")
def test_a_huge_hidden_layer_is_refused_quickly_naming_its_size():
    pytest.importorskip("sklearn")
    proc = run("train", "--dataset", "iris", "--hidden", "1000000000", "--quiet", timeout=90,
               preexec_fn=_limit_address_space)
    line = assert_one_line_error(proc)
    assert re.search(r"\d(\.\d+)? ?([KMGTP]i?B|bytes)", line), line


# -- resuming a checkpoint already past --epochs --------------------------------------
@pytest.fixture
def checkpoint_at_5(capsys, data, tmp_path) -> pathlib.Path:
    ck = tmp_path / "ck.safetensors"
    succeeds(capsys, "train", "--data", data, "--hidden", "4", "--quiet", "--epochs", "5",
             "--checkpoint", ck)
    return ck


def test_resume_past_epochs_says_there_is_nothing_to_train(capsys, data, tmp_path,
                                                           checkpoint_at_5):
    out = tmp_path / "m.safetensors"
    status = cli.main(["train", "--data", str(data), "--hidden", "4", "--quiet", "--epochs", "3",
                       "--resume", str(checkpoint_at_5), "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert status == 2 and stdout == "", stdout  # no summary: nothing was trained
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "already at epoch 5 of --epochs 3: nothing to train" in lines[0]
    assert not out.exists()


def test_resume_at_epochs_writes_the_checkpoint_model_as_it_is(capsys, data, tmp_path,
                                                               checkpoint_at_5):
    out = tmp_path / "m.safetensors"
    stdout, err = succeeds(capsys, "train", "--data", data, "--hidden", "4", "--quiet",
                           "--epochs", "5", "--resume", checkpoint_at_5, "--out", out)
    assert "already at epoch 5 of --epochs 5: nothing to train" in err
    assert "nothing trained" in stdout and "samples/s" not in stdout
    saved, ck = vnn.io.load(out), vnn.io.load(checkpoint_at_5)
    for a, b in zip(saved.weights + saved.biases, ck.weights + ck.biases):
        np.testing.assert_array_equal(vnn.to_numpy(a), vnn.to_numpy(b))


def test_resume_from_a_model_file_without_a_checkpoint_is_refused(capsys, data, model):
    line = fails(capsys, "train", "--data", data, "--hidden", "4", "--resume", model)
    assert "--resume" in line and "checkpoint" in line


def test_no_traceback_in_a_subprocess_for_a_bad_model(tmp_path):
    path = tmp_path / "m.safetensors"
    vnn.io.save(vnn.MLP([4, 3], output="softmax", seed=0), path,
                extra=dict(GOOD_EXTRA, labels=["x"]))
    X, _ = blobs(5, seed=6)
    features = write_csv(tmp_path / "x.csv", X, header=["f0", "f1", "f2", "f3"])
    assert_one_line_error(run("predict", "--model", path, "--data", features), "'labels'")


# -- no output may be one of the inputs, or another output ---------------------------------------
def _links(tmp_path: pathlib.Path, data: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A copy of the training data, a symbolic link to it and a hard link to it."""
    copy = tmp_path / "d.csv"
    copy.write_bytes(data.read_bytes())
    (tmp_path / "soft.safetensors").symlink_to(copy)
    os.link(copy, tmp_path / "hard.png")
    return copy, tmp_path / "soft.safetensors"


@pytest.mark.parametrize("outputs, clash", [
    (["--out", "d.csv"], "--out d.csv is the same file as --data d.csv"),
    (["--out", "./sub/../d.csv"], "--out ./sub/../d.csv is the same file as --data d.csv"),
    (["--out", "soft.safetensors"], "--out soft.safetensors is the same file as --data d.csv"),
    (["--plot", "hard.png"], "--plot hard.png is the same file as --data d.csv"),
    (["--checkpoint", "d.csv"], "--checkpoint d.csv is the same file as --data d.csv"),
    (["--out", "both.png", "--plot", "both.png"],
     "--plot both.png is the same file as --out both.png"),
    (["--out", "m.st", "--checkpoint", "m.st"],
     "--checkpoint m.st is the same file as --out m.st"),
    (["--resume", "ck.st", "--out", "ck.st"], "--out ck.st is the same file as --resume ck.st"),
], ids=["out-data", "out-dotted-path", "out-symlink", "plot-hardlink", "checkpoint-data",
        "out-plot", "out-checkpoint", "out-resume"])
def test_train_refuses_an_output_that_is_an_input_or_another_output(capsys, data, tmp_path,
                                                                    monkeypatch, outputs, clash):
    if "--plot" in outputs:
        pytest.importorskip("matplotlib")
    copy, _ = _links(tmp_path, data)
    (tmp_path / "sub").mkdir()
    (tmp_path / "ck.st").write_bytes(b"a checkpoint")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    line = fails(capsys, "train", "--data", "d.csv", "--epochs", "1", "--hidden", "4", *outputs)
    assert line == f"vnn: error: {clash}; choose another output file"
    assert copy.read_bytes() == data.read_bytes()
    assert (tmp_path / "ck.st").read_bytes() == b"a checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("out, clash", [
    ("m.st", "--out m.st is the same file as --model m.st"),
    ("x.csv", "--out x.csv is the same file as --data x.csv"),
    ("soft.csv", "--out soft.csv is the same file as --model m.st"),
    ("hard.csv", "--out hard.csv is the same file as --data x.csv"),
], ids=["out-model", "out-data", "out-symlink-to-model", "out-hardlink-to-data"])
def test_predict_refuses_an_output_that_is_an_input(capsys, model, tmp_path, monkeypatch, out,
                                                    clash):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.st").write_bytes(model.read_bytes())
    (tmp_path / "soft.csv").symlink_to("m.st")
    X, _ = blobs(10, seed=12)
    write_csv(tmp_path / "x.csv", X)
    os.link("x.csv", "hard.csv")
    saved = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    line = fails(capsys, "predict", "--model", "m.st", "--data", "x.csv", "--out", out)
    assert line == f"vnn: error: {clash}; choose another output file"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == saved


def test_resume_and_checkpoint_may_be_the_same_file(capsys, data, tmp_path):
    ck = tmp_path / "ck.safetensors"
    succeeds(capsys, "train", "--data", data, "--hidden", "4", "--quiet", "--epochs", "2",
             "--checkpoint", ck)
    succeeds(capsys, "train", "--data", data, "--hidden", "4", "--quiet", "--epochs", "3",
             "--resume", ck, "--checkpoint", ck)
    assert vnn.io.read_metadata(ck)["epoch"] == 3


# -- the model is written before the summary ------------------------------------------------------
def test_the_model_is_written_before_a_failing_summary(capsys, data, tmp_path, monkeypatch):
    """Scoring the training set runs out of memory: the model and the plot were written first,
    and the error line says so."""
    pytest.importorskip("matplotlib")
    out, plot = tmp_path / "m.safetensors", tmp_path / "curves.png"

    def out_of_memory(*args: Any, **kw: Any) -> None:
        raise MemoryError("Unable to allocate 22.4 GiB for an array with shape (150000, 40000)")

    monkeypatch.setattr(cli.training, "_predict_rows", out_of_memory)
    line = fails(capsys, "train", "--data", data, "--epochs", "2", "--hidden", "4", "--quiet",
                 "--out", out, "--plot", plot)
    assert "22.4 GiB" in line
    assert line.endswith(f"; the model was written to {out} and the loss curves to {plot}")
    assert vnn.io.read_metadata(out)["epoch"] == 2
    assert plot.read_bytes().startswith(b"\x89PNG")


def _scores(out: str) -> list[str]:
    """The summary without its timing line."""
    return [line for line in out.splitlines() if not line.startswith("time:")]


def _count_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows of each call of ``MLP.predict`` from now on."""
    rows: list[int] = []
    real_predict = vnn.MLP.predict

    def counting(self: vnn.MLP, X: Any) -> Any:
        rows.append(len(X))
        return real_predict(self, X)

    monkeypatch.setattr(vnn.MLP, "predict", counting)
    return rows


def test_the_summary_is_scored_in_chunks_of_rows(capsys, data, monkeypatch):
    """The accuracy of a large set needs the activations of a few rows at a time only; in
    chunks of 7 rows it is the same as in one go (float64: the same sums either way)."""
    args = ["train", "--data", data, "--epochs", "3", "--hidden", "4", "--quiet", "--dtype",
            "float64"]
    whole, _ = succeeds(capsys, *args)
    rows = _count_rows(monkeypatch)
    monkeypatch.setattr(cli.training, "SCORE_ROWS", 7)
    chunked, _ = succeeds(capsys, *args)
    assert rows and max(rows) <= 7 and sum(rows) == 90  # 72 training and 18 validation rows
    assert "train accuracy" in chunked and _scores(chunked) == _scores(whole)


def test_r2_is_scored_in_chunks_of_rows(capsys, tmp_path, monkeypatch):
    X = np.random.default_rng(13).normal(size=(50, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    path = write_csv(tmp_path / "reg.csv", X, [repr(float(v)) for v in y], ["a", "b", "c", "t"])
    args = ["train", "--data", path, "--epochs", "3", "--hidden", "4", "--quiet", "--dtype",
            "float64"]
    whole, _ = succeeds(capsys, *args)
    rows = _count_rows(monkeypatch)
    monkeypatch.setattr(cli.training, "SCORE_ROWS", 3)
    chunked, _ = succeeds(capsys, *args)
    assert rows and max(rows) <= 3 and sum(rows) == 50  # 40 training and 10 validation rows
    assert "train R²" in whole and _scores(chunked) == _scores(whole)


def test_a_failing_summary_names_the_plot_alone_when_there_is_no_out(capsys, data, tmp_path,
                                                                     monkeypatch):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curves.svg"

    def broken(*args: Any, **kw: Any) -> None:
        raise RuntimeError("scoring broke")

    monkeypatch.setattr(cli.training, "_predict_rows", broken)
    line = fails(capsys, "train", "--data", data, "--epochs", "1", "--hidden", "4", "--quiet",
                 "--plot", plot)
    assert "scoring broke" in line and line.endswith(f"; the loss curves were written to {plot}")
    assert plot.read_bytes().startswith(b"<?xml")


def test_a_terminal_without_the_superscript_two_still_gets_the_summary(tmp_path, monkeypatch):
    X = np.random.default_rng(14).normal(size=(30, 2))
    path = write_csv(tmp_path / "reg.csv", X, [repr(float(v)) for v in X[:, 0] * 2], ["a", "b", "y"])
    out = tmp_path / "m.safetensors"
    monkeypatch.setenv("PYTHONIOENCODING", "ascii")
    proc = run("train", "--data", path, "--epochs", "1", "--hidden", "4", "--quiet", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "train R2: " in proc.stdout and f"model written to {out}" in proc.stdout
    assert out.exists()


# -- Ctrl-C ---------------------------------------------------------------------------------------
@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_ctrl_c_in_the_first_epoch_is_one_line_and_writes_nothing(capsys, data, tmp_path,
                                                                  monkeypatch):
    import signal

    from vnn.train import Trainer

    real_step = Trainer.__call__

    def interrupted_step(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the very first step
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "__call__", interrupted_step)
    out = tmp_path / "m.safetensors"
    status = cli.main(["train", "--data", str(data), "--epochs", "3", "--hidden", "4",
                       "--batch-size", "8", "--quiet", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert status == 130, (stdout, err)
    assert err.strip().splitlines() == [
        "vnn: interrupted at epoch 1 (no epoch finished); nothing written"]
    assert not out.exists()


def _interrupt_after(epoch: int) -> Any:
    """``MLP.fit`` whose callback sends this process SIGINT after epoch ``epoch``."""
    import signal

    real_fit = vnn.MLP.fit

    def fit(net: vnn.MLP, *args: Any, callback: Any = None, **kw: Any) -> Any:
        def then_interrupt(done: int, history: vnn.History) -> None:
            if callback is not None:
                callback(done, history)
            if done == epoch:
                os.kill(os.getpid(), signal.SIGINT)  # arrives during the next epoch's first step

        return real_fit(net, *args, callback=then_interrupt, **kw)

    return fit


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_ctrl_c_after_some_epochs_reports_them_and_writes_the_model(capsys, data, tmp_path,
                                                                   monkeypatch):
    out = tmp_path / "m.safetensors"
    monkeypatch.setattr(vnn.MLP, "fit", _interrupt_after(2))
    status = cli.main(["train", "--data", str(data), "--epochs", "5", "--hidden", "4",
                       "--batch-size", "8", "--quiet", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert status == 130, (stdout, err)
    assert "train loss: " in stdout and "train accuracy: " in stdout
    assert f"model written to {out}" in stdout
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "RuntimeWarning" not in err, err
    assert lines[0].startswith("vnn: interrupted at epoch 3 after 2 finished epochs")
    assert "last finished step" in lines[0] and str(out) in lines[0]
    assert vnn.io.read_metadata(out)["epoch"] == 2


# -- numbers in a model's extra -------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("standardize", {"mean": [10**400, 0, 0, 0], "std": [1, 1, 1, 1]}),
    ("standardize", {"mean": [0, 0, 0, 0], "std": [1, 1, 2**1024, 1]}),
    ("labels", [1, 10**400, 3]),
], ids=["mean", "std", "labels"])
def test_an_integer_beyond_float_range_in_the_extra_is_refused(capsys, tmp_path, field, value):
    path = tmp_path / "m.safetensors"
    vnn.io.save(vnn.MLP([4, 3], output="softmax", seed=0), path,
                extra=dict(GOOD_EXTRA, feature_names=None, **{field: value}))
    X, _ = blobs(5, seed=16)
    line = fails(capsys, "predict", "--model", path, "--data", write_csv(tmp_path / "x.csv", X))
    assert str(path) in line and repr(field) in line and "OverflowError" not in line


def test_plot_takes_every_format_matplotlib_writes(capsys, data, tmp_path):
    pytest.importorskip("matplotlib")
    for suffix, magic in ((".eps", b"%!PS-Adobe"), (".jpg", b"\xff\xd8\xff"), (".svg", b"<?xml")):
        path = tmp_path / f"curves{suffix}"
        assert cli.main(["train", "--data", str(data), "--epochs", "2", "--hidden", "4",
                         "--quiet", "--plot", str(path)]) == 0
        assert path.read_bytes().startswith(magic), suffix
    capsys.readouterr()


def test_a_model_whose_column_names_repeat_predicts_by_position(capsys, tmp_path):
    """Earlier versions of vnn train stored such names from a header like a,a,c,d."""
    path = tmp_path / "m.safetensors"
    net = vnn.MLP([4, 3], output="softmax", seed=0)
    vnn.io.save(net, path, extra=dict(GOOD_EXTRA, feature_names=["f0", "f0", "", "f3"]))
    X, _ = blobs(5, seed=6)
    features = write_csv(tmp_path / "x.csv", X, header=["f0", "f0", "f2", "f3"])
    assert cli.main(["predict", "--model", str(path), "--data", str(features)]) == 0
    out, err = capsys.readouterr()
    assert "taken by position" in err and len(err.strip().splitlines()) == 1
    expected = np.array(["x", "y", "z"])[host_argmax(net, X)]
    assert out.split() == list(expected)


def host_argmax(net: vnn.MLP, X: np.ndarray) -> np.ndarray:
    """Class codes of ``X`` by an independent forward pass in NumPy (one layer: Eqn 1, softmax)."""
    W, b = vnn.to_numpy(net.weights[0]).astype(np.float64), vnn.to_numpy(net.biases[0])
    return (X @ W.T + b).argmax(axis=1)


def test_plot_shows_the_accuracy_beside_the_loss(capsys, tmp_path, monkeypatch):
    """--plot: the loss curves on the left, the accuracy (train and validation, each epoch) on
    the right; the last accuracy is the summary's."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    drawn: list[Any] = []
    save = Figure.savefig

    def record(fig: Any, *args: Any, **kw: Any) -> Any:
        drawn.append([(ax.get_ylabel(), [line.get_ydata() for line in ax.get_lines()])
                      for ax in fig.axes])
        return save(fig, *args, **kw)

    monkeypatch.setattr(Figure, "savefig", record)
    plot = tmp_path / "curves.png"
    out, _ = succeeds(capsys, "train", "--dataset", "iris", "--epochs", "4", "--plot", plot)
    assert plot.stat().st_size > 0
    (loss_label, losses), (metric_label, scores) = drawn[0]
    assert loss_label.startswith("loss") and metric_label == "accuracy"
    assert [len(v) for v in losses] == [4, 4] and [len(v) for v in scores] == [4, 4]
    train_acc = float(re.search(r"train accuracy: (\d\.\d+)", out).group(1))
    assert scores[0][-1] == pytest.approx(train_acc, abs=1e-4)
