"""The ``vnn`` command line: train a network on a data file, predict with it, inspect backends.

    vnn train --dataset digits --epochs 20 --out digits.safetensors
    vnn train --data houses.csv --target price --hidden 64,64 --out houses.safetensors
    vnn predict --model digits.safetensors --data new.csv --out predictions.csv
    vnn evaluate --model digits.safetensors --data labelled.csv
    vnn info

Every problem with the arguments, the data or the files, and every error raised while reading a
data or model file, is reported as one line ``vnn: error: <message>`` on stderr with exit status
2; Ctrl-C ends with status 130; output into a pipe whose reader has gone (``| head``) stops
quietly with status 141. With the environment variable ``VNN_DEBUG=1`` errors other than
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
import os
import sys
from collections.abc import Sequence
from typing import Any

import vnn
from vnn.cli.errors import debug, error_message, one_line
from vnn.cli.evaluate import cmd_evaluate
from vnn.cli.files import UsageError
from vnn.cli.info import cmd_info
from vnn.cli.options import (
    ACTIVATIONS,
    BACKEND_NAMES,
    DATASETS,
    DATASETS_HINT,
    OPTIMIZERS,
    OUTPUTS,
    PLOT_HINT,
    PROG,
    Formatter,
    Parser,
    beta,
    fraction,
    hidden,
    int_at_least,
    l2,
    lr,
)
from vnn.cli.predict import cmd_predict
from vnn.cli.training import cmd_train


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG, formatter_class=Formatter,
        description="Train vanilla feedforward networks (vanilla-nn) from the command line and "
                    "predict with them, on NumPy (CPU), CuPy (CUDA GPUs), PyTorch or "
                    "array-api-strict.",
        epilog="Run 'vnn COMMAND --help' for the options of a command. Errors are reported in "
               "one line with exit status 2; set VNN_DEBUG=1 to see their traceback instead.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {vnn.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(sub)
    _add_predict(sub)
    _add_evaluate(sub)
    _add_info(sub)
    return parser


def _add_train(sub: Any) -> None:
    """``vnn train`` and its options."""
    t = sub.add_parser(
        "train", help="train a network on a data file or a bundled dataset",
        formatter_class=Formatter,
        description="Train a network on a CSV/NPY/NPZ file or one of scikit-learn's bundled "
                    "datasets, print the training and validation loss and accuracy (or R²), and "
                    "optionally write the model file and a plot of the loss curves.",
        epilog="Data files: CSV with or without a header row (the target is the last column "
               "unless --target); NPY, one 2-D numeric array (last column = target unless "
               "--target gives an index); NPZ with arrays X (n, d) and y (n,) or (n, k). Class "
               "labels of any type (strings, integers) are mapped to 0..K-1; the label list, the "
               "feature names and the standardization are stored in the model file for "
               "'vnn predict'.")
    _data_options(t)
    _model_options(t)
    _optimization_options(t)
    _output_options(t)
    t.set_defaults(func=cmd_train)


def _data_options(t: argparse.ArgumentParser) -> None:
    """``vnn train``'s options for the data."""
    g = t.add_argument_group("data")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FILE", help="training data: a .csv, .npy or .npz file")
    src.add_argument("--dataset", choices=DATASETS,
                     help=f"a scikit-learn bundled dataset (needs {DATASETS_HINT})")
    g.add_argument("--target", metavar="COLUMN",
                   help="target column: a CSV header name or a column index (negative counts "
                        "from the end); default: the last column")
    g.add_argument("--val-fraction", type=fraction, default=0.2, metavar="F",
                   help="fraction of the samples held out for validation, drawn with --seed; "
                        "0 disables (default: %(default)s)")
    g.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                   help="z-score the features with the training split's mean and std, stored in "
                        "the model file and applied by 'vnn predict' (default: on)")
    g.add_argument("--scale-target", action=argparse.BooleanOptionalAction, default=True,
                   help="for a regression, z-score the target with the training split's mean and "
                        "std while training; the reported losses are then on that scale, while "
                        "R² and 'vnn predict' use the target's own units (default: on)")


