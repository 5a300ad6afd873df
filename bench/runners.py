"""What the benchmarks time: vnn on each backend, PyTorch eager, JAX-jit, scikit-learn, GEMM floor.

Every runner trains the same architecture with the workload's optimizer (plain SGD, Eqn 15; momentum,
Eqn 16 with β = 0.9; or Adam, lr 1e-3), no L2, on the same synthetic batches, in order, starting
from vnn's initial weights where the library allows it. Momentum is Eqn (16)'s form
(v ← βv + (1−β)g, θ ← θ − ηv) in vnn, PyTorch (``dampening=1−β``, except that its first step sets
v = g) and JAX; scikit-learn has only its heavy-ball form, which costs the same.
``run()`` performs ``steps`` full mini-batch steps (forward, loss, backward, update) on data that is
already on the device and waits for the device before it returns.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

import vnn
from bench.workloads import ADAM_LR, BETA, LR, Workload


def vnn_optimizer(name: str) -> vnn.Optimizer:
    return {"sgd": lambda: vnn.SGD(LR), "momentum": lambda: vnn.Momentum(LR, BETA),
            "adam": lambda: vnn.Adam(ADAM_LR)}[name]()


@contextlib.contextmanager
def numba_setting(loops: bool | None) -> Iterator[None]:
    """``VNN_NUMBA`` while a step is made: compiled loops on (True), off (False), as set (None)."""
    old = os.environ.get("VNN_NUMBA")
    if loops is not None:
        os.environ["VNN_NUMBA"] = "1" if loops else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("VNN_NUMBA", None)
        else:
            os.environ["VNN_NUMBA"] = old


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def cuda_available() -> bool:
    if not has("cupy"):
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


class Runner:
    """One contender on one workload and dtype."""

    name = "?"
    kind = "peer"  # "vnn", "peer" or "floor"

    def __init__(self, w: Workload, dtype: str, steps: int, device: str = "cpu") -> None:
        self.w, self.dtype, self.steps, self.device = w, dtype, steps, device
        self.samples = steps * w.batch

    def run(self) -> None:
        raise NotImplementedError

    def initial_weights(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        net = vnn.MLP(list(self.w.sizes), activation=self.w.activation, output=self.w.output,
                      dtype=self.dtype, seed=0)
        return [vnn.to_numpy(W) for W in net.weights], [vnn.to_numpy(b) for b in net.biases]


class VnnRunner(Runner):
    kind = "vnn"

    def __init__(self, w: Workload, dtype: str, steps: int, device: str = "cpu",
                 backend: str | None = None, fast_path: bool = True,
                 loops: bool | None = None) -> None:
        """``loops``: NumPy's fast step with compiled loops (True), with NumPy calls (False), or
        whatever the installation gives (None)."""
        super().__init__(w, dtype, steps, device)
        self.net = vnn.MLP(list(w.sizes), activation=w.activation, output=w.output,
                           device=device, backend=backend, dtype=dtype, seed=0)
        self.net.fast_path = fast_path
        be = self.net.backend
        self.name = f"vnn-{be.name}" + ("" if fast_path else "-portable")
        X, y = w.data(steps, dtype)
        with be.activate(), numba_setting(loops):
            self.A, self.Y, _ = self.net.prepare(X, y)
            self.trainer = vnn.train.Trainer(self.net, vnn_optimizer(w.optimizer), 0.0)
        self.be = be

    def run(self) -> None:
        B, trainer, A, Y = self.w.batch, self.trainer, self.A, self.Y
        with self.be.activate():
            for i in range(self.steps):
                trainer(A, Y, slice(i * B, (i + 1) * B))
            self.be.synchronize()
            if self.be.name == "jax":  # its dispatch is asynchronous: wait for the last update
                import jax

                jax.block_until_ready(self.net.theta)


class TorchRunner(Runner):
    """PyTorch eager, written the way its tutorials do: nn.Sequential, a loss, optim.SGD."""

    name = "torch-eager"

    def __init__(self, w: Workload, dtype: str, steps: int, device: str = "cpu") -> None:
        super().__init__(w, dtype, steps, device)
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        self.torch = torch
        self.dev = torch.device("cuda" if device.startswith("cuda") else "cpu")
        tdtype = getattr(torch, dtype)
        Ws, bs = self.initial_weights()
        act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
               "identity": torch.nn.Identity}[w.activation]
        layers: list[Any] = []
        for i, (W, b) in enumerate(zip(Ws, bs)):
            lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=tdtype, device=self.dev)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if i < len(Ws) - 1:
                layers.append(act())
        self.model = torch.nn.Sequential(*layers)
        params = self.model.parameters()
        self.opt = {"sgd": lambda: torch.optim.SGD(params, lr=LR),
                    "momentum": lambda: torch.optim.SGD(params, lr=LR, momentum=BETA,
                                                        dampening=1 - BETA),
                    "adam": lambda: torch.optim.Adam(params, lr=ADAM_LR)}[w.optimizer]()
        X, y = w.data(steps, dtype)
        self.X = torch.from_numpy(X).to(self.dev)
        self.y = torch.from_numpy(y).to(self.dev)
        if w.output == "softmax":
            self.loss = torch.nn.functional.cross_entropy
        else:  # Eqn 4, ½‖ŷ − y‖² averaged over the batch
            self.loss = lambda out, t: 0.5 * torch.nn.functional.mse_loss(
                out, t, reduction="sum") / out.shape[0]

    def run(self) -> None:
        B, model, opt, loss = self.w.batch, self.model, self.opt, self.loss
        for i in range(self.steps):
            xb, yb = self.X[i * B:(i + 1) * B], self.y[i * B:(i + 1) * B]
            opt.zero_grad()
            loss(model(xb), yb).backward()
            opt.step()
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()


class JaxRunner(Runner):
    """JAX with the whole step (forward, loss, grad, SGD update) under one ``jax.jit``."""

    name = "jax-jit"

    def __init__(self, w: Workload, dtype: str, steps: int, device: str = "cpu") -> None:
        super().__init__(w, dtype, steps, device)
        import jax
        import jax.numpy as jnp

        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        Ws, bs = self.initial_weights()
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(Ws, bs)]
        phi = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
               "identity": lambda z: z}[w.activation]
        softmax = w.output == "softmax"
        K = w.sizes[-1]

        def loss(params: Any, x: Any, y: Any) -> Any:
            a = x
            for W, b in params[:-1]:
                a = phi(a @ W.T + b)
            W, b = params[-1]
            z = a @ W.T + b
            if softmax:
                return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(jax.nn.one_hot(y, K) * z, 1))
            return 0.5 * jnp.mean(jnp.sum((z - y) ** 2, axis=1))

        kind = w.optimizer

        def step(state: Any, x: Any, y: Any) -> Any:
            params, s1, s2, t = state
            g = jax.grad(loss)(params, x, y)
            tree = jax.tree_util.tree_map
            if kind == "sgd":
                return tree(lambda p, d: p - LR * d, params, g), s1, s2, t
            if kind == "momentum":  # Eqn (16)
                v = tree(lambda v, d: BETA * v + (1 - BETA) * d, s1, g)
                return tree(lambda p, v: p - LR * v, params, v), v, s2, t
            t = t + 1
            m = tree(lambda m, d: 0.9 * m + 0.1 * d, s1, g)
            v = tree(lambda v, d: 0.999 * v + 0.001 * d * d, s2, g)
            c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
            new = tree(lambda p, m, v: p - ADAM_LR * (m / c1) / (jnp.sqrt(v / c2) + 1e-8),
                       params, m, v)
            return new, m, v, t

        zeros = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.params = (self.params, zeros, jax.tree_util.tree_map(jnp.zeros_like, self.params),
                       jnp.asarray(0, dtype=dtype))
        self.step = jax.jit(step, donate_argnums=0)
        X, y = w.data(steps, dtype)
        B = w.batch
        self.batches = [(jnp.asarray(X[i * B:(i + 1) * B]), jnp.asarray(y[i * B:(i + 1) * B]))
                        for i in range(steps)]
        self.jax = jax

    def run(self) -> None:
        params, step = self.params, self.step
        for xb, yb in self.batches:
            params = step(params, xb, yb)
        self.jax.block_until_ready(params)
        self.params = params


class SklearnRunner(Runner):
    """scikit-learn's MLP with solver="sgd" (no momentum, no L2): one ``partial_fit`` epoch."""

    name = "sklearn-mlp"

    def __init__(self, w: Workload, dtype: str, steps: int, device: str = "cpu") -> None:
        super().__init__(w, dtype, steps, device)
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        act = {"sigmoid": "logistic"}.get(w.activation, w.activation)
        kw = dict(hidden_layer_sizes=w.sizes[1:-1], activation=act, alpha=0.0,
                  batch_size=w.batch, shuffle=False, random_state=0,
                  solver="adam" if w.optimizer == "adam" else "sgd",
                  learning_rate_init=ADAM_LR if w.optimizer == "adam" else LR,
                  momentum=BETA if w.optimizer == "momentum" else 0.0, nesterovs_momentum=False)
        self.X, self.y = w.data(steps, dtype)
        if w.output == "softmax":
            self.model = MLPClassifier(**kw)
            self.model.partial_fit(self.X[:w.batch], self.y[:w.batch],
                                   classes=np.arange(w.sizes[-1]))
        else:
            self.model = MLPRegressor(**kw)
            if self.y.shape[1] == 1:
                self.y = self.y[:, 0]  # scikit-learn wants single-output targets as a vector
            self.model.partial_fit(self.X[:w.batch], self.y[:w.batch])

    def run(self) -> None:
        self.model.partial_fit(self.X, self.y)


