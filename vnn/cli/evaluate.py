"""``vnn evaluate``: a trained model scored on labelled data."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import vnn
from vnn.cli.files import REGRESSION_OUTPUTS, UsageError
from vnn.cli.predict import features, load_model
from vnn.cli.tables import Table, read_table
from vnn.cli.training import r2, unscale


def cmd_evaluate(args: argparse.Namespace) -> int:
    """A classifier: its loss (Eqn 3 without L2), accuracy and confusion counts; a regression:
    half the squared error per sample in the target's units, and R²."""
    net, extra = load_model(args)
    table = read_table(args.data, _target_column(args, extra), with_target=True)
    _pick_features(table, extra.get("feature_names"))
    X = features(table, net, extra)
    assert table.y is not None
    n = X.shape[0]
    print(f"data: {table.source}, {n} samples; model: {args.model}, {net}")
    if net.output in REGRESSION_OUTPUTS:
        return _regression(net, X, table.y, extra)
    if net.output == "sigmoid" and net.sizes[-1] > 1:
        raise UsageError("vnn evaluate scores single-label classifiers; this model has "
                         f"{net.sizes[-1]} sigmoid outputs (multilabel)")
    labels = extra.get("labels")
    if labels is None:  # a model saved from Python: its classes are the codes 0..K-1
        labels = list(range(2 if net.output == "sigmoid" else net.sizes[-1]))
    return _classification(net, X, table.y, labels)


def _target_column(args: argparse.Namespace, extra: dict[str, Any]) -> str | None:
    """``--target``, else the target column the model was trained on (when its name is known
    and is in the file's header), else the last column."""
    if args.target is not None:
        return str(args.target)
    name = extra.get("target")
    if isinstance(name, str) and name.split(" ")[0] != "column":
        from vnn.cli.tables import header_names

        if name in (header_names(args.data) or []):
            return name
    return None


def _pick_features(table: Table, names: list[str] | None) -> None:
    """The feature columns the model was trained on, by name and in its order, when the file
    names its columns (else they are taken in the file's order)."""
    header = table.feature_names
    if not names or header is None:
        return
    missing = [c for c in names if c not in header]
    if missing:
        raise UsageError(f"{table.source} lacks columns the model was trained on: "
                         f"{', '.join(repr(c) for c in missing[:5])} (its columns: "
                         f"{', '.join(repr(c) for c in header[:10])})")
    order = [header.index(c) for c in names]
    table.X, table.feature_names = table.X[:, order], list(names)


def _classification(net: vnn.MLP, X: np.ndarray, y: np.ndarray, labels: list[Any]) -> int:
    names = [str(c) for c in labels]
    index = {name: k for k, name in enumerate(names)}
    raw = [_label_text(v) for v in y.reshape(-1)]
    unknown = sorted({v for v in raw if v not in index})
    if unknown:
        raise UsageError(f"the target holds labels the model was not trained on: "
                         f"{', '.join(repr(u) for u in unknown[:5])}; its classes are "
                         f"{', '.join(repr(c) for c in names)}")
    codes = np.array([index[v] for v in raw], dtype=np.int64)
    J, _ = net.loss_and_gradients(X, codes)
    pred = vnn.to_numpy(net.predict(X)).reshape(-1)
    K = len(names)
    counts = np.zeros((K, K), dtype=np.int64)
    np.add.at(counts, (codes, pred), 1)
    print(f"loss: {J:.4f}   accuracy: {float(np.mean(pred == codes)):.4f}")
    width = max(8, *(len(c) for c in names)) + 1
    print("confusion counts (rows: true class, columns: predicted):")
    print(" " * width + "".join(f"{c:>{width}}" for c in names))
    for name, row in zip(names, counts):
        print(f"{name:>{width}}" + "".join(f"{v:>{width}d}" for v in row))
    return 0


def _label_text(value: Any) -> str:
    """A target value as the model's labels are written (whole-number floats as integers)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _regression(net: vnn.MLP, X: np.ndarray, y: np.ndarray, extra: dict[str, Any]) -> int:
    values = y.astype(np.float64)
    width = values.reshape(len(values), -1).shape[1]
    if width != net.sizes[-1]:
        raise UsageError(f"the data has {width} target columns but the model has "
                         f"{net.sizes[-1]} output{'s' if net.sizes[-1] > 1 else ''}")
    pred = unscale(vnn.to_numpy(net.predict(X)).astype(np.float64), extra.get("target_scaling"))
    err = pred.reshape(len(pred), -1) - values.reshape(len(values), -1)
    print(f"loss: {0.5 * float(np.mean(np.sum(err * err, axis=1))):.6g} (half the squared error "
          f"per sample, in the target's units)   R²: {r2(values, pred):.4f}")
    return 0