def _model_options(t: argparse.ArgumentParser) -> None:
    """``vnn train``'s options for the network."""
    m = t.add_argument_group("model")
    m.add_argument("--hidden", type=hidden, default=[128], metavar="W1,W2,...",
                   help="hidden layer widths, e.g. 256,256; 'none' for no hidden layer "
                        "(default: 128)")
    m.add_argument("--activation", default="relu", metavar="NAME",
                   help=f"hidden activation: {', '.join(ACTIVATIONS)}, or a comma-separated list "
                        "with one per hidden layer (default: %(default)s)")
    m.add_argument("--task", choices=("auto", "classify", "regress"), default="auto",
                   help="classify (class labels) or regress (numbers); auto takes labels that "
                        "are not numbers, or at most 20 distinct whole numbers (and at most a "
                        "fifth of the samples), as classes and anything else as a regression, "
                        "and says which it chose (default: %(default)s)")
    m.add_argument("--output", choices=OUTPUTS, default="auto",
                   help="output layer; auto picks softmax for more than two classes, sigmoid "
                        "for two and identity for a regression (default: %(default)s)")
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating-point type of the parameters and the computation "
                        "(default: %(default)s)")


def _optimization_options(t: argparse.ArgumentParser) -> None:
    """``vnn train``'s options for the optimization."""
    o = t.add_argument_group("optimization")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                   help="update rule: SGD (Eqn 15), momentum (Eqn 16) or Adam "
                        "(default: %(default)s)")
    o.add_argument("--lr", type=lr, default=1e-3, help="learning rate > 0 (default: %(default)s)")
    o.add_argument("--momentum", type=beta, default=0.9, metavar="BETA",
                   help="β of --optimizer momentum (default: %(default)s)")
    o.add_argument("--epochs", type=int_at_least(1, "number of epochs"), default=20, metavar="N",
                   help="passes over the training data (default: %(default)s)")
    o.add_argument("--batch-size", type=int_at_least(1, "batch size"), default=128, metavar="N",
                   help="samples per mini-batch (default: %(default)s)")
    o.add_argument("--l2", type=l2, default=0.0, metavar="LAMBDA",
                   help="L2 penalty λ on the weights, >= 0 (default: %(default)s)")
    o.add_argument("--seed", type=int_at_least(0, "seed"), default=0,
                   help="seeds the weights, the batch order and the validation split "
                        "(default: %(default)s)")


def _output_options(t: argparse.ArgumentParser) -> None:
    """``vnn train``'s options for the device and the outputs."""
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


def _add_predict(sub: Any) -> None:
    """``vnn predict`` and its options."""
    p = sub.add_parser(
        "predict", help="predict with a trained model file", formatter_class=Formatter,
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
    _add_model_device(p)
    p.set_defaults(func=cmd_predict)


def _add_model_device(p: Any) -> None:
    """Where a loaded model runs: ``--device``, ``--backend``, ``--dtype``."""
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--backend", choices=BACKEND_NAMES, default=None,
                   help="array library (default: numpy for cpu, cupy for cuda)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="compute in this dtype (default: the model file's)")


def _add_evaluate(sub: Any) -> None:
    """``vnn evaluate`` and its options."""
    e = sub.add_parser(
        "evaluate", help="score a trained model file on labelled data", formatter_class=Formatter,
        description="Load a model written by 'vnn train --out' and score it on a data file that "
                    "holds the target too: the loss, the accuracy and the confusion counts for "
                    "a classifier; half the squared error and R² for a regression.",
        epilog="The data file is read as 'vnn train' reads it: the target is the last column "
               "unless --target names it (NPZ: arrays X and y).")
    e.add_argument("--model", required=True, metavar="FILE", help="a model file (.safetensors)")
    e.add_argument("--data", required=True, metavar="FILE",
                   help="features and target: .csv, .npy or .npz")
    e.add_argument("--target", metavar="COLUMN",
                   help="the target column (name or 0-based index; default: the last)")
    _add_model_device(e)
    e.set_defaults(func=cmd_evaluate)


def _add_info(sub: Any) -> None:
    """``vnn info``."""
    i = sub.add_parser(
        "info", help="show the version and which array libraries and devices are available",
        formatter_class=Formatter,
        description="Print the vnn version and, for each backend (numpy, cupy, torch, "
                    "array_api_strict), whether it is installed, its version and the devices "
                    "vnn can use with it.")
    i.set_defaults(func=cmd_info)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vnn`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
        return status
    except BrokenPipeError:  # `vnn predict ... | head`: the reader is gone; quiet, as Unix tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's own flush has nowhere to fail
        return 141  # 128 + SIGPIPE, what a shell reports for a tool its pipe stopped
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug() and not isinstance(exc, UsageError):
            raise
        message = error_message(exc)
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)
    return 2
