"""Executors: how the preallocated step runs a formula's statements on its buffers.

The step's plan (``vnn.step.preallocated``) decides which formula runs on which buffers; an
executor turns the statements into a call with the same interface: ``run(*scalars)`` (the scalars
in sorted order) and ``source`` (what it executes).

- :class:`Calls`: calls of a NumPy-API module's ufuncs with ``out=`` buffers, generated once
  (``vnn.step.compile.program``): NumPy, and CuPy without kernels.
- :class:`Kernels`: one elementwise kernel per formula, compiled by the backend's ``kernel``
  from C that is also Python (``vnn.step.compile.kernel_source``): CuPy.
- :class:`Loops`: the same kernel bodies as compiled loops that see their operands
  (``backends/loops.py``, numba): NumPy, when numba is installed.

Another execution (the portable step under ``jax.jit``, CUDA-graph capture of the CuPy step) is
another executor of the same statements, or a wrapper around a plan's calls: the formulas and the
plan stay where they are.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from vnn.math.formula import is_array, substitute
from vnn.step.compile import _MATH, Program, kernel_source, named_numbers, program

Array = Any
Statements = list[tuple[str, ast.expr]]
#: a stage of :meth:`Loops.columns`: (kind, target, expression)
Stage = tuple[str, str, ast.expr]
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
        order = sorted(scalars)
        statements, host = hoist(statements, scalars)
        ins, outs, body, numbers = kernel_source(statements, tuple(args) + tuple(host))
        dt = self.dtype.type
        given = scalars | set(host)
        fixed = [None if n in given else dt(numbers[n]) if n in numbers else arrays[n]
                 for n in ins]
        outputs = [arrays[n] for n in outs]
        k = self.make(f"vnn_{name}", ins, outs, body, fixed, outputs)
        derive = _host_function(order, list(host.values()))
        names = order + list(host)
        where = [(i, names.index(n)) for i, n in enumerate(ins) if n in given]

        def run(*values: float) -> None:
            every = values + derive(*values) if host else values
            call = list(fixed)
            for i, j in where:
                call[i] = dt(every[j])
            k(*call, *outputs)

        return Fused(run, body + "\n")

    def make(self, name: str, ins: list[str], outs: list[str], body: str,
             inputs: list[Any], outputs: list[Array]) -> Any:
        """The kernel of ``body`` (compiled once per body and signature); ``inputs`` are the
        arrays and numbers it will be called with (None: a scalar given per call)."""
        key = (body, tuple(ins), tuple(outs))
        if key not in self._made:
            self._made[key] = self.kernel(name, ins, outs, body)
        return self._made[key]


def hoist(statements: Statements, scalars: frozenset[str]
          ) -> tuple[Statements, dict[str, str]]:
    """The statements with each sub-expression of numbers and scalars alone (``1 - b2``,
    ``lr * c``) replaced by a new scalar ``_h0, _h1, ..``, and those expressions: they are worked
    out on the host in float64 and handed to the kernel rounded once, as the ``out=`` calls do.
    Inside a float32 kernel ``1 - b2`` would be 1 − float32(0.999), 1.3e-5 off in relative
    terms, which biases Adam's second moment."""
    host: dict[str, str] = {}

    class Hoist(ast.NodeTransformer):
        def visit(self, node: ast.AST) -> ast.AST:
            if (isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call, ast.Compare))
                    and not is_array(node, scalars)):  # type: ignore[arg-type]
                text = ast.unparse(node)
                name = next((k for k, v in host.items() if v == text), f"_h{len(host)}")
                host[name] = text
                return ast.Name(name)
            return super().visit(node)

    out = [(t, Hoist().visit(substitute(e, {}))) for t, e in statements]
    return out, host  # type: ignore[return-value]


def _host_function(params: list[str], expressions: list[str]) -> Callable[..., tuple[float, ...]]:
    """``f(*params) -> (value of each expression,)`` in Python floats (the formulas' functions
    from ``math``)."""
    env: dict[str, Any] = dict(_MATH)  # the host's versions of the formulas' functions
    src = f"lambda {', '.join(params)}: ({''.join(e + ', ' for e in expressions)})"
    return eval(src, env)  # type: ignore[no-any-return]  # noqa: S307 - the library's formulas


