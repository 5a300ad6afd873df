"""Property tests (hypothesis) over random architectures, batch sizes, dtypes and backends.

Every example draws a small integer seed and builds its arrays from ``np.random.default_rng`` so
that examples stay fast and shrink well. References are independent of the code under test: a
float64 NumPy forward pass written here from the model's weights, central finite differences of
the loss, the same batch with its rows permuted, and a second identical training run.
"""

from __future__ import annotations

import gc
import tracemalloc
import warnings

import numpy as np
import pytest
from cases import HIDDEN, OPTIMIZERS, PAIRINGS
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import vnn
from vnn import backends

# numpy on the CPU and array_api_strict on its default device.
BACKENDS = {"numpy": backends.resolve("cpu"),
            "array_api_strict": backends.resolve(None, "array_api_strict")}

SEEDS = st.integers(0, 2**32 - 1)
# No example database: the tests leave nothing behind in the working tree.
FAST = settings(deadline=None, database=None, max_examples=150)


def build(backend: str, sizes: list[int], activation: list[str], output: str, *,
          loss: str | None = None, dtype: str = "float32", seed: int = 0) -> vnn.MLP:
    be = BACKENDS[backend]
    return vnn.MLP(sizes, activation=activation, output=output, loss=loss, backend=be.name,
                   device=be.device_name, dtype=dtype, seed=seed)


@st.composite
def architectures(draw, max_width: int = 9, max_layers: int = 4, hidden=HIDDEN,
                  pairings=PAIRINGS):
    """sizes [m_0, ..., m_L] with L in 1..max_layers, one activation per hidden layer, and an
    (output, loss) pairing; softmax gets m_L >= 2 classes."""
    L = draw(st.integers(1, max_layers))
    output, loss = draw(st.sampled_from(pairings))
    widths = draw(st.lists(st.integers(1, max_width), min_size=L + 1, max_size=L + 1))
    if output == "softmax":
        widths[-1] = draw(st.integers(2, max(2, max_width)))
    activation = draw(st.lists(st.sampled_from(hidden), min_size=L - 1, max_size=L - 1))
    return widths, activation, output, loss


def targets(rng: np.random.Generator, output: str, n: int, m_out: int) -> np.ndarray:
    if output == "softmax":
        return rng.integers(0, m_out, size=n)
    if output == "sigmoid":
        y = rng.integers(0, 2, size=(n, m_out))
        return y[:, 0] if m_out == 1 else y
    if output == "exp":  # counts
        return rng.poisson(1.5, size=(n, m_out)).astype(float)
    return rng.standard_normal((n, m_out))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


PHI = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh, "sigmoid": _sigmoid,
       "identity": lambda z: z}


def reference_forward(net: vnn.MLP, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Eqns (1)-(2) in float64 NumPy from the model's weights: the pre-activations z of every
    layer and the output a^(L). X is first rounded to the model's dtype, as the model does."""
    a = np.asarray(X, dtype=net.dtype).astype(np.float64)
    zs = []
    for ell, (W, b) in enumerate(zip(net.weights, net.biases)):
        z = a @ vnn.to_numpy(W).astype(np.float64).T + vnn.to_numpy(b).astype(np.float64)
        zs.append(z)
        a = PHI[net.activation[ell]](z) if ell < len(net.weights) - 1 else z
    if net.output == "sigmoid":
        a = _sigmoid(a)
    elif net.output == "exp":
        a = np.exp(a)
    elif net.output == "softmax":
        e = np.exp(a - a.max(axis=1, keepdims=True))
        a = e / e.sum(axis=1, keepdims=True)
    return zs, a


def tolerances(dtype: str) -> dict[str, float]:
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}


# -- 1. forward and predict shapes, probabilities ------------------------------------------------
@FAST
@given(arch=architectures(), n=st.integers(1, 17), dtype=st.sampled_from(["float32", "float64"]),
       backend=st.sampled_from(sorted(BACKENDS)), seed=SEEDS)
