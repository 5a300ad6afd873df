"""Every CUDA kernel of the fused step compiles, without a GPU: the source as CuPy's own
``ElementwiseKernel`` generates it, through NVRTC from NVIDIA's wheels, for the H200 (sm_90) and
an older GPU (sm_80), in float32 and float64; and float32 kernels hold no float64 instruction
(a double literal or a double-only function would make every element a float64 computation).

It needs CuPy and NVRTC (``pip install cupy-cuda13x==14.2.0 nvidia-cuda-nvrtc==13.*
nvidia-cuda-runtime==13.*``, what ``.ci/run`` installs), no driver. The code generation uses
CuPy's internals (``cupy._core._kernel``), so the CuPy version is pinned: another version skips
with the reason.
"""

from __future__ import annotations

import itertools
import re
import warnings

import cases
import numpy as np
import pytest
from fused_numpy import numpy_kernel
from vnn.backends import numpy as np_backend

import vnn
from vnn.step import preallocated

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # CuPy warns that it finds no CUDA driver or NCCL here
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (the CUDA compile tests "
                                              "need cupy-cuda13x and nvidia-cuda-nvrtc)")

PINNED = "14.2."  # the CuPy whose ElementwiseKernel code generator these tests call
if not cupy.__version__.startswith(PINNED):
    pytest.skip(f"the kernel source is generated with CuPy {PINNED}x internals; this is CuPy "
                f"{cupy.__version__}", allow_module_level=True)

from cupy._core import _carray, _kernel, _scalar, core  # noqa: E402
from cupy.cuda import compiler  # noqa: E402
from vnn.backends import cupy as cupy_backend  # noqa: E402

try:
    NVRTC = compiler._get_nvrtc_version()
except Exception as exc:  # noqa: BLE001 - any failure to load NVRTC means: cannot compile here
    pytest.skip(f"NVRTC cannot be loaded ({type(exc).__name__}: {exc}); pip install "
                "nvidia-cuda-nvrtc", allow_module_level=True)

ARCHS = ["sm_90", "sm_80"]  # the H200 (Hopper), and an A100 (Ampere)
_ND, _INDEXER, _SCALAR = 1, 2, 3  # CuPy's _ArgKind: ARG_KIND_NDARRAY, _INDEXER, _SCALAR


def _fused_kernels() -> dict[tuple, list[bool]]:
    """Every kernel the fused step makes, over each hidden activation × output × optimizer ×
    L2: (name, inputs, outputs, body) -> which inputs a call passes as a number (by value)."""
    made: dict[tuple, list[bool]] = {}

    def recording(name, ins, outs, body):
        run = numpy_kernel(name, ins, outs, body)
        key = (name, tuple(ins), tuple(outs), body)

        def call(*args):
            made.setdefault(key, [np.ndim(a) == 0 for a in args[:len(ins)]])
            return run(*args)

        return call

    optimizers = {**cases.OPTIMIZERS, **cases.SKLEARN_OPTIMIZERS}
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9, 5))
    for activation, output, opt, l2 in itertools.product(cases.HIDDEN,
                                                         ["identity", "sigmoid", "softmax", "exp"],
                                                         sorted(optimizers), [0.0, 0.01]):
        m = 3 if output == "softmax" else 2
        net = vnn.MLP([5, 6, 6, 4, m], activation=[activation, activation, "tanh"],
                      output=output, dtype="float64", seed=0)
        theta = net.theta
        step = preallocated.PreallocatedStep(np, theta[0::2], theta[1::2], net.activation,
                                             output, l2, optimizers[opt](), np_backend._take,
                                             False, kernel=recording)
        y = {"softmax": rng.integers(0, m, 9), "sigmoid": rng.integers(0, 2, (9, m)),
             "exp": rng.poisson(1.0, (9, m)), "identity": rng.standard_normal((9, m))}[output]
        A, Y, _ = net.prepare(X, y)
        for _ in range(2):  # a second step: the updates that start from state
            step(A, Y, slice(0, 9))
    return made


KERNELS = _fused_kernels()


def _source(key: tuple, by_value: list[bool], dtype: np.dtype) -> str:
    """The CUDA source CuPy compiles for this kernel called with ``dtype`` arrays: the
    library's own ElementwiseKernel (``backends.cupy.kernel``), its code generator, its headers."""
    name, ins, outs, body = key
    k = cupy_backend.kernel(name, list(ins), list(outs), body)
    _, _, type_map = k._decide_params_type(tuple(dtype for _ in ins), tuple(dtype for _ in outs))
    infos = [_kernel._ArgInfo(_SCALAR, _scalar.CScalar, dtype, 0, True, True) if value
             else _kernel._ArgInfo(_ND, cupy.ndarray, dtype, 2, True, True)
             for value in by_value]
    infos += [_kernel._ArgInfo(_ND, cupy.ndarray, dtype, 2, True, True) for _ in outs]
    infos.append(_kernel._ArgInfo(_INDEXER, _carray.Indexer, None, 2, True, True))
    code = _kernel._get_elementwise_kernel_code(tuple(infos), type_map, k.params, k.operation,
                                                k.name, k.preamble, **k.kwargs)
    return "".join(f"#include <{h}>\n" for h in core._cupy_header_list) + code


def _compile(source: str, arch: str, method: str) -> bytes:
    """NVRTC with the options CuPy passes (its headers, C++17, the CUDA headers)."""
    options = core.assemble_cupy_compiler_options(()) + (
        f"-arch={arch}", "--device-as-default-execution-space")
    program = compiler._NVRTCProgram(source, "kern.cu", (), (), name_expressions=None,
                                     method=method)
    binary, _ = program.compile(options)
    return binary


def test_the_fused_step_makes_the_kernels_expected():
    """The kernels collected are the fused step's (not an empty or partial list): every formula
    kind the step runs is among them."""
    names = {key[0] for key in KERNELS}
    expected = {"vnn_delta", "vnn_delta_softmax", "vnn_delta_sigmoid", "vnn_delta_exp",
                "vnn_delta_relu", "vnn_delta_tanh", "vnn_relu", "vnn_tanh", "vnn_sigmoid",
                "vnn_softmax_exp", "vnn_l2_grad", "vnn_sgd", "vnn_momentum", "vnn_adam"}
    assert expected <= names, sorted(expected - names)
    assert len(KERNELS) >= 19
    assert "vnn_identity" not in names  # φ = identity in place launches nothing


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("key", sorted(KERNELS), ids=lambda k: f"{k[0]}-{len(k[3])}")
def test_fused_kernel_compiles_for_the_gpu(key, dtype, arch):
    binary = _compile(_source(key, KERNELS[key], np.dtype(dtype)), arch, "cubin")
    assert binary[:4] == b"\x7fELF"  # a cubin: machine code for that architecture


@pytest.mark.parametrize("key", sorted(KERNELS), ids=lambda k: f"{k[0]}-{len(k[3])}")
def test_float32_kernel_compiles_to_float32_instructions_only(key):
    ptx = _compile(_source(key, KERNELS[key], np.dtype("float32")), "compute_90",
                   "ptx").decode()
    assert ".entry" in ptx
    doubles = [line.strip() for line in ptx.splitlines() if re.search(r"\.f64\b", line)]
    assert not doubles, doubles[:5]


def test_the_float64_check_sees_a_double_literal():
    """The check above can fail: a C double literal in a float32 kernel computes in float64."""
    key = ("vnn_tenth", (), ("a",), "a = a * 0.1;")
    ptx = _compile(_source(key, [], np.dtype("float32")), "compute_90", "ptx").decode()
    assert any(re.search(r"\.f64\b", line) for line in ptx.splitlines())
