"""The public API: where results live, parameters, repr, and clear errors for bad input."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest
from conftest import BACKENDS, assert_on, host, make

import vnn


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_everything_stays_in_the_models_namespace_device_and_dtype(backend, dtype):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 5)), rng.integers(0, 3, size=20)
    net = make(backend, [5, 6, 3], output="softmax", dtype=dtype, seed=0)
    net.fit(X, y, epochs=2, batch_size=8, validation_data=(X, y))
    for arr in net.weights + net.biases:
        assert_on(net, arr, dtype)
    assert_on(net, net.forward(X), dtype)
    assert_on(net, net.predict_proba(X), dtype)
    labels = net.predict(X)
    assert_on(net, labels)
    assert labels.shape == (20,) and host(labels).dtype.kind == "i"
    _, grads = net.loss_and_gradients(X, y)
    for dW, db in grads:
        assert_on(net, dW, dtype)
        assert_on(net, db, dtype)
    # data already on the model's device is used where it is
    Xd = backend.from_host(X, dtype)
    assert_on(net, net.forward(Xd), dtype)
    np.testing.assert_array_equal(host(net.forward(Xd)), host(net.forward(X)))


def test_output_shapes(backend):
    X = np.random.default_rng(0).standard_normal((4, 3))
    reg = make(backend, [3, 2], output="identity")
    assert reg.forward(X).shape == (4, 2) and reg.predict(X).shape == (4, 2)
    reg1 = make(backend, [3, 1], output="identity")
    assert reg1.predict(X).shape == (4,)
    binary = make(backend, [3, 1], output="sigmoid")
    assert binary.predict_proba(X).shape == (4, 1)
    assert set(host(binary.predict(X)).tolist()) <= {0, 1}
    multilabel = make(backend, [3, 4, 3], output="sigmoid")
    assert multilabel.predict(X).shape == (4, 3)
    with pytest.raises(ValueError, match="predict_proba needs a sigmoid or softmax"):
        reg.predict_proba(X)


def test_one_hot_targets_equal_integer_labels(backend):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 3)), np.array([0, 2, 1, 1, 0, 2])
    net = make(backend, [3, 4, 3], output="softmax", dtype="float64", seed=0)
    J1, g1 = net.loss_and_gradients(X, y)
    J2, g2 = net.loss_and_gradients(X, np.eye(3)[y])
    assert J1 == J2
    np.testing.assert_array_equal(host(g1[0][0]), host(g2[0][0]))


def test_weights_are_assignable(backend):
    net = make(backend, [3, 4, 2], seed=0)
    W = np.arange(12, dtype=np.float64).reshape(4, 3)
    net.weights = [W, np.zeros((2, 4))]
    np.testing.assert_array_equal(host(net.weights[0]), W)
    assert_on(net, net.weights[0], "float32")
    net.weights[1] = np.ones((2, 4))
    np.testing.assert_array_equal(host(net.weights[1]), 1.0)
    net.biases[0] = [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_array_equal(host(net.biases[0]), [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"weights\[0\] has shape \(3, 4\); expected \(4, 3\)"):
        net.weights = [W.T, np.zeros((2, 4))]
    with pytest.raises(ValueError, match="biases has 1 arrays; the network has 2 layers"):
        net.biases = [np.zeros(4)]
    with pytest.raises(ValueError, match=r"weights\[1\] has shape"):
        net.weights[1] = np.ones((4, 2))


def test_repr_and_description():
    net = vnn.MLP([64, 128, 10], activation="relu", output="softmax", seed=0)
    assert repr(net) == ("MLP([64, 128, 10], activation='relu', output='softmax', "
                         "loss='cross_entropy', backend='numpy', device='cpu', dtype='float32')")
    net = vnn.MLP([4, 8, 8, 1], activation=["relu", "tanh"], output="sigmoid",
                  loss="squared_error", dtype="float64")
    assert "activation=['relu', 'tanh']" in repr(net) and "loss='squared_error'" in repr(net)
    assert net.n_parameters == 4 * 8 + 8 + 8 * 8 + 8 + 8 + 1


def test_inputs_are_never_modified(backend):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((10, 3)), rng.integers(0, 2, size=10)
    X.flags.writeable = False
    y.flags.writeable = False
    X0, y0 = X.copy(), y.copy()
    net = make(backend, [3, 4, 2], output="softmax", seed=0)
    net.fit(X, y, epochs=2, batch_size=4, validation_data=(X, y))
    net.loss_and_gradients(X, y, l2=0.1)
    net.predict(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_to_numpy_from_every_backend(backend):
    net = make(backend, [2, 3], seed=0)
    out = vnn.to_numpy(net.weights[0])
    assert type(out) is np.ndarray and out.shape == (3, 2)
    np.testing.assert_array_equal(out, net.to_numpy(net.weights[0]))


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(sizes=[3]), ValueError, "needs at least two entries"),
    (dict(sizes=[3, 0, 2]), ValueError, r"sizes\[1\]=0 is invalid"),
    (dict(sizes=[3, 2.5]), TypeError, r"sizes\[1\]=2.5 is not an integer"),
    (dict(activation="swish"), ValueError, "activation='swish' is not known"),
    (dict(activation=["relu", "tanh"]), ValueError, "activation has 2 entries but the network has 1"),
    (dict(output="tanh"), ValueError, "output='tanh' is not known"),
    (dict(output="identity", loss="cross_entropy"), ValueError, "cannot be paired"),
    (dict(output="softmax", loss="binary_cross_entropy"), ValueError, "cannot be paired"),
    (dict(loss="hinge"), ValueError, "loss='hinge' is not known"),
    (dict(dtype="float16"), ValueError, "dtype='float16' is not supported"),
    (dict(device="tpu"), ValueError, "device='tpu' is not known"),
    (dict(backend="mxnet"), ValueError, "backend='mxnet' is not known"),
    (dict(init="lecun"), ValueError, "init='lecun' is not known"),
    (dict(seed=-1), ValueError, "seed=-1 is invalid"),
    (dict(sizes=[3, 1], output="softmax"), ValueError, "needs m_L >= 2"),
])
def test_invalid_construction(kwargs, error, message):
    args = {"sizes": [3, 4, 2], "activation": "relu", **kwargs}
    with pytest.raises(error, match=message):
        vnn.MLP(args.pop("sizes"), **args)


def test_invalid_data(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 3))
    clf = make(backend, [3, 4, 3], output="softmax", seed=0)
    cases = [
        (lambda: clf.fit(X, [0, 1, 2, 3, 1]), ValueError, r"labels in \[0, 3\] but the network "
         r"has 3 outputs \(expected 0..2\)"),
        (lambda: clf.fit(X, [0.0, 1.0, 2.0, 1.0, 0.0]), ValueError, "holds float values"),
        (lambda: clf.fit(X, [0, 1, 2]), ValueError, "match the 5 samples"),
        (lambda: clf.fit(X[:, :2], [0, 1, 2, 1, 0]), ValueError, "has 2 features"),
        (lambda: clf.predict(X[0]), ValueError, "expected 2 dimensions"),
        (lambda: clf.predict(X[:0]), ValueError, "is empty"),
        (lambda: clf.predict(np.array([[1.0, np.nan, 0.0]])), ValueError, "NaN or infinite"),
        (lambda: clf.predict(np.array([["a", "b", "c"]])), TypeError, "not numeric"),
        (lambda: clf.predict(X + 1j), TypeError, "complex"),
        (lambda: clf.fit(X, np.full((5, 3), 0.5)), ValueError, "summing to 1"),
        (lambda: clf.fit(X, [0, 1, 2, 1, 0], epochs=-1), ValueError, "epochs=-1 is invalid"),
        (lambda: clf.fit(X, [0, 1, 2, 1, 0], batch_size=0), ValueError, "batch_size=0"),
        (lambda: clf.fit(X, [0, 1, 2, 1, 0], l2=-0.1), ValueError, "l2=-0.1 is invalid"),
        (lambda: clf.fit(X, [0, 1, 2, 1, 0], optimizer="adam"), TypeError, "not a vnn optim"),
        (lambda: clf.loss_and_gradients(X, [0, 1, 2, 1, 0], l2=float("nan")), ValueError, "l2="),
    ]
    binary = make(backend, [3, 1], output="sigmoid", seed=0)
    cases.append((lambda: binary.fit(X, [0, 1, 2, 1, 0]), ValueError, r"values other than 0 and 1"))
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_arrays_of_another_library_or_device_are_refused():
    strict = [b for b in BACKENDS if b.name == "array_api_strict"]
    if not strict:
        pytest.skip("array_api_strict is not installed")
    X = np.zeros((2, 3))
    on_device1 = vnn.MLP([3, 2], backend="array_api_strict", device="device1")
    other_device = strict[0].from_host(X)  # CPU_DEVICE
    with pytest.raises(ValueError, match="is on device .* but the model is on 'device1'"):
        on_device1.forward(other_device)
    with pytest.raises(TypeError, match="X is a array_api_strict array but the model runs on numpy"):
        vnn.MLP([3, 2]).forward(other_device)


ARRAY_LIBRARIES = {"numpy", "cupy", "cupyx", "torch", "jax", "array_api_strict",
                   "array_api_compat", "dask"}


# Front ends whose interface is NumPy by definition: scikit-learn's estimator API, the command
# line (vnn/cli/) and the model files' host-side reading and writing (vnn/io/). They call the math;
# they contain none of it.
HOST_PACKAGES = {"io", "cli", "sklearn"}
VNN = pathlib.Path(vnn.__file__).parent


@pytest.mark.parametrize("path", sorted(p for p in VNN.rglob("*.py")
                                        if p.relative_to(VNN).parts[0] not in HOST_PACKAGES),
                         ids=lambda p: str(p.relative_to(VNN)))
def test_math_modules_import_no_array_library(path):
    """The math gets ``xp`` from backends/; only backends/ (and the front ends) import an array
    library."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & ARRAY_LIBRARIES, f"{path.name} imports {imported & ARRAY_LIBRARIES}"


