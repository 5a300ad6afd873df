"""Elementwise nonlinearities φ and their derivatives φ′ (§1.3, Eqn 2, Eqn 13), and softmax.

Each φ and φ′ is a formula of :mod:`vnn.math.formulas`, evaluated here on an Array API
namespace ``xp``. Every φ′ is written in terms of ``a = φ(z)`` (ReLU: a > 0 where z > 0), so a
step never needs to keep z(ℓ) of a hidden layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vnn.math.formula import Formula
from vnn.math.formulas import FORMULAS

Array = Any


@dataclass(frozen=True)
class Activation:
    """A named elementwise nonlinearity: φ is ``FORMULAS[name]``, φ′ ``FORMULAS[name + "_prime"]``."""

    name: str

    @property
    def formula(self) -> Formula:
        return FORMULAS[self.name]

    @property
    def prime(self) -> Formula:
        return FORMULAS[self.name + "_prime"]

    def phi(self, xp: Any, z: Array) -> Array:
        """Eqn (2): a = φ(z)."""
        return self.formula(xp, z)

    def dphi(self, xp: Any, z: Array, a: Array) -> Array:
        """φ′(z), from a = φ(z) (the factor of Eqn 13)."""
        return self.prime(xp, a)


def softmax(xp: Any, z: Array) -> Array:
    """§1.3 multiclass output: p_k = exp(z_k − max z) / Σ_t exp(z_t − max z), row-wise."""
    e = FORMULAS["softmax_exp"](xp, z, xp.max(z, axis=-1, keepdims=True))
    return FORMULAS["softmax_div"](xp, e, xp.sum(e, axis=-1, keepdims=True))


def softmax_vjp(xp: Any, p: Array, g: Array) -> Array:
    """J_softmaxᵀ g with J_kt = p_k(δ_kt − p_t) (the Jacobian in the proof of Eqn 12)."""
    return FORMULAS["softmax_vjp"](xp, p, g, xp.sum(g * p, axis=-1, keepdims=True))


def logsumexp(xp: Any, z: Array) -> Array:
    """log Σ_t exp(z_t) per row, shifted by the row max so that it never overflows."""
    mx = xp.max(z, axis=-1, keepdims=True)
    s = xp.sum(FORMULAS["softmax_exp"](xp, z, mx), axis=-1, keepdims=True)
    return xp.squeeze(FORMULAS["logsumexp"](xp, mx, s), axis=-1)


HIDDEN: dict[str, Activation] = {name: Activation(name)
                                 for name in ("relu", "tanh", "sigmoid", "identity")}
#: φ(L) only: the exponential output of a Poisson regression
EXP = Activation("exp")


def get(name: object, what: str = "activation") -> Activation:
    """The hidden-layer activation called ``name``, or a clear error naming the choices."""
    if not isinstance(name, str) or name not in HIDDEN:
        raise ValueError(f"{what}={name!r} is not known; expected one of {sorted(HIDDEN)}")
    return HIDDEN[name]
