"""solver="lbfgs", loss="poisson" and the behaviours that follow scikit-learn, each against
scikit-learn itself (or SciPy, or finite differences)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import BACKENDS

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")

import scipy.sparse as sp  # noqa: E402
from sklearn import neural_network as skn  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import PoissonRegressor  # noqa: E402
from sklearn.utils._testing import assert_allclose as sk_assert_allclose  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import vnn  # noqa: E402
from vnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _expected_failures(est):
    """Where p = σ(−z) underflows to 0.0 (z > 745, which lbfgs reaches on the check's separable
    data), predict_log_proba gives the finite −softplus(z) instead of log(0) = −inf: a choice
    (the log-probability stays usable), so this one check of log(predict_proba) fails there."""
    if isinstance(est, MLPClassifier):
        return {"check_classifiers_train": "predict_log_proba is finite where predict_proba "
                                           "underflows to 0 (scikit-learn's is -inf)"}
    if est.loss == "poisson" and est.solver == "adam":  # scikit-learn's own fails it too
        return {"check_regressors_train": "R² <= 0.5 after 100 adam epochs on the check's data, "
                                          "as scikit-learn's MLPRegressor(loss='poisson') has"}
    return {}


@quiet
@parametrize_with_checks([MLPClassifier(solver="lbfgs", max_iter=100),
                          MLPRegressor(solver="lbfgs", max_iter=100),
                          MLPRegressor(loss="poisson", max_iter=100),
                          MLPRegressor(loss="poisson", solver="lbfgs", max_iter=100)],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks_lbfgs_and_poisson(estimator, check):
    check(estimator)


def _data(kind, n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    t = X @ rng.standard_normal((6, 3))
    y = {"multiclass": np.array(["a", "b", "c"])[t.argmax(1)],
         "binary": (t[:, 0] > 0).astype(int),
         "multilabel": (t > 0).astype(int),
         "regression": t[:, 0],
         "multioutput": t,
         "poisson": rng.poisson(np.exp(0.3 * t[:, 0])),
         "poisson-multioutput": rng.poisson(np.exp(0.2 * t))}[kind]
    return X, y


def _pair(kind, **params):
    regress = kind.startswith(("regression", "multioutput", "poisson"))
    if kind.startswith("poisson"):
        params = {"loss": "poisson", **params}
    return ((MLPRegressor if regress else MLPClassifier)(**params),
            (skn.MLPRegressor if regress else skn.MLPClassifier)(**params))


KINDS = ["multiclass", "binary", "multilabel", "regression", "multioutput", "poisson",
         "poisson-multioutput"]


@quiet
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", KINDS)
def test_lbfgs_fits_the_numbers_of_sklearn(kind, weighted):
    """float64, same random_state: the same start, function and gradient for SciPy, so the same
    iterates: coefficients, loss_, n_iter_ and predictions to 1e-8, and scikit-learn's attribute
    set after lbfgs (no loss curve, no best loss).

    (Where a line search tries a point that saturates a sigmoid past 1 − 2.2e-16, scikit-learn's
    log loss clips the probability and vnn's, from the logits, does not, so the two searches can
    part there: e.g. random_state=3 on the weighted multilabel data below.)"""
    X, y = _data(kind)
    w = np.random.default_rng(4).uniform(0.2, 2.0, size=X.shape[0]) if weighted else None
    ours, ref = _pair(kind, solver="lbfgs", hidden_layer_sizes=(8,), max_iter=30,
                      random_state=0, alpha=0.01)
    ours.fit(X, y, sample_weight=w)
    ref.fit(X, y, sample_weight=w)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-8)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(ours.predict(X), dtype=float) if kind != "multiclass"
                               else (ours.predict(X) == ref.predict(X)).astype(float),
                               np.asarray(ref.predict(X), dtype=float) if kind != "multiclass"
                               else np.ones(X.shape[0]), rtol=1e-8, atol=1e-10)
    if hasattr(ref, "predict_proba"):
        np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-8,
                                   atol=1e-12)
    public = {k for k in vars(ref) if k.endswith("_") and not k.startswith("_")}
    assert {k for k in vars(ours) if k.endswith("_") and not k.startswith("_")} == public
    assert ours.t_ == ref.t_ == 0 and ours.out_activation_ == ref.out_activation_


@pytest.mark.parametrize("limit", ["max_iter", "max_fun"])
def test_lbfgs_warns_like_sklearn_when_it_stops_on_a_limit(limit):
    X, y = _data("multiclass")
    params = {"max_iter": 5} if limit == "max_iter" else {"max_fun": 4}
    ours, ref = _pair("multiclass", solver="lbfgs", random_state=0, **params)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge") as got:
        ours.fit(X, y)
    with pytest.warns(ConvergenceWarning) as want:
        ref.fit(X, y)
    assert ours.n_iter_ == ref.n_iter_
    assert ("max_iter=5" in str(got[0].message)) == ("max_iter=5" in str(want[0].message))


def test_lbfgs_that_converges_does_not_warn():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(5,), alpha=1.0, tol=1e-3,
                            random_state=0, max_iter=500).fit(X, y)
    assert est.n_iter_ < 500 and est.score(X, y) > 0.9


@quiet
def test_lbfgs_warm_start_and_sparse_input_match_sklearn():
    X, y = _data("regression")
    ours, ref = _pair("regression", solver="lbfgs", hidden_layer_sizes=(6,), max_iter=10,
                      random_state=1, warm_start=True)
    for _ in range(3):  # each fit starts from the last one's coefficients
        ours.fit(sp.csr_matrix(X), y)
        ref.fit(X, y)
        assert ours.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=1e-8)
    for a, b in zip(ours.coefs_, ref.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


@quiet
def test_an_adam_fit_can_warm_start_from_an_lbfgs_fit():
    X, y = _data("binary")
    est = MLPClassifier(solver="lbfgs", max_iter=5, random_state=0, warm_start=True).fit(X, y)
    assert not hasattr(est, "loss_curve_")
    before = [c.copy() for c in est.coefs_]
    est.set_params(solver="adam", max_iter=3).fit(X, y)
    assert len(est.loss_curve_) == 3 and est.best_loss_ == min(est.loss_curve_)
    assert not np.allclose(est.coefs_[0], before[0])


@quiet
def test_poisson_with_identity_activation_and_lbfgs_is_a_poisson_glm():
    """No hidden nonlinearity, α = 0: the network is log ŷ = X β + c, whose maximum likelihood
    fit is scikit-learn's PoissonRegressor(alpha=0)."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 4))
    y = rng.poisson(np.exp(X @ np.array([0.3, -0.2, 0.5, 0.0]) + 0.4))
    glm = PoissonRegressor(alpha=0.0, tol=1e-12, max_iter=1000).fit(X, y)
    net = MLPRegressor(loss="poisson", solver="lbfgs", activation="identity",
                       hidden_layer_sizes=(2,), alpha=0.0, tol=1e-12, max_iter=2000,
                       max_fun=50000, random_state=0).fit(X, y)
    beta = net.coefs_[0] @ net.coefs_[1]
    c = net.intercepts_[0] @ net.coefs_[1] + net.intercepts_[1]
    np.testing.assert_allclose(beta[:, 0], glm.coef_, atol=1e-5)
    np.testing.assert_allclose(c[0], glm.intercept_, atol=1e-5)
    np.testing.assert_allclose(net.predict(X), glm.predict(X), rtol=1e-4)  # L-BFGS-B's ftol
    assert net.out_activation_ == "exp"


