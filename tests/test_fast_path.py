"""The backends' preallocated fast step (NumPy, CuPy) against the portable Array API step."""

from __future__ import annotations

import numpy as np
import pytest
from cases import OPTIMIZERS
from conftest import BACKENDS, host, make

import vnn

FAST = [b for b in BACKENDS if b.name in ("numpy", "cupy")]
try:  # NumPy's fast step runs compiled loops when numba is importable, else NumPy calls: both
    import numba  # noqa: F401

    EXECUTORS = {"numpy": ["loops", "calls"]}
except ImportError:
    EXECUTORS = {"numpy": ["calls"]}
FAST_CASES = [(b, e) for b in FAST for e in EXECUTORS.get(b.name, ["kernels"])]


def _data(output, n=37, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    y = {"softmax": rng.integers(0, 3, size=n), "sigmoid": rng.integers(0, 2, size=n),
         "identity": rng.standard_normal((n, 3))}[output]
    return X, y, (1 if output == "sigmoid" else 3)


@pytest.fixture(params=FAST_CASES, ids=[f"{b.name}-{b.device_name}-{e}" for b, e in FAST_CASES])
def fast_backend(request, monkeypatch):
    backend, executor = request.param
    monkeypatch.setenv("VNN_NUMBA", "1" if executor == "loops" else "0")
    return backend


def test_numpy_fast_step_runs_compiled_loops_when_numba_is_there(monkeypatch):
    pytest.importorskip("numba")
    from vnn.step.compile import Program
    from vnn.step.executors import Loops
    from vnn.train.trainer import Trainer

    for flag, loops in (("1", True), ("0", False)):
        monkeypatch.setenv("VNN_NUMBA", flag)
        net = vnn.MLP([5, 6, 3], output="softmax", dtype="float64", seed=0)
        trainer = Trainer(net, vnn.Momentum(0.1), 0.0)
        assert isinstance(trainer.fast.execute, Loops) is loops
        ws = trainer.fast.workspace(8)
        # the compiled plan fuses φ′ into δ: no φ′ buffer (the NumPy calls keep one)
        assert all(t is None for t in ws.T) is loops
        opt = trainer.fast.optimizer
        update = trainer.fast._update_program(opt.scalars(1), opt.update_formula)
        # the momentum update: one loop of its two statements, else a sequence of ufunc calls
        assert isinstance(update, Program) is not loops
        assert ("xnp.multiply" in update.source) is not loops


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("l2", [0.0, 0.01])  # without L2, plain SGD folds η into δ(L)
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity"])
def test_fast_step_equals_portable_step(fast_backend, activation, output, opt, shuffle, l2):
    X, y, m_out = _data(output)
    nets, hists = [], []
    for fast in (True, False):
        net = make(fast_backend, [5, 6, 4, m_out], activation=[activation, "tanh"],
                   output=output, dtype="float64", seed=2)
        net.fast_path = fast
        # 37 samples in batches of 8: four full batches and a last one of 5 (two workspaces)
        hists.append(net.fit(X, y, optimizer=OPTIMIZERS[opt](), epochs=3, batch_size=8,
                             l2=l2, shuffle=shuffle, validation_data=(X, y)))
        nets.append(net)
    fast, ref = nets
    # float64, the same equations in a different order (δ/|B| before the products; sigmoid via
    # tanh): differences of a few ulps, amplified over 15 steps, stay far below 1e-10.
    for a, b in zip(fast.weights + fast.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hists[0].loss, hists[1].loss, rtol=1e-10)
    np.testing.assert_allclose(hists[0].val_loss, hists[1].val_loss, rtol=1e-10)


@pytest.mark.parametrize("sizes, activations", [
    # runs of equal layer shapes, the first one starting at the input layer, and runs of equal
    # activations that do not line up with them
    ([5, 5, 5, 4, 4, 3], ["relu", "relu", "tanh", "tanh"]),
    ([5, 4, 4, 4, 4, 4, 3], ["sigmoid", "identity", "identity", "relu", "tanh"]),
    ([5] + [6] * 6 + [3], ["tanh"] * 6),  # the deep benchmark's shape, scaled down
])
def test_fast_step_with_stacked_layers_equals_portable_step(fast_backend, sizes, activations):
    """Layers of equal shape share one batched Eqn (14) and φ′ of a run of equal activations is one
    call: against the portable step, with L2, over two batch sizes."""
    X, y, _ = _data("softmax")
    nets, hists = [], []
    for fast in (True, False):
        net = make(fast_backend, sizes, activation=activations, output="softmax", dtype="float64", seed=3)
        net.fast_path = fast
        hists.append(net.fit(X, y, optimizer=vnn.Adam(1e-2), epochs=3, batch_size=8, l2=0.01))
        nets.append(net)
    fast, ref = nets
    for a, b in zip(fast.weights + fast.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hists[0].loss, hists[1].loss, rtol=1e-10)


def test_fast_step_keeps_optimizer_state_across_fits(fast_backend):
    X, y, _ = _data("softmax")
    runs = []
    for fast in (True, False):
        net = make(fast_backend, [5, 6, 3], output="softmax", dtype="float64", seed=4)
        net.fast_path = fast
        opt = vnn.Adam(1e-2)
        net.fit(X, y, optimizer=opt, epochs=1, batch_size=10)
        net.fit(X, y, optimizer=opt, epochs=1, batch_size=10)  # continues t and the moments
        assert opt.t == 8
        runs.append((net, opt))
    (a, oa), (b, ob) = runs
    for k in range(2):
        for s1, s2 in zip(oa.state[k], ob.state[k]):
            assert s1.shape == s2.shape
            np.testing.assert_allclose(host(s1), host(s2), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(host(a.weights[0]), host(b.weights[0]), rtol=1e-10)


def test_non_canonical_pairing_uses_the_portable_step(fast_backend):
    X, y, _ = _data("softmax")
    net = make(fast_backend, [5, 4, 3], output="softmax", loss="squared_error", seed=0)
    assert net.backend.fast_step(net.theta[0::2], net.theta[1::2], ["relu"], "softmax", "squared_error", 0.0,
                                 vnn.SGD(0.1)) is None
    h = net.fit(X, y, epochs=2, batch_size=8)
    assert h.loss[-1] < h.loss[0]


def test_compiled_update_equals_the_portable_one(backend):
    # The update compiled into calls on buffers (what the fast step runs) against the same formula
    # evaluated by the portable step, on random values (float64: agreement to a few ulps).
    from test_optim import compiled_step

    if backend.name != "numpy":
        pytest.skip("the compiled update runs on NumPy buffers")
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]
    for make_opt in OPTIMIZERS.values():
        outs = []
        for run in (compiled_step, lambda o, p, g: o.step(backend.xp, p, g)):
            opt = make_opt()
            params = [backend.from_host(theta, copy=True)]
            for g in grads:
                params = run(opt, params, [backend.from_host(g, copy=True)])
            outs.append(host(params[0]))
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-14, atol=1e-15)


