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


def loop_source(name: str, ins: list[str], outs: list[str], body: str,
                index: dict[str, str | None], ndim: int) -> str:
    """A module with one function ``name(*ins, *outs)`` running ``body`` on every element of
    the outputs (shape ``outs[0].shape``, ``ndim`` axes), read through ``index``."""
    tree = ast.parse("\n".join(st.strip() for st in body.split(";")))

    class Element(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            sub = index.get(node.id)
            if sub is None:
                return node
            return ast.parse(node.id + sub, mode="eval").body

        def visit_Call(self, node: ast.Call) -> ast.AST:
            node.args = [self.visit(a) for a in node.args]
            fn = node.func.id  # type: ignore[attr-defined]
            node.func = ast.parse(FUNCTIONS[fn], mode="eval").body
            return node

    lines = [ast.unparse(Element().visit(st)) for st in tree.body]
    first = outs[0]
    src = ["import math", "", "import numba", "", "",
           '@numba.njit(cache=True, nogil=True, error_model="numpy")',
           f"def {name}({', '.join(ins + outs)}):"]
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
    import numba

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
    dt = outputs[0].dtype.type
    sig = tuple(numba.typeof(dt(0) if a is None else a) for a in [*inputs, *outputs])
    key = (source, sig)
    if key not in _MADE:
        fn = load(name, source)
        t = time.perf_counter()
        hits = sum(fn.stats.cache_hits.values())
        fn.compile(sig)  # now, not inside the first step: compiled, or loaded from disk
        loaded = sum(fn.stats.cache_hits.values()) > hits
        COMPILES.append((name, time.perf_counter() - t, loaded))
        _MADE[key] = fn
    return _MADE[key]
