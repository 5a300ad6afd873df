"""Model files in the safetensors format: no pickle, nothing executed when a file is read.

A file holds the parameters as tensors named ``W1, b1, ..., WL, bL`` (W^(ℓ) of shape
(m_ℓ, m_{ℓ−1}) and b^(ℓ) of shape (m_ℓ,), as in the derivation) and one metadata entry ``"vnn"``:
a JSON object describing the architecture (sizes, activations, output, loss, dtype, init), the
host generator's state and, for checkpoints, the optimizer (hyperparameters, step count ``t``; its
state arrays are the tensors ``optim.<k>.W<ℓ>`` / ``optim.<k>.b<ℓ>``), the epoch and the history.

>>> vnn.save(net, "model.safetensors")                          # doctest: +SKIP
>>> net = vnn.load("model.safetensors", device="cuda")          # doctest: +SKIP
>>> vnn.io.save(net, "ckpt.safetensors", optimizer=opt, epoch=5, history=h)   # doctest: +SKIP
>>> ckpt = vnn.io.load_checkpoint("ckpt.safetensors")           # doctest: +SKIP
>>> ckpt.net.fit(X, y, optimizer=ckpt.optimizer, epochs=5)      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any

import safetensors
import safetensors.numpy

import backends
from vnn.network import MLP
from vnn.optim import SGD, Adam, Momentum, Optimizer
from vnn.train import History

__all__ = ["Checkpoint", "atomic_write_bytes", "load", "load_checkpoint", "read_metadata", "save"]

PathLike = str | os.PathLike[str]
Array = Any

FORMAT = "vanilla-nn"
FORMAT_VERSION = 1
METADATA_KEY = "vnn"

#: optimizers a checkpoint can record, and the hyperparameters each is rebuilt from
OPTIMIZERS: dict[str, tuple[type[Optimizer], tuple[str, ...]]] = {
    "SGD": (SGD, ("lr",)),
    "Momentum": (Momentum, ("lr", "beta")),
    "Adam": (Adam, ("lr", "beta1", "beta2", "eps")),
}

#: tensor names vnn writes itself; the ``tensors`` argument of :func:`save` may not use them
_RESERVED = re.compile(r"^([Wb]\d+|optim\..*|__metadata__)$")

#: safetensors dtype codes -> NumPy dtype names (for messages and checks)
_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
           "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
           "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool"}


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: everything needed to continue training."""

    net: MLP
    optimizer: Optimizer | None = None
    epoch: int | None = None
    history: History | None = None
    extra: dict[str, Any] | None = None
    tensors: dict[str, Array] = field(default_factory=dict)  # NumPy arrays


