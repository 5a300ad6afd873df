"""NumPy on the CPU: the default backend, and the host side of every other one."""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from backends._base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    _root = "numpy"

    def _from_numpy(self, host: np.ndarray) -> Any:
        return host

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def _array_device(self, array: Any) -> Any:
        return "cpu"


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
    return np.asarray(data)