def test_forward_and_predict_shapes(arch, n, dtype, backend, seed):
    sizes, activation, output, loss = arch
    net = build(backend, sizes, activation, output, loss=loss, dtype=dtype, seed=seed % 1000)
    X = np.random.default_rng(seed).standard_normal((n, sizes[0]))
    m_L = sizes[-1]

    a = net.forward(X)
    assert tuple(a.shape) == (n, m_L)
    assert a.dtype == getattr(net.xp, dtype)
    p = vnn.to_numpy(a)
    _, ref = reference_forward(net, X)
    np.testing.assert_allclose(p, ref, **tolerances(dtype))

    tol = 1e-5 if dtype == "float32" else 1e-12
    if output in ("sigmoid", "softmax"):
        assert np.all((p >= 0.0) & (p <= 1.0)), p
    if output == "softmax":
        np.testing.assert_allclose(p.sum(axis=1), np.ones(n), rtol=0, atol=m_L * tol)

    labels = vnn.to_numpy(net.predict(X))
    if output == "softmax":
        # labels 0..K-1, shape (n,): the argmax of the probabilities (rows with a near-tie for the
        # top probability could go either way)
        assert labels.shape == (n,)
        assert np.issubdtype(labels.dtype, np.integer)
        assert np.all((labels >= 0) & (labels < m_L))
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 10 * tol
        np.testing.assert_array_equal(labels[clear], ref.argmax(axis=1)[clear])
    elif output == "sigmoid":
        # 0/1, one column per output, flattened to (n,) for a single output
        assert labels.shape == ((n,) if m_L == 1 else (n, m_L))
        assert np.issubdtype(labels.dtype, np.integer)
        expected = (ref >= 0.5).astype(np.int64)
        clear = np.abs(ref - 0.5) > 10 * tol
        if m_L == 1:
            expected, clear = expected[:, 0], clear[:, 0]
        np.testing.assert_array_equal(labels[clear], expected[clear])
    else:
        assert labels.shape == ((n,) if m_L == 1 else (n, m_L))
        np.testing.assert_allclose(labels, ref[:, 0] if m_L == 1 else ref, **tolerances(dtype))


# -- 2. finite loss and gradients at large magnitudes ------------------------------------------
#: e^z of an exp output overflows where z does past log(max float) (large inputs or weights, or a
#: step size that makes training diverge): every other pairing stays finite there
BOUNDED = [p for p in PAIRINGS if p[0] != "exp"]


@FAST
@given(arch=architectures(pairings=BOUNDED), n=st.integers(1, 17),
       dtype=st.sampled_from(["float32", "float64"]),
       backend=st.sampled_from(sorted(BACKENDS)), seed=SEEDS,
       x_scale=st.sampled_from([1.0, 10.0, 100.0, 1e3]), w_scale=st.floats(1.0, 50.0),
       lam=st.sampled_from([0.0, 0.1]))
