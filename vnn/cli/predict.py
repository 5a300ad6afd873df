"""``vnn predict``: a model's predictions for a data file, as CSV."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from typing import Any

import numpy as np

import vnn
from vnn.cli.files import (
    REGRESSION_OUTPUTS,
    UsageError,
    check_distinct,
    check_extra,
    check_output,
    check_readable,
    write_output,
)
from vnn.cli.options import PROG
from vnn.cli.tables import Table, file_kind, read_table
from vnn.cli.training import io_module, unscale


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
        if output in REGRESSION_OUTPUTS:
            raise UsageError("--proba needs a classifier; this model is a regression "
                             f"({output} output)")
        p = vnn.to_numpy(net.predict_proba(X)).astype(np.float64)
        if output == "sigmoid" and p.shape[1] == 1:
            p = np.concatenate([1.0 - p, p], axis=1)
        header = [str(c) for c in labels] if labels else [str(k) for k in range(p.shape[1])]
        return header, [[_fmt(v) for v in row] for row in p]
    pred = vnn.to_numpy(net.predict(X))
    if output in REGRESSION_OUTPUTS:
        pred = unscale(pred.astype(np.float64), extra.get("target_scaling"))
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


def load_model(args: argparse.Namespace) -> tuple[vnn.MLP, dict[str, Any]]:
    """``--model`` on ``--device`` / ``--backend`` / ``--dtype``, and its checked extra; the
    ``--data`` file's kind and readability checked first."""
    model_io = io_module()
    check_readable(args.model, "--model", "a model file written by 'vnn train --out'")
    file_kind(args.data)
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
    return net, check_extra(args.model, model.extra, net.sizes, net.output)


def features(table: Table, net: vnn.MLP, extra: dict[str, Any]) -> np.ndarray:
    """The table's features as the model takes them: its columns, finite, standardised with
    the statistics stored in the model."""
    X = _check_width(table, net.sizes[0], extra.get("feature_names"))
    if not np.all(np.isfinite(X)):
        raise UsageError(f"{table.source}: the features contain NaN or infinite values")
    scaling = extra.get("standardize")
    if scaling:
        X = (X - np.asarray(scaling["mean"])) / np.asarray(scaling["std"])
    return X


def cmd_predict(args: argparse.Namespace) -> int:
    check_distinct([("--out", args.out)], [("--model", args.model), ("--data", args.data)])
    if args.out is not None:
        check_output(args.out, "--out")
    net, extra = load_model(args)
    names: list[str] = extra.get("feature_names") or []
    table = read_table(args.data, None, with_target=False, columns=names or None)
    X = features(table, net, extra)
    columns = table.feature_names or []
    by_name = bool(names) and all(c in columns for c in names)  # how read_table picked them
    unused = [c for c in columns if by_name and c not in names]
    if unused:  # a target, ids: left out, and said so
        shown = ", ".join(repr(c) for c in unused[:5]) + (", ..." if len(unused) > 5 else "")
        print(f"{PROG}: note: {table.source}: column(s) {shown} not used by the model; to score "
              f"it against a target column: vnn evaluate --model {args.model} --data "
              f"{args.data} --target COLUMN", file=sys.stderr)
    header, rows = _predictions(net, X, extra, args.proba)
    text = _csv_text(header, rows)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_output(args.out, text.encode("utf-8"), "--out", "the predictions")
        print(f"{len(rows)} predictions written to {args.out}", file=sys.stderr)
    return 0
