"""What :func:`vnn.sklearn.save` writes under a model file's ``extra["sklearn"]``, checked field by
field against the network the file holds.

An estimator file is a vnn model file (its network checked by :mod:`vnn.io`) whose ``extra`` is
``{"sklearn": {"class": ..., "params": ..., "fitted": ...}}``: the estimator's class name, its
constructor parameters (exactly the keys of its ``get_params()``) and its fitted attributes. Each
field is checked for its type and range and against the network (sizes, activations, output,
dtype); every length a field declares (a unicode label length, a number of classes) is checked
against what the file holds before anything is allocated from it. Anything else raises
:class:`vnn.io.ModelFileError` naming the file and the field (``"sklearn.fitted.classes_"``).

The checks run on the parsed JSON values; :func:`vnn.sklearn.load` makes the arrays
(``classes_``, ``feature_names_in_``) from what they return.
"""

from __future__ import annotations

import math
import re
import reprlib
import struct
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

from vnn.io.errors import ModelFileError
from vnn.io.layout import is_int
from vnn.io.schema import MAX_COUNT
from vnn.sklearn.base import _BaseMLP
from vnn.sklearn.classifier import MLPClassifier
from vnn.sklearn.common import ACTIVATIONS, OUT_ACTIVATION
from vnn.sklearn.regressor import MLPRegressor

#: the estimators a file may hold, by class name
ESTIMATORS: dict[str, type[_BaseMLP]] = {"MLPClassifier": MLPClassifier,
                                         "MLPRegressor": MLPRegressor}

#: the most bytes a file's class labels may take as a NumPy array (K labels x the longest label x
#: 4 bytes for unicode): one long label among many short ones cannot make a load allocate more
MAX_CLASSES_BYTES = 2**28

#: scikit-learn's LabelBinarizer target types -> the output layer the network must have
Y_TYPES = {"binary": "sigmoid", "multiclass": "softmax", "multilabel-indicator": "sigmoid"}

#: the NumPy dtypes class labels may have besides unicode ("<U" and the longest label's length):
#: name -> (kind, bits)
LABEL_DTYPES = {"bool": ("b", 8), **{f"int{b}": ("i", b) for b in (8, 16, 32, 64)},
                **{f"uint{b}": ("u", b) for b in (8, 16, 32, 64)},
                **{f"float{b}": ("f", b) for b in (16, 32, 64)}}
#: the struct format of each float width (a float label must be exactly one of its values)
FLOAT_FORMATS = {16: "e", 32: "f", 64: "d"}
UNICODE = re.compile(r"<U([1-9][0-9]{0,9})")

#: non-finite floats as :func:`vnn.sklearn.save` writes them (JSON has no inf or nan)
NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}

#: constructor parameters that are real numbers (a non-finite one is written as "inf" etc.)
REAL_PARAMS = frozenset({"alpha", "learning_rate_init", "power_t", "tol", "momentum",
                         "validation_fraction", "beta_1", "beta_2", "epsilon",
                         "n_iter_no_change"})

#: fitted attributes every estimator file holds, and their kind (see KINDS)
FITTED = {"best_loss_": "number?", "loss_curve_": "numbers", "validation_scores_": "numbers?",
          "best_validation_score_": "number?", "validation_loss_curve_": "numbers",
          "n_iter_": "count", "t_": "count"}
#: fitted attributes every estimator file holds that must agree with its network
FROM_NET = ("n_layers_", "n_outputs_", "n_features_in_", "out_activation_", "_dtype")
#: a classifier's labels, which must agree with its network's outputs
LABELS = ("classes_", "classes_dtype", "y_type_")
#: fitted attributes a file may lack (an estimator fitted without feature names has none)
OPTIONAL = ("loss_", "feature_names_in_")
#: fitted attributes only the stochastic solvers record: optional in the file of an lbfgs fit
STOCHASTIC = ("best_loss_", "loss_curve_", "validation_scores_", "best_validation_score_",
              "validation_loss_curve_")

KINDS = {"number": "a number", "number?": "a number or null", "numbers": "a list of numbers",
         "numbers?": "a list of numbers or null", "count": f"an integer in [0, {MAX_COUNT}]"}

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80
_short.maxlist = _short.maxdict = 8


@dataclass
class Saved:
    """An estimator file's fields, checked: what :func:`vnn.sklearn.load` builds the estimator
    from."""

    cls: type[_BaseMLP]
    #: the constructor's arguments
    params: dict[str, Any]
    #: the fitted attributes to set (``feature_names_in_`` as a list of strings)
    fitted: dict[str, Any]
    #: a classifier's labels: ``classes_`` (a list), its NumPy dtype name and ``y_type_``
    labels: Labels | None


