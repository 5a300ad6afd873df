"""Checking the numbers a user passes (hyperparameters, λ, counts) and showing them in errors."""

from __future__ import annotations

import math
from decimal import Decimal
from numbers import Integral, Real


def shown(value: object) -> str:
    """``repr(value)`` for an error message, an integer too large for a float written short
    (``1.000E+400`` instead of 401 digits)."""
    if isinstance(value, Integral) and not isinstance(value, bool) and abs(int(value)) >= 10**20:
        return f"{Decimal(int(value)):.3E}"
    return repr(value)


def as_float(value: object) -> float | None:
    """A real number (Python or NumPy scalar, not a bool) as a float, ±inf when it is too large
    for one (``10**400``); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, Real):  # NumPy's bool is not a Real
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def check_number(name: str, value: object, low: float, high: float | None = None,
                 low_open: bool = True) -> float:
    """``value`` as a float if it is finite, above ``low`` (or at it, ``low_open=False``) and
    below ``high``; else a ValueError naming ``name``, the value and the range."""
    v = as_float(value)
    bad = (v is None or not math.isfinite(v) or (v <= low if low_open else v < low)
           or (high is not None and v >= high))
    if bad:
        lo = f"> {low}" if low_open else f">= {low}"
        rng = f"{lo} and < {high}" if high is not None else lo
        raise ValueError(f"{name}={shown(value)} is invalid; expected a finite number {rng}")
    return v  # type: ignore[return-value]
