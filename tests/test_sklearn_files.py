"""Estimator model files (``vnn.sklearn.save`` / ``vnn.sklearn.load``): what a file declares is
bounded by what it holds, every field is checked against its network, and a file is read once.

Edited files are built the way an attacker would: the ``extra`` of a real saved estimator, read
with ``vnn.io.read_metadata``, edited, and written again with ``vnn.io.save`` (which stores any
JSON-able ``extra``), so only the estimator's own fields are wrong.
"""

from __future__ import annotations

import copy
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed")

import vnn  # noqa: E402
import vnn.io  # noqa: E402
from vnn import sklearn as vsk  # noqa: E402

quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
pytestmark = quiet

KINDS = ["binary", "strings", "multilabel", "regression", "multioutput"]
MB = 2**20


def data(kind: str) -> tuple[np.ndarray, Any]:
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 3))
    t = X @ rng.standard_normal((3, 3))
    y = {"binary": (t[:, 0] > 0).astype(int) * 7,
         "strings": np.array(["cat", "dog", "eel"])[(t[:, 0] > 0).astype(int) + (t[:, 1] > 0)],
         "multilabel": (t > 0).astype(int),
         "regression": t[:, 0],
         "multioutput": t[:, :2]}[kind]
    return X, y


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    """One fitted estimator of each kind, hidden layers (5, 4)."""
    out = {}
    for kind in KINDS:
        X, y = data(kind)
        cls = vsk.MLPRegressor if kind in ("regression", "multioutput") else vsk.MLPClassifier
        out[kind] = cls(hidden_layer_sizes=(5, 4), max_iter=20, random_state=0).fit(X, y)
    return out


@pytest.fixture
def saved(fitted, tmp_path) -> Callable[[str], Path]:
    def save(kind: str) -> Path:
        path = tmp_path / f"{kind}.safetensors"
        vsk.save(fitted[kind], path)
        return path

    return save


def rewrite(src: Path, dst: Path, edit: Callable[[dict], Any], net: vnn.MLP | None = None
            ) -> Path:
    """``src`` with its ``extra`` edited in place by ``edit`` (and ``net`` instead of its own)."""
    extra = copy.deepcopy(vnn.io.read_metadata(src)["extra"])
    edit(extra)
    vnn.io.save(vnn.load(src) if net is None else net, dst, extra=extra)
    return dst


def refused(path: Path, field: str) -> vnn.io.ModelFileError:
    with pytest.raises(vnn.io.ModelFileError) as info:
        vsk.load(path)
    exc = info.value
    assert isinstance(exc, ValueError)
    assert exc.path == os.fspath(path) and os.fspath(path) in str(exc)
    assert exc.field == field, str(exc)
    return exc


def params(key: str, value: Any) -> Callable[[dict], None]:
    return lambda e: e["sklearn"]["params"].__setitem__(key, value)


def fitted_attr(key: str, value: Any) -> Callable[[dict], None]:
    return lambda e: e["sklearn"]["fitted"].__setitem__(key, value)


def dropped(part: str, key: str) -> Callable[[dict], None]:
    return lambda e: e["sklearn"][part].pop(key)


