"""The compiled CPU step's loops (``backends/loops.py``): generated from the kernel bodies, cached on
disk, shared by every architecture, and what NumPy's fast step runs when numba is there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

from vnn.backends import loops  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _loops(dtype):
    from vnn.step.executors import Loops

    return Loops(np, np.dtype(dtype), loops.kernel, loops.calls_for(dtype), loops.columns)

TRAIN = """
import json, sys, numpy as np, vnn
from vnn.backends import loops
sizes = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.standard_normal((40, sizes[0]))
y = rng.integers(0, sizes[-1], 40)
net = vnn.MLP(sizes, output="softmax", dtype="float32", seed=0)
net.fit(X, y, epochs=1, batch_size=int(sys.argv[2]), optimizer=vnn.Adam(1e-3))
print(json.dumps(loops.COMPILES))
"""


def _train(cache: Path, sizes: list[int], batch: int) -> list[tuple[str, float, bool]]:
    env = dict(os.environ, VNN_CACHE_DIR=str(cache), VNN_NUMBA="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-c", TRAIN, json.dumps(sizes), str(batch)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [tuple(c) for c in json.loads(proc.stdout.splitlines()[-1])]


def test_loops_are_cached_on_disk_and_shared_by_architectures(tmp_path):
    first = _train(tmp_path, [6, 9, 3], 8)
    names = {n for n, _, _ in first}
    assert {"vnn_adam", "vnn_delta_relu", "vnn_loss_softmax"} <= names  # ReLU: NumPy's one call
    assert not any(loaded for _, _, loaded in first)  # an empty cache: everything compiled
    assert list((tmp_path / "loops").glob("vnn_loops_*.py"))
    # another process, another architecture and batch size: every loop comes from the disk
    second = _train(tmp_path, [11, 5, 5, 4], 16)
    assert {n for n, _, _ in second} == names
    assert all(loaded for _, _, loaded in second), second


def test_an_unwritable_cache_folder_falls_back_to_a_temporary_one(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("VNN_CACHE_DIR", str(blocked))
    path = loops.cache_dir()
    assert path.is_dir() and blocked not in path.parents


def test_vnn_numba_0_turns_the_loops_off(monkeypatch):
    monkeypatch.setenv("VNN_NUMBA", "0")
    assert not loops.enabled() and not loops.wanted(None)
    monkeypatch.setenv("VNN_NUMBA", "1")
    assert loops.enabled() and loops.wanted(0.01)


@pytest.mark.parametrize("steps, compiled", [(None, False), (100, False), (10**7, True)])
def test_short_jobs_train_without_the_loops(monkeypatch, steps, compiled):
    # numba's start-up (about 1.5 s once cached) would make a short job slower: by default a job
    # estimated under AUTO_SECONDS of NumPy work keeps NumPy's calls, as does one of unknown
    # length (a Trainer made without steps); a long one compiles
    import vnn
    from vnn.step.executors import Loops
    from vnn.train.trainer import Trainer

    monkeypatch.delenv("VNN_NUMBA", raising=False)
    net = vnn.MLP([64, 128, 10], output="softmax", seed=0)
    trainer = Trainer(net, vnn.Adam(), 0.0, steps=steps, batch=32)
    assert isinstance(trainer.fast.execute, Loops) is compiled


def test_the_readme_command_does_not_import_numba():
    code = ("import sys, vnn.cli; vnn.cli.main(['train', '--dataset', 'digits', '--epochs', '2',"
            " '-q']); print('numba' in sys.modules)")
    env = dict(os.environ)
    env.pop("VNN_NUMBA", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_a_loop_broadcasts_as_numpy_does():
    # softmax_exp reads the column maxima mx (1, n) against z (m, n), as CuPy's kernels do
    from vnn.math.formulas import FORMULAS

    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 6))
    mx = z.max(axis=0, keepdims=True)
    e = np.empty_like(z)
    f = FORMULAS["softmax_exp"]
    run = _loops(z.dtype)("softmax_exp", f.specialize(), f.args, {"z": z, "mx": mx, "e": e})
    run()
    np.testing.assert_array_equal(e, np.exp(z - mx))
    assert "mx[0, i1]" in Path(_module_of(run)).read_text()


def _module_of(run) -> str:
    for name, module in sys.modules.items():
        if name.startswith("vnn_loops_") and "softmax_exp" in Path(module.__file__).read_text():
            return module.__file__
    raise AssertionError("no module for softmax_exp")


def _loop_of(name, arrays):
    """The formula ``name`` as a compiled loop on ``arrays`` (whatever the executor would pick)."""
    from vnn.math.formulas import FORMULAS
    from vnn.step.compile import kernel_source

    f = FORMULAS[name]
    ins, outs, body, numbers = kernel_source(f.specialize(), f.args)
    inputs = [arrays[n] if n in arrays else np.float64(numbers[n]) for n in ins]
    k = loops.kernel("vnn_" + name, ins, outs, body, inputs, [arrays[n] for n in outs])
    return lambda: k(*inputs, *[arrays[n] for n in outs])


def test_loops_keep_ieee_semantics():
    # no fastmath: NaN propagates through max (ReLU), 1/0 is inf, nothing raises
    z = np.array([[np.nan, -1.0, 2.0]])
    a = z.copy()
    _loop_of("relu", {"z": a, "a": a})()
    assert np.isnan(a[0, 0]) and a[0, 1] == 0.0 and a[0, 2] == 2.0
    e, s, p = np.ones((2, 2)), np.zeros((1, 2)), np.empty((2, 2))
    _loop_of("softmax_div", {"e": e, "s": s, "p": p})()
    assert np.isinf(p).all()


def test_a_formula_of_one_call_stays_that_call():
    # ReLU is one NumPy call (SIMD), faster than the loop; δ ⊙ φ′ of ReLU is two calls, one loop
    from vnn.math.formulas import FORMULAS

    a = np.zeros((4, 8), np.float32)
    f = FORMULAS["relu"]
    run = _loops(np.float32)("relu", f.specialize(), f.args, {"z": a, "a": a})
    assert run.source.count("xnp.") == 1
    g = FORMULAS["l2_grad"]
    d, w = np.zeros((4, 8)), np.ones((4, 8))
    run = _loops(np.float64)("l2_grad", g.specialize(), g.args, {"d": d, "w": w}, g.scalars)
    assert "xnp." not in run.source
    run(0.5)
    np.testing.assert_array_equal(d, 0.5)


def test_scalar_terms_are_worked_out_on_the_host_in_float64():
    # Adam's 1 − β₂ inside a float32 kernel would be 1 − float32(0.999): 1.3e-5 off, which biased
    # the second moment (scikit-learn computes it in Python floats). Both kernels executions (the
    # CUDA kernels' bodies run on NumPy, and the compiled loops) get it rounded once.
    from fused_numpy import numpy_kernel

    from vnn.math.formulas import FORMULAS
    from vnn.step.executors import Kernels

    f = FORMULAS["adam"]
    rng = np.random.default_rng(0)
    g64 = rng.standard_normal(1000)
    scal = {"b1": 0.9, "b2": 0.999, "lr_c1": 0.01, "c2": 1.0, "eps": 1e-8}
    want = (1 - 0.999) * g64.astype(np.float32).astype(np.float64) ** 2
    for make in (lambda: Kernels(np, np.dtype(np.float32), numpy_kernel),
                 lambda: _loops(np.float32)):
        p, g = np.zeros(1000, np.float32), g64.astype(np.float32)
        m, v = np.zeros(1000, np.float32), np.zeros(1000, np.float32)
        run = make()("adam", f.specialize(), f.args, {"p": p, "g": g, "m": m, "v": v}, f.scalars)
        assert "1 - b2" not in run.source and "_k0 - b2" not in run.source
        run(*[scal[k] for k in sorted(f.scalars)])
        np.testing.assert_allclose(v, want, rtol=3e-7)


def test_operands_that_do_not_broadcast_are_refused():
    # the loops index without bounds checks: a (3,) input against a (6,) output would read
    # past its end; NumPy refuses the same shapes
    with pytest.raises(ValueError, match="do not broadcast"):
        loops.kernel("vnn_t", ["x"], ["o"], "o = x;", [np.arange(3.0)], [np.zeros(6)])


def test_formula_names_starting_with_underscore_are_refused():
    from vnn.math.formula import Formula, FormulaError

    with pytest.raises(FormulaError, match="outside the language"):
        Formula("bad", "p = p - _h0 * g", "p, g, _h0", "_h0")


def test_a_numba_that_cannot_be_imported_is_reported_and_not_used(monkeypatch):
    monkeypatch.setenv("VNN_NUMBA", "1")
    monkeypatch.setattr(loops, "version", lambda: None)
    monkeypatch.setattr(loops, "_WARNED", [])
    with pytest.warns(RuntimeWarning, match="numba is installed but cannot be imported"):
        assert not loops.wanted(100.0)
    assert not loops.wanted(100.0)  # said once


def test_the_job_estimate_uses_the_batches_the_data_allows(monkeypatch):
    import vnn

    seen = []
    real = loops.numpy_seconds

    def record(sizes, batch, steps):
        seen.append((batch, steps))
        return real(sizes, batch, steps)

    monkeypatch.setattr(loops, "numpy_seconds", record)
    rng = np.random.default_rng(0)
    net = vnn.MLP([3, 4, 2], output="softmax", seed=0)
    net.fit(rng.standard_normal((100, 3)), rng.integers(0, 2, 100), epochs=3, batch_size=10**5)
    assert seen == [(100, 3)]


@pytest.mark.parametrize("m", [5, 1])  # one output row: every term inside the loop
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity", "exp"])
def test_the_loss_and_delta_are_one_loop_over_the_samples(output, m):
    # Eqns (4)-(6) and δ(L)/|B| (Eqns 10-12) as one compiled loop, against the losses written
    # out here in float64 (logits far from 0: softmax must subtract the column maximum)
    from scipy.special import expit, xlogy

    from vnn.step.loss import plan_loss
    from vnn.step.workspace import Workspace

    rng = np.random.default_rng(1)
    n = 7
    ws = Workspace(np, n, [3, m], np.dtype(np.float64), [], phi_prime=False, batched=True)
    z = rng.standard_normal((m, n)) * (3.0 if output == "exp" else 300.0)
    if output == "softmax":
        y = np.eye(m)[:, rng.integers(0, m, n)]
    elif output == "exp":  # counts, zeros among them (y log y = 0 there)
        y = rng.poisson(2.0, (m, n)).astype(float)
        y[0, 0] = 0.0
    else:
        y = (rng.integers(0, 2, (m, n)).astype(float) if output == "sigmoid"
             else rng.standard_normal((m, n)))
    ws.ZL[...], ws.Y[...] = z, y
    ws.scale = 0.25
    before = len(loops.COMPILES)
    run = plan_loss(_loops(np.float64), np, np.dtype(np.float64), output, ws)
    assert run.__name__ == "<lambda>"  # the one loop, not the calls
    # nothing else was compiled for it (an unused δ(L) or exp loop)
    assert {c[0] for c in loops.COMPILES[before:]} <= {f"vnn_loss_{output}"}
    J = run()
    if output == "softmax":
        lse = z.max(axis=0) + np.log(np.exp(z - z.max(axis=0)).sum(axis=0))
        want_J, a = (lse - (y * z).sum(axis=0)).sum(), np.exp(z - lse)
    elif output == "sigmoid":
        want_J, a = (np.logaddexp(0, z) - y * z).sum(), expit(z)
    elif output == "exp":
        a = np.exp(z)
        want_J = (a - y * z + xlogy(y, y) - y).sum()
    else:
        want_J, a = (0.5 * (z - y) ** 2).sum(), z
    assert np.isfinite(J)
    np.testing.assert_allclose(J, want_J, rtol=1e-12)
    np.testing.assert_allclose(ws.DL, (a - y) * 0.25, rtol=1e-12, atol=1e-300)


def test_the_loss_loop_keeps_a_nan_as_numpy_does():
    # softmax's column maximum as NumPy's maximum.reduce: a NaN logit gives a NaN maximum (a
    # plain max(acc, x) would keep the others), and that sample's J and δ(L) are NaN
    from vnn.step.loss import plan_loss
    from vnn.step.workspace import Workspace

    ws = Workspace(np, 2, [3, 3], np.dtype(np.float64), [], phi_prime=False, batched=True)
    ws.ZL[...] = [[1.0, 0.0], [np.nan, 0.0], [0.5, 0.0]]
    ws.Y[...] = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    ws.scale = 1.0
    J = plan_loss(_loops(np.float64), np, np.dtype(np.float64), "softmax", ws)()
    assert np.isnan(ws.r1[0, 0]) and ws.r1[0, 1] == 0.0
    assert np.isnan(J) and np.isnan(ws.DL[:, 0]).all() and np.isfinite(ws.DL[:, 1]).all()


def test_a_column_loop_refuses_what_it_cannot_do():
    import ast

    z, d = np.zeros((3, 4)), np.zeros((3, 4))
    ex = _loops(np.float64)
    with pytest.raises(ValueError, match="written in"):  # a term reading what its loop writes
        ex.columns("t", [("map", "d", ast.Name("z"))], [(1, ast.Name("d"))], {"z": z, "d": d},
                   frozenset())
    with pytest.raises(ValueError, match="written in or after"):  # a later reduction's row
        ex.columns("t", [("map", "d", ast.Name("z")), ("sum", "s", ast.Name("d"))],
                   [(1, ast.BinOp(ast.Name("z"), ast.Mult(), ast.Name("s")))],
                   {"z": z, "d": d, "s": np.zeros((1, 4))}, frozenset())
    with pytest.raises(ValueError, match="are not"):  # a buffer of another shape
        ex.columns("t", [("map", "d", ast.Name("z"))], [(1, ast.Name("z"))],
                   {"z": np.zeros((3, 5)), "d": d}, frozenset())
