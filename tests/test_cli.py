"""The ``vnn`` command line, end to end: each test runs ``python -m vnn.cli`` in a subprocess."""

from __future__ import annotations

import csv
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_in_terminal

import vnn
import vnn.io

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLORS = ["red", "green", "blue"]


def run(*args: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "vnn.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def ok(*args: object) -> subprocess.CompletedProcess[str]:
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def metric(text: str, name: str) -> float:
    found = re.search(rf"{name}: (-?\d+\.\d+)", text)
    assert found, f"no '{name}' in:\n{text}"
    return float(found.group(1))


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated classes in 4 features of very different scales."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0, 0.0], [3.0, -3.0, 3.0, 0.0], [-3.0, 3.0, 0.0, 3.0]])
    codes = rng.integers(0, 3, size=n)
    X = (centers[codes] + rng.normal(size=(n, 4))) * np.array([1.0, 100.0, 0.01, 10.0])
    return X, np.array(COLORS)[codes]


def write_csv(path: pathlib.Path, X: np.ndarray, y: np.ndarray | None = None,
              header: list[str] | None = None) -> pathlib.Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header is not None:
            w.writerow(header)
        for i, row in enumerate(X):
            w.writerow([repr(float(v)) for v in row] + ([] if y is None else [y[i]]))
    return path


def standardized(model: pathlib.Path, X: np.ndarray) -> np.ndarray:
    """``X`` with the standardization stored in the model file, as ``vnn predict`` applies it."""
    extra = vnn.io.read_metadata(model)["extra"]
    s = extra["standardize"]
    return (X - np.asarray(s["mean"])) / np.asarray(s["std"])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A model trained by ``vnn train`` on a CSV with a header row and string labels."""
    folder = tmp_path_factory.mktemp("classifier")
    X, y = blobs(400, seed=1)
    data = write_csv(folder / "train.csv", X, y, ["a", "b", "c", "d", "color"])
    model = folder / "model.safetensors"
    proc = ok("train", "--data", data, "--epochs", "15", "--batch-size", "32", "--hidden", "32",
              "--out", model, "--quiet")
    assert f"model written to {model}" in proc.stdout
    return model


# -- train ---------------------------------------------------------------------------------------
def test_train_digits_prints_val_accuracy():
    pytest.importorskip("sklearn")
    proc = ok("train", "--dataset", "digits", "--epochs", "8", "--batch-size", "32", "--quiet")
    assert metric(proc.stdout, "val accuracy") > 0.9
    assert metric(proc.stdout, "train accuracy") > 0.9
    assert "train loss: " in proc.stdout and "val loss: " in proc.stdout
    assert re.search(r"time: \d+\.\d+ s, [\d,]+ samples/s", proc.stdout)


def test_csv_with_string_labels_train_then_predict(classifier, tmp_path):
    meta = vnn.io.read_metadata(classifier)
    extra = meta["extra"]
    assert meta["output"] == "softmax" and meta["sizes"] == [4, 32, 3]
    assert sorted(extra["labels"]) == sorted(COLORS)
    assert extra["feature_names"] == ["a", "b", "c", "d"] and extra["target"] == "color"

    X, y = blobs(50, seed=2)
    data = write_csv(tmp_path / "new.csv", X, header=["a", "b", "c", "d"])
    out = tmp_path / "preds.csv"
    ok("predict", "--model", classifier, "--data", data, "--out", out)
    predicted = out.read_text().splitlines()
    assert len(predicted) == 50 and set(predicted) <= set(COLORS)

    net = vnn.io.load(classifier)
    codes = vnn.to_numpy(net.predict(standardized(classifier, X)))
    assert predicted == [extra["labels"][c] for c in codes]
    assert np.mean(np.array(predicted) == y) > 0.9

    # to stdout, from a file without a header row, and from a file that still holds the target
    headerless = write_csv(tmp_path / "headerless.csv", X)
    assert ok("predict", "--model", classifier, "--data", headerless).stdout.splitlines() == predicted
    with_target = write_csv(tmp_path / "with_target.csv", X, y, ["a", "b", "c", "d", "color"])
    assert ok("predict", "--model", classifier, "--data", with_target).stdout.splitlines() == predicted


def test_predict_proba_has_a_column_per_class(classifier, tmp_path):
    X, _ = blobs(20, seed=3)
    data = write_csv(tmp_path / "new.csv", X, header=["a", "b", "c", "d"])
    lines = ok("predict", "--model", classifier, "--data", data, "--proba").stdout.splitlines()
    labels = vnn.io.read_metadata(classifier)["extra"]["labels"]
    assert lines[0].split(",") == labels
    p = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert p.shape == (20, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    net = vnn.io.load(classifier)
    expected = vnn.to_numpy(net.predict_proba(standardized(classifier, X)))
    np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-7)


def test_regression_on_a_csv_without_header(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)) * [1.0, 10.0, 0.1]
    y = 50.0 + X @ [2.0, 0.3, -20.0] + 0.1 * rng.normal(size=300)
    data = write_csv(tmp_path / "reg.csv", np.column_stack([X, y]))
    model = tmp_path / "reg.safetensors"
    proc = ok("train", "--data", data, "--epochs", "60", "--batch-size", "32", "--hidden", "16",
              "--out", model, "-q")
    assert metric(proc.stdout, "val R²") > 0.9
    meta = vnn.io.read_metadata(model)
    assert meta["output"] == "identity" and meta["extra"]["labels"] is None

    new = write_csv(tmp_path / "new.csv", X[:10])
    values = np.array([float(v) for v in ok("predict", "--model", model, "--data", new).stdout.split()])
    scale = meta["extra"]["target_scaling"]
    net = vnn.io.load(model)
    expected = vnn.to_numpy(net.predict(standardized(model, X[:10]))) * scale["std"][0] + scale["mean"][0]
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    assert np.max(np.abs(values - y[:10])) < 0.3 * np.std(y)


def test_npz_input_with_two_classes_trains_a_sigmoid_output(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) * 7  # labels 0 and 7
    np.savez(tmp_path / "data.npz", X=X, y=y)
    model = tmp_path / "m.safetensors"
    proc = ok("train", "--data", tmp_path / "data.npz", "--epochs", "20", "--batch-size", "16",
              "--out", model, "-q")
    assert metric(proc.stdout, "val accuracy") > 0.85
    meta = vnn.io.read_metadata(model)
    assert meta["output"] == "sigmoid" and meta["sizes"][-1] == 1
    assert meta["extra"]["labels"] == [0, 7]
    np.save(tmp_path / "X.npy", X[:30])
    predicted = ok("predict", "--model", model, "--data", tmp_path / "X.npy").stdout.split()
    assert set(predicted) <= {"0", "7"} and len(predicted) == 30


def test_npy_input_with_target_index(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    codes = (X[:, 0] > 0).astype(np.float64) + (X[:, 1] > 0)  # 0, 1, 2 as floats
    np.save(tmp_path / "d.npy", np.column_stack([codes, X]))
    proc = ok("train", "--data", tmp_path / "d.npy", "--target", "0", "--output", "softmax",
              "--epochs", "3", "-q")
    assert "val accuracy: " in proc.stdout


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    X, y = blobs(100, seed=4)
    data = write_csv(tmp_path / "d.csv", X, y)
    plot = tmp_path / "curves.png"
    ok("train", "--data", data, "--epochs", "4", "--plot", plot, "-q")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- info, help, version ----------------------------------------------------------------------------
def test_info_lists_numpy():
    out = ok("info").stdout
    assert f"vnn {vnn.__version__}" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("numpy"))
    assert np.__version__ in line and "cpu" in line
    for name in ("cupy", "torch", "array_api_strict"):
        assert re.search(rf"^\s+{name}\s", out, re.MULTILINE)


def test_info_shows_mpi_nvrtc_and_the_gpu():
    import importlib.metadata
    import shutil

    out = ok("info").stdout
    found = {ln.split()[0]: ln.split(None, 1)[1] for ln in out.splitlines()
             if ln.startswith("  ") and len(ln.split()) > 1}
    for dist in ("mpi4py", "mpich", "scipy"):
        try:
            assert found[dist].startswith(importlib.metadata.version(dist)), found[dist]
        except importlib.metadata.PackageNotFoundError:
            assert found[dist].startswith("not installed")
    assert found["mpiexec"] == (shutil.which("mpiexec") or "not on PATH")
    assert "nvrtc" in found and "gpu" in found


def test_info_says_whether_the_compiled_cpu_step_is_on(monkeypatch):
    import importlib.util

    line = next(x for x in ok("info").stdout.splitlines() if x.strip().startswith("numba"))
    if importlib.util.find_spec("numba") is None:
        assert "not installed" in line and "compiled CPU step: off" in line
        assert "vanilla-nn[fast]" in line
        return
    assert "compiled CPU step: on" in line
    monkeypatch.setenv("VNN_NUMBA", "0")
    line = next(x for x in ok("info").stdout.splitlines() if x.strip().startswith("numba"))
    assert "compiled CPU step: off (VNN_NUMBA=0)" in line


@pytest.mark.parametrize("command", [[], ["train"], ["predict"], ["evaluate"], ["info"]],
                         ids=["vnn", "train", "predict", "evaluate", "info"])
def test_help(command):
    proc = ok(*command, "--help")
    assert proc.stdout.startswith("usage: vnn")
    assert len(proc.stdout.splitlines()) > 5


def test_version():
    assert ok("--version").stdout.strip() == f"vnn {vnn.__version__}"


# -- errors --------------------------------------------------------------------------------------
def assert_usage_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "vnn: error:" in proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["train", "--dataset", "mnist"], "invalid choice: 'mnist'"),
    (["train", "--dataset", "digits", "--hidden", "0"], "--hidden"),
    (["train", "--dataset", "digits", "--hidden", "12,,x"], "'12,,x'"),
    (["train", "--dataset", "digits", "--lr", "-1"], "--lr"),
    (["train", "--dataset", "digits", "--epochs", "0"], "--epochs"),
    (["train", "--data", "no/such/file.csv"], "no such file"),
    (["train"], "--data"),
    ([], "COMMAND"),
], ids=["dataset", "hidden-0", "hidden-garbled", "lr", "epochs", "missing-file", "no-data",
        "no-command"])
def test_bad_arguments_exit_2(args, fragment):
    assert_usage_error(run(*args), fragment)


def test_unknown_target_column(tmp_path):
    X, y = blobs(20, seed=5)
    data = write_csv(tmp_path / "d.csv", X, y, ["a", "b", "c", "d", "color"])
    assert_usage_error(run("train", "--data", data, "--target", "colour"), "'colour'", "'color'")
    headerless = write_csv(tmp_path / "h.csv", X, y)
    assert_usage_error(run("train", "--data", headerless, "--target", "7"), "no header row")


def test_bad_data_files(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b,y\n1,2,3\n4,oops,5\n")
    assert_usage_error(run("train", "--data", tmp_path / "bad.csv"), "line 3", "'oops'")
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5\n")
    assert_usage_error(run("train", "--data", tmp_path / "ragged.csv"), "line 2")
    (tmp_path / "d.txt.gz").write_text("")
    assert_usage_error(run("train", "--data", tmp_path / "d.txt.gz"), "unknown file type")
    X, y = blobs(20, seed=6)
    data = write_csv(tmp_path / "d.csv", X, y)
    assert_usage_error(run("train", "--data", data, "--output", "identity"), "non-numeric")


def test_predict_errors(classifier, tmp_path):
    X, _ = blobs(5, seed=7)
    three = write_csv(tmp_path / "three.csv", X[:, :3])
    assert_usage_error(run("predict", "--model", classifier, "--data", three),
                       "3 feature columns but the model expects 4")
    not_a_model = write_csv(tmp_path / "m.safetensors", X)
    assert_usage_error(run("predict", "--model", not_a_model, "--data", three),
                       "not a valid safetensors file")
    assert_usage_error(run("predict", "--model", tmp_path / "none.safetensors", "--data", three))
    assert_usage_error(run("predict", "--data", three), "--model")


def test_checkpoint_and_resume_give_the_uninterrupted_run(tmp_path):
    """Train 2 epochs with --checkpoint, resume to 5: the same summary as 5 epochs straight."""
    ck = tmp_path / "ck.safetensors"
    common = ["train", "--dataset", "iris", "--hidden", "8", "--batch-size", "16", "--quiet"]
    first = run(*common, "--epochs", "2", "--checkpoint", str(ck))
    assert first.returncode == 0, first.stderr
    resumed = run(*common, "--epochs", "5", "--resume", str(ck))
    straight = run(*common, "--epochs", "5")
    assert resumed.returncode == 0 and straight.returncode == 0, resumed.stderr
    pick = [ln for ln in straight.stdout.splitlines() if "loss" in ln or "accuracy" in ln]
    assert pick and pick == [ln for ln in resumed.stdout.splitlines()
                             if "loss" in ln or "accuracy" in ln]
    bad = run(*common, "--epochs", "5", "--resume", str(tmp_path / "missing.safetensors"))
    assert bad.returncode == 2 and "vnn: error: --resume" in bad.stderr


def test_predict_with_an_exp_output_model_prints_its_values(tmp_path):
    """A Poisson model (exp output) saved from Python predicts positive values, not labels, and
    refuses --proba as a regression does."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    net = vnn.MLP([3, 4, 1], output="exp", dtype="float64", seed=0)
    net.fit(X, rng.poisson(1.0, size=30), epochs=2)
    model = tmp_path / "counts.safetensors"
    vnn.save(net, model)
    data = write_csv(tmp_path / "x.csv", X, header=["a", "b", "c"])
    lines = ok("predict", "--model", model, "--data", data).stdout.splitlines()
    np.testing.assert_allclose([float(v) for v in lines], vnn.to_numpy(net.predict(X)),
                               rtol=1e-7)
    proc = run("predict", "--model", model, "--data", data, "--proba")
    assert proc.returncode != 0 and "regression (exp output)" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [["train", "--dataset", "digits", "--epochs", "abc"],
                                  ["train", "--dataset", "digits", "--lr", "-1"],
                                  ["train", "--dataset", "digits", "--hidden", "0"],
                                  ["predict", "--model", "m.safetensors"]])