def test_l2_per_sample_fast_step_equals_portable(fast_backend):
    """λ_B = λ / |B| (scikit-learn's alpha): the fast step's per-workspace λ against the portable
    step; 37 samples in batches of 8 exercise two batch sizes."""
    X, y, _ = _data("softmax")
    nets = []
    for fast in (True, False):
        net = make(fast_backend, [5, 6, 3], output="softmax", dtype="float64", seed=4)
        net.fast_path = fast
        trainer = vnn.train.Trainer(net, vnn.SGD(0.1), 0.5, l2_per_sample=True)
        with net.backend.activate():
            A, Y, _ = net.prepare(X, y)
            for start in range(0, 37, 8):
                trainer(A, Y, slice(start, min(start + 8, 37)))
        nets.append(net)
    for a, b in zip(nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-10, atol=1e-12)
    # and it is not the plain λ: the same run with l2_per_sample=False ends elsewhere
    net = make(fast_backend, [5, 6, 3], output="softmax", dtype="float64", seed=4)
    trainer = vnn.train.Trainer(net, vnn.SGD(0.1), 0.5)
    with net.backend.activate():
        A, Y, _ = net.prepare(X, y)
        for start in range(0, 37, 8):
            trainer(A, Y, slice(start, min(start + 8, 37)))
    assert np.abs(host(net.weights[0]) - host(nets[0].weights[0])).max() > 1e-3


EXTRA_OPTIMIZERS = {
    "nesterov": lambda: vnn.Momentum(0.05, 0.8, form="nesterov"),
    "heavy_ball": lambda: vnn.Momentum(0.05, 0.8, form="heavy_ball"),
    "adam_eps_before": lambda: vnn.Adam(1e-2, eps_after_correction=False),
}