def peak_while(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """What ``fn()`` returns or raises, the peak traced allocation (MB) and the seconds taken."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result: Any = fn()
    except Exception as exc:  # noqa: BLE001 - returned for the caller to check
        result = exc
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    return result, peak, seconds


# -- what a file declares is bounded by what it holds --------------------------------------
def test_declared_unicode_length_is_refused_without_allocating_it(saved, tmp_path):
    # "<U400000000" for three short labels: 4.8 GB if the declared length were allocated
    path = rewrite(saved("strings"), tmp_path / "bomb.safetensors",
                   fitted_attr("classes_dtype", "<U400000000"))
    assert path.stat().st_size < 4096
    exc, peak, seconds = peak_while(lambda: vsk.load(path))
    assert isinstance(exc, vnn.io.ModelFileError), exc
    assert exc.field == "sklearn.fitted.classes_dtype" and "'<U3'" in str(exc)
    assert peak < 50, f"{peak:.0f} MB allocated to refuse the file"
    assert seconds < 10  # generous: the check is a few comparisons


def big_multilabel(src: Path, dst: Path, k: int, outputs: int) -> Path:
    """The multilabel estimator's file with ``k`` classes and a net of ``outputs`` outputs."""
    net = vnn.MLP([3, 5, 4, outputs], activation="relu", output="sigmoid", dtype="float64",
                  seed=1)

    def edit(e: dict) -> None:
        e["sklearn"]["fitted"].update(classes_=list(range(k)), n_outputs_=outputs)

    return rewrite(src, dst, edit, net=net)


def test_30000_class_multilabel_file_loads_without_k_squared_memory(saved, tmp_path):
    # a consistent file: 30,000 labels and a net of 30,000 outputs (np.eye(K) would be 7.2 GB)
    path = big_multilabel(saved("multilabel"), tmp_path / "wide.safetensors", 30_000, 30_000)
    est, peak, seconds = peak_while(lambda: vsk.load(path))
    assert isinstance(est, vsk.MLPClassifier), est
    assert peak < 50, f"{peak:.0f} MB allocated to load a {path.stat().st_size // MB} MB file"
    assert seconds < 30  # generous: two cores shared with other work
    X, _ = data("multilabel")
    want = (vnn.to_numpy(vnn.load(path).forward(X[:4])) > 0.5).astype(int)
    got = est.predict(X[:4])
    assert got.shape == (4, 30_000)
    np.testing.assert_array_equal(got, want)


def test_30000_classes_for_a_3_output_multilabel_net_are_refused_fast(saved, tmp_path):
    src = saved("multilabel")
    path = rewrite(src, tmp_path / "lie.safetensors",
                   fitted_attr("classes_", list(range(30_000))))
    exc, peak, seconds = peak_while(lambda: vsk.load(path))
    assert isinstance(exc, vnn.io.ModelFileError) and exc.field == "sklearn.fitted.classes_", exc
    assert "30000" in str(exc) and "3 outputs" in str(exc)
    assert peak < 50 and seconds < 10


def test_padding_every_label_to_the_longest_is_bounded(saved, tmp_path):
    # 30,000 short labels and one of 3,000 characters: K x 3,000 x 4 bytes = 360 MB as '<U3000'
    k = 30_000
    labels = [f"{i:05d}" for i in range(k - 1)] + ["z" * 3000]
    net = vnn.MLP([3, 5, 4, k], activation="relu", output="softmax", dtype="float64", seed=1)

    def edit(e: dict) -> None:
        e["sklearn"]["fitted"].update(classes_=labels, n_outputs_=k, classes_dtype="<U3000")

    path = rewrite(saved("strings"), tmp_path / "pad.safetensors", edit, net=net)
    exc, peak, seconds = peak_while(lambda: vsk.load(path))
    assert isinstance(exc, vnn.io.ModelFileError), exc
    assert exc.field == "sklearn.fitted.classes_" and "MAX_CLASSES_BYTES" in str(exc)
    assert peak < 50 and seconds < 10


# -- every field checked, against the network too ------------------------------------------
CASES = [
    ("strings", "unknown params key", params("bogus", 1), "sklearn.params.bogus"),
    ("strings", "missing params key", dropped("params", "alpha"), "sklearn.params.alpha"),
    ("regression", "missing params key (loss)", dropped("params", "loss"), "sklearn.params.loss"),
    ("strings", "classifier with loss", params("loss", "squared_error"), "sklearn.params.loss"),
    ("strings", "y_type_=5", fitted_attr("y_type_", 5), "sklearn.fitted.y_type_"),
    ("strings", "y_type_ unknown", fitted_attr("y_type_", "continuous"), "sklearn.fitted.y_type_"),
    ("binary", "y_type_ multiclass on a sigmoid net", fitted_attr("y_type_", "multiclass"),
     "sklearn.fitted.y_type_"),
    ("strings", "4 classes for 3 outputs", fitted_attr("classes_", ["cat", "dog", "eel", "fox"]),
     "sklearn.fitted.classes_"),
    ("binary", "3 classes for a 1-output net", fitted_attr("classes_", [0, 7, 9]),
     "sklearn.fitted.classes_"),
    ("strings", "n_features_in_ wrong", fitted_attr("n_features_in_", 4),
     "sklearn.fitted.n_features_in_"),
    ("strings", "n_features_in_ a bool", fitted_attr("n_features_in_", True),
     "sklearn.fitted.n_features_in_"),
    ("regression", "out_activation_ wrong", fitted_attr("out_activation_", "logistic"),
     "sklearn.fitted.out_activation_"),
    ("strings", "out_activation_ wrong", fitted_attr("out_activation_", "logistic"),
     "sklearn.fitted.out_activation_"),
    ("multioutput", "n_outputs_ wrong", fitted_attr("n_outputs_", 1), "sklearn.fitted.n_outputs_"),
    ("strings", "n_layers_ wrong", fitted_attr("n_layers_", 3), "sklearn.fitted.n_layers_"),
    ("strings", "hidden_layer_sizes wrong", params("hidden_layer_sizes", [5]),
     "sklearn.params.hidden_layer_sizes"),
    ("strings", "hidden_layer_sizes a dict", params("hidden_layer_sizes", {"a": 5}),
     "sklearn.params.hidden_layer_sizes"),
    ("strings", "hidden_layer_sizes of bools", params("hidden_layer_sizes", [True, True]),
     "sklearn.params.hidden_layer_sizes"),
    ("strings", "activation not the net's", params("activation", "tanh"),
     "sklearn.params.activation"),
    ("strings", "alpha negative", params("alpha", -1.0), "sklearn.params.alpha"),
    ("strings", "alpha a string", params("alpha", "x"), "sklearn.params.alpha"),
    ("strings", "alpha nan", params("alpha", "nan"), "sklearn.params.alpha"),
    ("strings", "max_iter 10**400", params("max_iter", 10**400), "sklearn.params.max_iter"),
    ("strings", "solver a number", params("solver", 5), "sklearn.params.solver"),
    ("strings", "shuffle a list", params("shuffle", [1]), "sklearn.params.shuffle"),
    ("strings", "random_state a dict", params("random_state", {"seed": 1}),
     "sklearn.params.random_state"),
    ("strings", "device unknown", params("device", "tpu"), "sklearn.params.device"),
    ("strings", "n_iter_ negative", fitted_attr("n_iter_", -1), "sklearn.fitted.n_iter_"),
    ("strings", "t_ 2**1100", fitted_attr("t_", 2**1100), "sklearn.fitted.t_"),
    ("strings", "loss_curve_ of strings", fitted_attr("loss_curve_", ["x"]),
     "sklearn.fitted.loss_curve_"),
    ("strings", "loss_curve_ a number", fitted_attr("loss_curve_", 5.0),
     "sklearn.fitted.loss_curve_"),
    ("strings", "validation_scores_ a dict", fitted_attr("validation_scores_", {}),
     "sklearn.fitted.validation_scores_"),
    ("strings", "best_loss_ a list", fitted_attr("best_loss_", [1.0]), "sklearn.fitted.best_loss_"),
    ("strings", "_dtype unknown", fitted_attr("_dtype", "float16"), "sklearn.fitted._dtype"),
    ("strings", "_dtype not the file's", fitted_attr("_dtype", "float32"), "sklearn.fitted._dtype"),
    ("strings", "feature names too few", fitted_attr("feature_names_in_", ["a", "b"]),
     "sklearn.fitted.feature_names_in_"),
    ("strings", "feature names not strings", fitted_attr("feature_names_in_", [1, 2, 3]),
     "sklearn.fitted.feature_names_in_"),
    ("strings", "classes_dtype object", fitted_attr("classes_dtype", "object"),
     "sklearn.fitted.classes_dtype"),
    ("strings", "classes_dtype void", fitted_attr("classes_dtype", "V400000000"),
     "sklearn.fitted.classes_dtype"),
    ("strings", "classes_dtype bytes", fitted_attr("classes_dtype", "|S3"),
     "sklearn.fitted.classes_dtype"),
    ("strings", "classes_dtype a number", fitted_attr("classes_dtype", 3),
     "sklearn.fitted.classes_dtype"),
    ("strings", "classes_dtype a list", fitted_attr("classes_dtype", ["<U3"]),
     "sklearn.fitted.classes_dtype"),
    ("strings", "label ending in NUL", fitted_attr("classes_", ["cat", "dog", "eel\0"]),
     "sklearn.fitted.classes_"),
    ("binary", "label not a float16",
     lambda e: e["sklearn"]["fitted"].update(classes_=[0.1, 7.0], classes_dtype="float16"),
     "sklearn.fitted.classes_"),
    ("strings", "classes_dtype too short", fitted_attr("classes_dtype", "<U2"),
     "sklearn.fitted.classes_dtype"),
    ("strings", "classes_dtype int for strings", fitted_attr("classes_dtype", "int64"),
     "sklearn.fitted.classes_"),
    ("binary", "class out of the dtype's range",
     lambda e: e["sklearn"]["fitted"].update(classes_=[0, 700], classes_dtype="int8"),
     "sklearn.fitted.classes_"),
    ("binary", "class a float for an int dtype", fitted_attr("classes_", [0, 7.5]),
     "sklearn.fitted.classes_"),
    ("strings", "classes unsorted", fitted_attr("classes_", ["dog", "cat", "eel"]),
     "sklearn.fitted.classes_"),
    ("strings", "classes repeated", fitted_attr("classes_", ["cat", "cat", "eel"]),
     "sklearn.fitted.classes_"),
    ("strings", "classes nested", fitted_attr("classes_", [["cat"], ["dog"], ["eel"]]),
     "sklearn.fitted.classes_"),
    ("strings", "classes a string", fitted_attr("classes_", "cde"), "sklearn.fitted.classes_"),
    ("multilabel", "multilabel classes not 0..K-1", fitted_attr("classes_", [0, 1, 5]),
     "sklearn.fitted.classes_"),
    ("strings", "class unknown", lambda e: e["sklearn"].__setitem__("class", "Pipeline"),
     "sklearn.class"),
    ("strings", "unknown sklearn key", lambda e: e["sklearn"].__setitem__("code", "x"),
     "sklearn.code"),
    ("strings", "fitted key unknown", fitted_attr("coefs_", [[1.0]]), "sklearn.fitted.coefs_"),
    ("strings", "fitted key missing", dropped("fitted", "n_iter_"), "sklearn.fitted.n_iter_"),
    ("strings", "classes_ missing", dropped("fitted", "classes_"), "sklearn.fitted.classes_"),
    ("regression", "classes_ on a regressor", fitted_attr("classes_", [0, 1]),
     "sklearn.fitted.classes_"),
    ("strings", "params a list", lambda e: e["sklearn"].__setitem__("params", [1]),
     "sklearn.params"),
    ("strings", "fitted null", lambda e: e["sklearn"].__setitem__("fitted", None),
     "sklearn.fitted"),
    ("strings", "sklearn a list", lambda e: e.__setitem__("sklearn", []), "sklearn"),
]


@pytest.mark.parametrize("kind,what,edit,field", CASES, ids=[c[1] for c in CASES])
def test_edited_estimator_field_is_refused_naming_it(saved, tmp_path, kind, what, edit, field):
    path = rewrite(saved(kind), tmp_path / "edited.safetensors", edit)
    refused(path, field)


def test_file_without_an_estimator_is_refused_as_such(tmp_path):
    path = tmp_path / "plain.safetensors"
    vnn.io.save(vnn.MLP([3, 4, 2], output="softmax"), path, extra={"other": 1})
    exc = refused(path, "sklearn")
    assert "not one written by vnn.sklearn.save" in str(exc)


def test_saved_device_is_overridden_by_device_argument(saved, tmp_path):
    path = rewrite(saved("strings"), tmp_path / "gpu.safetensors", params("device", "cuda"))
    est = vsk.load(path, device="cpu")
    assert est.device == "cpu"
    X, _ = data("strings")
    assert est.predict(X).shape == (50,)


# -- round trips: a file that loads predicts, and predicts as before -------------------------------
def numpy_forward(est: Any, X: np.ndarray) -> np.ndarray:
    """Eqns (1)-(2) by hand: relu hidden layers, the estimator's output activation."""
    A = X
    for ell, (W, b) in enumerate(zip(est.coefs_, est.intercepts_), start=1):
        Z = A @ np.asarray(W) + np.asarray(b)
        A = np.maximum(Z, 0.0) if ell < len(est.coefs_) else Z
    if est.out_activation_ == "softmax":
        E = np.exp(A - A.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-A)) if est.out_activation_ == "logistic" else A


