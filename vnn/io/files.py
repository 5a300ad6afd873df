"""Model files: :func:`save` writes a model (and a checkpoint's optimizer, epoch and history);
:func:`read_model`, :func:`load`, :func:`load_checkpoint` and :func:`read_metadata` read one."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import safetensors.numpy

from vnn import backends
from vnn.io import layout, schema
from vnn.io.atomic import atomic_write_bytes, check_writable
from vnn.io.errors import ModelFileError
from vnn.math.optimizers import Optimizer
from vnn.network import MLP
from vnn.train.history import History

PathLike = str | os.PathLike[str]
Array = Any


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` and :func:`read_model` return: the model and everything saved
    with it, read from one open of the file."""

    net: MLP
    optimizer: Optimizer | None = None
    epoch: int | None = None
    history: History | None = None
    extra: dict[str, Any] | None = None
    tensors: dict[str, Array] = field(default_factory=dict)  # NumPy arrays
    #: the file's whole ``"vnn"`` metadata, as checked
    metadata: dict[str, Any] = field(default_factory=dict)


# -- writing -----------------------------------------------------------------------------------------
def save(net: MLP, path: PathLike, *, optimizer: Optimizer | None = None, epoch: int | None = None,
         history: History | None = None, extra: dict[str, Any] | None = None,
         tensors: dict[str, Any] | None = None) -> None:
    """Write ``net`` (and, for a checkpoint, ``optimizer``, ``epoch``, ``history``) to ``path``.

    ``extra`` is a JSON-able dict stored with the metadata; ``tensors`` maps further names to
    NumPy arrays stored alongside the parameters. ``path`` is checked before anything is copied
    from the device (see :func:`vnn.io.check_writable`: a symlink is followed; a directory, FIFO
    or device is refused). The file is written atomically: a crash or a full disk during the
    save leaves any previous file at ``path`` as it was.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net={net!r} is not a vnn.MLP")
    check_writable(path)
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)
                              or not 0 <= epoch <= schema.MAX_COUNT):
        raise ValueError(f"epoch={epoch!r} is invalid; expected an integer in "
                         f"[0, {schema.MAX_COUNT}] or None")
    if history is not None and not isinstance(history, History):
        raise TypeError(f"history={history!r} is not a vnn.History (what fit returns) or None")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra={extra!r} is not a dict; expected a JSON-able dict or None")
    if extra is not None:
        _check_keys(extra)
    out: dict[str, Any] = {}
    for ell, (W, b) in enumerate(zip(net.weights, net.biases), start=1):
        out[f"W{ell}"] = _host(net.to_numpy(W))
        out[f"b{ell}"] = _host(net.to_numpy(b))
    opt_meta = None if optimizer is None else _optimizer_metadata(net, optimizer, out)
    names = _extra_tensors(tensors, out)
    hist_meta = None if history is None else {
        f.name: [float(v) for v in getattr(history, f.name)] for f in dataclasses.fields(History)}
    import vnn

    meta = {"format": schema.FORMAT, "format_version": schema.FORMAT_VERSION,
            "vnn_version": vnn.__version__, "sizes": net.sizes, "activation": net.activation,
            "output": net.output, "loss": net.loss, "dtype": net.dtype, "init": net.init,
            "seed": net.seed, "rng": _rng_state(net), "optimizer": opt_meta, "epoch": epoch,
            "history": hist_meta, "extra": extra, "tensors": names}
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"extra={extra!r} cannot be stored: {exc}; expected a JSON-able dict "
                        "(str keys; str, numbers, bools, None, lists and dicts)") from None
    try:  # what is written must load again: the reader's checks, applied before writing
        schema.parse(os.fspath(path), {schema.METADATA_KEY: text})
    except ModelFileError as exc:
        raise ValueError(f"cannot save this model: {exc}") from None
    atomic_write_bytes(path, safetensors.numpy.save(out, metadata={schema.METADATA_KEY: text}))


def _host(array: Any) -> Any:
    """A C-contiguous NumPy array (the fast step's parameters are strided views)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def _extra_tensors(tensors: dict[str, Any] | None, out: dict[str, Any]) -> list[str]:
    """Add the user's ``tensors`` to ``out``; their names."""
    if tensors is not None and not isinstance(tensors, dict):
        raise TypeError(f"tensors={tensors!r} is not a dict; expected names -> arrays or None")
    names = []
    for name, value in (tensors or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensors has the key {name!r}; expected a non-empty string")
        if schema.RESERVED.match(name):
            raise ValueError(f"tensors has the key {name!r}, which is reserved (W<ℓ>, b<ℓ>, "
                             "optim.* and __metadata__ are vnn's own); choose another name")
        array = _host(backends.to_numpy(value))
        if array.dtype.str.lstrip("<>=|") not in _WRITABLE:
            raise TypeError(f"tensors[{name!r}] has dtype {array.dtype}; expected a plain "
                            f"numeric dtype ({', '.join(sorted(layout.DTYPE_NAMES.values()))})")
        out[name] = array
        names.append(name)
    return names


#: NumPy dtype codes (without byte order) of the tensors a file can hold
_WRITABLE = {np.dtype(dt).str.lstrip("<>=|") for dt in layout.NUMPY_DTYPES.values()}


def _check_keys(extra: dict[str, Any]) -> None:
    """Every key in ``extra`` is a string (JSON would turn another key into one: 1 -> "1")."""
    stack: list[Any] = [extra]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise TypeError(f"extra has the key {bad[0]!r} ({type(bad[0]).__name__}); "
                                "expected str keys only (JSON stores every key as a string)")
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def _optimizer_metadata(net: MLP, optimizer: Optimizer, out: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's JSON entry; its state arrays are added to ``out``."""
    name = type(optimizer).__name__
    if not isinstance(optimizer, Optimizer) or name not in schema.OPTIMIZERS:
        raise TypeError(f"optimizer={optimizer!r} cannot be saved; expected vnn.SGD, vnn.Momentum "
                        "or vnn.Adam")
    params = schema.param_names(len(net.sizes) - 1)
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
    return {"name": name,
            "hyperparameters": {h: getattr(optimizer, h) for h in schema.OPTIMIZERS[name][1]},
            "t": int(optimizer.t), "state": len(state)}


def _rng_state(net: MLP) -> dict[str, Any] | None:
    """The host generator's state (so shuffling continues where it was), when JSON-able."""
    state = getattr(getattr(net.rng, "bit_generator", None), "state", None)
    try:
        json.dumps(state)
    except (TypeError, ValueError):
        return None
    return state


# -- reading -----------------------------------------------------------------------------------------
def _checked(name: str, entries: dict[str, dict[str, Any]], raw: dict[str, str] | None
             ) -> dict[str, Any]:
    meta = schema.parse(name, raw)
    schema.check_tensors(name, meta, entries)
    return meta


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The ``"vnn"`` metadata of a model file as a dict, after checking the file's layout, the
    metadata and every tensor's name, shape and dtype (no tensor data is read)."""
    meta, _ = layout.read(path, _checked)
    return meta


def read_model(path: PathLike, *, device: str | None = "cpu", backend: str | None = None,
               dtype: str | None = None, allow_nonfinite: bool = False,
               optimizer: bool = False) -> Checkpoint:
    """Everything a model file holds, from one open of the file (one consistent snapshot even
    while another process saves to ``path``): the model on ``device`` / ``backend`` in ``dtype``
    (default: the saved one), its metadata, epoch, history, ``extra`` and ``tensors``, and with
    ``optimizer`` the optimizer and its state (then in the saved dtype).

    Any file that is not what :func:`save` writes raises :class:`vnn.io.ModelFileError` naming
    the file and the field; NaN or infinite parameters (and optimizer state) are refused unless
    ``allow_nonfinite=True``.
    """
    return _read(path, device, backend, None if optimizer else dtype, allow_nonfinite,
                 optimizer, extras=True)


def _read(path: PathLike, device: str | None, backend: str | None, dtype: str | None,
          allow_nonfinite: bool, optimizer: bool, extras: bool) -> Checkpoint:
    """:func:`read_model`, reading the optimizer state and the extra tensors only when asked."""

    def wanted(meta: dict[str, Any]) -> list[str]:
        names = list(schema.expected_tensors(meta))
        if not optimizer:
            names = [t for t in names if not t.startswith("optim.")]
        return names + (meta["tensors"] if extras else [])

    name = os.fspath(path)
    meta, tensors = layout.read(path, _checked, wanted)
    net = _build(name, meta, tensors, device, backend, dtype, allow_nonfinite)
    opt = _build_optimizer(name, meta, tensors, net, allow_nonfinite) if optimizer else None
    history = None
    if meta["history"] is not None:
        history = History(**{k: [float(x) for x in v] for k, v in meta["history"].items()})
    kept = {t: np.array(tensors.get(t)) for t in meta["tensors"]} if extras else {}
    return Checkpoint(net, opt, meta["epoch"], history, meta["extra"], kept, meta)


def load(path: PathLike, *, device: str | None = "cpu", backend: str | None = None,
         dtype: str | None = None, allow_nonfinite: bool = False) -> MLP:
    """Read the model saved at ``path`` onto ``device`` / ``backend``, in ``dtype`` (default: the
    dtype it was saved in). The host generator continues where it was when the model was saved.

    The file is checked before its tensor data is read (see :mod:`vnn.io`); a weight or bias
    holding NaN or infinite values is refused unless ``allow_nonfinite=True``.
    """
    return _read(path, device, backend, dtype, allow_nonfinite, optimizer=False,
                 extras=False).net


def load_checkpoint(path: PathLike, *, device: str | None = "cpu", backend: str | None = None,
                    allow_nonfinite: bool = False) -> Checkpoint:
    """Read a checkpoint: the model, and the optimizer (with its state and step count), epoch,
    history, ``extra`` and ``tensors`` saved with it, so that training can continue.

    Parameters and optimizer state holding NaN or infinite values are refused unless
    ``allow_nonfinite=True`` (the ``tensors`` saved alongside are returned as they are).
    """
    return read_model(path, device=device, backend=backend, allow_nonfinite=allow_nonfinite,
                      optimizer=True)


def _finite(name: str, tensor: str, array: Any, allow: bool) -> Any:
    """``array``, after checking that it holds no NaN or infinite value (unless ``allow``)."""
    if not allow and array.dtype.kind in "fc":
        finite = np.isfinite(array)
        if not bool(finite.all()):
            count = int(finite.size - int(finite.sum()))
            raise ModelFileError(f"{name}: tensor {tensor!r} contains {count} NaN/inf values (of "
                                 f"{finite.size}); pass allow_nonfinite=True to load it anyway",
                                 name, tensor)
    return array


def _cast(name: str, tensor: str, array: Any, dtype: str, allow: bool) -> Any:
    """``array`` in ``dtype``, after checking that it holds no NaN or infinite value (unless
    ``allow``) and that no finite value overflows ``dtype`` (a float64 file loaded as float32)."""
    array = _finite(name, tensor, array, allow)
    if array.dtype == np.dtype(dtype):
        return array
    limit = float(np.finfo(dtype).max)
    if limit >= float(np.finfo(array.dtype).max):  # a wider dtype holds every value
        return array.astype(dtype)
    too_big = np.abs(array[np.isfinite(array)]) > limit
    if bool(too_big.any()):
        raise ModelFileError(f"{name}: tensor {tensor!r} holds {int(too_big.sum())} values beyond "
                             f"{dtype}'s largest finite value ({limit:.4g}); load it in "
                             f"{array.dtype.name} (dtype=None keeps the file's)", name, tensor)
    return array.astype(dtype)


def _build(name: str, meta: dict[str, Any], tensors: layout.Tensors, device: str | None,
           backend: str | None, dtype: str | None, allow_nonfinite: bool) -> MLP:
    """The saved MLP: its architecture, its parameters and its host generator."""
    L = len(meta["sizes"]) - 1
    dtype = dtype or meta["dtype"]
    W = [_cast(name, f"W{ell}", tensors.get(f"W{ell}"), dtype, allow_nonfinite)
         for ell in range(1, L + 1)]
    b = [_cast(name, f"b{ell}", tensors.get(f"b{ell}"), dtype, allow_nonfinite)
         for ell in range(1, L + 1)]
    net = MLP.from_parameters(W, b, activation=meta["activation"], output=meta["output"],
                              loss=meta["loss"], init=meta["init"], device=device,
                              backend=backend, dtype=dtype, seed=meta["seed"])
    rng = meta["rng"]
    if rng is not None:  # checked: a state of one of NumPy's bit generators
        generator = net.rng
        if type(getattr(generator, "bit_generator", None)).__name__ != rng["bit_generator"]:
            generator = np.random.Generator(getattr(np.random, rng["bit_generator"])())
        generator.bit_generator.state = rng  # type: ignore[attr-defined]
        net.rng = generator
    return net


def _build_optimizer(name: str, meta: dict[str, Any], tensors: layout.Tensors, net: MLP,
                     allow_nonfinite: bool) -> Optimizer | None:
    """The saved optimizer, with its hyperparameters, step count and state on the model's
    device."""
    opt_meta = meta["optimizer"]
    if opt_meta is None:
        return None
    cls, _ = schema.OPTIMIZERS[opt_meta["name"]]
    optimizer = cls(**opt_meta["hyperparameters"])
    optimizer.t = opt_meta["t"]
    params = schema.param_names(len(meta["sizes"]) - 1)
    state = [[_finite(name, f"optim.{k}.{p}", tensors.get(f"optim.{k}.{p}"), allow_nonfinite)
              for p in params] for k in range(opt_meta["state"])]
    be = net.backend
    with be.activate():
        optimizer.state = [[be.from_host(a, net.dtype, copy=True) for a in arrays]
                           for arrays in state]
    return optimizer
