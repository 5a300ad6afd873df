"""NumPy's compiled kernels: each of the fused step's kernel bodies as one numba-compiled loop.

The preallocated step's fused plan (``vnn.step.preallocated``) is the one CuPy runs: φ′ inside
each layer's δ (Eqn 13), δ(L) with its 1/|B| in one pass (Eqns 10-12), the optimizer's whole
update in one pass over the flat buffer (Eqns 15-16, Adam). ``vnn.step.executors.Loops`` executes
that plan with :func:`kernel`: the body that ``vnn.step.compile.kernel_source`` writes from the
formula table (C that is also Python) becomes the body of a loop nest, compiled by numba; the
matrix products stay NumPy's (its BLAS). Nothing is restated: a formula changed in
``vnn.math.formulas`` changes these loops as it changes the CUDA kernels.

The loops are serial (numba's threads would compete with the BLAS threads of the products) and
IEEE-exact (no ``fastmath``; NumPy's error model, so 1/0 is inf as in NumPy). Each compiled loop
is cached on disk (numba's ``cache=True``) under :func:`cache_dir`, keyed by its source: the body,
the argument names and which operands are broadcast, never the sizes, so every architecture and
batch size shares them and a second process loads instead of compiling.

Used for NumPy models when numba is installed (``pip install "vanilla-nn[fast]"``) and the job is
long enough to repay numba's start-up (:func:`wanted`); ``VNN_NUMBA=1`` uses it for every job,
``VNN_NUMBA=0`` never (the NumPy calls of ``vnn.step.compile`` run).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

Array = Any

#: the kernel bodies' functions, as the compiled loops call them
FUNCTIONS = {"exp": "math.exp", "log": "math.log", "log1p": "math.log1p", "sqrt": "math.sqrt",
             "tanh": "math.tanh", "abs": "abs", "max": "max"}

#: what compiling took in this process: (kernel name, seconds, whether it was loaded from disk)
COMPILES: list[tuple[str, float, bool]] = []


def version() -> str | None:
    """numba's version, or None when it cannot be imported."""
    try:
        import numba
    except Exception:  # not installed, or broken against this NumPy
        return None
    return str(numba.__version__)


#: a job whose NumPy steps are estimated to take less than this (seconds) trains without the
#: compiled loops: numba's start-up alone is about 1.5 s here once the loops are cached
AUTO_SECONDS = 10.0


def mode() -> str:
    """``VNN_NUMBA``: "off" (0, false, no, off), "on" (1, true, yes, on: every job), or "auto"
    (unset or anything else: jobs estimated at :data:`AUTO_SECONDS` or more; not those of unknown
    length)."""
    value = os.environ.get("VNN_NUMBA", "auto").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    return "on" if value in ("1", "true", "yes", "on") else "auto"


def installed() -> bool:
    """Whether numba can be found (without importing it: that takes about a second)."""
    return importlib.util.find_spec("numba") is not None


def enabled() -> bool:
    """Whether NumPy models may train with compiled loops: numba there, ``VNN_NUMBA`` not 0."""
    return mode() != "off" and installed()


def wanted(seconds: float | None) -> bool:
    """Whether a job whose NumPy steps would take about ``seconds`` (None: not known, e.g. a
    ``Trainer`` made without a length) trains with the compiled loops. A numba that is installed
    but cannot be imported (built for another NumPy) is reported once and not used."""
    if not enabled() or not (mode() == "on" or (seconds is not None and seconds >= AUTO_SECONDS)):
        return False
    if version() is None:
        if not _WARNED:
            _WARNED.append(True)
            warnings.warn("numba is installed but cannot be imported; NumPy models train without "
                          "the compiled loops (python -c 'import numba' shows why)",
                          RuntimeWarning, stacklevel=2)
        return False
    return True


_WARNED: list[bool] = []


