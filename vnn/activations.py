"""Elementwise nonlinearities φ and their derivatives φ′ (§1.3, Eqn 2), and softmax.

Each φ′ takes both ``z`` and ``a = φ(z)``: tanh and sigmoid have cheap derivatives in terms of
``a``; ReLU and identity only need ``z``. Everything here is pure Array API code on ``xp``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Array = Any


@dataclass(frozen=True)
class Activation:
    """A named elementwise nonlinearity φ together with its derivative φ′."""

    name: str
    phi: Callable[[Any, Array], Array]
    dphi: Callable[[Any, Array, Array], Array]


def relu(xp: Any, z: Array) -> Array:
    """Eqn (2), ReLU: φ(u) = (u)_+ = max{u, 0}."""
    return xp.maximum(z, xp.zeros_like(z))


def relu_prime(xp: Any, z: Array, a: Array) -> Array:
    """φ′ of ReLU: 1 where u > 0, else 0 (the subgradient 0 is taken at u = 0)."""
    return xp.astype(z > 0, z.dtype)


def tanh(xp: Any, z: Array) -> Array:
    """Eqn (2), tanh."""
    return xp.tanh(z)


def tanh_prime(xp: Any, z: Array, a: Array) -> Array:
    """φ′ of tanh: 1 − tanh²(u) = 1 − a²."""
    return 1.0 - a * a


def sigmoid(xp: Any, z: Array) -> Array:
    """Eqn (2), sigmoid σ(u) = 1 / (1 + e^{−u}), evaluated without overflow for any u."""
    e = xp.exp(-xp.abs(z))  # in (0, 1]: never overflows
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_prime(xp: Any, z: Array, a: Array) -> Array:
    """φ′ of sigmoid: σ(u)(1 − σ(u)) = a(1 − a)."""
    return a * (1.0 - a)


def identity(xp: Any, z: Array) -> Array:
    """Eqn (2), identity (the regression output of §1.3)."""
    return z


def identity_prime(xp: Any, z: Array, a: Array) -> Array:
    """φ′ of identity: 1 (Eqn 10's φ^(L)′ ≡ 1)."""
    return xp.ones_like(z)


def softmax(xp: Any, z: Array) -> Array:
    """§1.3 multiclass output: p_k = exp(z_k) / Σ_t exp(z_t), row-wise, shifted by the row max."""
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=-1, keepdims=True)


def softmax_vjp(xp: Any, p: Array, g: Array) -> Array:
    """J_softmaxᵀ g with J_kt = p_k(δ_kt − p_t) (the Jacobian in the proof of Eqn 12)."""
    return p * (g - xp.sum(g * p, axis=-1, keepdims=True))


HIDDEN: dict[str, Activation] = {
    "relu": Activation("relu", relu, relu_prime),
    "tanh": Activation("tanh", tanh, tanh_prime),
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_prime),
    "identity": Activation("identity", identity, identity_prime),
}


def get(name: object, what: str = "activation") -> Activation:
    """The hidden-layer activation called ``name``, or a clear error naming the choices."""
    if not isinstance(name, str) or name not in HIDDEN:
        raise ValueError(f"{what}={name!r} is not known; expected one of {sorted(HIDDEN)}")
    return HIDDEN[name]
