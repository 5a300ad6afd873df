"""The ``"vnn"`` metadata of a model file, checked against what :func:`vnn.save` writes.

Every field is checked for its type and range before anything is built from it, and the tensor
set is checked against the architecture, in time linear in the header. Anything else is a
:class:`~vnn.io.errors.ModelFileError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from vnn.init import SCHEMES
from vnn.io.errors import ModelFileError
from vnn.io.layout import DTYPE_NAMES, DuplicateKey, is_int, unique_keys
from vnn.math import activations, losses
from vnn.math.optimizers import SGD, Adam, Momentum, Optimizer
from vnn.train.history import History

FORMAT = "vanilla-nn"
FORMAT_VERSION = 1
METADATA_KEY = "vnn"

#: optimizers a checkpoint can record, and the hyperparameters each is rebuilt from
OPTIMIZERS: dict[str, tuple[type[Optimizer], tuple[str, ...]]] = {
    "SGD": (SGD, ("lr",)),
    "Momentum": (Momentum, ("lr", "beta")),
    "Adam": (Adam, ("lr", "beta1", "beta2", "eps")),
}

#: tensor names vnn writes itself; the ``tensors`` argument of :func:`vnn.io.save` may not use them
RESERVED = re.compile(r"^([Wb]\d+|optim\..*|__metadata__)$")

#: the keys :func:`vnn.io.save` writes, all of them, always
KEYS = ("format", "format_version", "vnn_version", "sizes", "activation", "output", "loss",
        "dtype", "init", "seed", "rng", "optimizer", "epoch", "history", "extra", "tensors")

#: the largest step count, epoch and layer width a file may declare (2**53: exact in a float)
MAX_COUNT = 2**53
#: how deeply the ``extra`` JSON may nest (deeper values hit Python's recursion limit in the
#: code that walks them)
MAX_DEPTH = 256

#: NumPy's bit generators whose state a file may hold (the host generator is PCG64 unless the
#: user gave the model another)
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def parse(name: str, raw: dict[str, str] | None) -> dict[str, Any]:
    """The ``"vnn"`` JSON of a file's ``__metadata__``, checked field by field."""
    if not raw or METADATA_KEY not in raw:
        raise ModelFileError(f"{name} is a safetensors file but not a vanilla-nn model: it has no "
                             f"{METADATA_KEY!r} metadata (expected a file written by vnn.save)",
                             name)
    try:
        meta = json.loads(raw[METADATA_KEY], object_pairs_hook=unique_keys)
    except DuplicateKey as exc:
        raise ModelFileError(f"{name} is not a vanilla-nn model: its {METADATA_KEY!r} metadata "
                             f"has the key {exc.key!r} more than once (duplicate keys)", name,
                             exc.key) from None
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ModelFileError(f"{name} is not a vanilla-nn model: its {METADATA_KEY!r} metadata "
                             f"is not valid JSON ({detail})", name) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelFileError(f"{name} is not a vanilla-nn model: its {METADATA_KEY!r} metadata "
                             f"has format {got!r}; expected {FORMAT!r}", name, "format")
    version = meta.get("format_version")
    if version != FORMAT_VERSION or not is_int(version):
        raise ModelFileError(f"{name} has format_version {version!r}; this vanilla-nn reads "
                             f"format_version {FORMAT_VERSION} (a newer file needs a newer "
                             "vanilla-nn)", name, "format_version")
    unknown = [k for k in meta if k not in KEYS]
    missing = [k for k in KEYS if k not in meta]
    if unknown or missing:
        problem = (f"the unknown key(s) {', '.join(map(repr, unknown))}" if unknown else
                   f"no key(s) {', '.join(map(repr, missing))}")
        raise ModelFileError(f"{name}: its metadata has {problem}; a file written by vnn.save "
                             f"has exactly the keys {', '.join(KEYS)}", name,
                             (unknown or missing)[0])
    _check_fields(name, meta)
    return meta