class GemmFloor(Runner):
    """Only the matrix products one training step needs, with the backend's own BLAS."""

    name = "gemm-floor"
    kind = "floor"

    def __init__(self, w: Workload, dtype: str, steps: int, device: str = "cpu") -> None:
        super().__init__(w, dtype, steps, device)
        if device.startswith("cuda"):
            import cupy as xnp
        else:
            xnp = np
        self.xnp = xnp
        rng = np.random.default_rng(0)
        self.ops = []
        for m, k, n in w.gemm_shapes():
            a = xnp.asarray(rng.standard_normal((m, k)).astype(dtype))
            b = xnp.asarray(rng.standard_normal((k, n)).astype(dtype))
            self.ops.append((a, b, xnp.empty((m, n), dtype=dtype)))

    def run(self) -> None:
        matmul = self.xnp.matmul
        for _ in range(self.steps):
            for a, b, out in self.ops:
                matmul(a, b, out=out)
        if self.xnp is not np:
            self.xnp.cuda.get_current_stream().synchronize()


def runners_for(device: str = "cpu") -> list[tuple[str, Any]]:
    """(name, factory) of every contender available here for ``device`` ("cpu" or "cuda")."""
    out: list[tuple[str, Any]] = []
    if device == "cpu":
        from vnn.backends import loops

        if loops.installed():  # numba: the NumPy step's compiled loops
            out.append(("vnn-compiled", lambda w, d, s: VnnRunner(w, d, s, loops=True)))
        out.append(("vnn-numpy", lambda w, d, s: VnnRunner(w, d, s, loops=False)))
        if has("array_api_strict"):  # the standard and nothing more: the portable step's cost
            out.append(("vnn-array_api_strict",
                        lambda w, d, s: VnnRunner(w, d, s, backend="array_api_strict")))
        if has("torch"):
            out.append(("vnn-torch", lambda w, d, s: VnnRunner(w, d, s, backend="torch")))
            out.append(("torch-eager", lambda w, d, s: TorchRunner(w, d, s)))
        if has("jax"):
            out.append(("vnn-jax", lambda w, d, s: VnnRunner(w, d, s, backend="jax")))
            out.append(("jax-jit", lambda w, d, s: JaxRunner(w, d, s)))
        if has("sklearn"):
            out.append(("sklearn-mlp", lambda w, d, s: SklearnRunner(w, d, s)))
        out.append(("gemm-floor", lambda w, d, s: GemmFloor(w, d, s)))
    else:
        out.append(("vnn-cupy", lambda w, d, s: VnnRunner(w, d, s, device=device)))
        if has("torch"):
            out.append(("torch-eager", lambda w, d, s: TorchRunner(w, d, s, device=device)))
        out.append(("gemm-floor", lambda w, d, s: GemmFloor(w, d, s, device=device)))
    return out