def test_loss_and_gradients_stay_finite(arch, n, dtype, backend, seed, x_scale, w_scale, lam):
    sizes, activation, output, loss = arch
    net = build(backend, sizes, activation, output, loss=loss, dtype=dtype, seed=seed % 1000)
    net.weights = [vnn.to_numpy(W) * w_scale for W in net.weights]
    rng = np.random.default_rng(seed)
    X = rng.uniform(-x_scale, x_scale, size=(n, sizes[0]))
    y = targets(rng, output, n, sizes[-1]) * (x_scale if output == "identity" else 1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow, divide-by-zero, invalid: all fail the test
        J, grads = net.loss_and_gradients(X, y, l2=lam)
        a = vnn.to_numpy(net.forward(X))
        # one training step (NumPy: the preallocated step, which computes the loss its own way)
        trainer = vnn.train.Trainer(net, vnn.SGD(1e-3), lam)
        A, Y, _ = net.prepare(X, y)
        J_step = float(vnn.to_numpy(trainer(A, Y, slice(0, n))))
    assert np.isfinite(J_step), J_step
    assert np.isfinite(J), J
    assert J >= 0.0
    assert np.all(np.isfinite(a))
    assert len(grads) == len(sizes) - 1
    for ell, (dW, db) in enumerate(grads):
        assert tuple(dW.shape) == (sizes[ell + 1], sizes[ell])
        assert tuple(db.shape) == (sizes[ell + 1],)
        assert np.all(np.isfinite(vnn.to_numpy(dW))), (ell, "dW")
        assert np.all(np.isfinite(vnn.to_numpy(db))), (ell, "db")


# -- 3. backprop against central differences --------------------------------------------------
KINK = 1e-4


@settings(deadline=None, database=None, max_examples=100,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(arch=architectures(max_width=5, max_layers=3), n=st.integers(1, 6),
       backend=st.sampled_from(sorted(BACKENDS)), seed=SEEDS, lam=st.sampled_from([0.0, 0.1]))
def test_gradients_match_central_differences(arch, n, backend, seed, lam):
    sizes, activation, output, loss = arch
    net = build(backend, sizes, activation, output, loss=loss, dtype="float64", seed=seed % 1000)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]))
    y = targets(rng, output, n, sizes[-1])
    # ReLU is not differentiable at 0: central differences straddling a kink measure the average
    # of the two one-sided slopes. Keep every ReLU pre-activation at least KINK away from 0; a
    # perturbation of ε = 1e-6 moves a pre-activation by far less than that.
    zs, _ = reference_forward(net, X)
    for ell, name in enumerate(activation):
        if name == "relu":
            assume(np.abs(zs[ell]).min() > KINK)

    J, grads = net.loss_and_gradients(X, y, l2=lam)
    numeric = vnn.numerical_gradients(net, X, y, l2=lam)
    # Central differences in float64 with ε = 1e-6: truncation ~ε² and rounding ~1e-16·|J|/ε per
    # entry, so an absolute floor of 1e-8·max(1, |J|) covers arrays whose gradient is ~0; a wrong
    # term shows a relative error of 1e-2 or more.
    floor = 1e-8 * max(1.0, abs(J))
    for ell, ((dW, db), (nW, nb)) in enumerate(zip(grads, numeric)):
        for name, g, h in (("dW", vnn.to_numpy(dW), nW), ("db", vnn.to_numpy(db), nb)):
            err = np.linalg.norm(g - h)
            bound = 1e-5 * (np.linalg.norm(g) + np.linalg.norm(h)) + floor
            assert err <= bound, (ell, name, err, bound, g, h)


# -- 4. row order ---------------------------------------------------------------------------------
@FAST
@given(arch=architectures(), n=st.integers(1, 17), dtype=st.sampled_from(["float32", "float64"]),
       backend=st.sampled_from(sorted(BACKENDS)), seed=SEEDS)
def test_outputs_follow_row_permutations(arch, n, dtype, backend, seed):
    sizes, activation, output, loss = arch
    net = build(backend, sizes, activation, output, loss=loss, dtype=dtype, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]))
    perm = rng.permutation(n)

    a = vnn.to_numpy(net.forward(X))
    a_perm = vnn.to_numpy(net.forward(X[perm]))
    # BLAS may block the products differently for another row order: close, not necessarily equal
    tol = tolerances(dtype)
    np.testing.assert_allclose(a_perm, a[perm], **tol)
    # and a row's output does not depend on the rest of the batch
    k = int(rng.integers(1, n + 1))
    np.testing.assert_allclose(vnn.to_numpy(net.forward(X[:k])), a[:k], **tol)

    labels = vnn.to_numpy(net.predict(X))
    labels_perm = vnn.to_numpy(net.predict(X[perm]))
    assert labels_perm.shape == labels.shape
    if output in ("identity", "exp"):
        np.testing.assert_allclose(labels_perm, labels[perm], **tol)
        return
    # rows whose decision is within rounding of a tie may go either way; all others must agree
    margin = 10 * tol["atol"]
    if output == "softmax":
        top2 = np.sort(a, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0] > margin)[perm]
    else:
        clear = (np.abs(a - 0.5) > margin)[perm]
        clear = clear[:, 0] if labels.ndim == 1 else clear
    np.testing.assert_array_equal(labels_perm[clear], labels[perm][clear])


