"""The portable step traced once per batch shape by a just-in-time compiler (``jax.jit``).

For libraries whose arrays are immutable (JAX), the step is Algorithm 1.9's 3(a)-(e) as the
portable step writes it (``vnn.step.portable.loss_and_gradients``, then the optimizer's formula
per parameter, :meth:`Optimizer.update`): a pure function of the parameters, the optimizer's state,
its scalars at this step and the batch, returning new ones. ``jit`` traces it once per batch shape
and specialisation of the update (which scalars are 0 or 1), so the scalars that change every step
(Adam's bias corrections) are arguments, not constants. The optimizer's state and step count stay
on the optimizer (checkpoints read them there); the parameters are ``theta``, rebound after every
step (``vnn.train.trainer.Trainer`` hands them to the model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vnn.math import activations, losses
from vnn.math.optimizers import Optimizer
from vnn.step.portable import loss_and_gradients

Array = Any


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
        self._acts = [activations.HIDDEN[h] for h in hidden]
        self._output, self._loss = losses.OUTPUTS[output], losses.LOSSES[loss]
        #: data-parallel training would reduce the gradient here; not available on this backend
        self.reduce: Callable[[Array, int], None] | None = None
        self._step = jit(self._pure, static_argnames=("key", "lam", "n"))
        if len(optimizer.state) != optimizer.n_state or any(
                len(s) != len(self.theta) for s in optimizer.state):
            optimizer.state = [[xp.zeros_like(p) for p in self.theta]
                               for _ in range(optimizer.n_state)]
            optimizer.t = 0

    @property
    def W(self) -> list[Array]:  # noqa: N802 - the derivation's name
        return self.theta[0::2]

    @property
    def b(self) -> list[Array]:
        return self.theta[1::2]

    def _pure(self, theta: list[Array], state: list[list[Array]], values: Array,
              A: Array, Y: Array, rows: Array, key: tuple[tuple[str, float], ...], lam: float,
              n: int) -> tuple[list[Array], list[list[Array]], Array]:
        """The step on the rows ``rows`` of (A, Y) (an index array, or the first row of ``n``
        consecutive ones as a 0-d array): selecting the batch is traced too, not a call of its own."""
        xp, opt = self.xp, self.optimizer
        if rows.ndim == 0:
            rows = rows + xp.arange(n)
        Ab, Yb = xp.take(A, rows, axis=0), xp.take(Y, rows, axis=0)
        J, grads = loss_and_gradients(xp, theta[0::2], theta[1::2], self._acts, self._output,
                                      self._loss, Ab, Yb, lam)
        flat = [g for pair in grads for g in pair]
        new_state = [list(s) for s in state]
        names = opt.update_formula.scalar_order
        new = opt.update(xp, list(theta), flat, new_state, 0,
                         scalars={k: values[i] for i, k in enumerate(names)}, key=key)
        return new, new_state, J

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
        scalars = opt.scalars(opt.t + 1)
        # one host array of this step's scalars (a transfer per scalar costs more than the step)
        values = self._host([scalars[k] for k in f.scalar_order] or [0.0],
                            str(self.theta[0].dtype))
        theta, state, J = self._step(self.theta, opt.state, values, A, Y, rows,
                                     key=f.key(scalars), lam=float(lam), n=n)
        self.theta, opt.state = list(theta), [list(s) for s in state]
        opt.t += 1
        return J
