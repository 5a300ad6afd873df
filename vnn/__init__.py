"""vanilla-nn: feedforward networks trained exactly as the derivation writes them.

The math (Eqns 1-16 and Algorithm 1.9) is written once against the Python Array API standard and
runs on NumPy, CuPy (``device="cuda"``), PyTorch and array-api-strict.
"""

from __future__ import annotations

from typing import Any as _Any

from vnn import _checkout  # noqa: F401 - first: vnn.backends in an uninstalled checkout
from vnn.gradcheck import check_gradients, numerical_gradients
from vnn.io import load, save
from vnn.math.optimizers import SGD, Adam, Momentum, Optimizer
from vnn.memory import ModelTooLargeError
from vnn.network import MLP
from vnn.train import DivergenceError, History, NothingToTrainWarning
from vnn.train import fit as _train_fit
from vnn.train.lbfgs import LBFGS

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "DivergenceError",
    "History",
    "LBFGS",
    "ModelTooLargeError",
    "Momentum",
    "NothingToTrainWarning",
    "Optimizer",
    "__version__",
    "check_gradients",
    "load",
    "numerical_gradients",
    "save",
    "set_tf32",
    "to_numpy",
]


def set_tf32(enabled: bool) -> None:
    """Allow TF32 tensor cores in float32 matrix products on NVIDIA GPUs (off by default, as in
    CuPy and PyTorch; until this is called, CuPy's ``CUPY_TF32`` and torch's ``allow_tf32`` are
    left as the user set them).

    Eqns (1), (13) and (14) then round their inputs to 10 mantissa bits: several times faster on
    large layers, with about 1e-3 relative error in each product instead of float32's 1e-7.
    CuPy (``device="cuda"``) and PyTorch on CUDA follow this switch; CPUs and float64 do not.
    """
    from vnn import backends

    backends.set_tf32(enabled)


def to_numpy(array: _Any) -> _Any:
    """Copy an array of any supported library (NumPy, CuPy, torch, array_api_strict) to NumPy."""
    from vnn import backends

    return backends.to_numpy(array)


# help(net.fit) shows the whole description of training, which is written once, in vnn.train.fit
MLP.fit.__doc__ = _train_fit.__doc__
del annotations  # the __future__ feature, not part of the API
