"""Executing formulas without restating them: as calls into preallocated buffers, or as C.

:func:`program` turns statements of :mod:`vnn.math.formulas` (specialised, inlined) into a Python
function, generated once, that calls a NumPy-API module's ufuncs with ``out=`` buffers: no array is
allocated when it runs. Sub-expressions are evaluated into the statement's own target where that is
safe, else into scratch buffers: an input the caller lets go (``consumable``, e.g. a gradient after
its last use) or a temporary made once. :func:`total` does the same for a sum over all elements
(the losses, the L2 term), as dot products where a term is a product of two arrays.
:func:`kernel_source` writes the same statements as the body of one CUDA elementwise kernel.

``program(...).source`` is the generated code, for anyone checking what a step executes.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from typing import Any

from vnn.math.formula import COMPARISONS, OPERATORS, PRIMITIVES, is_array

Array = Any
Statements = list[tuple[str, ast.expr]]

_MATH = {"exp": math.exp, "log": math.log, "log1p": math.log1p, "sqrt": math.sqrt,
         "tanh": math.tanh, "abs": abs, "max": max}


class _Gen:
    """Code generation for one program: buffers and constants are names in ``env``."""

    def __init__(self, xnp: Any, dtype: Any, arrays: Mapping[str, Array], scalars: frozenset[str],
                 temp: Callable[[], Array] | None, consumable: frozenset[str],
                 constant: Callable[[float, Array], Array | None] | None,
                 ones: Callable[[Array], Array | None] | None) -> None:
        self.xnp, self.dt, self.arrays, self.scalars = xnp, dtype.type, arrays, scalars
        self.dtype = dtype
        self.make_temp, self.consumable = temp, set(consumable)
        self.constant, self.ones = constant, ones
        self.env: dict[str, Any] = {"xnp": xnp, "dt": self.dt, **_MATH}  # the formulas' names are
        # the generated function's parameters (scalars) or locals
        self.lines: list[str] = []
        self._ids: dict[int, str] = {}
        self.free: list[str] = []  # scratch buffers not in use
        self.later: list[ast.expr] = []  # expressions still to be emitted (for consumable reads)
        self.known: dict[str, str] = {}  # sub-expression (in buffer names) -> buffer holding it
        self.scratch: Any = None  # where total() evaluates a term that is not a dot product
        self.term_shape: tuple[int, ...] = ()  # the shape of the elements total() is summing
        self.made: dict[tuple[int, ...], Array] = {}  # scratch made by total(), by shape

    # -- names ----------------------------------------------------------------------------------------
    def put(self, value: Any, prefix: str) -> str:
        key = id(value)
        if key not in self._ids:  # "_" first: never a formula's name (a parameter)
            name = f"_{prefix}{len(self._ids)}"
            self._ids[key], self.env[name] = name, value
        return self._ids[key]

    def var(self, name: str) -> str:
        return self.put(self.arrays[name], "b")

    def is_array(self, node: ast.expr) -> bool:
        return is_array(node, self.scalars)

    def scalar(self, node: ast.expr) -> str:
        """A number of the host: a constant of ``env`` or an expression of the scalars."""
        if not any(isinstance(n, ast.Name) for n in ast.walk(node)):
            return self.put(self.dt(eval(ast.unparse(node), dict(_MATH))), "c")  # noqa: S307
        return f"dt({ast.unparse(node)})"

    def key(self, node: ast.expr) -> str:
        """``node`` with its names replaced by the buffers they are bound to."""
        class Rename(ast.NodeTransformer):
            def visit_Name(s, n: ast.Name) -> ast.AST:  # noqa: N805
                return ast.Name(self.var(n.id)) if self.is_array(n) else n

        return ast.unparse(Rename().visit(ast.parse(ast.unparse(node), mode="eval").body))

    def leaf(self, node: ast.expr) -> str | None:
        """The operand text of a scalar, an array name or an already computed sub-expression."""
        if not self.is_array(node):
            return self.scalar(node)
        if isinstance(node, ast.Name):
            return self.var(node.id)
        return self.known.get(self.key(node))

    # -- scratch ----------------------------------------------------------------------------------------
    def temp(self, sub: ast.expr, avoid: set[str], like: str) -> str:
        """A buffer to evaluate ``sub`` into: a consumable input read nowhere else, a free
        scratch buffer, or a new one (from ``temp``, else shaped like the buffer ``like``)."""
        for name in sorted(self.consumable):
            buf = self.var(name)
            if buf not in avoid and self._reads(name, sub) == self._reads_all(name):
                self.consumable.discard(name)  # it holds garbage from now on
                return buf
        for buf in self.free:
            if buf not in avoid:
                self.free.remove(buf)
                return buf
        if self.make_temp is not None:
            return self.put(self.make_temp(), "t")
        shape = self.env[like].shape  # made once, here, when the program is generated
        return self.put(self.xnp.empty(shape, dtype=self.dtype), "t")

    def release(self, buf: str) -> None:
        """``buf``, from :meth:`temp`, is free again."""
        self.free.append(buf)

    @staticmethod
    def _reads(name: str, node: ast.expr) -> int:
        return sum(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))

    def _reads_all(self, name: str) -> int:
        return sum(self._reads(name, e) for e in self.later)

    # -- emission ---------------------------------------------------------------------------------------
    def call(self, fn: str, args: list[str], dest: str) -> None:
        if fn == "maximum":  # NumPy takes maximum's output only as a keyword
            self.lines.append(f"xnp.maximum({', '.join(args)}, out={dest})")
        else:
            self.lines.append(f"xnp.{fn}({', '.join(args)}, {dest})")

    def emit(self, node: ast.expr, dest: str) -> None:
        """Write the value of the array expression ``node`` into the buffer ``dest``."""
        done = self.leaf(node)
        if done is not None:
            if done != dest:
                self.lines.append(f"{dest}[...] = {done}")
            return
        if isinstance(node, ast.BinOp):
            self.binary(OPERATORS[type(node.op)], node.left, node.right, dest)
        elif isinstance(node, ast.Compare):
            self.binary(COMPARISONS[type(node.ops[0])], node.left, node.comparators[0], dest)
        elif isinstance(node, ast.Call) and node.func.id == "max":  # type: ignore[attr-defined]
            a, b = node.args
            self.binary("maximum", a, b, dest, materialise=True)
        elif isinstance(node, ast.Call):
            self.unary(PRIMITIVES[node.func.id], node.args[0], dest)  # type: ignore[attr-defined]
        elif isinstance(node, ast.UnaryOp):
            self.unary("negative", node.operand, dest)
        else:  # pragma: no cover - Formula checks the language
            raise ValueError(f"cannot execute {ast.unparse(node)!r}")

    def unary(self, fn: str, x: ast.expr, dest: str) -> None:
        X = self.leaf(x)
        if X is None:
            self.emit(x, dest)
            X = dest
        self.call(fn, [X], dest)

    def binary(self, fn: str, left: ast.expr, right: ast.expr, dest: str,
               materialise: bool = False) -> None:
        L, R = self.leaf(left), self.leaf(right)
        if materialise and self.constant is not None:  # maximum(z, 0): faster against an array
            L, R = self.materialised(left, L, dest), self.materialised(right, R, dest)
        if L is not None and R is not None:
            self.call(fn, [L, R], dest)
        elif L is not None:  # dest must not be read after it is first written
            inner = dest if L != dest else self.temp(right, {dest}, dest)
            self.emit(right, inner)
            self.call(fn, [L, inner], dest)
            if inner != dest:
                self.release(inner)
        elif R is not None:
            inner = dest if R != dest else self.temp(left, {dest}, dest)
            self.emit(left, inner)
            self.call(fn, [inner, R], dest)
            if inner != dest:
                self.release(inner)
        else:  # the right side first, into scratch: then the left may read dest freely
            t = self.temp(right, {dest} | self._buffers(left), dest)
            self.emit(right, t)
            self.emit(left, dest)
            self.call(fn, [dest, t], dest)
            self.release(t)

    def materialised(self, node: ast.expr, text: str | None, dest: str) -> str | None:
        if text is None or self.is_array(node) or self.constant is None:
            return text
        value = float(eval(ast.unparse(node), dict(_MATH)))  # noqa: S307 - a number of the table
        arr = self.constant(value, self.env[dest])
        return text if arr is None else self.put(arr, "k")

    def _buffers(self, node: ast.expr) -> set[str]:
        return {self.var(n.id) for n in ast.walk(node) if isinstance(n, ast.Name) and self.is_array(n)}

    def total(self, node: ast.expr) -> str:
        """Python text of Σ over all elements of ``node``, its work appended to ``lines``."""
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            sign = "+" if isinstance(node.op, ast.Add) else "-"
            return f"({self.total(node.left)} {sign} {self.total(node.right)})"
        if isinstance(node, ast.UnaryOp):
            return f"(-{self.total(node.operand)})"
        factors = _factors(node)
        numbers = [self.scalar(f) for f in factors if not self.is_array(f)]
        arrays = [f for f in factors if self.is_array(f)]
        leaves = [self.leaf(f) for f in arrays]
        if not arrays:  # a number, summed over every element of the term's shape
            value = repr(int(_size(self.term_shape)))
        elif len(arrays) == 2 and None not in leaves:
            value = f"xnp.vdot({leaves[0]}, {leaves[1]})"
        elif len(arrays) == 1 and leaves[0] is not None:
            value = self.sum_of(leaves[0])  # type: ignore[arg-type]
        else:
            buf = self.put(self._scratch_buffer(), "s")
            self.emit(_product(arrays), buf)
            value = self.sum_of(buf)
        name = f"_j{len(self.lines)}"  # a local
        self.lines.append(f"{name} = {' * '.join(numbers + [value])}")
        return name

    def _scratch_buffer(self) -> Array:
        """The given scratch buffer when it has the term's shape, else one made for it."""
        if self.scratch is not None and tuple(self.scratch.shape) == self.term_shape:
            return self.scratch
        made = self.made.get(self.term_shape)
        if made is None:
            made = self.made[self.term_shape] = self.xnp.empty(self.term_shape, dtype=self.dtype)
        return made

    def sum_of(self, buf: str) -> str:
        ones = None if self.ones is None else self.ones(self.env[buf])
        return f"{buf}.sum()" if ones is None else f"xnp.vdot({buf}, {self.put(ones, 'o')})"


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for k in shape:
        n *= int(k)
    return n


