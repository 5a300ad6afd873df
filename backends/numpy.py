"""NumPy on the CPU: the default backend, and the host side of every other one."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from backends._base import Backend
from backends.ndarray_step import CANONICAL, NDArrayStep


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
                  lam: float, optimizer: Any, l2_per_sample: bool = False) -> Any:
        if CANONICAL.get(output) != loss:
            return None
        step = NDArrayStep(np, W, b, hidden, output, lam, optimizer, _take, l2_per_sample)
        step.limit_threads = _one_blas_thread
        return step


_CONTROLLER: Any = None


def _one_blas_thread() -> AbstractContextManager[Any]:
    """A context in which NumPy's BLAS runs on one thread (threadpoolctl; a no-op without it).

    For small products, handing work to a second BLAS thread costs more than it saves, and its
    spinning competes with the main thread for the core (measured in bench/: on the 2-core
    machine, deep went from 0.68x to 0.84x of JAX's throughput and small from 0.96x to 1.10x).
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _CONTROLLER = False
        else:
            _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas") if _CONTROLLER else nullcontext()


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
