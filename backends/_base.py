"""The :class:`Backend` every array library implements: namespace, device, transfers."""

from __future__ import annotations

import importlib
import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np


class HostRNG(Protocol):
    """What vnn draws on the host: normal weights and batch orders (a ``numpy.random.Generator``)."""

    def standard_normal(self, size: Any = ...) -> Any: ...

    def permutation(self, x: Any) -> Any: ...


DTYPES = ("float32", "float64")


def optional_import(module: str, hint: str) -> Any:
    """Import an optional array library, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{hint}: {module} is not installed") from exc


class Backend:
    """One array library on one device.

    Subclasses set ``name`` and implement ``_from_numpy``, ``to_numpy``, ``_owns`` and
    ``synchronize``. Everything else is shared.
    """

    name: str = "?"
    #: whether arrays cannot be written in place (JAX): training rebinds instead
    immutable = False

    def __init__(self, xp: Any, device: Any, device_name: str) -> None:
        self.xp = xp
        self.device = device
        self.device_name = device_name

    # -- what each library implements ---------------------------------------------------------
    def _from_numpy(self, host: np.ndarray) -> Any:
        raise NotImplementedError

    def to_numpy(self, array: Any) -> np.ndarray:
        """Copy an array of this backend to a NumPy array on the host."""
        raise NotImplementedError

    def _array_device(self, array: Any) -> Any:
        """The device of an array of this library (compared with ``self.device``)."""
        return array.device

    def synchronize(self) -> None:
        """Wait until queued device work has finished (a no-op on the CPU)."""

    def fast_step(self, W: list[Any], b: list[Any], hidden: list[str], output: str, loss: str,
                  lam: float, optimizer: Any, l2_per_sample: bool = False,
                  steps: int | None = None, batch: int | None = None) -> Any:
        """A preallocated training step for this library (``vnn.step.preallocated``), or ``None``."""
        return None

    def collective(self, mpi_comm: Any) -> Any:
        """A device-to-device allreduce between the ranks of ``mpi_comm`` (NCCL on CuPy), or
        None: data-parallel training then goes through MPI on the host."""
        return None

    def on_host(self) -> bool:
        """Whether this backend's arrays live in host memory (NumPy, array_api_strict, torch on
        the CPU): the host draw of the initial weights then shares that memory."""
        return True

    def available_memory(self) -> int | None:
        """Bytes that new arrays of this backend can still take (host memory here; a GPU's free
        memory on CuPy and torch CUDA), or None when unknown. Sizes are checked against it
        before anything large is allocated (:mod:`vnn.memory`)."""
        return host_available_memory()

    def errstate(self) -> AbstractContextManager[Any]:
        """A context in which floating-point overflow and invalid operations are silent: training
        checks for NaN and infinity itself and reports where they arose."""
        import numpy as np

        return np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")

    def activate(self) -> AbstractContextManager[Any]:
        """A context in which new arrays land on this device (CuPy's current-device model)."""
        return nullcontext()

    # -- shared ---------------------------------------------------------------------------------
    def dtype(self, name: str) -> Any:
        """The namespace's float dtype called ``name`` ("float32" or "float64")."""
        if name not in DTYPES:
            raise ValueError(f"dtype={name!r} is not supported; expected one of {list(DTYPES)}")
        return getattr(self.xp, name)

    def from_host(self, data: Any, dtype: str | None = None, copy: bool = False) -> Any:
        """Move host data (a NumPy array, a list, a scalar) to this backend's device.

        With ``copy`` the result never shares memory with ``data`` (always so off the CPU).
        """
        host = np.asarray(data, dtype=dtype)
        if copy or not host.flags.writeable:
            host = np.array(host, order="C", copy=True)
        return self._from_numpy(np.ascontiguousarray(host))

    def accept(self, data: Any, name: str, dtype: str | None = None, copy: bool = False) -> Any:
        """``data`` as an array of this backend, for the argument called ``name``.

        Host data (NumPy arrays, lists, scalars) is checked and moved to the device. An array
        that already belongs to this library and device is used where it is (cast to ``dtype``
        if it has another). An array of another library or device is refused with a clear error:
        vnn never moves data between devices behind the user's back. With ``copy`` the result
        never shares memory with ``data`` (for arrays the model will own and update).
        """
        if self.owns(data):
            if not self.same_device(data):
                raise ValueError(
                    f"{name} is on device {self._array_device(data)!r} but the model is on "
                    f"{self.device_name!r} ({self.name}); move it there first"
                )
            kind = _kind_of(self.xp, data)
            _check_kind(kind, name, f"{self.name} array of dtype {data.dtype}")
            if dtype is not None and data.dtype != self.dtype(dtype):
                return self.xp.astype(data, self.dtype(dtype))
            return self.xp.asarray(data, copy=True) if copy else data
        root = type(data).__module__.split(".")[0]
        if root in ("cupy", "torch", "array_api_strict", "jax", "jaxlib", "dask"):
            raise TypeError(
                f"{name} is a {root} array but the model runs on {self.name} "
                f"({self.device_name!r}); pass a {self.name} array on that device or host data "
                "(NumPy / lists), or build the model with backend=/device= for that library"
            )
        try:
            host = np.asarray(data)
        except Exception as exc:
            raise TypeError(f"{name} could not be read as an array: {exc}") from exc
        _check_kind(host.dtype.kind, name, f"array of dtype {host.dtype}")
        return self.from_host(host, dtype, copy)

    def owns(self, array: Any) -> bool:
        """Whether ``array`` is of this library (on any device)."""
        return type(array).__module__.split(".")[0] == self._root

    _root: str = "?"

    def same_device(self, array: Any) -> bool:
        return bool(self._array_device(array) == self.device)

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, device={self.device_name!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Backend)
            and other.name == self.name
            and other.device_name == self.device_name
        )

    def __hash__(self) -> int:
        return hash((self.name, self.device_name))


