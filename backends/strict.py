"""array_api_strict: the Array API standard and nothing more, on its CPU and fake devices.

Running the test suite here proves the math uses only what the standard defines, and the
``device1`` device proves that nothing silently mixes devices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vnn.backends._base import Backend, optional_import


def _xp() -> Any:
    return optional_import(
        "array_api_strict", "backend='array_api_strict' needs it installed: pip install array-api-strict"
    )


_NAMES = ("CPU_DEVICE", "device1", "device2")


class StrictBackend(Backend):
    name = "array_api_strict"
    _root = "array_api_strict"

    def _from_numpy(self, host: np.ndarray) -> Any:
        return self.xp.asarray(host, device=self.device)

    def to_numpy(self, array: Any) -> np.ndarray:
        cpu = self.xp.Device("CPU_DEVICE")
        return np.from_dlpack(array.to_device(cpu)).copy()


def make(device: str | None) -> Backend:
    xp = _xp()
    name = "CPU_DEVICE" if device in (None, "cpu") else str(device)
    if name not in _NAMES:
        raise ValueError(
            f"device={device!r} is not a device of array_api_strict; expected one of {list(_NAMES)}"
        )
    return StrictBackend(xp, xp.Device(name), name)


def of(array: Any) -> Backend:
    for name in _NAMES:
        if array.device == _xp().Device(name):
            return make(name)
    raise ValueError(f"array_api_strict device {array.device!r} is not known to vnn")


def available() -> list[Backend]:
    try:
        _xp()
    except ImportError:
        return []
    return [make("CPU_DEVICE"), make("device1")]
