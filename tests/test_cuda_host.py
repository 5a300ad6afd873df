"""The CUDA backend's host-side logic, checked without a GPU: NCCL or the host for collectives,
TF32 switching, and what ``device="cuda"`` says when no GPU is visible.

A stand-in ``cupy`` module (the attributes the backend uses, as CuPy 14 has them) drives the
branches that no machine without a GPU reaches otherwise; where the real CuPy is installed but
no GPU is usable, the same behaviour is checked on it too.
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
from vnn.backends import cupy as cupy_backend

import vnn
from vnn import backends


class CudaRuntimeError(RuntimeError):
    """What cupy.cuda.runtime raises without a usable driver (cudaErrorInsufficientDriver)."""


def _stand_in(monkeypatch, gpus, nccl_available=False):
    """Install a stand-in ``cupy`` with ``gpus`` devices (None: the runtime raises, as CuPy does
    with no driver or an old one); returns the record of the calls it saw."""
    seen: list[tuple] = []

    def count():
        if gpus is None:
            raise CudaRuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                                   "insufficient for CUDA runtime version")
        return gpus

    nccl = types.ModuleType("cupy.cuda.nccl")
    nccl.available = nccl_available  # CuPy 14 without libnccl: this attribute only
    if nccl_available:
        nccl.NCCL_FLOAT32, nccl.NCCL_FLOAT64, nccl.NCCL_SUM = 7, 8, 0
        nccl.get_unique_id = lambda: (1, 2, 3)

        class Communicator:
            def __init__(self, size, uid, rank):
                seen.append(("NcclCommunicator", size, uid, rank))

            def allReduce(self, *args):
                seen.append(("allReduce", *args))

        nccl.NcclCommunicator = Communicator
    cuda = types.ModuleType("cupy.cuda")
    cuda.nccl = nccl
    cuda.runtime = SimpleNamespace(getDeviceCount=count, getDevice=lambda: 0)
    cuda.get_current_stream = lambda: SimpleNamespace(ptr=4242)
    cuda.Device = lambda i: SimpleNamespace(id=i, synchronize=lambda: seen.append(("sync",)))
    linalg = types.ModuleType("cupy._core._routines_linalg")
    linalg.set_compute_type = lambda dtype, kind: seen.append(("set_compute_type", kind))
    core = types.ModuleType("cupy._core")
    core._routines_linalg = linalg
    cupy = types.ModuleType("cupy")
    cupy.cuda, cupy._core = cuda, core
    compat = types.ModuleType("array_api_compat.cupy")
    for name, module in {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.nccl": nccl,
                         "cupy._core": core, "cupy._core._routines_linalg": linalg,
                         "array_api_compat.cupy": compat}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return seen


class _MpiComm:
    def __init__(self, rank=0, size=2):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def bcast(self, obj, root=0):  # what rank 0 sent (the unique id is drawn there)
        return (1, 2, 3) if obj is None else obj


def _backend():
    return cupy_backend.CupyBackend(None, SimpleNamespace(synchronize=lambda: None), "cuda:0")


def test_without_nccl_the_collective_goes_through_the_host(monkeypatch):
    """CuPy 14 catches a missing libnccl itself: ``cupy.cuda.nccl`` imports and says
    ``available = False``. The backend then offers no device collective (MPI on the host)."""
    _stand_in(monkeypatch, gpus=1, nccl_available=False)
    assert _backend().collective(_MpiComm()) is None


@pytest.mark.parametrize("dtype,kind", [("float32", 7), ("float64", 8)])
def test_with_nccl_allreduce_sums_in_place_on_the_current_stream(monkeypatch, dtype, kind):
    seen = _stand_in(monkeypatch, gpus=1, nccl_available=True)
    coll = _backend().collective(_MpiComm(rank=1, size=4))
    assert seen == [("NcclCommunicator", 4, (1, 2, 3), 1)]
    buf = SimpleNamespace(dtype=np.dtype(dtype), data=SimpleNamespace(ptr=99), size=10)
    coll.allreduce_(buf)
    # send and receive buffers the same (in place), the sum, CuPy's current stream; no device
    # synchronisation first (NCCL on that stream runs after the kernels that wrote the buffer)
    assert seen[1:] == [("allReduce", 99, 99, 10, kind, 0, 4242)]


def test_set_tf32_without_a_usable_gpu_changes_nothing_and_device_cuda_says_so(monkeypatch):
    seen = _stand_in(monkeypatch, gpus=None)
    monkeypatch.setattr(backends, "_TF32", [None])
    vnn.set_tf32(True)  # CuPy imported, no driver: nothing to switch, no error
    vnn.set_tf32(False)
    assert ("set_compute_type", 7) not in seen
    with pytest.raises(ValueError, match=r"device='cuda': no CUDA device is visible to CuPy here "
                                         r"\(CudaRuntimeError: cudaErrorInsufficientDriver"):
        backends.resolve("cuda")
    assert cupy_backend.available() == []


def test_device_cuda_with_no_gpu_at_all_says_so(monkeypatch):
    _stand_in(monkeypatch, gpus=0)
    with pytest.raises(ValueError, match=r"device='cuda:1': no CUDA device is visible"):
        backends.resolve("cuda:1")


def test_making_the_backend_leaves_cupys_own_tf32_setting_alone(monkeypatch):
    """CUPY_TF32=1 (CuPy's own switch) stands unless vnn.set_tf32 was called."""
    seen = _stand_in(monkeypatch, gpus=1)
    monkeypatch.setattr(backends, "_TF32", [None])
    backends.resolve("cuda")
    assert not [c for c in seen if c[0] == "set_compute_type"]
    try:
        vnn.set_tf32(True)
        backends.resolve("cuda")
        assert [c for c in seen if c[0] == "set_compute_type"] == [("set_compute_type", 7),
                                                                    ("set_compute_type", 7)]
    finally:
        vnn.set_tf32(False)  # torch's switch too, as the suite found it


def _real_cupy_without_gpu():
    try:
        import cupy  # noqa: F401
    except ImportError:
        pytest.skip("CuPy is not installed")
    if cupy_backend._gpus():
        pytest.skip("a GPU is usable here: the GPU tests cover it")


def test_real_cupy_without_a_gpu_set_tf32_and_device_cuda(monkeypatch):
    _real_cupy_without_gpu()
    monkeypatch.setattr(backends, "_TF32", [None])
    vnn.set_tf32(True)
    vnn.set_tf32(False)
    with pytest.raises(ValueError, match="no CUDA device is visible to CuPy here"):
        vnn.MLP([2, 3, 1], device="cuda")


@pytest.mark.filterwarnings("ignore::UserWarning")  # CuPy's own "nccl library could not be loaded"
def test_real_cupy_without_libnccl_offers_no_device_collective():
    _real_cupy_without_gpu()
    from cupy.cuda import nccl

    if getattr(nccl, "available", False):
        pytest.skip("this CuPy has NCCL")
    assert _backend().collective(_MpiComm()) is None
