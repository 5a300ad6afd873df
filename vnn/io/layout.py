"""Reading a safetensors file once, from one descriptor, checking its raw layout first.

A model file is opened exactly once: its 8-byte header length and JSON header are read and
checked, the caller's checks of the metadata and tensor set run on what was read, and only then
are the tensors the caller needs read, from the same descriptor (a model without its optimizer
state, say). What a load returns is therefore one
consistent snapshot of one file, even while another process saves to the same path (saves
replace the file by a rename, and an open descriptor keeps reading the file it opened).

The safetensors library reads from a path (``safe_open``, a second open) or from bytes it copies
tensor by tensor; after the checks here the layout is known exactly, so the tensors are NumPy
views of the bytes read (little-endian, C order, as the format defines them).
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import numpy as np

from vnn.io.errors import ModelFileError

#: the longest safetensors header (JSON text after the 8-byte length) a file may have, in bytes;
#: a longer one is refused before it is read
MAX_HEADER_BYTES = 16 * 1024 * 1024

#: the safetensors dtypes a file may hold (plain numbers NumPy reads) and their NumPy dtypes;
#: any other (BF16, the 8-, 6- and 4-bit floats, complex, unknown names) is refused
NUMPY_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4",
                "I64": "<i8", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}

#: safetensors dtype codes -> NumPy dtype names (for messages and checks)
DTYPE_NAMES = {code: np.dtype(dt).name for code, dt in NUMPY_DTYPES.items()}

#: the most dimensions a tensor may have (NumPy allows 64; vnn writes 1 and 2)
MAX_NDIM = 32

T = TypeVar("T")


@dataclass
class Tensors:
    """The tensors read from a checked file: their header entries and their bytes."""

    name: str
    entries: dict[str, dict[str, Any]]
    data: dict[str, bytes]

    def get(self, key: str) -> np.ndarray:
        """Tensor ``key`` as a read-only NumPy array viewing the bytes read."""
        entry = self.entries[key]
        shape = tuple(entry["shape"])
        dtype = np.dtype(NUMPY_DTYPES[entry["dtype"]])
        raw = self.data[key]
        if not raw:
            return np.empty(shape, dtype)
        return np.frombuffer(raw, dtype).reshape(shape)


def read(path: Any, check: Callable[[str, dict[str, dict[str, Any]], dict[str, str] | None], T],
         wanted: Callable[[T], list[str]] | None = None) -> tuple[T, Tensors]:
    """Open ``path`` once: check its layout, then ``check(name, entries, metadata)``, then read
    the tensors ``wanted(checked)`` names (none without ``wanted``), each from the same
    descriptor. Returns what ``check`` returned and the tensors read."""
    name = os.fspath(path)

    def opener(file: str, flags: int) -> int:  # a FIFO must not block the open
        return os.open(file, flags | getattr(os, "O_NONBLOCK", 0))

    with open(name, "rb", opener=opener) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelFileError(f"{name} is not a regular file; expected a model written by "
                                 "vnn.save", name)
        entries, metadata, n = check_layout(name, f, info.st_size)
        checked = check(name, entries, metadata)
        data = {}
        for key in ([] if wanted is None else wanted(checked)):
            begin, end = entries[key]["data_offsets"]
            f.seek(8 + n + begin)
            data[key] = f.read(end - begin)
            if len(data[key]) != end - begin:
                raise ModelFileError(f"{name} is not a valid safetensors file: tensor {key!r} "
                                     f"has {end - begin} bytes but only {len(data[key])} could "
                                     "be read (truncated while it was read)", name, key)
    return checked, Tensors(name, entries, data)


def check_layout(name: str, f: BinaryIO, size: int
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, str] | None, int]:
    """Check the raw safetensors layout of the open file ``f`` of ``size`` bytes; its tensor
    entries, its ``__metadata__`` and the header length.

    Reads the 8-byte little-endian header length N and the N-byte header, and nothing more: no
    tensor data. Refuses (:class:`ModelFileError` naming the file) a file shorter than 8 or
    8 + N bytes; with N above :data:`MAX_HEADER_BYTES`; whose header is not UTF-8 JSON, not an
    object or has a key twice; whose ``__metadata__`` is not an object of strings; with a tensor
    whose dtype is not a plain numeric one, whose shape is not a list of integers >= 0, or whose
    ``data_offsets`` are not ``[begin, end]`` with end - begin equal to the number of elements
    times the dtype's size; and whose tensors, sorted by offset, do not tile the data section (the
    rest of the file) exactly: no overlap, gap, trailing or missing bytes. A file that fails
    before its header is read as a JSON object and starts like a pickle (0x80 then the protocol,
    2 to 5) or a zip archive (PyTorch's format, pickles inside) is named as such; pickles are
    never loaded. (A valid header length may start with 0x80 too: the first byte alone proves
    nothing.)
    """
    head = f.read(8)
    refuse = _refuser(name, head)
    if size < 8 or len(head) < 8:
        raise refuse(f"it is {min(size, len(head))} bytes long, shorter than the 8-byte header "
                     "length that starts a safetensors file (truncated)", True)
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
    header = _header_json(raw, refuse)
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(v, str) for v in metadata.values())):
        raise refuse("its __metadata__ is not an object of strings")
    _check_tiling(_spans(header, refuse), size - 8 - n, refuse)
    return header, metadata, n


def _refuser(name: str, head: bytes) -> Callable[..., ModelFileError]:
    """The error for a file that is not a valid safetensors file, naming pickles and zips."""

    def refuse(problem: str, framing: bool = False) -> ModelFileError:
        if framing and head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            return ModelFileError(
                f"{name} is not a safetensors file: it starts with 0x80 0x{head[1]:02x}, the mark "
                f"of a protocol-{head[1]} pickle, and its safetensors header is invalid ({problem}); "
                "pickles are never loaded (unpickling can run any code). Expected a model written "
                "by vnn.save", name)
        if framing and head[:4] == b"PK\x03\x04":
            return ModelFileError(
                f"{name} is not a safetensors file: it is a zip archive (as torch.save writes, "
                "with pickles inside); pickles are never loaded (unpickling can run any code). "
                "Expected a model written by vnn.save", name)
        return ModelFileError(f"{name} is not a valid safetensors file: {problem}. Expected a "
                              "model written by vnn.save (pickles are never loaded)", name)

    return refuse


def _header_json(raw: bytes, refuse: Callable[..., ModelFileError]) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"its header is not UTF-8 text ({exc})", True) from None
    try:
        header = json.loads(text, object_pairs_hook=unique_keys)
    except DuplicateKey as exc:
        raise refuse(f"its header has the key {exc.key!r} more than once (duplicate keys)") from None
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise refuse(f"its header is not valid JSON ({detail})", True) from None
    if not isinstance(header, dict):
        raise refuse(f"its header is a JSON {type(header).__name__}, not an object", True)
    return header


def _spans(entries: dict[str, Any], refuse: Callable[..., ModelFileError]
           ) -> list[tuple[int, int, str]]:
    """(begin, end, name) of every tensor entry, after checking its dtype, shape and size."""
    spans = []
    for t, entry in entries.items():
        if not isinstance(entry, dict):
            raise refuse(f"tensor {t!r} is described by {entry!r}, not an object with dtype, "
                         "shape and data_offsets")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in NUMPY_DTYPES:
            raise refuse(f"tensor {t!r} has dtype {dtype!r}, which vnn does not read; the dtypes "
                         f"allowed are the plain numeric ones: {', '.join(NUMPY_DTYPES)}")
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            raise refuse(f"tensor {t!r} has shape {shape!r}; expected a list of integers >= 0")
        itemsize = np.dtype(NUMPY_DTYPES[dtype]).itemsize
        if len(shape) > MAX_NDIM or _nonzero_product(shape) * itemsize >= 2**63:
            raise refuse(f"tensor {t!r} has shape {_short(shape)}; expected at most {MAX_NDIM} "
                         "dimensions whose non-zero sizes times the dtype's size stay below "
                         "2**63 bytes (the largest array NumPy can describe)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(is_int, offsets))
                and 0 <= offsets[0] <= offsets[1]):
            raise refuse(f"tensor {t!r} has data_offsets {offsets!r}; expected [begin, end], "
                         "integers with 0 <= begin <= end")
        count = 1
        for d in shape:
            count *= d
        begin, end = offsets
        if end - begin != count * itemsize:
            raise refuse(f"tensor {t!r} has data_offsets [{begin}, {end}], {end - begin} bytes, "
                         f"but its shape {shape} x {dtype} ({itemsize} bytes each) needs "
                         f"{count * itemsize}: sizes that disagree with shape x dtype")
        spans.append((begin, end, t))
    return spans


def _check_tiling(spans: list[tuple[int, int, str]], data_len: int,
                  refuse: Callable[..., ModelFileError]) -> None:
    """The tensors, sorted by offset, tile the data section exactly."""
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


def _nonzero_product(shape: list[int]) -> int:
    out = 1
    for d in shape:
        out *= d or 1
        if out >= 2**63:
            break
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


class DuplicateKey(ValueError):
    """A JSON object with a key twice (which the ``json`` module would silently collapse)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads``: a dict, refusing keys given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
