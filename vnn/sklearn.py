"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` with vnn's backprop, on any device.

Same constructor parameters, defaults and meaning as ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor`` (``solver="lbfgs"`` raises ``NotImplementedError``), plus ``device`` ("cpu",
"cuda", "cuda:N") and ``dtype``. Where scikit-learn's conventions differ from the derivation the
estimators follow scikit-learn, so that results are comparable:

- **L2.** scikit-learn's ``alpha`` is divided by the number of samples in the batch (by the sum of
  the batch's sample weights when there are weights): the λ of Eqn (3) for a batch B is
  ``alpha / |B|``. Biases are not regularised, as in Eqn (3).
- **Momentum.** ``solver="sgd"`` is scikit-learn's heavy-ball form, v ← μv − η∇, θ ← θ + v (or
  Nesterov's, θ ← θ + μv − η∇), not the exponential average of Eqn (16). ``learning_rate``
  ("constant", "invscaling", "adaptive") schedules η between epochs as scikit-learn does.
- **Adam.** scikit-learn's form, θ ← θ − η √(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε) (ε outside the bias
  correction).
- **Initialisation.** Glorot-uniform weights and biases drawn from ``random_state`` exactly as
  scikit-learn draws them (factor 2 for "logistic", 6 otherwise), instead of §1.7's He/Glorot.
- **Loss.** Multiclass: softmax + cross-entropy (Eqns 6, 12); binary and multilabel: sigmoid +
  binary cross-entropy summed over outputs (Eqns 5, 11); regression: identity + squared error
  (Eqns 4, 10). ``loss_`` reports scikit-learn's squared error, which is averaged over the outputs
  as well; the gradients are the same (scikit-learn's gradient is that of Eqn 4).

Data: NumPy-like input (arrays, lists, SciPy sparse matrices, which are densified) is validated by
scikit-learn's own helpers and trained on ``device``. CuPy, PyTorch and array-api-strict arrays
are used where they are: everything follows X, so the fitted ``coefs_`` and ``intercepts_`` and
the predictions live on X's library and device (string class labels come back as NumPy).

``vnn.sklearn.save(estimator, path)`` / ``vnn.sklearn.load(path)`` write and read a fitted
estimator as a safetensors model file (no pickle).
"""

from __future__ import annotations

import copy
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils import shuffle as sk_shuffle
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from vnn import backends, memory
from vnn.math import activations, losses
from vnn.math.optimizers import Adam, Momentum, Optimizer
from vnn.network import MLP
from vnn.step import portable as backprop
from vnn.train import Trainer, positive_weights, weighted_batches

Array = Any

#: scikit-learn's activation names -> the derivation's φ
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: vnn output φ(L) -> scikit-learn's ``out_activation_``
OUT_ACTIVATION = {"softmax": "softmax", "sigmoid": "logistic", "identity": "identity"}


# -- scikit-learn's optimizers: vnn's Momentum and Adam in scikit-learn's forms, plus its schedules --
class SklearnSGD(Momentum):
    """scikit-learn's SGD: heavy-ball or Nesterov momentum (v ← μv − η∇ ; θ ← θ + v, Nesterov:
    θ ← θ + μv − η∇; :class:`vnn.Momentum` keeps −v), with scikit-learn's learning-rate
    schedules between epochs."""

    def __init__(self, lr: float, schedule: str = "constant", momentum: float = 0.9,
                 nesterov: bool = True, power_t: float = 0.5) -> None:
        Optimizer.__init__(self, lr)
        self.beta, self.form = momentum, "nesterov" if nesterov else "heavy_ball"
        self.lr_init, self.schedule, self.momentum = self.lr, schedule, momentum
        self.nesterov, self.power_t = nesterov, power_t

    def iteration_ends(self, samples_seen: int) -> None:
        if self.schedule == "invscaling":
            self.lr = self.lr_init / (samples_seen + 1) ** self.power_t

    def trigger_stopping(self, msg: str, verbose: bool) -> bool:
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.lr <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.lr /= 5.0
        if verbose:
            print(msg + f" Setting learning rate to {self.lr:f}")
        return False


class SklearnAdam(Adam):
    """scikit-learn's Adam: θ ← θ − η √(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε)."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        Optimizer.__init__(self, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.eps_after_correction = False

    def iteration_ends(self, samples_seen: int) -> None:
        pass

    def trigger_stopping(self, msg: str, verbose: bool) -> bool:
        if verbose:
            print(msg + " Stopping.")
        return True