@pytest.mark.parametrize("kind", KINDS)
def test_every_estimator_kind_round_trips(fitted, saved, kind):
    est = fitted[kind]
    back = vsk.load(saved(kind))
    X, y = data(kind)
    assert type(back) is type(est) and back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    assert back.score(X, y) == est.score(X, y)
    for a, b in zip(back.coefs_ + back.intercepts_, est.coefs_ + est.intercepts_):
        np.testing.assert_array_equal(a, b)
    for attr in ("loss_", "loss_curve_", "best_loss_", "n_iter_", "t_", "n_features_in_",
                 "n_outputs_", "n_layers_", "out_activation_", "_dtype"):
        assert getattr(back, attr) == getattr(est, attr), attr
    # the loaded estimator against an independent NumPy forward of the original's weights
    want = numpy_forward(est, X)
    if kind in ("regression", "multioutput"):
        np.testing.assert_allclose(back.predict(X), want.reshape(back.predict(X).shape),
                                   rtol=1e-12, atol=1e-14)  # float64: only summation order
        return
    np.testing.assert_array_equal(back.classes_, est.classes_)
    assert back.classes_.dtype == est.classes_.dtype
    proba = back.predict_proba(X)
    np.testing.assert_array_equal(proba, est.predict_proba(X))
    ref = np.concatenate([1 - want, want], axis=1) if est.n_outputs_ == 1 else want
    np.testing.assert_allclose(proba, ref, rtol=1e-12, atol=1e-14)  # float64: summation order


