"""Reading the data: CSV, NPY and NPZ tables, the bundled data sets, and encoding a target."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vnn.cli.files import (
    UsageError,
    check_readable,
    load_npy,
    load_npz,
)
from vnn.cli.options import DATASETS_HINT


# -- reading data ---------------------------------------------------------------------------------
@dataclass
class Table:
    """Features (n, d) as floats, and the raw target when there is one."""

    X: np.ndarray
    y: np.ndarray | None = None
    feature_names: list[str] | None = None
    target_name: str | None = None
    source: str = ""
    #: class names of integer-coded targets (scikit-learn's target_names)
    class_names: list[Any] | None = None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def file_kind(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix in (".npy", ".npz"):
        return suffix[1:]
    raise UsageError(f"{path}: unknown file type {suffix or '(no extension)'!r}; expected a .csv, "
                     ".npy or .npz file")


def _check_header(path: str, names: list[str], line: int) -> None:
    """Every column of a header row has a name, and no name is used twice."""
    for j, name in enumerate(names):
        if not name:
            raise UsageError(f"{path}, line {line}: column {j + 1} of the header row has no name; "
                             "name every column (a pandas index? write it with index=False)")
        if name in names[:j]:
            raise UsageError(f"{path}, line {line}: the header row names {name!r} twice (columns "
                             f"{names.index(name) + 1} and {j + 1}); column names must differ")


def _read_csv(path: str, named: bool = False
              ) -> tuple[list[str] | None, list[list[str]], list[int]]:
    """The header (or None when the first row holds data), the rows and their line numbers.

    With ``named``, a header row must name every column, each differently.
    """
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                rows.append([cell.strip() for cell in row])
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not a UTF-8 text file ({exc.reason}); expected CSV") from None
    except csv.Error as exc:
        raise UsageError(f"{path}: not a valid CSV file: {exc}") from None
    if not rows:
        raise UsageError(f"{path} is empty; expected rows of comma-separated values")
    width = len(rows[0])
    for row, line in zip(rows, lines):
        if len(row) != width:
            raise UsageError(f"{path}, line {line}: {len(row)} fields where the first row has "
                             f"{width}")
    # A header row has a non-numeric field in a column whose next row is numeric (features are
    # always numeric, so any real header has one; an empty field is a missing value, not a name);
    # a single row is a header only if none of it is numeric.
    first = rows[0]
    if len(rows) > 1:
        header = any(a and not _is_number(a) and _is_number(b) for a, b in zip(first, rows[1]))
    else:
        header = not any(_is_number(a) for a in first)
    if header:
        if named:
            _check_header(path, first, lines[0])
        names, rows, lines = first, rows[1:], lines[1:]
        if not rows:
            raise UsageError(f"{path} has a header row but no data rows")
        return names, rows, lines
    return None, rows, lines


def _float_columns(path: str, rows: list[list[str]], lines: list[int], columns: list[int],
                   names: list[str] | None) -> np.ndarray:
    """The given columns of the CSV rows as an (n, len(columns)) float64 array."""
    cells = [[row[j] for j in columns] for row in rows]
    try:
        X = np.array(cells, dtype=np.float64).reshape(len(rows), len(columns))
    except ValueError:
        for row, line in zip(rows, lines):
            for j in columns:
                if not _is_number(row[j]):
                    col = repr(names[j]) if names else str(j)
                    what = "an empty field" if not row[j] else repr(row[j])
                    raise UsageError(f"{path}, line {line}, column {col}: {what} is not a "
                                     "number; feature columns must be numeric") from None
        raise
    return X


def _column_index(spec: str, names: list[str] | None, width: int, path: str) -> int:
    """``--target`` as a column index: a header name, or an index (negative counts from the end)."""
    if names is not None and spec in names:
        return names.index(spec)
    try:
        index = int(spec)
    except ValueError:
        index = None
    if index is not None and -width <= index < width:
        return index % width
    if names is not None:
        shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
        raise UsageError(f"--target {spec!r} is not a column of {path}; its columns are {shown} "
                         f"(or give an index 0..{width - 1})")
    raise UsageError(f"--target {spec!r} is not a column of {path}, which has no header row and "
                     f"{width} columns; give an index 0..{width - 1} (negative counts from the end)")


def _target_values(values: list[str], path: str, name: str) -> np.ndarray:
    """A CSV target column as int64 (integers), float64 (other numbers, and integers beyond
    int64) or str (anything else)."""
    if any(not v for v in values):
        raise UsageError(f"{path}: the target column {name!r} has empty fields")
    try:
        ints = [int(v) for v in values]
    except ValueError:
        ints = []
    if ints and all(-(2**63) <= v < 2**63 for v in ints):
        return np.array(ints, dtype=np.int64)
    if all(_is_number(v) for v in values):
        return np.array([float(v) for v in values], dtype=np.float64)
    return np.array(values, dtype=str)


def _numeric_2d(arr: np.ndarray, path: str, what: str) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise UsageError(f"{path}: {what} has dtype {arr.dtype}; expected numbers")
    if arr.ndim != 2:
        raise UsageError(f"{path}: {what} has shape {arr.shape}; expected 2 dimensions "
                         "(samples, features)")
    if arr.shape[0] == 0:
        raise UsageError(f"{path}: {what} has no rows")
    return arr


def header_names(path: str) -> list[str] | None:
    """The column names of a CSV file's header row; None for a file without one, or not CSV."""
    if file_kind(path) != "csv":
        return None
    check_readable(path)
    return _read_csv(path)[0]


