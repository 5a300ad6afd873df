"""Each formula is written once (``vnn.math.formulas``) and every step executes that one.

The mutation test changes one formula in its one place and checks that the portable step, the
preallocated step and the fused step (its kernels run on NumPy) all train differently: a copy of
the formula left anywhere in an execution would keep its old result and fail the test.
"""

from __future__ import annotations

import cases
import numpy as np
import pytest
from cases import HIDDEN, PAIRINGS
from conftest import host
from fused_numpy import numpy_kernel
from vnn.backends import numpy as np_backend

import vnn
from vnn.math.formula import Formula, FormulaError
from vnn.math.formulas import FORMULAS
from vnn.step import preallocated
from vnn.step.compile import program, total

OPTIMIZERS = {**cases.OPTIMIZERS, **cases.SKLEARN_OPTIMIZERS}
#: formulas that only non-canonical pairings use, which only the portable step trains
PORTABLE_ONLY = {"squared_error_grad", "softmax_vjp", "exp_prime"}


def _data(output, rng):
    X = rng.standard_normal((12, 3))
    if output == "softmax":
        return X, rng.integers(0, 3, size=12), 3
    if output == "sigmoid":
        return X, rng.integers(0, 2, size=(12, 2)), 2
    if output == "exp":  # counts
        return X, rng.poisson(1.5, size=(12, 2)), 2
    return X, rng.standard_normal((12, 2)), 2


#: (output, loss, optimizer, λ): every pairing with folded SGD and with Adam and L2; the other
#: updates on one pairing
CONFIGS = ([(o, loss, "sgd", 0.0) for o, loss in PAIRINGS]
           + [(o, loss, "adam", 0.01) for o, loss in PAIRINGS]
           + [("softmax", None, opt, 0.01) for opt in sorted(OPTIMIZERS) if opt != "adam"])


def _train(execution: str) -> list[np.ndarray]:
    """Every configuration the execution trains (the fast ones: the canonical pairings) for a
    few steps: weights and loss histories."""
    out = []
    for output, loss, opt, l2 in CONFIGS:
        if loss is not None and execution != "portable":
            continue  # the portable step trains it
        X, y, m = _data(output, np.random.default_rng(0))
        net = vnn.MLP([3, 4, 4, 4, 4, m], activation=HIDDEN, output=output, loss=loss,
                      dtype="float64", seed=1)
        net.fast_path = execution != "portable"
        h = net.fit(X, y, optimizer=OPTIMIZERS[opt](), epochs=2, batch_size=6, l2=l2,
                    shuffle=False)
        out += [host(w) for w in net.weights + net.biases] + [np.array(h.loss)]
    return out


def _fused(self, W, b, hidden, output, loss, lam, optimizer, l2_per_sample=False, **job):
    """NumPy's fast step as the fused step, its kernels run by ``numpy_kernel``."""
    if not preallocated.supports(output, loss):
        return None
    return preallocated.PreallocatedStep(np, W, b, hidden, output, lam, optimizer,
                                         np_backend._take, l2_per_sample, kernel=numpy_kernel)


def _run_all() -> dict[str, list[np.ndarray]]:
    """The configurations trained by each execution: portable, preallocated, fused."""
    original = np_backend.NumpyBackend.fast_step
    results = {}
    try:
        for execution, step in (("portable", original), ("preallocated", original),
                                ("fused", _fused)):
            np_backend.NumpyBackend.fast_step = step  # type: ignore[method-assign]
            with np.errstate(all="ignore"):
                results[execution] = _train(execution)
    finally:
        np_backend.NumpyBackend.fast_step = original  # type: ignore[method-assign]
    return results


def _mutated(f: Formula) -> Formula:
    """``f`` with its last statement's value scaled and shifted a little."""
    parts = [s.strip() for s in f.text.split(";")]
    target, expr = parts[-1].split("=", 1)
    parts[-1] = f"{target.strip()} = ({expr.strip()}) * 1.0078125 + 0.0078125"
    return Formula(f.name, "; ".join(parts), ", ".join(f.args), ", ".join(sorted(f.scalars)),
                   FORMULAS)


