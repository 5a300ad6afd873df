"""Size checks before allocating, zero-weight batches, argument checks before any work, and
resuming a checkpoint that is already past ``epochs``."""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
import pytest
from conftest import host, make
from vnn.backends.numpy import NumpyBackend

import vnn
from vnn import backends
from vnn.train import Trainer


def _params(net):
    return [host(p).copy() for p in net.weights + net.biases]


def _regression(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    return X, X @ rng.standard_normal(4)


def _memory(monkeypatch, n_bytes):
    """Pretend the host (NumPy's memory) has ``n_bytes`` available."""
    monkeypatch.setattr(NumpyBackend, "available_memory", lambda self: n_bytes)


# -- size checks before allocating ------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="Linux's /proc/meminfo")
def test_host_memory_is_known_here():
    free = backends.resolve("cpu").available_memory()
    with open("/proc/meminfo") as f:  # the kernel's own figure, read independently
        total = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) * 1024
    assert free is not None and 0 < free <= total


def test_network_larger_than_memory_is_refused_before_drawing(monkeypatch):
    _memory(monkeypatch, 8 * 10**9)
    t0 = time.perf_counter()
    with pytest.raises(vnn.ModelTooLargeError) as info:
        vnn.MLP([1, 10**9, 1])
    assert time.perf_counter() - t0 < 5  # refused at once, not after drawing 10⁹ weights
    # by hand: 3,000,000,001 parameters × 4 bytes = 12.0 GB; the peak is while W(2) is drawn:
    # W(1) in float32 (4 GB) + W(2) drawn in float64 (8 GB) + its float32 copy (4 GB) = 16.0 GB
    msg = str(info.value)
    assert "sizes=[1, 1000000000, 1] needs about 16.0 GB" in msg
    assert "3,000,000,001 parameters in float32" in msg and "12.0 GB" in msg
    assert "about 8.0 GB is available" in msg
    assert isinstance(info.value, ValueError) and isinstance(info.value, MemoryError)


@pytest.mark.parametrize("sizes", [[1, 10**12, 1], [4, 2**63, 3], [2**70, 2]])
def test_impossible_networks_are_refused_with_the_real_memory(sizes):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"sizes=\[.*\] needs about [\d.,]+ [kMGTPEZY]?B") as info:
        vnn.MLP(sizes)
    assert time.perf_counter() - t0 < 5
    assert isinstance(info.value, MemoryError)  # vnn.ModelTooLargeError


def test_unknown_memory_still_refuses_what_no_machine_has(monkeypatch):
    _memory(monkeypatch, None)
    with pytest.raises(vnn.ModelTooLargeError, match=r"sizes=\[4, 9223372036854775808, 3\]"):
        vnn.MLP([4, 2**63, 3])
    assert vnn.MLP([4, 8, 3]).n_parameters == 4 * 8 + 8 + 8 * 3 + 3  # small nets still build


def test_float64_needs_no_conversion_copy(monkeypatch):
    # float64: W(1) (8 GB) + W(2) drawn in float64, used as it is (8 GB) = 16 GB at the peak;
    # 3,000,000,001 × 8 bytes = 24.0 GB in the end
    _memory(monkeypatch, 20 * 10**9)
    with pytest.raises(vnn.ModelTooLargeError, match=r"needs about 24\.0 GB"):
        vnn.MLP([1, 10**9, 1], dtype="float64")


def test_a_device_backend_checks_its_own_memory_and_the_host_draw_separately(monkeypatch):
    # a GPU backend keeps the parameters in its memory and draws on the host; NumPy stands in
    monkeypatch.setattr(NumpyBackend, "on_host", lambda self: False)
    _memory(monkeypatch, 8 * 10**9)  # the "device"
    with pytest.raises(vnn.ModelTooLargeError,  # 3,000,000,001 × 4 bytes
                       match=r"needs about 12\.0 GB on cpu .* about 8\.0 GB is available on cpu"):
        vnn.MLP([1, 10**9, 1])
    _memory(monkeypatch, 100 * 10**9)
    monkeypatch.setattr(backends, "host_available_memory", lambda: 10 * 10**9)
    # the host holds one layer at a time: 10⁹ weights in float64 (8 GB) and in float32 (4 GB)
    with pytest.raises(vnn.ModelTooLargeError, match=r"drawing the initial weights of sizes=.* "
                                                     r"needs about 12\.0 GB of host memory"):
        vnn.MLP([1, 10**9, 1])