# -- writing -----------------------------------------------------------------------------------------
def save(net: MLP, path: PathLike, *, optimizer: Optimizer | None = None, epoch: int | None = None,
         history: History | None = None, extra: dict[str, Any] | None = None,
         tensors: dict[str, Any] | None = None) -> None:
    """Write ``net`` (and, for a checkpoint, ``optimizer``, ``epoch``, ``history``) to ``path``.

    ``extra`` is a JSON-able dict stored with the metadata; ``tensors`` maps further names to
    NumPy arrays stored alongside the parameters. The file is written atomically: a crash during
    the save leaves any previous file at ``path`` as it was.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net={net!r} is not a vnn.MLP")
    out: dict[str, Any] = {}
    for ell, (W, b) in enumerate(zip(net.weights, net.biases), start=1):
        out[f"W{ell}"] = _host(net.to_numpy(W))
        out[f"b{ell}"] = _host(net.to_numpy(b))

    opt_meta = None
    if optimizer is not None:
        opt_meta = _optimizer_metadata(net, optimizer, out)
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
        raise ValueError(f"epoch={epoch!r} is invalid; expected an integer >= 0 or None")
    hist_meta = None
    if history is not None:
        if not isinstance(history, History):
            raise TypeError(f"history={history!r} is not a vnn.History (what fit returns) or None")
        hist_meta = {f.name: [float(v) for v in getattr(history, f.name)]
                     for f in dataclasses.fields(History)}
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra={extra!r} is not a dict; expected a JSON-able dict or None")

    names = []
    for name, value in (tensors or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensors has the key {name!r}; expected a non-empty string")
        if _RESERVED.match(name):
            raise ValueError(f"tensors has the key {name!r}, which is reserved (W<ℓ>, b<ℓ>, "
                             "optim.* and __metadata__ are vnn's own); choose another name")
        out[name] = _host(backends.to_numpy(value))
        names.append(name)

    import vnn

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vnn_version": vnn.__version__,
        "sizes": net.sizes,
        "activation": net.activation,
        "output": net.output,
        "loss": net.loss,
        "dtype": net.dtype,
        "init": net._init,
        "seed": net.seed,
        "rng": _rng_state(net),
        "optimizer": opt_meta,
        "epoch": epoch,
        "history": hist_meta,
        "extra": extra,
        "tensors": names,
    }
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"extra={extra!r} cannot be stored: {exc}; expected a JSON-able dict "
                        "(str keys; str, numbers, bools, None, lists and dicts)") from None
    atomic_write_bytes(path, safetensors.numpy.save(out, metadata={METADATA_KEY: text}))


def _host(array: Any) -> Any:
    """A C-contiguous NumPy array (the fast step's parameters are strided views)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def _optimizer_metadata(net: MLP, optimizer: Optimizer, out: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's JSON entry; its state arrays are added to ``out``."""
    name = type(optimizer).__name__
    if not isinstance(optimizer, Optimizer) or name not in OPTIMIZERS:
        raise TypeError(f"optimizer={optimizer!r} cannot be saved; expected vnn.SGD, vnn.Momentum "
                        "or vnn.Adam")
    params = _param_names(len(net.sizes) - 1)
    state = optimizer.state
    if state:
        if len(state) != optimizer.n_state or any(len(s) != len(params) for s in state):
            raise ValueError(f"optimizer={optimizer!r} has state for another network "
                             f"({[len(s) for s in state]} arrays per kind); this one has "
                             f"{len(params)} parameters")
        for k, arrays in enumerate(state):
            for pname, a in zip(params, arrays):
                host = _host(backends.to_numpy(a))
                if tuple(host.shape) != tuple(out[pname].shape):
                    raise ValueError(f"optimizer={optimizer!r} has state for {pname} of shape "
                                     f"{tuple(host.shape)}; the network's {pname} has shape "
                                     f"{tuple(out[pname].shape)}")
                out[f"optim.{k}.{pname}"] = host
    return {
        "name": name,
        "hyperparameters": {h: getattr(optimizer, h) for h in OPTIMIZERS[name][1]},
        "t": int(optimizer.t),
        "state": len(state),
    }


def _rng_state(net: MLP) -> dict[str, Any] | None:
    """The host generator's state (so shuffling continues where it was), when JSON-able."""
    state = getattr(getattr(net.rng, "bit_generator", None), "state", None)
    try:
        json.dumps(state)
    except (TypeError, ValueError):
        return None
    return state


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the temporary
    file is renamed onto ``path`` (then the folder is flushed where the OS allows). On any error
    the temporary file is removed and the error re-raised.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "the folder does not exist", folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with contextlib.suppress(OSError):
                os.chmod(tmp, _file_mode(path))  # mkstemp creates files readable by the owner only
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _file_mode(path: str) -> int:
    """The mode of the file being replaced, or what a new file would get (0o666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: str) -> None:
    """Flush a folder's entries (the rename) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- reading -----------------------------------------------------------------------------------------
def read_metadata(path: PathLike) -> dict[str, Any]:
    """The ``"vnn"`` metadata of a model file as a dict, after checking it and every tensor."""
    with _open(path) as f:
        return _validate(os.fspath(path), f)


def load(path: PathLike, *, device: str | None = "cpu", backend: str | None = None,
         dtype: str | None = None) -> MLP:
    """Read the model saved at ``path`` onto ``device`` / ``backend``, in ``dtype`` (default: the
    dtype it was saved in). The host generator continues where it was when the model was saved."""
    name = os.fspath(path)
    with _open(path) as f:
        meta = _validate(name, f)
        return _build(name, meta, f, device, backend, dtype)


def load_checkpoint(path: PathLike, *, device: str | None = "cpu",
                    backend: str | None = None) -> Checkpoint:
    """Read a checkpoint: the model, and the optimizer (with its state and step count), epoch,
    history, ``extra`` and ``tensors`` saved with it, so that training can continue."""
    name = os.fspath(path)
    with _open(path) as f:
        meta = _validate(name, f)
        net = _build(name, meta, f, device, backend, None)
        L = len(meta["sizes"]) - 1
        optimizer = None
        if meta["optimizer"] is not None:
            optimizer = _build_optimizer(name, meta["optimizer"])
            params = _param_names(L)
            be = net.backend
            with be.activate():
                optimizer.state = [[be.from_host(f.get_tensor(f"optim.{k}.{p}"), net.dtype,
                                                 copy=True) for p in params]
                                   for k in range(meta["optimizer"]["state"])]
        tensors = {t: f.get_tensor(t) for t in meta["tensors"]}
    history = None
    if meta["history"] is not None:
        history = History(**{k: list(v) for k, v in meta["history"].items()})
    return Checkpoint(net, optimizer, meta["epoch"], history, meta["extra"], tensors)


def _open(path: PathLike) -> Any:
    """``safetensors.safe_open`` on ``path``, with errors that name the file."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    if os.path.isdir(name):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
    try:
        return safetensors.safe_open(name, framework="numpy")
    except (safetensors.SafetensorError, OSError) as exc:
        raise ValueError(f"{name} is not a valid safetensors file ({exc}); expected a model "
                         "written by vnn.save") from None


def _param_names(L: int) -> list[str]:
    """[W1, b1, W2, b2, ..., WL, bL]: the order of an optimizer's parameter lists."""
    return [f"{kind}{ell}" for ell in range(1, L + 1) for kind in ("W", "b")]


def _validate(name: str, f: Any) -> dict[str, Any]:
    """Parse and check the metadata, then every tensor's name, shape and dtype against it."""
    meta = _parse_metadata(name, f.metadata())
    sizes, dtype = meta["sizes"], meta["dtype"]
    L = len(sizes) - 1
    expected: dict[str, tuple[tuple[int, ...], str]] = {}
    for ell in range(1, L + 1):
        expected[f"W{ell}"] = ((sizes[ell], sizes[ell - 1]), dtype)
        expected[f"b{ell}"] = ((sizes[ell],), dtype)
    opt = meta["optimizer"]
    if opt is not None:
        for k in range(opt["state"]):
            for p in _param_names(L):
                expected[f"optim.{k}.{p}"] = (expected[p][0], dtype)

    present = list(f.keys())
    missing = [t for t in expected if t not in present]
    if missing:
        raise ValueError(f"{name}: tensor(s) {', '.join(map(repr, missing))} missing; the "
                         f"architecture {sizes} needs {', '.join(expected)}")
    absent = [t for t in meta["tensors"] if t not in present]
    if absent:
        raise ValueError(f"{name}: tensor(s) {', '.join(map(repr, absent))} listed in the "
                         "metadata are missing from the file")
    unexpected = [t for t in present if t not in expected and t not in meta["tensors"]]
    if unexpected:
        raise ValueError(f"{name}: unexpected tensor(s) {', '.join(map(repr, unexpected))}; the "
                         f"architecture {sizes} has {', '.join(expected)}"
                         + (f" and the extra tensors {meta['tensors']}" if meta["tensors"] else ""))
    for t, (shape, dt) in expected.items():
        s = f.get_slice(t)
        got_shape = tuple(int(d) for d in s.get_shape())
        if got_shape != shape:
            raise ValueError(f"{name}: tensor {t!r} has shape {got_shape}; the architecture "
                             f"{sizes} needs {shape}")
        got = _DTYPES.get(s.get_dtype(), s.get_dtype())
        if got != dt:
            raise ValueError(f"{name}: tensor {t!r} has dtype {got}; the metadata says the model "
                             f"is {dt}")
    return meta


def _parse_metadata(name: str, raw: dict[str, str] | None) -> dict[str, Any]:
    """The ``"vnn"`` JSON of a file, checked field by field."""
    if not raw or METADATA_KEY not in raw:
        raise ValueError(f"{name} is a safetensors file but not a vanilla-nn model: it has no "
                         f"{METADATA_KEY!r} metadata (expected a file written by vnn.save)")
    try:
        meta = json.loads(raw[METADATA_KEY])
    except ValueError as exc:
        raise ValueError(f"{name} is not a vanilla-nn model: its {METADATA_KEY!r} metadata is "
                         f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{name} is not a vanilla-nn model: its {METADATA_KEY!r} metadata has "
                         f"format {got!r}; expected {FORMAT!r}")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{name} has format_version {version!r}; this vanilla-nn reads "
                         f"format_version {FORMAT_VERSION} (a newer file needs a newer vanilla-nn)")

    def bad(key: str, expected: str) -> ValueError:
        return ValueError(f"{name}: metadata {key}={meta.get(key)!r} is invalid; expected "
                          f"{expected}")

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    sizes = meta.get("sizes")
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(is_int(m) and m >= 1 for m in sizes)):
        raise bad("sizes", "a list [m_0, ..., m_L] of at least two integers >= 1")
    act = meta.get("activation")
    if not isinstance(act, list) or len(act) != len(sizes) - 2 or not all(
            isinstance(a, str) for a in act):
        raise bad("activation", f"a list of {len(sizes) - 2} names, one per hidden layer")
    for key in ("output", "loss", "dtype"):
        if not isinstance(meta.get(key), str):
            raise bad(key, "a string")
    if meta.get("init") is not None and not isinstance(meta["init"], str):
        raise bad("init", "a string or null")
    meta.setdefault("seed", None)
    meta.setdefault("rng", None)
    meta.setdefault("optimizer", None)
    meta.setdefault("epoch", None)
    meta.setdefault("history", None)
    meta.setdefault("extra", None)
    meta.setdefault("tensors", [])
    if meta["seed"] is not None and not (is_int(meta["seed"]) and meta["seed"] >= 0):
        raise bad("seed", "an integer >= 0 or null")
    if meta["rng"] is not None and not isinstance(meta["rng"], dict):
        raise bad("rng", "a dict or null")
    opt = meta["optimizer"]
    if opt is not None and (
            not isinstance(opt, dict) or opt.get("name") not in OPTIMIZERS
            or not isinstance(opt.get("hyperparameters"), dict)
            or not is_int(opt.get("t")) or opt["t"] < 0
            or opt.get("state") not in (0, OPTIMIZERS[opt["name"]][0].n_state)):
        raise bad("optimizer", f"null or a dict with name in {sorted(OPTIMIZERS)}, "
                  "hyperparameters, t >= 0 and state (the number of state kinds, or 0)")
    if meta["epoch"] is not None and not (is_int(meta["epoch"]) and meta["epoch"] >= 0):
        raise bad("epoch", "an integer >= 0 or null")
    hist = meta["history"]
    fields = {f.name for f in dataclasses.fields(History)}
    if hist is not None and (not isinstance(hist, dict) or not set(hist) <= fields or not all(
            isinstance(v, list) and all(isinstance(x, (int, float)) for x in v)
            for v in hist.values())):
        raise bad("history", f"null or a dict of lists of numbers with keys in {sorted(fields)}")
    if meta["extra"] is not None and not isinstance(meta["extra"], dict):
        raise bad("extra", "a dict or null")
    if not isinstance(meta["tensors"], list) or not all(
            isinstance(t, str) and not _RESERVED.match(t) for t in meta["tensors"]):
        raise bad("tensors", "a list of names other than vnn's own (W<ℓ>, b<ℓ>, optim.*)")
    return meta