def _device_backend(X: Any) -> backends.Backend | None:
    """The backend of a CuPy / torch / array-api-strict array, None for NumPy-like data."""
    return backends.backend_of(X)


class _BaseMLP(BaseEstimator):
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

    # -- training ------------------------------------------------------------------------------
    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False) -> Any:
        self._validate_params()
        if self.solver == "lbfgs":
            raise NotImplementedError("solver='lbfgs' is not available in vnn.sklearn; use "
                                      "solver='adam' (default) or solver='sgd'")
        hidden = self._hidden()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        be, X = self._validate_X(X, reset=first_pass)
        Y = self._targets(y, X.shape[0], incremental)
        n, n_features = int(X.shape[0]), int(X.shape[1])
        if sample_weight is not None:
            sample_weight = _check_sample_weight(backends.to_numpy(sample_weight)
                                                 if _device_backend(sample_weight) else sample_weight,
                                                 np.empty((n, 0)))
        dtype: str = self._dtype_for(X) if first_pass else self._dtype
        self.n_outputs_ = int(Y.shape[1])
        sizes = [n_features, *hidden, self.n_outputs_]
        rs = check_random_state(self.random_state)
        output = self._output()
        if first_pass:
            self._dtype: str = dtype
            self.n_iter_, self.t_ = 0, 0
            self.n_layers_ = len(sizes)
            self.out_activation_ = OUT_ACTIVATION[output]
            memory.check_model(be, sizes, dtype, f"hidden_layer_sizes={self.hidden_layer_sizes!r} "
                               f"(layer sizes {sizes})")  # before drawing
            self.coefs_, self.intercepts_ = [], []
            for a, b in zip(sizes, sizes[1:]):  # one float64 draw alive at a time
                coef, intercept = self._init_coef(rs, a, b)
                self.coefs_.append(coef.astype(dtype, copy=False))
                self.intercepts_.append(intercept.astype(dtype, copy=False))
                del coef, intercept
            self.loss_curve_: list[float] = []
            self.validation_loss_curve_: list[float] = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_: list[float] | None = []
                self.best_validation_score_: float | None = -np.inf
                self.best_loss_: float | None = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
        elif [int(c.shape[0]) for c in self.coefs_] + [int(self.coefs_[-1].shape[1])] != sizes:
            raise ValueError(f"the data needs layer sizes {sizes} but the fitted network has "
                             f"{[int(c.shape[0]) for c in self.coefs_] + [int(self.coefs_[-1].shape[1])]}")
        with be.activate():
            net = self._network(be, output, dtype)
            if not incremental or not hasattr(self, "_optimizer"):
                self._optimizer = self._make_optimizer()
            opt = self._optimizer  # state kept from an earlier call goes where the model is
            opt.state = [[self._as(be, a, dtype) for a in kind] for kind in opt.state]
            if self.early_stopping and incremental:
                raise ValueError("partial_fit does not support early_stopping=True")
            self._train(net, be, X, Y, sample_weight, rs, incremental, dtype)
            self._store(net)
        if not all(float(backends.to_numpy(net.xp.all(net.xp.isfinite(p)))) for p in
                   [*net.weights, *net.biases]):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _make_optimizer(self) -> Optimizer:
        if self.solver == "sgd":
            return SklearnSGD(self.learning_rate_init, self.learning_rate, self.momentum,
                              self.nesterovs_momentum, self.power_t)
        return SklearnAdam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _train(self, net: MLP, be: backends.Backend, X: Any, Y: np.ndarray | Any,
               sample_weight: np.ndarray | None, rs: np.random.RandomState, incremental: bool,
               dtype: str) -> None:
        xp = net.xp
        n = int(X.shape[0])
        idx_train, idx_val = np.arange(n), None
        if self.early_stopping:
            stratify = backends.to_numpy(Y) if (self._stratify() and self.n_outputs_ == 1) else None
            idx_train, idx_val = train_test_split(np.arange(n), random_state=rs,
                                                  test_size=self.validation_fraction,
                                                  stratify=stratify)
            if idx_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
        n_train = int(idx_train.shape[0])
        if self.batch_size == "auto":
            batch_size = min(200, n_train)
        else:
            if self.batch_size > n_train:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped", stacklevel=3)
            batch_size = int(np.clip(self.batch_size, 1, n_train))
        opt = self._optimizer  # room for training's buffers, checked before any data is moved
        memory.check_fit(net, opt.n_state, n_train, batch_size, float(self.alpha),
                         memory.data_bytes(net, X, Y, sample_weight))
        A_all, Y_all, V_all = net.prepare(X, Y, sample_weight)

        def rows(A: Any, idx: np.ndarray | None) -> Any:
            return A if idx is None or A is None else xp.take(A, be.from_host(idx), axis=0)

        split = self.early_stopping
        A, Yt, V = (rows(A_all, idx_train), rows(Y_all, idx_train),
                    rows(V_all, idx_train)) if split else (A_all, Y_all, V_all)
        val = (rows(A_all, idx_val), rows(Y_all, idx_val), rows(V_all, idx_val),
               backends.to_numpy(Y)[idx_val]) if split else None
        trainer = Trainer(net, opt, float(self.alpha), l2_per_sample=True)
        k_avg = self.n_outputs_ if output_is_regression(net) else 1
        self._epochs(net, be, trainer, A, Yt, V, val, rs, batch_size, incremental, k_avg)
        if self.early_stopping and self._best is not None:
            net.weights, net.biases = self._best
        self._best = None

    def _epochs(self, net: MLP, be: backends.Backend, trainer: Trainer, A: Any, Yt: Any, V: Any,
                val: Any, rs: np.random.RandomState, batch_size: int, incremental: bool,
                k_avg: int) -> None:
        """scikit-learn's epoch loop: shuffle, mini-batches, loss curve, stopping rules."""
        opt = self._optimizer
        n_train = int(A.shape[0])
        sample_idx = np.arange(n_train)
        positive = positive_weights(be, V)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = sk_shuffle(sample_idx, random_state=rs)
                order = be.from_host(sample_idx) if self.shuffle else None
                total: Any = 0.0
                batches = list(gen_batches(n_train, batch_size))
                if positive is not None:  # a batch whose weights sum to 0 contributes nothing
                    keep = weighted_batches(positive, sample_idx, batch_size)
                    batches = [b for b, k in zip(batches, keep) if k]
                n_seen = sum(b.stop - b.start for b in batches)
                for sl in batches:
                    r = sl if order is None else order[sl]
                    size = sl.stop - sl.start
                    if k_avg > 1:  # scikit-learn averages squared error over the outputs too
                        reg = self._penalty(net, V, r, size)
                        J = trainer(A, Yt, r, V)
                        J = (J - reg) / k_avg + reg
                    else:
                        J = trainer(A, Yt, r, V)
                    total = total + J * size
                self.n_iter_ += 1
                self.loss_ = float(backends.to_numpy(total)) / n_seen
                self.t_ += n_seen
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(net, val, k_avg)
                opt.iteration_ends(self.t_)  # type: ignore[attr-defined]
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if self.early_stopping else "Training loss"
                    msg = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if opt.trigger_stopping(msg, self.verbose):  # type: ignore[attr-defined]
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=4)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)

    def _penalty(self, net: MLP, V: Any, r: Any, size: int) -> Any:
        """λ_B/2 Σ ‖W‖² of the coming step (scikit-learn's λ_B = alpha / Σ_B v)."""
        xp = net.xp
        if not self.alpha:
            return 0.0
        denom: Any = size
        if V is not None:
            denom = xp.sum(V[r] if isinstance(r, slice) else xp.take(V, r, axis=0))
        return backprop.l2_penalty(xp, net.theta[0::2], 1.0) * (self.alpha / denom)  # Eqn (3)

    def _update_no_improvement_count(self, net: MLP, val: Any, k_avg: int) -> None:
        if val is not None:
            A, Y, V, Y_host = val
            score = self._score_on(net, A, Y_host, V)
            assert self.validation_scores_ is not None and self.best_validation_score_ is not None
            self.validation_scores_.append(score)
            self.validation_loss_curve_.append(self._loss_on(net, A, Y, V, k_avg))
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                xp = net.xp
                self._best = ([xp.asarray(W, copy=True) for W in net.weights],
                              [xp.asarray(b, copy=True) for b in net.biases])
        else:
            assert self.best_loss_ is not None
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    _best: Any = None

    def _loss_on(self, net: MLP, A: Any, Y: Any, V: Any, k_avg: int) -> float:
        """scikit-learn's loss (with its L2 term, alpha / Σ v) on held-out data."""
        xp = net.xp
        data = net.risk(A, Y, 0.0, V)
        denom = A.shape[0] if V is None else xp.sum(V)
        reg = (backprop.l2_penalty(xp, net.theta[0::2], 1.0) * (self.alpha / denom)
               if self.alpha else 0.0)
        return float(backends.to_numpy(data / k_avg + reg))

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


