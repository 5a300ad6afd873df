"""``MLP.fit(optimizer=vnn.LBFGS())``: SciPy's L-BFGS-B on Eqn (3), checked against central
differences, scikit-learn's lbfgs from the same start, and the other backends."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import host, make

import vnn

pytest.importorskip("scipy", reason="SciPy is not installed")


def _regression(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2]


@pytest.mark.parametrize("output,make_y", [
    ("identity", lambda X: X[:, :2] @ [[1.0, 0.5], [-1.0, 2.0]]),
    ("softmax", lambda X: (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)),
    ("exp", lambda X: np.random.default_rng(1).poisson(np.exp(0.5 * X[:, :2]))),
])
def test_lbfgs_stops_where_the_gradient_vanishes(backend, output, make_y):
    """At the end the central-difference gradient of Eqn (3) (an independent reference) is as
    small as the tolerance asked for; the history is one decreasing loss per iteration."""
    X, _ = _regression()
    y = make_y(X)
    m = 3 if output == "softmax" else 2
    net = make(backend, [4, 6, m], activation="tanh", output=output, dtype="float64", seed=0)
    def worst() -> float:
        grads = vnn.numerical_gradients(net, X, y, l2=1e-3)
        return max(float(np.abs(g).max()) for pair in grads for g in pair)

    start = worst()
    h = net.fit(X, y, optimizer=vnn.LBFGS(max_iter=2000, tol=1e-7), l2=1e-3)
    assert 1 < len(h.loss) < 2000 and h.stopped is None
    assert all(b <= a for a, b in zip(h.loss, h.loss[1:]))  # L-BFGS-B's iterates descend
    # it stops on gtol or on SciPy's relative reduction of J (ftol 2.2e-9): |∇J| ~ 1e-4 or less
    assert start > 1e-2 and worst() < 1e-4
    J, _ = net.loss_and_gradients(X, y, l2=1e-3)
    assert J == pytest.approx(h.loss[-1], rel=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_equals_sklearns_lbfgs_from_the_same_start():
    """scikit-learn's MLPRegressor(solver="lbfgs") started (warm) from vnn's initial weights:
    its alpha / n is vnn's λ, so both hand SciPy the same function: the same iterates."""
    skn = pytest.importorskip("sklearn.neural_network")
    X, y = _regression()
    net = vnn.MLP([4, 7, 1], activation="tanh", dtype="float64", seed=2)
    ref = skn.MLPRegressor(hidden_layer_sizes=(7,), activation="tanh", solver="lbfgs",
                           alpha=0.05, max_iter=40, warm_start=True)
    ref.coefs_ = [host(W).T.copy() for W in net.weights]
    ref.intercepts_ = [host(b).copy() for b in net.biases]
    ref.n_layers_, ref.n_outputs_, ref.out_activation_ = 3, 1, "identity"
    ref.n_iter_ = ref.t_ = 0
    ref.fit(X, y)
    h = net.fit(X, y, optimizer=vnn.LBFGS(max_iter=40, tol=1e-4), l2=0.05 / len(X))
    assert len(h.loss) == ref.n_iter_
    assert h.loss[-1] == pytest.approx(ref.loss_, rel=1e-10)
    for W, c in zip(net.weights, ref.coefs_):
        np.testing.assert_allclose(host(W).T, c, rtol=1e-8, atol=1e-10)


def test_lbfgs_numbers_are_the_same_on_every_backend(backend):
    X, y = _regression()
    ref = vnn.MLP([4, 5, 1], activation="relu", dtype="float64", seed=1)
    h_ref = ref.fit(X, y, optimizer=vnn.LBFGS(max_iter=25))
    net = make(backend, [4, 5, 1], activation="relu", dtype="float64", seed=1)
    h = net.fit(X, y, optimizer=vnn.LBFGS(max_iter=25), validation_data=(X[:10], y[:10]))
    assert len(h.loss) == len(h_ref.loss) == len(h.val_loss)
    np.testing.assert_allclose(h.loss, h_ref.loss, rtol=1e-9)
    for a, b in zip(net.weights, ref.weights):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-8, atol=1e-10)


def test_one_copy_each_way_per_evaluation(monkeypatch):
    """What crosses between host and device per evaluation of J and ∇J: θ once to the device,
    [∇J, J] once back (on a GPU, the only synchronisation besides the backprop's own)."""
    X, y = _regression()
    net = vnn.MLP([4, 5, 1], dtype="float64", seed=0)
    A, Y, _ = net.prepare(X, y)
    be = type(net.backend)
    counts = {"to_numpy": 0, "from_host": 0}
    for name in counts:
        original = getattr(be, name)

        def counted(self, *args, _original=original, _name=name, **kw):
            counts[_name] += 1
            return _original(self, *args, **kw)

        monkeypatch.setattr(be, name, counted)
    from vnn.train import lbfgs

    result = lbfgs.minimize(net, A, Y, None, 0.0, 10, 100, 1e-9)
    # one read of θ to start and one write of the result, beside one copy each way per evaluation
    assert counts == {"to_numpy": result.nfev + 1, "from_host": result.nfev + 1}


def test_ctrl_c_keeps_the_last_finished_iteration():
    X, y = _regression()
    whole = vnn.MLP([4, 5, 1], dtype="float64", seed=0)
    whole.fit(X, y, optimizer=vnn.LBFGS(max_iter=3))
    net = vnn.MLP([4, 5, 1], dtype="float64", seed=0)

    def stop(epoch, history):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted after L-BFGS iteration 3"):
        h = net.fit(X, y, optimizer=vnn.LBFGS(max_iter=50), callback=stop)
    assert h.stopped == "interrupted" and h.epochs == 3
    for a, b in zip(net.weights, whole.weights):
        np.testing.assert_array_equal(host(a), host(b))


def test_max_iter_defaults_to_epochs():
    X, y = _regression()
    net = vnn.MLP([4, 5, 1], dtype="float64", seed=0)
    h = net.fit(X, y, optimizer=vnn.LBFGS(tol=0.0), epochs=4, progress=True)
    assert h.epochs == 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=10), "batch_size=10 is invalid with optimizer=vnn.LBFGS"),
    (dict(checkpoint="x.safetensors"), "checkpoint='x.safetensors' is not available"),
    (dict(distributed=True), "distributed=True is not available"),
])
def test_lbfgs_refuses_what_it_does_not_do(kwargs, match):
    X, y = _regression()
    net = vnn.MLP([4, 5, 1], seed=0)
    before = [host(W).copy() for W in net.weights]
    with pytest.raises(ValueError, match=match):
        net.fit(X, y, optimizer=vnn.LBFGS(), **kwargs)
    for a, b in zip(net.weights, before):
        np.testing.assert_array_equal(host(a), b)


@pytest.mark.parametrize("kwargs,match", [
    (dict(max_iter=0), r"LBFGS\(max_iter=0\) is invalid"),
    (dict(max_fun=2.5), r"LBFGS\(max_fun=2.5\) is invalid"),
    (dict(tol=-1.0), r"LBFGS\(tol=-1.0\) is invalid"),
    (dict(tol="small"), r"LBFGS\(tol='small'\) is invalid"),
])
def test_lbfgs_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vnn.LBFGS(**kwargs)


def test_without_scipy_lbfgs_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scipy" else real(name, *a))
    X, y = _regression()
    with pytest.raises(ImportError, match=r"pip install scipy \(or vanilla-nn\[lbfgs\]\)"):
        vnn.MLP([4, 5, 1], seed=0).fit(X, y, optimizer=vnn.LBFGS())
