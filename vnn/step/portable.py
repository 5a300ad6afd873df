"""The portable step: forward propagation, empirical risk and backpropagation for a batch
(Eqns 1-3, 7-14), and the update of step 3(e).

Pure functions on an Array API namespace ``xp``, allocating new arrays: this runs on every library
(PyTorch, array-api-strict) and for every output/loss pairing, and is the reference the
preallocated step (``vnn.step.preallocated``) is tested against. A batch is rows: ``A`` has shape (n, m), so
Eqn (1) for a batch reads ``Z = A Wᵀ + b`` with W^(ℓ) of shape (m_ℓ, m_{ℓ−1}) as in the
derivation, and δ^(ℓ) is stored as the rows of an (n, m_ℓ) array.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vnn.math.activations import Activation
from vnn.math.formulas import FORMULAS
from vnn.math.losses import Loss, Output, output_delta

if TYPE_CHECKING:
    from vnn.math.optimizers import Optimizer
    from vnn.network import MLP

Array = Any


def forward(xp: Any, Ws: list[Array], bs: list[Array], hidden: list[Activation],
            output: Output, X: Array) -> tuple[list[Array], list[Array]]:
    """Eqns (1)-(2) for every layer: returns ``Zs = [z(1)..z(L)]`` and ``As = [a(0)=X, .., a(L)]``."""
    Zs: list[Array] = []
    As: list[Array] = [X]
    L = len(Ws)
    for ell in range(L):
        Z = As[-1] @ Ws[ell].T + bs[ell]  # Eqn (1): z(ℓ) = W(ℓ) a(ℓ−1) + b(ℓ)
        phi = hidden[ell].phi if ell < L - 1 else output.phi
        Zs.append(Z)
        As.append(phi(xp, Z))  # Eqn (2): a(ℓ) = φ(ℓ)(z(ℓ))
    return Zs, As


def l2_penalty(xp: Any, Ws: list[Array], lam: float) -> Array | float:
    """The regulariser of Eqn (3): λ/2 Σ_ℓ ‖W(ℓ)‖_F² (weights only, never biases)."""
    if lam == 0.0:
        return 0.0
    return sum(xp.sum(FORMULAS["l2"](xp, W, lam)) for W in Ws)


def risk(xp: Any, loss: Loss, Zs: list[Array], As: list[Array], Y: Array, Ws: list[Array],
         lam: float, v: Array | None = None) -> Array:
    """Eqn (3) on a batch: (1/|B|) Σ_i ℓ_i + λ/2 Σ_ℓ ‖W(ℓ)‖_F², as a 0-d array on the device.

    With per-sample weights ``v`` (n,) the average is weighted: Σ_i v_i ℓ_i / Σ_i v_i.
    """
    total = loss.total(xp, Zs[-1], As[-1], Y, v)
    return total / _count(xp, Y, v) + l2_penalty(xp, Ws, lam)


def _count(xp: Any, Y: Array, v: Array | None) -> Any:
    """|B|, or Σ_i v_i with sample weights."""
    return Y.shape[0] if v is None else xp.sum(v)


def deltas(xp: Any, Ws: list[Array], hidden: list[Activation], output: Output, loss: Loss,
           Zs: list[Array], As: list[Array], Y: Array, v: Array | None = None) -> list[Array]:
    """δ(ℓ) = ∂ℓ_i/∂z(ℓ) per sample (Eqn 7), rows of (n, m_ℓ) arrays, for ℓ = 1..L.

    δ(L) from Eqn (10), (11) or (12); then Eqn (13) down to ℓ = 1:
    δ(ℓ) = (W(ℓ+1))ᵀ δ(ℓ+1) ⊙ φ(ℓ)′(z(ℓ)), which for rows is ``(δ(ℓ+1) @ W(ℓ+1)) * φ′``.
    With sample weights ``v``, δ(L) of sample i is multiplied by v_i (so every δ(ℓ) is).
    """
    L = len(Ws)
    dL = output_delta(xp, output, loss, Zs[-1], As[-1], Y)
    out: list[Array] = [dL if v is None else dL * xp.reshape(v, (-1, 1))]
    for ell in range(L - 2, -1, -1):  # 0-based layer index ell is the derivation's ℓ = ell + 1
        d = (out[0] @ Ws[ell + 1]) * hidden[ell].dphi(xp, Zs[ell], As[ell + 1])  # Eqn (13)
        out.insert(0, d)
    return out


def gradients(xp: Any, Ws: list[Array], ds: list[Array], As: list[Array],
              lam: float, n: Any = None) -> list[tuple[Array, Array]]:
    """Eqn (14) averaged over the batch: ∂J_B/∂W(ℓ) = δᵀ a(ℓ−1) / |B| + λ W(ℓ), ∂J_B/∂b(ℓ) = mean δ.

    (Eqns 8 and 9 per sample; §1.10 proves the outer-product form.) ``n`` replaces |B| (Σ_i v_i
    for weighted samples, whose weights are already in ``ds``).
    """
    if n is None:
        n = As[0].shape[0]
    grads = []
    for ell, (W, d) in enumerate(zip(Ws, ds)):
        dW = (d.T @ As[ell]) / n
        if lam != 0.0:
            dW = FORMULAS["l2_grad"](xp, dW, W, lam)  # + λW
        grads.append((dW, xp.sum(d, axis=0) / n))
    return grads


def loss_and_gradients(xp: Any, Ws: list[Array], bs: list[Array], hidden: list[Activation],
                       output: Output, loss: Loss, X: Array, Y: Array,
                       lam: float, v: Array | None = None
                       ) -> tuple[Array, list[tuple[Array, Array]]]:
    """Algorithm 1.9, steps 3(a)-(d): forward, loss (Eqn 3), backward (Eqns 10-13), Eqn (14).

    ``v``: optional per-sample weights (n,); Eqn (3) then averages with them (see :func:`risk`).
    """
    Zs, As = forward(xp, Ws, bs, hidden, output, X)
    J = risk(xp, loss, Zs, As, Y, Ws, lam, v)
    ds = deltas(xp, Ws, hidden, output, loss, Zs, As, Y, v)
    return J, gradients(xp, Ws, ds, As, lam, _count(xp, Y, v))


def step(net: MLP, optimizer: Optimizer, A: Array, Y: Array, lam: float,
         v: Array | None = None, reduce: Callable[[Array, int], None] | None = None) -> Array:
    """One mini-batch of Algorithm 1.9, steps 3(a)-(e), portable; returns J_B (Eqn 3).

    ``reduce(buffer, n)`` (data-parallel training) receives all gradients packed into one
    contiguous buffer and turns them into the global batch's gradient in place."""
    xp = net.xp
    params = net.theta
    n = A.shape[0]
    if n:
        J, grads = net.gradients(A, Y, lam, v)
        flat = [g for pair in grads for g in pair]
    else:  # an empty shard of a distributed batch
        J, flat = 0.0, [xp.zeros_like(p) for p in params]
    if reduce is not None:
        buf = xp.concat([xp.reshape(g, (-1,)) for g in flat])
        reduce(buf, n)
        sizes = [math.prod(g.shape) for g in flat]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        flat = [xp.reshape(buf[o:o + k], g.shape) for o, k, g in zip(offsets, sizes, flat)]
    net.theta = optimizer.step(net.xp, params, flat)
    return J
