"""What the classifier and the regressor share: parameters, validation, the model, the forward.
"""

from __future__ import annotations

import copy
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import (
    check_is_fitted,
    validate_data,
)

from vnn import backends
from vnn.network import MLP
from vnn.sklearn.common import ACTIVATIONS, _device_backend
from vnn.sklearn.training import Training

Array = Any



class _BaseMLP(Training, BaseEstimator):
    """What the classifier and the regressor share: validation, the training loop, the forward."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "dtype": [None, StrOptions({"float32", "float64"})],
    }

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _set(self, params: dict[str, Any]) -> None:
        """Store the constructor's arguments as they are (scikit-learn's convention)."""
        for key, value in params.items():
            if key not in ("self", "__class__"):
                setattr(self, key, value)

    # -- data -------------------------------------------------------------------------------------
    def _check_solver(self) -> bool:
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _validate_X(self, X: Any, reset: bool) -> tuple[backends.Backend, Any]:
        """X checked as scikit-learn checks it; device arrays stay where they are."""
        be = _device_backend(X)
        if be is None:
            X = validate_data(self, X, accept_sparse=["csr", "csc"],
                              dtype=(np.float64, np.float32), reset=reset)
            if hasattr(X, "toarray"):
                X = X.toarray()
            return backends.resolve(self.device), X
        if getattr(X, "ndim", 0) != 2:
            raise ValueError(f"X has shape {tuple(X.shape)}; expected a 2-d array "
                             "(n_samples, n_features)")
        xp = be.xp
        with be.activate():  # one read of a 0-d flag, as scikit-learn checks NumPy input
            finite = bool(be.to_numpy(xp.all(xp.isfinite(X))))
        if not finite:
            raise ValueError(f"Input X contains NaN or infinity ({type(X).__module__} array); "
                             "expected finite values")
        if reset:
            self.n_features_in_ = int(X.shape[1])
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        return be, X

    def _dtype_for(self, X: Any) -> str:
        if self.dtype is not None:
            return str(self.dtype)
        name = str(getattr(X.dtype, "name", X.dtype)).replace("torch.", "")
        return "float32" if name == "float32" else "float64"

    # -- parameters ----------------------------------------------------------------------------
    def _hidden(self) -> list[int]:
        h = self.hidden_layer_sizes
        sizes = list(h) if hasattr(h, "__iter__") else [h]
        if any(int(s) <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _init_coef(self, rs: np.random.RandomState, fan_in: int, fan_out: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """scikit-learn's Glorot-uniform draw, in the same order from the same generator."""
        factor = 2.0 if self.activation == "logistic" else 6.0
        bound = np.sqrt(factor / (fan_in + fan_out))
        coef = rs.uniform(-bound, bound, (fan_in, fan_out))
        intercept = rs.uniform(-bound, bound, fan_out)
        return coef, intercept

    def _network(self, be: backends.Backend, output: str, dtype: str) -> MLP:
        """The fitted parameters as a model on ``be`` (no initial weights drawn)."""
        return MLP.from_parameters([self._as(be, c, dtype).T for c in self.coefs_],
                                   [self._as(be, b, dtype) for b in self.intercepts_],
                                   activation=ACTIVATIONS[self.activation], output=output,
                                   device=be.device_name, backend=be.name, dtype=dtype, seed=0)

    @staticmethod
    def _as(be: backends.Backend, a: Any, dtype: str) -> Any:
        """``a`` on backend ``be`` (moved through the host when it lives elsewhere)."""
        if _device_backend(a) != be and not (be.name == "numpy" and isinstance(a, np.ndarray)):
            a = backends.to_numpy(a)
        return be.accept(a, "parameter", dtype)

    def _store(self, net: MLP) -> None:
        xp = net.xp
        self.coefs_ = [xp.asarray(xp.permute_dims(W, (1, 0)), copy=True) for W in net.weights]
        self.intercepts_ = [xp.asarray(b, copy=True) for b in net.biases]

    # -- prediction ----------------------------------------------------------------------------
    def _forward(self, X: Any, logits: bool = False) -> tuple[backends.Backend, Any]:
        """a(L) (or z(L)) for X, Eqns (1)-(2), on X's backend."""
        check_is_fitted(self, "coefs_")
        be, X = self._validate_X(X, reset=False)
        dtype = self._dtype
        with be.activate():
            A = be.accept(X, "X", dtype)
            if A.shape[0] == 0:
                raise ValueError(f"X is empty (shape {tuple(A.shape)}); expected at least one "
                                 "sample")
            net = self._network(be, self._output(), dtype)
            Zs, As = net.propagate(A)
        return be, (Zs[-1] if logits else As[-1])

    def _score_on(self, net: MLP, A: Any, Y: Any, V: Any) -> float:
        raise NotImplementedError

    def _output(self) -> str:
        raise NotImplementedError

    def _stratify(self) -> bool:
        return False

    def _targets(self, y: Any, n: int, incremental: bool) -> Any:
        raise NotImplementedError

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write the fitted estimator to a safetensors model file; see :func:`vnn.sklearn.save`."""
        from vnn.sklearn.files import save

        save(self, path)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("coefs_", "intercepts_"):  # device arrays pickle as NumPy
            if key in state:
                state[key] = [backends.to_numpy(a) for a in state[key]]
        opt = state.get("_optimizer")
        if opt is not None:  # its state (velocities, moments) pickles as NumPy too
            opt = copy.copy(opt)
            opt.state = [[backends.to_numpy(a) for a in kind] for kind in opt.state]
            state["_optimizer"] = opt
        state.pop("_best", None)
        return state


