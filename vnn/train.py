"""The training loop of Algorithm 1.9: epochs of shuffled mini-batches, validation, history."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vnn import backprop
from vnn.network import check_l2
from vnn.optim import Adam, Optimizer

if TYPE_CHECKING:
    from vnn.network import MLP

Array = Any


@dataclass
class History:
    """What ``fit`` measured, one entry per epoch (Python floats).

    ``loss`` is Eqn (3) averaged over the epoch's mini-batches (weighted by batch size);
    ``val_loss`` is Eqn (3) on the validation data at the end of the epoch (empty without it).
    """

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    samples_per_second: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.loss)


def _positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}")
    return value


def fit(net: MLP, X: Any, y: Any, optimizer: Optimizer | None = None, epochs: int = 10,
        batch_size: int | None = None, l2: float = 0.0, shuffle: bool = True,
        validation_data: tuple[Any, Any] | None = None, progress: bool = False,
        callback: Callable[[int, History], Any] | None = None,
        sample_weight: Any = None) -> History:
    """Algorithm 1.9: repeat for ``epochs`` over mini-batches B of ``X``, ``y``:
    (a) forward, Eqns (1)-(2); (b) loss, Eqn (3); (c) backward, Eqns (10)-(13);
    (d) gradients, Eqn (14); (e) update with ``optimizer`` (default ``Adam()``).

    ``batch_size`` defaults to min(128, n). With ``shuffle`` the batch order is a fresh permutation
    each epoch, drawn from the model's seeded host generator. ``progress`` prints one line per epoch
    to stderr. ``callback(epoch, history)``, when given, is called after each epoch (1-based) with
    the history so far (progress bars, logging). ``sample_weight`` (n,) weights each sample's
    loss: Eqn (3) of a batch becomes Σ_i v_i ℓ_i / Σ_i v_i + λ/2 Σ ‖W‖² (portable step). Data is
    moved to the device once; each epoch's loss stays on the device until the epoch ends.
    """
    epochs = _positive_int("epochs", epochs, 0)
    lam = check_l2(l2)
    if optimizer is None:
        optimizer = Adam()
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer={optimizer!r} is not a vnn optimizer; expected vnn.SGD, "
                        "vnn.Momentum or vnn.Adam")
    A = net._inputs(X, "X")
    n = A.shape[0]
    Y = net._targets(y, n, "y")
    V = net._weights(sample_weight, n)
    batch_size = min(128, n) if batch_size is None else _positive_int("batch_size", batch_size, 1)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        Av = net._inputs(validation_data[0], "validation_data[0]")
        val = (Av, net._targets(validation_data[1], Av.shape[0], "validation_data[1]"))

    be = net.backend
    trainer = Trainer(net, optimizer, lam)
    history = History()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = be.from_host(net.rng.permutation(n)) if shuffle else None
        total: Any = 0.0
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            J = trainer(A, Y, slice(start, stop) if order is None else order[start:stop], V)
            total = total + J * (stop - start)
        history.loss.append(float(be.to_numpy(total)) / n)  # one host read per epoch
        if val is not None:
            history.val_loss.append(evaluate(net, val[0], val[1], lam))
        seconds = time.perf_counter() - t0
        history.seconds.append(seconds)
        history.samples_per_second.append(n / seconds if seconds > 0 else math.inf)
        if progress:
            _report(epoch, epochs, history)
        if callback is not None:
            callback(epoch, history)
    return history


class Trainer:
    """Step 3 of Algorithm 1.9 for one model, optimizer and λ, on data already on the device.

    ``trainer(A, Y, rows)`` trains on the rows ``rows`` (a slice, or an index array on the device)
    of the inputs ``A`` (n, m_0) and targets ``Y`` (n, m_L) and returns J_B (Eqn 3) without reading
    it back. It uses the backend's preallocated fast step when there is one (NumPy, CuPy) and
    ``net.fast_path`` is true, else the portable Array API step of :mod:`vnn.backprop`.

    ``trainer(A, Y, rows, V)`` weights the samples by ``V`` (n,) (portable step). With
    ``l2_per_sample`` the λ of a batch is ``lam / |B|`` (``lam / Σ_B v`` with weights), which is how
    scikit-learn's ``alpha`` scales.
    """

    def __init__(self, net: MLP, optimizer: Optimizer, lam: float,
                 l2_per_sample: bool = False) -> None:
        self.net, self.optimizer, self.lam = net, optimizer, lam
        self.l2_per_sample = l2_per_sample
        self.fast = None
        if net.fast_path:
            self.fast = net.backend.fast_step(net._W, net._b, [h.name for h in net._hidden],
                                              net.output, net.loss, lam, optimizer, l2_per_sample)
        if self.fast is not None:
            net._W, net._b = list(self.fast.W), list(self.fast.b)  # views of its flat buffer

    def __call__(self, A: Array, Y: Array, rows: Any, V: Array | None = None) -> Array:
        if self.fast is not None and V is None:
            return self.fast(A, Y, rows)
        xp = self.net.xp
        if isinstance(rows, slice):
            Ab, Yb, Vb = A[rows, ...], Y[rows, ...], None if V is None else V[rows]
        else:
            Ab, Yb = xp.take(A, rows, axis=0), xp.take(Y, rows, axis=0)
            Vb = None if V is None else xp.take(V, rows, axis=0)
        lam = self.lam
        if self.l2_per_sample and lam:
            lam /= Ab.shape[0] if Vb is None else float(self.net.backend.to_numpy(xp.sum(Vb)))
        return step(self.net, self.optimizer, Ab, Yb, lam, Vb)


def step(net: MLP, optimizer: Optimizer, A: Array, Y: Array, lam: float,
         v: Array | None = None) -> Array:
    """One mini-batch of Algorithm 1.9, steps 3(a)-(e), portable; returns J_B (Eqn 3)."""
    J, grads = net._loss_and_gradients(A, Y, lam, v)
    params = [p for pair in zip(net._W, net._b) for p in pair]
    flat = [g for pair in grads for g in pair]
    new = optimizer.step(net.xp, params, flat, inplace=net.backend.mutable)
    net._W, net._b = new[0::2], new[1::2]
    return J


def evaluate(net: MLP, A: Array, Y: Array, lam: float) -> float:
    """Eqn (3) on (A, Y) without updating anything."""
    Zs, As = backprop.forward(net.xp, net._W, net._b, net._hidden, net._output, A)
    return float(net.backend.to_numpy(backprop.risk(net.xp, net._loss, Zs, As, Y, net._W, lam)))


def _report(epoch: int, epochs: int, h: History) -> None:
    line = f"epoch {epoch:>{len(str(epochs))}}/{epochs}  loss {h.loss[-1]:.6g}"
    if h.val_loss:
        line += f"  val_loss {h.val_loss[-1]:.6g}"
    line += f"  {h.seconds[-1]:.2f}s  {h.samples_per_second[-1]:,.0f} samples/s"
    print(line, file=sys.stderr, flush=True)
