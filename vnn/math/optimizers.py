"""Optimizers: SGD (Eqn 15), Momentum (Eqn 16 as written) and Adam (§1.6).

An optimizer is a formula of :mod:`vnn.math.formulas` (its update of one parameter) and the
scalars it takes at step ``t``. Every step executes that formula: the portable step evaluates it
on ``xp`` per parameter (:meth:`Optimizer.update`, new arrays), the preallocated step compiles it
into calls on the flat parameter buffer, the fused step into one CUDA kernel. scikit-learn's
heavy-ball and Nesterov momentum and its Adam (ε outside the bias correction) are options of the
same formulas, not copies.

The weight-decay term λW is already inside the gradient (Eqn 14), so no optimizer adds decay of
its own. ``step(xp, params, grads)`` keeps the state (one list of arrays per state kind, each
aligned with ``params``) and the step count ``t`` on the optimizer.
"""

from __future__ import annotations

import math
from typing import Any

from vnn.math.formula import Formula
from vnn.math.formulas import FORMULAS
from vnn.numbers import check_number

Array = Any


class Optimizer:
    """Base class: hyperparameters, state, and the update formula ``FORMULAS[formula]``."""

    #: the update of step 3(e), a formula of ``p`` (the parameter), ``g`` (its gradient), the
    #: state arrays and scalars
    formula = "sgd"

    def __init__(self, lr: float) -> None:
        self.lr = check_number("lr", lr, 0.0)
        self.state: list[list[Array]] = []  # one list per state kind, aligned with the parameters
        self.t = 0  # number of steps taken

    #: the formula's state arrays (velocity; first and second moments), in order, and how many
    state_names: tuple[str, ...] = ()
    n_state = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        f = FORMULAS[cls.formula]
        cls.state_names = tuple(a for a in f.args[2:] if a not in f.scalars)
        cls.n_state = len(cls.state_names)

    @property
    def update_formula(self) -> Formula:
        return self.update_formula_of()

    @classmethod
    def update_formula_of(cls) -> Formula:
        """The update formula of this kind of optimizer (without an instance)."""
        return FORMULAS[cls.formula]

    def scalars(self, t: int) -> dict[str, float]:
        """The formula's scalars at step ``t`` (1-based)."""
        raise NotImplementedError

    def update(self, xp: Any, params: list[Array], grads: list[Array],
               state: list[list[Array]], t: int,
               scalars: dict[str, Any] | None = None,
               key: tuple[tuple[str, float], ...] | None = None) -> list[Array]:
        """Apply step number ``t`` to every parameter: new parameters; ``state`` updated.

        ``scalars`` (values of the formula's scalars, e.g. traced ones under ``jax.jit``) and
        ``key`` (which of them are 0 or 1: the formula's specialisation, ``Formula.key``) replace
        those of step ``t``."""
        f = self.update_formula
        scalars = self.scalars(t) if scalars is None else scalars
        run = f.portable(scalars) if key is None else f.specialized(key)
        tail = [scalars[a] for a in f.args if a in f.scalars]
        names = self.state_names
        new = []
        for i, (p, g) in enumerate(zip(params, grads)):
            out = dict(zip(f.outputs, _tuple(run(xp, p, g, *(s[i] for s in state), *tail))))
            for k, name in enumerate(names):
                state[k][i] = out[name]
            new.append(out["p"])
        return new

    def step(self, xp: Any, params: list[Array], grads: list[Array]) -> list[Array]:
        """One update of ``params`` with ``grads``; state and step count live on the optimizer."""
        if len(self.state) != self.n_state or any(
                len(s) != len(params) or any(a.shape != p.shape for a, p in zip(s, params))
                for s in self.state):
            self.state = [[xp.zeros_like(p) for p in params] for _ in range(self.n_state)]
            self.t = 0
        self.t += 1
        return self.update(xp, params, grads, self.state, self.t)

    def _args(self) -> str:
        return f"lr={self.lr!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._args()})"


def _tuple(out: Any) -> tuple[Any, ...]:
    return out if isinstance(out, tuple) else (out,)


class SGD(Optimizer):
    """Plain stochastic gradient descent, Eqn (15): θ ← θ − η ∇̂_B θ."""

    formula = "sgd"

    def scalars(self, t: int) -> dict[str, float]:
        return {"lr": self.lr}


class Momentum(Optimizer):
    """Momentum, by default exactly as Eqn (16) writes it (an exponential average of gradients):
    v ← βv + (1 − β)∇̂θ ; θ ← θ − ηv, for weights and biases alike.

    ``form="heavy_ball"``: v ← βv + η∇̂θ ; θ ← θ − v, and ``form="nesterov"``:
    θ ← θ − (βv + η∇̂θ) after the same v (scikit-learn's ``momentum``, whose velocity is −v).
    """

    formula = "momentum"
    FORMS = ("average", "heavy_ball", "nesterov")

    def __init__(self, lr: float, beta: float = 0.9, *, form: str = "average") -> None:
        super().__init__(lr)
        self.beta = check_number("beta", beta, 0.0, 1.0, low_open=False)
        if form not in self.FORMS:
            raise ValueError(f"form={form!r} is not known; expected one of {list(self.FORMS)}")
        self.form = form

    def scalars(self, t: int) -> dict[str, float]:
        b, lr = self.beta, self.lr
        if self.form == "average":
            return {"beta": b, "c": 1.0 - b, "ahead": lr, "nu": 0.0}
        return {"beta": b, "c": lr, "ahead": b if self.form == "nesterov" else 1.0,
                "nu": lr if self.form == "nesterov" else 0.0}

    def _args(self) -> str:
        form = "" if self.form == "average" else f", form={self.form!r}"
        return f"lr={self.lr!r}, beta={self.beta!r}{form}"


class Adam(Optimizer):
    """Adam (§1.6, "adaptive methods"): bias-corrected first and second moment estimates,
    m ← β₁m + (1−β₁)g ; v ← β₂v + (1−β₂)g² ; θ ← θ − η m̂ / (√v̂ + ε), m̂ = m / (1−β₁ᵗ),
    v̂ = v / (1−β₂ᵗ).

    ``eps_after_correction=False``: θ ← θ − η √(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε), ε added before
    the correction (scikit-learn's form).
    """

    formula = "adam"

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, *, eps_after_correction: bool = True) -> None:
        super().__init__(lr)
        self.beta1 = check_number("beta1", beta1, 0.0, 1.0, low_open=False)
        self.beta2 = check_number("beta2", beta2, 0.0, 1.0, low_open=False)
        self.eps = check_number("eps", eps, 0.0)
        if not isinstance(eps_after_correction, bool):
            raise TypeError(f"eps_after_correction={eps_after_correction!r} is not a bool")
        self.eps_after_correction = eps_after_correction

    def scalars(self, t: int) -> dict[str, float]:
        b1, b2 = self.beta1, self.beta2
        c1, c2 = 1.0 - b1**t, 1.0 - b2**t
        common = {"b1": b1, "b2": b2, "eps": self.eps}
        if self.eps_after_correction:
            return {**common, "lr_c1": self.lr / c1, "c2": c2}
        return {**common, "lr_c1": self.lr * math.sqrt(c2) / c1, "c2": 1.0}

    def _args(self) -> str:
        extra = "" if self.eps_after_correction else ", eps_after_correction=False"
        return (f"lr={self.lr!r}, beta1={self.beta1!r}, beta2={self.beta2!r}, "
                f"eps={self.eps!r}{extra}")
