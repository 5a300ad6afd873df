"""backend="jax": the portable step under jax.jit, traced once per batch shape, on JAX's devices.

Every array test of the suite also runs on JAX (the ``backend`` fixture); these check what is
particular to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import vnn  # noqa: E402
from vnn.step import jitted  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _data(n=37, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)), rng.integers(0, 3, size=n)


@pytest.mark.parametrize("opt", [lambda: vnn.SGD(0.1), lambda: vnn.Momentum(0.05, 0.9),
                                 lambda: vnn.Adam(1e-2),
                                 lambda: vnn.Adam(1e-2, eps_after_correction=False)],
                         ids=["sgd", "momentum", "adam", "adam-sklearn"])
def test_jitted_step_equals_numpy_and_traces_once_per_batch_shape(monkeypatch, opt):
    traces = []
    pure = jitted._pure

    def counted(*args, **kwargs):
        traces.append(kwargs["n"])  # runs only while jax traces
        return pure(*args, **kwargs)

    monkeypatch.setattr(jitted, "_pure", counted)
    monkeypatch.setattr(jitted, "_JITTED", {})
    X, y = _data()
    nets = []
    for backend in ("jax", "numpy"):
        net = vnn.MLP([5, 7, 3], activation="tanh", output="softmax", dtype="float64", seed=1,
                      backend=backend)
        net.fast_path = backend == "jax"
        h = net.fit(X, y, optimizer=opt(), epochs=4, batch_size=8, l2=0.01)
        nets.append((net, h))
    (jnet, jh), (nnet, nh) = nets
    # 37 samples in batches of 8: two batch shapes, each traced once over 20 steps (Adam's bias
    # corrections change every step: they are arguments, not constants of the trace)
    assert sorted(traces) == [5, 8], traces
    for a, b in zip(jnet.weights + jnet.biases, nnet.weights + nnet.biases):
        assert type(a).__module__.startswith("jax")
        np.testing.assert_allclose(vnn.to_numpy(a), vnn.to_numpy(b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jh.loss, nh.loss, rtol=1e-10)


def test_float64_without_jax_x64_is_refused_with_the_fix():
    code = ("import vnn\ntry:\n    vnn.MLP([2, 3, 1], backend='jax', dtype='float64')\n"
            "except ValueError as e:\n    print(e)\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("JAX_ENABLE_X64", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert "jax.config.update('jax_enable_x64', True)" in out.stdout, out.stderr
    assert "dtype='float32'" in out.stdout


@pytest.mark.parametrize("device, message", [
    ("gpu:x", "is not a JAX device"),
    ("quantum", "is not a JAX device"),
    ("cpu:5", "JAX has 1 cpu device"),
])
def test_bad_jax_devices_are_refused(device, message):
    with pytest.raises(ValueError, match=message):
        vnn.MLP([2, 3, 1], backend="jax", device=device)


@pytest.mark.parametrize("case", ["early_stopping", "divergence"])
def test_restoring_parameters_rebinds_them_on_jax(case):
    # JAX arrays cannot be written in place: restoring the best epoch (early stopping) and the
    # last finite step (on_nonfinite="stop") rebind the model's parameters; NumPy, which writes
    # them in place, is the reference
    X, y = _data(64)
    out = []
    for backend in ("jax", "numpy"):
        net = vnn.MLP([5, 6, 3], output="softmax", backend=backend, dtype="float64", seed=0)
        if case == "early_stopping":
            h = net.fit(X, y, epochs=40, batch_size=16, optimizer=vnn.SGD(2.0),
                        validation_data=(X[:16], y[:16]), early_stopping=2)
            assert h.stopped == "early"
            info = h.best_epoch
        else:
            with pytest.warns(RuntimeWarning, match="non-finite|NaN|inf"):
                h = net.fit(X * 1e3, y, epochs=5, batch_size=16, optimizer=vnn.SGD(1e6),
                            on_nonfinite="stop")
            info = len(h.loss)
        out.append((info, np.concatenate([vnn.to_numpy(p).ravel() for p in net.theta])))
    assert out[0][0] == out[1][0]
    assert np.isfinite(out[0][1]).all()
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-10, atol=1e-12)


def test_vnn_info_lists_jax():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run([sys.executable, "-m", "vnn.cli", "info"], capture_output=True,
                         text=True, env=env, timeout=120).stdout
    line = next(x for x in out.splitlines() if x.strip().startswith("jax"))
    assert jax.__version__ in line and "cpu" in line


def test_a_reused_optimizer_with_another_models_state_starts_afresh():
    # the optimizer's state is the model's only when its shapes are the model's parameters'
    X, y = _data()
    opt = vnn.Adam(1e-2)
    vnn.MLP([5, 8, 3], output="softmax", backend="jax", seed=0).fit(X, y, optimizer=opt,
                                                                   epochs=1, batch_size=8)
    net = vnn.MLP([5, 8, 1], output="sigmoid", backend="jax", seed=0)
    net.fit(X, y % 2, optimizer=opt, epochs=1, batch_size=8)
    assert [tuple(p.shape) for p in net.theta] == [(8, 5), (8,), (1, 8), (1,)]
    assert [tuple(a.shape) for a in opt.state[0]] == [(8, 5), (8,), (1, 8), (1,)]
    assert opt.t == 5


def test_every_fit_of_a_kind_of_model_shares_one_trace_per_batch_shape(monkeypatch):
    traces = []
    pure = jitted._pure

    def counted(*args, **kwargs):
        traces.append(kwargs["n"])
        return pure(*args, **kwargs)

    monkeypatch.setattr(jitted, "_pure", counted)
    monkeypatch.setattr(jitted, "_JITTED", {})
    X, y = _data()
    for seed in range(3):
        net = vnn.MLP([5, 7, 3], output="softmax", backend="jax", dtype="float64", seed=seed)
        net.fit(X, y, optimizer=vnn.Adam(1e-2), epochs=2, batch_size=8)
    assert sorted(traces) == [5, 8], traces


def test_float32_adam_on_jax_rounds_one_minus_beta2_once():
    # β₂ stays a Python number inside the trace: 1 − β₂ is 0.001 rounded once, not
    # 1 − float32(0.999) (1.3e-5 off), so JAX's float32 Adam follows NumPy's
    X, y = _data(64)
    out = []
    for backend in ("jax", "numpy"):
        net = vnn.MLP([5, 16, 3], output="softmax", backend=backend, dtype="float32", seed=0)
        net.fast_path = backend == "jax"
        opt = vnn.Adam(1e-2)
        net.fit(X, y, optimizer=opt, epochs=3, batch_size=16)
        out.append(np.concatenate([vnn.to_numpy(v).ravel() for v in opt.state[1]]))
    np.testing.assert_allclose(out[0], out[1], rtol=2e-6, atol=1e-9)  # seen: 3.4e-7; 2.5e-3 before
