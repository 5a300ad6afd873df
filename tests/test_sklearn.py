"""vnn.sklearn's estimators against scikit-learn itself: its estimator checks, its fitted numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import BACKENDS

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")

from sklearn import neural_network as skn  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import vnn  # noqa: E402
from vnn import backends  # noqa: E402
from vnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# scikit-learn's own test suite runs its MLPs through these checks with max_iter=100; so do we.
# No check is skipped; the few that scikit-learn itself skips here need pandas or
# SCIPY_ARRAY_API, which this suite does not install.
@quiet
@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _split(loader, scale_y=False):
    X, y = loader(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), ytr, yte


@quiet
@pytest.mark.parametrize("data,kind", [(load_digits, "clf"), (load_breast_cancer, "clf"),
                                       (load_diabetes, "reg")])
def test_scores_match_sklearn_with_its_defaults(data, kind):
    """Same defaults, same data: the test score within 0.01 of scikit-learn's (or better)."""
    Xtr, Xte, ytr, yte = _split(data)
    ours = (MLPClassifier if kind == "clf" else MLPRegressor)(random_state=0).fit(Xtr, ytr)
    ref = (skn.MLPClassifier if kind == "clf" else skn.MLPRegressor)(random_state=0).fit(Xtr, ytr)
    assert ours.score(Xte, yte) >= ref.score(Xte, yte) - 0.01
    assert ours.n_iter_ == ref.n_iter_


CONFIGS = [
    dict(solver="adam"),
    dict(solver="sgd", learning_rate_init=0.05),
    dict(solver="sgd", nesterovs_momentum=False, learning_rate="invscaling",
         learning_rate_init=0.2),
    dict(solver="sgd", momentum=0.0, learning_rate="adaptive", tol=0.05, n_iter_no_change=2),
    dict(solver="adam", early_stopping=True, validation_fraction=0.2, n_iter_no_change=3),
    dict(solver="adam", activation="logistic", alpha=0.3, batch_size=17, shuffle=False),
    dict(solver="sgd", activation="tanh", hidden_layer_sizes=(7, 5), batch_size=500),
]


@quiet
@pytest.mark.filterwarnings("ignore:Got `batch_size`:UserWarning")  # batch_size=500 > 120, as asked
@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression",
                                  "multioutput"])
def test_fitted_numbers_equal_sklearn(kind, params):
    """float64, same random_state: the same initial weights, batches and updates as scikit-learn,
    so the fitted coefficients, losses and iteration counts agree to rounding."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6))
    t = X @ rng.standard_normal((6, 3))
    y = {"multiclass": np.array(["a", "b", "c"])[t.argmax(1)],
         "binary": (t[:, 0] > 0).astype(int),
         "multilabel": (t > 0).astype(int),
         "regression": t[:, 0],
         "multioutput": t}[kind]
    regress = kind in ("regression", "multioutput")
    common = dict(hidden_layer_sizes=(8,), max_iter=15, random_state=3)
    common.update(params)
    ours = (MLPRegressor if regress else MLPClassifier)(**common).fit(X, y)
    ref = (skn.MLPRegressor if regress else skn.MLPClassifier)(**common).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_)
        assert ours.best_validation_score_ == pytest.approx(ref.best_validation_score_)
        assert len(ours.validation_loss_curve_) == ours.n_iter_
    else:
        assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=1e-9)
        assert ours.validation_loss_curve_ == []
    if regress:
        np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
        np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-7,
                                   atol=1e-12)
        np.testing.assert_array_equal(ours.classes_, ref.classes_)
        assert ours.out_activation_ == ref.out_activation_
    for attr in ("n_layers_", "n_outputs_", "t_", "n_features_in_"):
        assert getattr(ours, attr) == getattr(ref, attr), attr


@quiet
def test_sample_weight_and_partial_fit_match_sklearn():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((90, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    w = rng.uniform(0.2, 2.0, size=90)
    kw = dict(hidden_layer_sizes=(6,), max_iter=10, random_state=0, alpha=0.01)
    ours = MLPClassifier(**kw).fit(X, y, sample_weight=w)
    ref = skn.MLPClassifier(**kw).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_, ref.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    ours, ref = MLPClassifier(**kw), skn.MLPClassifier(**kw)
    for est in (ours, ref):
        for start in range(0, 90, 30):
            est.partial_fit(X[start:start + 30], y[start:start + 30], classes=[0, 1, 2])
    np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=1e-9)
    for a, b in zip(ours.coefs_, ref.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


@quiet
def test_log_proba_is_finite_where_probabilities_underflow():
    X = np.array([[0.0], [1.0]] * 10)
    y = np.array([0, 1] * 10)
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, random_state=0).fit(X, y)
    est.coefs_[-1] *= 1e4  # saturate the sigmoid
    logp = est.predict_log_proba(X)
    assert np.isfinite(logp).all()
    np.testing.assert_allclose(np.exp(logp), est.predict_proba(X), atol=1e-12)


@quiet
def test_log_proba_orders_classes_as_proba_does():
    """Multilabel outputs saturated at exactly 1.0 get the same log, 0 (scikit-learn's
    log(predict_proba)): argmax of the log-probabilities is argmax of the probabilities."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    Y = np.column_stack([rng.integers(0, 2, 30), rng.integers(0, 2, 30), np.ones(30, int)])
    Y[0, 2] = 0
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, random_state=0).fit(X, Y)
    est.intercepts_[-1][:2] += 60.0  # σ(z) rounds to exactly 1.0 for both, at different z
    est.intercepts_[-1][0] += 5.0
    p, logp = est.predict_proba(X), est.predict_log_proba(X)
    assert (p[:, :2] == 1.0).all()
    np.testing.assert_array_equal(logp[p > 0], np.log(p[p > 0]))
    np.testing.assert_array_equal(np.argmax(logp, axis=1), np.argmax(p, axis=1))
    assert np.isfinite(logp).all()