def host_available_memory() -> int | None:
    """Bytes of host memory this process can still allocate without swapping, or None.

    The kernel's estimate (``MemAvailable`` of ``/proc/meminfo``), else the free pages that
    ``os.sysconf`` reports; capped by the room a cgroup v2 memory limit leaves (containers) and
    by what an address-space limit (``ulimit -v``) leaves.
    """
    found = _meminfo_available()
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            found = None
    for room in (_cgroup_room(), _address_space_room()):
        if room is not None:
            found = room if found is None else min(found, room)
    return found


def _address_space_room() -> int | None:
    """What an address-space limit (``ulimit -v``, RLIMIT_AS) leaves of it, or None."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, IndexError, AttributeError):
        return None
    return max(0, int(limit) - used)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """memory.max − memory.current + inactive file cache (reclaimable) of this cgroup (v2)."""
    root = "/sys/fs/cgroup/"
    try:
        with open(root + "memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(root + "memory.current") as f:
            used = int(f.read())
        cache = 0
        with open(root + "memory.stat") as f:
            for line in f:
                if line.startswith("inactive_file "):
                    cache = int(line.split()[1])
        return max(int(limit) - used + cache, 0)
    except (OSError, ValueError, IndexError):
        return None


def _kind_of(xp: Any, array: Any) -> str:
    """NumPy-style dtype kind letter of an Array API array ('b', 'i', 'u', 'f', 'c')."""
    dt = array.dtype
    if dt == xp.bool:
        return "b"
    for kind, names in (("f", ("float32", "float64", "float16")),
                        ("c", ("complex64", "complex128")),
                        ("i", ("int8", "int16", "int32", "int64")),
                        ("u", ("uint8", "uint16", "uint32", "uint64"))):
        if any(hasattr(xp, n) and dt == getattr(xp, n) for n in names):
            return kind
    return "?"


def _check_kind(kind: str, name: str, what: str) -> None:
    if kind == "c":
        raise TypeError(f"{name} is complex ({what}); expected real numbers")
    if kind not in "biuf":
        raise TypeError(f"{name} is not numeric ({what}); expected an array of real numbers")