def test_poisson_refuses_negative_targets_before_training():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"loss='poisson' needs y >= 0.*min\(y\) = -1"):
        MLPRegressor(loss="poisson").fit(X, [0.0, 1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="targets >= 0"):
        vnn.MLP([2, 3, 1], output="exp").fit(X, [0.0, 1.0, -1.0, 2.0], epochs=1)


def test_any_configuration_validates_its_input_first():
    """No solver or loss is refused before the data: bad X is reported as bad X."""
    X = np.array([[0.0, np.nan], [1.0, 2.0]])
    for est in (MLPClassifier(solver="lbfgs"), MLPRegressor(loss="poisson", solver="lbfgs"),
                MLPRegressor(loss="poisson")):
        with pytest.raises(ValueError, match="NaN"):
            est.fit(X, [0, 1])


def test_early_stopping_records_nan_scores_of_a_diverging_regressor_like_sklearn():
    X, y = load_iris(return_X_y=True)
    kw = dict(activation="identity", solver="sgd", learning_rate_init=1, max_iter=20,
              early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow in scikit-learn's NumPy, its warning
        ref = skn.MLPRegressor(**kw).fit(X, y)
        ours = MLPRegressor(**kw).fit(X, y)
    assert np.isnan(ref.validation_scores_).any()
    np.testing.assert_array_equal(np.isnan(ours.validation_scores_),
                                  np.isnan(ref.validation_scores_))
    assert ours.n_iter_ == ref.n_iter_


def test_stratified_split_names_the_classes_as_sklearn_does():
    X, y = np.zeros((12, 2)), np.r_[np.ones(11, bool), np.zeros(1, bool)]
    messages = []
    for cls in (MLPClassifier, skn.MLPClassifier):
        with pytest.raises(ValueError) as err:
            cls(early_stopping=True, max_iter=5).fit(X, y)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "['False']" in messages[0]


@quiet
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_float32_sample_weights_equal_repeated_samples_at_sklearns_float32_tolerance(cls, sparse):
    """scikit-learn's sample-weight equivalence (weights 0, 1, 2 against removing and repeating
    rows) with dtype="float32", at scikit-learn's float32 tolerance (rtol 1e-4 for float32 in
    sklearn.utils._testing.assert_allclose): the two fits round their sums differently."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((15, 3))
    y = (X[:, 0] > 0).astype(int) if cls is MLPClassifier else X @ [1.0, -2.0, 0.5]
    sw = rng.integers(0, 3, size=15).astype(float)
    X_rep, y_rep = np.repeat(X, sw.astype(int), axis=0), np.repeat(y, sw.astype(int), axis=0)
    wrap = sp.csr_matrix if sparse else np.asarray
    kw = dict(dtype="float32", max_iter=100, random_state=0)
    weighted = cls(**kw).fit(wrap(X), y, sample_weight=sw)
    repeated = cls(**kw).fit(wrap(X_rep), y_rep)
    method = "predict_proba" if cls is MLPClassifier else "predict"
    a, b = getattr(weighted, method)(X), getattr(repeated, method)(X)
    assert a.dtype == np.float32
    sk_assert_allclose(a, b)  # rtol from the dtype: 1e-4 for float32
    with pytest.raises(AssertionError):  # ...not float64's: the test can tell the two apart
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=0)


@quiet
@pytest.mark.parametrize("be", [b for b in BACKENDS if b.name != "numpy"], ids=lambda b: b.name)
def test_lbfgs_on_device_arrays_gives_the_numpy_numbers(be):
    X, y = _data("multiclass", n=60)
    y = np.searchsorted(np.array(["a", "b", "c"]), y)
    kw = dict(solver="lbfgs", hidden_layer_sizes=(5,), max_iter=15, random_state=0)
    host = MLPClassifier(**kw).fit(X, y)
    with be.activate():
        dev = MLPClassifier(**kw).fit(be.from_host(X), be.from_host(y))
    assert dev.n_iter_ == host.n_iter_
    for a, b in zip(dev.coefs_, host.coefs_):
        assert vnn.backends.backend_of(a) is not None or be.name == "numpy"
        np.testing.assert_allclose(vnn.to_numpy(a), b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_convergence_warning_points_at_the_callers_line(solver):
    X, y = _data("binary")
    with pytest.warns(ConvergenceWarning) as got:
        MLPClassifier(solver=solver, max_iter=2, random_state=0).fit(X, y)
    assert got[0].filename == __file__


def test_an_lbfgs_fit_saves_after_its_solver_is_changed(tmp_path):
    """The stochastic solvers' record is all there or all absent, whatever `solver` now says."""
    X, y = _data("poisson")
    est = MLPRegressor(loss="poisson", solver="lbfgs", max_iter=20, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    est.set_params(solver="adam")
    path = tmp_path / "m.safetensors"
    est.save(path)
    back = vnn.sklearn.load(path)
    np.testing.assert_allclose(back.predict(X), est.predict(X))
    assert not hasattr(back, "loss_curve_")
