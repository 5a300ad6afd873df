"""Step 3 of Algorithm 1.9 for one model: the preallocated step where the backend has one, else
the portable one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vnn.math.optimizers import Optimizer

if TYPE_CHECKING:
    from vnn.network import MLP

from vnn.step.portable import step

Array = Any




class Trainer:
    """Step 3 of Algorithm 1.9 for one model, optimizer and λ, on data already on the device.

    ``trainer(A, Y, rows)`` trains on the rows ``rows`` (a slice, or an index array on the device)
    of the inputs ``A`` (n, m_0) and targets ``Y`` (n, m_L) and returns J_B (Eqn 3) without reading
    it back. It uses the backend's preallocated fast step when there is one (NumPy, CuPy) and
    ``net.fast_path`` is true, else the portable Array API step of :mod:`vnn.step.portable`.

    ``trainer(A, Y, rows, V)`` weights the samples by ``V`` (n,) (portable step). With
    ``l2_per_sample`` the λ of a batch is ``lam / |B|`` (``lam / Σ_B v`` with weights), which is how
    scikit-learn's ``alpha`` scales.
    """

    def __init__(self, net: MLP, optimizer: Optimizer, lam: float,
                 l2_per_sample: bool = False,
                 reduce: Callable[[Array, int], None] | None = None,
                 steps: int | None = None, batch: int | None = None) -> None:
        """``steps`` and ``batch``: how long the job will be (steps of how many samples), when
        known; a backend may choose its step by it (NumPy compiles loops for long jobs)."""
        self.net, self.optimizer, self.lam = net, optimizer, lam
        self.l2_per_sample, self.reduce = l2_per_sample, reduce
        self.fast = None
        if net.fast_path:
            # The model's own lists: the step replaces their items with views of its flat buffer
            # once it has copied them, so the old arrays are freed before it allocates its
            # gradient (peak memory: one copy of θ fewer), and a thread predicting meanwhile
            # always finds parameters there.
            self.fast = net.backend.fast_step(net._W, net._b, net.activation, net.output,
                                              net.loss, lam, optimizer, l2_per_sample,
                                              steps=steps, batch=batch)
        if self.fast is not None:  # views of its flat buffer
            net.theta = [p for pair in zip(self.fast.W, self.fast.b) for p in pair]
            self.fast.reduce = reduce

    def __call__(self, A: Array, Y: Array, rows: Any, V: Array | None = None) -> Array:
        if self.fast is not None and V is None:
            if not getattr(self.fast, "functional", False):
                return self.fast(A, Y, rows)
            self.fast.theta = self.net.theta  # immutable arrays (JAX): new ones each step
            J = self.fast(A, Y, rows)
            self.net.theta = self.fast.theta
            return J
        xp = self.net.xp
        if isinstance(rows, slice):
            Ab, Yb, Vb = A[rows, ...], Y[rows, ...], None if V is None else V[rows]
        else:
            Ab, Yb = xp.take(A, rows, axis=0), xp.take(Y, rows, axis=0)
            Vb = None if V is None else xp.take(V, rows, axis=0)
        lam = self.lam
        if self.l2_per_sample and lam and Ab.shape[0]:
            lam /= Ab.shape[0] if Vb is None else float(self.net.backend.to_numpy(xp.sum(Vb)))
        return step(self.net, self.optimizer, Ab, Yb, lam, Vb, self.reduce)


def evaluate(net: MLP, A: Array, Y: Array, lam: float) -> float:
    """Eqn (3) on (A, Y) without updating anything."""
    return float(net.backend.to_numpy(net.risk(A, Y, lam)))
