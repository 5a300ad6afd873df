"""JAX arrays (``jax.numpy``, an Array API namespace) on JAX's CPU, GPU or TPU devices.

JAX arrays are immutable, so this backend has no preallocated step: its step is the portable one
(``vnn.step.portable``: Eqns 1-14 and the optimizer's formula, each array new) traced once per
batch shape under ``jax.jit`` (:class:`JitStep`), the optimizer's update the functional form of its
formula. Nothing about the math is restated here.

float64 needs JAX's 64-bit mode (``jax.config.update("jax_enable_x64", True)``, a process-wide
setting this library leaves to its user): without it a float64 model is refused with that advice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vnn.backends._base import Backend, optional_import


def _jax() -> Any:
    return optional_import("jax", "backend='jax' needs JAX: pip install 'vanilla-nn[jax]'")


class JaxBackend(Backend):
    name = "jax"
    _root = "jaxlib"
    #: arrays cannot be written in place: training rebinds the model's parameter list instead
    immutable = True

    def _from_numpy(self, host: np.ndarray) -> Any:
        jax = _jax()
        if host.dtype == np.float64 and not jax.config.read("jax_enable_x64"):
            raise ValueError("dtype='float64' on backend='jax' needs JAX's 64-bit mode: call "
                             "jax.config.update('jax_enable_x64', True) before using JAX, or "
                             "use dtype='float32'")
        return jax.device_put(host, self.device)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.array(array, copy=True)

    def owns(self, array: Any) -> bool:
        return type(array).__module__.split(".")[0] in ("jax", "jaxlib")

    def synchronize(self) -> None:
        """JAX dispatches asynchronously; vnn reads every result it waits for (J, parameters),
        which blocks, so there is nothing queued to wait for here beyond what a read does."""

    def on_host(self) -> bool:
        return bool(self.device.platform == "cpu")

    def available_memory(self) -> int | None:
        if self.on_host():
            return super().available_memory()
        try:
            stats = self.device.memory_stats() or {}
            return int(stats["bytes_limit"]) - int(stats["bytes_in_use"])
        except Exception:  # a device that cannot tell: only the sanity limit applies
            return None

    def fast_step(self, W: list[Any], b: list[Any], hidden: list[str], output: str, loss: str,
                  lam: float, optimizer: Any, l2_per_sample: bool = False,
                  steps: int | None = None, batch: int | None = None) -> Any:
        from vnn.math.optimizers import Optimizer
        from vnn.step.jitted import JitStep

        if type(optimizer).update is not Optimizer.update:  # its own update: the portable step
            return None
        return JitStep(self.xp, _jax().jit, np.asarray, W, b, hidden, output, loss, lam,
                       optimizer, l2_per_sample)


def _device(device: str | None) -> Any:
    jax = _jax()
    text = "cpu" if device is None else str(device)
    platform, _, index = text.partition(":")
    platform = {"cuda": "gpu"}.get(platform, platform)
    if platform not in ("cpu", "gpu", "tpu") or (index and not index.isdigit()):
        raise ValueError(f"device={device!r} is not a JAX device; expected 'cpu', 'gpu', "
                         "'gpu:N', 'cuda:N' or 'tpu:N'")
    try:
        found = jax.devices(platform)
    except RuntimeError:
        found = []
    if not found:
        raise ValueError(f"device={device!r}: JAX has no {platform} device here "
                         f"(it has {[str(d) for d in jax.devices()]})")
    k = int(index) if index else 0
    if k >= len(found):
        raise ValueError(f"device={device!r}: JAX has {len(found)} {platform} device(s)")
    return found[k]


def make(device: str | None) -> Backend:
    jax = _jax()
    dev = _device(device)
    xp = jax.numpy
    return JaxBackend(xp, dev, "cpu" if dev.platform == "cpu" else f"{dev.platform}:{dev.id}")


def of(array: Any) -> Backend:
    dev = array.device
    return make("cpu" if dev.platform == "cpu" else f"{dev.platform}:{dev.id}")


def available() -> list[Backend]:
    try:
        jax = _jax()
    except ImportError:
        return []
    out = [make("cpu")]
    for platform in ("gpu", "tpu"):
        try:
            if jax.devices(platform):
                out.append(make(f"{platform}:0"))
        except RuntimeError:
            pass
    return out