def test_import_vnn_beside_a_users_own_backends_package(tmp_path):
    """``backends`` is installed as ``vnn.backends``: a project's own ``backends`` package (a
    common name) neither breaks ``import vnn`` nor is shadowed by it."""
    import subprocess
    import sys

    (tmp_path / "backends").mkdir()
    (tmp_path / "backends" / "__init__.py").write_text("OWN = 'mine'\n")
    code = ("import backends, vnn\n"
            "assert backends.OWN == 'mine'\n"
            "import vnn.backends\n"
            "assert vnn.backends is not backends\n"
            "print(vnn.MLP([3, 2]).fit([[0, 1, 2]], [[1, 0]], epochs=1).epochs)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_loading_and_predicting_draw_no_initial_weights(tmp_path, monkeypatch):
    """A model file and a fitted estimator become a model through MLP.from_parameters: their
    parameters are checked and copied once, no initial weights drawn only to be overwritten."""
    from vnn.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, size=20)
    net = vnn.MLP([3, 4, 2], output="softmax", seed=0)
    net.fit(X, y, epochs=1)
    net.save(tmp_path / "m.safetensors")
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    want = host(net.forward(X)), est.predict_proba(X)

    def no_draw(*args, **kwargs):
        raise AssertionError("initial weights drawn")

    monkeypatch.setattr("vnn.network.initial_weights", no_draw)
    loaded = vnn.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(host(loaded.forward(X)), want[0])
    np.testing.assert_array_equal(est.predict_proba(X), want[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X, y)  # continues from its parameters
    with pytest.raises(ValueError, match="weights must be a non-empty list"):
        vnn.MLP.from_parameters([], [])


def test_no_import_cycles():
    """The modules of vnn (and vnn.backends) import each other at module level without a cycle
    (imports inside functions and under TYPE_CHECKING are not counted)."""
    import ast

    root = VNN.parent
    files = {p: ".".join(p.relative_to(root).with_suffix("").parts) for p in VNN.rglob("*.py")}
    backends_dir = pathlib.Path(vnn.backends.__file__).parent
    files |= {p: "vnn.backends." + p.stem for p in backends_dir.glob("*.py")}
    mods = {name.removesuffix(".__init__"): p for p, name in files.items()}
    graph = {}
    for name, p in mods.items():
        deps = set()
        for node in ast.parse(p.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vnn"):
                subs = {f"{node.module}.{a.name}" for a in node.names}
                deps |= subs & mods.keys() if subs <= mods.keys() else {node.module} | (subs & mods.keys())
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("vnn")}
        graph[name] = (deps & mods.keys()) - {name}
    state: dict[str, int] = {}
    cycles = []

    def visit(u, path):
        state[u] = 1
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append(path[path.index(v):] + [u, v] if v in path else [u, v])
            elif v not in state:
                visit(v, path + [u])
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, cycles


def test_vnn_imports_from_a_source_checkout_without_installing(tmp_path):
    """With only the checkout on sys.path (PYTHONPATH=., no editable install), ``vnn.backends`` is
    the checkout's backends/ folder: ``python -m bench`` and the GPU check's fallback work."""
    import subprocess
    import sys

    root = VNN.parent
    code = ("import sys; sys.meta_path = [f for f in sys.meta_path "
            "if 'Editable' not in getattr(f, '__name__', type(f).__name__)]; "
            f"sys.path.insert(0, {str(root)!r}); "
            "import vnn, vnn.backends, vnn.backends.numpy; "
            "print(vnn.backends.__file__); print(vnn.MLP([2, 1]).forward([[1.0, 2.0]]).shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == str(root / "backends" / "__init__.py")


def test_the_namespace_holds_the_api_only():
    public = {n for n in dir(vnn) if not n.startswith("_")}
    assert not public & {"Any", "annotations"}
    assert set(vnn.__all__) <= set(dir(vnn))


def test_help_on_fit_describes_fit():
    doc = vnn.MLP.fit.__doc__
    for words in ("Algorithm 1.9", "batch_size", "checkpoint", "on_nonfinite", "LBFGS"):
        assert words in doc, words


def test_errors_say_what_to_do_with_labels_and_where_a_nan_is():
    rng = np.random.default_rng(0)
    X, labels = rng.standard_normal((100, 4)), rng.integers(0, 3, 100)
    with pytest.raises(ValueError, match=r"integer labels.*output=\"softmax\""):
        vnn.MLP([4, 8, 3]).fit(X, labels, epochs=1)
    with pytest.raises(ValueError, match=r"whole numbers.*y\.astype\(int\)"):
        vnn.MLP([4, 8, 3], output="softmax").fit(X, labels.astype(float), epochs=1)
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or infinite values \(first at row 7, "
                                         r"column 2\)"):
        vnn.MLP([4, 8, 3], output="softmax").fit(X, labels, epochs=1)
