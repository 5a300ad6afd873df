"""The fused step (one kernel per elementwise formula, what CuPy runs) and the TF32 switch.

The kernels are generated from ``vnn.math.formulas`` as C that is also Python; here they run on
NumPy through ``numpy_kernel`` (the same text CuPy compiles), and the whole fused step is checked
against the portable step. With a GPU, the compiled kernels are checked against that NumPy run.
"""

from __future__ import annotations

import ast

import cases
import numpy as np
import pytest
from conftest import BACKENDS, host, make
from fused_numpy import FUNCTIONS, numpy_kernel
from test_fast_path import _data
from vnn.backends import numpy as np_backend

import vnn
from vnn import backends
from vnn.math.formulas import FORMULAS
from vnn.step import preallocated
from vnn.step.compile import kernel_source

CUPY = [b for b in BACKENDS if b.name == "cupy"]


@pytest.fixture(params=[True, False], ids=["batched", "per-layer"])
def fused_numpy(monkeypatch, request):
    """NumPy's fast step replaced by the fused step, its kernels run by ``numpy_kernel``; with
    Eqn (14) of equal-shape layers batched, and per layer as CuPy runs it (``batched=False``)."""
    made = []

    def fast_step(self, W, b, hidden, output, loss, lam, optimizer, l2_per_sample=False, **job):
        if not preallocated.supports(output, loss):
            return None
        step = preallocated.PreallocatedStep(np, W, b, hidden, output, lam, optimizer,
                                             np_backend._take, l2_per_sample, kernel=numpy_kernel,
                                             batched=request.param)
        made.append(step)
        return step

    monkeypatch.setattr(np_backend.NumpyBackend, "fast_step", fast_step)
    return made


OPTIMIZERS = {**cases.OPTIMIZERS, **cases.SKLEARN_OPTIMIZERS}


@pytest.mark.parametrize("l2", [0.0, 0.01])  # without L2, plain SGD folds η into δ(L)
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity"])
def test_fused_step_equals_portable_step(fused_numpy, activation, output, opt, l2):
    X, y, m_out = _data(output)
    nets, hists = [], []
    for fast in (True, False):
        # layers of equal shape (a batched Eqn 14) and mixed activations
        net = vnn.MLP([5, 6, 6, 4, m_out], activation=[activation, activation, "tanh"],
                      output=output, dtype="float64", seed=2)
        net.fast_path = fast
        # 37 samples in batches of 8: two batch sizes; L2 on (Eqn 14's + λW, fused)
        hists.append(net.fit(X, y, optimizer=OPTIMIZERS[opt](), epochs=3, batch_size=8,
                             l2=l2, validation_data=(X, y)))
        nets.append(net)
    assert len(fused_numpy) == 1 and fused_numpy[0].kernel is numpy_kernel
    fast, ref = nets
    for a, b in zip(fast.weights + fast.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hists[0].loss, hists[1].loss, rtol=1e-10)
    np.testing.assert_allclose(hists[0].val_loss, hists[1].val_loss, rtol=1e-10)


def test_fused_step_float32_overflowing_logits_stay_finite(fused_numpy):
    """Large logits: the fused softmax subtracts the column maximum and the fused sigmoid
    saturates to 0 or 1, so δ(L) stays finite (as in the portable step)."""
    for output in ("softmax", "sigmoid"):
        X, y, m_out = _data(output)
        net = vnn.MLP([5, 4, m_out], output=output, dtype="float32", seed=0)
        net.weights[0][...] *= 1e4
        h = net.fit(X * 100, y, optimizer=vnn.SGD(1e-6), epochs=1, batch_size=8)
        assert np.isfinite(h.loss[-1])
        assert all(np.isfinite(host(w)).all() for w in net.weights)


_ALLOWED = (ast.Module, ast.Assign, ast.Name, ast.Load, ast.Store, ast.BinOp, ast.Add, ast.Sub,
            ast.Mult, ast.Div, ast.UnaryOp, ast.USub, ast.Compare, ast.Gt, ast.GtE, ast.Lt,
            ast.LtE, ast.Call)


