"""Divergence, Ctrl-C, checkpoints and resume, and the bad inputs the other test files leave out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import host, make

import vnn
from vnn.train import Trainer


def _regression(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    return X, X @ rng.standard_normal((4, 2))


def _params(net):
    return [host(p).copy() for p in net.weights + net.biases]


def _steps(net, X, Y, lr, batches):
    """An independent replay: ``batches`` SGD steps through the Trainer, no fit loop."""
    trainer = Trainer(net, vnn.SGD(lr), 0.0)
    with net.backend.activate():
        A, T, _ = net.prepare(X, Y)
        for b in batches:
            trainer(A, T, b)


# -- divergence -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False])
def test_divergence_names_epoch_and_batch_and_keeps_last_finite_parameters(backend, fast):
    X, Y = _regression()
    X = X * 1e3  # with lr 0.5 the squared error explodes within a few steps
    net = make(backend, [4, 8, 2], activation="relu", output="identity", dtype="float64", seed=1)
    net.fast_path = fast
    with pytest.raises(vnn.DivergenceError, match=r"epoch \d+, batch \d+") as info:
        net.fit(X, Y, optimizer=vnn.SGD(0.5), epochs=5, batch_size=8, shuffle=False)
    epoch, batch = info.value.epoch, info.value.batch
    assert all(np.isfinite(p).all() for p in _params(net))
    # the parameters equal those after every step before the failing one, replayed independently
    ref = make(backend, [4, 8, 2], activation="relu", output="identity", dtype="float64", seed=1)
    ref.fast_path = fast
    per_epoch = [slice(a, a + 8) for a in range(0, 48, 8)]
    with np.errstate(over="ignore", invalid="ignore"):
        _steps(ref, X, Y, 0.5, per_epoch * (epoch - 1) + per_epoch[:batch - 1])
    for a, b in zip(_params(net), _params(ref)):
        np.testing.assert_array_equal(a, b)


def test_divergence_can_stop_with_a_warning_instead():
    X, Y = _regression()
    net = vnn.MLP([4, 8, 2], output="identity", dtype="float64", seed=1)
    with pytest.warns(RuntimeWarning, match="training diverged at epoch"):
        h = net.fit(X * 1e3, Y, optimizer=vnn.SGD(0.5), epochs=5, batch_size=8, shuffle=False,
                    on_nonfinite="stop")
    assert h.stopped == "nonfinite"
    assert all(np.isfinite(p).all() for p in _params(net))
    assert all(np.isfinite(v) for v in h.loss)


def test_huge_but_finite_inputs_do_not_trip_the_guard():
    X, Y = _regression()
    net = vnn.MLP([4, 8, 2], output="identity", dtype="float64", seed=1)
    h = net.fit(X * 1e3, Y, optimizer=vnn.SGD(1e-9), epochs=3, batch_size=8)
    assert h.stopped is None and h.epochs == 3


# -- Ctrl-C -------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("fast", [True, False])
def test_ctrl_c_stops_after_the_step_in_progress(fast):
    X, Y = _regression()
    kw = dict(activation="tanh", output="identity", dtype="float64", seed=2)

    def interrupt(epoch, history):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives before epoch 3's first step ends

    net = vnn.MLP([4, 6, 2], **kw)
    net.fast_path = fast
    with pytest.warns(RuntimeWarning, match="training interrupted at epoch 3 after batch 1"):
        h = net.fit(X, Y, optimizer=vnn.SGD(0.05), epochs=6, batch_size=16, shuffle=False,
                    callback=interrupt)
    assert h.stopped == "interrupted" and h.epochs == 2 and len(h.loss) == 2
    ref = vnn.MLP([4, 6, 2], **kw)
    ref.fast_path = fast
    per_epoch = [slice(0, 16), slice(16, 32), slice(32, 48)]
    _steps(ref, X, Y, 0.05, per_epoch * 2 + per_epoch[:1])
    for a, b in zip(_params(net), _params(ref)):
        np.testing.assert_array_equal(a, b)
    # the handler is gone again: the default Ctrl-C behaviour is back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- checkpoints and resume ---------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("opt", ["adam", "momentum"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, fast, opt):
    X, Y = _regression(n=50)
    make_opt = {"adam": lambda: vnn.Adam(1e-2), "momentum": lambda: vnn.Momentum(0.05, 0.8)}[opt]

    def new():
        net = vnn.MLP([4, 7, 2], activation="tanh", output="identity", dtype="float64", seed=5)
        net.fast_path = fast
        return net

    full = new()
    h_full = full.fit(X, Y, optimizer=make_opt(), epochs=6, batch_size=16, l2=1e-3,
                      validation_data=(X, Y))
    first = new()
    first.fit(X, Y, optimizer=make_opt(), epochs=4, batch_size=16, l2=1e-3,
              validation_data=(X, Y), checkpoint=tmp_path / "run.safetensors", checkpoint_every=2)
    resumed = new()  # a fresh process would start exactly like this
    h = resumed.fit(X, Y, epochs=6, batch_size=16, l2=1e-3, validation_data=(X, Y),
                    resume=tmp_path / "run.safetensors")
    for a, b in zip(_params(resumed), _params(full)):
        np.testing.assert_array_equal(a, b)
    assert h.loss == h_full.loss and h.val_loss == h_full.val_loss


def test_resume_refuses_a_different_model_or_optimizer(tmp_path):
    X, Y = _regression()
    net = vnn.MLP([4, 7, 2], output="identity", seed=5)
    net.fit(X, Y, optimizer=vnn.Adam(), epochs=1, checkpoint=tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match="differs from this one"):
        vnn.MLP([4, 9, 2], output="identity").fit(X, Y, resume=tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match="differs from the checkpoint's"):
        vnn.MLP([4, 7, 2], output="identity").fit(X, Y, optimizer=vnn.SGD(0.1),
                                                  resume=tmp_path / "c.safetensors")
    net.save(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="without optimizer state"):
        vnn.MLP([4, 7, 2], output="identity").fit(X, Y, resume=tmp_path / "plain.safetensors")
    with pytest.raises(FileNotFoundError):
        net.fit(X, Y, resume=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="checkpoint_every=0 is invalid"):
        net.fit(X, Y, checkpoint=tmp_path / "c.safetensors", checkpoint_every=0)
    with pytest.raises(ValueError, match="on_nonfinite='ignore' is invalid"):
        net.fit(X, Y, on_nonfinite="ignore")


TRAIN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import vnn
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5)); y = rng.integers(0, 3, size=64)
    net = vnn.MLP([5, 16, 3], output="softmax", dtype="float64", seed=7)
    kill_at = int(sys.argv[2])
    def cb(epoch, history):
        if epoch == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    net.fit(X, y, optimizer=vnn.Adam(1e-2), epochs=8, batch_size=10, checkpoint=sys.argv[1],
            callback=cb, resume=sys.argv[1] if os.path.exists(sys.argv[1]) else None)
    vnn.save(net, sys.argv[1] + ".final")
""")


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_run_killed_with_sigkill_resumes_to_the_same_parameters(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    ck = str(tmp_path / "run.safetensors")
    killed = subprocess.run([sys.executable, str(script), ck, "3"], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert vnn.io.load_checkpoint(ck).epoch == 3
    done = subprocess.run([sys.executable, str(script), ck, "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    straight = tmp_path / "straight.safetensors"
    ok = subprocess.run([sys.executable, str(script), str(straight), "0"], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    a, b = vnn.load(ck + ".final"), vnn.load(str(straight) + ".final")
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(p, q)


# -- bad input the other files do not cover ----------------------------------------------------------
def test_nonfinite_data_and_bad_hyperparameters_are_named(backend):
    X, Y = _regression(n=6)
    net = make(backend, [4, 3, 2], output="identity", seed=0)
    Xn, Yn = X.copy(), Y.copy()
    Xn[2, 1], Yn[0, 0] = np.nan, np.inf
    cases = [
        (lambda: net.fit(Xn, Y), ValueError, "X contains NaN or infinite"),
        (lambda: net.fit(X, Yn), ValueError, "y contains NaN or infinite"),
        (lambda: net.predict(Xn), ValueError, "X contains NaN or infinite"),
        (lambda: net.fit(X, Y, validation_data=(Xn, Y)), ValueError, r"validation_data\[0\]"),
        (lambda: net.fit(np.zeros((0, 4)), np.zeros((0, 2))), ValueError, "X is empty"),
        (lambda: net.fit(X, Y[:4]), ValueError, "match the 6 samples"),
        (lambda: vnn.SGD(0.0), ValueError, "lr=0.0 is invalid"),
        (lambda: vnn.SGD(-1), ValueError, "lr=-1 is invalid"),
        (lambda: vnn.Adam(beta1=1.0), ValueError, "beta1=1.0 is invalid"),
        (lambda: vnn.Momentum(0.1, beta=-0.1), ValueError, "beta=-0.1 is invalid"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_sklearn_and_load_name_bad_input(tmp_path):
    pytest.importorskip("sklearn")
    from vnn.sklearn import MLPClassifier

    X, _ = _regression(n=6)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPClassifier(max_iter=1).fit(np.where(X > 1, np.nan, X), [0, 1] * 3)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be > 0"):
        MLPClassifier(hidden_layer_sizes=(3, 0), max_iter=1).fit(X, [0, 1] * 3)
    with pytest.raises(ValueError, match="learning_rate_init"):
        MLPClassifier(learning_rate_init=-1.0).fit(X, [0, 1] * 3)
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.safetensors"):
        vnn.load(tmp_path / "bad.safetensors")
