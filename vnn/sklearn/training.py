"""The estimators' training: scikit-learn's loop (epochs, early stopping, schedules, its loss
curve) around vnn's step.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils import shuffle as sk_shuffle
from sklearn.utils.validation import _check_sample_weight

from vnn import backends, memory
from vnn.math.optimizers import Optimizer
from vnn.network import MLP
from vnn.sklearn.common import OUT_ACTIVATION, _device_backend, averages_outputs
from vnn.sklearn.optimizers import SklearnAdam, SklearnSGD
from vnn.step import portable as backprop
from vnn.train import Trainer, lbfgs, positive_weights, weighted_batches
from vnn.train.lbfgs import LBFGS

Array = Any

#: what only the stochastic solvers (sgd, adam) record
STOCHASTIC = ("loss_curve_", "validation_loss_curve_", "best_loss_", "validation_scores_",
              "best_validation_score_")


class Training:
    """The estimators' fit (a part of ``vnn.sklearn.base._BaseMLP``): data, model, loop."""

    if TYPE_CHECKING:  # the estimator's parameters and fitted attributes (BaseMLP)
        def __getattr__(self, name: str) -> Any: ...

    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False) -> Any:
        self._validate_params()
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
            if self.solver == "lbfgs":  # scikit-learn's lbfgs has no curves, no best loss
                for key in STOCHASTIC:
                    self.__dict__.pop(key, None)
            else:
                self._start_curves()
        elif [int(c.shape[0]) for c in self.coefs_] + [int(self.coefs_[-1].shape[1])] != sizes:
            raise ValueError(f"the data needs layer sizes {sizes} but the fitted network has "
                             f"{[int(c.shape[0]) for c in self.coefs_] + [int(self.coefs_[-1].shape[1])]}")
        with be.activate():
            net = self._network(be, output, dtype)
            if self.solver == "lbfgs":
                self._fit_lbfgs(net, be, X, Y, sample_weight)
            else:
                self._fit_stochastic(net, be, X, Y, sample_weight, rs, incremental, dtype)
            self._store(net)
        if not all(float(backends.to_numpy(net.xp.all(net.xp.isfinite(p)))) for p in
                   [*net.weights, *net.biases]):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _start_curves(self) -> None:
        """The stochastic solvers' record, empty (scikit-learn's ``_initialize``)."""
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

    def _fit_stochastic(self, net: MLP, be: backends.Backend, X: Any, Y: Any,
                        sample_weight: np.ndarray | None, rs: np.random.RandomState,
                        incremental: bool, dtype: str) -> None:
        """sgd and adam: the optimizer (its state kept from an earlier partial_fit), the loop."""
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not hasattr(self, "loss_curve_"):  # warm start from an lbfgs fit
            self._start_curves()
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
        opt = self._optimizer  # state kept from an earlier call goes where the model is
        opt.state = [[self._as(be, a, dtype) for a in kind] for kind in opt.state]
        self._train(net, be, X, Y, sample_weight, rs, incremental, dtype)

    def _fit_lbfgs(self, net: MLP, be: backends.Backend, X: Any, Y: Any,
                   sample_weight: np.ndarray | None) -> None:
        """scikit-learn's lbfgs: SciPy's L-BFGS-B on the whole data set (``vnn.train.lbfgs``),
        J with L2 as alpha / (2 Σ v) Σ ‖W‖², ``maxiter=max_iter``, ``maxfun=max_fun``,
        ``gtol=tol``."""
        n = int(X.shape[0])
        memory.check_fit(net, LBFGS.n_state, n, max(n, 1), float(self.alpha),
                         memory.data_bytes(net, X, Y, sample_weight))
        A, Yd, V = net.prepare(X, Y, sample_weight)
        total = n if V is None else float(be.to_numpy(net.xp.sum(V)))
        count = [0]

        def iteration(J: float, theta: Any) -> None:
            count[0] += 1
            if self.verbose:
                print(f"Iteration {count[0]}, loss = {J:.8f}")

        result = lbfgs.minimize(net, A, Yd, V, float(self.alpha) / total, self.max_iter,
                                self.max_fun, self.tol, iteration=iteration,
                                outputs_averaged=self.n_outputs_ if averages_outputs(net) else 1)
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        if result.status != 0:
            msg = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                   f"(status={result.status}):\n{result.message}\n")
            if self.n_iter_ == self.max_iter:
                msg += ("\nIncrease the number of iterations to improve the convergence "
                        f"(max_iter={self.max_iter}).")
            msg += ("\nYou might also want to scale the data as shown in:\n    "
                    "https://scikit-learn.org/stable/modules/preprocessing.html")
            warnings.warn(msg, ConvergenceWarning, stacklevel=4)

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
            # scikit-learn stratifies on its binarised labels, a bool column (classes False, True)
            stratify = (backends.to_numpy(Y).astype(bool)
                        if (self._stratify() and self.n_outputs_ == 1) else None)
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
                              "going to be clipped", stacklevel=5)
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
        epochs = 1 if incremental else int(self.max_iter)
        trainer = Trainer(net, opt, float(self.alpha), l2_per_sample=True,
                          steps=epochs * -(-A.shape[0] // batch_size), batch=batch_size)
        k_avg = self.n_outputs_ if averages_outputs(net) else 1
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
                                  ConvergenceWarning, stacklevel=6)  # the caller's fit line
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=6)

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
