"""The cases every test of the math draws from: hidden activations, output/loss pairings and
optimizers (a new one added here is exercised by every test that uses the list)."""

from __future__ import annotations

import vnn
from vnn.sklearn import SklearnAdam, SklearnSGD

#: φ of the hidden layers (§1.3)
HIDDEN = ["relu", "tanh", "sigmoid", "identity"]
#: (output, loss): each output's own loss (Eqns 10-12, and the exp output's Poisson loss), and
#: squared error on a sigmoid, softmax or exp output (the general Eqn 10; the portable step only)
PAIRINGS = [("identity", None), ("sigmoid", None), ("softmax", None), ("exp", None),
            ("sigmoid", "squared_error"), ("softmax", "squared_error"), ("exp", "squared_error")]
#: the derivation's updates (Eqns 15, 16, Adam)
OPTIMIZERS = {"sgd": lambda: vnn.SGD(0.05), "momentum": lambda: vnn.Momentum(0.05, 0.8),
              "adam": lambda: vnn.Adam(1e-2)}
#: scikit-learn's forms of the same formulas
SKLEARN_OPTIMIZERS = {"sklearn-sgd": lambda: SklearnSGD(0.05, momentum=0.8, nesterov=True),
                      "sklearn-heavy-ball": lambda: SklearnSGD(0.05, momentum=0.8,
                                                                nesterov=False),
                      "sklearn-adam": lambda: SklearnAdam(1e-2)}