@pytest.fixture(scope="module")
def baseline():
    return _run_all()


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def test_the_three_executions_agree(baseline):
    canonical = [i for i, (_, loss, _, _) in enumerate(CONFIGS) if loss is None]
    per = len(baseline["portable"]) // len(CONFIGS)  # arrays per configuration
    ref = [a for i in canonical for a in baseline["portable"][i * per:(i + 1) * per]]
    for got in (baseline["preallocated"], baseline["fused"]):
        assert len(got) == len(ref)
        for x, y in zip(got, ref):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_changing_a_formula_in_its_one_place_changes_every_execution(name, monkeypatch, baseline):
    monkeypatch.setitem(FORMULAS, name, _mutated(FORMULAS[name]))
    after = _run_all()
    which = ["portable"] if name in PORTABLE_ONLY else ["portable", "preallocated", "fused"]
    for execution in which:
        assert not _same(baseline[execution], after[execution]), (
            f"changing FORMULAS[{name!r}] left the {execution} step's results unchanged: it "
            "executes a copy of the formula")


# -- the language ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,message", [
    ("a = z ** 2", "outside the language"),
    ("a = z if z else 0", "outside the language"),
    ("a = unknown(z)", "outside the language"),
    ("a = w", "outside the language"),
    ("a, b = z", "name = expression"),
    ("a = 0 < z < 1", "outside the language"),
    ("a = (z", "does not parse"),
    ("a = True * z", "outside the language"),
])
def test_a_formula_outside_the_language_is_refused(text, message):
    with pytest.raises(FormulaError, match=message):
        Formula("bad", text, "z", table=FORMULAS)


def test_specialize_folds_zero_and_one():
    f = FORMULAS["momentum"]
    folded = f.specialize(f.key({"beta": 0.5, "c": 0.5, "ahead": 1.0, "nu": 0.0}))
    assert [(t, __import__("ast").unparse(e)) for t, e in folded] == [
        ("v", "beta * v + c * g"), ("p", "p - v")]


def test_program_writes_into_its_buffers_and_allocates_nothing():
    """The compiled sgd, momentum and adam updates on float32 buffers: the same numbers as the
    portable formula, in place, with at most one scratch buffer."""
    rng = np.random.default_rng(0)
    made = []
    for name, scalars in [("sgd", {"lr": 0.1}),
                          ("momentum", {"beta": 0.9, "c": 0.1, "ahead": 0.01, "nu": 0.0}),
                          ("adam", {"b1": 0.9, "b2": 0.99, "lr_c1": 0.01, "c2": 0.3,
                                    "eps": 1e-8})]:
        f = FORMULAS[name]
        given = {a: rng.uniform(0.1, 1.0, (5, 4)).astype(np.float32) for a in f.args
                 if a not in f.scalars}
        want = f(np, *(scalars[a] if a in f.scalars else given[a].copy() for a in f.args))
        bufs = {k: v.copy() for k, v in given.items()}
        keep = dict(bufs)
        run = program(np, np.dtype(np.float32), f.specialize(f.key(scalars)), bufs, f.scalars,
                      temp=lambda: made.append(1) or np.empty((5, 4), np.float32),
                      consumable=frozenset("g"))
        run(*(scalars[k] for k in sorted(f.scalars)))
        assert all(bufs[k] is keep[k] for k in bufs)
        for out, w in zip(f.outputs, want if isinstance(want, tuple) else (want,)):
            np.testing.assert_allclose(bufs[out], w, rtol=2e-6)
            assert bufs[out].dtype == np.float32
    assert len(made) <= 2  # one scratch buffer for each of momentum and adam, none for sgd


def test_total_uses_dot_products_and_known_buffers():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    d = z - y
    expr = FORMULAS["squared_error"].expression  # 0.5 (a − y)(a − y) with a = z
    from vnn.math.formula import substitute

    expr = substitute(expr, {"a": __import__("ast").Name("z")})
    t = total(np, np.dtype(np.float64), [(1, expr)], {"z": z, "y": y}, np.empty((3, 4)),
              known={"z - y": d})
    assert "vdot" in t.source and "subtract" not in t.source
    assert t() == pytest.approx(0.5 * np.sum((z - y) ** 2), rel=1e-14)
