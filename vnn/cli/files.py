"""The files of the ``vnn`` command line: data files read without trusting their headers, output
paths checked before any work, outputs written atomically, and the ``extra`` that ``vnn train``
stores in a model file checked before ``vnn predict`` uses it.

Every problem is a :class:`UsageError` naming the file (and the option or field) at fault.
"""

from __future__ import annotations

import math
import os
import stat
import sys
import zipfile
import zlib
from typing import IO, Any

import numpy as np

from vnn.io import atomic_write_bytes, check_writable
from vnn.io.atomic import file_kind
from vnn.numbers import as_float

#: image types ``vnn train --plot`` writes, by suffix
PLOT_FORMATS = ("png", "svg", "pdf")

class UsageError(Exception):
    """A problem with the user's arguments, files or data (reported with exit status 2)."""


# -- paths ----------------------------------------------------------------------------------------
def check_readable(path: str, option: str | None = None, expected: str = "a data file") -> None:
    """``path`` names an existing regular file (a FIFO or device would block or never end)."""
    where = f"{option} {path}" if option else path
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file; expected {expected}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = file_kind(info.st_mode)
        raise UsageError(f"{where} is {kind}; expected {expected}")


def check_output(path: str, option: str) -> None:
    """Refuse, before any work, an output path that :func:`write_output` could not replace."""
    try:
        check_writable(path, option)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        lead = f"{option}={path!r} "
        if message.startswith(lead):
            message = message[len(lead):]
        raise UsageError(f"{option} {path}: {message}") from None
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror or exc} ({exc.filename})") from None


def _same_file(a: str, b: str) -> bool:
    """``a`` and ``b`` name one file: the same real path (through symbolic links and ``..``), or,
    when both exist, the same inode (hard links)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist (yet)
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_distinct(outputs: list[tuple[str, str | None]], inputs: list[tuple[str, str | None]],
                   allowed: tuple[tuple[str, str], ...] = ()) -> None:
    """Refuse, before any work, an output that is one of the inputs or another output: writing
    it would destroy what is read or written before. ``outputs`` and ``inputs`` are pairs
    ``(option, path or None)``; ``allowed`` lists ``(output option, input option)`` pairs that
    may name one file (``--checkpoint`` and ``--resume``: a run continued in place)."""
    given = [(o, p) for o, p in outputs if p is not None]
    for i, (option, path) in enumerate(given):
        others = [*[(o, p) for o, p in inputs if p is not None], *given[:i]]
        for other, other_path in others:
            if (option, other) not in allowed and _same_file(path, other_path):
                raise UsageError(f"{option} {path} is the same file as {other} {other_path}; "
                                 "choose another output file")


def plot_formats() -> tuple[str, ...]:
    """The image formats ``--plot`` can write: matplotlib's, when it is installed, else the
    three every matplotlib writes (:data:`PLOT_FORMATS`)."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return PLOT_FORMATS
    return tuple(sorted(FigureCanvasBase.get_supported_filetypes()))


def check_plot_format(path: str) -> str:
    """The image format of ``--plot`` from its suffix (one of :func:`plot_formats`)."""
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    formats = plot_formats()
    if suffix not in formats:
        shown = repr("." + suffix) if suffix else "no suffix"
        raise UsageError(f"--plot {path}: {shown} is not an image type vnn writes; expected a "
                         f"file name ending in {', '.join('.' + f for f in formats)}")
    return suffix


def write_output(path: str, data: bytes, option: str, what: str) -> None:
    """Write ``data`` to ``path`` atomically: a failure (a full disk) leaves the old file."""
    try:
        atomic_write_bytes(path, data, option)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write {what} ({exc.strerror or exc}); the "
                         "previous file there, if any, is unchanged") from None


# -- NumPy files ----------------------------------------------------------------------------------
def _kind_hint(head: bytes, expected: str) -> str:
    """What a NumPy file of the other kind than ``expected`` ("npy" or "npz") looks like."""
    if expected == "npy" and head.startswith(b"PK\x03\x04"):
        return " (it is a zip archive: an .npz file?)"
    if expected == "npz" and head.startswith(b"\x93NUMPY"):
        return " (it is an .npy file)"
    return ""