def test_initial_weights_peak_at_what_the_estimate_counts():
    sizes = [1, 10**6, 1]
    vnn.MLP([2, 2, 1])  # imports done, so that only the model's own arrays are measured
    tracemalloc.start()
    try:
        net = vnn.MLP(sizes, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # by hand, bytes: W(1) in float32 (4,000,000), then W(2) drawn in float64 (8,000,000) and
    # its float32 copy (4,000,000), with W(1)'s float64 draw released: 16,000,000 at the peak
    assert 16_000_000 <= peak < 16_000_000 * 1.05
    assert net.n_parameters == 3 * 10**6 + 1


class _Spy:
    """Array-like training data that records whether anything read its values."""

    def __init__(self, a):
        self.a, self.read = a, False
        self.shape, self.dtype = a.shape, a.dtype

    def __len__(self):
        return len(self.a)

    def __array__(self, dtype=None, copy=None):
        self.read = True
        return self.a if dtype is None else self.a.astype(dtype)


def test_fit_refuses_what_its_buffers_would_not_fit_before_moving_data(monkeypatch):
    net = vnn.MLP([10, 1000, 1000, 1], seed=0)
    rng = np.random.default_rng(0)
    X, y = _Spy(rng.standard_normal((256, 10))), rng.standard_normal(256)
    before = _params(net)
    # Adam: gradients (1) + two moments (2) + the epoch-start copy of parameters and moments
    # (3) = 6 × 1,013,001 parameters × 4 bytes ≈ 24.3 MB, more than 8 MB
    _memory(monkeypatch, 8 * 10**6)
    with pytest.raises(vnn.ModelTooLargeError, match=r"fit needs about [\d.]+ MB more") as info:
        net.fit(X, y, optimizer=vnn.Adam(), epochs=1, batch_size=64)
    assert "optimizer state" in str(info.value) and "about 8.0 MB is available" in str(info.value)
    assert not X.read
    for a, b in zip(_params(net), before):
        np.testing.assert_array_equal(a, b)
    _memory(monkeypatch, 10**9)
    assert net.fit(X, y, optimizer=vnn.Adam(), epochs=1, batch_size=64).epochs == 1


def test_estimator_refuses_a_network_larger_than_memory_before_drawing(monkeypatch):
    from vnn.sklearn import MLPRegressor

    _memory(monkeypatch, 8 * 10**9)
    X, y = _regression(n=6)
    t0 = time.perf_counter()
    with pytest.raises(vnn.ModelTooLargeError, match="hidden_layer_sizes"):
        MLPRegressor(hidden_layer_sizes=(10**9,), max_iter=1).fit(X, y)
    assert time.perf_counter() - t0 < 5


# -- a mini-batch whose weights are all zero ------------------------------------------------
def _zero_second_batch(n=40, batch=8):
    w = np.ones(n)
    w[batch:2 * batch] = 0.0  # batch 2 (rows 8..15) weighs nothing; the total is positive
    return w


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_zero_weight_batch_is_skipped_like_training_without_it(backend, opt):
    X, y = _regression()
    w = _zero_second_batch()
    keep = w > 0
    make_opt = {"sgd": lambda: vnn.SGD(0.05), "adam": lambda: vnn.Adam(1e-2)}[opt]
    net = make(backend, [4, 6, 1], dtype="float64", seed=3)
    o = make_opt()
    h = net.fit(X, y, optimizer=o, epochs=3, batch_size=8, shuffle=False, sample_weight=w)
    # the reference trains on the data without those rows: the same other batches, in order
    ref = make(backend, [4, 6, 1], dtype="float64", seed=3)
    o_ref = make_opt()
    h_ref = ref.fit(X[keep], y[keep], optimizer=o_ref, epochs=3, batch_size=8, shuffle=False,
                    sample_weight=w[keep])
    for a, b in zip(_params(net), _params(ref)):
        np.testing.assert_array_equal(a, b)
    assert h.loss == h_ref.loss and all(np.isfinite(h.loss))
    assert o.t == o_ref.t == 3 * 4  # no step is counted for the skipped batch


def test_shuffled_zero_weight_batches_are_skipped_every_epoch(backend):
    n, bs = 30, 3
    X, y = _regression(n=n)
    w = np.zeros(n)
    w[[1, 7, 12, 20, 28]] = [1.0, 2.0, 0.5, 1.0, 3.0]  # most batches of 3 weigh nothing
    net = make(backend, [4, 5, 1], dtype="float64", seed=11)
    h = net.fit(X, y, optimizer=vnn.SGD(0.1), epochs=4, batch_size=bs, sample_weight=w)
    # an independent replay: the same permutations, a step only for batches with weight
    ref = make(backend, [4, 5, 1], dtype="float64", seed=11)
    trainer, steps, be = Trainer(ref, vnn.SGD(0.1), 0.0), 0, ref.backend
    with be.activate():
        A, T, V = ref.prepare(X, y, w)
        for _ in range(4):
            perm = ref.rng.permutation(n)
            for a in range(0, n, bs):
                idx = perm[a:a + bs]
                if sum(w[i] for i in idx) > 0:
                    trainer(A, T, be.from_host(idx), V)
                    steps += 1
    for a, b in zip(_params(net), _params(ref)):
        np.testing.assert_array_equal(a, b)
    assert h.epochs == 4 and all(np.isfinite(h.loss)) and 0 < steps < 4 * n // bs


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_estimators_skip_a_zero_weight_batch(kind, solver):
    from vnn.sklearn import MLPClassifier, MLPRegressor

    X, y = _regression()
    if kind == "classifier":
        y, Est = (y > 0).astype(int), MLPClassifier
    else:
        Est = MLPRegressor
    w = _zero_second_batch()
    keep = w > 0
    kw = dict(hidden_layer_sizes=(6,), solver=solver, batch_size=8, shuffle=False, max_iter=4,
              random_state=0, alpha=1e-3, dtype="float64")
    est = Est(**kw).fit(X, y, sample_weight=w)
    ref = Est(**kw).fit(X[keep], y[keep], sample_weight=w[keep])  # without those rows
    for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert est.loss_curve_ == ref.loss_curve_ and all(np.isfinite(est.loss_curve_))
    assert est.n_iter_ == ref.n_iter_ == 4 and est.t_ == ref.t_


# -- arguments checked before any work ----------------------------------------------------------
HUGE = 10**400  # an int no float can hold


@pytest.mark.parametrize("call, error, message", [
    (lambda: vnn.SGD(lr=HUGE), ValueError, r"lr=1\.000E\+400 is invalid"),
    (lambda: vnn.Adam(lr=HUGE), ValueError, r"lr=1\.000E\+400 is invalid"),
    (lambda: vnn.Adam(beta1=HUGE), ValueError, r"beta1=1\.000E\+400 is invalid"),
    (lambda: vnn.Adam(beta2=HUGE), ValueError, r"beta2=1\.000E\+400 is invalid"),
    (lambda: vnn.Adam(eps=HUGE), ValueError, r"eps=1\.000E\+400 is invalid"),
    (lambda: vnn.Adam(eps=float("nan")), ValueError, r"eps=nan is invalid"),
    (lambda: vnn.Momentum(1e-3, beta=HUGE), ValueError, r"beta=1\.000E\+400 is invalid"),
    (lambda: vnn.SGD(lr="0.1"), ValueError, r"lr='0\.1' is invalid"),
    (lambda: vnn.MLP([4, 8, 1], activation=None), ValueError,
     r"activation=None is not known; expected one of \['identity', 'relu', 'sigmoid', 'tanh'\]"),
    (lambda: vnn.MLP([4, 8, 1], activation=5), ValueError, r"activation=5 is not known"),
    (lambda: vnn.MLP([4, 8, 8, 1], activation=["relu", None]), ValueError,
     r"activation\[1\]=None is not known"),
    (lambda: vnn.MLP([4, 8, 1], device="cuda:abc"), ValueError,
     r"device='cuda:abc' is not a CUDA device; expected 'cuda' or 'cuda:N'"),
    (lambda: vnn.MLP([4, 8, 1], device="cuda:-1"), ValueError, r"device='cuda:-1'"),
    (lambda: vnn.MLP([4, 8, 1], backend="cupy", device="gpu"), ValueError, r"device='gpu'"),
    (lambda: backends.resolve("cuda:1.5"), ValueError, r"device='cuda:1\.5'"),
])
def test_bad_hyperparameters_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_numpy_scalars_are_numbers():
    assert vnn.SGD(np.float32(0.5)).lr == 0.5
    assert vnn.Momentum(np.float64(0.1), beta=np.float32(0.5)).beta == 0.5
    assert vnn.MLP([4, 3, 1], seed=np.int64(3)).seed == 3
    X, y = _regression(n=8)
    h = vnn.MLP([4, 3, 1], seed=0).fit(X, y, epochs=np.int64(2), batch_size=np.int32(4),
                                       l2=np.float32(0.01))
    assert h.epochs == 2


def _fit_case(tmp_path):
    X, y = _regression(n=16)
    net = vnn.MLP([4, 3, 1], seed=0)
    calls = []
    return net, X, y, calls, lambda e, h: calls.append(e)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(l2=HUGE), ValueError, r"l2=1\.000E\+400 is invalid"),
    (dict(l2=float("inf")), ValueError, r"l2=inf is invalid"),
    (dict(epochs=2.0), ValueError, r"epochs=2\.0 is invalid"),
    (dict(batch_size=True), ValueError, r"batch_size=True is invalid"),
    (dict(shuffle="no"), TypeError, r"shuffle='no' is not a bool"),
    (dict(shuffle=None), TypeError, r"shuffle=None is not a bool"),
    (dict(progress="yes"), TypeError, r"progress='yes' is not a bool"),
    (dict(callback=5), TypeError, r"callback=5 is not callable"),
])
def test_bad_fit_arguments_are_named_before_training(tmp_path, kwargs, error, message):
    net, X, y, calls, _ = _fit_case(tmp_path)
    before = _params(net)
    with pytest.raises(error, match=message):
        net.fit(X, y, epochs=kwargs.pop("epochs", 2), **kwargs)
    for a, b in zip(_params(net), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("where", ["missing_folder", "directory", "read_only"])
def test_unwritable_checkpoint_fails_before_the_first_epoch(tmp_path, where):
    net, X, y, calls, callback = _fit_case(tmp_path)
    if where == "missing_folder":
        path = tmp_path / "no" / "such" / "ck.safetensors"
    elif where == "directory":
        path = tmp_path
    else:
        if getattr(os, "geteuid", lambda: -1)() == 0:
            pytest.skip("root may write into a read-only folder")
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        path = folder / "ck.safetensors"
    before = _params(net)
    with pytest.raises((ValueError, OSError), match="checkpoint"):
        net.fit(X, y, epochs=2, checkpoint=path, callback=callback)
    assert calls == []  # not one epoch ran
    for a, b in zip(_params(net), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("what", ["X", "y", "sample_weight", "validation_data[0]",
                                  "validation_data[1]", "predict"])
def test_float64_values_that_overflow_float32_are_named(backend, what):
    X, y = _regression(n=8)
    net = make(backend, [4, 3, 1], seed=0)  # float32
    big = np.full((8, 4), 1e300)
    cases = {
        "X": lambda: net.fit(big, y),
        "y": lambda: net.fit(X, np.full(8, 1e300)),
        "sample_weight": lambda: net.fit(X, y, sample_weight=np.full(8, 1e300)),
        "validation_data[0]": lambda: net.fit(X, y, validation_data=(big, y)),
        "validation_data[1]": lambda: net.fit(X, y, validation_data=(X, np.full(8, -1e300))),
        "predict": lambda: net.predict(big),
    }
    name = "X" if what == "predict" else what
    with pytest.raises(ValueError, match=rf"{name.replace('[', '.').replace(']', '.')} has "
                                         r"values up to 1e\+300 in magnitude, which overflow "
                                         r"float32 \(largest finite value about 3\.4e\+38\)"):
        cases[what]()


def test_nan_is_still_reported_as_nan_and_float64_models_take_big_values(backend):
    X, y = _regression(n=8)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinite values"):
        make(backend, [4, 3, 1], seed=0).fit(Xn, y)
    out = make(backend, [4, 3, 1], dtype="float64", seed=0).forward(np.full((2, 4), 1e300))
    assert host(out).shape == (2, 1)


# -- resuming a checkpoint that is already past ``epochs`` --------------------------------------
def test_resume_past_epochs_warns_and_returns_the_checkpoint(tmp_path):
    X, y = _regression()
    ck = tmp_path / "ck.safetensors"
    done = vnn.MLP([4, 5, 1], seed=2)
    h5 = done.fit(X, y, epochs=5, checkpoint=ck)
    net = vnn.MLP([4, 5, 1], seed=2)
    with pytest.warns(vnn.train.NothingToTrainWarning,
                      match=r"already at epoch 5, past epochs=3: nothing is trained"):
        h = net.fit(X, y, epochs=3, resume=ck)
    assert issubclass(vnn.train.NothingToTrainWarning, UserWarning)
    assert h.epochs == 5 and h.loss == h5.loss
    for a, b in zip(_params(net), _params(done)):
        np.testing.assert_array_equal(a, b)
    again = vnn.MLP([4, 5, 1], seed=2).fit(X, y, epochs=5, resume=ck)  # complete: no warning
    assert again.loss == h5.loss


# -- forward passes and validation too large for one go ----------------------------------------------
def test_a_forward_pass_too_large_for_memory_runs_in_chunks_of_rows(monkeypatch):
    net = vnn.MLP([6, 512, 3], output="softmax", dtype="float64", seed=0)
    X = np.random.default_rng(1).standard_normal((20_000, 6))
    whole = host(net.predict_proba(X))  # 20,000 x 2 x 521 float64: 167 MB at once
    calls = []
    real = vnn.MLP._forward

    def counting(self, A):
        calls.append(A.shape[0])
        return real(self, A)

    monkeypatch.setattr(vnn.MLP, "_forward", counting)
    _memory(monkeypatch, 60 * 10**6)  # a chunk may use 30 MB: 3,598 rows
    chunked = host(net.predict_proba(X))
    assert len(calls) == 6 and sum(calls) == 20_000 and max(calls) == 3598
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-15)  # rows are independent
    np.testing.assert_array_equal(host(net.predict(X)), whole.argmax(axis=1))
    _memory(monkeypatch, 2_000)  # not one row fits
    with pytest.raises(vnn.ModelTooLargeError, match="per row"):
        net.predict(X)


def test_fit_counts_the_validation_pass_before_training(monkeypatch):
    net = vnn.MLP([6, 512, 3], output="softmax", seed=0)
    before = _params(net)
    X = np.random.default_rng(1).standard_normal((64, 6))
    X_val = np.zeros((50_000, 6))
    _memory(monkeypatch, 150 * 10**6)  # the validation pass needs 208 MB
    with pytest.raises(vnn.ModelTooLargeError, match=r"the validation pass \(50000 rows\)"):
        net.fit(X, np.arange(64) % 3, epochs=1, validation_data=(X_val, np.zeros(50_000, int)))
    for a, b in zip(before, _params(net)):
        np.testing.assert_array_equal(a, b)
    net.fit(X, np.arange(64) % 3, epochs=1, validation_data=(X_val[:100], np.zeros(100, int)))


def test_an_address_space_limit_bounds_the_memory_vnn_counts_on(tmp_path):
    import subprocess
    import sys

    code = ("import resource\nfrom vnn import backends\n"
            "resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))\n"
            "print(backends.resolve('cpu').available_memory())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 0 < int(done.stdout) <= 6 * 2**30


def test_resume_is_checked_before_the_data(monkeypatch):
    net = vnn.MLP([4, 1])
    X, y = _regression()
    moved = []
    monkeypatch.setattr(vnn.MLP, "prepare", lambda *a, **k: moved.append(1))
    with pytest.raises(TypeError, match="resume=5 is not a file path"):
        net.fit(X, y, resume=5)
    with pytest.raises(FileNotFoundError, match="resume: the checkpoint file does not exist"):
        net.fit(X, y, resume="/no/such/checkpoint.safetensors")
    assert not moved


@pytest.mark.parametrize("device", ["mps", "xpu", "meta"])
def test_torch_devices_vnn_does_not_train_on_are_refused_by_name(device):
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match=f"device='{device}' is a '{device}' device"):
        vnn.MLP([3, 2], backend="torch", device=device)