def _check_fields(name: str, meta: dict[str, Any]) -> None:
    """Every field but ``format`` and ``format_version``: types, ranges, names."""

    def require(key: str, ok: bool, expected: str) -> None:
        if not ok:
            value = repr(meta[key])
            shown = value if len(value) <= 200 else value[:200] + "..."
            raise ModelFileError(f"{name}: metadata {key}={shown} is invalid; expected "
                                 f"{expected}", name, key)

    require("vnn_version", isinstance(meta["vnn_version"], str), "a string")
    sizes = meta["sizes"]
    require("sizes", isinstance(sizes, list) and len(sizes) >= 2
            and all(is_int(m) and 1 <= m <= MAX_COUNT for m in sizes),
            f"a list [m_0, ..., m_L] of at least two integers in [1, {MAX_COUNT}]")
    act = meta["activation"]
    require("activation", isinstance(act, list) and len(act) == len(sizes) - 2
            and all(isinstance(a, str) and a in activations.HIDDEN for a in act),
            f"a list of {len(sizes) - 2} names in {sorted(activations.HIDDEN)}, one per hidden "
            "layer")
    require("output", isinstance(meta["output"], str) and meta["output"] in losses.OUTPUTS,
            f"one of {sorted(losses.OUTPUTS)}")
    ok = isinstance(meta["loss"], str)
    if ok:
        try:
            losses.resolve(meta["output"], meta["loss"])
        except ValueError:
            ok = False
    require("loss", ok, f"a loss that pairs with output={meta['output']!r}")
    require("dtype", meta["dtype"] in ("float32", "float64"), "'float32' or 'float64'")
    require("init", meta["init"] is None or meta["init"] in SCHEMES,
            f"null or one of {list(SCHEMES)}")
    require("seed", meta["seed"] is None or is_int(meta["seed"]) and meta["seed"] >= 0,
            "null or an integer >= 0")
    require("rng", meta["rng"] is None or _is_generator_state(meta["rng"]),
            f"null or the state of one of NumPy's bit generators {list(BIT_GENERATORS)} (for "
            "PCG64: {'bit_generator': 'PCG64', 'state': {'state': int, 'inc': int}, "
            "'has_uint32': 0 or 1, 'uinteger': int})")
    _check_optimizer(meta, require)
    require("epoch", meta["epoch"] is None or is_int(meta["epoch"])
            and 0 <= meta["epoch"] <= MAX_COUNT, f"null or an integer in [0, {MAX_COUNT}]")
    require("history", meta["history"] is None or _is_history(meta["history"]),
            f"null or a dict of lists of numbers with keys in "
            f"{[f.name for f in dataclasses.fields(History)]}")
    require("extra", meta["extra"] is None or isinstance(meta["extra"], dict)
            and _depth(meta["extra"]) <= MAX_DEPTH,
            f"null or a JSON object nested at most {MAX_DEPTH} levels deep")
    tensors = meta["tensors"]
    require("tensors", isinstance(tensors, list) and all(
        isinstance(t, str) and t and not RESERVED.match(t) for t in tensors)
        and len(set(tensors)) == len(tensors),
        "a list of distinct names other than vnn's own (W<ℓ>, b<ℓ>, optim.*)")


def _is_generator_state(rng: object) -> bool:
    """A state NumPy's bit generator of that name accepts (PCG64's checked field by field)."""
    if not isinstance(rng, dict) or rng.get("bit_generator") not in BIT_GENERATORS:
        return False
    if rng["bit_generator"] == "PCG64":
        return _is_pcg64_state(rng)
    if _depth(rng) > 4:
        return False
    try:
        getattr(np.random, rng["bit_generator"])().state = rng
    except (TypeError, ValueError, KeyError, OverflowError, IndexError):
        return False
    return True


def _is_pcg64_state(rng: dict[str, Any]) -> bool:
    if set(rng) != {"bit_generator", "state", "has_uint32", "uinteger"}:
        return False
    state = rng["state"]
    return (rng["bit_generator"] == "PCG64" and isinstance(state, dict)
            and set(state) == {"state", "inc"}
            and all(is_int(v) and 0 <= v < 2**128 for v in state.values())
            and rng["has_uint32"] in (0, 1) and is_int(rng["has_uint32"])
            and is_int(rng["uinteger"]) and 0 <= rng["uinteger"] < 2**32)


