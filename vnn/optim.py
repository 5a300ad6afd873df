"""Optimizers: SGD (Eqn 15), Momentum (Eqn 16 as written) and Adam (§1.6).

Each optimizer's :meth:`Optimizer.update` works over lists of parameters, gradients and state
arrays on any Array API namespace ``xp``, in one of two forms of the same formula:

- ``inplace=False``: the formula as the derivation writes it, returning new arrays (for libraries
  that forbid mutation);
- ``inplace=True``: the same formula as a sequence of Array API in-place operators (``-=``,
  ``*=``, ``**=``) that allocates nothing: parameters and state are updated where they are, and the
  gradient arrays are used as scratch space (they hold garbage afterwards). This is what training
  uses; the two forms agree to rounding (tests check it).

The weight-decay term λW is already inside the gradient (Eqn 14), so no optimizer adds decay of
its own.

``step(xp, params, grads)`` is the convenient form: it keeps the state (one list of arrays per
state kind, each aligned with ``params``) and the step count ``t`` on the optimizer.
"""

from __future__ import annotations

import math
from decimal import Decimal
from numbers import Integral, Real
from typing import Any

Array = Any


def shown(value: object) -> str:
    """``repr(value)`` for an error message, an integer too large for a float written short
    (``1.000E+400`` instead of 401 digits)."""
    if isinstance(value, Integral) and not isinstance(value, bool) and abs(int(value)) >= 10**20:
        return f"{Decimal(int(value)):.3E}"
    return repr(value)


def as_float(value: object) -> float | None:
    """A real number (Python or NumPy scalar, not a bool) as a float, ±inf when it is too large
    for one (``10**400``); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, Real):  # NumPy's bool is not a Real
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def _check(name: str, value: object, low: float, high: float | None = None,
           low_open: bool = True) -> float:
    v = as_float(value)
    bad = (v is None or not math.isfinite(v) or (v <= low if low_open else v < low)
           or (high is not None and v >= high))
    if bad:
        lo = f"> {low}" if low_open else f">= {low}"
        rng = f"{lo} and < {high}" if high is not None else lo
        raise ValueError(f"{name}={shown(value)} is invalid; expected a finite number {rng}")
    return v  # type: ignore[return-value]


class Optimizer:
    """Base class: hyperparameters, state and one update of every parameter."""

    #: state arrays kept per parameter (velocity; first and second moments)
    n_state = 0

    def __init__(self, lr: float) -> None:
        self.lr = _check("lr", lr, 0.0)
        self.state: list[list[Array]] = []  # n_state lists, each aligned with the parameters
        self.t = 0  # number of steps taken

    def update(self, xp: Any, params: list[Array], grads: list[Array],
               state: list[list[Array]], t: int, inplace: bool) -> list[Array]:
        """Apply step number ``t`` (1-based) to every parameter; returns the new parameters."""
        raise NotImplementedError

    def fused(self, t: int) -> tuple[str, tuple[float, ...]] | None:
        """Step ``t`` as one fused formula of ``backends.fused`` (a single GPU kernel): its name
        and scalar arguments. ``None`` where there is none, which is what a subclass that
        redefines :meth:`update` gets."""
        return None

    def step(self, xp: Any, params: list[Array], grads: list[Array],
             inplace: bool = False) -> list[Array]:
        """One update of ``params`` with ``grads``; state and step count live on the optimizer.

        With ``inplace=True`` the parameters are updated where they are and ``grads`` is used
        as scratch space (see the module docstring).
        """
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
        if not inplace:
            return [p - self.lr * g for p, g in zip(params, grads)]
        for p, g in zip(params, grads):
            g *= self.lr
            p -= g
        return params

    def fused(self, t: int) -> tuple[str, tuple[float, ...]] | None:
        return ("sgd", (self.lr,)) if type(self).update is SGD.update else None


class Momentum(Optimizer):
    """Momentum exactly as Eqn (16) writes it (an exponential average of gradients)."""

    n_state = 1

    def __init__(self, lr: float, beta: float = 0.9) -> None:
        super().__init__(lr)
        self.beta = _check("beta", beta, 0.0, 1.0, low_open=False)

    def update(self, xp: Any, params: list[Array], grads: list[Array],
               state: list[list[Array]], t: int, inplace: bool) -> list[Array]:
        """Eqn (16): v ← β v + (1 − β) ∇̂_B θ ;  θ ← θ − η v  (for weights and biases alike)."""
        b, lr = self.beta, self.lr
        (vs,) = state
        if not inplace:
            vs[:] = [b * v + (1.0 - b) * g for v, g in zip(vs, grads)]
            return [p - lr * v for p, v in zip(params, vs)]
        for p, g, v in zip(params, grads, vs):
            v -= g  # v ← β(v − g) + g = βv + (1 − β)g
            v *= b
            v += g
            g[...] = v
            g *= lr
            p -= g  # θ ← θ − ηv
        return params

    def fused(self, t: int) -> tuple[str, tuple[float, ...]] | None:
        return (("momentum", (self.beta, self.lr)) if type(self).update is Momentum.update
                else None)

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
        b1, b2, lr, eps = self.beta1, self.beta2, self.lr, self.eps
        c1, c2 = 1.0 - b1**t, 1.0 - b2**t
        ms, vs = state
        if not inplace:
            ms[:] = [b1 * m + (1.0 - b1) * g for m, g in zip(ms, grads)]
            vs[:] = [b2 * v + (1.0 - b2) * (g * g) for v, g in zip(vs, grads)]
            return [p - lr * (m / c1) / (xp.sqrt(v / c2) + eps)
                    for p, m, v in zip(params, ms, vs)]
        for p, g, m, v in zip(params, grads, ms, vs):
            m -= g  # m ← β₁(m − g) + g = β₁m + (1 − β₁)g
            m *= b1
            m += g
            g *= g  # g ← g²
            v -= g  # v ← β₂v + (1 − β₂)g²
            v *= b2
            v += g
            g[...] = v  # g ← 1 / (√(v / c₂) + ε)
            g /= c2
            g **= 0.5
            g += eps
            g **= -1.0
            g *= m  # θ ← θ − (η / c₁) m / (√(v / c₂) + ε)
            g *= lr / c1
            p -= g
        return params

    def fused(self, t: int) -> tuple[str, tuple[float, ...]] | None:
        if type(self).update is not Adam.update:
            return None
        c1, c2 = 1.0 - self.beta1**t, 1.0 - self.beta2**t
        return "adam", (self.beta1, self.beta2, self.lr / c1, c2, self.eps)

    def _args(self) -> str:
        return f"lr={self.lr!r}, beta1={self.beta1!r}, beta2={self.beta2!r}, eps={self.eps!r}"
