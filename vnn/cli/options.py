"""Values the command line accepts: argument types, choices and their errors."""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Any, NoReturn

from vnn.cli.files import (
    UsageError,
)

PROG = "vnn"


DATASETS = ("digits", "breast_cancer", "diabetes", "iris")


ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")


OUTPUTS = ("auto", "identity", "sigmoid", "softmax")


OPTIMIZERS = ("sgd", "momentum", "adam")


BACKEND_NAMES = ("numpy", "cupy", "torch", "array_api_strict", "jax")


DATASETS_HINT = 'pip install "vanilla-nn[datasets]"'


PLOT_HINT = 'pip install "vanilla-nn[plot]"'


#: rows the summary scores at a time: its memory is their activations, not the whole set's
SCORE_ROWS = 8192


class Parser(argparse.ArgumentParser):
    """argparse, with every usage error reported as ``vnn: error: ...`` (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """One line, as every other error of the command line: no usage block before it."""
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# -- argument types -------------------------------------------------------------------------------
def hidden(text: str) -> list[int]:
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


def lr(text: str) -> float:
    return _number(text, "learning rate", low=0.0, low_open=True)


def l2(text: str) -> float:
    return _number(text, "L2 strength", low=0.0, low_open=False)


def beta(text: str) -> float:
    return _number(text, "momentum coefficient", low=0.0, low_open=False, high=1.0)


def fraction(text: str) -> float:
    return _number(text, "fraction", low=0.0, low_open=False, high=1.0)


def int_at_least(minimum: int, what: str) -> Any:
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


# -- the parser -----------------------------------------------------------------------------------
class Formatter(argparse.HelpFormatter):
    """Help text wrapped without breaking words at hyphens (package names, options)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False)


def activation_of(args: argparse.Namespace) -> str | list[str]:
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