@pytest.mark.parametrize("labels", [np.array([False, True]), np.array([3, 200], dtype=np.uint8),
                                    np.array([-2.0, 1.0, 7.0], dtype=np.float32),
                                    np.array([1.0, 2.0**60]), np.array(["", "é", "日本"])],
                         ids=lambda a: str(a.dtype))
def test_labels_of_every_plain_dtype_round_trip(tmp_path, labels):
    X, _ = data("strings")
    y = labels[np.arange(len(X)) % len(labels)]
    est = vsk.MLPClassifier(hidden_layer_sizes=(3,), max_iter=3, random_state=0).fit(X, y)
    est.save(tmp_path / "labels.safetensors")
    back = vsk.load(tmp_path / "labels.safetensors")
    assert back.classes_.dtype == est.classes_.dtype
    np.testing.assert_array_equal(back.classes_, np.unique(labels))
    np.testing.assert_array_equal(back.predict(X), est.predict(X))


def test_feature_names_round_trip(fitted, tmp_path):
    est = copy.deepcopy(fitted["strings"])  # as fitting on a DataFrame with these columns would
    est.feature_names_in_ = np.array(["u", "v", "w"], dtype=object)
    est.save(tmp_path / "named.safetensors")
    back = vsk.load(tmp_path / "named.safetensors")
    assert back.feature_names_in_.dtype == object and list(back.feature_names_in_) == ["u", "v", "w"]