class Loops(Kernels):
    """Kernels made with their operands in view (``kernel(name, ins, outs, body, inputs,
    outputs)``: a backend's compiled CPU loops, which read broadcast operands by their shapes).
    A formula calling one of ``calls_for`` (functions the backend's own calls do faster, e.g.
    NumPy's SIMD float32 tanh) runs as :class:`Calls` instead, and so does one that is a single
    call anyway (ReLU: ``maximum(z, 0)``): NumPy's vectorised ufunc is 2× the loop here
    (8192 float32 elements: 3.0 µs against 5-8 µs), and a loop pays only when it saves passes."""

    def __init__(self, xnp: Any, dtype: Any, kernel: Callable[..., Any],
                 calls_for: frozenset[str] = frozenset(),
                 columns: Callable[..., Any] | None = None) -> None:
        super().__init__(xnp, dtype, kernel)
        self.calls_for = calls_for
        self._columns = columns

    def columns(self, name: str, stages: list[Stage], terms: list[tuple[int, ast.expr]],
                arrays: dict[str, Array], scalars: frozenset[str]) -> Callable[..., Any] | None:
        """``stages`` and the sum of ``terms`` as one compiled loop over the columns (samples)
        of 2-d buffers, a function of the ``scalars`` (in sorted order) returning the sum; None
        when the backend makes no such loop.

        A stage is ``("max" | "sum", target, expression)``: the column's maximum or sum of the
        expression into ``target`` (one row), or ``("map", target, expression)``: the formula
        on every element. A term is summed over every element of its largest operand: once per
        column when it reads only rows. The terms are evaluated in the last stage's loop, and
        must not read what that loop writes. This is the whole of Eqns (3)-(6) and δ(L)
        (Eqns 10-12) in one pass over each sample's outputs."""
        if self._columns is None:
            return None
        numbers: dict[float, str] = {}  # every number an argument of the buffers' type

        def text(e: ast.expr) -> str:
            return ast.unparse(named_numbers(e, numbers))

        staged = [(kind, target, text(e)) for kind, target, e in stages]
        summed = [(sign, text(e)) for sign, e in terms]
        order = sorted(scalars)
        used = {n.id for _, _, t in staged for n in ast.walk(ast.parse(t))
                if isinstance(n, ast.Name)} | {t for _, t, _ in staged}
        used |= {n.id for _, t in summed for n in ast.walk(ast.parse(t)) if isinstance(n, ast.Name)}
        names = [n for n in arrays if n in used]
        dt = self.dtype.type
        inputs = ([arrays[n] for n in names] + [dt(v) for v in numbers]
                  + [None] * len(order))
        f = self._columns(f"vnn_{name}", names + list(numbers.values()) + order, staged, summed,
                          inputs)

        def run(*values: float) -> Any:
            return dt(f(*inputs[:len(inputs) - len(order)], *[dt(v) for v in values]))

        return run

    def __call__(self, name: str, statements: Statements, args: tuple[str, ...],  # type: ignore[override]
                 arrays: dict[str, Array], scalars: frozenset[str] = frozenset(),
                 temp: Callable[[], Array] | None = None,
                 consumable: frozenset[str] = frozenset()) -> Program | Fused:
        if any(isinstance(n, ast.Call) and getattr(n.func, "id", None) in self.calls_for
               for _, e in statements for n in ast.walk(e)):
            return Calls.__call__(self, name, statements, args, arrays, scalars, temp, consumable)
        if _one_operation(statements):  # one pass anyway: the backend's (SIMD) call
            return Calls.__call__(self, name, statements, args, arrays, scalars, temp, consumable)
        return super().__call__(name, statements, args, arrays, scalars, temp, consumable)

    def make(self, name: str, ins: list[str], outs: list[str], body: str,
             inputs: list[Any], outputs: list[Array]) -> Any:
        return self.kernel(name, ins, outs, body, inputs, outputs)  # type: ignore[call-arg]


def _one_operation(statements: Statements) -> bool:
    """Whether the statements are one operation on names and numbers (``a = max(z, 0)``,
    ``p = p - g``): one ufunc call, with no scratch."""
    if len(statements) != 1:
        return False
    ops = [n for n in ast.walk(statements[0][1])
           if isinstance(n, (ast.BinOp, ast.UnaryOp, ast.Call, ast.Compare))]
    return len(ops) == 1 and all(isinstance(c, (ast.Name, ast.Constant, ast.operator, ast.cmpop,
                                                ast.unaryop, ast.expr_context))
                                 for c in ast.iter_child_nodes(ops[0]))


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