def check_npy_header(f: IO[bytes], size: int, where: str, kinds: str = "biuf") -> None:
    """Read the header of the ``.npy`` data in ``f`` (``size`` bytes in all) and refuse, before
    anything is allocated, a dtype not of ``kinds`` (NumPy's dtype kinds: numbers, and "U" for
    strings) or a shape the data cannot hold."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(f)
        else:  # 3.0 exists for structured dtypes with non-Latin-1 field names
            raise UsageError(f"{where}: NPY format version {version[0]}.{version[1]} holds a "
                             "structured array; expected an array of numbers")
    except (ValueError, EOFError) as exc:
        f.seek(0)
        hint = _kind_hint(f.read(8), "npy")
        raise UsageError(f"{where} is not a valid NumPy .npy file{hint} ({exc})") from None
    if dtype.kind not in kinds or dtype.fields is not None:
        strings = " or strings" if "U" in kinds else ""
        raise UsageError(f"{where} holds an array of dtype {dtype}; expected numbers (bool, "
                         f"integer or float){strings}")
    need = math.prod(shape) * dtype.itemsize
    have = size - f.tell()
    if need > have:
        raise UsageError(f"{where}: its header claims an array of shape {shape} and dtype "
                         f"{dtype}, {need:,} bytes, but the file holds only {have:,} bytes of "
                         "data (truncated or corrupt)")


def load_npy(path: str) -> np.ndarray:
    """The array in the ``.npy`` file ``path``, after :func:`check_npy_header`; one open."""
    with open(path, "rb") as f:
        check_npy_header(f, os.fstat(f.fileno()).st_size, path)
        f.seek(0)
        try:
            return np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"{path}: cannot read it as a NumPy file ({exc})") from None


def load_npz(path: str, wanted: tuple[str, ...]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays named ``wanted`` that the ``.npz`` file ``path`` holds, each member's header
    checked first (:func:`check_npy_header`), and the names of all its arrays."""
    try:
        with zipfile.ZipFile(path) as z:
            members = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
            arrays = {}
            for key in (k for k in wanted if k in members):
                info = z.getinfo(members[key])
                with z.open(info) as f:
                    check_npy_header(f, info.file_size, f"{path}: array {key!r}",
                                     "biufU" if key == "y" else "biuf")
                with z.open(info) as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
    except UsageError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError,
            OSError) as exc:
        with open(path, "rb") as f:
            hint = _kind_hint(f.read(8), "npz")
        raise UsageError(f"{path}: cannot read it as a NumPy .npz file{hint} "
                         f"({type(exc).__name__}: {exc})") from None
    return arrays, list(members)


# -- the extra of a model file --------------------------------------------------------------------
def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(name: str, field: str, value: Any, expected: str) -> UsageError:
    return UsageError(f"{name}: the model's extra field {field!r} is {_show(value)}; expected "
                      f"{expected}")


def _finite_number(v: Any) -> bool:
    """A number that is a finite float64 (an integer beyond its range is not)."""
    x = as_float(v)
    return x is not None and math.isfinite(x)


#: outputs whose predictions are values, not classes
REGRESSION_OUTPUTS = ("identity", "exp")


def _check_labels(name: str, labels: Any, output: str, m_L: int) -> None:
    if labels is None:
        return
    if output in REGRESSION_OUTPUTS:
        raise _refuse(name, "labels", labels, f"null: a regression ({output} output) has no "
                      "class labels")
    count = 2 if output == "sigmoid" and m_L == 1 else m_L
    ok = isinstance(labels, list) and len(labels) == count and all(
        isinstance(c, (str, bool)) or _finite_number(c) for c in labels)
    if not ok:
        raise _refuse(name, "labels", labels, f"null or a list of {count} class labels (strings "
                      f"or numbers) for the model's {output} output with {m_L} unit(s)")


def _check_scaling(name: str, field: str, scaling: Any, m: int, what: str) -> None:
    """``{"mean": [m finite numbers], "std": [m finite numbers > 0]}`` or None."""
    if scaling is None:
        return
    expected = (f"null or {{'mean': [...], 'std': [...]}} with {m} finite numbers each, for "
                f"{what}, every std > 0")
    if not isinstance(scaling, dict):
        raise _refuse(name, field, scaling, expected)
    for key in ("mean", "std"):
        values = scaling.get(key)
        ok = isinstance(values, list) and len(values) == m and all(map(_finite_number, values))
        if not ok or key == "std" and not all(v > 0 for v in values or []):
            raise _refuse(name, field, scaling, expected + f" (its {key!r} is not)")


def _check_feature_names(name: str, names: Any, m_0: int) -> list[str] | None:
    """The model's column names, or None to take the data's columns by position: also when the
    names repeat or are empty (as ``vnn train`` once stored from such a header), with a note."""
    if names is None:
        return None
    if not (isinstance(names, list) and len(names) == m_0
            and all(isinstance(n, str) for n in names)):
        raise _refuse(name, "feature_names", names, f"null or a list of {m_0} column names, "
                      "one per input of the model")
    if len(set(names)) < m_0 or not all(names):
        print(f"vnn: note: {name} names its input columns {_show(names)}, with repeated or empty "
              "names; the data's columns are taken by position", file=sys.stderr)
        return None
    return names


def check_extra(name: str, extra: Any, sizes: list[int], output: str) -> dict[str, Any]:
    """The ``extra`` of the model file ``name`` (what ``vnn train`` stores: ``labels``,
    ``standardize``, ``target_scaling``, ``feature_names``), checked against the model's sizes
    ``[m_0, ..., m_L]`` and output before any of it is used; ``{}`` for None. Other keys are
    the user's and left alone."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise _refuse(name, "extra", extra, "a dict or null")
    m_0, m_L = sizes[0], sizes[-1]
    _check_labels(name, extra.get("labels"), output, m_L)
    _check_scaling(name, "standardize", extra.get("standardize"), m_0,
                   f"the model's {m_0} inputs")
    target_scaling = extra.get("target_scaling")
    if target_scaling is not None and output != "identity":
        raise _refuse(name, "target_scaling", target_scaling, "null: only a regression "
                      f"(identity output) scales its target; this model has a {output} output")
    _check_scaling(name, "target_scaling", target_scaling, m_L, f"the model's {m_L} outputs")
    return {**extra, "feature_names": _check_feature_names(name, extra.get("feature_names"), m_0)}
