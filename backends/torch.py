"""PyTorch tensors (CPU or CUDA) through array-api-compat's torch namespace."""

from __future__ import annotations

from typing import Any

import numpy as np
from vnn.backends._base import Backend, optional_import


def _torch() -> Any:
    return optional_import(
        "torch", "backend='torch' needs PyTorch: pip install 'vanilla-nn[torch]'"
    )


class TorchBackend(Backend):
    name = "torch"
    _root = "torch"

    def _from_numpy(self, host: np.ndarray) -> Any:
        torch = _torch()
        return torch.as_tensor(host, device=self.device)

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.detach().cpu().numpy().copy()  # a snapshot, never a view of the tensor

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            _torch().cuda.synchronize(self.device)

    def on_host(self) -> bool:
        return bool(self.device.type == "cpu")

    def available_memory(self) -> int | None:
        """Host memory on the CPU; on CUDA the GPU's free memory plus what torch's caching
        allocator has reserved but not handed out (it reuses that)."""
        if self.on_host():
            return super().available_memory()
        cuda = _torch().cuda
        try:
            free, _ = cuda.mem_get_info(self.device)
            return int(free) + int(cuda.memory_reserved(self.device)
                                   - cuda.memory_allocated(self.device))
        except Exception:  # a driver that cannot tell: only the sanity limit applies
            return None


def set_tf32(enabled: bool) -> None:
    """Let float32 matrix products on CUDA use TF32 tensor cores, or not (PyTorch's default)."""
    _torch().backends.cuda.matmul.allow_tf32 = enabled


def make(device: str | None) -> Backend:
    torch = _torch()
    import array_api_compat.torch as xp_torch

    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; expected 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is a {dev.type!r} device, which vnn does not train "
                         "on with torch; expected 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r}: torch sees no CUDA GPU here")
        from vnn.backends import tf32_setting

        if tf32_setting() is not None:  # only when asked: a user's own torch setting stands
            set_tf32(bool(tf32_setting()))
        dev = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)
    return TorchBackend(xp_torch, dev, str(dev))


def of(array: Any) -> Backend:
    return make(str(array.device))


def available() -> list[Backend]:
    try:
        torch = _torch()
    except ImportError:
        return []
    out = [make("cpu")]
    if torch.cuda.is_available():
        out.append(make("cuda:0"))
    return out
