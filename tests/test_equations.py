"""Eqns 11, 12 and 13 each against an independent, hand-worked computation; numerical stability."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import host, make

from vnn.math import activations, losses
from vnn.step import portable as backprop


def _deltas(net, X, y):
    """δ(1..L) of the network on the batch (per sample, rows), through the library's backprop."""
    A, Y, _ = net.prepare(X, y)
    Zs, As = net.propagate(A)
    hidden = [activations.get(a) for a in net.activation]
    output, loss = losses.resolve(net.output, net.loss)
    return [host(d) for d in backprop.deltas(net.xp, net.theta[0::2], hidden, output, loss,
                                             Zs, As, Y)]


def test_eqn11_binary_cross_entropy_delta(backend):
    # One layer, W = 1, b = 0: the logit z equals the input x.
    # z = 0      -> p̂ = 1/2, y = 1 -> δ = p̂ − y = −1/2
    # z = ln 3   -> p̂ = 3/4, y = 0 -> δ = 3/4
    # z = −ln 3  -> p̂ = 1/4, y = 1 -> δ = −3/4
    net = make(backend, [1, 1], output="sigmoid", dtype="float64")
    net.weights = [np.array([[1.0]])]
    X = np.array([[0.0], [math.log(3.0)], [-math.log(3.0)]])
    (d,) = _deltas(net, X, np.array([1, 0, 1]))
    np.testing.assert_allclose(d[:, 0], [-0.5, 0.75, -0.75], rtol=0, atol=1e-15)


def test_eqn12_softmax_cross_entropy_delta(backend):
    # One layer with W = I: z = x = (0, ln 2, ln 5) -> exp(z) = (1, 2, 5), p = (1/8, 2/8, 5/8).
    # y = 2 (e_y = (0, 0, 1)) -> δ = p − e_y = (1/8, 1/4, −3/8).
    net = make(backend, [3, 3], output="softmax", dtype="float64")
    net.weights = [np.eye(3)]
    X = np.array([[0.0, math.log(2.0), math.log(5.0)]])
    (d,) = _deltas(net, X, np.array([2]))
    np.testing.assert_allclose(d[0], [1 / 8, 1 / 4, -3 / 8], rtol=0, atol=1e-15)


def test_eqn13_hidden_recursion(backend):
    # Two layers, ReLU hidden, identity output, squared error. x = (1, 2).
    # W1 = [[1, -1], [2, 0], [0, 1]], b1 = (0.5, -1, -3):
    #   z1 = (1−2+0.5, 2−1, 2−3) = (−0.5, 1, −1); a1 = relu(z1) = (0, 1, 0); φ′(z1) = (0, 1, 0).
    # W2 = [[3, 4, 5]], b2 = 1: z2 = a2 = 4 + 1 = 5; y = 2 -> δ2 = a2 − y = 3 (Eqn 10).
    # Eqn 13: δ1 = W2ᵀ δ2 ⊙ φ′(z1) = (9, 12, 15) ⊙ (0, 1, 0) = (0, 12, 0).
    net = make(backend, [2, 3, 1], activation="relu", output="identity", dtype="float64")
    net.weights = [np.array([[1.0, -1.0], [2.0, 0.0], [0.0, 1.0]]), np.array([[3.0, 4.0, 5.0]])]
    net.biases = [np.array([0.5, -1.0, -3.0]), np.array([1.0])]
    d1, d2 = _deltas(net, np.array([[1.0, 2.0]]), np.array([2.0]))
    np.testing.assert_array_equal(d2, [[3.0]])
    np.testing.assert_array_equal(d1, [[0.0, 12.0, 0.0]])


def test_eqn13_tanh_against_autograd(backend):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    # Two tanh hidden layers: δ(1) and δ(2) by Eqn 13 against autograd's ∂J/∂z(ℓ) (one sample).
    rng = np.random.default_rng(0)
    net = make(backend, [3, 4, 4, 2], activation="tanh", output="softmax", dtype="float64", seed=1)
    x, y = rng.standard_normal((1, 3)), np.array([1])
    ds = _deltas(net, x, y)
    a = torch.tensor(x, requires_grad=True)
    zs = []
    for ell, (W, b) in enumerate(zip(net.weights, net.biases)):
        z = a @ torch.tensor(host(W)).T + torch.tensor(host(b))
        z.retain_grad()
        zs.append(z)
        a = torch.tanh(z) if ell < 2 else z
    torch.nn.functional.cross_entropy(a, torch.tensor(y)).backward()
    for d, z in zip(ds, zs):
        np.testing.assert_allclose(d, z.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_cross_entropy_huge_logits(backend, dtype):
    # Logits ±1e4: z = (1e4, −1e4). For y = 0 the loss is log(1 + e^{−2e4}) = 0 to any precision;
    # for y = 1 it is 2e4. δ = p − e_y = (1, 0) − e_y.
    net = make(backend, [1, 2], output="softmax", dtype=dtype)
    net.weights = [np.array([[1e4], [-1e4]])]
    for label, expected, delta in ((0, 0.0, [0.0, 0.0]), (1, 2e4, [1.0, -1.0])):
        J, grads = net.loss_and_gradients(np.array([[1.0]]), np.array([label]))
        assert math.isfinite(J) and J == pytest.approx(expected, abs=1e-3)
        (dW, db), = grads
        np.testing.assert_allclose(host(db), delta, atol=1e-6)
        assert np.isfinite(host(dW)).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_logit_100(backend, dtype):
    # z = ±100: −log σ(−100) = 100 + log1p(e^{−100}) = 100 (to float precision); −log σ(100) ≈ 3.7e−44.
    net = make(backend, [1, 1], output="sigmoid", dtype=dtype)
    net.weights = [np.array([[100.0]])]
    cases = [(1.0, 0, 100.0, 1.0), (-1.0, 1, 100.0, -1.0), (1.0, 1, 0.0, 0.0),
             (-1.0, 0, 0.0, 0.0)]
    for x, label, expected, delta in cases:
        J, ((dW, db),) = net.loss_and_gradients(np.array([[x]]), np.array([label]))
        assert math.isfinite(J) and J == pytest.approx(expected, abs=1e-4)
        np.testing.assert_allclose(host(db), [delta], atol=1e-6)


def test_sigmoid_and_softmax_outputs_saturate_cleanly(backend):
    net = make(backend, [1, 2], output="softmax")
    net.weights = [np.array([[1e4], [-1e4]])]
    p = host(net.predict_proba(np.array([[1.0], [-1.0]])))
    np.testing.assert_array_equal(p, [[1.0, 0.0], [0.0, 1.0]])
    net = make(backend, [1, 1], output="sigmoid")
    net.weights = [np.array([[1e3]])]
    np.testing.assert_array_equal(host(net.predict_proba(np.array([[1.0], [-1.0]])))[:, 0],
                                  [1.0, 0.0])
