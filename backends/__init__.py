"""Array libraries behind vnn: which library, which device, moving data there and back.

This package is the only place that imports numpy, cupy, torch, array_api_strict or jax. The math in
``vnn`` receives an Array API namespace ``xp`` from a :class:`Backend` and never knows which
library runs it.

>>> from vnn.backends import resolve
>>> be = resolve(device="cpu")
>>> be.name, be.device_name
('numpy', 'cpu')
"""

from __future__ import annotations

import importlib
from typing import Any

from vnn.backends._base import Backend, HostRNG, host_available_memory

__all__ = [
    "Backend",
    "HostRNG",
    "available",
    "backend_of",
    "host_available_memory",
    "host_rng",
    "resolve",
    "set_tf32",
    "tf32",
    "tf32_setting",
    "to_numpy",
]

#: backend name -> module that defines it
_MODULES = {
    "numpy": "vnn.backends.numpy",
    "cupy": "vnn.backends.cupy",
    "torch": "vnn.backends.torch",
    "array_api_strict": "vnn.backends.strict",
    "jax": "vnn.backends.jax",
}
_ALIASES = {"np": "numpy", "cp": "cupy", "pytorch": "torch", "strict": "array_api_strict"}


def _module(name: str) -> Any:
    key = _ALIASES.get(name, name)
    if key not in _MODULES:
        raise ValueError(
            f"backend={name!r} is not known; expected one of {sorted(_MODULES)} (or None to "
            "choose from device)"
        )
    return importlib.import_module(_MODULES[key])


def resolve(device: str | None = "cpu", backend: str | None = None) -> Backend:
    """Return the backend for ``device`` (and ``backend``, when given).

    ``device="cpu"`` picks NumPy; ``"cuda"`` or ``"cuda:N"`` picks CuPy on that GPU.
    ``backend="torch"`` or ``backend="array_api_strict"`` picks another Array API library, with
    that library's device names (``"cpu"``, ``"cuda:0"``; ``"CPU_DEVICE"``, ``"device1"``).
    """
    if device is not None and not isinstance(device, str):
        device = str(device)
    if backend is None:
        if device is None or device == "cpu":
            backend = "numpy"
        elif device == "cuda" or device.startswith("cuda:"):
            backend = "cupy"
        else:
            raise ValueError(
                f"device={device!r} is not known without a backend; expected 'cpu', 'cuda' or "
                "'cuda:N', or name the library with backend='torch' | 'array_api_strict' | ..."
            )
    elif not isinstance(backend, str):
        raise TypeError(f"backend must be a string or None, got {type(backend).__name__}")
    if _ALIASES.get(backend, backend) == "cupy":
        _check_cuda_device(device)  # before CuPy is imported (it may be missing)
    return _module(backend).make(device)


def _check_cuda_device(device: str | None) -> None:
    """``device`` of CuPy: None, ``"cuda"`` or ``"cuda:N"`` with N an integer >= 0."""
    if device is None or device == "cuda":
        return
    index = device[5:] if device.startswith("cuda:") else ""
    if not (index.isascii() and index.isdigit()):
        raise ValueError(f"device={device!r} is not a CUDA device; expected 'cuda' or 'cuda:N' "
                         "with N an integer >= 0 (cuda:0 is the first GPU)")


_TF32: list[bool | None] = [None]  # None: never set, each library keeps its own setting


def tf32() -> bool:
    """Whether float32 matrix products on GPUs may use TF32 (see :func:`set_tf32`)."""
    return bool(_TF32[0])


def tf32_setting() -> bool | None:
    """What :func:`set_tf32` last set, or None when it was never called (CuPy's ``CUPY_TF32``
    and torch's ``allow_tf32`` are then left as they are)."""
    return _TF32[0]


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid, the default) TF32 tensor cores in float32 matrix products on NVIDIA GPUs
    (CuPy and PyTorch CUDA). TF32 keeps 10 of float32's 23 mantissa bits in the products' inputs:
    faster, and about 1e-3 relative error instead of 1e-7. Other dtypes and the CPU are unaffected.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled={enabled!r} is not a bool; expected True or False")
    _TF32[0] = enabled
    import sys

    for name in ("cupy", "torch"):  # libraries already in use; others take it when first made
        if name in sys.modules:
            _module(name).set_tf32(enabled)


def backend_of(array: Any) -> Backend | None:
    """The backend an array already lives on, or ``None`` for host data (NumPy, lists)."""
    root = type(array).__module__.split(".")[0]
    if root in ("cupy", "torch", "array_api_strict"):
        return _module(root).of(array)
    if root in ("jax", "jaxlib"):
        return _module("jax").of(array)
    return None


def available() -> list[Backend]:
    """Every backend importable here, on each device worth testing.

    numpy; array_api_strict on its default device and on ``device1``; torch on the CPU when
    installed; cupy when a GPU is present.
    """
    out: list[Backend] = []
    for name in _MODULES:
        out.extend(_module(name).available())
    return out


def host_rng(seed: int | None) -> HostRNG:
    """The host-side random generator (NumPy's PCG64) that draws weights and batch orders."""
    from vnn.backends import numpy as _np_backend

    return _np_backend.host_rng(seed)


def to_numpy(array: Any) -> Any:
    """Copy any supported array (NumPy, CuPy, torch, array_api_strict) to a NumPy array."""
    be = backend_of(array)
    if be is None:
        from vnn.backends import numpy as _np_backend

        return _np_backend.host_asarray(array)
    return be.to_numpy(array)
