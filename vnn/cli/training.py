"""``vnn train``: split, standardise, train, report, write the model and the plot."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import io
import math
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

import vnn
from vnn.cli.errors import debug, error_message
from vnn.cli.files import (
    UsageError,
    check_distinct,
    check_output,
    check_plot_format,
    check_readable,
    write_output,
)
from vnn.cli.options import PLOT_HINT, PROG, SCORE_ROWS, activation_of
from vnn.cli.tables import Table, Target, choose_task, encode_target, load_dataset, read_table


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


def unscale(pred: np.ndarray, scaling: dict[str, list[float]] | None) -> np.ndarray:
    """Regression outputs back in the target's units (undo ``--scale-target``)."""
    if not scaling:
        return pred
    mean, std = np.asarray(scaling["mean"]), np.asarray(scaling["std"])
    if pred.ndim == 1:
        return pred * std[0] + mean[0]
    return pred * std + mean


def r2(y: np.ndarray, pred: np.ndarray) -> float:
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


def io_module() -> Any:
    try:
        from vnn import io as model_io
    except ImportError as exc:
        raise UsageError(f"model files are not available in this installation ({exc})") from None
    return model_io


def _check_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"--plot needs matplotlib, which is not installed here: {PLOT_HINT}")


def plot_curves(history: vnn.History, path: str, title: str, loss: str, l2: float,
                scores: Any = None) -> None:
    """Training (and validation) loss per epoch and, beside it, the accuracy (or R²) of the
    epochs ``scores`` recorded, written atomically as an image in the format of the suffix of
    ``path`` (any that matplotlib writes)."""
    from matplotlib.figure import Figure

    fmt = check_plot_format(path)
    with_scores = scores is not None and scores.epochs
    fig = Figure(figsize=(11.0 if with_scores else 6.4, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 2 if with_scores else 1, 1)
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
    if with_scores:
        right = fig.add_subplot(1, 2, 2)
        right.plot(scores.epochs, scores.train, marker="o", markersize=3, label="train")
        if scores.val:
            right.plot(scores.epochs, scores.val, marker="o", markersize=3, label="validation")
        right.set_xlabel("epoch")
        right.set_ylabel(scores.metric)
        right.grid(True, alpha=0.3)
        right.legend()
    image = io.BytesIO()
    fig.savefig(image, format=fmt, dpi=120)
    write_output(path, image.getvalue(), "--plot", "the plot")


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
    meta = io_module().read_metadata(args.resume)
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
         comm: Any, start: int = 0, scores: _Scores | None = None) -> vnn.History:
    """``net.fit`` with a progress bar (from epoch ``start`` when resuming); divergence and
    failed checkpoint writes as one line."""
    from tqdm import tqdm

    bar = tqdm(total=args.epochs, initial=start, desc="training", unit="epoch", file=sys.stderr,
               disable=True if args.quiet else None, leave=False, dynamic_ncols=True)

    def on_epoch(epoch: int, history: vnn.History) -> None:
        post = {"loss": f"{history.loss[-1]:.4g}"}
        if history.val_loss:
            post["val_loss"] = f"{history.val_loss[-1]:.4g}"
        bar.set_postfix(post, refresh=False)
        bar.update(1)
        if scores is not None:
            scores(epoch)

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


def _scorer(net: vnn.MLP, target: Target, data: _Split) -> Any:
    """``score(X, y)``: the accuracy of a classifier, or R² of a regression in the target's
    units."""

    def score(Xs: np.ndarray, ys: np.ndarray) -> float:
        pred = _predict_rows(net, Xs)
        if target.classification:
            return float(np.mean(pred.reshape(-1) == ys))
        return r2(ys, unscale(pred, data.target_scaling))

    return score


class _Scores:
    """``--plot``: the accuracy (or R²) on the training and validation splits after each epoch
    trained (one forward pass over each)."""

    def __init__(self, net: vnn.MLP, target: Target, data: _Split) -> None:
        self.score, self.data = _scorer(net, target, data), data
        self.metric = "accuracy" if target.classification else "R²"
        self.epochs: list[int] = []
        self.train: list[float] = []
        self.val: list[float] = []

    def __call__(self, epoch: int) -> None:
        if self.failed:
            return
        try:
            train = self.score(self.data.X_train, self.data.y_train)
            val = self.score(self.data.X_val, self.data.y_val) if len(self.data.X_val) else None
        except Exception:  # a curve for the plot never stops training: the plot does without
            self.failed = True
            self.epochs, self.train, self.val = [], [], []
            return
        self.epochs.append(epoch)
        self.train.append(train)
        if val is not None:
            self.val.append(val)

    failed = False


def _report(args: argparse.Namespace, net: vnn.MLP, target: Target, data: _Split,
            history: vnn.History, seconds: float, start: int) -> None:
    """Print the final losses, the accuracy (or R²) and the training speed."""
    score = _scorer(net, target, data)

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
        io_module().save(net, args.out, epoch=history.epochs, history=history, extra=extra)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot write the model ({exc.strerror or exc}); the "
                         "previous file there, if any, is unchanged") from None


def cmd_train(args: argparse.Namespace) -> int:
    if args.dataset is not None and args.target is not None:
        raise UsageError("--target applies to --data files; the bundled datasets have their own "
                         "target")
    activation = activation_of(args)
    start = _check_train_files(args)
    table = load_dataset(args.dataset) if args.dataset else read_table(args.data, args.target, True)
    output, task_line = choose_task(table, args.output, args.task)
    target = encode_target(table, output)
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
    say(task_line)
    say(f"model: {net}, {net.n_parameters:,} parameters")
    say(f"training: {optimizer!r}, batch {args.batch_size}, {args.epochs} epochs, l2 {args.l2:g}")
    if start:
        say(f"resuming from epoch {start} of {args.epochs} ({args.resume}): training epochs "
            f"{start + 1}..{args.epochs}")
    scores = _Scores(net, target, data) if args.plot is not None else None
    t0 = time.perf_counter()
    history = _fit(args, net, optimizer, data, comm, start, scores)
    seconds = time.perf_counter() - t0
    if comm is not None and comm.rank != 0:
        return 0
    return _finish(args, net, table, target, data, history, seconds, start, scores)


def _finish(args: argparse.Namespace, net: vnn.MLP, table: Table, target: Target, data: _Split,
            history: vnn.History, seconds: float, start: int,
            scores: _Scores | None = None) -> int:
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
        plot_curves(history, args.plot, f"{table.source}: {net.sizes}", net.loss, args.l2,
                    scores)
        written.append(f"the loss curves {'to' if written else 'were written to'} {args.plot}")
    try:
        _report(args, net, target, data, history, seconds, start)
        _print(f"model written to {args.out}" if args.out is not None
               else "model not written (no --out)")
        if args.plot is not None:
            _print(f"loss curves written to {args.plot}")
    except Exception as exc:  # the model is safe: say so
        if debug() or not written:
            raise
        raise UsageError(f"the summary failed after training ({error_message(exc)}); "
                         f"{' and '.join(written)}") from None
    if interrupted:
        kept = ("model not written (no --out)" if args.out is None else f"the model written to "
                f"{args.out} holds the parameters of the last finished step, in epoch "
                f"{history.epochs + 1}")
        print(f"{PROG}: interrupted at epoch {history.epochs + 1} after {history.epochs} finished "
              f"epochs; {kept}", file=sys.stderr)
        return 130
    return 0
