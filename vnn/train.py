"""The training loop of Algorithm 1.9: epochs of shuffled mini-batches, validation, history."""

from __future__ import annotations

import errno
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral
from typing import TYPE_CHECKING, Any

from vnn import memory
from vnn.math.optimizers import Adam, Optimizer
from vnn.network import check_l2
from vnn.numbers import shown

if TYPE_CHECKING:
    from vnn.distributed import Communicator
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

    def __post_init__(self) -> None:
        #: why training ended before ``epochs``: None, "interrupted" (Ctrl-C) or "nonfinite"
        self.stopped: str | None = None

    @property
    def epochs(self) -> int:
        return len(self.loss)


def _positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name}={shown(value)} is invalid; expected an integer >= {minimum}")
    return int(value)


def _bool(name: str, value: object) -> bool:
    """``value`` as a bool: True or False (a NumPy bool too), never 0, 1 or "no"."""
    dtype = getattr(value, "dtype", None)
    if isinstance(value, bool) or (getattr(dtype, "kind", "") == "b"
                                   and getattr(value, "shape", None) == ()):
        return bool(value)
    raise TypeError(f"{name}={value!r} is not a bool; expected True or False")


class NothingToTrainWarning(UserWarning):
    """``fit(resume=...)`` was given a checkpoint already past ``epochs``: nothing is trained,
    the model holds the checkpoint's parameters and ``fit`` returns the checkpoint's history."""


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or parameter. The model keeps the parameters (and the
    optimizer its state) of the last step that left everything finite."""

    def __init__(self, message: str, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch, self.batch = epoch, batch


ON_NONFINITE = ("raise", "stop")


def fit(net: MLP, X: Any, y: Any, optimizer: Optimizer | None = None, epochs: int = 10,
        batch_size: int | None = None, l2: float = 0.0, shuffle: bool = True,
        validation_data: tuple[Any, Any] | None = None, progress: bool = False,
        callback: Callable[[int, History], Any] | None = None,
        sample_weight: Any = None, on_nonfinite: str = "raise", checkpoint: Any = None,
        checkpoint_every: int = 1, resume: Any = None, distributed: Any = False) -> History:
    """Algorithm 1.9: repeat for ``epochs`` over mini-batches B of ``X``, ``y``:
    (a) forward, Eqns (1)-(2); (b) loss, Eqn (3); (c) backward, Eqns (10)-(13);
    (d) gradients, Eqn (14); (e) update with ``optimizer`` (default ``Adam()``).

    ``batch_size`` defaults to min(128, n). With ``shuffle`` the batch order is a fresh permutation
    each epoch, drawn from the model's seeded host generator. ``progress`` prints one line per epoch
    to stderr. ``callback(epoch, history)``, when given, is called after each epoch (1-based) with
    the history so far (progress bars, logging). ``sample_weight`` (n,) weights each sample's
    loss: Eqn (3) of a batch becomes Σ_i v_i ℓ_i / Σ_i v_i + λ/2 Σ ‖W‖² (portable step). A batch
    whose weights are all 0 contributes nothing and is skipped (no update, no optimizer step, no
    share of the epoch's loss), as if its rows were not in the data; which batches those are is
    known on the host from the weights and the epoch's order. Data is moved to the device once;
    each epoch's loss stays on the device until the epoch ends.

    Every argument is checked before any work: bad values raise ``ValueError`` or ``TypeError``
    naming the argument, an unwritable ``checkpoint`` path ``ValueError`` or ``OSError`` (see
    :func:`vnn.io.check_writable`), and training whose buffers (gradients, optimizer state, one
    batch's workspace, the data) would not fit in the memory left next to the model
    :class:`vnn.ModelTooLargeError` (see :mod:`vnn.memory`), before the data is moved.

    Safety:

    - If the loss or a parameter becomes NaN or infinite, the epoch is replayed step by step from
      a copy taken at its start to find the batch, the model is left with the parameters of the
      last finite step, and ``on_nonfinite="raise"`` (default) raises :class:`DivergenceError`
      naming the epoch and batch; ``"stop"`` warns and returns the history instead.
    - Ctrl-C (SIGINT, in the main thread) stops training after the step in progress: the model
      holds the parameters of that finished step, the history its finished epochs, and
      ``history.stopped`` says why. A second Ctrl-C interrupts at once.
    - ``checkpoint=path`` writes the model, optimizer state, epoch, host generator state and
      history every ``checkpoint_every`` epochs (atomically; see :func:`vnn.io.save`).
      ``resume=path`` restores all of it and continues with the next epoch, up to ``epochs`` in
      total, so that an interrupted and resumed run ends with the parameters of an uninterrupted
      one (same backend; bit for bit on the CPU). A checkpoint already past ``epochs`` trains
      nothing: :class:`NothingToTrainWarning` says so, the model holds the checkpoint's
      parameters and its history is returned (one exactly at ``epochs`` returns it silently).

    ``distributed=True`` trains data-parallel over MPI (see :mod:`vnn.distributed`): start the
    script with ``mpiexec -n P``; every rank passes the same data and ``batch_size`` (the global
    batch) and gets the same parameters and history; only rank 0 prints and writes checkpoints.
    Ctrl-C is left to MPI there (it stops every rank).
    """
    epochs = _positive_int("epochs", epochs, 0)
    lam = check_l2(l2)
    optimizer = _check_arguments(optimizer, resume, shuffle, progress, callback, on_nonfinite,
                                 validation_data)
    checkpoint_every = _positive_int("checkpoint_every", checkpoint_every, 1)
    if batch_size is not None:
        batch_size = _positive_int("batch_size", batch_size, 1)
    from vnn.distributed import communicator

    comm = communicator(net.backend, distributed)
    lead = comm is None or comm.rank == 0
    if checkpoint is not None and lead:
        from vnn.io import check_writable

        check_writable(checkpoint, "checkpoint")  # before any training
    A, Y, V, val = _data(net, X, y, sample_weight, validation_data, optimizer, batch_size, lam)
    n = A.shape[0]
    positive = positive_weights(net.backend, V)
    batch_size = min(128, n) if batch_size is None else batch_size
    history = History()
    if resume is not None:
        optimizer, history = _resume(net, resume, optimizer)
        if history.epochs > epochs:
            warnings.warn(f"resume={str(resume)!r} is a checkpoint already at epoch "
                          f"{history.epochs}, past epochs={epochs}: nothing is trained; the "
                          "model holds the checkpoint's parameters and fit returns its history "
                          f"(pass epochs > {history.epochs} to train on)", NothingToTrainWarning,
                          stacklevel=4)
    assert optimizer is not None
    if comm is not None:  # every rank starts from rank 0's parameters
        for p in net.theta:
            comm.bcast_(p)
    trainer = Trainer(net, optimizer, lam, reduce=None if comm is None else comm.reduce_gradient)
    run = _Run(net, trainer, optimizer, on_nonfinite, comm, batch_size)
    with net.backend.errstate(), _DeferSigint(comm is None) as sigint:
        for epoch in range(history.epochs + 1, epochs + 1):
            t0 = time.perf_counter()
            perm = net.rng.permutation(n) if shuffle else None
            if comm is not None and perm is not None:
                perm = comm.bcast(perm)  # one batch order for every rank
            order = None if perm is None else net.backend.from_host(perm)
            batches = [slice(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]
            n_epoch = n
            if positive is not None:  # a batch whose weights sum to 0 contributes nothing
                keep = weighted_batches(positive, perm, batch_size)
                batches = [b for b, k in zip(batches, keep) if k]
                n_epoch = sum(b.stop - b.start for b in batches)
            rows = [b if order is None else order[b] for b in batches]
            done = run.epoch(epoch, A, Y, V, rows, batches, n_epoch, sigint)
            if done is None:  # diverged, on_nonfinite="stop"
                history.stopped = "nonfinite"
                break
            if done < len(rows):  # Ctrl-C
                history.stopped = "interrupted"
                warnings.warn(f"training interrupted at epoch {epoch} after batch {done} of "
                              f"{len(rows)}; the model holds the parameters of that step and "
                              f"the history its {history.epochs} finished epochs",
                              RuntimeWarning, stacklevel=3)
                break
            history.loss.append(run.loss)
            if val is not None:
                history.val_loss.append(evaluate(net, val[0], val[1], lam))
            seconds = time.perf_counter() - t0
            history.seconds.append(seconds)
            history.samples_per_second.append(n_epoch / seconds if seconds > 0 else math.inf)
            if checkpoint is not None and lead and (epoch % checkpoint_every == 0
                                                    or epoch == epochs):
                from vnn import io

                io.save(net, checkpoint, optimizer=optimizer, epoch=epoch, history=history)
            if progress and lead:
                _report(epoch, epochs, history)
            if callback is not None:
                callback(epoch, history)
    return history


def _check_arguments(optimizer: Any, resume: Any, shuffle: Any, progress: Any, callback: Any,
                     on_nonfinite: Any, validation_data: Any) -> Optimizer | None:
    """Check ``fit``'s arguments that need no data; returns the optimizer (Adam by default)."""
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite={on_nonfinite!r} is invalid; expected one of {ON_NONFINITE}")
    _bool("shuffle", shuffle)
    _bool("progress", progress)
    if resume is not None:
        _check_readable("resume", resume)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback={callback!r} is not callable; expected a function "
                        "callback(epoch, history) or None")
    if validation_data is not None and (not isinstance(validation_data, (tuple, list))
                                        or len(validation_data) != 2):
        raise ValueError("validation_data must be a pair (X_val, y_val)")
    if optimizer is None and resume is None:
        optimizer = Adam()
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer={optimizer!r} is not a vnn optimizer; expected vnn.SGD, "
                        "vnn.Momentum or vnn.Adam")
    return optimizer


