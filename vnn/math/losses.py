"""Per-sample losses (Eqns 4-6), computed from logits, each beside its output sensitivity δ(L).

A loss is paired with an output nonlinearity φ^(L). For the three canonical pairings the
derivation gives δ(L) = a(L) − y directly (Eqns 10, 11, 12); any other valid pairing (say a
sigmoid or softmax output with squared error) uses the general form of Eqn 10,
δ(L) = ∂J/∂a ⊙ φ^(L)′(z) (for softmax, the Jacobian-transpose product from the proof of Eqn 12).

A fourth canonical pairing has the same pattern: the exponential output ŷ = a(L) = e^z (a log
link, for counts and rates) with the Poisson loss, half the Poisson deviance of a target y >= 0,

    ℓ(ŷ, y) = y log(y / ŷ) − y + ŷ = e^z − y z + (y log y − y)     (y log y = 0 at y = 0),

summed over a sample's outputs. Differentiating in z (the last term does not depend on z):

    δ(L)_k = ∂ℓ/∂z_k = e^{z_k} − y_k = a(L)_k − y_k,

again Eqn (10)'s a(L) − y, as for the identity with squared error: φ′ = e^z cancels against
∂ℓ/∂ŷ = 1 − y/ŷ. ℓ >= 0, with equality at ŷ = y, like the other losses.

A loss is the sum over a sample's outputs of its formula in :mod:`vnn.math.formulas` (plus, for
cross-entropy, the per-sample term logsumexp(z)). Targets ``Y`` here are always float arrays of
shape ``(n, m_L)`` (labels already one-hot).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vnn.math import activations as act
from vnn.math.formulas import FORMULAS

Array = Any


# -- output nonlinearities φ^(L) ------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """The output layer's φ^(L), its default loss, and ∂J/∂z from ∂J/∂a (chain rule, Eqn 10)."""

    name: str
    phi: Callable[[Any, Array], Array]
    backward: Callable[[Any, Array, Array, Array], Array]  # (xp, z, a, dJ/da) -> dJ/dz
    default_loss: str


def _elementwise(a: act.Activation) -> Callable[..., Array]:
    def backward(xp: Any, z: Array, out: Array, grad_a: Array) -> Array:
        """Eqn (10), general form: δ(L) = ∂J/∂a ⊙ φ^(L)′(z)."""
        return grad_a * a.dphi(xp, z, out)

    return backward


def _softmax_backward(xp: Any, z: Array, a: Array, grad_a: Array) -> Array:
    """Eqn (10) for softmax: δ(L) = J_softmaxᵀ ∂J/∂p (the Jacobian of the proof of Eqn 12)."""
    return act.softmax_vjp(xp, a, grad_a)


_ID, _SIG = act.HIDDEN["identity"], act.HIDDEN["sigmoid"]
OUTPUTS: dict[str, Output] = {
    "identity": Output("identity", _ID.phi, _elementwise(_ID), "squared_error"),
    "sigmoid": Output("sigmoid", _SIG.phi, _elementwise(_SIG), "binary_cross_entropy"),
    "softmax": Output("softmax", act.softmax, _softmax_backward, "cross_entropy"),
    "exp": Output("exp", act.EXP.phi, _elementwise(act.EXP), "poisson"),
}


# -- losses -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Loss:
    """A per-sample loss ℓ: ``FORMULAS[name]`` of (``on``, y) summed over a sample's outputs,
    plus logsumexp(z) when ``logsumexp``; δ(L) = a − y for its ``canonical`` output."""

    name: str
    on: str  # what the formula takes besides y: "a" (the output) or "z" (the logits)
    canonical: str  # the output for which δ(L) = a − y (Eqns 10-12)
    grad: str | None = None  # the formula of ∂ℓ/∂a, for the general Eqn 10
    outputs: frozenset[str] = field(default_factory=frozenset)
    logsumexp: bool = False

    def each(self, xp: Any, z: Array, a: Array, Y: Array) -> Array:
        """ℓ_i per sample, shape (n,)."""
        per = xp.sum(FORMULAS[self.name](xp, a if self.on == "a" else z, Y), axis=1)
        return per + act.logsumexp(xp, z) if self.logsumexp else per

    def total(self, xp: Any, z: Array, a: Array, Y: Array, v: Array | None = None) -> Array:
        """Σ_i ℓ_i over the batch, or Σ_i v_i ℓ_i with per-sample weights ``v`` (0-d array)."""
        per = self.each(xp, z, a, Y)
        return xp.sum(per) if v is None else xp.sum(per * v)


LOSSES: dict[str, Loss] = {
    "squared_error": Loss("squared_error", "a", "identity", "squared_error_grad",
                          frozenset(OUTPUTS)),
    "binary_cross_entropy": Loss("binary_cross_entropy", "z", "sigmoid", None,
                                 frozenset({"sigmoid"})),
    "cross_entropy": Loss("cross_entropy", "z", "softmax", None, frozenset({"softmax"}),
                          logsumexp=True),
    # half the Poisson deviance of a count y >= 0 and the mean ŷ = e^z (log link). Per element,
    # ℓ = e^z − y z + (y log y − y), so ∂ℓ/∂z = e^z − y = ŷ − y: δ(L) is again a(L) − y, the
    # canonical-link pattern of Eqns (10)-(12), with an exp output in place of the identity.
    "poisson": Loss("poisson", "z", "exp", None, frozenset({"exp"})),
}
_LOSS_ALIASES = {"mse": "squared_error", "bce": "binary_cross_entropy",
                 "log_loss": "cross_entropy", "categorical_cross_entropy": "cross_entropy"}


def softplus(xp: Any, z: Array) -> Array:
    """log(1 + e^z) = max(z, 0) + log1p(e^{−|z|}): finite for every finite z."""
    return FORMULAS["softplus"](xp, z)


def output_delta(xp: Any, output: Output, loss: Loss, z: Array, a: Array, Y: Array) -> Array:
    """δ(L) = ∂ℓ/∂z(L) per sample (rows), for this output and loss.

    Eqn (10) identity + squared error, Eqn (11) sigmoid + binary cross-entropy, Eqn (12) softmax +
    cross-entropy: each is δ(L) = a(L) − y. Other pairings: Eqn (10) general, ∂ℓ/∂a ⊙ φ′(z).
    """
    if output.name == loss.canonical:
        return FORMULAS["output_delta"](xp, a, Y)
    assert loss.grad is not None  # pairing checked by resolve()
    return output.backward(xp, z, a, FORMULAS[loss.grad](xp, a, Y))


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
            f"loss={loss!r} cannot be paired with output={output!r}: it is derived for the "
            f"outputs {ok} only; expected output in {ok}"
        )
    return out, fn
