"""The thread-safety contract: what holds when one thread predicts while another trains.

- ``vnn.MLP``: ``predict`` / ``forward`` from other threads during ``fit`` work: each call sees
  the parameters at some moment of training and returns finite values of the right shape; the
  training itself ends with the same parameters as without the readers.
- The scikit-learn estimators, like scikit-learn's, are not safe to predict with while they are
  being refitted (a call may raise, e.g. AttributeError, while the fitted attributes are being
  replaced); the refit itself is unaffected and ends as it would alone.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from conftest import host

import vnn


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1500, 12))
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)


def _readers(call, count: int = 2):
    """Start ``count`` threads that call ``call()`` until stopped; their stop event, threads,
    number of calls and the exceptions they saw."""
    stop, seen, calls = threading.Event(), [], [0]

    def loop():
        while not stop.is_set():
            try:
                call()
            except Exception as exc:  # recorded: the contract says which may happen
                seen.append(exc)
            calls[0] += 1

    threads = [threading.Thread(target=loop) for _ in range(count)]
    for t in threads:
        t.start()
    return stop, threads, calls, seen


@pytest.mark.parametrize("fast", [True, False])
def test_mlp_predict_during_fit_works_and_training_is_unaffected(fast):
    X, y = _data()
    ref = vnn.MLP([12, 32, 3], output="softmax", seed=0)
    ref.fast_path = fast
    ref.fit(X, y, epochs=4, batch_size=32)

    net = vnn.MLP([12, 32, 3], output="softmax", seed=0)
    net.fast_path = fast

    def predict():
        p = host(net.predict_proba(X[:64]))
        assert p.shape == (64, 3) and np.all(np.isfinite(p))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)  # float32 softmax rows
        assert host(net.predict(X[:64])).shape == (64,)

    stop, threads, calls, seen = _readers(predict)
    try:
        net.fit(X, y, epochs=4, batch_size=32)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not seen, seen[:3]
    assert calls[0] > 0
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        np.testing.assert_array_equal(host(a), host(b))


def test_estimator_refit_is_unaffected_by_concurrent_predicts():
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning

    import vnn.sklearn

    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = vnn.sklearn.MLPClassifier((32,), max_iter=8, random_state=0).fit(X, y)
        est = vnn.sklearn.MLPClassifier((32,), max_iter=8, random_state=1).fit(X, y)
        est.set_params(random_state=0)
        stop, threads, calls, seen = _readers(lambda: est.predict_proba(X[:64]))
        try:
            est.fit(X, y)
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert calls[0] > 0
    assert all(isinstance(e, (AttributeError, ValueError, IndexError)) for e in seen), seen[:3]
    for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(est.predict_proba(X), ref.predict_proba(X))
