"""Optimizers: SGD (Eqn 15), Momentum (Eqn 16 as written) and Adam (§1.6).

Each optimizer writes its formula once, in :meth:`Optimizer.update`, over lists of parameters,
gradients and state arrays on any Array API namespace ``xp``. With ``inplace=True`` the results are
stored into the existing arrays (Array API in-place assignment); with ``inplace=False`` new arrays
are returned (for libraries that forbid mutation). The weight-decay term λW is already inside the
gradient (Eqn 14), so no optimizer adds decay of its own.

``step(xp, params, grads)`` is the convenient form: it keeps the state (one list of arrays per
state kind, each aligned with ``params``) and the step count ``t`` on the optimizer.
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


def _put(dst: Array, value: Array, inplace: bool) -> Array:
    """Store ``value`` into ``dst`` (in place) or return it (functional form)."""
    if inplace:
        dst[...] = value
        return dst
    return value


class Optimizer:
    """Base class: hyperparameters, state and one update of every parameter."""

    #: state arrays kept per parameter (velocity; first and second moments)
    n_state = 0

    def __init__(self, lr: float) -> None:
        self.lr = _check("lr", lr, 0.0)
        self.state: list[list[Array]] = []  # n_state lists, each aligned with the parameters
        self.t = 0  # number of steps taken

    def reset(self) -> None:
        """Forget the state (velocities, moments, step count): the next step starts afresh."""
        self.state = []
        self.t = 0

    def update(self, xp: Any, params: list[Array], grads: list[Array],
               state: list[list[Array]], t: int, inplace: bool) -> list[Array]:
        """Apply step number ``t`` (1-based) to every parameter; returns the new parameters."""
        raise NotImplementedError

    def step(self, xp: Any, params: list[Array], grads: list[Array],
             inplace: bool = False) -> list[Array]:
        """One update of ``params`` with ``grads``; state and step count live on the optimizer."""
        if len(self.state) != self.n_state or any(
                len(s) != len(params) or any(a.shape != p.shape for a, p in zip(s, params))
                for s in self.state):
            self.state = [[xp.zeros_like(p) for p in params] for _ in range(self.n_state)]
            self.t = 0
        self.t += 1
        return self.update(xp, params, grads, self.state, self.t, inplace)

    def _args(self) -> str:
        return f"lr={self.lr!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._args()})"


class SGD(Optimizer):
    """Plain stochastic gradient descent."""

    def update(self, xp: Any, params: list[Array], grads: list[Array],
               state: list[list[Array]], t: int, inplace: bool) -> list[Array]:
        """Eqn (15): θ ← θ − η ∇̂_B θ."""
        return [_put(p, p - self.lr * g, inplace) for p, g in zip(params, grads)]


class Momentum(Optimizer):
    """Momentum exactly as Eqn (16) writes it (an exponential average of gradients)."""

    n_state = 1

    def __init__(self, lr: float, beta: float = 0.9) -> None:
        super().__init__(lr)
        self.beta = _check("beta", beta, 0.0, 1.0, low_open=False)

    def update(self, xp: Any, params: list[Array], grads: list[Array],
               state: list[list[Array]], t: int, inplace: bool) -> list[Array]:
        """Eqn (16): v ← β v + (1 − β) ∇̂_B θ ;  θ ← θ − η v  (for weights and biases alike)."""
        b = self.beta
        (vs,) = state
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            v = vs[i] = _put(vs[i], b * vs[i] + (1.0 - b) * g, inplace)
            out.append(_put(p, p - self.lr * v, inplace))
        return out

    def _args(self) -> str:
        return f"lr={self.lr!r}, beta={self.beta!r}"


class Adam(Optimizer):
    """Adam (§1.6, "adaptive methods"): bias-corrected first and second moment estimates."""

    n_state = 2

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta1 = _check("beta1", beta1, 0.0, 1.0, low_open=False)
        self.beta2 = _check("beta2", beta2, 0.0, 1.0, low_open=False)
        self.eps = _check("eps", eps, 0.0)

    def update(self, xp: Any, params: list[Array], grads: list[Array],
               state: list[list[Array]], t: int, inplace: bool) -> list[Array]:
        """m ← β₁m + (1−β₁)g ; v ← β₂v + (1−β₂)g² ;
        θ ← θ − η m̂ / (√v̂ + ε) with m̂ = m / (1−β₁ᵗ), v̂ = v / (1−β₂ᵗ)."""
        b1, b2 = self.beta1, self.beta2
        c1, c2 = 1.0 - b1**t, 1.0 - b2**t
        ms, vs = state
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            m = ms[i] = _put(ms[i], b1 * ms[i] + (1.0 - b1) * g, inplace)
            v = vs[i] = _put(vs[i], b2 * vs[i] + (1.0 - b2) * (g * g), inplace)
            out.append(_put(p, p - self.lr * (m / c1) / (xp.sqrt(v / c2) + self.eps), inplace))
        return out

    def _args(self) -> str:
        return f"lr={self.lr!r}, beta1={self.beta1!r}, beta2={self.beta2!r}, eps={self.eps!r}"
