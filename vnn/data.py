"""Checking and converting user data (inputs X, targets y) into arrays on the model's backend.

Everything is validated before any work is done on the device: shapes, label ranges, finiteness.
Inputs are never modified.
"""

from __future__ import annotations

import math
from typing import Any

from vnn.backends import Backend

Array = Any


def _scalar(be: Backend, x: Array) -> float:
    return float(be.to_numpy(x))


#: the largest finite float32, about 3.4e38
FLOAT32_MAX = 3.4028234663852886e38


def _check_finite(be: Backend, A: Array, name: str, given: Any = None) -> None:
    """``A`` (``given`` converted to the model's dtype) holds only finite numbers; when it does
    not but ``given`` did, the conversion overflowed float32 and the message says so."""
    xp = be.xp
    if not A.shape[0] or _scalar(be, xp.astype(xp.all(xp.isfinite(A)), A.dtype)):
        return
    if given is not None and A.dtype == xp.float32:
        with be.errstate():
            raw = be.accept(given, name)
        if xp.isdtype(raw.dtype, "real floating") and raw.dtype != xp.float32 and _scalar(
                be, xp.astype(xp.all(xp.isfinite(raw)), raw.dtype)):
            peak = _scalar(be, xp.max(xp.abs(raw)))
            raise ValueError(f"{name} has values up to {peak:.3g} in magnitude, which overflow "
                             f"float32 (largest finite value about {FLOAT32_MAX:.2g}); expected "
                             "values float32 can hold: rescale them or use dtype='float64'")
    where = ""
    if A.ndim == 2:  # the first bad entry, read once (this is the error path)
        bad = be.to_numpy(xp.logical_not(xp.isfinite(A)))
        row, col = (int(i[0]) for i in bad.nonzero())
        where = f" (first at row {row}, column {col})"
    raise ValueError(f"{name} contains NaN or infinite values{where}; expected finite numbers")


def inputs(be: Backend, X: Any, m0: int, dtype: str, name: str = "X") -> Array:
    """``X`` as an (n, m_0) float array on the model's device (a^(0) of Eqn 1, one row a sample)."""
    with be.errstate():  # a float32 overflow is reported below, by name
        A = be.accept(X, name, dtype)
    if A.ndim != 2:
        raise ValueError(f"{name} has shape {tuple(A.shape)}; expected 2 dimensions "
                         f"(n_samples, {m0})")
    if A.shape[1] != m0:
        raise ValueError(f"{name} has {A.shape[1]} features (shape {tuple(A.shape)}) but the "
                         f"network expects m_0 = {m0}")
    if A.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(A.shape)}); expected at least one sample")
    _check_finite(be, A, name, X)
    return A


def targets(be: Backend, y: Any, n: int, m_L: int, output: str, dtype: str,
            name: str = "y") -> Array:
    """Targets as an (n, m_L) float array: one-hot rows for softmax labels (§1.2), 0/1 for
    sigmoid, >= 0 for exp."""
    xp = be.xp
    Y = be.accept(y, name)
    if Y.ndim not in (1, 2) or Y.shape[0] != n:
        raise ValueError(f"{name} has shape {tuple(Y.shape)}; expected ({n},) or ({n}, {m_L}) "
                         f"to match the {n} samples of X")
    if Y.ndim == 2 and Y.shape[1] != m_L:
        raise ValueError(f"{name} has {Y.shape[1]} columns (shape {tuple(Y.shape)}) but the "
                         f"network has m_L = {m_L} outputs")
    if Y.dtype == xp.bool:
        Y = xp.astype(Y, xp.int64)
    is_int = xp.isdtype(Y.dtype, "integral")
    if output == "softmax" and Y.ndim == 1:
        if not is_int:
            whole = bool(_scalar(be, xp.astype(xp.all(Y == xp.round(Y)), Y.dtype)))
            hint = (f"; they are whole numbers: pass {name}.astype(int)" if whole else "")
            raise ValueError(f"{name} holds float values (dtype {Y.dtype}) but softmax needs "
                             f"integer class labels 0..{m_L - 1} or one-hot rows of shape "
                             f"({n}, {m_L}){hint}")
        lo, hi = _scalar(be, xp.min(Y)), _scalar(be, xp.max(Y))
        if lo < 0 or hi > m_L - 1:
            raise ValueError(f"{name} has labels in [{lo:g}, {hi:g}] but the network has {m_L} "
                             f"outputs (expected 0..{m_L - 1})")
        classes = xp.arange(m_L, dtype=Y.dtype, device=be.device)
        return xp.astype(xp.reshape(Y, (n, 1)) == xp.reshape(classes, (1, m_L)), be.dtype(dtype))
    if Y.ndim == 1:
        if m_L != 1:
            hint = (f"; for integer labels 0..{m_L - 1} (classification) make the network with "
                    f"output=\"softmax\"" if is_int and output == "identity" else "")
            raise ValueError(f"{name} has shape {tuple(Y.shape)} but the network has m_L = {m_L} "
                             f"outputs; expected shape ({n}, {m_L}){hint}")
        Y = xp.reshape(Y, (n, 1))
    given = Y
    with be.errstate():
        Y = xp.astype(Y, be.dtype(dtype))
    _check_finite(be, Y, name, given)
    if output == "sigmoid":
        bad = xp.any((Y != 0.0) & (Y != 1.0))
        if _scalar(be, xp.astype(bad, Y.dtype)):
            raise ValueError(f"{name} has values other than 0 and 1; a sigmoid output "
                             "(binary cross-entropy, Eqn 5) expects targets in {0, 1}")
    if output == "softmax":
        sums = xp.sum(Y, axis=1)
        err = _scalar(be, xp.max(xp.abs(sums - 1.0)))
        neg = _scalar(be, xp.min(Y))
        if err > 1e-3 or neg < 0 or not math.isfinite(err):
            raise ValueError(f"{name} rows must be one-hot (or probabilities) summing to 1 with "
                             f"no negative entries; got row sums off by up to {err:g}, min {neg:g}")
    if output == "exp":
        neg = _scalar(be, xp.min(Y))
        if neg < 0:
            raise ValueError(f"{name} has negative values (min {neg:g}); an exp output (the "
                             "Poisson loss's log link) predicts a mean e^z > 0 and expects "
                             "targets >= 0")
    return Y


def sample_weights(be: Backend, w: Any, n: int, dtype: str, name: str = "sample_weight") -> Array:
    """Per-sample weights as an (n,) float array: finite, >= 0, not all zero."""
    xp = be.xp
    with be.errstate():
        V = be.accept(w, name, dtype)
    if V.ndim != 1 or V.shape[0] != n:
        raise ValueError(f"{name} has shape {tuple(V.shape)}; expected ({n},), one weight per "
                         "sample")
    _check_finite(be, V, name, w)
    lo, total = _scalar(be, xp.min(V)), _scalar(be, xp.sum(V))
    if lo < 0 or total <= 0:
        raise ValueError(f"{name} must be >= 0 with a positive sum; got min {lo:g}, sum {total:g}")
    return V
