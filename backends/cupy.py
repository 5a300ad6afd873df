"""CuPy on an NVIDIA GPU: ``device="cuda"`` or ``"cuda:N"``."""

from __future__ import annotations

from typing import Any

import numpy as np
from vnn.backends._base import Backend, optional_import


def _cupy() -> Any:
    return optional_import(
        "cupy",
        "device='cuda' needs CuPy: pip install 'vanilla-nn[cuda12]' (CUDA 12) or "
        "'vanilla-nn[cuda13]' (CUDA 13)",
    )


class CupyBackend(Backend):
    name = "cupy"
    _root = "cupy"

    def _from_numpy(self, host: np.ndarray) -> Any:
        with self.device:
            return _cupy().asarray(host)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array.get())

    def synchronize(self) -> None:
        self.device.synchronize()

    def on_host(self) -> bool:
        return False

    def available_memory(self) -> int | None:
        """The GPU's free memory plus what CuPy's memory pool holds unused (it reuses that)."""
        try:
            with self.device:
                free, _ = self.device.mem_info
                return int(free) + int(_cupy().get_default_memory_pool().free_bytes())
        except Exception:  # a driver that cannot tell: only the sanity limit applies
            return None

    def activate(self) -> Any:
        # array-api-compat's CuPy creation functions ignore device=; the current device decides.
        return self.device

    def fast_step(self, W: list[Any], b: list[Any], hidden: list[str], output: str, loss: str,
                  lam: float, optimizer: Any, l2_per_sample: bool = False,
                  steps: int | None = None, batch: int | None = None) -> Any:
        """The preallocated step, each formula one CUDA kernel (``kernel``)."""
        from vnn.step import preallocated

        if not preallocated.supports(output, loss):
            return None
        cupy = _cupy()
        with self.device:
            # batched=False: CuPy runs a 3-d matmul through cublasGemmStridedBatchedEx with the
            # legacy compute type (TF32 never applies) and copies non-contiguous operands; 2-d
            # products per layer take the regular GEMM path
            return preallocated.PreallocatedStep(cupy, W, b, hidden, output, lam, optimizer,
                                                 _take, l2_per_sample, kernel=kernel,
                                                 batched=False)

    def collective(self, mpi_comm: Any) -> Any:
        """An NCCL communicator over the ranks of ``mpi_comm`` (unique id sent by MPI), or None
        when CuPy was built without NCCL."""
        try:
            from cupy.cuda import nccl
        except ImportError:
            return None
        if not getattr(nccl, "available", False):  # CuPy 14 without libnccl: `available = False`
            return None
        rank, size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        uid = mpi_comm.bcast(nccl.get_unique_id() if rank == 0 else None, root=0)
        return _Nccl(nccl, nccl.NcclCommunicator(size, uid, rank), self)


class _Nccl:
    """Sum a contiguous device buffer over the ranks, in place, on the current stream."""

    def __init__(self, nccl: Any, comm: Any, backend: CupyBackend) -> None:
        self.nccl, self.comm, self.backend = nccl, comm, backend

    def allreduce_(self, buf: Any) -> None:
        nccl = self.nccl  # enqueued on the current stream, after the kernels that wrote buf
        kind = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}[buf.dtype.name]
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kind, nccl.NCCL_SUM,
                            _cupy().cuda.get_current_stream().ptr)


def _take(AT: Any, cols: Any, out: Any) -> Any:
    return _cupy().take(AT, cols, axis=1, out=out)


def kernel(name: str, inputs: list[str], outputs: list[str], body: str) -> Any:
    """``body`` (C statements on elements of type ``T``) as a CUDA elementwise kernel, compiled
    on first use; called as ``k(*inputs, *outputs)``, the outputs updated in place."""
    return _cupy().ElementwiseKernel(", ".join(f"T {n}" for n in inputs),
                                     ", ".join(f"T {n}" for n in outputs), body, name)


def set_tf32(enabled: bool) -> None:
    """Let cuBLAS round float32 matrix products' inputs to TF32 (tensor cores), or not (CuPy's
    default, full float32). Without a usable GPU there is nothing to switch (CuPy's
    ``set_compute_type`` would query a device): :func:`make` applies the setting when one is."""
    if not _gpus():
        return
    from cupy._core import _routines_linalg as linalg

    tf32, default = 7, 1  # CuPy's COMPUTE_TYPE_TF32 and COMPUTE_TYPE_DEFAULT
    linalg.set_compute_type(np.float32, tf32 if enabled else default)


def _index(device: str | None) -> int:
    if device in (None, "cuda"):
        return int(_cupy().cuda.runtime.getDevice())
    text = str(device)
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise ValueError(f"device={device!r} is not a CUDA device; expected 'cuda' or 'cuda:N'")


def _gpus() -> int:
    """How many GPUs CuPy can use: 0 when the CUDA runtime cannot reach one (no driver, a driver
    older than the runtime, no device)."""
    try:
        return int(_cupy().cuda.runtime.getDeviceCount())
    except Exception:  # CUDARuntimeError, or a CuPy that cannot load its CUDA libraries
        return 0


def make(device: str | None) -> Backend:
    cupy = _cupy()
    import array_api_compat.cupy as xp_cupy

    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError: no driver, an old driver, no GPU
        raise ValueError(f"device={device!r}: no CUDA device is visible to CuPy here "
                         f"({type(exc).__name__}: {exc}); use device='cpu'") from None
    if count < 1:
        raise ValueError(f"device={device!r}: no CUDA device is visible to CuPy here; use "
                         "device='cpu'")
    index = _index(device)
    if index >= count:
        raise ValueError(f"device={device!r}: CuPy sees {count} GPU(s) (cuda:0..cuda:{count - 1})")
    from vnn.backends import tf32_setting

    if tf32_setting() is not None:  # only when asked: CUPY_TF32=1 and CuPy's default stand
        set_tf32(bool(tf32_setting()))
    return CupyBackend(xp_cupy, cupy.cuda.Device(index), f"cuda:{index}")


def of(array: Any) -> Backend:
    return make(f"cuda:{array.device.id}")


def available() -> list[Backend]:
    return [make("cuda:0")] if _gpus() else []  # none without CuPy, a driver or a GPU