def test_an_argument_error_is_one_line_and_says_where_help_is(args):
    proc = run(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vnn: error: ") and f"vnn {args[0]} --help" in lines[0]


def test_predict_into_a_closed_pipe_is_quiet(classifier, tmp_path):
    """``vnn predict ... | head -2``: the reader goes away, and vnn stops without a word (status
    141, as a Unix tool killed by SIGPIPE), not with 'Broken pipe'."""
    X, _ = blobs(2000, seed=4)
    data = write_csv(tmp_path / "many.csv", X, header=["a", "b", "c", "d"])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen([sys.executable, "-m", "vnn.cli", "predict", "--model", classifier,
                             "--data", data, "--proba"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before vnn writes a line
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_resuming_says_where_it_resumes_and_the_bar_starts_there(tmp_path):
    """The summary's header names the epoch it resumes from; on a terminal (a real pty) the
    progress bar starts at that epoch, not at 0."""
    ck = tmp_path / "ck.safetensors"
    common = ["train", "--dataset", "iris", "--hidden", "8", "--batch-size", "16"]
    assert run(*common, "--epochs", "2", "--checkpoint", ck, "--quiet").returncode == 0
    resumed = ok(*common, "--epochs", "5", "--resume", ck)
    assert f"resuming from epoch 2 of 5 ({ck}): training epochs 3..5" in resumed.stdout
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    status, text = run_in_terminal([sys.executable, "-m", "vnn.cli", *common, "--epochs", "5",
                                    "--resume", str(ck)], env=env)
    assert status == 0
    assert "2/5" in text and "0/5" not in text, text


def test_ctrl_c_to_a_real_process_says_one_line_writes_the_model_and_exits_130(tmp_path):
    import signal
    import time

    model = tmp_path / "m.safetensors"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # an empty cache: a job this long compiles its loops (with numba) before its first epoch, so
    # the signal is sent once an epoch has finished (its checkpoint exists), not after a fixed time
    env["VNN_CACHE_DIR"] = str(tmp_path / "cache")
    ck = tmp_path / "ck.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "vnn.cli", "train", "--dataset", "digits",
                             "--hidden", "256,256", "--epochs", "100000", "--out", str(model),
                             "--checkpoint", str(ck)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    while "training:" not in proc.stdout.readline():  # the header is printed before training
        pass
    deadline = time.monotonic() + 120
    while not ck.exists() and time.monotonic() < deadline:  # the first epoch has finished
        time.sleep(0.05)
    time.sleep(0.3)  # into a later epoch
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "RuntimeWarning" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0], err
    assert model.exists() and vnn.io.load(model).sizes == [64, 256, 256, 10]


def _prices(tmp_path):
    """Whole-number prices: 300 samples, nearly as many distinct values."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    price = np.round(200 + 40 * X[:, 0] + 10 * rng.normal(size=300))
    return write_csv(tmp_path / "h.csv", X, price, header=["a", "b", "c", "price"])


def test_whole_number_prices_are_a_regression_and_the_choice_is_said(tmp_path):
    proc = ok("train", "--data", _prices(tmp_path), "--target", "price", "--epochs", "5")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("task:"))
    assert line.startswith("task: regression") and "--task classify" in line
    assert "val R²" in proc.stdout


def test_float_class_labels_in_npy_are_a_classification(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(float) + (X[:, 1] > 0)  # 0.0, 1.0, 2.0 as floats (.npy is numeric)
    path = tmp_path / "labels.npy"
    np.save(path, np.column_stack([X, y]))
    proc = ok("train", "--data", path, "--epochs", "5")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("task:"))
    assert line.startswith("task: classification (3 classes") and "--task regress" in line
    assert "val accuracy" in proc.stdout


def test_task_overrides_the_guess_and_conflicts_with_output_are_refused(tmp_path):
    data = _prices(tmp_path)
    proc = ok("train", "--data", data, "--target", "price", "--epochs", "1", "--task", "classify")
    assert "task: classification (" in proc.stdout and ", --task classify)" in proc.stdout
    assert_usage_error(run("train", "--data", data, "--target", "price", "--task", "classify",
                           "--output", "identity"), "--task classify", "--output identity")


def test_evaluate_scores_a_classifier_as_scikit_learn_does(classifier, tmp_path):
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss

    X, y = blobs(90, seed=5)
    data = write_csv(tmp_path / "labelled.csv", X, y, header=["a", "b", "c", "d", "colour"])
    out = ok("evaluate", "--model", classifier, "--data", data, "--target", "colour").stdout
    net = vnn.io.load(classifier)
    labels = vnn.io.read_metadata(classifier)["extra"]["labels"]
    p = vnn.to_numpy(net.predict_proba(standardized(classifier, X))).astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)  # float32 probabilities, summing to 1 in float64
    truth = np.array([labels.index(str(c)) for c in y])
    assert metric(out, "accuracy") == pytest.approx(accuracy_score(truth, p.argmax(1)), abs=1e-4)
    assert metric(out, "loss") == pytest.approx(log_loss(truth, p, labels=range(3)), abs=2e-4)
    table = [ln.split() for ln in out.splitlines()[-3:]]
    counts = np.array([[int(v) for v in row[1:]] for row in table])
    np.testing.assert_array_equal(counts, confusion_matrix(truth, p.argmax(1), labels=range(3)))
    assert [row[0] for row in table] == labels


def test_evaluate_scores_a_regression_in_the_targets_units(tmp_path):
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = 50.0 + X @ [2.0, 0.3, -20.0] + rng.normal(size=200)
    model = tmp_path / "reg.safetensors"
    ok("train", "--data", write_csv(tmp_path / "train.csv", X, y), "--epochs", "30", "--out",
       model, "-q")
    out = ok("evaluate", "--model", model, "--data", write_csv(tmp_path / "t.csv", X, y)).stdout
    pred = np.array([float(v) for v in
                     ok("predict", "--model", model, "--data",
                        write_csv(tmp_path / "x.csv", X)).stdout.split()])
    assert metric(out, "R²") == pytest.approx(r2_score(y, pred), abs=1e-4)
    assert metric(out, "loss") == pytest.approx(0.5 * np.mean((pred - y) ** 2), rel=1e-4)


def test_evaluate_refuses_labels_the_model_does_not_know(classifier, tmp_path):
    X, y = blobs(10, seed=5)
    data = write_csv(tmp_path / "odd.csv", X, ["purple"] * 10, header=["a", "b", "c", "d", "t"])
    assert_usage_error(run("evaluate", "--model", classifier, "--data", data), "'purple'",
                       "not trained on")


def test_predict_on_a_labelled_csv_says_the_target_is_not_used(classifier, tmp_path):
    X, y = blobs(12, seed=6)
    data = write_csv(tmp_path / "labelled.csv", X, y, header=["a", "b", "c", "d", "colour"])
    proc = ok("predict", "--model", classifier, "--data", data)
    assert len(proc.stdout.splitlines()) == 12
    assert "column(s) 'colour' not used by the model" in proc.stderr
    assert "vnn evaluate" in proc.stderr


def _named_regression(tmp_path):
    """A model trained on the columns price, a, b with --target price (not the last column)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 2))
    price = 3.0 * X[:, 0] - X[:, 1] + 0.1 * rng.normal(size=200)
    train = write_csv(tmp_path / "train.csv", np.column_stack([price, X]),
                      header=["price", "a", "b"])
    model = tmp_path / "m.safetensors"
    ok("train", "--data", train, "--target", "price", "--epochs", "40", "--out", model, "-q")
    return model, X, price


