"""Data-parallel training over MPI (mpi4py), with NCCL between GPUs when the model is on CuPy.

Every rank holds the whole model and trains on its shard of each global mini-batch (the style of
Horovod, ChainerMN and PyTorch DDP). After backprop (Eqns 10-14) each rank scales its averaged
gradient by its share of the global batch, ``n_r / |B|``; one allreduce over the flat gradient
buffer (all parameters, one dtype: a single bucket) then sums them into exactly the gradient of
Eqn (14) averaged over the global batch, and every rank applies the same optimizer step (Eqns
15-16, Adam). With equal shards this is the usual "sum and divide by the world size"; the weights
keep it exact for a last, smaller batch. Initial parameters and each epoch's batch order are
broadcast from rank 0.

Use it from a script started with ``mpiexec -n 4 python train.py``::

    net.fit(X, y, ..., distributed=True)     # every rank passes the same X, y and batch_size

Only rank 0 prints progress and writes checkpoints; every rank gets the same history.

Cost model of one step's allreduce (ring or recursive halving): about 2 (p − 1) / p × gradient
bytes / bandwidth, plus a latency term per message; see README ("Beyond one machine").
"""

from __future__ import annotations

import time
from typing import Any

Array = Any


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("distributed=True needs mpi4py and an MPI library; install them with "
                          "pip install \"vanilla-nn[mpi]\" (mpi4py and the mpich wheel) and start "
                          "the script with mpiexec -n <ranks>") from exc
    return MPI


class Communicator:
    """The world of ranks, and the collectives training needs, for one model's backend.

    Host arrays (NumPy) go through MPI; CuPy arrays through NCCL when CuPy has it (else through
    the host). ``seconds`` accumulates the time spent communicating (for the scaling benchmark).
    """

    def __init__(self, backend: Any, comm: Any = None) -> None:
        MPI = _mpi()
        self.MPI, self.comm = MPI, comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.backend = backend
        self.seconds = 0.0
        self.global_n = 0  # rows in the current global batch, set by the training loop
        self._device = backend.collective(self.comm) if self.size > 1 else None

    # -- collectives on device arrays -----------------------------------------------------------
    def allreduce_(self, buf: Array) -> None:
        """Sum a contiguous 1-d device buffer over all ranks, in place."""
        t0 = time.perf_counter()
        be = self.backend
        if self._device is not None:  # NCCL between GPUs (backends/cupy.py)
            self._device.allreduce_(buf)
        elif be.name == "numpy":
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        else:  # torch, array_api_strict, CuPy without NCCL: through the host
            host = be.to_numpy(buf)
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            buf[...] = be.from_host(host, str(host.dtype))
        self.seconds += time.perf_counter() - t0

    def bcast_(self, arr: Array) -> None:
        """Overwrite ``arr`` with rank 0's values (in place)."""
        be = self.backend
        if be.name == "numpy" and arr.flags.c_contiguous:
            self.comm.Bcast(arr, root=0)
            return
        host = be.to_numpy(arr)
        self.comm.Bcast(host, root=0)
        arr[...] = be.from_host(host, str(host.dtype))

    def sum(self, value: float) -> float:
        """A Python float summed over all ranks."""
        return float(self.comm.allreduce(value, op=self.MPI.SUM))

    def bcast(self, obj: Any) -> Any:
        return self.comm.bcast(obj, root=0)

    # -- training ---------------------------------------------------------------------------------
    def reduce_gradient(self, G: Array, n_local: int) -> None:
        """Turn this rank's gradient (averaged over its n_local rows) into the gradient averaged
        over the global batch, on every rank: G ← Σ_r (n_r / |B|) G_r."""
        if n_local != self.global_n:
            G *= n_local / self.global_n
        self.allreduce_(G)

    def shard(self, rows: Any, n_rows: int) -> Any:
        """This rank's part of a global batch: contiguous, sizes differing by at most one."""
        base, extra = divmod(n_rows, self.size)
        start = self.rank * base + min(self.rank, extra)
        stop = start + base + (1 if self.rank < extra else 0)
        if isinstance(rows, slice):
            return slice(rows.start + start, rows.start + stop)
        return rows[start:stop]


def communicator(backend: Any, distributed: Any) -> Communicator | None:
    """``fit(distributed=...)``: False/None for none, True for MPI's world, or a Communicator."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return Communicator(backend)
    if isinstance(distributed, Communicator):
        return distributed
    raise TypeError(f"distributed={distributed!r} is invalid; expected True, False or a "
                    "vnn.distributed.Communicator")