def numpy_seconds(sizes: list[int], batch: int, steps: int) -> float:
    """A deliberately rough estimate of NumPy's time for ``steps`` steps of a network of layer
    sizes ``sizes`` on batches of ``batch``: 30 µs of calls per layer and the 6·|θ|·|B| flops of
    Eqns (1), (13), (14) at 20 GFLOP/s (a 2-core AVX2 machine runs these products at 20-60)."""
    params = sum((sizes[i] + 1) * sizes[i + 1] for i in range(len(sizes) - 1))
    per_step = 30e-6 * (len(sizes) - 1) + 6.0 * params * batch / 20e9
    return steps * per_step


def cache_dir() -> Path:
    """Where compiled loops are kept: ``$VNN_CACHE_DIR/loops``, else ``$XDG_CACHE_HOME/vnn/loops``
    (``~/.cache/vnn/loops``); a fresh temporary folder when that cannot be written."""
    root = os.environ.get("VNN_CACHE_DIR")
    if root:
        path = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(xdg) / "vnn"
    path = path / "loops"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError:
        path = Path(tempfile.mkdtemp(prefix="vnn-loops-"))
    return path


def _index(arr: Any, shape: tuple[int, ...]) -> str | None:
    """How the loop nest over ``shape`` reads ``arr`` (NumPy's broadcasting): None for a number,
    else the subscript, with 0 on the axes where it is broadcast."""
    if arr is None or not isinstance(arr, np.ndarray):  # a number (NumPy scalars too)
        return None
    if arr.ndim == 0:
        return "[()]"
    pad = len(shape) - arr.ndim
    axes = ["0" if arr.shape[k] == 1 and shape[pad + k] != 1 else f"i{pad + k}"
            for k in range(arr.ndim)]
    return "[" + ", ".join(axes) + "]"


#: the start of every loop module: serial, IEEE-exact (NumPy's error model), cached on disk
_HEADER = ["import math", "", "import numba", "", "",
           '@numba.njit(cache=True, nogil=True, error_model="numpy")']


class _Element(ast.NodeTransformer):
    """A kernel body's names as the loop's elements (``index``: name -> subscript, None for a
    number), its functions as the compiled loops call them."""

    def __init__(self, index: dict[str, str | None]) -> None:
        self.index = index

    def visit_Name(self, node: ast.Name) -> ast.AST:
        sub = self.index.get(node.id)
        return node if sub is None else ast.parse(node.id + sub, mode="eval").body

    def visit_Call(self, node: ast.Call) -> ast.AST:
        node.args = [self.visit(a) for a in node.args]
        node.func = ast.parse(FUNCTIONS[node.func.id], mode="eval").body  # type: ignore[attr-defined]
        return node


def loop_source(name: str, ins: list[str], outs: list[str], body: str,
                index: dict[str, str | None], ndim: int) -> str:
    """A module with one function ``name(*ins, *outs)`` running ``body`` on every element of
    the outputs (shape ``outs[0].shape``, ``ndim`` axes), read through ``index``."""
    tree = ast.parse("\n".join(st.strip() for st in body.split(";")))
    lines = [ast.unparse(_Element(index).visit(st)) for st in tree.body]
    first = outs[0]
    src = [*_HEADER, f"def {name}({', '.join(ins + outs)}):"]
    pad = "    "
    for k in range(ndim):
        src.append(f"{pad}for i{k} in range({first}.shape[{k}]):")
        pad += "    "
    src += [pad + ln for ln in lines]
    return "\n".join(src) + "\n"