# -- 5. same seed, same backend: the same training -----------------------------------------------
RUNS = [("numpy", True), ("numpy", False), ("array_api_strict", False)]


@settings(deadline=None, database=None, max_examples=60)
@given(arch=architectures(max_width=6, max_layers=3, pairings=BOUNDED), n=st.integers(1, 30),
       dtype=st.sampled_from(["float32", "float64"]), run=st.sampled_from(RUNS),
       optimizer=st.sampled_from(sorted(OPTIMIZERS)), seed=SEEDS, data=st.data(),
       lam=st.sampled_from([0.0, 1e-3]))
def test_same_seed_trains_identically(arch, n, dtype, run, optimizer, seed, data, lam):
    sizes, activation, output, loss = arch
    backend, fast_path = run
    batch_size = data.draw(st.integers(1, n), label="batch_size")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]))
    y = targets(rng, output, n, sizes[-1])

    results = []
    for _ in range(2):
        net = build(backend, sizes, activation, output, loss=loss, dtype=dtype, seed=seed)
        net.fast_path = fast_path
        history = net.fit(X, y, optimizer=OPTIMIZERS[optimizer](), epochs=3, batch_size=batch_size,
                          l2=lam, shuffle=True)
        params = [vnn.to_numpy(p) for p in net.weights + net.biases]
        results.append((params, list(history.loss)))
    (p1, loss1), (p2, loss2) = results
    assert len(loss1) == 3
    assert loss1 == loss2
    for a, b in zip(p1, p2):
        assert a.dtype == np.dtype(dtype)
        assert np.array_equal(a, b)


# -- 6. no memory growth in the training step ----------------------------------------------------
def test_training_steps_do_not_grow_memory():
    """10,000 steps of a NumPy 16-32-4 network (batch 16) after a 1,000-step warm-up leave the
    traced allocations where they were, to within a few bytes of interpreter bookkeeping."""
    batch, rows = 16, 16 * 64
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 16))
    y = rng.integers(0, 4, size=rows)
    net = vnn.MLP([16, 32, 4], activation="relu", output="softmax", seed=0)
    trainer = vnn.train.Trainer(net, vnn.SGD(0.01), 1e-4)
    A, Y, _ = net.prepare(X, y)
    slices = [slice(i, i + batch) for i in range(0, rows, batch)]

    def train(steps: int) -> None:
        for i in range(steps):
            trainer(A, Y, slices[i % len(slices)])

    gc.collect()
    tracemalloc.start()
    try:
        train(1_000)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        train(10_000)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 4096, f"traced memory grew by {after - before} bytes over 10,000 steps"
    assert np.all(np.isfinite(vnn.to_numpy(net.weights[0])))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_fast_step_frees_the_old_parameters_before_it_allocates(optimizer):
    # The fast step copies the parameters into one flat buffer and makes a gradient buffer (and
    # the optimizer's state) of the same size. The model's own arrays must be let go before
    # those are made: peak = flat parameters + gradient + state, never one copy more.
    opt = vnn.SGD(0.01) if optimizer == "sgd" else vnn.Adam(1e-3)
    vnn.train.Trainer(vnn.MLP([3, 2], seed=0), vnn.Adam(1e-3), 0.0)  # imports the step's modules
    gc.collect()
    tracemalloc.start()  # before the model: its arrays' release is seen
    try:
        net = vnn.MLP([500, 400, 10], activation="relu", output="softmax", seed=0)
        size = sum(p.nbytes for p in net.theta)
        tracemalloc.reset_peak()
        trainer = vnn.train.Trainer(net, opt, 0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert trainer.fast is not None
    copies = 2 + (2 if optimizer == "adam" else 0)  # θ, ∇θ, and Adam's m, v
    assert peak < (copies + 0.1) * size, f"{peak / size:.2f} parameter copies at the peak"
