"""NumPy on the CPU: the default backend, and the host side of every other one."""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np
from vnn.backends._base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    _root = "numpy"

    def _from_numpy(self, host: np.ndarray) -> Any:
        return host

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.array(array, copy=True)  # a snapshot: the model updates its arrays in place

    def _array_device(self, array: Any) -> Any:
        return "cpu"

    def fast_step(self, W: list[Any], b: list[Any], hidden: list[str], output: str, loss: str,
                  lam: float, optimizer: Any, l2_per_sample: bool = False,
                  steps: int | None = None, batch: int | None = None) -> Any:
        """The preallocated step; with numba, its formulas as compiled loops for a job of
        ``steps`` steps of ``batch`` samples long enough to repay compiling (``VNN_NUMBA=1``: any
        job)."""
        from vnn.backends import loops

        from vnn.step import preallocated
        from vnn.step.executors import Loops

        if not preallocated.supports(output, loss):
            return None
        executor = None
        sizes = [W[0].shape[1]] + [w.shape[0] for w in W]
        seconds = None if steps is None else loops.numpy_seconds(sizes, batch or 1, steps)
        if loops.wanted(seconds):  # numba: the fused plan, each formula one compiled loop
            def executor(xnp: Any, dtype: Any) -> Loops:
                return Loops(xnp, dtype, loops.kernel, loops.calls_for(dtype), loops.columns)
        return preallocated.PreallocatedStep(np, W, b, hidden, output, lam, optimizer, _take,
                                             l2_per_sample, executor=executor, chunk=CHUNK)


#: elements of the flat buffer per run of an update's NumPy calls: its operands stay in the cache
#: from one call to the next. Measured here (784-2048-2048-10, 5.8M float32 parameters; L2 512 KiB
#: a core, L3 32 MiB): Adam's 13 calls take 48-57 ms over the whole buffer, 21 ms in runs of 2^18
#: (23 ms for 2^17, 24 ms for 2^19); momentum's 5 calls 17-19 ms, 9-12 ms.
CHUNK = 2 ** 18


def _take(AT: np.ndarray, cols: np.ndarray, out: np.ndarray) -> np.ndarray:
    # Gathers the columns ``cols`` of AT (samples as columns). mode="clip" skips the
    # bounds-checking copy that mode="raise" makes with out=; the indices come from a
    # permutation of range(n), so they are always in bounds.
    return np.take(AT, cols, axis=1, out=out, mode="clip")


def make(device: str | None) -> Backend:
    if device not in (None, "cpu"):
        raise ValueError(f"device={device!r} is not available to NumPy; expected 'cpu'")
    return NumpyBackend(xp_numpy, "cpu", "cpu")


def of(array: Any) -> Backend:
    return make("cpu")


def available() -> list[Backend]:
    return [make("cpu")]


def host_rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed)


def host_asarray(data: Any) -> np.ndarray:
    return np.array(data, copy=True)
