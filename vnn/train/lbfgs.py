"""Full-batch L-BFGS: SciPy's L-BFGS-B on the risk of Eqn (3), its gradient from backprop.

The quasi-Newton method itself (its two-loop recursion and its line search) is SciPy's
``scipy.optimize.minimize(method="L-BFGS-B")``, a well-kept implementation; this module only
hands it the function and gradient the derivation defines. SciPy works on one flat float64 vector
on the host,

    θ = [vec W(1)ᵀ, ..., vec W(L)ᵀ, b(1), ..., b(L)]

(row-major W(ℓ)ᵀ, of shape (m_{ℓ−1}, m_ℓ): scikit-learn's packing of ``coefs_`` and
``intercepts_``). Each evaluation writes θ into the model (one host-to-device copy), runs the
library's forward and backward pass over the whole data set on the model's device (Eqns 1-3 and
10-14, the portable step of :mod:`vnn.step.portable`) and reads back [∇J(θ), J(θ)] as one vector
(one device-to-host copy). On a GPU those two copies of the parameter vector are the only
synchronisation an evaluation adds to the backprop itself.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, Any, ClassVar

from vnn.numbers import as_float, shown
from vnn.step import portable as backprop

if TYPE_CHECKING:
    from vnn.network import MLP
    from vnn.train.history import History

Array = Any


@dataclass(frozen=True)
class LBFGS:
    """Full-batch L-BFGS (SciPy's L-BFGS-B) on Eqn (3), for ``MLP.fit(optimizer=vnn.LBFGS())``.

    Each iteration uses the gradient of the whole data set (Eqn 14 over all n samples) and a line
    search, so ``batch_size`` and ``shuffle`` do not apply. ``max_iter``: the most iterations
    (None: ``fit``'s ``epochs``); ``max_fun``: the most evaluations of J and ∇J (a line search
    may take several per iteration); ``tol``: stop when every component of the projected gradient
    is at most ``tol`` in absolute value (SciPy's ``gtol``). Small data sets, smooth losses and a
    few thousand to a few million parameters are where it does well.
    """

    max_iter: int | None = None
    max_fun: int = 15000
    tol: float = 1e-5
    #: arrays of state per parameter on the device (SciPy keeps its history on the host)
    n_state: ClassVar[int] = 0

    def __post_init__(self) -> None:
        for name, value in (("max_iter", self.max_iter), ("max_fun", self.max_fun)):
            if value is None and name == "max_iter":
                continue
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"LBFGS({name}={shown(value)}) is invalid; expected an integer "
                                 ">= 1" + (" or None (fit's epochs)" if name == "max_iter" else ""))
        tol = as_float(self.tol)
        if tol is None or not (0.0 <= tol < math.inf):
            raise ValueError(f"LBFGS(tol={shown(self.tol)}) is invalid; expected a finite "
                             "number >= 0")


def require_scipy() -> None:
    """SciPy is importable, or an ImportError saying how to install it (before any work)."""
    import importlib.util

    if importlib.util.find_spec("scipy") is None:
        raise ImportError("vnn.LBFGS runs SciPy's L-BFGS-B, and SciPy is not installed; "
                          "pip install scipy (or vanilla-nn[lbfgs])")


class Packing:
    """θ of the module docstring for a model's parameters: to and from the host vector."""

    def __init__(self, net: MLP) -> None:
        self.net = net
        self.shapes = [(int(W.shape[1]), int(W.shape[0])) for W in net.weights]  # W(ℓ)ᵀ
        self.size = sum(a * b for a, b in self.shapes) + sum(b for _, b in self.shapes)

    def pack(self, weights: list[Array], biases: list[Array], tail: Array | None = None) -> Any:
        """θ (or ∇J, given gradients) as a float64 host vector, in one device-to-host copy;
        ``tail`` (a 0-d array) is appended as its last entry."""
        xp = self.net.xp
        parts = [xp.reshape(xp.permute_dims(W, (1, 0)), (-1,)) for W in weights] + list(biases)
        if tail is not None:
            parts.append(xp.reshape(xp.astype(tail, parts[-1].dtype), (1,)))
        return self.net.backend.to_numpy(xp.concat(parts)).astype("float64")

    def unpack(self, theta: Any) -> list[Array]:
        """[W1, b1, ..., WL, bL] on the model's device and dtype from θ, in one host-to-device
        copy."""
        net = self.net
        xp = net.xp
        flat = net.backend.from_host(theta, dtype=net.dtype, copy=True)  # not a view of SciPy's θ
        Ws, bs, start = [], [], 0
        for a, b in self.shapes:
            Ws.append(xp.permute_dims(xp.reshape(flat[start:start + a * b], (a, b)), (1, 0)))
            start += a * b
        for _, b in self.shapes:
            bs.append(flat[start:start + b])
            start += b
        return [p for pair in zip(Ws, bs) for p in pair]


def minimize(net: MLP, A: Array, Y: Array, V: Array | None, lam: float, max_iter: int,
             max_fun: int, tol: float, *, outputs_averaged: int = 1,
             iteration: Callable[[float, Any], None] | None = None) -> Any:
    """Minimise Eqn (3) on (A, Y) with weights V over the model's parameters by L-BFGS-B; the
    model ends holding the result's θ. Returns SciPy's ``OptimizeResult``.

    ``outputs_averaged = k > 1`` reports the data term divided by k (scikit-learn's squared error
    of k outputs) while the gradient stays that of Eqn (3), as scikit-learn's lbfgs does.
    ``iteration(J, θ)`` is called after each iteration with its loss and (host) parameters.
    """
    from scipy.optimize import minimize as scipy_minimize

    packing = Packing(net)
    xp = net.xp

    def fun(theta: Any) -> tuple[float, Any]:
        net.theta = packing.unpack(theta)
        J, grads = net.gradients(A, Y, lam, V)
        if outputs_averaged != 1:
            reg = backprop.l2_penalty(xp, net.weights, lam)
            J = (J - reg) / outputs_averaged + reg
        out = packing.pack([g for g, _ in grads], [g for _, g in grads], J)
        return float(out[-1]), out[:-1]

    def callback(intermediate_result: Any) -> None:
        if iteration is not None:
            iteration(float(intermediate_result.fun), intermediate_result.x)

    theta0 = packing.pack(net.weights, net.biases)
    with net.backend.errstate():
        result = scipy_minimize(fun, theta0, method="L-BFGS-B", jac=True, callback=callback,
                                options={"maxiter": max_iter, "maxfun": max_fun, "gtol": tol})
    net.theta = packing.unpack(result.x)
    return result


def fit(net: MLP, A: Array, Y: Array, V: Array | None, val: tuple[Array, Array] | None,
        lam: float, optimizer: LBFGS, epochs: int, progress: bool,
        callback: Callable[[int, History], Any] | None, on_nonfinite: str) -> History:
    """``MLP.fit`` with :class:`LBFGS`: one history entry per iteration, as an epoch has one.

    Ctrl-C stops at once: the iteration in progress is abandoned and the model holds the
    parameters of the last finished one; a non-finite result leaves the model at the last finite
    iterate and raises or warns per ``on_nonfinite``.
    """
    from vnn.train.history import DivergenceError, History, Progress
    from vnn.train.trainer import evaluate

    max_iter = epochs if optimizer.max_iter is None else optimizer.max_iter
    history = History()
    n = int(A.shape[0])
    packing = Packing(net)
    last = {"theta": packing.pack(net.weights, net.biases), "t": time.perf_counter()}

    def iteration(J: float, theta: Any) -> None:
        if not math.isfinite(J):
            return
        last["theta"] = theta.copy()
        now = time.perf_counter()
        seconds, last["t"] = now - last["t"], now
        history.loss.append(J)
        if val is not None:
            history.val_loss.append(evaluate(net, val[0], val[1], lam))
        history.seconds.append(seconds)
        history.samples_per_second.append(n / seconds if seconds > 0 else math.inf)
        bar(history)
        if callback is not None:
            callback(history.epochs, history)

    if max_iter == 0:  # epochs=0
        return history
    bar = Progress(progress, max_iter, unit="iteration")
    try:
        result = minimize(net, A, Y, V, lam, max_iter, optimizer.max_fun, optimizer.tol,
                          iteration=iteration)
    except KeyboardInterrupt:
        net.theta = packing.unpack(last["theta"])
        history.stopped = "interrupted"
        warnings.warn(f"training interrupted after L-BFGS iteration {history.epochs}; the model "
                      "holds that iteration's parameters", RuntimeWarning, stacklevel=6)
        return history
    finally:
        bar.close()
    finite = math.isfinite(float(result.fun)) and math.isfinite(float(abs(result.x).max()))
    if not finite:
        net.theta = packing.unpack(last["theta"])
        history.stopped = "nonfinite"
        msg = (f"L-BFGS reached a non-finite loss after iteration {history.epochs}; the model "
               "holds the parameters of the last finite iterate")
        if on_nonfinite == "raise":
            raise DivergenceError(msg, history.epochs, 0)
        warnings.warn(msg, RuntimeWarning, stacklevel=6)
    return history
