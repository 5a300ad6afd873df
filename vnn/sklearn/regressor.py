"""``MLPRegressor``: scikit-learn's multilayer perceptron regressor, trained by vnn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import (
    check_array,
    column_or_1d,
)

from vnn import backends
from vnn.network import MLP
from vnn.sklearn.base import _BaseMLP
from vnn.sklearn.common import _device_backend

Array = Any


class MLPRegressor(RegressorMixin, _BaseMLP):
    """scikit-learn's ``MLPRegressor`` on vnn's backprop; see the module docstring."""

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: Any = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Any = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, max_fun: int = 15000,
                 device: str = "cpu", dtype: str | None = None) -> None:
        self._set(locals())

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Train on (X, y) for up to ``max_iter`` epochs (Algorithm 1.9), or ``max_iter``
        iterations of lbfgs; returns self."""
        return self._fit(X, y, sample_weight, incremental=False)  # type: ignore[no-any-return]

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)  # type: ignore[no-any-return]

    def _targets(self, y: Any, n: int, incremental: bool) -> Any:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None.")
        be = _device_backend(y)
        if be is None:
            y = check_array(y, ensure_2d=False, dtype=(np.float64, np.float32),
                            input_name="y")
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y, warn=True)
        if int(y.shape[0]) != n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"[{n}, {int(y.shape[0])}]")
        if self.loss == "poisson" and n:
            low = float(backends.to_numpy(y.min()) if be is None else
                        be.to_numpy(be.xp.min(y)))
            if not low >= 0:
                raise ValueError(f"loss='poisson' needs y >= 0 (counts or rates; the mean is "
                                 f"predicted as exp(z) > 0); got min(y) = {low:g}")
        return y if y.ndim == 2 else (y.reshape(-1, 1) if be is None else
                                      be.xp.reshape(y, (-1, 1)))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = self.loss == "poisson"  # as scikit-learn's GLMs say
        return tags

    def _output(self) -> str:
        """φ(L): the identity for squared error, exp (the log link) for the Poisson loss."""
        return "exp" if self.loss == "poisson" else "identity"

    def _score_on(self, net: MLP, A: Any, Y: Any, V: Any) -> float:
        """R² on the validation set; NaN when a prediction is not finite (scikit-learn's
        ``_score_with_function``), which early stopping records and goes on with."""
        pred = backends.to_numpy(net.propagate(A)[1][-1])
        if not np.isfinite(pred).all():
            return float("nan")
        w = None if V is None else backends.to_numpy(V)
        return float(r2_score(backends.to_numpy(Y), pred, sample_weight=w))

    def predict(self, X: Any) -> Any:
        """Predicted values (n,) — or (n, n_outputs) for multi-output targets."""
        be, a = self._forward(X)
        return a[:, 0] if self.n_outputs_ == 1 else a

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R² of the predictions."""
        pred = backends.to_numpy(self.predict(X))
        y = backends.to_numpy(y) if _device_backend(y) else y
        w = backends.to_numpy(sample_weight) if _device_backend(sample_weight) else sample_weight
        return float(r2_score(y, pred, sample_weight=w))
