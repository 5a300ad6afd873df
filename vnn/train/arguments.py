"""The arguments of ``fit``, checked before any work, and the data moved to the device once."""

from __future__ import annotations

import errno
import os
from numbers import Integral
from typing import TYPE_CHECKING, Any

from vnn import memory
from vnn.math.optimizers import Adam, Optimizer
from vnn.numbers import shown

if TYPE_CHECKING:
    from vnn.network import MLP


Array = Any

#: what fit does when the loss or a parameter becomes non-finite
ON_NONFINITE = ("raise", "stop")




def positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name}={shown(value)} is invalid; expected an integer >= {minimum}")
    return int(value)


def as_bool(name: str, value: object) -> bool:
    """``value`` as a bool: True or False (a NumPy bool too), never 0, 1 or "no"."""
    dtype = getattr(value, "dtype", None)
    if isinstance(value, bool) or (getattr(dtype, "kind", "") == "b"
                                   and getattr(value, "shape", None) == ()):
        return bool(value)
    raise TypeError(f"{name}={value!r} is not a bool; expected True or False")


def check_arguments(optimizer: Any, resume: Any, shuffle: Any, progress: Any, callback: Any,
                     on_nonfinite: Any, validation_data: Any) -> Any:
    """Check ``fit``'s arguments that need no data; returns the optimizer (Adam by default)."""
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite={on_nonfinite!r} is invalid; expected one of {ON_NONFINITE}")
    as_bool("shuffle", shuffle)
    as_bool("progress", progress)
    if resume is not None:
        check_readable("resume", resume)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback={callback!r} is not callable; expected a function "
                        "callback(epoch, history) or None")
    if validation_data is not None and (not isinstance(validation_data, (tuple, list))
                                        or len(validation_data) != 2):
        raise ValueError("validation_data must be a pair (X_val, y_val)")
    if optimizer is None and resume is None:
        optimizer = Adam()
    from vnn.train.lbfgs import LBFGS

    if optimizer is not None and not isinstance(optimizer, (Optimizer, LBFGS)):
        raise TypeError(f"optimizer={optimizer!r} is not a vnn optimizer; expected vnn.SGD, "
                        "vnn.Momentum, vnn.Adam or vnn.LBFGS")
    return optimizer


def check_readable(name: str, path: Any) -> None:
    """``path`` (the argument ``name``) names an existing regular file."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise TypeError(f"{name}={path!r} is not a file path; expected a str or os.PathLike "
                        "naming a checkpoint written by fit(checkpoint=...)") from None
    if not os.path.isfile(text):
        what = "is not a regular file" if os.path.exists(text) else "does not exist"
        raise FileNotFoundError(errno.ENOENT, f"{name}: the checkpoint file {what}", text)


def prepare_data(net: MLP, X: Any, y: Any, sample_weight: Any, validation_data: Any,
          optimizer: Any, batch_size: int | None, lam: float
          ) -> tuple[Array, Array, Array | None, tuple[Array, Array] | None]:
    """The training data on the device, once :func:`vnn.memory.check_fit` has found room for it
    and for training's buffers (resuming: Adam's two state arrays per parameter assumed)."""
    n = memory.rows(X)
    memory.check_fit(net, 2 if optimizer is None else optimizer.n_state, n,
                     min(128, n) if batch_size is None else batch_size, lam,
                     memory.data_bytes(net, X, y, sample_weight, validation_data),
                     0 if validation_data is None else memory.rows(validation_data[0]))
    A, Y, V = net.prepare(X, y, sample_weight)
    val = None
    if validation_data is not None:
        Av, Yv, _ = net.prepare(validation_data[0], validation_data[1],
                                x_name="validation_data[0]", y_name="validation_data[1]")
        val = (Av, Yv)
    return A, Y, V, val