@pytest.mark.parametrize("l2", [0.0, 0.01])
@pytest.mark.parametrize("opt", sorted(EXTRA_OPTIMIZERS))
@pytest.mark.parametrize("output", ["exp", "softmax"])
def test_fast_step_other_forms_equal_portable_step(fast_backend, output, opt, l2):
    # the other forms of the update formulas, and the Poisson output (exp, its canonical loss)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((29, 5))
    y = rng.poisson(2.0, size=(29, 2)).astype(float) if output == "exp" else rng.integers(0, 3, 29)
    nets = []
    for fast in (True, False):
        net = make(fast_backend, [5, 7, 2 if output == "exp" else 3], activation="sigmoid",
                   output=output, dtype="float64", seed=1)
        net.fast_path = fast
        net.fit(X, y, optimizer=EXTRA_OPTIMIZERS[opt](), epochs=3, batch_size=8, l2=l2)
        nets.append(net)
    for a, b in zip(nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_compiled_loops_in_float32_equal_numpy_calls(monkeypatch, activation, opt):
    # float32: the compiled loops compute in float32 as the NumPy calls do (no float64 detour
    # that would make them differ by more than float32 rounding)
    pytest.importorskip("numba")
    X, y, m_out = _data("softmax", n=64)
    out = []
    for flag in ("1", "0"):
        monkeypatch.setenv("VNN_NUMBA", flag)
        net = vnn.MLP([5, 16, 16, m_out], activation=activation, output="softmax",
                      dtype="float32", seed=3)
        h = net.fit(X, y, optimizer=OPTIMIZERS[opt](), epochs=4, batch_size=16, l2=0.001)
        assert net.weights[0].dtype == np.float32
        out.append((np.concatenate([np.ravel(p) for p in net.weights + net.biases]), h.loss))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-4)


@pytest.mark.parametrize("l2", [0.0, 0.01])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_an_update_in_chunks_equals_the_portable_step(monkeypatch, opt, l2):
    # NumPy's calls run an update of several calls over runs of CHUNK elements of the flat
    # buffer (cache-sized); here runs of 7 elements, a last one shorter, over 73 parameters
    from vnn.backends import numpy as numpy_backend

    monkeypatch.setenv("VNN_NUMBA", "0")
    monkeypatch.setattr(numpy_backend, "CHUNK", 7)
    X, y, m_out = _data("softmax")
    nets = []
    for fast in (True, False):
        net = vnn.MLP([5, 6, 4, m_out], output="softmax", dtype="float64", seed=2)
        net.fast_path = fast
        net.fit(X, y, optimizer=OPTIMIZERS[opt](), epochs=3, batch_size=8, l2=l2)
        nets.append(net)
    fast, ref = nets
    for a, b in zip(fast.weights + fast.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-10, atol=1e-12)


def test_an_update_in_chunks_has_a_chunk_of_scratch(monkeypatch):
    from vnn.backends import numpy as numpy_backend

    from vnn.train.trainer import Trainer

    monkeypatch.setenv("VNN_NUMBA", "0")
    monkeypatch.setattr(numpy_backend, "CHUNK", 16)
    net = vnn.MLP([5, 6, 3], output="softmax", dtype="float64", seed=0)  # 57 parameters
    step = Trainer(net, vnn.Adam(1e-3), 0.0).fast
    opt = step.optimizer
    run = step._update_program(opt.scalars(1), opt.update_formula)
    parts = run.__closure__[[c for c in run.__code__.co_freevars].index("parts")].cell_contents
    assert len(parts) == 4  # 16 + 16 + 16 + 9
    roots = {id(v if v.base is None else v.base): (v if v.base is None else v.base)
             for p in parts for v in p.run.__globals__.values() if isinstance(v, np.ndarray)}
    for flat in [step.P, step.G] + [s[0] for s in step.state]:
        roots.pop(id(flat))
    # besides θ, ∇θ, m and v: one scratch buffer of one chunk, for all of them
    assert [r.shape for r in roots.values()] == [(16,)]


def test_an_update_in_chunks_gives_each_temporary_its_own_buffer(monkeypatch):
    # a formula needing two temporaries at once: each must be a buffer of its own in every run
    from vnn.backends import numpy as numpy_backend

    from vnn.math.formula import Formula
    from vnn.train.trainer import Trainer

    monkeypatch.setenv("VNN_NUMBA", "0")
    monkeypatch.setattr(numpy_backend, "CHUNK", 16)
    net = vnn.MLP([5, 6, 3], output="softmax", dtype="float64", seed=0)  # 57 parameters
    step = Trainer(net, vnn.SGD(0.1), 0.0).fast
    f = Formula("two_temps", "p = p * g + (g * g + p) * (p * g + g)", "p, g")
    rng = np.random.default_rng(0)
    step.P[...], step.G[...] = rng.standard_normal(57), rng.standard_normal(57)
    p, g = step.P.copy(), step.G.copy()
    step._update_program({}, f)()
    np.testing.assert_allclose(step.P, p * g + (g * g + p) * (p * g + g), rtol=1e-14)
