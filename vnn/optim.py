"""Optimizers: SGD (Eqn 15), Momentum (Eqn 16 as written) and Adam (§1.6).

An optimizer holds its hyperparameters and its per-parameter state. ``step`` takes the flat list
``[W1, b1, W2, b2, ...]`` and the gradients in the same order and returns the updated list; it
works on any Array API namespace ``xp``. The weight-decay term λW is already inside the
gradient (Eqn 14), so no optimizer adds decay of its own.
"""

from __future__ import annotations

import math
from typing import Any

Array = Any


def _check(name: str, value: object, low: float, high: float | None = None,
           low_open: bool = True) -> float:
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    v = float(value) if ok_type else math.nan  # type: ignore[arg-type]
    bad = (not ok_type or not math.isfinite(v) or (v <= low if low_open else v < low)
           or (high is not None and v >= high))
    if bad:
        lo = f"> {low}" if low_open else f">= {low}"
        rng = f"{lo} and < {high}" if high is not None else lo
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number {rng}")
    return v


class Optimizer:
    """Base class: hyperparameters, state and one update of every parameter."""

    def __init__(self, lr: float) -> None:
        self.lr = _check("lr", lr, 0.0)
        self.state: list[Array] = []
        self.t = 0  # number of steps taken

    def reset(self) -> None:
        """Forget the state (velocities, moments, step count): the next step starts afresh."""
        self.state = []
        self.t = 0

    def _zeros(self, xp: Any, params: list[Array], copies: int) -> list[Array]:
        return [xp.zeros_like(p) for _ in range(copies) for p in params]

    def step(self, xp: Any, params: list[Array], grads: list[Array]) -> list[Array]:
        raise NotImplementedError

    def _args(self) -> str:
        return f"lr={self.lr!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._args()})"


class SGD(Optimizer):
    """Plain stochastic gradient descent."""

    def step(self, xp: Any, params: list[Array], grads: list[Array]) -> list[Array]:
        """Eqn (15): θ ← θ − η ∇̂_B θ."""
        self.t += 1
        return [p - self.lr * g for p, g in zip(params, grads)]


class Momentum(Optimizer):
    """Momentum exactly as Eqn (16) writes it (an exponential average of gradients)."""

    def __init__(self, lr: float, beta: float = 0.9) -> None:
        super().__init__(lr)
        self.beta = _check("beta", beta, 0.0, 1.0, low_open=False)

    def step(self, xp: Any, params: list[Array], grads: list[Array]) -> list[Array]:
        """Eqn (16): v ← β v + (1 − β) ∇̂_B θ ;  θ ← θ − η v  (for weights and biases alike)."""
        if not self.state:
            self.state = self._zeros(xp, params, 1)
        self.t += 1
        b = self.beta
        self.state = [b * v + (1.0 - b) * g for v, g in zip(self.state, grads)]
        return [p - self.lr * v for p, v in zip(params, self.state)]

    def _args(self) -> str:
        return f"lr={self.lr!r}, beta={self.beta!r}"


class Adam(Optimizer):
    """Adam (§1.6, "adaptive methods"): bias-corrected first and second moment estimates."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta1 = _check("beta1", beta1, 0.0, 1.0, low_open=False)
        self.beta2 = _check("beta2", beta2, 0.0, 1.0, low_open=False)
        self.eps = _check("eps", eps, 0.0)

    def step(self, xp: Any, params: list[Array], grads: list[Array]) -> list[Array]:
        """m ← β₁m + (1−β₁)g ; v ← β₂v + (1−β₂)g² ; θ ← θ − η m̂ / (√v̂ + ε), m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ)."""
        n = len(params)
        if not self.state:
            self.state = self._zeros(xp, params, 2)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        m = [b1 * m + (1.0 - b1) * g for m, g in zip(self.state[:n], grads)]
        v = [b2 * v + (1.0 - b2) * (g * g) for v, g in zip(self.state[n:], grads)]
        self.state = m + v
        return [p - self.lr * (mi / c1) / (xp.sqrt(vi / c2) + self.eps)
                for p, mi, vi in zip(params, m, v)]

    def _args(self) -> str:
        return f"lr={self.lr!r}, beta1={self.beta1!r}, beta2={self.beta2!r}, eps={self.eps!r}"
