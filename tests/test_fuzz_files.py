"""Fuzzing the loaders: saved model, checkpoint and estimator files, mutated at random.

Each case mutates a real file (a field of its metadata deleted, renamed or given another type, a
huge, negative or non-finite number, deep nesting; bytes flipped; the file cut short) and loads
it with its loader. Every load either returns something that predicts finite values of the
right shape (finite wherever the tensor data is untouched: flipped bits in the data may make
finite weights huge) or raises :class:`vnn.io.ModelFileError`, within a time bound. Seeded: the
same cases run every time.
"""

from __future__ import annotations

import json
import random
import struct
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import host

import vnn
import vnn.io
from vnn.io import ModelFileError

sklearn = pytest.importorskip("sklearn")
import vnn.sklearn  # noqa: E402

CASES = 1000  # per file kind
SECONDS = 2.0  # the most one load may take
X = np.random.default_rng(0).standard_normal((12, 3))
NESTED = json.loads("[" * 300 + "]" * 300)
VALUES = [None, True, False, 0, -1, 1, 2**64, 2**1100, 10**400, 1e308, -1e308, 0.5, "", "x",
          "float64", [], {}, [1, 2], [None], {"a": 1}, NESTED]


def _model(folder: Path) -> Path:
    net = vnn.MLP([3, 5, 4, 2], activation=["tanh", "relu"], output="softmax", seed=1)
    path = folder / "model.safetensors"
    net.save(path, extra={"labels": ["a", "b"], "scale": [1.0, 2.0, 3.0]})
    return path


def _checkpoint(folder: Path) -> Path:
    net = vnn.MLP([3, 6, 1], output="identity", seed=2)
    opt = vnn.Momentum(0.01)
    h = net.fit(X, X[:, 0], optimizer=opt, epochs=2, batch_size=4, validation_data=(X, X[:, 0]))
    path = folder / "ckpt.safetensors"
    vnn.io.save(net, path, optimizer=opt, epoch=2, history=h, tensors={"aux": np.arange(3.0)})
    return path


def _estimator(folder: Path) -> Path:
    est = vnn.sklearn.MLPClassifier((5,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, np.array(["u", "v", "w"] * 4))
    path = folder / "est.safetensors"
    vnn.sklearn.save(est, path)
    return path


def _check_model(net: vnn.MLP, finite: bool = True) -> None:
    data = X if net.sizes[0] == 3 else np.zeros((len(X), net.sizes[0]))
    out = host(net.forward(data))
    assert out.shape == (len(X), net.sizes[-1])
    assert np.all(np.isfinite(out)) or not finite


def _check_checkpoint(ckpt: vnn.io.Checkpoint, finite: bool = True) -> None:
    _check_model(ckpt.net, finite)
    if ckpt.optimizer is not None:  # its state fits the network: training can go on
        params = [p for pair in zip(ckpt.net.weights, ckpt.net.biases) for p in pair]
        for kind in ckpt.optimizer.state:
            assert [tuple(a.shape) for a in kind] == [tuple(p.shape) for p in params]
    if ckpt.history is not None:
        assert all(isinstance(v, float) for v in ckpt.history.loss)


def _check_estimator(est: Any, finite: bool = True) -> None:
    width = est.n_features_in_
    data = X[:, :width] if width <= 3 else np.zeros((len(X), width))
    pred = np.asarray(est.predict(data))
    assert pred.shape[0] == len(X)
    if hasattr(est, "predict_proba"):
        p = np.asarray(est.predict_proba(data))
        assert p.shape[0] == len(X)
        assert np.all(np.isfinite(p)) or not finite


KINDS: dict[str, tuple[Callable[[Path], Path], Callable[[Path], Any], Callable[..., None]]] = {
    "model": (_model, vnn.load, _check_model),
    "checkpoint": (_checkpoint, vnn.io.load_checkpoint, _check_checkpoint),
    "estimator": (_estimator, vnn.sklearn.load, _check_estimator),
}


# -- mutations -------------------------------------------------------------------------------------
def _split(raw: bytes) -> tuple[dict, dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header.pop("__metadata__")["vnn"])
    return header, meta, raw[8 + n:]


def _join(header: dict, meta: Any, data: bytes) -> bytes:
    full = {"__metadata__": {"vnn": json.dumps(meta)}, **header}
    text = json.dumps(full).encode()
    return struct.pack("<Q", len(text)) + text + data


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (a tuple of keys and indices) into a JSON value."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list) and len(node) < 50:
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate_json(rng: random.Random, root: Any) -> Any:
    path = rng.choice(_paths(root)[1:])
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    op = rng.random()
    if op < 0.25 and isinstance(parent, dict):
        del parent[key]
    elif op < 0.35 and isinstance(parent, dict):
        name = str(key)
        i = rng.randrange(len(name)) if name else 0
        parent[name[:i] + chr(rng.randrange(97, 123)) + name[i + 1:]] = parent.pop(key)
    elif op < 0.45 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = rng.choice([-parent[key], parent[key] * 10**6, parent[key] + 1,
                                  float(parent[key]), float("nan"), float("inf")])
    else:
        parent[key] = json.loads(json.dumps(rng.choice(VALUES)))
    return root


def mutate(rng: random.Random, raw: bytes) -> tuple[bytes, bool]:
    """One random mutation of a model file's bytes, and whether its tensor data is untouched."""
    op = rng.random()
    if op < 0.6:  # a field of the metadata or of a tensor entry
        header, meta, data = _split(raw)
        root = _mutate_json(rng, {"vnn": meta, "header": header})
        if "vnn" not in root or "header" not in root or not isinstance(root["header"], dict):
            return _join(header, meta, data)[:-1], False  # the root itself went: cut a byte
        return _join(root["header"], root["vnn"], data), True
    if op < 0.9:  # flipped bytes, mostly in the header
        out = bytearray(raw)
        (n,) = struct.unpack("<Q", raw[:8])
        intact = True
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(8 + n) if rng.random() < 0.8 else rng.randrange(len(raw))
            out[at] ^= 1 << rng.randrange(8)
            intact = intact and at < 8 + n
        return bytes(out), intact
    return raw[: rng.randrange(len(raw))], False  # cut short


# -- the fuzz test ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_mutated_file_loads_whole_or_raises_model_file_error(kind, tmp_path):
    make, load, check = KINDS[kind]
    original = make(tmp_path).read_bytes()
    rng = random.Random(f"vnn-fuzz-{kind}")
    path = tmp_path / "mutated.safetensors"
    outcomes = {"loaded": 0, "refused": 0}
    slowest = 0.0
    for case in range(CASES):
        raw, intact = mutate(rng, original)
        path.write_bytes(raw)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                loaded = load(path)
        except ModelFileError as exc:
            assert exc.path == str(path) and str(path) in str(exc), exc
            outcomes["refused"] += 1
        except Exception as exc:  # anything else is a defect: show the case
            (path.parent / f"case-{case}.safetensors").write_bytes(raw)
            raise AssertionError(f"case {case}: {type(exc).__name__}: {exc}") from exc
        else:  # flipped bits in the data can make finite weights huge: shapes still hold
            check(loaded, finite=intact)
            outcomes["loaded"] += 1
        seconds = time.perf_counter() - t0
        slowest = max(slowest, seconds)
        assert seconds < SECONDS, f"case {case} took {seconds:.2f} s"
    assert outcomes["refused"] > CASES // 3, outcomes  # the mutations do bite
    assert outcomes["loaded"] > 0, outcomes  # and some leave a valid file (e.g. another name)
