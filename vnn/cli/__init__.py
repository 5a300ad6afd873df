"""The ``vnn`` command line: train a network on a data file, predict with it, inspect backends.

    vnn train --dataset digits --epochs 20 --out digits.safetensors
    vnn train --data houses.csv --target price --hidden 64,64 --out houses.safetensors
    vnn predict --model digits.safetensors --data new.csv --out predictions.csv
    vnn info

Every problem with the arguments, the data or the files, and every error raised while reading a
data or model file, is reported as one line ``vnn: error: <message>`` on stderr with exit status
2; Ctrl-C ends with status 130. With the environment variable ``VNN_DEBUG=1`` errors other than
problems with the arguments propagate instead, with their traceback (to find a bug in vnn).

Every file written (predictions, the model, checkpoints, the plot) is written atomically: a
failed write, on a full disk say, leaves the previous file as it was. Every output path is
checked before anything is read or trained, and refused if it names one of the input files or
another output (through a symbolic or hard link too). ``vnn train`` writes the model and the plot
as soon as training ends, before the summary is scored and printed. Ctrl-C during training stops
after the step in progress: the epochs finished are reported and the model written (status 130).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import io
import math
import os
import platform
import sys
import textwrap
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

import vnn
from vnn.cli.files import (
    UsageError,
    check_distinct,
    check_extra,
    check_output,
    check_plot_format,
    check_readable,
    load_npy,
    load_npz,
    write_output,
)

PROG = "vnn"
DATASETS = ("digits", "breast_cancer", "diabetes", "iris")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
OUTPUTS = ("auto", "identity", "sigmoid", "softmax")
OPTIMIZERS = ("sgd", "momentum", "adam")
BACKEND_NAMES = ("numpy", "cupy", "torch", "array_api_strict")
DATASETS_HINT = 'pip install "vanilla-nn[datasets]"'
PLOT_HINT = 'pip install "vanilla-nn[plot]"'
#: rows the summary scores at a time: its memory is their activations, not the whole set's
SCORE_ROWS = 8192


class _Parser(argparse.ArgumentParser):
    """argparse, with every usage error reported as ``vnn: error: ...`` (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {message}\n")


# -- argument types -------------------------------------------------------------------------------
def _hidden(text: str) -> list[int]:
    """``--hidden``: comma-separated widths such as ``256,256``; ``""`` or ``none`` for no hidden
    layer (a linear or logistic model)."""
    if text.strip().lower() in ("", "none"):
        return []
    widths = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a list of layer widths; expected integers >= 1 separated by "
                "commas, such as 128 or 256,256")
        widths.append(int(part))
    return widths


def _number(text: str, name: str, *, low: float, low_open: bool, high: float = math.inf,
            high_open: bool = True) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {name}; expected a number in "
                                         f"{lo}{low:g}, {high:g}{hi}")
    return value


def _lr(text: str) -> float:
    return _number(text, "learning rate", low=0.0, low_open=True)


def _l2(text: str) -> float:
    return _number(text, "L2 strength", low=0.0, low_open=False)


def _beta(text: str) -> float:
    return _number(text, "momentum coefficient", low=0.0, low_open=False, high=1.0)


def _fraction(text: str) -> float:
    return _number(text, "fraction", low=0.0, low_open=False, high=1.0)


def _int_at_least(minimum: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {what}; expected an "
                                             f"integer >= {minimum}")
        return value

    return parse


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


def _file_kind(path: str) -> str:
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


def read_table(path: str, target: str | None, with_target: bool,
               columns: list[str] | None = None) -> Table:
    """Read a CSV, NPY or NPZ file: features and, ``with_target``, the target.

    Without the target, a CSV whose header row holds all of ``columns`` gives those columns, in
    that order (other columns, such as the target or ids, are ignored).
    """
    kind = _file_kind(path)
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