def _data(net: MLP, X: Any, y: Any, sample_weight: Any, validation_data: Any,
          optimizer: Optimizer | None, batch_size: int | None, lam: float
          ) -> tuple[Array, Array, Array | None, tuple[Array, Array] | None]:
    """The training data on the device, once :func:`vnn.memory.check_fit` has found room for it
    and for training's buffers (resuming: Adam's two state arrays per parameter assumed)."""
    n = memory.rows(X)
    memory.check_fit(net, 2 if optimizer is None else optimizer.n_state, n,
                     min(128, n) if batch_size is None else batch_size, lam,
                     memory.data_bytes(net, X, y, sample_weight, validation_data),
                     0 if validation_data is None else memory.rows(validation_data[0]))
    A, Y, V = net.prepare(X, y, sample_weight)
    val = None
    if validation_data is not None:
        Av, Yv, _ = net.prepare(validation_data[0], validation_data[1],
                                x_name="validation_data[0]", y_name="validation_data[1]")
        val = (Av, Yv)
    return A, Y, V, val


def _check_readable(name: str, path: Any) -> None:
    """``path`` (the argument ``name``) names an existing regular file."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise TypeError(f"{name}={path!r} is not a file path; expected a str or os.PathLike "
                        "naming a checkpoint written by fit(checkpoint=...)") from None
    if not os.path.isfile(text):
        what = "is not a regular file" if os.path.exists(text) else "does not exist"
        raise FileNotFoundError(errno.ENOENT, f"{name}: the checkpoint file {what}", text)


def positive_weights(be: Any, V: Array | None) -> Any:
    """On the host: which samples weigh more than 0, or None when all do (or there are no
    weights); read once per fit."""
    if V is None:
        return None
    positive = be.to_numpy(V) > 0
    return None if positive.all() else positive


def weighted_batches(positive: Any, order: Any, batch_size: int) -> list[bool]:
    """Which batches of an epoch hold a sample of positive weight, from host arrays (no device
    sync): batch k is the samples ``order[k·batch_size : (k+1)·batch_size]``.

    ``positive`` (n,) bool: sample i weighs more than 0; ``order``: the epoch's permutation
    (None: the rows in order). A batch's weights sum to 0 (Eqn 3's weighted mean is 0/0)
    exactly when none of them is positive.
    """
    p = positive if order is None else positive[order]
    n = int(p.shape[0])
    k = n // batch_size
    full = p[:k * batch_size].reshape(k, batch_size).any(axis=1).tolist()
    return full + ([bool(p[k * batch_size:].any())] if n % batch_size else [])


def _resume(net: MLP, path: Any, optimizer: Optimizer | None) -> tuple[Optimizer, History]:
    """Load a checkpoint written by ``fit(checkpoint=...)`` into ``net`` and the optimizer."""
    from vnn import io

    ck = io.load_checkpoint(path, device=net.device, backend=net.backend.name)
    saved = (ck.net.sizes, ck.net.activation, ck.net.output, ck.net.loss, ck.net.dtype)
    mine = (net.sizes, net.activation, net.output, net.loss, net.dtype)
    if saved != mine:
        raise ValueError(f"resume={path!r} holds a model {ck.net!r}, which differs from this one "
                         f"{net!r}; expected the same sizes, activations, output, loss and dtype")
    if ck.optimizer is None or ck.epoch is None:
        raise ValueError(f"resume={path!r} is a model file without optimizer state and epoch; "
                         "expected a checkpoint written by fit(checkpoint=...)")
    if optimizer is not None and type(optimizer) is not type(ck.optimizer):
        raise ValueError(f"optimizer={optimizer!r} differs from the checkpoint's {ck.optimizer!r}; "
                         "pass optimizer=None to continue with the saved one")
    opt = ck.optimizer if optimizer is None else optimizer
    if opt is not ck.optimizer:
        opt.state, opt.t = ck.optimizer.state, ck.optimizer.t
    net.weights, net.biases = ck.net.weights, ck.net.biases
    bit_generator = getattr(net.rng, "bit_generator", None)
    if bit_generator is not None:
        bit_generator.state = ck.net.rng.bit_generator.state  # type: ignore[attr-defined]
    history = ck.history if ck.history is not None else History()
    if history.epochs != ck.epoch:
        raise ValueError(f"resume={path!r} is inconsistent: epoch {ck.epoch} but "
                         f"{history.epochs} epochs of history")
    return opt, history


class _Run:
    """One fit's steps, with a copy of the parameters at each epoch's start to fall back on."""

    def __init__(self, net: MLP, trainer: Trainer, optimizer: Optimizer, on_nonfinite: str,
                 comm: Communicator | None = None, batch_size: int | None = None) -> None:
        self.net, self.trainer, self.opt, self.on_nonfinite = net, trainer, optimizer, on_nonfinite
        self.comm, self.batch_size = comm, batch_size
        self.loss = math.nan

    def _step(self, A: Array, Y: Array, V: Array | None, r: Any, b: slice) -> Any:
        """One step on the global batch ``b`` (rows ``r``); returns J_B × this rank's rows."""
        if self.comm is None:
            return self.trainer(A, Y, r, V) * (b.stop - b.start)
        self.comm.global_n = b.stop - b.start
        mine = self.comm.shard(r, b.stop - b.start)
        n_mine = (mine.stop - mine.start) if isinstance(mine, slice) else int(mine.shape[0])
        return self.trainer(A, Y, mine, V) * n_mine

    def _host_sum(self, total: Any) -> float:
        """Σ over this epoch's steps (and ranks) of J_B |B|, on the host."""
        value = float(self.net.backend.to_numpy(total))
        return value if self.comm is None else self.comm.sum(value)

    def epoch(self, epoch: int, A: Array, Y: Array, V: Array | None, rows: list[Any],
              batches: list[slice], n: int, sigint: _DeferSigint) -> int | None:
        """Train one epoch; returns the number of batches done (fewer after Ctrl-C), or None
        when training diverged and ``on_nonfinite="stop"``."""
        start = self._snapshot()
        total: Any = 0.0
        done = 0
        for r, b in zip(rows, batches):
            total = total + self._step(A, Y, V, r, b)
            done += 1
            if sigint.pending:
                break
        loss = self._host_sum(total) / n  # one host read (and allreduce) per epoch
        if math.isfinite(loss) and self._finite():
            self.loss = loss
            return done
        # Replay the epoch one step at a time from its start to find the step that diverged.
        self._restore(start)
        for i, (r, b) in enumerate(zip(rows[:done], batches), start=1):
            k = b.start // self.batch_size + 1 if self.batch_size else i  # the epoch's batch k
            before = self._snapshot()
            J = self._host_sum(self._step(A, Y, V, r, b)) / (b.stop - b.start)
            if not (math.isfinite(J) and self._finite()):
                self._restore(before)
                msg = (f"training diverged at epoch {epoch}, batch {k} (samples {b.start}.."
                       f"{b.stop - 1}): the loss or a parameter became NaN or infinite (loss "
                       f"{J!r}). The model keeps the parameters of the last finite step. Try a "
                       "smaller learning rate, standardised inputs or L2.")
                if self.on_nonfinite == "raise":
                    raise DivergenceError(msg, epoch, k)
                warnings.warn(msg, RuntimeWarning, stacklevel=4)
                return None
        return done  # the replay stayed finite (the failure did not recur)

    def _params(self) -> list[Array]:
        return self.net.theta

    def _finite(self) -> bool:
        xp, be = self.net.xp, self.net.backend
        return all(bool(be.to_numpy(xp.all(xp.isfinite(p)))) for p in self._params())

    def _snapshot(self) -> tuple[list[Array], list[list[Array]], int]:
        xp = self.net.xp
        return ([xp.asarray(p, copy=True) for p in self._params()],
                [[xp.asarray(a, copy=True) for a in s] for s in self.opt.state], self.opt.t)

    def _restore(self, snap: tuple[list[Array], list[list[Array]], int]) -> None:
        """Write a snapshot back in place (the fast step's parameters are views of its buffer)."""
        params, state, t = snap
        for p, s in zip(self._params(), params):
            p[...] = s
        for cur, old in zip(self.opt.state, state):
            for a, s in zip(cur, old):
                a[...] = s
        self.opt.t = t


