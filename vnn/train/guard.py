"""The divergence guard (a non-finite loss replays the epoch step by step) and Ctrl-C."""

from __future__ import annotations

import math
import signal
import threading
import warnings
from typing import TYPE_CHECKING, Any

from vnn.math.optimizers import Optimizer

if TYPE_CHECKING:
    from vnn.distributed import Communicator
    from vnn.network import MLP
    from vnn.train.trainer import Trainer

from vnn.train.history import DivergenceError

Array = Any




class Run:
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
              batches: list[slice], n: int, sigint: DeferSigint) -> int | None:
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
                warnings.warn(msg, RuntimeWarning, stacklevel=5)  # the caller's fit line
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
        if getattr(self.net.backend, "immutable", False):  # JAX: rebind, nothing is a view
            self.net.theta = params
            self.opt.state = state
        else:
            for p, s in zip(self._params(), params):
                p[...] = s
            for cur, old in zip(self.opt.state, state):
                for a, s in zip(cur, old):
                    a[...] = s
        self.opt.t = t


class DeferSigint:
    """While active (main thread only), the first Ctrl-C sets ``pending`` instead of raising, so
    that the step in progress finishes; a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self, active: bool = True) -> None:
        self.pending, self.active = False, active
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def __enter__(self) -> DeferSigint:
        if self.active and threading.current_thread() is threading.main_thread():
            try:
                self._old = signal.signal(signal.SIGINT, self._handler)
            except ValueError:  # not the main interpreter
                self._old = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
