"""The preallocated step's loss and output sensitivity: Eqns (3)-(6) and δ(L), Eqns (10)-(12).

For the canonical pairings δ(L) = a(L) − y (the ``output_delta`` formula with the output's φ
substituted for a); the loss is the sum of its formula over the batch, computed with dot products
where a term allows (``vnn.step.compile.total``), reading δ(L) where the loss contains it (squared
error: ½ (a − y)·(a − y)). An executor that compiles loops over the samples (``Loops.columns``,
numba) runs all of it, softmax's column maximum and sum included, as one loop.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from vnn.math.formula import substitute
from vnn.math.formulas import FORMULAS
from vnn.math.losses import LOSSES
from vnn.step.compile import Program, total
from vnn.step.executors import Calls, calls
from vnn.step.workspace import Workspace

Array = Any

#: output -> the loss it is paired with canonically (δ(L) = a − y, Eqns 10-12)
CANONICAL = {loss.canonical: name for name, loss in LOSSES.items()}


def plan_loss(execute: Calls, xnp: Any, dtype: Any, output: str,
              ws: Workspace) -> Callable[[], Any]:
    """Σ ℓ over the batch (Eqns 4-6) and δ(L) / |B| (Eqns 10-12) into ``ws.DL``, as one call."""
    Z, D = ws.ZL, ws.DL
    loss = LOSSES[CANONICAL[output]]
    arrays = {"z": Z, "y": ws.Y, "d": D, "mx": ws.r1, "s": ws.r2, "e": ws.TL}
    # a = e / s, e = exp(z − max z), s = Σ e for softmax
    a = FORMULAS["softmax_div" if output == "softmax" else output].expression
    delta = substitute(FORMULAS["output_delta"].expression, {"a": a})
    element = FORMULAS[loss.name].expression
    if loss.on == "a":
        element = substitute(element, {"a": a})
    scaled: list[tuple[str, ast.expr]] = [("d", ast.BinOp(delta, ast.Mult(), ast.Name("scale")))]
    terms = [(1, element)]
    if loss.logsumexp:  # Eqn (6)'s per-sample term
        terms.append((1, FORMULAS["logsumexp"].expression))
    one = _one_loop(execute, output, scaled, terms, arrays)
    if one is not None:
        return lambda: one(ws.scale)
    pre: list[tuple[Any, tuple[Any, ...]]] = []
    if output == "softmax":
        f = FORMULAS["softmax_exp"]
        pre = [(xnp.maximum.reduce, (Z, 0, None, ws.r1, True))]
        pre += calls(execute("softmax_exp", f.specialize(), f.args, arrays))
        pre += [(xnp.add.reduce, (ws.TL, 0, None, ws.r2, True))]
    # δ(L) times 1/|B| in one kernel where the loss does not read δ(L) (the fused step)
    fused_scale = execute.fuses and loss.on != "a"
    args = ("z", "e", "s", "y", "scale")
    scale_delta = (execute("delta_" + output, scaled, args, arrays, frozenset({"scale"}))
                   if fused_scale else None)
    if not fused_scale:
        pre += calls(execute("delta", [("d", delta)], args, arrays))
    j_loss = total(xnp, dtype, terms, arrays, ws.TL, name="loss", constant=execute.constant,
                   known={} if fused_scale else {ast.unparse(delta): D},
                   ones=lambda x: ws.ones if tuple(x.shape) == tuple(ws.ones.shape) else None)

    def run() -> Any:
        for f, args in pre:
            f(*args)
        if scale_delta is not None:
            scale_delta(ws.scale)
        J = j_loss()
        if scale_delta is None:
            xnp.multiply(D, ws.scale, D)  # the 1/|B| of Eqn (14), once, here
        return J

    return run


def _one_loop(execute: Calls, output: str, scaled: list[tuple[str, ast.expr]],
              terms: list[tuple[int, ast.expr]], arrays: dict[str, Array]
              ) -> Callable[[float], Any] | None:
    """The same loss and δ(L) · 1/|B| as one loop over the samples, where the executor compiles
    one (``Loops.columns``): softmax's column maximum, exp and sum, then δ(L) and the loss terms,
    per sample."""
    columns = getattr(execute, "columns", None)
    if columns is None:
        return None
    stages: list[tuple[str, str, ast.expr]] = []
    if output == "softmax":
        stages += [("max", "mx", ast.Name("z")),
                   ("map", *FORMULAS["softmax_exp"].specialize()[0]),
                   ("sum", "s", ast.Name("e"))]
    stages += [("map", t, e) for t, e in scaled]
    try:
        return columns("loss_" + output, stages, terms, arrays,  # type: ignore[no-any-return]
                       frozenset({"scale"}))
    except ValueError:  # a loss the loop cannot take: the calls
        return None


def penalty(xnp: Any, dtype: Any, Theta: list[Array], b: list[Array]) -> Program:
    """Eqn (3)'s λ/2 Σ ‖W(ℓ)‖²_F (weights only) as a function of λ: the l2 formula summed over
    each contiguous Θ(ℓ) = [W(ℓ) | b(ℓ)], less over its bias column, in one program."""
    l2, arrays, terms = FORMULAS["l2"].expression, {}, []
    for ell, (t, bias) in enumerate(zip(Theta, b)):
        arrays[f"t{ell}"], arrays[f"b{ell}"] = t, bias
        terms += [(1, substitute(l2, {"w": ast.Name(f"t{ell}")})),
                  (-1, substitute(l2, {"w": ast.Name(f"b{ell}")}))]
    return total(xnp, dtype, terms, arrays, scalars=frozenset({"lam"}), name="l2")