def test_array_hidden_layer_sizes_and_nonfinite_n_iter_no_change_round_trip(tmp_path):
    X, y = data("strings")
    est = vsk.MLPClassifier(hidden_layer_sizes=np.array([4]), max_iter=5, random_state=0,
                            dtype="float32", n_iter_no_change=np.inf,
                            alpha=np.float32(1e-3)).fit(X, y)
    est.save(tmp_path / "f32.safetensors")
    back = vsk.load(tmp_path / "f32.safetensors")
    assert back.hidden_layer_sizes == (4,) and back.n_iter_no_change == np.inf
    assert back._dtype == "float32" and back.coefs_[0].dtype == np.float32
    np.testing.assert_array_equal(back.predict(X), est.predict(X))


def test_wider_unicode_dtype_than_the_labels_is_saved_as_the_labels_need(fitted, tmp_path):
    est = copy.deepcopy(fitted["strings"])
    est.classes_ = est.classes_.astype("<U10")
    est.save(tmp_path / "wide.safetensors")
    assert vnn.io.read_metadata(tmp_path / "wide.safetensors")["extra"]["sklearn"]["fitted"][
        "classes_dtype"] == "<U3"
    back = vsk.load(tmp_path / "wide.safetensors")
    np.testing.assert_array_equal(back.classes_, est.classes_)


