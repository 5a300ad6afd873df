"""Estimator model files: :func:`save` and :func:`load` (safetensors, no pickle).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.validation import (
    check_is_fitted,
)

from vnn import backends
from vnn.network import MLP
from vnn.sklearn.base import _BaseMLP
from vnn.sklearn.common import ACTIVATIONS

Array = Any


def save(estimator: _BaseMLP, path: Any) -> None:
    """Write a fitted ``MLPClassifier`` / ``MLPRegressor`` to ``path`` as a safetensors model file
    (``vnn.load`` reads it as a plain ``vnn.MLP``; :func:`load` as the estimator). No pickle.

    Only what :func:`load` accepts is written: parameters or fitted attributes it would refuse
    (an integer beyond 2**53, ``hidden_layer_sizes`` changed since fitting, NaN or infinite
    weights) raise ``ValueError`` and nothing is written.
    """
    import json

    from vnn import io
    from vnn.sklearn import schema as fields

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
    :mod:`vnn.sklearn.schema`. A file that is not what :func:`save` writes raises
    :class:`vnn.io.ModelFileError` (a ``ValueError``) naming the file and the field.
    """
    import os

    from vnn import io
    from vnn.sklearn import schema as fields

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
