"""``MLPClassifier``: scikit-learn's multilayer perceptron classifier, trained by vnn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import (
    check_array,
    column_or_1d,
)

from vnn import backends
from vnn.math import activations, losses
from vnn.network import MLP
from vnn.sklearn.base import _BaseMLP
from vnn.sklearn.common import _device_backend

Array = Any


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
        """Class probabilities (n, n_classes) in the order of ``classes_``; a binary problem's
        two columns are σ(−z) and σ(z), each exact to rounding (1 − σ(z) would round to 0 for
        z > 37)."""
        be, z = self._forward(X, logits=True)
        with be.activate():
            return self._probabilities(be.xp, z)

    def _probabilities(self, xp: Any, z: Any) -> Any:
        """a(L) from the logits z(L), with the two columns of a binary problem."""
        if self.out_activation_ == "softmax":
            return activations.softmax(xp, z)
        sigmoid = activations.HIDDEN["sigmoid"]
        s = sigmoid.phi(xp, z)
        return xp.concat([sigmoid.phi(xp, -z), s], axis=1) if self.n_outputs_ == 1 else s

    def predict_log_proba(self, X: Any) -> Any:
        """log of :meth:`predict_proba`: log p where p > 0, so that the log-probabilities order
        as the probabilities do (scikit-learn's log(predict_proba)); where p underflows to 0,
        the finite value from the logits (log σ(z) = −softplus(−z), z − logsumexp(z))."""
        be, z = self._forward(X, logits=True)
        xp = be.xp
        with be.activate():
            p = self._probabilities(xp, z)
            if self.out_activation_ == "softmax":
                stable = z - xp.reshape(activations.logsumexp(xp, z), (-1, 1))
            else:
                stable = -losses.softplus(xp, -z)
                if self.n_outputs_ == 1:
                    stable = xp.concat([-losses.softplus(xp, z), stable], axis=1)
            positive = p > 0
            return xp.where(positive, xp.log(xp.where(positive, p, xp.ones_like(p))), stable)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy (subset accuracy for multilabel)."""
        pred = backends.to_numpy(self.predict(X))
        y = backends.to_numpy(y) if _device_backend(y) else y
        w = backends.to_numpy(sample_weight) if _device_backend(sample_weight) else sample_weight
        return float(accuracy_score(y, pred, sample_weight=w))