def _kernel_of(name):
    f = FORMULAS[name]
    return kernel_source(f.specialize(), f.args)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_kernels_are_in_the_part_of_c_that_is_also_python(name):
    """Every kernel body is plain assignments of arithmetic on its own parameters, no literal:
    valid C with the same meaning (no ``**``, which C reads as a dereference; no integer-only
    division; every number an input of the kernel's type)."""
    ins, outs, body, numbers = _kernel_of(name)
    assert set(numbers) <= set(ins)
    tree = ast.parse(body)
    for node in ast.walk(tree):
        assert isinstance(node, _ALLOWED), (name, ast.dump(node))
        if isinstance(node, ast.Name):
            assert node.id in set(ins) | set(outs) | set(FUNCTIONS), (name, node.id)
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
        if isinstance(node, ast.Assign):
            assert all(t.id in outs for t in node.targets)  # type: ignore[attr-defined]


def _kernel_args(name, rng, shape=(4, 3)):
    """Values for every parameter of the formula (scalars as numbers), and the kernel's inputs
    and outputs made of them (the last array input a broadcast row, where there are several)."""
    f = FORMULAS[name]
    ins, outs, body, numbers = _kernel_of(name)
    given = {a: float(rng.uniform(0.2, 0.8)) if a in f.scalars else rng.uniform(0.2, 0.8, shape)
             for a in f.args}
    if name in ("relu", "relu_prime"):  # where ReLU and its φ′ differ from identity: negatives
        given[f.args[0]][::2] *= -1
    arrays = [n for n in ins if n not in numbers and n not in f.scalars]
    if len(arrays) > 1:
        given[arrays[-1]] = given[arrays[-1]][:1]
    given |= {n: v for n, v in numbers.items()}
    args = [np.full((1, 1), given[n]) if n in numbers or n in f.scalars else given[n] for n in ins]
    outputs = [given[n].copy() if n in given else rng.uniform(0.2, 0.8, shape) for n in outs]
    return f, given, (ins, outs, body), args, outputs


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_numpy_kernel_broadcasts_and_updates_in_place(name):
    """A kernel of each formula writes its outputs in place, broadcasts a row as CuPy does, and
    computes what the portable step computes (the formula evaluated on xp)."""
    rng = np.random.default_rng(1)
    f, given, (ins, outs, body), args, outputs = _kernel_args(name, rng)
    outputs = [np.broadcast_to(o, (4, 3)).copy() for o in outputs]
    before = [o.copy() for o in outputs]
    keep = list(outputs)
    numpy_kernel(name, ins, outs, body)(*args, *outputs)
    assert all(o is k for o, k in zip(outputs, keep))  # written in place
    assert all(np.isfinite(o).all() for o in outputs)
    assert any(not np.array_equal(o, b) for o, b in zip(outputs, before)), "nothing written"
    tiled = [o.copy() for o in before]  # the rows broadcast by hand: the same result
    numpy_kernel(name, ins, outs, body)(*(np.broadcast_to(a, (4, 3)) for a in args), *tiled)
    for o, t in zip(outputs, tiled):
        np.testing.assert_array_equal(o, t)
    given |= dict(zip(outs, before))  # the portable evaluation of the same formula
    want = f(np, *(given[a] for a in f.args))
    for o, w in zip(outputs, want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(o, np.broadcast_to(w, o.shape), rtol=1e-13, atol=1e-13)


# -- on a GPU ---------------------------------------------------------------------------------


@pytest.mark.parametrize("be", CUPY, ids=[f"{b.name}-{b.device_name}" for b in CUPY])
def test_cupy_trains_through_the_fused_step(be):
    X, y, _ = _data("softmax")
    nets = []
    for where in (be, backends.resolve("cpu")):
        net = make(where, [5, 6, 3], output="softmax", dtype="float64", seed=0)
        net.fit(X, y, optimizer=vnn.Adam(0.01), epochs=2, batch_size=8)
        nets.append(net)
    for a, b in zip(nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-9, atol=1e-12)  # float64 rounding
    trainer = vnn.train.Trainer(nets[0], vnn.SGD(0.1), 0.0)
    assert trainer.fast.kernel is not None


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("be", CUPY, ids=[f"{b.name}-{b.device_name}" for b in CUPY])
def test_cuda_kernels_equal_the_numpy_formulas(be, name):
    import cupy
    from vnn.backends.cupy import kernel

    ins, outs, body, numbers = _kernel_of(name)
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        args = [np.full((1, 1), numbers[n], dtype) if n in numbers
                else rng.uniform(-2, 2, (64, 33)).astype(dtype) for n in ins]
        if name == "adam":  # the second moment and the scalars are positive
            args = [np.abs(a) + dtype(1e-3) for a in args]
        outputs = [np.abs(rng.uniform(-2, 2, (64, 33))).astype(dtype) for _ in outs]
        want = [o.copy() for o in outputs]
        numpy_kernel(name, ins, outs, body)(*args, *want)
        with be.device:
            got = [cupy.asarray(o) for o in outputs]
            kernel(f"vnn_{name}", ins, outs, body)(*(cupy.asarray(a) for a in args), *got)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        for g, w in zip(got, want):
            np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=tol, atol=tol)