def output_is_regression(net: MLP) -> bool:
    return net.output == "identity"


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """scikit-learn's ``MLPClassifier`` on vnn's backprop; see the module docstring."""

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: Any = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int = 10, max_fun: int = 15000, device: str = "cpu",
                 dtype: str | None = None) -> None:
        self._set(locals())

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Train on (X, y) for up to ``max_iter`` epochs (Algorithm 1.9); returns self."""
        return self._fit(X, y, sample_weight, incremental=False)  # type: ignore[no-any-return]

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None,
                    classes: Any = None) -> MLPClassifier:
        """One epoch over (X, y); ``classes`` is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            y_host = backends.to_numpy(y) if _device_backend(y) else y
            if type_of_target(y_host).startswith("multilabel"):
                self._label_binarizer.fit(y_host)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)  # type: ignore[no-any-return]

    def _targets(self, y: Any, n: int, incremental: bool) -> np.ndarray:
        """Labels of any type -> the binarised targets (n, n_outputs) the network trains on."""
        if _device_backend(y) is not None:
            y = backends.to_numpy(y)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None.")
        y = check_array(y, accept_sparse="csr", ensure_2d=False, dtype=None, input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if int(y.shape[0]) != n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"[{n}, {int(y.shape[0])}]")
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes "
                                     f"as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        Y = self._label_binarizer.transform(y)
        return np.asarray(Y.toarray() if hasattr(Y, "toarray") else Y, dtype=np.float64)

    def _output(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "sigmoid"

    def _stratify(self) -> bool:
        return True

    def _score_on(self, net: MLP, A: Any, Y: np.ndarray, V: Any) -> float:
        p = backends.to_numpy(net.propagate(A)[1][-1])
        w = None if V is None else backends.to_numpy(V)
        return float(accuracy_score(self._labels(Y), self._labels(p), sample_weight=w))

    def _labels(self, p: np.ndarray) -> np.ndarray:
        """Probabilities (or binarised targets) -> the original labels."""
        if self.n_outputs_ == 1:
            p = p.ravel()
        return self._label_binarizer.inverse_transform(p)

    def predict(self, X: Any) -> Any:
        """Class labels (n,) — or an indicator matrix (n, k) for multilabel targets."""
        be, p = self._forward(X)
        xp = be.xp
        if be.name == "numpy" or self.classes_.dtype.kind not in "iub" or \
                self._label_binarizer.y_type_.startswith("multilabel"):
            return self._labels(be.to_numpy(p))
        with be.activate():
            classes = be.from_host(self.classes_)
            binary = self.n_outputs_ == 1
            idx = xp.astype(p[:, 0] > 0.5, xp.int64) if binary else xp.argmax(p, axis=1)
            return xp.take(classes, idx, axis=0)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities (n, n_classes) in the order of ``classes_``."""
        be, p = self._forward(X)
        if self.n_outputs_ == 1:
            xp = be.xp
            with be.activate():
                return xp.concat([1.0 - p, p], axis=1)
        return p

    def predict_log_proba(self, X: Any) -> Any:
        """log of :meth:`predict_proba`, computed from the logits (finite where p underflows)."""
        be, z = self._forward(X, logits=True)
        xp = be.xp
        with be.activate():
            if self.out_activation_ == "softmax":
                return z - xp.reshape(activations.logsumexp(xp, z), (-1, 1))
            # log σ(z) = −softplus(−z), log(1 − σ(z)) = −softplus(z)
            if self.n_outputs_ == 1:
                return xp.concat([-losses.softplus(xp, z), -losses.softplus(xp, -z)], axis=1)
            return -losses.softplus(xp, -z)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy (subset accuracy for multilabel)."""
        pred = backends.to_numpy(self.predict(X))
        y = backends.to_numpy(y) if _device_backend(y) else y
        w = backends.to_numpy(sample_weight) if _device_backend(sample_weight) else sample_weight
        return float(accuracy_score(y, pred, sample_weight=w))


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
        """Train on (X, y) for up to ``max_iter`` epochs (Algorithm 1.9); returns self."""
        if self.loss != "squared_error":
            raise NotImplementedError(f"loss={self.loss!r} is not available in vnn.sklearn; "
                                      "use loss='squared_error'")
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
        return y if y.ndim == 2 else (y.reshape(-1, 1) if be is None else
                                      be.xp.reshape(y, (-1, 1)))

    def _output(self) -> str:
        return "identity"

    def _score_on(self, net: MLP, A: Any, Y: Any, V: Any) -> float:
        pred = backends.to_numpy(net.propagate(A)[1][-1])
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


# -- model files -------------------------------------------------------------------------------------
def save(estimator: _BaseMLP, path: Any) -> None:
    """Write a fitted ``MLPClassifier`` / ``MLPRegressor`` to ``path`` as a safetensors model file
    (``vnn.load`` reads it as a plain ``vnn.MLP``; :func:`load` as the estimator). No pickle.

    Only what :func:`load` accepts is written: parameters or fitted attributes it would refuse
    (an integer beyond 2**53, ``hidden_layer_sizes`` changed since fitting, NaN or infinite
    weights) raise ``ValueError`` and nothing is written.
    """
    import json

    from vnn import io
    from vnn import sklearn_schema as fields

    if not isinstance(estimator, _BaseMLP):
        raise TypeError(f"estimator is a {type(estimator).__name__}; expected a vnn.sklearn "
                        "MLPClassifier or MLPRegressor")
    check_is_fitted(estimator, "coefs_")
    host = backends.resolve("cpu")
    dtype = estimator._dtype
    sizes = [int(estimator.coefs_[0].shape[0])] + [int(c.shape[1]) for c in estimator.coefs_]
    net = MLP(sizes, activation=ACTIVATIONS[estimator.activation], output=estimator._output(),
              dtype=dtype, seed=0)
    net.weights = [host.to_numpy(estimator._as(host, c, dtype)).T for c in estimator.coefs_]
    net.biases = [backends.to_numpy(b) for b in estimator.intercepts_]
    for kind, arrays in (("coefs_", net.weights), ("intercepts_", net.biases)):
        for i, a in enumerate(arrays):
            if not bool(np.isfinite(a).all()):
                raise ValueError(f"cannot save this estimator: {kind}[{i}] holds NaN or infinite "
                                 "values (a model file holds finite parameters)")
    try:
        info = json.loads(json.dumps(fields.entry(estimator)))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot save this estimator: a parameter or fitted attribute is not "
                        f"JSON-able ({exc})") from None
    meta = {"sizes": net.sizes, "activation": net.activation, "output": net.output,
            "dtype": net.dtype, "extra": {"sklearn": info}}
    try:  # what is written must load again: the reader's checks, applied before writing
        fields.check(str(path), meta)
    except io.ModelFileError as exc:
        raise ValueError(f"cannot save this estimator: {exc}") from None
    io.save(net, path, extra={"sklearn": info})