def load(name: str, source: str) -> Any:
    """The function ``name`` of ``source``, from a module file named by the source's hash in
    :func:`cache_dir` (written atomically once), compiled or loaded from numba's cache."""
    from vnn.io.atomic import atomic_write_bytes

    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    module = f"vnn_loops_{digest}"
    if module in sys.modules:
        return getattr(sys.modules[module], name)
    path = _dir() / f"{module}.py"
    if not path.exists() or path.read_text(encoding="utf-8") != source:
        atomic_write_bytes(path, source.encode())
    spec = importlib.util.spec_from_file_location(module, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules[module] = mod
    return getattr(mod, name)


_CACHE: list[Path] = []


def _dir() -> Path:
    if not _CACHE:
        _CACHE.append(cache_dir())
    return _CACHE[0]


#: functions whose float32 NumPy ufuncs are SIMD and numba's scalar calls are not: measured here,
#: 2048 float32 elements, tanh 9.5 µs (NumPy) vs 37 µs (numba loop), exp 5.8 vs 11 µs; in float64
#: they are level (43 vs 37, 27 vs 27 µs)
VECTOR_MATH = frozenset({"tanh", "exp", "log", "log1p"})


def calls_for(dtype: Any) -> frozenset[str]:
    """The functions whose formulas run as NumPy calls rather than loops in ``dtype``."""
    return VECTOR_MATH if np.dtype(dtype) == np.float32 else frozenset()


_MADE: dict[tuple[str, tuple[Any, ...]], Any] = {}


def kernel(name: str, ins: list[str], outs: list[str], body: str, inputs: list[Any],
           outputs: list[Any]) -> Any:
    """``body`` as a compiled loop over the elements of ``outputs``, called as
    ``k(*inputs, *outputs)``: ``inputs`` are the arrays and numbers it will be given (None: a
    number given per call, of the outputs' dtype), read with NumPy's broadcasting."""
    shape = tuple(outputs[0].shape)
    arrays = [a for a in [*inputs, *outputs] if isinstance(a, np.ndarray)]
    try:  # the loops index without bounds checks: operands must broadcast to the outputs
        ok = np.broadcast_shapes(*(a.shape for a in arrays)) == shape
    except ValueError:
        ok = False
    if not ok or any(tuple(o.shape) != shape for o in outputs):
        raise ValueError(f"kernel {name}: operands of shapes {[tuple(a.shape) for a in arrays]} "
                         f"do not broadcast to the outputs' shape {shape}")
    index = {n: _index(a, shape) for n, a in zip(ins, inputs)}
    index.update({n: _index(o, shape) for n, o in zip(outs, outputs)})
    source = loop_source(name, ins, outs, body, index, len(shape))
    return _compiled(name, source, outputs[0].dtype.type, [*inputs, *outputs])


def _compiled(name: str, source: str, dt: Any, args: list[Any]) -> Any:
    """The function ``name`` of ``source`` compiled for ``args`` (None: a number of type
    ``dt``) now, not inside the first step: compiled, or loaded from disk."""
    import numba

    sig = tuple(numba.typeof(dt(0) if a is None else a) for a in args)
    key = (source, sig)
    if key not in _MADE:
        fn = load(name, source)
        t = time.perf_counter()
        hits = sum(fn.stats.cache_hits.values())
        fn.compile(sig)
        loaded = sum(fn.stats.cache_hits.values()) > hits
        COMPILES.append((name, time.perf_counter() - t, loaded))
        _MADE[key] = fn
    return _MADE[key]


def columns_source(name: str, params: list[str], stages: list[tuple[str, str, str]],
                   terms: list[tuple[int, str]], index: dict[str, str | None],
                   rows: str, per_column: list[bool]) -> str:
    """A module with one function ``name(*params)`` running ``stages`` on each column of the
    2-d buffers and returning the sum of ``terms`` (see ``vnn.step.executors.Loops.columns``);
    ``rows`` names a buffer of the full shape, ``per_column[k]``: term k reads only rows."""

    def element(expr: str) -> str:
        return ast.unparse(_Element(index).visit(ast.parse(expr, mode="eval").body))

    out = [*_HEADER, f"def {name}({', '.join(params)}):",
           "    total = 0.0",
           f"    for i1 in range({rows}.shape[1]):"]
    body = "        "
    inner = body + "    "
    groups = _groups(stages)
    last = _last_maps(groups)
    for g, group in enumerate(groups):
        reductions = [(k, st) for k, st in enumerate(group) if st[0] != "map"]
        out += [body + (f"acc{k} = -math.inf" if kind == "max" else f"acc{k} = 0.0")
                for k, (kind, _, _) in reductions]
        out.append(f"{body}for i0 in range({rows}.shape[0]):")
        if g == last:  # the element terms, in the last loop of maps
            out += [f"{inner}total += {'-' if sign < 0 else ''}({element(t)})"
                    for (sign, t), col in zip(terms, per_column) if not col]
        for k, (kind, target, expr) in enumerate(group):
            if kind == "map":
                out.append(f"{inner}{element(target)} = {element(expr)}")
            else:
                x = element(expr)
                if kind == "max":  # NumPy's maximum: a NaN stays (Python's max would drop it)
                    out.append(f"{inner}x{k} = {x}")
                    out.append(f"{inner}acc{k} = x{k} if (x{k} > acc{k} or x{k} != x{k}) "
                               f"else acc{k}")
                else:
                    out.append(f"{inner}acc{k} = acc{k} + {x}")
        out += [f"{body}{target}[0, i1] = acc{k}" for k, (_, target, _) in reductions]
    out += [f"{body}total += {'-' if sign < 0 else ''}({element(t)})"
            for (sign, t), col in zip(terms, per_column) if col]
    out.append("    return total")
    return "\n".join(out) + "\n"


def columns(name: str, params: list[str], stages: list[tuple[str, str, str]],
            terms: list[tuple[int, str]], inputs: list[Any]) -> Any:
    """The stages and terms of ``vnn.step.executors.Loops.columns`` as one compiled loop over
    the columns of 2-d buffers, called as ``f(*inputs)`` (None in ``inputs``: a number given per
    call, of the buffers' dtype). Buffers of one row are read once per column."""
    arrays = {n: a for n, a in zip(params, inputs) if isinstance(a, np.ndarray)}
    full = max((a.shape for a in arrays.values()), key=lambda s: s[0] * s[1])
    bad = [n for n, a in arrays.items() if a.ndim != 2 or a.shape[1] != full[1]
           or a.shape[0] not in (1, full[0])]
    if bad:
        raise ValueError(f"loop {name}: buffers {bad} are not ({full[0]} or 1, {full[1]})")
    rows = next(n for n, a in arrays.items() if a.shape == full)
    index = {n: _index(a, full) for n, a in arrays.items()}
    read = [[n for n in _names(t) if n in arrays] for _, t in terms]
    if not all(read):
        raise ValueError(f"loop {name}: a term reads no buffer")
    # a term of row buffers is summed once per column after the loops; the others inside the
    # last loop of maps, before its statements: they must not read what it or a later loop writes
    per_column = [full[0] > 1 and all(arrays[n].shape[0] == 1 for n in r) for r in read]
    groups = _groups(stages)
    last = _last_maps(groups)
    late = {t for group in groups[max(last, 0):] for _, t, _ in group}
    for r, col in zip(read, per_column):
        if not col and (last < 0 or late & set(r)):
            raise ValueError(f"loop {name}: a term of every element reads {sorted(late & set(r))}"
                             f", written in or after its loop (or there is no loop of maps)")
    source = columns_source(name, params, stages, terms, index, rows, per_column)
    return _compiled(name, source, arrays[rows].dtype.type, inputs)


def _groups(stages: list[tuple[str, str, str]]) -> list[list[tuple[str, str, str]]]:
    """The stages as the loops over a column's elements: a run of maps and the reductions right
    after them share one (a reduction reads elements the same iteration has just written); a
    map after a reduction, or a reduction reading one just finished, starts the next."""
    groups: list[list[tuple[str, str, str]]] = []
    for st in stages:
        reduced = {t for kind, t, _ in groups[-1] if kind != "map"} if groups else set()
        after = st[0] == "map" and bool(groups) and groups[-1][-1][0] != "map"
        if not groups or after or reduced & _names(st[2]):
            groups.append([st])
        else:
            groups[-1].append(st)
    return groups


def _last_maps(groups: list[list[tuple[str, str, str]]]) -> int:
    """The index of the last loop that has maps (-1: none)."""
    return max((g for g, group in enumerate(groups) if group[0][0] == "map"), default=-1)


def _names(expr: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}