# -- TF32 ---------------------------------------------------------------------------------------


def test_set_tf32_takes_a_bool_and_is_off_by_default():
    assert backends.tf32() is False
    with pytest.raises(TypeError, match=r"enabled=1 is not a bool"):
        vnn.set_tf32(1)  # type: ignore[arg-type]
    assert backends.tf32() is False


def test_set_tf32_switches_torch_cuda_matmuls():
    torch = pytest.importorskip("torch")
    assert torch.backends.cuda.matmul.allow_tf32 is False
    try:
        vnn.set_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        vnn.set_tf32(False)
    assert torch.backends.cuda.matmul.allow_tf32 is False


@pytest.mark.parametrize("be", CUPY, ids=[f"{b.name}-{b.device_name}" for b in CUPY])
def test_tf32_rounds_cupy_float32_products(be):
    """1.0001 has bits beyond TF32's 10: with TF32 a product of 1024 of them sums to 1024."""
    import cupy

    with be.device:
        a = cupy.full((1024, 1024), 1.0001, dtype=cupy.float32)
        b = cupy.ones((1024, 1024), dtype=cupy.float32)
        try:
            vnn.set_tf32(True)
            rounded = float((a @ b)[0, 0])
        finally:
            vnn.set_tf32(False)
        exact = float((a @ b)[0, 0])
    assert rounded == pytest.approx(1024.0, abs=1e-3)
    assert exact == pytest.approx(1024.1024, rel=1e-5)


def test_an_identity_layer_launches_no_kernel():
    """φ = identity writes z onto itself (``a = z`` on one buffer): no kernel is made for it."""
    made = []

    def recording(name, ins, outs, body):
        made.append((name, body))
        return numpy_kernel(name, ins, outs, body)

    net = vnn.MLP([3, 4, 4, 2], activation="identity", output="softmax", dtype="float64", seed=0)
    theta = net.theta
    step = preallocated.PreallocatedStep(np, theta[0::2], theta[1::2], net.activation, "softmax",
                                         0.0, vnn.SGD(0.1), np_backend._take, kernel=recording)
    A, Y, _ = net.prepare(np.zeros((5, 3)), np.zeros(5, dtype=int))
    step(A, Y, slice(0, 5))
    assert made and not [n for n, _ in made if n == "vnn_identity"], made


def test_an_identity_layer_adds_no_call_to_the_plan():
    """Nor a Python call: the plan's forward pass of an identity network is its products."""
    net = vnn.MLP([3, 4, 4, 2], activation="identity", output="softmax", dtype="float64", seed=0)
    theta = net.theta
    step = preallocated.PreallocatedStep(np, theta[0::2], theta[1::2], net.activation, "softmax",
                                         0.0, vnn.SGD(0.1), np_backend._take, kernel=numpy_kernel)
    assert [f for f, _ in step.workspace(5).forward] == [np.matmul] * 3