@dataclass
class Labels:
    """A classifier's checked labels, as its LabelBinarizer holds them."""

    classes: list[Any]
    dtype: str
    y_type: str


# -- writing -----------------------------------------------------------------------------------------
def entry(estimator: _BaseMLP) -> dict[str, Any]:
    """The ``extra["sklearn"]`` entry of a fitted ``estimator``'s file (JSON-able)."""
    params = estimator.get_params()
    if not (params["random_state"] is None or isinstance(params["random_state"], Integral)):
        params["random_state"] = None  # a RandomState instance cannot be written; refits differ
    names = [*FITTED, *FROM_NET, "loss_"]
    fitted = {k: plain(getattr(estimator, k)) for k in names if hasattr(estimator, k)}
    if hasattr(estimator, "feature_names_in_"):
        fitted["feature_names_in_"] = [str(f) for f in estimator.feature_names_in_]
    if isinstance(estimator, MLPClassifier):
        classes = estimator.classes_  # a NumPy array
        fitted["classes_"] = plain(classes)
        fitted["classes_dtype"] = str(classes.dtype)
        if classes.dtype.kind == "U":  # as long as the longest label, no more
            fitted["classes_dtype"] = f"<U{max([1, *map(len, fitted['classes_'])])}"
        fitted["y_type_"] = estimator._label_binarizer.y_type_
    return {"class": type(estimator).__name__,
            "params": {k: plain(v) for k, v in params.items()}, "fitted": fitted}


def plain(value: Any) -> Any:
    """A JSON-able copy of a parameter or fitted attribute (NumPy arrays and scalars become
    Python's lists and numbers; non-finite floats the strings "inf", "-inf", "nan")."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()  # a NumPy array or scalar
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


# -- reading -----------------------------------------------------------------------------------------
def refuse(name: str, field: str, value: Any, expected: str) -> ModelFileError:
    return ModelFileError(f"{name}: {field}={_short.repr(value)} is invalid; expected {expected}",
                          name, field)


def exact_keys(name: str, where: str, given: dict[str, Any], required: list[str],
               optional: tuple[str, ...] = ()) -> None:
    """``given`` has every key of ``required``, perhaps some of ``optional``, and no other."""
    allowed = set(required) | set(optional)
    unknown = [k for k in given if k not in allowed]
    missing = [k for k in required if k not in given]
    if unknown or missing:
        key = (unknown or missing)[0]
        problem = f"has the unknown key {key!r}" if unknown else f"has no key {key!r}"
        raise ModelFileError(f"{name}: {where} {problem}; a file written by vnn.sklearn.save has "
                             f"exactly the keys {', '.join(required)}"
                             + (f" (and perhaps {', '.join(optional)})" if optional else ""),
                             name, f"{where}.{key}")


def check(name: str, meta: dict[str, Any]) -> Saved:
    """The estimator in the checked ``"vnn"`` metadata ``meta`` of the file ``name``."""
    extra = meta["extra"] or {}
    if "sklearn" not in extra:
        raise ModelFileError(f"{name}: a vanilla-nn model file, but not one written by "
                             "vnn.sklearn.save (no estimator in its metadata); use vnn.load",
                             name, "sklearn")
    info = extra["sklearn"]
    if not isinstance(info, dict):
        raise refuse(name, "sklearn", info, "a dict with the keys class, params and fitted")
    exact_keys(name, "sklearn", info, ["class", "params", "fitted"])
    cls = ESTIMATORS.get(info["class"]) if isinstance(info["class"], str) else None
    if cls is None:
        raise refuse(name, "sklearn.class", info["class"], f"one of {list(ESTIMATORS)}")
    params = _params(name, cls, info["params"], meta)
    fitted, labels = _fitted(name, cls, info["fitted"], meta, params)
    return Saved(cls, params, fitted, labels)


# -- params ------------------------------------------------------------------------------------------
def _params(name: str, cls: type[_BaseMLP], params: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The constructor's arguments: exactly ``cls``'s, each valid, agreeing with the network."""
    if not isinstance(params, dict):
        raise refuse(name, "sklearn.params", params, f"a dict of {cls.__name__}'s parameters")
    exact_keys(name, "sklearn.params", params, cls._get_param_names())
    out = {}
    for key, value in params.items():
        field = f"sklearn.params.{key}"
        if key == "hidden_layer_sizes":
            out[key] = _hidden_sizes(name, value, meta["sizes"])
            continue
        if not _is_scalar(value):
            raise refuse(name, field, value, f"a string, a bool, null or a number (an integer in "
                         f"[-{MAX_COUNT}, {MAX_COUNT}])")
        out[key] = NONFINITE[value] if key in REAL_PARAMS and value in NONFINITE else value
        try:
            validate_parameter_constraints({key: cls._parameter_constraints[key]},
                                           {key: out[key]}, caller_name=cls.__name__)
        except InvalidParameterError as exc:
            raise refuse(name, field, value, f"a valid value ({exc})") from None
    hidden = meta["activation"]
    if any(a != ACTIVATIONS[out["activation"]] for a in hidden):
        raise refuse(name, "sklearn.params.activation", out["activation"],
                     f"the network's hidden activation {hidden} (scikit-learn's names: "
                     f"{ACTIVATIONS})")
    return out


