"""``vnn evaluate``: a trained model scored on labelled data."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import vnn
from vnn.cli.files import UsageError
from vnn.cli.predict import features, load_model
from vnn.cli.tables import read_table
from vnn.cli.training import r2, unscale


def cmd_evaluate(args: argparse.Namespace) -> int:
    """A classifier: its loss (Eqn 3 without L2), accuracy and confusion counts; a regression:
    half the squared error per sample in the target's units, and R²."""
    net, extra = load_model(args)
    table = read_table(args.data, args.target, with_target=True)
    X = features(table, net, extra)
    assert table.y is not None
    labels = extra.get("labels")
    n = X.shape[0]
    print(f"data: {table.source}, {n} samples; model: {args.model}, {net}")
    if labels is None:
        return _regression(net, X, table.y, extra)
    return _classification(net, X, table.y, labels)


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
    pred = unscale(vnn.to_numpy(net.predict(X)).astype(np.float64), extra.get("target_scaling"))
    err = pred.reshape(len(pred), -1) - values.reshape(len(values), -1)
    print(f"loss: {0.5 * float(np.mean(np.sum(err * err, axis=1))):.6g} (half the squared error "
          f"per sample, in the target's units)   R²: {r2(values, pred):.4f}")
    return 0
