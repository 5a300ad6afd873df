"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` with vnn's backprop, on any device.

Same constructor parameters, defaults and meaning as ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor`` (all three solvers; ``loss="poisson"`` too), plus ``device`` ("cpu", "cuda",
"cuda:N") and ``dtype``. Where scikit-learn's conventions differ from the derivation the
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
  (Eqns 4, 10), or with ``loss="poisson"`` an exp output + half the Poisson deviance (y >= 0,
  δ(L) = ŷ − y; see :mod:`vnn.math.losses`), summed over outputs. ``loss_`` reports
  scikit-learn's squared error, which is averaged over the outputs as well; the gradients are the
  same (scikit-learn's gradient is that of Eqn 4).
- **lbfgs.** SciPy's L-BFGS-B on the whole data set (``vnn.train.lbfgs``), as scikit-learn runs
  it: ``maxiter=max_iter``, ``maxfun=max_fun``, ``gtol=tol``, L2 as alpha / (2 Σv) Σ ‖W‖²; on a
  device the loss and gradient are computed there and only the flat parameter vector and
  gradient cross to the host, once each per evaluation.
- **float32.** ``dtype="float32"`` trains in float32; results agree with scikit-learn's float32
  tolerance (``rtol=1e-4``, that of ``sklearn.utils._testing.assert_allclose``), not float64's
  1e-7: fitting with sample weights and fitting with the repeated samples agree to ~1e-6
  relative, since a weighted sum and a repeated one round differently.

Data: NumPy-like input (arrays, lists, SciPy sparse matrices, which are densified) is validated by
scikit-learn's own helpers and trained on ``device``. CuPy, PyTorch and array-api-strict arrays
are used where they are: everything follows X, so the fitted ``coefs_`` and ``intercepts_`` and
the predictions live on X's library and device (string class labels come back as NumPy).

``vnn.sklearn.save(estimator, path)`` / ``vnn.sklearn.load(path)`` write and read a fitted
estimator as a safetensors model file (no pickle).
"""

from __future__ import annotations

from vnn.sklearn.classifier import MLPClassifier
from vnn.sklearn.common import ACTIVATIONS, OUT_ACTIVATION
from vnn.sklearn.files import load, save
from vnn.sklearn.optimizers import SklearnAdam, SklearnSGD
from vnn.sklearn.regressor import MLPRegressor

# pickles and reprs name the estimators where users import them
for _cls in (MLPClassifier, MLPRegressor, SklearnAdam, SklearnSGD):
    _cls.__module__ = __name__

__all__ = ["ACTIVATIONS", "OUT_ACTIVATION", "MLPClassifier", "MLPRegressor", "SklearnAdam",
           "SklearnSGD", "load", "save"]