def _is_scalar(value: Any) -> bool:
    return (value is None or isinstance(value, (bool, str, float))
            or is_int(value) and -MAX_COUNT <= value <= MAX_COUNT)


def _hidden_sizes(name: str, value: Any, sizes: list[int]) -> Any:
    """``hidden_layer_sizes`` (an int or a list of them) equal to the network's hidden sizes."""
    given = value if isinstance(value, list) else [value]
    if not all(is_int(m) for m in given) or given != sizes[1:-1]:
        raise refuse(name, "sklearn.params.hidden_layer_sizes", value,
                     f"the network's hidden layer sizes {sizes[1:-1]} (sizes {sizes})")
    return tuple(value) if isinstance(value, list) else value


# -- fitted attributes -------------------------------------------------------------------------------
def _fitted(name: str, cls: type[_BaseMLP], fitted: Any, meta: dict[str, Any],
            params: dict[str, Any]) -> tuple[dict[str, Any], Labels | None]:
    """The fitted attributes to set, and a classifier's labels."""
    if not isinstance(fitted, dict):
        raise refuse(name, "sklearn.fitted", fitted, "a dict of fitted attributes")
    classifier = issubclass(cls, MLPClassifier)
    # the stochastic solvers' record: all of it, or none of it (an lbfgs fit, whatever solver
    # the estimator has been set to since)
    stochastic = any(k in fitted for k in STOCHASTIC)
    required = [k for k in FITTED if stochastic or k not in STOCHASTIC]
    exact_keys(name, "sklearn.fitted", fitted,
               [*required, *FROM_NET, *(LABELS if classifier else ())], OPTIONAL)
    out = {key: _decoded(name, f"sklearn.fitted.{key}", fitted[key], kind)
           for key, kind in {**FITTED, "loss_": "number"}.items() if key in fitted}
    sizes, labels = meta["sizes"], None
    if classifier:
        labels = _labels(name, fitted, meta)
        output = Y_TYPES[labels.y_type]
    else:
        output = "exp" if params["loss"] == "poisson" else "identity"
        if meta["output"] != output:
            raise refuse(name, "sklearn.class", cls.__name__, f"an estimator for a network with "
                         f"output {meta['output']!r}: MLPRegressor(loss={params['loss']!r}) "
                         f"needs output {output!r}")
    want = {"n_layers_": len(sizes), "n_outputs_": sizes[-1], "n_features_in_": sizes[0],
            "out_activation_": OUT_ACTIVATION[output], "_dtype": meta["dtype"]}
    for key, value in want.items():
        if type(fitted[key]) is not type(value) or fitted[key] != value:
            raise refuse(name, f"sklearn.fitted.{key}", fitted[key],
                         f"{value!r}, as the network (sizes {sizes}, output {meta['output']!r}, "
                         f"dtype {meta['dtype']!r}) has it")
        out[key] = value
    if "feature_names_in_" in fitted:
        out["feature_names_in_"] = _feature_names(name, fitted["feature_names_in_"], sizes[0])
    return out, labels


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a number as save writes one, else None."""
    if isinstance(value, float):
        return value
    if is_int(value) and -MAX_COUNT <= value <= MAX_COUNT:
        return float(value)
    if isinstance(value, str) and value in NONFINITE:
        return NONFINITE[value]
    return None


def _decoded(name: str, field: str, value: Any, kind: str) -> Any:
    """``value`` of the given ``kind`` (see :data:`KINDS`), decoded."""
    if kind.endswith("?") and value is None:
        return None
    if kind == "count":
        if is_int(value) and 0 <= value <= MAX_COUNT:
            return value
    elif kind.startswith("numbers"):
        if isinstance(value, list):
            numbers = [_number(v) for v in value]
            if all(x is not None for x in numbers):
                return numbers
    elif (number := _number(value)) is not None:
        return number
    raise refuse(name, field, value, KINDS[kind])


def _feature_names(name: str, names: Any, n_features: int) -> list[str]:
    if not (isinstance(names, list) and len(names) == n_features
            and all(isinstance(f, str) for f in names)):
        raise refuse(name, "sklearn.fitted.feature_names_in_", names,
                     f"a list of {n_features} strings, one per input (sizes[0])")
    return names


# -- class labels ------------------------------------------------------------------------------------
def _labels(name: str, fitted: dict[str, Any], meta: dict[str, Any]) -> Labels:
    """A classifier's labels: their type, count, dtype and order checked against the network."""
    y_type, classes, m = fitted["y_type_"], fitted["classes_"], meta["sizes"][-1]
    if not isinstance(y_type, str) or y_type not in Y_TYPES:
        raise refuse(name, "sklearn.fitted.y_type_", y_type, f"one of {list(Y_TYPES)}")
    if meta["output"] != Y_TYPES[y_type]:
        raise refuse(name, "sklearn.fitted.y_type_", y_type, f"a target type for the network's "
                     f"output {meta['output']!r} ({Y_TYPES})")
    if not isinstance(classes, list):
        raise refuse(name, "sklearn.fitted.classes_", classes, "a list of class labels")
    allowed, expected = {"binary": ([1, 2] if m == 1 else [], "1 or 2 and a 1-output network"),
                         "multiclass": ([m] if m >= 3 else [], "one per output (at least 3)"),
                         "multilabel-indicator": ([m], "one per output")}[y_type]
    if len(classes) not in allowed:
        raise ModelFileError(f"{name}: sklearn.fitted.classes_ has {len(classes)} classes and the "
                             f"network has {m} output{'s' if m != 1 else ''}; "
                             f"y_type_={y_type!r} needs {expected}", name,
                             "sklearn.fitted.classes_")
    dtype = _label_dtype(name, fitted["classes_dtype"], classes)
    if not all(a < b for a, b in zip(classes, classes[1:])):
        raise refuse(name, "sklearn.fitted.classes_", classes,
                     "distinct labels in increasing order (as LabelBinarizer stores them)")
    if y_type == "multilabel-indicator" and not (
            dtype.startswith(("int", "uint")) and classes == list(range(m))):
        raise refuse(name, "sklearn.fitted.classes_", classes, f"the integers 0..{m - 1}: a "
                     "multilabel target's classes are its columns")
    return Labels(classes, dtype, y_type)


