"""The training loop of Algorithm 1.9: epochs of shuffled mini-batches, validation, history."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any

from vnn.math.optimizers import Optimizer
from vnn.network import check_l2

if TYPE_CHECKING:
    from vnn.network import MLP

from vnn.train.arguments import check_arguments, positive_int, prepare_data
from vnn.train.early import EarlyStopping
from vnn.train.guard import DeferSigint, Run
from vnn.train.history import History, NothingToTrainWarning, Progress
from vnn.train.lbfgs import LBFGS
from vnn.train.resume import resume_from
from vnn.train.trainer import Trainer, evaluate

Array = Any




def fit(net: MLP, X: Any, y: Any, optimizer: Optimizer | None = None, epochs: int = 10,
        batch_size: int | None = None, l2: float = 0.0, shuffle: bool = True,
        validation_data: tuple[Any, Any] | None = None, progress: bool = False,
        callback: Callable[[int, History], Any] | None = None,
        sample_weight: Any = None, on_nonfinite: str = "raise", checkpoint: Any = None,
        checkpoint_every: int = 1, resume: Any = None, distributed: Any = False,
        early_stopping: int | None = None) -> History:
    """Algorithm 1.9: repeat for ``epochs`` over mini-batches B of ``X``, ``y``:
    (a) forward, Eqns (1)-(2); (b) loss, Eqn (3); (c) backward, Eqns (10)-(13);
    (d) gradients, Eqn (14); (e) update with ``optimizer`` (default ``Adam()``).

    ``batch_size`` defaults to min(128, n). With ``shuffle`` the batch order is a fresh permutation
    each epoch, drawn from the model's seeded host generator. ``progress`` shows a tqdm bar
    of the epochs with the loss and val_loss on stderr (a widget in notebooks; nothing when stderr
    is not a terminal). ``callback(epoch, history)``, when given, is called after each epoch (1-based) with
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

    ``early_stopping=patience`` (with ``validation_data``) stops when the validation loss has
    not gone below its best for ``patience`` epochs and leaves the model with the best epoch's
    parameters; ``history.best_epoch`` names it and ``history.stopped`` is ``"early"``. (A
    ``checkpoint`` holds the parameters of the epoch it was written at, not the best ones, and
    ``resume`` starts the patience count afresh.)

    ``optimizer=vnn.LBFGS(...)`` trains full-batch with SciPy's L-BFGS-B instead (see
    :mod:`vnn.train.lbfgs`): the history has one entry per iteration, up to ``LBFGS.max_iter``
    (default: ``epochs``); ``batch_size`` must be None or at least n; ``checkpoint``, ``resume``
    and ``distributed`` are for the mini-batch optimizers only.
    """
    epochs = positive_int("epochs", epochs, 0)
    lam = check_l2(l2)
    optimizer = check_arguments(optimizer, resume, shuffle, progress, callback, on_nonfinite,
                                 validation_data)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every, 1)
    if early_stopping is not None:
        early_stopping = positive_int("early_stopping", early_stopping, 1)
        if validation_data is None:
            raise ValueError(f"early_stopping={early_stopping} watches the validation loss; "
                             "pass validation_data=(X_val, y_val)")
    if batch_size is not None:
        batch_size = positive_int("batch_size", batch_size, 1)
    from vnn.distributed import communicator

    if isinstance(optimizer, LBFGS):
        if early_stopping is not None:
            raise ValueError(f"early_stopping={early_stopping} is for the mini-batch optimizers; "
                             "vnn.LBFGS stops on its own tolerance (LBFGS(tol=...))")
        return _fit_lbfgs(net, X, y, optimizer, epochs, batch_size, lam, validation_data,
                          progress, callback, sample_weight, on_nonfinite, checkpoint, resume,
                          distributed)
    comm = communicator(net.backend, distributed)
    lead = comm is None or comm.rank == 0
    if checkpoint is not None and lead:
        from vnn.io import check_writable

        check_writable(checkpoint, "checkpoint")  # before any training
    A, Y, V, val = prepare_data(net, X, y, sample_weight, validation_data, optimizer, batch_size, lam)
    n = A.shape[0]
    positive = positive_weights(net.backend, V)
    batch_size = min(128, n) if batch_size is None else batch_size
    history = History()
    if resume is not None:
        optimizer, history = resume_from(net, resume, optimizer)
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
    # the job's length, from the epochs asked for (not those left after resuming: an interrupted
    # and resumed run chooses the step the unbroken one did)
    steps = epochs * -(-n // batch_size)
    trainer = Trainer(net, optimizer, lam, reduce=None if comm is None else comm.reduce_gradient,
                      steps=steps, batch=min(batch_size, n))
    run = Run(net, trainer, optimizer, on_nonfinite, comm, batch_size)
    bar = Progress(bool(progress) and lead, epochs, history.epochs)
    early = None if early_stopping is None else EarlyStopping(early_stopping)
    with net.backend.errstate(), DeferSigint(comm is None) as sigint, closing(bar):
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
                              RuntimeWarning, stacklevel=4)
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
            bar(history)
            if callback is not None:
                callback(epoch, history)
            if early is not None and early.stop(net, epoch, history):
                history.stopped = "early"
                break
    if early is not None and history.stopped not in ("interrupted", "nonfinite"):
        early.restore(net)  # (stopped otherwise, the model keeps its last finite step)
    return history


def _fit_lbfgs(net: MLP, X: Any, y: Any, optimizer: LBFGS, epochs: int, batch_size: int | None,
               lam: float, validation_data: Any, progress: bool, callback: Any,
               sample_weight: Any, on_nonfinite: str, checkpoint: Any, resume: Any,
               distributed: Any) -> History:
    """``fit`` with L-BFGS: its own arguments checked, the data moved once, then
    :func:`vnn.train.lbfgs.fit`."""
    from vnn import memory
    from vnn.train import lbfgs

    lbfgs.require_scipy()
    for name, value, default in (("checkpoint", checkpoint, None), ("resume", resume, None),
                                 ("distributed", distributed, False)):
        if value is not default:
            raise ValueError(f"{name}={value!r} is not available with optimizer=vnn.LBFGS "
                             f"(full-batch, SciPy's L-BFGS-B); expected {name}={default!r}, or "
                             "a mini-batch optimizer (vnn.SGD, vnn.Momentum, vnn.Adam)")
    n = memory.rows(X)
    if batch_size is not None and batch_size < n:
        raise ValueError(f"batch_size={batch_size} is invalid with optimizer=vnn.LBFGS, which "
                         f"uses all {n} samples in every iteration; expected None")
    A, Y, V, val = prepare_data(net, X, y, sample_weight, validation_data, optimizer, max(n, 1),
                                lam)
    with net.backend.errstate():
        return lbfgs.fit(net, A, Y, V, val, lam, optimizer, epochs, progress, callback,
                         on_nonfinite)


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
