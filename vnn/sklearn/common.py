"""Names shared by the estimators' modules."""

from __future__ import annotations

from typing import Any

from vnn import backends
from vnn.network import MLP

#: scikit-learn's activation names -> the derivation's φ
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: vnn output φ(L) -> scikit-learn's ``out_activation_``
OUT_ACTIVATION = {"softmax": "softmax", "sigmoid": "logistic", "identity": "identity",
                  "exp": "exp"}


def _device_backend(X: Any) -> backends.Backend | None:
    """The backend of a CuPy / torch / array-api-strict array, None for NumPy-like data."""
    return backends.backend_of(X)

def averages_outputs(net: MLP) -> bool:
    """scikit-learn averages its squared error over a sample's outputs; its other losses (log
    loss, binary log loss, Poisson) it sums."""
    return net.output == "identity"