def _label_dtype(name: str, declared: Any, classes: list[Any]) -> str:
    """The labels' dtype: a plain kind, a unicode length that of the longest label stored; each
    label checked to be of that kind and in range, and the array's size bounded."""
    field = "sklearn.fitted.classes_dtype"
    match = UNICODE.fullmatch(declared) if isinstance(declared, str) else None
    if match is None and not (isinstance(declared, str) and declared in LABEL_DTYPES):
        raise refuse(name, field, declared, f"one of {', '.join(LABEL_DTYPES)} or '<U<n>' "
                     "(unicode labels of at most n characters)")
    kind, bits = ("U", 0) if match is not None else LABEL_DTYPES[declared]
    if not all(_fits(kind, bits, c) for c in classes):
        raise refuse(name, "sklearn.fitted.classes_", classes,
                     f"labels of dtype {declared} ({_KIND[kind]})")
    itemsize = bits // 8
    if match is not None:  # the declared length: that of the longest label, no more
        need = max([1, *map(len, classes)])
        if int(match.group(1)) != need:
            raise refuse(name, field, declared, f"'<U{need}' (the longest label stored has "
                         f"{need} characters)")
        itemsize = 4 * need
    if len(classes) * itemsize > MAX_CLASSES_BYTES:
        raise ModelFileError(f"{name}: sklearn.fitted.classes_ holds {len(classes)} labels of "
                             f"dtype {declared}: {len(classes) * itemsize} bytes as an array, "
                             f"more than MAX_CLASSES_BYTES={MAX_CLASSES_BYTES}", name,
                             "sklearn.fitted.classes_")
    return declared


_KIND = {"b": "each a bool", "i": "each an integer in range", "u": "each an integer in range",
         "f": "each a finite number of that precision",
         "U": "each a string, not ending in a NUL character"}


def _fits(kind: str, bits: int, label: Any) -> bool:
    """Whether ``label`` (a JSON value) is exactly a value of the dtype of ``kind`` and ``bits``."""
    if kind == "U":  # NumPy drops a unicode label's trailing NULs
        return isinstance(label, str) and not label.endswith("\0")
    if kind == "b":
        return isinstance(label, bool)
    if kind == "i":
        return is_int(label) and -(2 ** (bits - 1)) <= label < 2 ** (bits - 1)
    if kind == "u":
        return is_int(label) and 0 <= label < 2**bits
    if not (is_int(label) and abs(label) <= MAX_COUNT or isinstance(label, float)):
        return False
    try:  # a finite value of this precision, exactly (distinct labels stay distinct)
        (x,) = struct.unpack(FLOAT_FORMATS[bits], struct.pack(FLOAT_FORMATS[bits], label))
    except OverflowError:
        return False
    return math.isfinite(x) and x == label