def _build(name: str, meta: dict[str, Any], f: Any, device: str | None, backend: str | None,
           dtype: str | None) -> MLP:
    """The saved MLP: its architecture, its parameters read from the open file ``f``, and its
    host generator."""
    net = MLP(meta["sizes"], activation=meta["activation"], output=meta["output"],
              loss=meta["loss"], init=meta["init"], device=device, backend=backend,
              dtype=dtype or meta["dtype"], seed=meta["seed"])
    bit_generator = getattr(net.rng, "bit_generator", None)
    rng = meta["rng"]
    if (bit_generator is not None and rng is not None
            and rng.get("bit_generator") == type(bit_generator).__name__):
        try:
            bit_generator.state = rng
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{name}: metadata rng={rng!r} is invalid ({exc}); expected "
                             "the state of the host generator") from None
    L = len(meta["sizes"]) - 1
    net.weights = [f.get_tensor(f"W{ell}") for ell in range(1, L + 1)]
    net.biases = [f.get_tensor(f"b{ell}") for ell in range(1, L + 1)]
    return net


def _build_optimizer(name: str, meta: dict[str, Any]) -> Optimizer:
    """The saved optimizer, with its hyperparameters and step count (state set by the caller)."""
    cls, params = OPTIMIZERS[meta["name"]]
    hyper = meta["hyperparameters"]
    missing = [p for p in params if p not in hyper]
    if missing:
        raise ValueError(f"{name}: the {meta['name']} optimizer's hyperparameters lack "
                         f"{', '.join(missing)}; expected {', '.join(params)}")
    optimizer = cls(**{p: hyper[p] for p in params})
    optimizer.t = meta["t"]
    return optimizer
