"""Per-sample losses (Eqns 4-6), computed from logits, each beside its output sensitivity δ(L).

A loss is paired with an output nonlinearity φ^(L). For the three canonical pairings the
derivation gives δ(L) = a(L) − y directly (Eqns 10, 11, 12); any other valid pairing (say a sigmoid
or softmax output with squared error) uses the general form of Eqn 10, δ(L) = ∂J/∂a ⊙ φ^(L)′(z)
(for softmax, the Jacobian-transpose product from the proof of Eqn 12).

Targets ``Y`` here are always float arrays of shape ``(n, m_L)`` (labels already one-hot).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vnn import activations as act

Array = Any


# -- output nonlinearities φ^(L) ------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """The output layer's φ^(L), its default loss, and ∂J/∂z from ∂J/∂a (chain rule, Eqn 10)."""

    name: str
    phi: Callable[[Any, Array], Array]
    backward: Callable[[Any, Array, Array, Array], Array]  # (xp, z, a, dJ/da) -> dJ/dz
    default_loss: str


def _elementwise_backward(dphi: Callable[[Any, Array, Array], Array]) -> Callable[..., Array]:
    def backward(xp: Any, z: Array, a: Array, grad_a: Array) -> Array:
        """Eqn (10), general form: δ(L) = ∂J/∂a ⊙ φ^(L)′(z)."""
        return grad_a * dphi(xp, z, a)

    return backward


def _softmax_backward(xp: Any, z: Array, a: Array, grad_a: Array) -> Array:
    """Eqn (10) for softmax: δ(L) = J_softmaxᵀ ∂J/∂p (the Jacobian of the proof of Eqn 12)."""
    return act.softmax_vjp(xp, a, grad_a)


OUTPUTS: dict[str, Output] = {
    "identity": Output("identity", act.identity, _elementwise_backward(act.identity_prime),
                       "squared_error"),
    "sigmoid": Output("sigmoid", act.sigmoid, _elementwise_backward(act.sigmoid_prime),
                      "binary_cross_entropy"),
    "softmax": Output("softmax", act.softmax, _softmax_backward, "cross_entropy"),
}


# -- losses -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Loss:
    """A per-sample loss ℓ: its values from logits, and δ(L) for the outputs it pairs with."""

    name: str
    each: Callable[[Any, Array, Array, Array], Array]  # (xp, z, a, Y) -> ℓ_i per sample, (n,)
    canonical: str  # the output for which δ(L) = a − y (Eqns 10-12)
    grad_a: Callable[[Any, Array, Array], Array] | None = None  # ∂ℓ/∂a for the general Eqn 10
    outputs: frozenset[str] = field(default_factory=frozenset)

    def total(self, xp: Any, z: Array, a: Array, Y: Array, v: Array | None = None) -> Array:
        """Σ_i ℓ_i over the batch, or Σ_i v_i ℓ_i with per-sample weights ``v`` (0-d array)."""
        per = self.each(xp, z, a, Y)
        return xp.sum(per) if v is None else xp.sum(per * v)


def squared_error_each(xp: Any, z: Array, a: Array, Y: Array) -> Array:
    """Eqn (4): ℓ = ½‖ŷ − y‖² per sample."""
    r = a - Y
    return 0.5 * xp.sum(r * r, axis=1)


def squared_error_grad_a(xp: Any, a: Array, Y: Array) -> Array:
    """∂ℓ/∂a of Eqn (4): a − y (the first factor of Eqn 10)."""
    return a - Y


def softplus(xp: Any, z: Array) -> Array:
    """log(1 + e^z) = max(z, 0) + log1p(e^{−|z|}): finite for every finite z."""
    return xp.maximum(z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z)))


def binary_cross_entropy_each(xp: Any, z: Array, a: Array, Y: Array) -> Array:
    """Eqn (5) from the logit z: −y log σ(z) − (1 − y) log(1 − σ(z)) = softplus(z) − y z, summed
    over the outputs of a sample (multilabel)."""
    return xp.sum(softplus(xp, z) - Y * z, axis=1)


def logsumexp(xp: Any, z: Array) -> Array:
    """log Σ_t exp(z_t) per row, shifted by the row max so that it never overflows."""
    m = xp.max(z, axis=-1, keepdims=True)
    return xp.squeeze(m, axis=-1) + xp.log(xp.sum(xp.exp(z - m), axis=-1))


def cross_entropy_each(xp: Any, z: Array, a: Array, Y: Array) -> Array:
    """Eqn (6) from logits: −Σ_k e_y(k) log p_k = logsumexp(z) − Σ_k e_y(k) z_k (rows of Y sum to 1)."""
    return logsumexp(xp, z) - xp.sum(Y * z, axis=1)


LOSSES: dict[str, Loss] = {
    "squared_error": Loss("squared_error", squared_error_each, "identity",
                          squared_error_grad_a, frozenset(OUTPUTS)),
    "binary_cross_entropy": Loss("binary_cross_entropy", binary_cross_entropy_each, "sigmoid",
                                 None, frozenset({"sigmoid"})),
    "cross_entropy": Loss("cross_entropy", cross_entropy_each, "softmax",
                          None, frozenset({"softmax"})),
}
_LOSS_ALIASES = {"mse": "squared_error", "bce": "binary_cross_entropy",
                 "log_loss": "cross_entropy", "categorical_cross_entropy": "cross_entropy"}


def output_delta(xp: Any, output: Output, loss: Loss, z: Array, a: Array, Y: Array) -> Array:
    """δ(L) = ∂ℓ/∂z(L) per sample (rows), for this output and loss.

    Eqn (10) identity + squared error, Eqn (11) sigmoid + binary cross-entropy, Eqn (12) softmax +
    cross-entropy: each is δ(L) = a(L) − y. Other pairings: Eqn (10) general, ∂ℓ/∂a ⊙ φ′(z).
    """
    if output.name == loss.canonical:
        return a - Y
    assert loss.grad_a is not None  # pairing checked by resolve()
    return output.backward(xp, z, a, loss.grad_a(xp, a, Y))


def resolve(output: object, loss: object | None) -> tuple[Output, Loss]:
    """Check an output / loss pairing and return both, or raise a clear error."""
    if not isinstance(output, str) or output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not known; expected one of {sorted(OUTPUTS)}")
    out = OUTPUTS[output]
    if loss is None:
        loss = out.default_loss
    if not isinstance(loss, str) or _LOSS_ALIASES.get(loss, loss) not in LOSSES:
        raise ValueError(
            f"loss={loss!r} is not known; expected one of {sorted(LOSSES)} or None (the output's own)"
        )
    fn = LOSSES[_LOSS_ALIASES.get(loss, loss)]
    if out.name not in fn.outputs:
        ok = sorted(fn.outputs)
        raise ValueError(
            f"loss={loss!r} cannot be paired with output={output!r}: it needs outputs in (0, 1) "
            f"that it was derived for; expected output in {ok}"
        )
    return out, fn
