"""The language the formulas are written in: the part of C that is also Python.

A formula is one or more statements ``name = expression`` separated by ``;``. An expression uses
numbers, names, ``+ - * /``, unary minus, one comparison (``a > 0``: 1 where true, else 0), the
elementwise functions of :data:`PRIMITIVES` and, by name, any single-statement formula of the same
table (it is inlined, its parameters replaced by the arguments). The same text is

- evaluated on any Array API namespace ``xp`` (:meth:`Formula.portable`, the portable step);
- compiled into calls that write into preallocated buffers (``vnn.step.compile``, NumPy, CuPy);
- compiled into the body of one CUDA kernel (``vnn.step.compile.c_body``, the fused step).

The names of a formula are arrays, except those listed as ``scalars`` (a step's coefficients: η,
β, 1/|B|). :meth:`Formula.specialize` folds the scalars that are 0 or 1 (``0 * g`` goes, ``1 * v``
is ``v``), which is how one update is several of the derivation's (Eqn 16 and Nesterov's momentum
are one formula) without extra work for the terms that vanish.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

#: elementwise functions a formula may call, with their Array API names
PRIMITIVES = {"exp": "exp", "log": "log", "log1p": "log1p", "sqrt": "sqrt", "tanh": "tanh",
              "abs": "abs", "max": "maximum"}
#: comparisons a formula may use, with their Array API names
COMPARISONS = {ast.Gt: "greater", ast.GtE: "greater_equal", ast.Lt: "less", ast.LtE: "less_equal"}
#: arithmetic a formula may use, with their Array API names
OPERATORS = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide"}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/",
            ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<="}


class Table(dict):  # type: ignore[type-arg]
    """A table of formulas, by name; its ``version`` changes when an entry does (compiled forms
    of the formulas that inline it are then made again)."""

    version = 0

    def __setitem__(self, name: str, formula: Formula) -> None:
        super().__setitem__(name, formula)
        self.version += 1

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name)
        self.version += 1


class FormulaError(ValueError):
    """A formula outside the language (a bug in the table, reported with the formula's name)."""


class Formula:
    """One formula: its statements, its parameters (arrays and scalars) and what it assigns.

    ``args`` names the parameters in order (how another formula calls it); ``scalars`` those of
    them that are numbers. Names assigned by a statement are the formula's ``outputs``.
    """

    def __init__(self, name: str, text: str, args: str, scalars: str = "",
                 table: Mapping[str, Formula] | None = None) -> None:
        self.name, self.text = name, text
        self.args = tuple(a.strip() for a in args.split(",") if a.strip())
        self.scalars = frozenset(s.strip() for s in scalars.split(",") if s.strip())
        self.scalar_order = tuple(sorted(self.scalars))  # how compiled forms take them
        self._table = table
        self._compiled: dict[Any, Callable[..., Any]] = {}
        try:
            tree = ast.parse("\n".join(s.strip() for s in text.split(";")), mode="exec")
        except SyntaxError as exc:
            raise FormulaError(f"formula {name!r}: {text!r} does not parse ({exc.msg})") from None
        self.statements: list[tuple[str, ast.expr]] = []
        for st in tree.body:
            if not (isinstance(st, ast.Assign) and len(st.targets) == 1
                    and isinstance(st.targets[0], ast.Name)):
                raise FormulaError(f"formula {name!r}: every statement must be `name = expression`")
            self.statements.append((st.targets[0].id, st.value))
        self.outputs = tuple(dict.fromkeys(t for t, _ in self.statements))
        for _, expr in self.statements:
            self._check(expr)

    def __repr__(self) -> str:
        return f"Formula({self.name!r}, {self.text!r})"

    # -- the language --------------------------------------------------------------------------------
    def _check(self, node: ast.AST) -> None:
        known = set(self.args) | set(self.outputs)
        for sub in ast.walk(node):
            ok = isinstance(sub, (ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name,
                                  ast.Constant, ast.Load, ast.operator, ast.unaryop, ast.cmpop))
            if isinstance(sub, ast.BinOp):
                ok = type(sub.op) in OPERATORS
            elif isinstance(sub, ast.UnaryOp):
                ok = isinstance(sub.op, ast.USub)
            elif isinstance(sub, ast.Compare):
                ok = len(sub.ops) == 1 and type(sub.ops[0]) in COMPARISONS
            elif isinstance(sub, ast.Call):
                fname = getattr(sub.func, "id", None)
                ok = not sub.keywords and (fname in PRIMITIVES or fname in (self._table or {}))
            elif isinstance(sub, ast.Constant):
                ok = isinstance(sub.value, (int, float)) and not isinstance(sub.value, bool)
            elif isinstance(sub, ast.Name) and sub.id not in PRIMITIVES:
                # names starting with "_" are the compiled forms' own (_k0, _h0: numbers)
                ok = (sub.id in known or sub.id in (self._table or {})) and \
                    not sub.id.startswith("_")
            if not ok:
                raise FormulaError(f"formula {self.name!r}: {ast.unparse(sub)!r} is outside the "
                                   "language (names, numbers, + - * /, one comparison, "
                                   f"{sorted(PRIMITIVES)} and the table's formulas)")

    @property
    def expression(self) -> ast.expr:
        """The expression of a single-statement formula, other formulas inlined."""
        if len(self.statements) != 1:
            raise FormulaError(f"formula {self.name!r} has {len(self.statements)} statements; "
                               "only a single-statement formula has one expression")
        return self.inlined()[0][1]

    def inlined(self) -> list[tuple[str, ast.expr]]:
        """The statements with every call of another formula replaced by its expression."""
        return [(t, _inline(e, self._table or {})) for t, e in self.statements]

    def specialize(self, key: tuple[tuple[str, float], ...] = ()) -> list[tuple[str, ast.expr]]:
        """The inlined statements with the scalars named in ``key`` (name, 0.0 or 1.0) folded."""
        values = dict(key)
        return [(t, _fold(e, values)) for t, e in self.inlined()]

    def key(self, scalars: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
        """The specialisation key of these scalar values: which of them are 0 or 1."""
        return tuple(sorted((k, float(v)) for k, v in scalars.items()
                            if k in self.scalars and v in (0.0, 1.0)))

    # -- the portable execution ----------------------------------------------------------------------
    def portable(self, scalars: Mapping[str, float] | None = None) -> Callable[..., Any]:
        """The formula as a function ``f(xp, *args)`` of Array API arrays (and scalars), returning
        its output (or a tuple of its outputs), allocating new arrays."""
        return self.specialized(self.key(scalars or {}))

    def specialized(self, key: tuple[tuple[str, float], ...]) -> Callable[..., Any]:
        """:meth:`portable` for the specialisation ``key`` (:meth:`key` of some scalar values)."""
        version = (getattr(self._table, "version", 0), key)
        run = self._compiled.get(version)
        if run is None:
            run = self._compiled[version] = _portable(self, key)
        return run

    def __call__(self, xp: Any, *args: Any) -> Any:
        """The formula on ``xp`` with these arguments (arrays, and numbers for the scalars)."""
        return self.portable(dict(zip(self.args, args)))(xp, *args)


def _inline(node: ast.expr, table: Mapping[str, Formula]) -> ast.expr:
    class Inline(ast.NodeTransformer):
        def visit_Call(self, call: ast.Call) -> ast.AST:
            self.generic_visit(call)
            fname = call.func.id  # type: ignore[attr-defined]
            if fname in PRIMITIVES:
                return call
            f = table[fname]
            if len(call.args) != len(f.args):
                raise FormulaError(f"{ast.unparse(call)!r}: formula {fname!r} takes {f.args}")
            mapping = dict(zip(f.args, call.args))
            return substitute(f.expression, mapping)

    return Inline().visit(_copy(node))  # type: ignore[no-any-return]


def substitute(node: ast.expr, mapping: Mapping[str, ast.expr]) -> ast.expr:
    class Sub(ast.NodeTransformer):
        def visit_Name(self, name: ast.Name) -> ast.AST:
            return _copy(mapping[name.id]) if name.id in mapping else name

    return Sub().visit(_copy(node))  # type: ignore[no-any-return]


def _copy(node: ast.expr) -> ast.expr:
    return ast.parse(ast.unparse(node), mode="eval").body


def _number(node: ast.expr, values: Mapping[str, float]) -> float | None:
    if isinstance(node, ast.Constant):
        return float(node.value)  # type: ignore[arg-type]
    if isinstance(node, ast.Name) and node.id in values:
        return values[node.id]
    return None


def _fold(node: ast.expr, values: Mapping[str, float]) -> ast.expr:
    """``node`` with ``x * 0``, ``x * 1``, ``x + 0``, ``x - 0``, ``x / 1`` simplified, where 0 and
    1 are numbers or scalars of ``values``."""
    class Fold(ast.NodeTransformer):
        def visit_BinOp(self, b: ast.BinOp) -> ast.AST:
            self.generic_visit(b)
            lv, rv = _number(b.left, values), _number(b.right, values)
            op = type(b.op)
            if op is ast.Mult and (lv == 0.0 or rv == 0.0):
                return ast.Constant(0)
            if op is ast.Mult and lv == 1.0:
                return b.right
            if op in (ast.Mult, ast.Div) and rv == 1.0:
                return b.left
            if op is ast.Add and lv == 0.0:
                return b.right
            if op in (ast.Add, ast.Sub) and rv == 0.0:
                return b.left
            if op is ast.Sub and lv == 0.0:
                return ast.UnaryOp(ast.USub(), b.right)
            return b

    return ast.fix_missing_locations(Fold().visit(_copy(node)))  # type: ignore[no-any-return]


def python_source(node: ast.expr, array: Callable[[ast.expr], bool]) -> str:
    """``node`` as Python on an Array API namespace ``xp``: functions as ``xp.exp(..)``, a
    comparison as 1/0 of the dtype of an array operand (``array(sub)``: is ``sub`` an array)."""
    if isinstance(node, ast.BinOp):
        return (f"({python_source(node.left, array)} {_SYMBOLS[type(node.op)]} "
                f"{python_source(node.right, array)})")
    if isinstance(node, ast.UnaryOp):
        return f"(-{python_source(node.operand, array)})"
    if isinstance(node, ast.Compare):
        left, right = node.left, node.comparators[0]
        like = python_source(left if array(left) else right, array)
        return (f"xp.astype({python_source(left, array)} {_SYMBOLS[type(node.ops[0])]} "
                f"{python_source(right, array)}, ({like}).dtype)")
    if isinstance(node, ast.Call):
        fname = node.func.id  # type: ignore[attr-defined]
        args = [python_source(a, array) for a in node.args]
        if fname == "max":  # the Array API's maximum takes two arrays
            a, b = node.args
            if not array(a):
                args[0] = f"xp.full_like({args[1]}, {args[0]})"
            if not array(b):
                args[1] = f"xp.full_like({args[0]}, {args[1]})"
        return f"xp.{PRIMITIVES[fname]}({', '.join(args)})"
    if isinstance(node, ast.Constant):
        return repr(float(node.value))  # type: ignore[arg-type]
    return node.id  # type: ignore[attr-defined, no-any-return]


def is_array(node: ast.expr, scalars: frozenset[str]) -> bool:
    """Whether ``node`` has an array among its names (else it is a number computed on the host)."""
    return any(isinstance(n, ast.Name) and n.id not in scalars and n.id not in PRIMITIVES
               for n in ast.walk(node))


def _portable(f: Formula, key: tuple[tuple[str, float], ...]) -> Callable[..., Any]:
    assigned = set(f.args) - f.scalars
    lines = [f"def {f.name}(xp, {', '.join(f.args)}):"]
    for target, expr in f.specialize(key):
        src = python_source(expr, lambda n: is_array(n, f.scalars))
        if not is_array(expr, f.scalars):  # a folded term that is a number: keep the shape
            like = next(iter(sorted(assigned)), None)
            src = f"xp.full_like({like}, {src})" if like else src
        lines.append(f"    {target} = {src}")
        assigned.add(target)
    lines.append(f"    return {', '.join(f.outputs)}" + ("," if len(f.outputs) > 1 else ""))
    env: dict[str, Any] = {}
    exec(compile("\n".join(lines), f"<formula {f.name}>", "exec"), env)  # noqa: S102 - our table
    return env[f.name]  # type: ignore[no-any-return]
