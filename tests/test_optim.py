"""Each optimizer's update against its formula, worked by hand with exactly representable numbers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import host

import vnn


def _arrays(be, *rows):
    return [be.from_host(np.array(r, dtype=np.float64)) for r in rows]


def compiled_step(opt, params, grads):
    """``opt.step`` as the preallocated step executes it: the optimizer's formula compiled into
    calls that update NumPy buffers in place (the gradient used as scratch)."""
    from vnn.step.compile import program

    params = [np.array(host(p)) for p in params]
    if len(opt.state) != opt.n_state or not opt.state:
        opt.state = [[np.zeros_like(p) for p in params] for _ in range(opt.n_state)]
        opt.t = 0
    opt.t += 1
    f, scalars = opt.update_formula, opt.scalars(opt.t)
    for i, (p, g) in enumerate(zip(params, grads)):
        arrays = {"p": p, "g": np.array(host(g)),
                  **{n: opt.state[k][i] for k, n in enumerate(opt.state_names)}}
        run = program(np, p.dtype, f.specialize(f.key(scalars)), arrays, f.scalars,
                      temp=lambda p=p: np.empty_like(p), consumable=frozenset("g"))
        run(*(scalars[k] for k in sorted(f.scalars)))
    return params


@pytest.fixture(params=["portable", "compiled"])
def execute(request, backend):
    """An optimizer's update as the portable step runs it, or as the preallocated step does
    (NumPy buffers, the numpy backend only)."""
    if request.param == "portable":
        return lambda opt, params, grads: opt.step(backend.xp, params, grads)
    if backend.name != "numpy":
        pytest.skip("the compiled update runs on NumPy buffers")
    return compiled_step


def test_sgd_eqn15(backend, execute):
    # θ = (1, −2), g = (0.5, 0.25), η = 0.5: θ ← θ − ηg = (0.75, −2.125).
    opt = vnn.SGD(lr=0.5)
    (theta,) = execute(opt, _arrays(backend, [1.0, -2.0]), _arrays(backend, [0.5, 0.25]))
    np.testing.assert_array_equal(host(theta), [0.75, -2.125])


def test_momentum_eqn16_as_written(backend, execute):
    # β = 0.5, η = 0.5, θ = (1, −2).
    # step 1, g = (0.5, 0.25):  v = 0.5·0 + 0.5·g = (0.25, 0.125);  θ = θ − 0.5v = (0.875, −2.0625)
    # step 2, g = (−1, 0.5):    v = 0.5·(0.25, 0.125) + 0.5·(−1, 0.5) = (−0.375, 0.3125)
    #                           θ = (0.875 + 0.1875, −2.0625 − 0.15625) = (1.0625, −2.21875)
    opt = vnn.Momentum(lr=0.5, beta=0.5)
    params = _arrays(backend, [1.0, -2.0])
    params = execute(opt, params, _arrays(backend, [0.5, 0.25]))
    np.testing.assert_array_equal(host(opt.state[0][0]), [0.25, 0.125])
    np.testing.assert_array_equal(host(params[0]), [0.875, -2.0625])
    params = execute(opt, params, _arrays(backend, [-1.0, 0.5]))
    np.testing.assert_array_equal(host(opt.state[0][0]), [-0.375, 0.3125])
    np.testing.assert_array_equal(host(params[0]), [1.0625, -2.21875])


def test_adam_with_bias_correction(backend, execute):
    # β1 = 0.5, β2 = 0.75, ε = 0.25, η = 0.5, θ = (1, −2), g = (0.5, −0.25) twice.
    # step 1: m = 0.5g, v = 0.25g²; m̂ = m/(1−0.5) = g; v̂ = v/(1−0.75) = g²; √v̂ = |g|
    #         θ ← θ − η m̂/(√v̂ + ε) = (1 − 0.25/0.75, −2 + 0.125/0.5) = (1 − 1/3, −1.75)
    # step 2: m = (0.375, −0.1875), m̂ = m/0.75 = g; v = (0.109375, 0.02734375), v̂ = v/0.4375 = g²
    #         the same step again: (1 − 1/3 − 1/3, −1.5)
    opt = vnn.Adam(lr=0.5, beta1=0.5, beta2=0.75, eps=0.25)
    params = _arrays(backend, [1.0, -2.0])
    params = execute(opt, params, _arrays(backend, [0.5, -0.25]))
    np.testing.assert_array_equal(host(params[0]), [1.0 - 1.0 / 3.0, -1.75])
    params = execute(opt, params, _arrays(backend, [0.5, -0.25]))
    np.testing.assert_array_equal(host(opt.state[0][0]), [0.375, -0.1875])
    np.testing.assert_array_equal(host(opt.state[1][0]), [0.109375, 0.02734375])
    np.testing.assert_array_equal(host(params[0]), [(1.0 - 1.0 / 3.0) - 1.0 / 3.0, -1.5])
    assert opt.t == 2


def test_fit_applies_the_optimizer_to_weights_and_biases(backend):
    # One full-batch SGD step through fit equals θ − η·(backprop gradient), for W and b.
    # (The portable step, bit for bit; the fast step agrees to rounding, see test_fast_path.py.)
    from conftest import make

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 3)), rng.integers(0, 2, size=6)
    net = make(backend, [3, 4, 2], output="softmax", dtype="float64", seed=0)
    net.fast_path = False
    W0, b0 = [host(w) for w in net.weights], [host(b) for b in net.biases]
    _, grads = net.loss_and_gradients(X, y, l2=0.1)
    net.fit(X, y, optimizer=vnn.SGD(lr=0.25), epochs=1, batch_size=6, l2=0.1, shuffle=False)
    for ell, (dW, db) in enumerate(grads):
        np.testing.assert_array_equal(host(net.weights[ell]), W0[ell] - 0.25 * host(dW))
        np.testing.assert_array_equal(host(net.biases[ell]), b0[ell] - 0.25 * host(db))


@pytest.mark.parametrize("make_opt,message", [
    (lambda: vnn.SGD(lr=0), "lr=0"),
    (lambda: vnn.SGD(lr=-1e-3), "lr=-0.001"),
    (lambda: vnn.SGD(lr=float("nan")), "lr=nan"),
    (lambda: vnn.Momentum(lr=0.1, beta=1.0), "beta=1.0"),
    (lambda: vnn.Momentum(lr=0.1, beta=-0.1), "beta=-0.1"),
    (lambda: vnn.Adam(beta1=1.5), "beta1=1.5"),
    (lambda: vnn.Adam(beta2=1.0), "beta2=1.0"),
    (lambda: vnn.Adam(eps=0.0), "eps=0.0"),
])
def test_invalid_hyperparameters(make_opt, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        make_opt()


def test_repr():
    assert repr(vnn.Momentum(0.1, beta=0.8)) == "Momentum(lr=0.1, beta=0.8)"