def test_evaluate_takes_the_models_target_and_feature_columns_by_name(tmp_path):
    model, X, price = _named_regression(tmp_path)
    same = ok("evaluate", "--model", model, "--data", write_csv(
        tmp_path / "same.csv", np.column_stack([price, X]), header=["price", "a", "b"])).stdout
    moved = ok("evaluate", "--model", model, "--data", write_csv(
        tmp_path / "moved.csv", np.column_stack([np.arange(200), X[:, 1], price, X[:, 0]]),
        header=["id", "b", "price", "a"])).stdout
    assert metric(same, "R²") > 0.9
    assert metric(moved, "R²") == metric(same, "R²")  # the same columns, found by name
    assert_usage_error(run("evaluate", "--model", model, "--data", write_csv(
        tmp_path / "lacks.csv", np.column_stack([price, X]), header=["price", "a", "c"])),
        "'b'")


def test_evaluate_a_classifier_without_stored_labels_and_a_target_of_the_wrong_width(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    net = vnn.MLP([3, 8, 3], output="softmax", seed=0)
    net.fit(X, y, epochs=20)
    model = tmp_path / "py.safetensors"
    vnn.save(net, model)  # from Python: no labels stored
    out = ok("evaluate", "--model", model, "--data", write_csv(tmp_path / "c.csv", X, y)).stdout
    acc = float(np.mean(vnn.to_numpy(net.predict(X)) == y))
    assert metric(out, "accuracy") == pytest.approx(acc, abs=1e-4)
    reg = vnn.MLP([3, 4, 1], seed=0)
    reg_path = tmp_path / "reg.safetensors"
    vnn.save(reg, reg_path)
    np.savez(tmp_path / "two.npz", X=X, y=np.column_stack([y, y]).astype(float))
    assert_usage_error(run("evaluate", "--model", reg_path, "--data", tmp_path / "two.npz"),
                       "2 target columns", "1 output")


def test_predict_notes_unused_columns_only_when_it_picked_columns_by_name(tmp_path):
    model, X, price = _named_regression(tmp_path)
    renamed = write_csv(tmp_path / "renamed.csv", X, header=["x", "y"])
    proc = ok("predict", "--model", model, "--data", renamed)
    assert "not used by the model" not in proc.stderr