# -- saving writes only what loading accepts -------------------------------------------------------
def test_save_refuses_a_parameter_load_would_refuse(fitted, tmp_path):
    est = copy.deepcopy(fitted["strings"]).set_params(max_iter=2**60)
    with pytest.raises(ValueError, match="max_iter"):
        est.save(tmp_path / "huge.safetensors")
    assert not (tmp_path / "huge.safetensors").exists()


def test_save_refuses_hidden_sizes_changed_after_fitting(fitted, tmp_path):
    est = copy.deepcopy(fitted["regression"]).set_params(hidden_layer_sizes=(3,))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        est.save(tmp_path / "changed.safetensors")
    assert not (tmp_path / "changed.safetensors").exists()


def test_save_refuses_nonfinite_weights(fitted, tmp_path):
    est = copy.deepcopy(fitted["regression"])
    est.coefs_[1][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.save(tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists()


# -- one open, one consistent snapshot -----------------------------------------------------
def test_file_replaced_while_it_is_read_gives_one_files_estimator(fitted, tmp_path, monkeypatch):
    path, other = tmp_path / "est.safetensors", tmp_path / "other.safetensors"
    vsk.save(fitted["strings"], path)
    X, y = data("binary")
    theirs = vsk.MLPClassifier(hidden_layer_sizes=(2,), max_iter=5, random_state=1).fit(X, y)
    vsk.save(theirs, other)
    real = vnn.io.layout.check_layout
    replaced: list[bool] = []

    def replaced_after_the_header(name, f, size):  # another process's save lands meanwhile
        out = real(name, f, size)
        if not replaced:
            os.replace(other, path)
            replaced.append(True)
        return out

    monkeypatch.setattr(vnn.io.layout, "check_layout", replaced_after_the_header)
    est = vsk.load(path)
    assert replaced
    want = fitted["strings"]
    np.testing.assert_array_equal(est.classes_, want.classes_)
    assert [c.shape for c in est.coefs_] == [c.shape for c in want.coefs_]
    for a, b in zip(est.coefs_ + est.intercepts_, want.coefs_ + want.intercepts_):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(vnn.io.layout, "check_layout", real)
    np.testing.assert_array_equal(vsk.load(path).classes_, [0, 7])  # the next load: the new file
