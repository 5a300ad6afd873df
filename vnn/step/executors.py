"""Executors: how the preallocated step runs a formula's statements on its buffers.

The step's plan (``vnn.step.preallocated``) decides which formula runs on which buffers; an
executor turns the statements into a call with the same interface: ``run(*scalars)`` (the scalars
in sorted order) and ``source`` (what it executes).

- :class:`Calls`: calls of a NumPy-API module's ufuncs with ``out=`` buffers, generated once
  (``vnn.step.compile.program``): NumPy, and CuPy without kernels.
- :class:`Kernels`: one elementwise kernel per formula, compiled by the backend's ``kernel``
  from C that is also Python (``vnn.step.compile.kernel_source``): CuPy.

Another execution (a numba-compiled CPU step, the portable step under ``jax.jit``, CUDA-graph
capture of the CuPy step) is another executor of the same statements, or a wrapper around a
plan's calls: the formulas and the plan stay where they are.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from vnn.math.formula import substitute
from vnn.step.compile import Program, kernel_source, program

Array = Any
Statements = list[tuple[str, ast.expr]]
#: kernel(name, inputs, outputs, body) -> f(*inputs, *outputs), outputs updated in place
KernelMaker = Callable[[str, list[str], list[str], str], Any]


class Calls:
    """Formulas as generated ``out=`` calls of the module ``xnp``."""

    #: whether an elementwise formula and its neighbours may become one call (the plan then
    #: fuses φ′ into δ and 1/|B| into δ(L))
    fuses = False

    def __init__(self, xnp: Any, dtype: Any) -> None:
        self.xnp, self.dtype = xnp, dtype
        self._constants: dict[tuple[float, tuple[int, ...]], Array] = {}

    def __call__(self, name: str, statements: Statements, args: tuple[str, ...],
                 arrays: dict[str, Array], scalars: frozenset[str] = frozenset(),
                 temp: Callable[[], Array] | None = None,
                 consumable: frozenset[str] = frozenset()) -> Program:
        return program(self.xnp, self.dtype, statements, arrays, scalars, name=name, temp=temp,
                       consumable=consumable, constant=self.constant)

    def constant(self, value: float, like: Array) -> Array:
        """``value`` as an array shaped like ``like``: NumPy's maximum is several times faster
        against an array of zeros than against the number 0."""
        key = (value, tuple(like.shape))
        if key not in self._constants:
            self._constants[key] = self.xnp.full(like.shape, value, dtype=self.dtype)
        return self._constants[key]


class Kernels(Calls):
    """Formulas as one elementwise kernel each, made by ``kernel`` (compiled once per body)."""

    fuses = True

    def __init__(self, xnp: Any, dtype: Any, kernel: KernelMaker) -> None:
        super().__init__(xnp, dtype)
        self.kernel = kernel
        self._made: dict[Any, Any] = {}

    def __call__(self, name: str, statements: Statements, args: tuple[str, ...],  # type: ignore[override]
                 arrays: dict[str, Array], scalars: frozenset[str] = frozenset(),
                 temp: Callable[[], Array] | None = None,
                 consumable: frozenset[str] = frozenset()) -> Fused:
        """One kernel of the statements. Names bound to the same buffer become one (the
        kernel's output); the numbers are inputs of the kernel's type."""
        targets = {id(arrays[t]): t for t, _ in statements}
        alias = {n: targets[id(a)] for n, a in arrays.items()
                 if id(a) in targets and targets[id(a)] != n}
        if alias:
            statements = [(t, substitute(e, {k: ast.Name(v) for k, v in alias.items()}))
                          for t, e in statements]
        statements = [(t, e) for t, e in statements
                      if not (isinstance(e, ast.Name) and e.id == t)]  # `a = a`: nothing to do
        if not statements:  # (φ = identity on its own buffer): no kernel; calls() drops it
            return Fused(lambda *values: None, "pass\n")
        ins, outs, body, numbers = kernel_source(statements, tuple(args))
        key = (body, tuple(ins), tuple(outs))
        if key not in self._made:
            self._made[key] = self.kernel(f"vnn_{name}", ins, outs, body)
        k, dt = self._made[key], self.dtype.type
        order = sorted(scalars)
        fixed = [None if n in scalars else dt(numbers[n]) if n in numbers else arrays[n]
                 for n in ins]
        where = [(i, order.index(n)) for i, n in enumerate(ins) if n in scalars]
        outputs = [arrays[n] for n in outs]

        def run(*values: float) -> None:
            call = list(fixed)
            for i, j in where:
                call[i] = dt(values[j])
            k(*call, *outputs)

        return Fused(run, body + "\n")


class Fused:
    """A kernel call in the form of a :class:`~vnn.step.compile.Program` (``run``, ``source``)."""

    def __init__(self, run: Callable[..., None], source: str) -> None:
        self.run, self.source = run, source

    def __call__(self, *values: float) -> None:
        self.run(*values)


def calls(prog: Program | Fused) -> list[tuple[Any, tuple[Any, ...]]]:
    """``prog`` as entries of a plan's list of calls: none when it does nothing (a formula
    whose target is its input, ``a = z`` in place)."""
    return [] if prog.source.endswith("pass\n") else [(prog.run, ())]
