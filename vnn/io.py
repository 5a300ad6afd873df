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

Files may come from strangers. Before the safetensors library sees a file, its raw layout is
checked here: the 8-byte header length (at most :data:`MAX_HEADER_BYTES`), the header (UTF-8
JSON, one object, no duplicate keys), every tensor entry (a plain numeric dtype, a shape of
non-negative integers, data offsets whose size agrees with shape x dtype) and the data section
(the tensors tile it exactly: no overlaps, gaps, trailing or missing bytes). Anything else, a
pickle included, is refused with a ``ValueError`` naming the file; nothing is unpickled. The
metadata and every tensor are then checked against the architecture, and NaN or infinite
parameters are refused unless ``allow_nonfinite=True``.

A save writes ``.<name>.<pid>.<random>.vnn-tmp`` in the target's folder, flushes it to disk and
renames it onto the target, so a crash at any moment leaves the previous file whole. Each save
first removes the temporary files that crashed saves of the same target left behind (those whose
process no longer runs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import secrets
import stat
import struct
from dataclasses import dataclass, field
from typing import Any

import safetensors
import safetensors.numpy

import backends
from vnn.network import MLP
from vnn.optim import SGD, Adam, Momentum, Optimizer
from vnn.train import History

__all__ = ["MAX_HEADER_BYTES", "Checkpoint", "atomic_write_bytes", "load", "load_checkpoint",
           "read_metadata", "save"]

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

#: the safetensors dtypes a file may hold (plain numbers NumPy reads) and their sizes in bytes;
#: any other (BF16, the 8-, 6- and 4-bit floats, complex, unknown names) is refused
_ITEMSIZE = {"F16": 2, "F32": 4, "F64": 8, "I8": 1, "I16": 2, "I32": 4, "I64": 8, "U8": 1,
             "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}

#: the longest safetensors header (JSON text after the 8-byte length) a file may have, in bytes;
#: a longer one is refused before it is read
MAX_HEADER_BYTES = 16 * 1024 * 1024

#: how the temporary file of a save is named: ``.<target name>.<pid>.<16 hex digits>.vnn-tmp``
_TMP_SUFFIX = ".vnn-tmp"


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

    The bytes go to a temporary file ``.<name>.<pid>.<random>.vnn-tmp`` in the same folder, are
    flushed to disk, and the temporary file is renamed onto ``path`` (then the folder is flushed
    where the OS allows). On any error the temporary file is removed and the error re-raised; a
    process killed mid-save leaves its temporary file behind, and the next save of ``path``
    removes it (on POSIX systems, once no process with that pid runs).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "the folder does not exist", folder)
    base = os.path.basename(path)
    _remove_stale_temps(folder, base)
    fd, tmp = _create_temp(folder, base)
    try:
        with os.fdopen(fd, "wb") as f:
            with contextlib.suppress(OSError):
                os.chmod(tmp, _file_mode(path))  # created readable by the owner only
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _create_temp(folder: str, base: str) -> tuple[int, str]:
    """A new, empty temporary file for a save of ``base`` in ``folder``: its descriptor and path."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(8)}{_TMP_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", tmp)


def _remove_stale_temps(folder: str, base: str) -> None:
    """Remove the temporary files of saves of ``base`` whose process no longer runs.

    Only names of the form ``.<base>.<pid>.<16 hex digits>.vnn-tmp`` are considered, and only
    where the process ``pid`` is known to be gone; a running save's file, another target's and any
    other file are left alone, as is everything on systems without ``os.kill(pid, 0)`` (Windows,
    where that call would end the process). Errors are ignored: this is housekeeping.
    """
    if os.name != "posix":
        return
    pattern = re.compile(rf"\.{re.escape(base)}\.([0-9]+)\.[0-9a-f]{{16}}{re.escape(_TMP_SUFFIX)}")
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not _process_gone(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists (POSIX); ``False`` when that cannot be told."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError, ValueError):  # PermissionError: it runs, as another user
        return False
    return False


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
    """The ``"vnn"`` metadata of a model file as a dict, after checking the file's layout, the
    metadata and every tensor's name, shape and dtype (no tensor data is read)."""
    with _open(path) as f:
        return _validate(os.fspath(path), f)


def load(path: PathLike, *, device: str | None = "cpu", backend: str | None = None,
         dtype: str | None = None, allow_nonfinite: bool = False) -> MLP:
    """Read the model saved at ``path`` onto ``device`` / ``backend``, in ``dtype`` (default: the
    dtype it was saved in). The host generator continues where it was when the model was saved.

    The file is checked before anything is read from it (see the module's notes); a weight or
    bias holding NaN or infinite values is refused unless ``allow_nonfinite=True``.
    """
    name = os.fspath(path)
    with _open(path) as f:
        meta = _validate(name, f)
        return _build(name, meta, f, device, backend, dtype, allow_nonfinite)


def load_checkpoint(path: PathLike, *, device: str | None = "cpu", backend: str | None = None,
                    allow_nonfinite: bool = False) -> Checkpoint:
    """Read a checkpoint: the model, and the optimizer (with its state and step count), epoch,
    history, ``extra`` and ``tensors`` saved with it, so that training can continue.

    Parameters and optimizer state holding NaN or infinite values are refused unless
    ``allow_nonfinite=True`` (the ``tensors`` saved alongside are returned as they are).
    """
    name = os.fspath(path)
    with _open(path) as f:
        meta = _validate(name, f)
        net = _build(name, meta, f, device, backend, None, allow_nonfinite)
        L = len(meta["sizes"]) - 1
        optimizer = None
        if meta["optimizer"] is not None:
            optimizer = _build_optimizer(name, meta["optimizer"])
            params = _param_names(L)
            be = net.backend
            state = [[_finite(name, f"optim.{k}.{p}", f.get_tensor(f"optim.{k}.{p}"),
                              allow_nonfinite) for p in params]
                     for k in range(meta["optimizer"]["state"])]
            with be.activate():
                optimizer.state = [[be.from_host(a, net.dtype, copy=True) for a in arrays]
                                   for arrays in state]
        tensors = {t: f.get_tensor(t) for t in meta["tensors"]}
    history = None
    if meta["history"] is not None:
        history = History(**{k: list(v) for k, v in meta["history"].items()})
    return Checkpoint(net, optimizer, meta["epoch"], history, meta["extra"], tensors)


def _finite(name: str, tensor: str, array: Any, allow: bool) -> Any:
    """``array``, after checking that it holds no NaN or infinite value (unless ``allow``)."""
    if not allow and array.dtype.kind in "fc":  # a NumPy array, as safetensors reads it
        finite = backends.resolve("cpu").xp.isfinite(array)
        if not bool(finite.all()):
            count = int(finite.size - int(finite.sum()))
            raise ValueError(f"{name}: tensor {tensor!r} contains {count} NaN/inf values (of "
                             f"{finite.size}); pass allow_nonfinite=True to load it anyway")
    return array


def _open(path: PathLike) -> Any:
    """``safetensors.safe_open`` on ``path``, after checking the file's raw layout.

    The safetensors library sees the file only once :func:`_check_layout` has accepted it; what
    the library then reads (names, dtypes, shapes, metadata) must be what was checked, or the
    file changed in between (a save replacing it), and it is checked again.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    if os.path.isdir(name):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
    for _ in range(3):
        tensors, metadata = _check_layout(name)
        try:
            f = safetensors.safe_open(name, framework="numpy")
        except (safetensors.SafetensorError, OSError) as exc:
            raise ValueError(f"{name} is not a valid safetensors file ({exc}); expected a model "
                             "written by vnn.save") from None
        try:
            same = (f.metadata() or {}) == (metadata or {}) and sorted(f.keys()) == sorted(tensors)
            for t, entry in tensors.items():
                if not same:
                    break
                s = f.get_slice(t)
                same = (s.get_dtype() == entry["dtype"]
                        and [int(d) for d in s.get_shape()] == entry["shape"])
        except BaseException:
            f.__exit__(None, None, None)
            raise
        if same:
            return f
        f.__exit__(None, None, None)
    raise ValueError(f"{name} changed while it was being read (three times); try again")


class _DuplicateKey(ValueError):
    """A JSON object with a key twice (which the ``json`` module would silently collapse)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads``: a dict, refusing keys given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_layout(name: str) -> tuple[dict[str, dict[str, Any]], dict[str, str] | None]:
    """Check the raw safetensors layout of the file ``name``; its tensor entries and metadata.

    Reads the 8-byte little-endian header length N and the N-byte header, and nothing more: no
    tensor data. Refuses (``ValueError`` naming the file) a file that is not a regular file; is
    shorter than 8 or 8 + N bytes; has N above :data:`MAX_HEADER_BYTES`; whose header is not
    UTF-8 JSON, not an object or has a key twice; whose ``__metadata__`` is not an object of
    strings; with a tensor whose dtype is not a plain numeric one, whose shape is not a list of
    integers >= 0, or whose ``data_offsets`` are not ``[begin, end]`` with end - begin equal to
    the number of elements times the dtype's size; and whose tensors, sorted by offset, do not
    tile the data section (the rest of the file) exactly: no overlap, gap, trailing or missing
    bytes. A file that fails before its header is read as a JSON object and starts like a pickle
    (0x80 then the protocol, 2 to 5) or a zip archive (PyTorch's format, pickles inside) is named
    as such; pickles are never loaded. (A valid header length may start with 0x80 too: the
    first byte alone proves nothing.)
    """
    head = b""

    def refuse(problem: str, framing: bool = False) -> ValueError:
        if framing and head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            return ValueError(
                f"{name} is not a safetensors file: it starts with 0x80 0x{head[1]:02x}, the mark "
                f"of a protocol-{head[1]} pickle, and its safetensors header is invalid ({problem}); "
                "pickles are never loaded (unpickling can run any code). Expected a model written "
                "by vnn.save")
        if framing and head[:4] == b"PK\x03\x04":
            return ValueError(
                f"{name} is not a safetensors file: it is a zip archive (as torch.save writes, "
                "with pickles inside); pickles are never loaded (unpickling can run any code). "
                "Expected a model written by vnn.save")
        return ValueError(f"{name} is not a valid safetensors file: {problem}. Expected a model "
                          "written by vnn.save (pickles are never loaded)")

    def opener(file: str, flags: int) -> int:  # a FIFO must not block the open
        return os.open(file, flags | getattr(os, "O_NONBLOCK", 0))

    with open(name, "rb", opener=opener) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{name} is not a regular file; expected a model written by "
                             "vnn.save")
        size = info.st_size
        head = f.read(8)
        if size < 8 or len(head) < 8:
            raise refuse(f"it is {min(size, len(head))} bytes long, shorter than the 8-byte "
                         "header length that starts a safetensors file (truncated)", True)
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise refuse(f"its header length field says {n} bytes, more than the limit of "
                         f"{MAX_HEADER_BYTES} (vnn.io.MAX_HEADER_BYTES)", True)
        if n > size - 8:
            raise refuse(f"its header length field says {n} bytes, but only {size - 8} follow "
                         "(truncated)", True)
        raw = f.read(n)
    if len(raw) < n:
        raise refuse(f"its header length field says {n} bytes, but only {len(raw)} could be read "
                     "(truncated)", True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"its header is not UTF-8 text ({exc})", True) from None
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise refuse(f"its header has the key {exc.key!r} more than once (duplicate keys)") from None
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise refuse(f"its header is not valid JSON ({detail})", True) from None
    if not isinstance(header, dict):
        raise refuse(f"its header is a JSON {type(header).__name__}, not an object", True)

    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(v, str) for v in metadata.values())):
        raise refuse("its __metadata__ is not an object of strings")

    spans = []
    for t, entry in header.items():
        if not isinstance(entry, dict):
            raise refuse(f"tensor {t!r} is described by {entry!r}, not an object with dtype, "
                         "shape and data_offsets")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
            raise refuse(f"tensor {t!r} has dtype {dtype!r}, which vnn does not read; the dtypes "
                         f"allowed are the plain numeric ones: {', '.join(_ITEMSIZE)}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise refuse(f"tensor {t!r} has shape {shape!r}; expected a list of integers >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))
                and 0 <= offsets[0] <= offsets[1]):
            raise refuse(f"tensor {t!r} has data_offsets {offsets!r}; expected [begin, end], "
                         "integers with 0 <= begin <= end")
        count = 1
        for d in shape:
            count *= d
        begin, end = offsets
        if end - begin != count * _ITEMSIZE[dtype]:
            raise refuse(f"tensor {t!r} has data_offsets [{begin}, {end}], {end - begin} bytes, "
                         f"but its shape {shape} x {dtype} ({_ITEMSIZE[dtype]} bytes each) needs "
                         f"{count * _ITEMSIZE[dtype]}: sizes that disagree with shape x dtype")
        spans.append((begin, end, t))

    data_len = size - 8 - n
    at, previous = 0, None
    for begin, end, t in sorted(spans):
        if begin < at:
            raise refuse(f"tensor {t!r} (bytes [{begin}, {end}]) overlaps tensor {previous!r} "
                         f"(which ends at {at})")
        if begin > at:
            raise refuse(f"there is a gap of {begin - at} unused bytes before tensor {t!r} (bytes "
                         f"[{begin}, {end}]); the tensors must tile the data exactly")
        at, previous = end, t
    if at < data_len:
        raise refuse(f"it has {data_len - at} trailing bytes after the last tensor's data (the "
                     f"tensors end at {at}; the data section is {data_len} bytes)")
    if at > data_len:
        raise refuse(f"{at - data_len} bytes of tensor data are missing (the tensors end at {at}; "
                     f"the data section is {data_len} bytes): the file is truncated")
    return header, metadata


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
        meta = json.loads(raw[METADATA_KEY], object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ValueError(f"{name} is not a vanilla-nn model: its {METADATA_KEY!r} metadata has "
                         f"the key {exc.key!r} more than once (duplicate keys)") from None
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"{name} is not a vanilla-nn model: its {METADATA_KEY!r} metadata is "
                         f"not valid JSON ({detail})") from None
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
           dtype: str | None, allow_nonfinite: bool = False) -> MLP:
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
    net.weights = [_finite(name, f"W{ell}", f.get_tensor(f"W{ell}"), allow_nonfinite)
                   for ell in range(1, L + 1)]
    net.biases = [_finite(name, f"b{ell}", f.get_tensor(f"b{ell}"), allow_nonfinite)
                  for ell in range(1, L + 1)]
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