def _factors(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _factors(node.left) + _factors(node.right)
    return [node]


def _product(nodes: list[ast.expr]) -> ast.expr:
    out = nodes[0]
    for n in nodes[1:]:
        out = ast.BinOp(out, ast.Mult(), n)
    return out


class Program:
    """A generated function of the scalars ``params``; ``source`` is its code."""

    def __init__(self, gen: _Gen, params: list[str], name: str, result: str | None = None) -> None:
        body = gen.lines + ([f"return {result}"] if result else [])
        self.source = f"def {name}({', '.join(params)}):\n" + "".join(
            f"    {line}\n" for line in body or ["pass"])
        exec(compile(self.source, f"<{name}>", "exec"), gen.env)  # noqa: S102 - generated here
        self.run: Callable[..., Any] = gen.env[name]
        self.params = params

    def __call__(self, *scalars: Any) -> Any:
        return self.run(*scalars)


def program(xnp: Any, dtype: Any, statements: Statements, arrays: Mapping[str, Array],
            scalars: frozenset[str] = frozenset(), *, name: str = "program",
            temp: Callable[[], Array] | None = None, consumable: frozenset[str] = frozenset(),
            constant: Callable[[float, Array], Array | None] | None = None,
            known: Mapping[str, Array] | None = None) -> Program:
    """The statements as calls on the buffers ``arrays`` (name -> array; a target too), a
    function of the ``scalars`` (in sorted order). ``known``: sub-expression text -> a buffer
    that already holds its value."""
    gen = _Gen(xnp, dtype, arrays, scalars, temp, consumable, constant, None)
    _learn(gen, known)
    for i, (target, expr) in enumerate(statements):
        gen.later = [e for _, e in statements[i:]]
        gen.emit(expr, gen.var(target))
    return Program(gen, sorted(scalars), name)


def total(xnp: Any, dtype: Any, terms: list[tuple[int, ast.expr]], arrays: Mapping[str, Array],
          scratch: Array | None = None, scalars: frozenset[str] = frozenset(), *,
          name: str = "total", constant: Callable[[float, Array], Array | None] | None = None,
          ones: Callable[[Array], Array | None] | None = None,
          known: Mapping[str, Array] | None = None) -> Program:
    """Σ over (sign, expression) ``terms`` of ± the sum of the expression over its elements (the
    shape of its largest array), a function of the ``scalars`` returning the total. A term that
    is not a dot product is evaluated first, into ``scratch`` if it has its shape, else into a
    buffer made once for it."""
    gen = _Gen(xnp, dtype, arrays, scalars, None, frozenset(), constant, ones)
    gen.scratch = scratch
    _learn(gen, known)
    parts = []
    for sign, expr in terms:
        shapes = [tuple(arrays[n.id].shape) for n in ast.walk(expr)
                  if isinstance(n, ast.Name) and n.id in arrays]
        gen.term_shape = max(shapes, key=_size, default=())
        gen.later = [expr]
        parts.append(("-" if sign < 0 else "+") + gen.total(expr))
    return Program(gen, sorted(scalars), name, "".join(parts).lstrip("+") or "0.0")


def _learn(gen: _Gen, known: Mapping[str, Array] | None) -> None:
    for text, buf in (known or {}).items():
        gen.known[gen.key(ast.parse(text, mode="eval").body)] = gen.put(buf, "b")


# -- the fused execution: one CUDA kernel ------------------------------------------------------------
def named_numbers(expr: ast.expr, numbers: dict[float, str]) -> ast.expr:
    """A copy of ``expr`` with every number replaced by a name ``_k0, _k1, ..`` (``numbers``:
    value -> name, extended here), so that a compiled kernel takes it as an input of its type."""

    class Numbers(ast.NodeTransformer):
        def visit_Constant(self, c: ast.Constant) -> ast.AST:
            value = float(c.value)  # type: ignore[arg-type]
            if value not in numbers:
                numbers[value] = f"_k{len(numbers)}"
            return ast.Name(numbers[value])

    return Numbers().visit(ast.parse(ast.unparse(expr), mode="eval").body)  # type: ignore[no-any-return]


def kernel_source(statements: Statements, args: tuple[str, ...]
                  ) -> tuple[list[str], list[str], str, dict[str, float]]:
    """The statements as one elementwise kernel: (inputs, outputs, body, numbers).

    The body is C that is also Python (``d = d * (a > _k0);``): every number is an input
    ``_k0, _k1, ..`` of the kernel's type (``numbers`` gives their values), so that no literal
    changes the precision. Outputs are what the statements assign (read and written in place);
    inputs, in the order of ``args``, every other name they read, then the numbers."""
    numbers: dict[float, str] = {}
    done = [(t, named_numbers(e, numbers)) for t, e in statements]
    outs = list(dict.fromkeys(t for t, _ in done))
    read = {n.id for _, e in done for n in ast.walk(e) if isinstance(n, ast.Name)}
    ins = [a for a in args if a in read and a not in outs] + list(numbers.values())
    body = " ".join(f"{t} = {ast.unparse(e)};" for t, e in done)
    return ins, outs, body, {name: value for value, name in numbers.items()}
