"""Finite-difference gradient checking (§1.10): backprop against central differences."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from vnn.network import on_device

if TYPE_CHECKING:
    from vnn.network import MLP


@on_device
def numerical_gradients(net: MLP, X: Any, y: Any, l2: float = 0.0,
                        eps: float | None = None) -> list[tuple[Any, Any]]:
    """Central differences (J(θ + ε) − J(θ − ε)) / 2ε of Eqn (3), for every parameter entry.

    Parameters are perturbed on the host (float64 NumPy copies) and moved back to the model, so
    this works on every backend. Returns host arrays, ``[(dW, db), ...]`` like the backprop ones.
    Slow by design: two evaluations of the loss per parameter; use it on small networks.
    """
    be = net.backend
    if eps is None:
        eps = 1e-6 if net.dtype == "float64" else 1e-2
    A, Y, _ = net.prepare(X, y)
    lam = float(l2)
    saved = net.theta
    host = [be.to_numpy(p).astype("float64") for p in saved]
    out = []
    try:
        for k, theta in enumerate(host):
            grad = theta * 0.0
            flat, gflat = theta.reshape(-1), grad.reshape(-1)
            for i in range(flat.size):
                orig = flat[i]
                values = []
                for sign in (1.0, -1.0):
                    flat[i] = orig + sign * eps
                    _set(net, k, theta)
                    J = net.risk(A, Y, lam)
                    values.append(float(be.to_numpy(J)))
                flat[i] = orig
                gflat[i] = (values[0] - values[1]) / (2.0 * eps)
            _set(net, k, theta)
            out.append(grad)
    finally:
        net.theta = saved
    return [(out[2 * i], out[2 * i + 1]) for i in range(len(out) // 2)]


def _copy(net: MLP, dtype: str) -> MLP:
    """``net`` in another dtype: its parameters through the host, the same backend and device."""
    from vnn.network import MLP

    be = net.backend
    return MLP.from_parameters([be.to_numpy(W) for W in net.weights],
                               [be.to_numpy(b) for b in net.biases], activation=net.activation,
                               output=net.output, loss=net.loss, init=net.init,
                               device=be.device_name, backend=be.name, dtype=dtype, seed=0)


def _set(net: MLP, k: int, value: Any) -> None:
    theta = net.theta
    theta[k] = net.backend.from_host(value, net.dtype)
    net.theta = theta


def check_gradients(net: MLP, X: Any, y: Any, l2: float = 0.0, eps: float | None = None,
                    dtype: str | None = "float64") -> float:
    """Max relative error between backprop (Eqn 14) and central differences of Eqn (3).

    For each parameter array g (backprop) and ĝ (finite differences) the relative error is
    ‖g − ĝ‖₂ / (‖g‖₂ + ‖ĝ‖₂) (0 when both vanish); the maximum over all arrays is returned.

    The check runs on a ``dtype`` copy of the network (same parameters, backend and device; the
    network itself is not touched): in float64, the default, a correct gradient gives about 1e-9
    or less. ``dtype=None`` checks in the network's own dtype, where float32's rounding alone
    gives errors of 1e-3 to 1e-1 (central differences need ε large enough to rise above it).
    """
    if dtype is not None and dtype != net.dtype:
        net = _copy(net, dtype)
    be = net.backend
    _, grads = net.loss_and_gradients(X, y, l2=l2)
    numeric = numerical_gradients(net, X, y, l2=l2, eps=eps)
    worst = 0.0
    for (dW, db), (nW, nb) in zip(grads, numeric):
        for g, n in ((be.to_numpy(dW), nW), (be.to_numpy(db), nb)):
            num = math.sqrt(float(((g - n) ** 2).sum()))
            den = math.sqrt(float((g**2).sum())) + math.sqrt(float((n**2).sum()))
            worst = max(worst, num / den if den > 0 else 0.0)
    return worst