def read_table(path: str, target: str | None, with_target: bool,
               columns: list[str] | None = None) -> Table:
    """Read a CSV, NPY or NPZ file: features and, ``with_target``, the target.

    Without the target, a CSV whose header row holds all of ``columns`` gives those columns, in
    that order (other columns, such as the target or ids, are ignored).
    """
    kind = file_kind(path)
    check_readable(path)
    if kind == "csv":
        names, rows, lines = _read_csv(path, named=with_target)
        width = len(rows[0])
        if not with_target:
            picked = list(range(width))
            if names is not None and columns and all(c in names for c in columns):
                twice = [c for c in columns if names.count(c) > 1]
                if twice:
                    raise UsageError(f"{path}: its header row names {twice[0]!r}, a column of "
                                     "the model, more than once; which one is meant is unclear")
                picked = [names.index(c) for c in columns]
            X = _float_columns(path, rows, lines, picked, names)
            return Table(X, feature_names=names, source=path)
        if width < 2:
            raise UsageError(f"{path} has a single column; expected feature columns and a target")
        t = _column_index(target if target is not None else "-1", names, width, path)
        features = [j for j in range(width) if j != t]
        X = _float_columns(path, rows, lines, features, names)
        tname = names[t] if names else f"column {t}"
        y = _target_values([row[t] for row in rows], path, tname)
        fnames = [names[j] for j in features] if names else None
        return Table(X, y, fnames, tname if names else None, source=path)
    if kind == "npy":
        arr = _numeric_2d(load_npy(path), path, "the array")
        if not with_target:
            return Table(arr.astype(np.float64), source=path)
        width = arr.shape[1]
        if width < 2:
            raise UsageError(f"{path} has a single column; expected feature columns and a target")
        t = _column_index(target if target is not None else "-1", None, width, path)
        y = arr[:, t]
        X = np.delete(arr, t, axis=1).astype(np.float64)
        return Table(X, y, source=path)
    # npz
    if target is not None:
        raise UsageError("--target applies to CSV and NPY files; an NPZ file holds arrays X and y")
    wanted = ("X", "y") if with_target else ("X",)
    arrays, keys = load_npz(path, wanted)
    missing = [k for k in wanted if k not in arrays]
    if missing:
        raise UsageError(f"{path} has arrays {keys}; expected arrays named {list(wanted)}")
    X = _numeric_2d(arrays["X"], path, "X").astype(np.float64)
    if not with_target:
        return Table(X, source=path)
    y = arrays["y"]
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise UsageError(f"{path}: y has shape {y.shape}; expected ({X.shape[0]},) or "
                         f"({X.shape[0]}, k) to match the {X.shape[0]} rows of X")
    if y.dtype.kind not in "biufU":
        raise UsageError(f"{path}: y has dtype {y.dtype}; expected numbers or strings")
    return Table(X, y, source=path)