def _check_optimizer(meta: dict[str, Any], require: Callable[[str, bool, str], None]) -> None:
    opt = meta["optimizer"]
    expected = (f"null or a dict with name in {sorted(OPTIMIZERS)}, its hyperparameters "
                f"(finite numbers), t (an integer in [0, {MAX_COUNT}]) and state (0 or the number "
                "of state kinds)")
    if opt is None:
        return
    ok = (isinstance(opt, dict) and set(opt) == {"name", "hyperparameters", "t", "state"}
          and isinstance(opt["name"], str) and opt["name"] in OPTIMIZERS)
    require("optimizer", ok, expected)
    cls, params = OPTIMIZERS[opt["name"]]
    hyper = opt["hyperparameters"]
    require("optimizer", isinstance(hyper, dict) and set(hyper) == set(params) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in hyper.values()),
        f"{opt['name']} hyperparameters {', '.join(params)} (numbers), and nothing else")
    require("optimizer", is_int(opt["t"]) and 0 <= opt["t"] <= MAX_COUNT
            and is_int(opt["state"]) and opt["state"] in (0, cls.n_state), expected)
    try:
        cls(**hyper)
    except (ValueError, TypeError, OverflowError) as exc:
        require("optimizer", False, f"hyperparameters the {opt['name']} optimizer accepts ({exc})")


def _is_history(hist: object) -> bool:
    """A dict of History's fields, each a list of numbers (their lengths may differ: a run
    resumed with validation data has fewer validation losses than losses)."""
    fields = [f.name for f in dataclasses.fields(History)]
    return isinstance(hist, dict) and set(hist) <= set(fields) and all(
        isinstance(v, list) and all(map(_is_float, v)) for v in hist.values())


def _is_float(x: object) -> bool:
    """A JSON number that is a float, or an int a float can hold (|x| < 2**1024)."""
    return isinstance(x, float) or isinstance(x, int) and not isinstance(x, bool) and abs(x) < 2**1024


def _depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def expected_tensors(meta: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype) of every tensor the architecture (and optimizer) needs."""
    sizes, dtype = meta["sizes"], meta["dtype"]
    L = len(sizes) - 1
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for ell in range(1, L + 1):
        out[f"W{ell}"] = ((sizes[ell], sizes[ell - 1]), dtype)
        out[f"b{ell}"] = ((sizes[ell],), dtype)
    opt = meta["optimizer"]
    if opt is not None:
        for k in range(opt["state"]):
            for p in param_names(L):
                out[f"optim.{k}.{p}"] = (out[p][0], dtype)
    return out


def param_names(L: int) -> list[str]:
    """[W1, b1, W2, b2, ..., WL, bL]: the order of an optimizer's parameter lists."""
    return [f"{kind}{ell}" for ell in range(1, L + 1) for kind in ("W", "b")]


def check_tensors(name: str, meta: dict[str, Any], entries: dict[str, dict[str, Any]]) -> None:
    """The file's tensors are exactly the architecture's and the listed extras, each with the
    shape and dtype the metadata implies (in time linear in the number of tensors)."""
    expected = expected_tensors(meta)
    sizes, extras = meta["sizes"], meta["tensors"]

    def listed(names: list[str]) -> str:
        shown = ", ".join(map(repr, names[:10]))
        return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")

    missing = [t for t in expected if t not in entries]
    if missing:
        raise ModelFileError(f"{name}: tensor(s) {listed(missing)} missing; the architecture "
                             f"{sizes} needs {listed(list(expected))}", name, missing[0])
    absent = [t for t in extras if t not in entries]
    if absent:
        raise ModelFileError(f"{name}: tensor(s) {listed(absent)} listed in the metadata are "
                             "missing from the file", name, "tensors")
    extra_set = set(extras)
    unexpected = [t for t in entries if t not in expected and t not in extra_set]
    if unexpected:
        raise ModelFileError(f"{name}: unexpected tensor(s) {listed(unexpected)}; the "
                             f"architecture {sizes} has {listed(list(expected))}"
                             + (f" and the extra tensors {listed(extras)}" if extras else ""),
                             name, unexpected[0])
    for t, (shape, dt) in expected.items():
        got_shape = tuple(entries[t]["shape"])
        if got_shape != shape:
            raise ModelFileError(f"{name}: tensor {t!r} has shape {got_shape}; the architecture "
                                 f"{sizes} needs {shape}", name, t)
        got = DTYPE_NAMES[entries[t]["dtype"]]
        if got != dt:
            raise ModelFileError(f"{name}: tensor {t!r} has dtype {got}; the metadata says the "
                                 f"model is {dt}", name, t)