class _DeferSigint:
    """While active (main thread only), the first Ctrl-C sets ``pending`` instead of raising, so
    that the step in progress finishes; a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self, active: bool = True) -> None:
        self.pending, self.active = False, active
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def __enter__(self) -> _DeferSigint:
        if self.active and threading.current_thread() is threading.main_thread():
            try:
                self._old = signal.signal(signal.SIGINT, self._handler)
            except ValueError:  # not the main interpreter
                self._old = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


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
                 l2_per_sample: bool = False,
                 reduce: Callable[[Array, int], None] | None = None) -> None:
        self.net, self.optimizer, self.lam = net, optimizer, lam
        self.l2_per_sample, self.reduce = l2_per_sample, reduce
        self.fast = None
        if net.fast_path:
            theta = net.theta
            self.fast = net.backend.fast_step(theta[0::2], theta[1::2], net.activation,
                                              net.output, net.loss, lam, optimizer, l2_per_sample)
        if self.fast is not None:  # views of its flat buffer
            net.theta = [p for pair in zip(self.fast.W, self.fast.b) for p in pair]
            self.fast.reduce = reduce

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
        if self.l2_per_sample and lam and Ab.shape[0]:
            lam /= Ab.shape[0] if Vb is None else float(self.net.backend.to_numpy(xp.sum(Vb)))
        return step(self.net, self.optimizer, Ab, Yb, lam, Vb, self.reduce)


def step(net: MLP, optimizer: Optimizer, A: Array, Y: Array, lam: float,
         v: Array | None = None, reduce: Callable[[Array, int], None] | None = None) -> Array:
    """One mini-batch of Algorithm 1.9, steps 3(a)-(e), portable; returns J_B (Eqn 3).

    ``reduce(buffer, n)`` (data-parallel training) receives all gradients packed into one
    contiguous buffer and turns them into the global batch's gradient in place."""
    xp = net.xp
    params = net.theta
    n = A.shape[0]
    if n:
        J, grads = net.gradients(A, Y, lam, v)
        flat = [g for pair in grads for g in pair]
    else:  # an empty shard of a distributed batch
        J, flat = 0.0, [xp.zeros_like(p) for p in params]
    if reduce is not None:
        buf = xp.concat([xp.reshape(g, (-1,)) for g in flat])
        reduce(buf, n)
        sizes = [math.prod(g.shape) for g in flat]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        flat = [xp.reshape(buf[o:o + k], g.shape) for o, k, g in zip(offsets, sizes, flat)]
    net.theta = optimizer.step(net.xp, params, flat)
    return J


def evaluate(net: MLP, A: Array, Y: Array, lam: float) -> float:
    """Eqn (3) on (A, Y) without updating anything."""
    return float(net.backend.to_numpy(net.risk(A, Y, lam)))


def _report(epoch: int, epochs: int, h: History) -> None:
    line = f"epoch {epoch:>{len(str(epochs))}}/{epochs}  loss {h.loss[-1]:.6g}"
    if h.val_loss:
        line += f"  val_loss {h.val_loss[-1]:.6g}"
    line += f"  {h.seconds[-1]:.2f}s  {h.samples_per_second[-1]:,.0f} samples/s"
    print(line, file=sys.stderr, flush=True)