def _note_on_target(table: Table, target: Target, output: str) -> None:
    """A hint on stderr when ``--output auto`` probably guessed the task wrong."""
    if output != "auto" or table.y is None:
        return
    n = len(table.y)
    if target.labels is not None and table.y.dtype.kind in "iu" and (
            len(target.labels) > max(20, n // 10)):
        print(f"{PROG}: note: the integer target has {len(target.labels)} distinct values, taken "
              "as class labels; for a regression use --output identity", file=sys.stderr)
    elif target.labels is None and table.y.ndim == 1:
        values = np.unique(table.y)
        if len(values) <= 10 and all(float(v).is_integer() for v in values):
            print(f"{PROG}: note: the target holds {len(values)} distinct whole numbers as floats, "
                  "taken as a regression; for classes use --output softmax (or sigmoid for two)",
                  file=sys.stderr)


# -- training -------------------------------------------------------------------------------------
def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = 0 if fraction == 0 else max(1, int(round(n * fraction)))
    if n - n_val < 1:
        raise UsageError(f"--val-fraction {fraction:g} leaves no training samples out of {n}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _standardization(X: np.ndarray, what: str, names: list[str] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The mean and std of each column of ``X`` (the ``what``: feature or target columns)."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = X.mean(axis=0)
        std = X.std(axis=0)
    bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)))
    if bad.size:
        j = int(bad[0])
        col = repr(names[j]) if names and j < len(names) else str(j)
        raise UsageError(f"{what} {col} holds values too large to standardize (up to "
                         f"{float(np.abs(X[:, j]).max()):g} in magnitude, whose squares overflow); "
                         "rescale the data")
    std[~(std > 1e-12)] = 1.0  # constant features are centred, not scaled
    return mean, std