@quiet
@pytest.mark.parametrize("be", [b for b in backends.available() if b.name != "numpy"],
                         ids=lambda b: f"{b.name}-{b.device_name}")
def test_everything_follows_X(be):
    """Arrays of another library: fitted arrays and predictions stay on X's library and device,
    and the numbers are those of the NumPy fit."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 5))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    kw = dict(hidden_layer_sizes=(7,), max_iter=5, random_state=0)
    host = MLPClassifier(**kw).fit(X, y)
    with be.activate():
        Xd, yd = be.from_host(X), be.from_host(y)
    dev = MLPClassifier(**kw).fit(Xd, yd)
    assert all(be.owns(c) and be.same_device(c) for c in dev.coefs_ + dev.intercepts_)
    pred = dev.predict(Xd)
    assert be.owns(pred)
    np.testing.assert_array_equal(vnn.to_numpy(pred), host.predict(X))
    np.testing.assert_allclose(vnn.to_numpy(dev.predict_proba(Xd)), host.predict_proba(X),
                               rtol=1e-5, atol=1e-6)
    for a, b in zip(dev.coefs_, host.coefs_):
        np.testing.assert_allclose(vnn.to_numpy(a), b, rtol=1e-8, atol=1e-10)
    assert dev.score(Xd, yd) == pytest.approx(host.score(X, y))
    reg = MLPRegressor(**kw).fit(Xd, be.from_host(X[:, 0] * 2.0))
    assert be.owns(reg.predict(Xd))


@quiet
@pytest.mark.parametrize("kind", ["strings", "binary", "multilabel", "multioutput"])
def test_estimator_model_files_round_trip(tmp_path, kind):
    from vnn import sklearn as vsk

    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 3))
    t = X @ rng.standard_normal((3, 2))
    y = {"strings": np.array(["cat", "dog", "eel"])[(t[:, 0] > 0).astype(int) + (t[:, 1] > 0)],
         "binary": (t[:, 0] > 0).astype(int) * 7,
         "multilabel": (t > 0).astype(int),
         "multioutput": t}[kind]
    est = (MLPRegressor if kind == "multioutput" else MLPClassifier)(
        hidden_layer_sizes=(5, 4), max_iter=20, random_state=0, early_stopping=True)
    est.fit(X, y)
    est.save(tmp_path / "est.safetensors")
    back = vsk.load(tmp_path / "est.safetensors")
    assert type(back) is type(est) and back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    for a, b in zip(back.coefs_ + back.intercepts_, est.coefs_ + est.intercepts_):
        np.testing.assert_array_equal(a, b)
    for attr in ("loss_curve_", "validation_scores_", "validation_loss_curve_", "n_iter_", "t_",
                 "n_features_in_", "best_validation_score_", "out_activation_"):
        assert getattr(back, attr) == getattr(est, attr), attr
    if kind != "multioutput":
        np.testing.assert_array_equal(back.classes_, est.classes_)
        np.testing.assert_allclose(back.predict_proba(X), est.predict_proba(X))
    # the same file is a plain vnn model too
    net = vnn.load(tmp_path / "est.safetensors")
    np.testing.assert_allclose(vnn.to_numpy(net.forward(X)),
                               est.predict_proba(X) if kind in ("strings", "multilabel")
                               else (est.predict(X) if kind == "multioutput"
                                     else est.predict_proba(X)[:, 1:]), rtol=1e-12)


def test_loading_a_plain_model_as_an_estimator_is_refused(tmp_path):
    from vnn import sklearn as vsk

    vnn.MLP([3, 4, 2], output="softmax").save(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="not one written by vnn.sklearn.save"):
        vsk.load(tmp_path / "plain.safetensors")


@quiet
def test_pickled_estimator_continues_partial_fit_like_the_original():
    import pickle

    rng = np.random.default_rng(6)
    X = rng.standard_normal((60, 4))
    y = (X[:, 0] > 0).astype(int)
    est = MLPClassifier(hidden_layer_sizes=(5,), random_state=0)
    est.partial_fit(X, y, classes=[0, 1])
    twin = pickle.loads(pickle.dumps(est))
    for e in (est, twin):
        e.partial_fit(X, y)
    for a, b in zip(est.coefs_ + est.intercepts_, twin.coefs_ + twin.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("solver", ["sgd", "sgd-heavy", "adam"])
def test_estimator_pickled_by_vnn_0_1_0_continues_as_it_would_have(solver):
    """tests/data/estimators_0.1.0.pkl: estimators pickled by vnn 0.1.0 after two partial_fit
    calls, and what two more gave there. Their optimizers (scikit-learn's velocity, no form
    or ε option) continue here with the same numbers."""
    import pathlib
    import pickle

    data = pickle.loads((pathlib.Path(__file__).parent / "data" / "estimators_0.1.0.pkl").read_bytes())
    blob, want = data[solver]
    est = pickle.loads(blob)  # noqa: S301 - a file of this repository
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X, y)
        est.partial_fit(X, y)
    np.testing.assert_allclose(est.predict_proba(X), want, rtol=1e-5, atol=1e-7)


def test_float32_adam_drifts_from_float64_no_more_than_sklearn():
    """Adam's moments in float32 (issue: the old in-place update v −= g², v *= β₂, v += g² lost
    two digits): the float32 fit stays as close to the float64 fit as scikit-learn's does."""
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier as SkMLP

    X, y = load_iris(return_X_y=True)
    drift = {}
    for name, cls in (("sklearn", SkMLP), ("vnn", MLPClassifier)):
        p = []
        for dt in (np.float32, np.float64):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = cls(random_state=0, max_iter=100).fit(X.astype(dt), y)
            p.append(np.asarray(m.predict_proba(X.astype(dt)), dtype=np.float64))
        drift[name] = np.abs(p[0] - p[1]).max()
    assert drift["vnn"] <= 2 * drift["sklearn"] + 1e-9, drift


@pytest.mark.parametrize("be", [b for b in BACKENDS if b.name != "numpy"], ids=lambda b: b.name)
def test_device_inputs_with_nan_are_refused_like_numpy_ones(be):
    """X on torch, array-api-strict or CuPy gets the finiteness check NumPy input gets, at fit
    and at predict."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, size=20)
    bad = X.copy()
    bad[3, 1] = np.nan
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(be.from_host(X), y)
    for call in (lambda: est.predict(be.from_host(bad)), lambda: est.fit(be.from_host(bad), y)):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            call()
