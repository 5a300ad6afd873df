"""The portable step traced once per batch shape by a just-in-time compiler (``jax.jit``).

For libraries whose arrays are immutable (JAX), the step is Algorithm 1.9's 3(a)-(e) as the
portable step writes it (``vnn.step.portable.loss_and_gradients``, then the optimizer's formula
per parameter, :meth:`Optimizer.update`): a pure function of the parameters, the optimizer's state,
its scalars at this step and the batch, returning new ones. It is jitted once per process for each
kind of model (activations, output, loss, optimizer class) and traced once per batch shape and
specialisation of the update (which scalars are 0 or 1): the scalars that change every step
(Adam's bias corrections) are arguments of the trace; those that stay (β₁, β₂, ε, η) are Python
numbers inside it, so that ``1 − β₂`` is worked out in float64 and rounded once, as on NumPy.
The optimizer's state and step count stay on the optimizer (checkpoints read them there); the
parameters are ``theta``, rebound after every step (``vnn.train.trainer.Trainer`` hands them to
the model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vnn.math import activations, losses
from vnn.math.optimizers import Optimizer
from vnn.step.portable import loss_and_gradients

Array = Any


#: the jitted step of each kind of model, shared by every JitStep of that kind (a new ``jit`` of
#: a new function would trace again for every fit)
_JITTED: dict[Any, Any] = {}


def _pure(theta: list[Array], state: list[list[Array]], values: Array, A: Array, Y: Array,
          rows: Array, *, kind: tuple[Any, ...], key: tuple[tuple[str, float], ...],
          fixed: tuple[tuple[str, float], ...], lam: float, n: int
          ) -> tuple[list[Array], list[list[Array]], Array]:
    """The step on the rows ``rows`` of (A, Y) (an index array, or the first row of ``n``
    consecutive ones as a 0-d array): selecting the batch is traced too, not a call of its own.
    ``values`` holds the scalars that change from step to step, ``fixed`` the others."""
    xp, acts, output, loss, opt_class = kind
    if rows.ndim == 0:
        rows = rows + xp.arange(n)
    Ab, Yb = xp.take(A, rows, axis=0), xp.take(Y, rows, axis=0)
    J, grads = loss_and_gradients(xp, theta[0::2], theta[1::2], list(acts), output, loss, Ab, Yb,
                                  lam)
    flat = [g for pair in grads for g in pair]
    new_state = [list(s) for s in state]
    moving = [k for k in opt_class.update_formula_of().scalar_order if k not in dict(fixed)]
    scalars = {**dict(fixed), **{k: values[i] for i, k in enumerate(moving)}}
    new = opt_class.update(_Formula(opt_class), xp, list(theta), flat, new_state, 0,
                           scalars=scalars, key=key)
    return new, new_state, J


class _Formula:
    """What :meth:`Optimizer.update` reads of ``self`` when it is given the scalars: the formula
    and the state names (class attributes), not an instance's hyperparameters."""

    def __init__(self, opt_class: type[Optimizer]) -> None:
        self.update_formula = opt_class.update_formula_of()
        self.state_names = opt_class.state_names


class JitStep:
    """One mini-batch step (Algorithm 1.9, 3(a)-(e)), jitted; ``step(A, Y, rows)`` returns J_B."""

    #: the parameters are new arrays after each step (``theta``), not updated in place
    functional = True

    def __init__(self, xp: Any, jit: Callable[..., Any], host: Callable[..., Any],
                 W: list[Array], b: list[Array], hidden: list[str], output: str, loss: str,
                 lam: float, optimizer: Optimizer, l2_per_sample: bool = False) -> None:
        """``jit(f, static_argnames=...)`` compiles ``f``; ``host(values, dtype)`` makes a host
        array (``numpy.asarray``), which ``jit`` takes as an argument without a transfer call."""
        self.xp, self.optimizer, self.lam, self.l2_per_sample = xp, optimizer, lam, l2_per_sample
        self._host = host
        self.theta = [p for pair in zip(W, b) for p in pair]
        self._kind = (xp, tuple(activations.HIDDEN[h] for h in hidden), losses.OUTPUTS[output],
                      losses.LOSSES[loss], type(optimizer))
        #: data-parallel training would reduce the gradient here; not available on this backend
        self.reduce: Callable[[Array, int], None] | None = None
        jit_key = (id(jit), self._kind)
        if jit_key not in _JITTED:
            _JITTED[jit_key] = jit(_pure, static_argnames=("kind", "key", "fixed", "lam", "n"))
        self._step = _JITTED[jit_key]
        if len(optimizer.state) != optimizer.n_state or any(
                len(s) != len(self.theta)
                or any(tuple(a.shape) != tuple(p.shape) for a, p in zip(s, self.theta))
                for s in optimizer.state):  # no state yet, or another model's
            optimizer.state = [[xp.zeros_like(p) for p in self.theta]
                               for _ in range(optimizer.n_state)]
            optimizer.t = 0

    @property
    def W(self) -> list[Array]:  # noqa: N802 - the derivation's name
        return self.theta[0::2]

    @property
    def b(self) -> list[Array]:
        return self.theta[1::2]

    def __call__(self, A: Array, Y: Array, rows: Any) -> Array:
        """Train on the rows ``rows`` (a slice, or an index array) of (A, Y); returns J_B."""
        if self.reduce is not None:
            raise ValueError("distributed training is not available on backend='jax'")
        opt = self.optimizer
        if isinstance(rows, slice):
            start = rows.start or 0
            n, rows = rows.stop - start, self._host(start)
        else:
            n = int(rows.shape[0])
        lam = self.lam / n if self.l2_per_sample and self.lam and n else self.lam
        f = opt.update_formula
        scalars, following = opt.scalars(opt.t + 1), opt.scalars(opt.t + 2)
        fixed = tuple((k, float(scalars[k])) for k in f.scalar_order
                      if scalars[k] == following[k])
        moving = [scalars[k] for k in f.scalar_order if scalars[k] != following[k]]
        # one host array of this step's changing scalars (a transfer each costs more than a step)
        values = self._host(moving or [0.0], str(self.theta[0].dtype))
        theta, state, J = self._step(self.theta, opt.state, values, A, Y, rows, kind=self._kind,
                                     key=f.key(scalars), fixed=fixed, lam=float(lam), n=n)
        self.theta, opt.state = list(theta), [list(s) for s in state]
        opt.t += 1
        return J
