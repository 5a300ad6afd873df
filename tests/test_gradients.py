"""Backprop (Eqns 7-14) against central finite differences and PyTorch autograd."""

from __future__ import annotations

import numpy as np
import pytest

# (output, loss) pairings: the three canonical ones (Eqns 10-12) and two that use Eqn 10's
# general form δ(L) = ∂J/∂a ⊙ φ′(z) (for softmax, the Jacobian product of Eqn 12's proof).
from cases import HIDDEN as ACTIVATIONS
from cases import PAIRINGS
from conftest import host, make
from scipy import special as scipy_special

import vnn


def problem(output: str, n: int = 7, m_in: int = 3, m_out: int = 3, seed: int = 1):
    """A small random batch with targets suited to ``output``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m_in))
    if output == "softmax":
        y = rng.integers(0, m_out, size=n)
    elif output == "sigmoid":
        m_out = 1
        y = rng.integers(0, 2, size=n)
    elif output == "exp":  # counts, zeros among them
        y = rng.poisson(1.5, size=(n, m_out)).astype(float)
    else:
        y = rng.standard_normal((n, m_out))
    return X, y, m_out


@pytest.mark.parametrize("lam", [0.0, 0.1])
@pytest.mark.parametrize("output,loss", PAIRINGS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backprop_matches_finite_differences(backend, activation, output, loss, lam):
    X, y, m_out = problem(output)
    net = make(backend, [3, 4, 5, m_out], activation=activation, output=output, loss=loss,
               dtype="float64", seed=3)
    # float64 central differences with ε = 1e-6: truncation ~ε² and rounding ~1e-16/ε, so a
    # correct gradient shows ~1e-9; a wrong term shows ~1e-2 or more.
    assert vnn.check_gradients(net, X, y, l2=lam) < 1e-6


def test_per_layer_activations_gradients(backend):
    X, y, m_out = problem("softmax")
    net = make(backend, [3, 4, 5, m_out], activation=["tanh", "relu"], output="softmax",
               dtype="float64", seed=5)
    assert net.activation == ["tanh", "relu"]
    assert vnn.check_gradients(net, X, y, l2=0.05) < 1e-6



def _torch_reference(net, X, y, output, loss, lam):
    """Eqn (3) rebuilt in PyTorch float64 from the same weights; autograd gives the gradients."""
    import torch

    Ws = [torch.tensor(host(W), requires_grad=True) for W in net.weights]
    bs = [torch.tensor(host(b), requires_grad=True) for b in net.biases]
    phis = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "identity": lambda t: t}
    a = torch.tensor(X)
    for ell, (W, b) in enumerate(zip(Ws, bs)):
        z = a @ W.T + b
        a = phis[net.activation[ell]](z) if ell < len(Ws) - 1 else z
    n = X.shape[0]
    if output == "softmax" and loss is None:
        data = torch.nn.functional.cross_entropy(z, torch.tensor(y), reduction="sum")
    elif output == "sigmoid" and loss is None:
        data = torch.nn.functional.binary_cross_entropy_with_logits(
            z[:, 0], torch.tensor(y, dtype=torch.float64), reduction="sum")
    elif output == "exp" and loss is None:  # torch's e^z − y z, plus half the deviance's y log y − y
        t = torch.tensor(y)
        data = (torch.nn.functional.poisson_nll_loss(z, t, log_input=True, full=False,
                                                     reduction="sum")
                + float(np.sum(scipy_special.xlogy(y, y) - y)))
    else:
        out = {"identity": z, "sigmoid": torch.sigmoid(z), "exp": torch.exp(z),
               "softmax": torch.softmax(z, dim=1)}[output]
        t = torch.tensor(y, dtype=torch.float64)
        if output == "softmax":
            t = torch.nn.functional.one_hot(torch.tensor(y), out.shape[1]).double()
        data = 0.5 * ((out - t.reshape(out.shape)) ** 2).sum()
    J = data / n + 0.5 * lam * sum((W * W).sum() for W in Ws)
    J.backward()
    return J.item(), [(W.grad.numpy(), b.grad.numpy()) for W, b in zip(Ws, bs)]


@pytest.mark.parametrize("lam", [0.0, 0.1])
@pytest.mark.parametrize("output,loss", PAIRINGS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backprop_matches_torch_autograd(backend, activation, output, loss, lam):
    pytest.importorskip("torch", reason="PyTorch is not installed")
    X, y, m_out = problem(output)
    net = make(backend, [3, 4, 5, m_out], activation=activation, output=output, loss=loss,
               dtype="float64", seed=3)
    J, grads = net.loss_and_gradients(X, y, l2=lam)
    J_ref, ref = _torch_reference(net, X, y, output, loss, lam)
    # Both are float64 evaluations of the same formulas in a different order: ~1e-16 relative.
    assert abs(J - J_ref) <= 1e-10 * max(1.0, abs(J_ref))
    for (dW, db), (rW, rb) in zip(grads, ref):
        np.testing.assert_allclose(host(dW), rW, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(host(db), rb, rtol=1e-10, atol=1e-12)


def test_sample_weights_match_torch_autograd(backend):
    """Weighted Eqn (3), Σ v_i ℓ_i / Σ v_i + λ/2 Σ ‖W‖², against autograd on the same formula."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    X, y, m_out = problem("softmax", n=9)
    v = np.random.default_rng(5).uniform(0.0, 3.0, size=9)
    net = make(backend, [3, 4, 5, m_out], activation="tanh", output="softmax", dtype="float64",
               seed=3)
    J, grads = net.loss_and_gradients(X, y, l2=0.1, sample_weight=v)
    Ws = [torch.tensor(host(W), requires_grad=True) for W in net.weights]
    bs = [torch.tensor(host(b), requires_grad=True) for b in net.biases]
    a = torch.tensor(X)
    for W, b in zip(Ws, bs):
        z = a @ W.T + b
        a = torch.tanh(z)
    per = torch.nn.functional.cross_entropy(z, torch.tensor(y), reduction="none")
    tv = torch.tensor(v)
    J_ref = (per * tv).sum() / tv.sum() + 0.05 * sum((W * W).sum() for W in Ws)
    J_ref.backward()
    assert abs(J - J_ref.item()) <= 1e-10 * abs(J_ref.item())
    for (dW, db), W, b in zip(grads, Ws, bs):
        np.testing.assert_allclose(host(dW), W.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(host(db), b.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_unit_sample_weights_change_nothing(backend):
    X, y, m_out = problem("identity", n=6)
    net = make(backend, [3, 4, m_out], activation="relu", output="identity", dtype="float64", seed=1)
    J1, g1 = net.loss_and_gradients(X, y, l2=0.2)
    J2, g2 = net.loss_and_gradients(X, y, l2=0.2, sample_weight=np.full(6, 2.5))
    assert abs(J1 - J2) <= 1e-12 * abs(J1)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(host(a[0]), host(b[0]), rtol=1e-12)


@pytest.mark.parametrize("bad,msg", [(np.ones(5), r"expected \(6,\)"),
                                     (-np.ones(6), "must be >= 0"),
                                     (np.zeros(6), "positive sum"),
                                     (np.array([1, 1, 1, np.nan, 1, 1.0]), "NaN")])
def test_bad_sample_weights_are_named(bad, msg):
    X, y, _ = problem("identity", n=6)
    net = vnn.MLP([3, 4, 3], output="identity", dtype="float64")
    with pytest.raises(ValueError, match="sample_weight.*" + msg):
        net.loss_and_gradients(X, y, sample_weight=bad)


def test_check_gradients_of_a_float32_network_checks_a_float64_copy(backend):
    """The README's call on its float32 network: ~1e-9 (the float64 copy), the network itself
    unchanged; dtype=None checks in float32, where rounding alone shows."""
    X, y, m_out = problem("softmax")
    net = make(backend, [3, 4, 5, m_out], activation="tanh", output="softmax", dtype="float32",
               seed=3)
    before = [host(W).copy() for W in net.weights]
    assert vnn.check_gradients(net, X, y) < 1e-6
    assert net.dtype == "float32"
    for W, b in zip(net.weights, before):
        np.testing.assert_array_equal(host(W), b)
    assert vnn.check_gradients(net, X, y, dtype=None) > 1e-6