def load_dataset(name: str) -> Table:
    """One of scikit-learn's bundled datasets (no download)."""
    try:
        from sklearn import datasets
    except ImportError:
        raise UsageError(f"--dataset needs scikit-learn, which is not installed here: "
                         f"{DATASETS_HINT}") from None
    bunch = getattr(datasets, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    class_names = None
    if name != "diabetes":
        class_names = np.asarray(bunch.target_names).tolist()
    fnames = [str(f) for f in bunch.feature_names]
    return Table(X, y, fnames, "target", source=f"{name} (scikit-learn)", class_names=class_names)


# -- targets --------------------------------------------------------------------------------------
@dataclass
class Target:
    """The encoded target: class codes 0..K-1 or float values, and how to decode them."""

    y: np.ndarray
    output: str
    m_L: int
    labels: list[Any] | None  # classification: the original label of each code

    @property
    def classification(self) -> bool:
        return self.labels is not None


def _json_labels(values: np.ndarray) -> list[Any]:
    labels = values.tolist()
    if values.dtype.kind == "f" and all(float(v).is_integer() for v in labels):
        labels = [int(v) for v in labels]
    return labels


def encode_target(table: Table, output: str) -> Target:
    """Choose the output (``auto``) and map class labels of any type to codes 0..K-1."""
    y = table.y
    assert y is not None
    kind = y.dtype.kind
    if output == "auto":
        output = "identity" if kind == "f" else "classes"
    if output == "identity":
        if kind not in "biuf":
            example = y.reshape(-1)[0]
            raise UsageError(f"the target holds non-numeric values such as {str(example)!r}; "
                             "a regression (--output identity) needs numbers")
        values = y.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise UsageError("the target contains NaN or infinite values")
        return Target(values, "identity", 1 if values.ndim == 1 else values.shape[1], None)
    if y.ndim != 1:
        raise UsageError(f"the target has shape {y.shape}; class labels must be one column")
    if kind == "f" and not np.all(np.isfinite(y)):
        raise UsageError("the target contains NaN or infinite values")
    classes, codes = np.unique(y, return_inverse=True)
    if table.class_names is not None and kind in "iu":
        labels = [table.class_names[int(c)] for c in classes]
    else:
        labels = _json_labels(classes)
    K = len(labels)
    if K < 2:
        raise UsageError(f"the target has a single class ({labels[0]!r}); a classifier needs at "
                         "least two")
    if output == "classes":
        output = "sigmoid" if K == 2 else "softmax"
    if output == "sigmoid" and K != 2:
        raise UsageError(f"--output sigmoid needs two classes; the target has {K} (use softmax)")
    return Target(codes.astype(np.int64).reshape(-1), output, 1 if output == "sigmoid" else K,
                  labels)


#: the most distinct whole-number values a target may have and still be taken as class labels
#: (also at most a fifth of the samples): more are a quantity (prices, counts) to regress
MAX_GUESSED_CLASSES = 20


def choose_task(table: Table, output: str, task: str) -> tuple[str, str]:
    """The output to encode the target with (``encode_target``'s ``output``: ``"classes"``,
    ``"identity"`` or one asked for) and a line saying which task was chosen, why, and how to
    choose the other. ``task``: ``auto``, ``classify`` or ``regress`` (``--task``)."""
    y = table.y
    assert y is not None
    if output != "auto":
        implied = "regress" if output == "identity" else "classify"
        if task not in ("auto", implied):
            raise UsageError(f"--task {task} contradicts --output {output} (a "
                             f"{'regression' if implied == 'regress' else 'classifier'}); give "
                             "one of them")
        task, why = implied, f"--output {output}"
    elif task != "auto":
        why = f"--task {task}"
    else:
        task, why = _guess_task(y)
    if task == "regress":
        other = "" if why.startswith("--") else "; --task classify to take it as class labels"
        return ("identity" if output == "auto" else output,
                f"task: regression ({why}){other}")
    K = len(np.unique(y)) if y.ndim == 1 else y.shape[1]
    other = "" if why.startswith("--") else "; --task regress to take it as numbers"
    return ("classes" if output == "auto" else output,
            f"task: classification ({K} classes, {why}){other}")


def _guess_task(y: np.ndarray) -> tuple[str, str]:
    """What a user would expect from the target's values: classes for labels that are not
    numbers or are few whole numbers, else a regression."""
    if y.dtype.kind not in "biuf":
        return "classify", "the target is not numeric"
    if y.dtype.kind == "b":
        return "classify", "the target is true/false"
    if y.ndim != 1:
        return "regress", f"{y.shape[1]} numeric target columns"
    values = np.unique(y)
    n = len(y)
    if y.dtype.kind == "f" and not all(float(v).is_integer() for v in values if np.isfinite(v)):
        return "regress", "the target has non-integer values"
    limit = max(2, min(MAX_GUESSED_CLASSES, n // 5))
    if len(values) <= limit:
        return "classify", f"{len(values)} distinct whole numbers among {n} samples"
    return "regress", (f"{len(values)} distinct whole numbers among {n} samples, too many to "
                       f"be class labels, at most {limit} here")
