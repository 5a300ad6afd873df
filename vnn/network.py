"""``MLP``: the vanilla feedforward network of the derivation, on any Array API backend."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any, TypeVar

from vnn import backends, data, memory
from vnn.init import initial_weights, scheme_for
from vnn.math import activations, losses
from vnn.numbers import as_float, shown
from vnn.step import portable as backprop

if TYPE_CHECKING:
    from vnn.math.optimizers import Optimizer
    from vnn.train import History

Array = Any


class _Params(list):  # type: ignore[type-arg]
    """The list returned by ``net.weights`` / ``net.biases``: item assignment goes to the model."""

    def __init__(self, net: MLP, kind: str, items: Iterable[Array]) -> None:
        super().__init__(items)
        self._net, self._kind = net, kind

    def __setitem__(self, index: Any, value: Any) -> None:  # type: ignore[override]
        new = list(self)
        new[index] = value
        setattr(self._net, self._kind, new)
        super().__setitem__(index, getattr(self._net, self._kind)[index])


F = TypeVar("F", bound=Callable[..., Any])


def on_device(method: F) -> F:
    """Run a method of the model with its device current (CuPy allocates on the current GPU)."""

    @functools.wraps(method)
    def wrapper(self: MLP, *args: Any, **kwargs: Any) -> Any:
        with self.backend.activate():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _sizes(sizes: object) -> list[int]:
    try:
        out = list(sizes)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"sizes={sizes!r} is not a sequence; expected [m_0, m_1, ..., m_L]") from None
    if len(out) < 2:
        raise ValueError(f"sizes={out!r} needs at least two entries: [m_0, ..., m_L]")
    for i, m in enumerate(out):
        if isinstance(m, bool) or not isinstance(m, int) and not hasattr(m, "__index__"):
            raise TypeError(f"sizes[{i}]={m!r} is not an integer; expected a layer width >= 1")
        if int(m) < 1:
            raise ValueError(f"sizes[{i}]={m!r} is invalid; every layer width must be >= 1")
    return [int(m) for m in out]


class MLP:
    """A vanilla fully connected network with widths ``sizes = [m_0, ..., m_L]`` (§1.2).

    Parameters
    ----------
    sizes : widths ``[m_0, m_1, ..., m_L]``; layer ℓ has ``W`` of shape (m_ℓ, m_{ℓ−1}).
    activation : φ of the hidden layers: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or
        ``"identity"``, or a list with one name per hidden layer.
    output : ``"identity"`` (regression, Eqn 4), ``"sigmoid"`` (binary, Eqn 5), ``"softmax"``
        (multiclass, Eqn 6) or ``"exp"`` (counts and rates: ŷ = e^z with the Poisson loss, see
        :mod:`vnn.math.losses`).
    loss : ``None`` for the output's own loss, or ``"squared_error"``,
        ``"binary_cross_entropy"``, ``"cross_entropy"``, ``"poisson"`` for another valid
        pairing.
    init : ``None`` (He for ReLU layers, Glorot otherwise, §1.7), ``"he"`` or ``"glorot"``.
    device : ``"cpu"`` (NumPy), ``"cuda"`` / ``"cuda:N"`` (CuPy), or the device name of
        ``backend``.
    backend : ``None``, ``"numpy"``, ``"cupy"``, ``"torch"`` or ``"array_api_strict"``.
    dtype : ``"float32"`` (default) or ``"float64"``.
    seed : seeds the host generator that draws the initial weights and every batch order; the
        same seed gives the same numbers on every backend.

    A network whose parameters (with the float64 host draw of its initial weights, §1.7) would
    not fit in the backend's free memory is refused before anything is drawn, with
    :class:`vnn.ModelTooLargeError` (a ``ValueError`` and a ``MemoryError``) giving its size.
    """

    def __init__(self, sizes: Sequence[int], activation: str | Sequence[str] = "relu",
                 output: str = "identity", *, loss: str | None = None, init: str | None = None,
                 device: str | None = "cpu", backend: str | None = None,
                 dtype: str = "float32", seed: int | None = None) -> None:
        self._configure(sizes, activation, output, loss, init, device, backend, dtype, seed)
        layer_acts = [h.name for h in self._hidden] + [self._output.name]
        xp = self.xp
        with self._be.activate():
            self._W = []
            for W in initial_weights(self.rng, self._sizes, layer_acts, self._init):  # §1.7
                self._W.append(self._be.from_host(W, self._dtype_name))
                del W  # the float64 draw goes before the next layer's is made
            self._b = [xp.zeros((m,), dtype=self._dtype, device=self._be.device)
                       for m in self._sizes[1:]]

    @classmethod
    def from_parameters(cls, weights: Sequence[Any], biases: Sequence[Any],
                        activation: str | Sequence[str] = "relu", output: str = "identity", *,
                        loss: str | None = None, init: str | None = None,
                        device: str | None = "cpu", backend: str | None = None,
                        dtype: str = "float32", seed: int | None = None) -> MLP:
        """A network with these parameters (``weights[ℓ]`` of shape (m_ℓ, m_{ℓ−1}), NumPy or the
        backend's arrays), checked and copied once; no initial weights are drawn."""
        Ws = list(weights)
        if not Ws or any(len(getattr(w, "shape", ())) != 2 for w in Ws):
            raise ValueError("weights must be a non-empty list of 2-d arrays W(ℓ) of shape "
                             "(m_ℓ, m_{ℓ−1})")
        net = cls.__new__(cls)
        net._configure([int(Ws[0].shape[1])] + [int(w.shape[0]) for w in Ws], activation, output,
                       loss, init, device, backend, dtype, seed)
        net.weights, net.biases = Ws, biases
        return net

    def _configure(self, sizes: Sequence[int], activation: str | Sequence[str], output: str,
                   loss: str | None, init: str | None, device: str | None, backend: str | None,
                   dtype: str, seed: int | None) -> None:
        """Everything but the parameters, each argument checked before any work."""
        self._sizes = _sizes(sizes)
        self._hidden = _hidden(activation, len(self._sizes) - 2)
        self._output, self._loss = losses.resolve(output, loss)
        if self._output.name == "softmax" and self._sizes[-1] < 2:
            raise ValueError(f"output='softmax' needs m_L >= 2 classes; sizes[-1] is "
                             f"{self._sizes[-1]} (use output='sigmoid' for two classes)")
        scheme_for("relu", init)  # validates init before any work
        self._init = init
        if not isinstance(dtype, str):
            dtype = getattr(dtype, "name", str(dtype))
        self._be = backends.resolve(device, backend)
        self._dtype_name = dtype
        self._dtype = self._be.dtype(dtype)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral)
                                 or seed < 0):
            raise ValueError(f"seed={seed!r} is invalid; expected a non-negative integer or None")
        self.seed = None if seed is None else int(seed)
        memory.check_model(self._be, self._sizes, dtype, f"sizes={self._sizes}")  # before drawing
        #: train with the backend's preallocated fast step when it has one (NumPy, CuPy);
        #: False always uses the portable Array API step of vnn/step/portable.py
        self.fast_path = True
        self.rng = backends.host_rng(self.seed)

    # -- description -------------------------------------------------------------------------------
    @property
    def xp(self) -> Any:
        """The Array API namespace the model computes with."""
        return self._be.xp

    @property
    def backend(self) -> backends.Backend:
        """The array library and device the model lives on."""
        return self._be

    @property
    def device(self) -> str:
        return self._be.device_name

    @property
    def dtype(self) -> str:
        return self._dtype_name

    @property
    def sizes(self) -> list[int]:
        return list(self._sizes)

    @property
    def activation(self) -> list[str]:
        return [h.name for h in self._hidden]

    @property
    def output(self) -> str:
        return self._output.name

    @property
    def loss(self) -> str:
        return self._loss.name

    def __repr__(self) -> str:
        act = self.activation
        shown = act[0] if len(set(act)) == 1 else act
        return (f"MLP({self._sizes}, activation={shown!r}, output={self.output!r}, "
                f"loss={self.loss!r}, backend={self._be.name!r}, device={self.device!r}, "
                f"dtype={self.dtype!r})")

    # -- parameters ----------------------------------------------------------------------------------
    @property
    def weights(self) -> list[Array]:
        """W^(1..L), W^(ℓ) of shape (m_ℓ, m_{ℓ−1}); assign a list (or one item) to set them."""
        return _Params(self, "weights", self._W)

    @weights.setter
    def weights(self, values: Sequence[Any]) -> None:
        self._W = self._check_params(values, "weights", [(b, a) for a, b in
                                                         zip(self._sizes, self._sizes[1:])])

    @property
    def biases(self) -> list[Array]:
        """b^(1..L), b^(ℓ) of shape (m_ℓ,); assign a list (or one item) to set them."""
        return _Params(self, "biases", self._b)

    @biases.setter
    def biases(self, values: Sequence[Any]) -> None:
        self._b = self._check_params(values, "biases", [(m,) for m in self._sizes[1:]])

    @on_device
    def _check_params(self, values: Sequence[Any], name: str,
                      shapes: list[tuple[int, ...]]) -> list[Array]:
        values = list(values)
        if len(values) != len(shapes):
            raise ValueError(f"{name} has {len(values)} arrays; the network has {len(shapes)} layers")
        out = []
        for i, (v, shape) in enumerate(zip(values, shapes)):
            arr = self._be.accept(v, f"{name}[{i}]", self._dtype_name, copy=True)
            if tuple(arr.shape) != shape:
                raise ValueError(f"{name}[{i}] has shape {tuple(arr.shape)}; expected {shape}")
            out.append(arr)
        return out

    @property
    def n_parameters(self) -> int:
        return memory.parameter_count(self._sizes)

    # -- data ---------------------------------------------------------------------------------------
    def to_numpy(self, array: Any) -> Any:
        """Copy an array of this model's backend (an output, a weight) to a NumPy array."""
        return self._be.to_numpy(array)

    def save(self, path: Any, **kwargs: Any) -> None:
        """Write the model to ``path`` as a safetensors file; see :func:`vnn.io.save`."""
        from vnn.io import save

        save(self, path, **kwargs)

    # -- the math ----------------------------------------------------------------------------------
    def _forward(self, A: Array) -> Array:
        return self.propagate(A)[1][-1]

    @on_device
    def forward(self, X: Any) -> Array:
        """a^(L) for the batch ``X`` (n, m_0), Eqns (1)-(2): values, or probabilities for
        sigmoid/softmax outputs. Returned in the model's library, device and dtype.

        A batch whose activations would not fit in memory is run in chunks of rows (the same
        values: rows are independent); see :func:`vnn.memory.forward_rows`."""
        A = self.prepare(X)[0]
        n = A.shape[0]
        rows = memory.forward_rows(self._be, self._sizes, self._dtype_name, n)
        if rows >= n:
            return self._forward(A)
        return self.xp.concat([self._forward(A[i:i + rows, ...]) for i in range(0, n, rows)],
                              axis=0)

    __call__ = forward

    @on_device
    def predict_proba(self, X: Any) -> Array:
        """Class probabilities (n, m_L) of a sigmoid or softmax output."""
        if self.output not in ("sigmoid", "softmax"):
            raise ValueError("predict_proba needs a sigmoid or softmax output; this network's "
                             f"output is {self.output!r} (use forward or predict)")
        return self.forward(X)

    @on_device
    def predict(self, X: Any) -> Array:
        """Labels 0..K−1 (softmax), 0/1 (sigmoid; per column if m_L > 1) or values (identity,
        exp)."""
        xp = self.xp
        a = self.forward(X)
        if self.output == "softmax":
            return xp.argmax(a, axis=1)
        if self.output == "sigmoid":
            labels = xp.astype(a >= 0.5, xp.int64)
            return labels[:, 0] if self._sizes[-1] == 1 else labels
        return a[:, 0] if self._sizes[-1] == 1 else a

    # -- what the library's training code uses: prepared device arrays, nothing checked again ---
    @property
    def theta(self) -> list[Array]:
        """[W1, b1, ..., WL, bL]: the parameters themselves (not copies), in the order of the
        optimizer's state and of model files."""
        return [p for pair in zip(self._W, self._b) for p in pair]

    @theta.setter
    def theta(self, params: Sequence[Array]) -> None:
        """The parameters replaced by arrays already on the model's device with the same shapes
        (a step's result, a restored snapshot): not checked or copied."""
        self._W, self._b = list(params[0::2]), list(params[1::2])

    def prepare(self, X: Any, y: Any = None, sample_weight: Any = None, *, x_name: str = "X",
                y_name: str = "y", weight_name: str = "sample_weight") -> tuple[Any, Any, Any]:
        """(A, Y, V): inputs (n, m_0), targets (n, m_L) (labels one-hot) and sample weights (n,)
        on the model's device and dtype, each checked once, here; None where not given."""
        A = data.inputs(self._be, X, self._sizes[0], self._dtype_name, x_name)
        n = A.shape[0]
        Y = None if y is None else data.targets(self._be, y, n, self._sizes[-1], self.output,
                                                self._dtype_name, y_name)
        V = None if sample_weight is None else data.sample_weights(
            self._be, sample_weight, n, self._dtype_name, weight_name)
        return A, Y, V

    def propagate(self, A: Array) -> tuple[list[Array], list[Array]]:
        """Eqns (1)-(2) on a prepared batch: z(1..L) and a(0..L)."""
        return backprop.forward(self.xp, self._W, self._b, self._hidden, self._output, A)

    def risk(self, A: Array, Y: Array, lam: float, v: Array | None = None) -> Array:
        """Eqn (3) on a prepared batch, a 0-d array on the device."""
        Zs, As = self.propagate(A)
        return backprop.risk(self.xp, self._loss, Zs, As, Y, self._W, lam, v)

    def gradients(self, A: Array, Y: Array, lam: float, v: Array | None = None
                  ) -> tuple[Array, list[tuple[Array, Array]]]:
        """Eqn (3) and ``[(dW, db), ...]`` of Eqn (14) on a prepared batch (the portable step)."""
        return backprop.loss_and_gradients(self.xp, self._W, self._b, self._hidden, self._output,
                                           self._loss, A, Y, lam, v)

    @property
    def init(self) -> str | None:
        """The initialisation asked for (None: §1.7's choice per layer)."""
        return self._init

    @on_device
    def loss_and_gradients(self, X: Any, y: Any, l2: float = 0.0, sample_weight: Any = None
                           ) -> tuple[float, list[tuple[Array, Array]]]:
        """Eqn (3) on this batch, and ``grads[ℓ] = (dW, db)`` of Eqn (14) averaged over it.

        ``dW`` includes λW; ``db`` does not (biases are not regularised). With ``sample_weight``
        (n,) the average over the batch is weighted: Σ_i v_i ℓ_i / Σ_i v_i.
        """
        lam = check_l2(l2)
        A, Y, V = self.prepare(X, y, sample_weight)
        J, grads = self.gradients(A, Y, lam, V)
        return float(self._be.to_numpy(J)), grads

    @on_device
    def fit(self, X: Any, y: Any, optimizer: Optimizer | None = None, epochs: int = 10,
            batch_size: int | None = None, l2: float = 0.0, shuffle: bool = True,
            validation_data: tuple[Any, Any] | None = None, progress: bool = False,
            callback: Callable[[int, History], Any] | None = None,
            sample_weight: Any = None, on_nonfinite: str = "raise", checkpoint: Any = None,
            checkpoint_every: int = 1, resume: Any = None, distributed: Any = False,
            early_stopping: int | None = None) -> History:
        """Train with mini-batches as in Algorithm 1.9; see :func:`vnn.train.fit` (divergence,
        Ctrl-C, ``checkpoint=``, ``resume=`` and ``distributed=`` are described there)."""
        from vnn.train import fit

        return fit(self, X, y, optimizer=optimizer, epochs=epochs, batch_size=batch_size, l2=l2,
                   shuffle=shuffle, validation_data=validation_data, progress=progress,
                   callback=callback, sample_weight=sample_weight, on_nonfinite=on_nonfinite,
                   checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
                   distributed=distributed, early_stopping=early_stopping)


def check_l2(l2: object) -> float:
    """λ of Eqn (3): a finite number >= 0."""
    lam = as_float(l2)
    if lam is None or not (0.0 <= lam < math.inf):
        raise ValueError(f"l2={shown(l2)} is invalid; expected a finite number >= 0 (λ of Eqn 3)")
    return lam


def _hidden(activation: object, n_hidden: int) -> list[activations.Activation]:
    """φ of each hidden layer from one name, or from a list of ``n_hidden`` names."""
    if isinstance(activation, str):
        return [activations.get(activation, "activation")] * n_hidden
    try:
        names = list(activation)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"activation={activation!r} is not known; expected one of "
                         f"{sorted(activations.HIDDEN)} or a list of {n_hidden} of them, one per "
                         "hidden layer") from None
    if len(names) != n_hidden:
        raise ValueError(f"activation has {len(names)} entries but the network has {n_hidden} "
                         f"hidden layers; give one name or a list of {n_hidden}")
    return [activations.get(n, f"activation[{i}]") for i, n in enumerate(names)]