def load(path: Any, *, device: str | None = None) -> _BaseMLP:
    """Read an estimator written by :func:`save`; ``device`` overrides the saved one.

    The file is opened once (its metadata and weights are one snapshot even while another process
    saves to ``path``); the network is checked by :mod:`vnn.io`, the estimator's fields by
    :mod:`vnn.sklearn_schema`. A file that is not what :func:`save` writes raises
    :class:`vnn.io.ModelFileError` (a ``ValueError``) naming the file and the field.
    """
    import os

    from vnn import io
    from vnn import sklearn_schema as fields

    name = os.fspath(path)
    ckpt = io.read_model(path)  # on the host; moved to the estimator's device once checked
    saved = fields.check(name, ckpt.metadata)
    params = dict(saved.params)
    if device is not None:
        params["device"] = device
    est = saved.cls(**params)
    try:
        be = backends.resolve(est.device)
    except (ValueError, ImportError, RuntimeError) as exc:
        if device is not None:
            raise
        raise io.ModelFileError(f"{name}: sklearn.params.device={est.device!r} cannot be used "
                                f"here ({exc}); pass device= to load it elsewhere", name,
                                "sklearn.params.device") from None
    for key, value in saved.fitted.items():
        setattr(est, key, value)
    if "feature_names_in_" in saved.fitted:
        est.feature_names_in_ = np.asarray(saved.fitted["feature_names_in_"], dtype=object)
    if saved.labels is not None:  # LabelBinarizer's fitted attributes, set without refitting
        est.classes_ = np.asarray(saved.labels.classes, dtype=saved.labels.dtype)
        binarizer = LabelBinarizer()
        binarizer.y_type_, binarizer.sparse_input_ = saved.labels.y_type, False
        binarizer.classes_ = est.classes_
        est._label_binarizer = binarizer  # type: ignore[attr-defined]
    est._no_improvement_count = 0
    with be.activate():
        xp = be.xp
        est.coefs_ = [xp.asarray(xp.permute_dims(be.from_host(W, est._dtype), (1, 0)), copy=True)
                      for W in ckpt.net.weights]
        est.intercepts_ = [be.from_host(b, est._dtype, copy=True) for b in ckpt.net.biases]
    return est