def _unscale(pred: np.ndarray, scaling: dict[str, list[float]] | None) -> np.ndarray:
    """Regression outputs back in the target's units (undo ``--scale-target``)."""
    if not scaling:
        return pred
    mean, std = np.asarray(scaling["mean"]), np.asarray(scaling["std"])
    if pred.ndim == 1:
        return pred * std[0] + mean[0]
    return pred * std + mean


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination, averaged over target columns."""
    y = y.reshape(len(y), -1)
    pred = pred.reshape(len(pred), -1)
    ss_res = ((y - pred) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    return float(np.mean(r2))


def _make_optimizer(args: argparse.Namespace) -> vnn.Optimizer:
    if args.optimizer == "sgd":
        return vnn.SGD(args.lr)
    if args.optimizer == "momentum":
        return vnn.Momentum(args.lr, beta=args.momentum)
    return vnn.Adam(lr=args.lr)


def _model_io() -> Any:
    try:
        from vnn import io as model_io
    except ImportError as exc:
        raise UsageError(f"model files are not available in this installation ({exc})") from None
    return model_io


def _check_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"--plot needs matplotlib, which is not installed here: {PLOT_HINT}")


def plot_curves(history: vnn.History, path: str, title: str, loss: str, l2: float) -> None:
    """Training (and validation) loss per epoch, written atomically as an image in the format of
    the suffix of ``path`` (any that matplotlib writes)."""
    from matplotlib.figure import Figure

    fmt = check_plot_format(path)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    epochs = range(1, history.epochs + 1)
    ax.plot(epochs, history.loss, marker="o", markersize=3, label="train")
    if history.val_loss:
        ax.plot(epochs, history.val_loss, marker="o", markersize=3, label="validation")
    values = [v for v in history.loss + history.val_loss if math.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 50:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"loss ({loss}{' + L2' if l2 > 0 else ''})")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    image = io.BytesIO()
    fig.savefig(image, format=fmt, dpi=120)
    write_output(path, image.getvalue(), "--plot", "the plot")


def _activation(args: argparse.Namespace) -> str | list[str]:
    """``--activation``: one name, or one per hidden layer."""
    names = [a.strip() for a in args.activation.split(",")]
    for a in names:
        if a not in ACTIVATIONS:
            raise UsageError(f"--activation {args.activation!r}: {a!r} is not one of "
                             f"{', '.join(ACTIVATIONS)}")
    if len(names) > 1:
        if len(names) != len(args.hidden):
            raise UsageError(f"--activation lists {len(names)} activations but --hidden has "
                             f"{len(args.hidden)} layers; give one, or one per hidden layer")
        return names
    return names[0]


def _check_train_files(args: argparse.Namespace) -> int:
    """Check every output path, the plot's format and the ``--resume`` checkpoint before any
    data is read; the epoch the checkpoint is at (0 without ``--resume``)."""
    check_distinct([("--out", args.out), ("--checkpoint", args.checkpoint), ("--plot", args.plot)],
                   [("--data", args.data), ("--resume", args.resume)],
                   allowed=(("--checkpoint", "--resume"),))  # a run continued in place
    for option in ("--out", "--checkpoint", "--plot"):
        path = getattr(args, option[2:])
        if path is not None:
            check_output(path, option)
    if args.plot is not None:
        check_plot_format(args.plot)
        _check_matplotlib()
    if args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every {args.checkpoint_every}: expected an integer >= 1")
    if args.resume is None:
        return 0
    check_readable(args.resume, "--resume", "a checkpoint file written by --checkpoint")
    meta = _model_io().read_metadata(args.resume)
    epoch = meta["epoch"]
    if epoch is None or meta["optimizer"] is None:
        raise UsageError(f"--resume {args.resume} is a model file without an epoch and optimizer "
                         "state; expected a checkpoint written by --checkpoint")
    if epoch > args.epochs:
        raise UsageError(f"--resume {args.resume}: the checkpoint is already at epoch {epoch} of "
                         f"--epochs {args.epochs}: nothing to train; give --epochs above {epoch} "
                         "to continue it")
    if epoch == args.epochs:
        print(f"{PROG}: note: the checkpoint {args.resume} is already at epoch {epoch} of --epochs "
              f"{args.epochs}: nothing to train; its model is reported and written as it is",
              file=sys.stderr)
    return int(epoch)


@dataclass
class _Split:
    """The training and validation data as the network sees them (standardized), and how."""

    X_train: np.ndarray
    y_train: np.ndarray  # the encoded target (codes or values in the target's own units)
    X_val: np.ndarray
    y_val: np.ndarray
    y_fit: np.ndarray  # what fit sees: y_train, or z-scored with target_scaling
    y_fit_val: np.ndarray
    scaling: dict[str, list[float]] | None
    target_scaling: dict[str, list[float]] | None


def _prepare(args: argparse.Namespace, table: Table, target: Target) -> _Split:
    """Split off the validation rows and standardize the features (and a regression's target)."""
    X = table.X
    train_rows, val_rows = _split(X.shape[0], args.val_fraction, args.seed)
    X_train, y_train = X[train_rows], target.y[train_rows]
    X_val, y_val = X[val_rows], target.y[val_rows]
    scaling = None
    if args.standardize:
        mean, std = _standardization(X_train, "the feature column", table.feature_names)
        X_train, X_val = (X_train - mean) / std, (X_val - mean) / std
        scaling = {"mean": mean.tolist(), "std": std.tolist()}
    target_scaling = None
    y_fit, y_fit_val = y_train, y_val
    if args.scale_target and not target.classification:
        y_mean, y_std = _standardization(y_train.reshape(len(y_train), -1), "the target column",
                                         [table.target_name] if table.target_name else None)
        if y_train.ndim == 1:
            y_mean, y_std = y_mean[0], y_std[0]
        y_fit, y_fit_val = (y_train - y_mean) / y_std, (y_val - y_mean) / y_std
        target_scaling = {"mean": np.atleast_1d(y_mean).tolist(),
                          "std": np.atleast_1d(y_std).tolist()}
    return _Split(X_train, y_train, X_val, y_val, y_fit, y_fit_val, scaling, target_scaling)


def _fit(args: argparse.Namespace, net: vnn.MLP, optimizer: vnn.Optimizer, data: _Split,
         comm: Any) -> vnn.History:
    """``net.fit`` with a progress bar; divergence and failed checkpoint writes as one line."""
    from tqdm import tqdm

    bar = tqdm(total=args.epochs, desc="training", unit="epoch", file=sys.stderr,
               disable=True if args.quiet else None, leave=False, dynamic_ncols=True)

    def on_epoch(epoch: int, history: vnn.History) -> None:
        post = {"loss": f"{history.loss[-1]:.4g}"}
        if history.val_loss:
            post["val_loss"] = f"{history.val_loss[-1]:.4g}"
        bar.set_postfix(post, refresh=False)
        bar.update(1)

    has_val = len(data.X_val) > 0
    try:
        with warnings.catch_warnings():  # Ctrl-C: cmd_train says it in a line of its own
            warnings.filterwarnings("ignore", ".*interrupt", RuntimeWarning)
            return net.fit(data.X_train, data.y_fit, optimizer=optimizer, epochs=args.epochs,
                           batch_size=args.batch_size, l2=args.l2,
                           validation_data=(data.X_val, data.y_fit_val) if has_val else None,
                           callback=on_epoch, distributed=comm if comm is not None else False,
                           checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                           resume=args.resume)
    except vnn.DivergenceError as exc:
        raise UsageError(f"training diverged at epoch {exc.epoch}, batch {exc.batch}: the loss or "
                         f"a parameter became NaN or infinite with --lr {args.lr:g}; try a "
                         f"smaller --lr (such as {args.lr / 100:g})") from None
    except OSError as exc:
        if args.checkpoint is None or exc.filename == args.resume:  # not a checkpoint write
            raise
        raise UsageError(f"--checkpoint {args.checkpoint}: cannot write the checkpoint "
                         f"({exc.strerror or exc}); training stopped, the previous checkpoint "
                         "there, if any, is unchanged") from None
    finally:
        bar.close()


def _print(text: str) -> None:
    """``print`` to stdout, in what its encoding can show ("R2" for "R²" in ASCII, say)."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        text = text.replace("²", "2").encode(encoding, "replace").decode(encoding)
    except LookupError:  # an encoding Python does not know: print will tell
        pass
    print(text)


def _predict_rows(net: vnn.MLP, X: np.ndarray) -> np.ndarray:
    """``net.predict(X)`` as a NumPy array, :data:`SCORE_ROWS` rows at a time."""
    parts = [vnn.to_numpy(net.predict(X[i:i + SCORE_ROWS])) for i in range(0, len(X), SCORE_ROWS)]
    return np.concatenate(parts) if parts else vnn.to_numpy(net.predict(X))


def _report(args: argparse.Namespace, net: vnn.MLP, target: Target, data: _Split,
            history: vnn.History, seconds: float, start: int) -> None:
    """Print the final losses, the accuracy (or R²) and the training speed."""

    def score(Xs: np.ndarray, ys: np.ndarray) -> float:
        pred = _predict_rows(net, Xs)
        if target.classification:
            return float(np.mean(pred.reshape(-1) == ys))
        return _r2(ys, _unscale(pred, data.target_scaling))

    has_val = len(data.X_val) > 0
    metric = "accuracy" if target.classification else "R²"
    line = f"train loss: {history.loss[-1]:.4f}"
    if has_val:
        line += f"   val loss: {history.val_loss[-1]:.4f}"
    if data.target_scaling is not None:
        line += "   (on the standardized target)"
    _print(line)
    line = f"train {metric}: {score(data.X_train, data.y_train):.4f}"
    if has_val:
        line += f"   val {metric}: {score(data.X_val, data.y_val):.4f}"
    _print(line)
    if start >= history.epochs:
        _print(f"time: nothing trained (the checkpoint is at epoch {start})")
        return
    fit_seconds = sum(history.seconds[start:])
    trained = len(data.X_train) * (history.epochs - start)
    rate = trained / fit_seconds if fit_seconds > 0 else math.inf
    _print(f"time: {seconds:.2f} s, {rate:,.0f} samples/s")


def _write_model(args: argparse.Namespace, net: vnn.MLP, table: Table, target: Target,
                 data: _Split, history: vnn.History) -> None:
    """``--out``: the model with what ``vnn predict`` needs (labels, feature names, scalings), and
    its epochs finished and history."""
    extra = {
        "task": "classification" if target.classification else "regression",
        "labels": target.labels,
        "feature_names": table.feature_names,
        "target": table.target_name,
        "standardize": data.scaling,
        "target_scaling": data.target_scaling,
        "source": table.source,
    }
    try:
        _model_io().save(net, args.out, epoch=history.epochs, history=history, extra=extra)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot write the model ({exc.strerror or exc}); the "
                         "previous file there, if any, is unchanged") from None


def cmd_train(args: argparse.Namespace) -> int:
    if args.dataset is not None and args.target is not None:
        raise UsageError("--target applies to --data files; the bundled datasets have their own "
                         "target")
    activation = _activation(args)
    start = _check_train_files(args)
    table = load_dataset(args.dataset) if args.dataset else read_table(args.data, args.target, True)
    target = encode_target(table, args.output)
    _note_on_target(table, target, args.output)
    X, n = table.X, table.X.shape[0]
    if not np.all(np.isfinite(X)):
        raise UsageError(f"{table.source}: the features contain NaN or infinite values")
    data = _prepare(args, table, target)
    sizes = [X.shape[1], *args.hidden, target.m_L]
    net = vnn.MLP(sizes, activation=activation, output=target.output, device=args.device,
                  backend=args.backend, dtype=args.dtype, seed=args.seed)
    optimizer = _make_optimizer(args)
    comm = None
    if args.distributed:  # mpiexec -n P vnn train ... --distributed: data-parallel over MPI
        from vnn.distributed import Communicator

        comm = Communicator(net.backend)
        args.quiet = args.quiet or comm.rank != 0  # rank 0 speaks and writes files
    say = (lambda *a: None) if args.quiet else _print
    what = (f"{target.m_L if target.output == 'softmax' else 2} classes"
            if target.classification else "regression")
    say(f"data: {table.source}, {n} samples, {X.shape[1]} features, {what}; "
        f"{len(data.X_train)} for training, {len(data.X_val)} for validation")
    say(f"model: {net}, {net.n_parameters:,} parameters")
    say(f"training: {optimizer!r}, batch {args.batch_size}, {args.epochs} epochs, l2 {args.l2:g}")
    t0 = time.perf_counter()
    history = _fit(args, net, optimizer, data, comm)
    seconds = time.perf_counter() - t0
    if comm is not None and comm.rank != 0:
        return 0
    return _finish(args, net, table, target, data, history, seconds, start)


def _finish(args: argparse.Namespace, net: vnn.MLP, table: Table, target: Target, data: _Split,
            history: vnn.History, seconds: float, start: int) -> int:
    """After training: write the model and the plot first, then score and print the summary;
    the exit status (130 after Ctrl-C)."""
    interrupted = history.stopped == "interrupted"
    if interrupted and history.epochs <= start:
        print(f"{PROG}: interrupted at epoch {history.epochs + 1} (no epoch finished); nothing "
              "written", file=sys.stderr)
        return 130
    if not all(math.isfinite(v) for v in history.loss):
        print(f"{PROG}: warning: the training loss is not finite; try a smaller --lr",
              file=sys.stderr)
    written = []
    if args.out is not None:
        _write_model(args, net, table, target, data, history)
        written.append(f"the model was written to {args.out}")
    if args.plot is not None:
        plot_curves(history, args.plot, f"{table.source}: {net.sizes}", net.loss, args.l2)
        written.append(f"the loss curves {'to' if written else 'were written to'} {args.plot}")
    try:
        _report(args, net, target, data, history, seconds, start)
        _print(f"model written to {args.out}" if args.out is not None
               else "model not written (no --out)")
        if args.plot is not None:
            _print(f"loss curves written to {args.plot}")
    except Exception as exc:  # the model is safe: say so
        if _debug() or not written:
            raise
        raise UsageError(f"the summary failed after training ({_message(exc)}); "
                         f"{' and '.join(written)}") from None
    if interrupted:
        kept = ("model not written (no --out)" if args.out is None else f"the model written to "
                f"{args.out} holds the parameters of the last finished step, in epoch "
                f"{history.epochs + 1}")
        print(f"{PROG}: interrupted at epoch {history.epochs + 1} after {history.epochs} finished "
              f"epochs; {kept}", file=sys.stderr)
        return 130
    return 0


# -- predicting -----------------------------------------------------------------------------------
def _check_width(table: Table, m0: int, names: list[str] | None) -> np.ndarray:
    X = table.X
    if X.shape[1] != m0:
        hint = ""
        if X.shape[1] == m0 + 1:
            hint = " (one more than the model's: is the target column still in it?)"
        header = table.feature_names
        if header is not None and names:
            missing = [n for n in names if n not in header]
            if missing:
                shown = ", ".join(repr(n) for n in missing[:5]) + (", ..." if len(missing) > 5
                                                                   else "")
                hint += f"; it lacks columns the model was trained on: {shown}"
        raise UsageError(f"{table.source} has {X.shape[1]} feature columns but the model expects "
                         f"{m0}{hint}")
    return X


def _fmt(value: float) -> str:
    return format(float(value), ".8g")


def _predictions(net: vnn.MLP, X: np.ndarray, extra: dict[str, Any], proba: bool
                 ) -> tuple[list[str] | None, list[list[str]]]:
    """The header row (``--proba``: the class names) and the rows of ``vnn predict``'s CSV."""
    labels = extra.get("labels")
    output = net.output
    if proba:
        if output == "identity":
            raise UsageError("--proba needs a classifier; this model is a regression "
                             "(identity output)")
        p = vnn.to_numpy(net.predict_proba(X)).astype(np.float64)
        if output == "sigmoid" and p.shape[1] == 1:
            p = np.concatenate([1.0 - p, p], axis=1)
        header = [str(c) for c in labels] if labels else [str(k) for k in range(p.shape[1])]
        return header, [[_fmt(v) for v in row] for row in p]
    pred = vnn.to_numpy(net.predict(X))
    if output == "identity":
        pred = _unscale(pred.astype(np.float64), extra.get("target_scaling"))
        return None, [[_fmt(v) for v in row] for row in pred.reshape(len(pred), -1)]
    if pred.ndim == 2:  # multilabel sigmoid model
        return None, [[str(int(v)) for v in row] for row in pred]
    return None, [[str(labels[int(c)]) if labels else str(int(c))] for c in pred]


def _csv_text(header: list[str] | None, rows: list[list[str]]) -> str:
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    if header is not None:
        w.writerow(header)
    w.writerows(rows)
    return text.getvalue()


def cmd_predict(args: argparse.Namespace) -> int:
    model_io = _model_io()
    check_distinct([("--out", args.out)], [("--model", args.model), ("--data", args.data)])
    check_readable(args.model, "--model", "a model file written by 'vnn train --out'")
    if args.out is not None:
        check_output(args.out, "--out")
    _file_kind(args.data)
    check_readable(args.data)
    try:  # one read of the file: the weights and the extra of the same model
        model = model_io.read_model(args.model, device=args.device, backend=args.backend,
                                    dtype=args.dtype)
    except (ValueError, TypeError, OSError, ImportError, MemoryError):
        raise
    except Exception as exc:  # anything else the file format library raises on a bad file
        raise UsageError(f"{args.model}: cannot load the model ({type(exc).__name__}: "
                         f"{exc})") from None
    net = model.net
    extra = check_extra(args.model, model.extra, net.sizes, net.output)
    names = extra.get("feature_names")
    table = read_table(args.data, None, with_target=False, columns=names)
    X = _check_width(table, net.sizes[0], names)
    if not np.all(np.isfinite(X)):
        raise UsageError(f"{table.source}: the features contain NaN or infinite values")
    scaling = extra.get("standardize")
    if scaling:
        X = (X - np.asarray(scaling["mean"])) / np.asarray(scaling["std"])
    header, rows = _predictions(net, X, extra, args.proba)
    text = _csv_text(header, rows)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_output(args.out, text.encode("utf-8"), "--out", "the predictions")
        print(f"{len(rows)} predictions written to {args.out}", file=sys.stderr)
    return 0


# -- info -----------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cmd_info(args: argparse.Namespace) -> int:
    from vnn import backends

    print(f"vnn {vnn.__version__} ({Path(vnn.__file__).parent})")
    print(f"python {platform.python_version()} ({sys.executable}), {platform.platform()}")
    error = None
    try:
        found = backends.available()
    except Exception as exc:  # a broken installation of an optional library
        found, error = [], exc
    devices: dict[str, list[str]] = {}
    for be in found:
        devices.setdefault(be.name, []).append(be.device_name)
    print("backends:")
    width = max(len(n) for n in BACKEND_NAMES) + 1
    for name in BACKEND_NAMES:
        if importlib.util.find_spec(name) is None:
            status = "not installed"
        else:
            module = sys.modules.get(name)
            version = getattr(module, "__version__", None) or "?"
            seen = devices.get(name)
            if seen:
                status = f"{version:<10} devices: {', '.join(seen)}"
            elif error is not None:
                status = f"{version:<10} could not be checked ({type(error).__name__}: {error})"
            else:
                status = f"{version:<10} installed, no device available (no GPU seen)"
        print(f"  {name:<{width}}  {status}")
    print("optional:")
    for dist, use in (("scikit-learn", "vnn train --dataset"), ("matplotlib", "vnn train --plot"),
                      ("safetensors", "model files"), ("tqdm", "progress bar")):
        print(f"  {dist:<{width}}  {_version(dist) or 'not installed':<10} {use}")
    return 0


# -- the parser -----------------------------------------------------------------------------------
class _Formatter(argparse.HelpFormatter):
    """Help text wrapped without breaking words at hyphens (package names, options)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, formatter_class=_Formatter,
        description="Train vanilla feedforward networks (vanilla-nn) from the command line and "
                    "predict with them, on NumPy (CPU), CuPy (CUDA GPUs), PyTorch or "
                    "array-api-strict.",
        epilog="Run 'vnn COMMAND --help' for the options of a command. Errors are reported in "
               "one line with exit status 2; set VNN_DEBUG=1 to see their traceback instead.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {vnn.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # train
    t = sub.add_parser(
        "train", help="train a network on a data file or a bundled dataset",
        formatter_class=_Formatter,
        description="Train a network on a CSV/NPY/NPZ file or one of scikit-learn's bundled "
                    "datasets, print the training and validation loss and accuracy (or R²), and "
                    "optionally write the model file and a plot of the loss curves.",
        epilog="Data files: CSV with or without a header row (the target is the last column "
               "unless --target); NPY, one 2-D numeric array (last column = target unless "
               "--target gives an index); NPZ with arrays X (n, d) and y (n,) or (n, k). Class "
               "labels of any type (strings, integers) are mapped to 0..K-1; the label list, the "
               "feature names and the standardization are stored in the model file for "
               "'vnn predict'.")
    g = t.add_argument_group("data")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FILE", help="training data: a .csv, .npy or .npz file")
    src.add_argument("--dataset", choices=DATASETS,
                     help=f"a scikit-learn bundled dataset (needs {DATASETS_HINT})")
    g.add_argument("--target", metavar="COLUMN",
                   help="target column: a CSV header name or a column index (negative counts "
                        "from the end); default: the last column")
    g.add_argument("--val-fraction", type=_fraction, default=0.2, metavar="F",
                   help="fraction of the samples held out for validation, drawn with --seed; "
                        "0 disables (default: %(default)s)")
    g.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                   help="z-score the features with the training split's mean and std, stored in "
                        "the model file and applied by 'vnn predict' (default: on)")
    g.add_argument("--scale-target", action=argparse.BooleanOptionalAction, default=True,
                   help="for a regression, z-score the target with the training split's mean and "
                        "std while training; the reported losses are then on that scale, while "
                        "R² and 'vnn predict' use the target's own units (default: on)")
    m = t.add_argument_group("model")
    m.add_argument("--hidden", type=_hidden, default=[128], metavar="W1,W2,...",
                   help="hidden layer widths, e.g. 256,256; 'none' for no hidden layer "
                        "(default: 128)")
    m.add_argument("--activation", default="relu", metavar="NAME",
                   help=f"hidden activation: {', '.join(ACTIVATIONS)}, or a comma-separated list "
                        "with one per hidden layer (default: %(default)s)")
    m.add_argument("--output", choices=OUTPUTS, default="auto",
                   help="output layer; auto picks softmax for integer or string labels with more "
                        "than two classes, sigmoid for two classes and identity (regression) for "
                        "float targets (default: %(default)s)")
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating-point type of the parameters and the computation "
                        "(default: %(default)s)")
    o = t.add_argument_group("optimization")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                   help="update rule: SGD (Eqn 15), momentum (Eqn 16) or Adam "
                        "(default: %(default)s)")
    o.add_argument("--lr", type=_lr, default=1e-3, help="learning rate > 0 (default: %(default)s)")
    o.add_argument("--momentum", type=_beta, default=0.9, metavar="BETA",
                   help="β of --optimizer momentum (default: %(default)s)")
    o.add_argument("--epochs", type=_int_at_least(1, "number of epochs"), default=20, metavar="N",
                   help="passes over the training data (default: %(default)s)")
    o.add_argument("--batch-size", type=_int_at_least(1, "batch size"), default=128, metavar="N",
                   help="samples per mini-batch (default: %(default)s)")
    o.add_argument("--l2", type=_l2, default=0.0, metavar="LAMBDA",
                   help="L2 penalty λ on the weights, >= 0 (default: %(default)s)")
    o.add_argument("--seed", type=_int_at_least(0, "seed"), default=0,
                   help="seeds the weights, the batch order and the validation split "
                        "(default: %(default)s)")
    d = t.add_argument_group("device and output")
    d.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N (default: %(default)s)")
    d.add_argument("--backend", choices=BACKEND_NAMES, default=None,
                   help="array library (default: numpy for cpu, cupy for cuda)")
    d.add_argument("--out", metavar="FILE", help="write the trained model (.safetensors)")
    d.add_argument("--checkpoint", metavar="FILE",
                   help="write a checkpoint (model, optimizer state, epoch, history) every "
                        "--checkpoint-every epochs, atomically")
    d.add_argument("--checkpoint-every", type=int, default=1, metavar="N",
                   help="epochs between checkpoints (default: %(default)s)")
    d.add_argument("--resume", metavar="FILE",
                   help="continue the run saved in this checkpoint, up to --epochs in total "
                        "(same data, options and seed)")
    d.add_argument("--distributed", action="store_true",
                   help="data-parallel training over MPI: start with 'mpiexec -n P vnn train ... "
                        "--distributed' (needs vanilla-nn[mpi]); rank 0 prints and writes files")
    d.add_argument("--plot", metavar="FILE",
                   help="write the training and validation loss per epoch as an image in the "
                        "format of its suffix (PNG, SVG, PDF, EPS, JPEG, ...: what matplotlib "
                        f"writes; needs matplotlib: {PLOT_HINT})")
    d.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar or preamble; print only the summary")
    t.set_defaults(func=cmd_train)

    # predict
    p = sub.add_parser(
        "predict", help="predict with a trained model file", formatter_class=_Formatter,
        description="Load a model written by 'vnn train --out', apply the stored "
                    "standardization to the features of --data and write one prediction per "
                    "line: the original class labels for classifiers, values for regressions.",
        epilog="The data file holds features only (CSV, NPY, or NPZ with array X). A CSV with a "
               "header row may hold other columns too (the target, ids): the columns the model "
               "was trained on are picked by name.")
    p.add_argument("--model", required=True, metavar="FILE", help="a model file (.safetensors)")
    p.add_argument("--data", required=True, metavar="FILE", help="features: .csv, .npy or .npz")
    p.add_argument("--out", metavar="FILE", help="write the predictions here (default: stdout)")
    p.add_argument("--proba", action="store_true",
                   help="write class probabilities instead: one column per class, with a header "
                        "row of class names")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--backend", choices=BACKEND_NAMES, default=None,
                   help="array library (default: numpy for cpu, cupy for cuda)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="compute in this dtype (default: the model file's)")
    p.set_defaults(func=cmd_predict)

    # info
    i = sub.add_parser(
        "info", help="show the version and which array libraries and devices are available",
        formatter_class=_Formatter,
        description="Print the vnn version and, for each backend (numpy, cupy, torch, "
                    "array_api_strict), whether it is installed, its version and the devices "
                    "vnn can use with it.")
    i.set_defaults(func=cmd_info)
    return parser


def _debug() -> bool:
    """``VNN_DEBUG=1``: let errors propagate with their traceback."""
    return os.environ.get("VNN_DEBUG", "").strip() not in ("", "0")


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.strip().splitlines() if line.strip())


def _message(exc: Exception) -> str:
    """What the one-line error says about ``exc``."""
    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, (ValueError, TypeError, OSError, ImportError)):
        if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
            return f"{exc.filename}: {exc.strerror}"
        return str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return f"not enough memory: {exc or 'MemoryError'}"
    # a broken file read by a library, or a bug in vnn
    return f"{type(exc).__name__}: {exc} (set VNN_DEBUG=1 to see where it was raised)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vnn`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if _debug() and not isinstance(exc, UsageError):
            raise
        message = _message(exc)
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return 2
