"""Algorithm 1.9's training step on preallocated buffers, for libraries with NumPy's API.

The portable reference is ``vnn/backprop.py`` (written against the Array API, allocating new
arrays). This module computes the same equations for NumPy and CuPy with ``out=`` buffers that are
allocated once per batch size and reused every step. Tests check that both give the same numbers.

Layout, as the derivation writes it: a sample is a column. A batch of n samples is the matrix
a(ℓ) of shape (m_ℓ, n), stored with one extra row of ones, â(ℓ) = [a(ℓ); 1ᵀ], and layer ℓ keeps
Θ(ℓ) = [W(ℓ) | b(ℓ)] of shape (m_ℓ, m_{ℓ−1} + 1) in one flat buffer for all layers. Then

- Eqn (1) is one product per layer, z(ℓ) = Θ(ℓ) â(ℓ−1), the bias included;
- Eqn (14) is one product per layer, [∂W | ∂b] = δ(ℓ) â(ℓ−1)ᵀ / |B|, the bias gradient included;
- Eqn (13) is (W(ℓ+1))ᵀ δ(ℓ+1), reading W as the strided view Θ[:, :-1] (BLAS takes it as is);
- every elementwise operation (φ, φ′, softmax) runs on contiguous (m_ℓ, n) arrays;
- an optimizer update is a handful of calls on the flat buffer, however many layers there are.

The model's ``weights`` and ``biases`` are views into the flat buffer. Only the canonical
output/loss pairings (Eqns 10-12) take this path; other pairings use the portable one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Array = Any
Ops = list[tuple[Any, tuple[Any, ...], Any]]

CANONICAL = {"identity": "squared_error", "sigmoid": "binary_cross_entropy",
             "softmax": "cross_entropy"}


class _Workspace:
    """Buffers for one batch size ``n``, samples as columns: â(0..L−1), z(L), δ, φ′, scratch.

    Kept small so that a step's data stays in cache: a hidden layer's z(ℓ) is never stored (Eqn 1
    writes into the rows of â(ℓ) and φ is applied there; every φ′ is computed from a = φ(z)).
    All â(ℓ) lie one after another in one buffer, so that φ′ of a run of hidden layers with the
    same activation is one call over all of them (the rows of ones give harmless values that are
    never read), and the â(ℓ−1) of a run of layers of equal shape form one stack for one batched
    Eqn (14). The δ(ℓ) of such a run are kept in a stack too; other hidden δ(ℓ) alternate between
    two buffers (Eqn 13 needs only δ(ℓ+1)).
    """

    def __init__(self, xnp: Any, n: int, sizes: list[int], dtype: Any,
                 hidden: list[str], phi_prime: bool = True) -> None:
        """With ``phi_prime`` false no φ′ buffers are made (a step that fuses φ′ into δ)."""
        L = len(sizes) - 1
        self.n = n
        H = xnp.ones((sum((m + 1) * n for m in sizes[:L]),), dtype=dtype)
        offs = [0]
        for m in sizes[:L]:
            offs.append(offs[-1] + (m + 1) * n)
        self.Ahat = [H[offs[i]:offs[i + 1]].reshape(m + 1, n) for i, m in enumerate(sizes[:L])]
        self.A = [a[:-1] for a in self.Ahat]  # a(ℓ): the first m_ℓ rows, contiguous
        self.Y = xnp.empty((sizes[-1], n), dtype=dtype)
        self.ZL = xnp.empty((sizes[-1], n), dtype=dtype)  # z(L), the logits
        self.DL = xnp.empty((sizes[-1], n), dtype=dtype)  # δ(L) / |B|
        self.TL = xnp.empty((sizes[-1], n), dtype=dtype)  # scratch of the loss
        # φ′ of hidden layer ℓ (0-based: of â(ℓ+1)) in the same layout as â(1..L−1): a float
        # buffer for tanh and sigmoid, a boolean one for ReLU masks, made only when used
        hid = H[offs[1]:]
        self.phi_groups: list[tuple[str, Any, Any]] = []  # (activation, â slice, φ′ slice)
        self.T: list[Any] = []
        flat = {k: (xnp.empty(hid.shape, dtype=dtype if k == "float" else bool)
                    if phi_prime and any(_phi_kind(h) == k for h in hidden) else None)
                for k in ("float", "bool")}
        for first, last in _runs(hidden):
            lo, hi = offs[first + 1] - offs[1], offs[last + 2] - offs[1]
            kind = _phi_kind(hidden[first])
            buf = flat[kind] if kind else None
            self.phi_groups.append((hidden[first], hid[lo:hi], None if buf is None else buf[lo:hi]))
        for ell, m in enumerate(sizes[1:L]):
            kind = _phi_kind(hidden[ell])
            buf = flat[kind] if kind else None
            lo = offs[ell + 1] - offs[1]
            self.T.append(None if buf is None else buf[lo:lo + m * n].reshape(m, n))
        # δ(ℓ) / |B| of hidden layer ℓ (0-based): stacked for runs of equal shape, else in the
        # pair buffer ℓ mod 2; then δ(L)
        shapes = [(sizes[i + 1], sizes[i]) for i in range(L - 1)]
        self.D: list[Any] = [None] * (L - 1)
        self.stacks: list[tuple[int, int, Any, Any]] = []  # (first, last, δ stack, â stack)
        single = list(range(L - 1))  # layers whose δ is not in a stack
        for first, last in _runs(shapes):
            if last == first:
                continue
            (m, k), c = shapes[first], last - first + 1
            Ds = xnp.empty((c, m, n), dtype=dtype)
            As = H[offs[first]:offs[last + 1]].reshape(c, k + 1, n)
            self.stacks.append((first, last, Ds, As))
            for i in range(c):
                self.D[first + i] = Ds[i]
                single.remove(first + i)
        widest = max((sizes[ell + 1] for ell in single), default=1) * n
        pair = [xnp.empty((widest,), dtype=dtype) for _ in range(2 if single else 0)]
        for ell in single:
            self.D[ell] = pair[ell % 2][:sizes[ell + 1] * n].reshape(sizes[ell + 1], n)
        self.D.append(self.DL)
        # zeros for ReLU, max(z, 0): NumPy's maximum is several times faster against an array
        # than against the scalar 0
        relu = [ell for ell, h in enumerate(hidden) if h == "relu"]
        zero = xnp.zeros((max((sizes[ell + 1] for ell in relu), default=0) * n,), dtype=dtype)
        self.Zero = [zero[:m * n].reshape(m, n) if h == "relu" else 0
                     for m, h in zip(sizes[1:L], hidden)]
        self.r1 = xnp.empty((1, n), dtype=dtype)
        self.r2 = xnp.empty((1, n), dtype=dtype)
        self.ones = xnp.ones((1, n), dtype=dtype)  # Σ over a row as a dot product
        self.inv_n = dtype.type(1.0 / n)
        self.scale = self.inv_n  # what δ(L) is multiplied by this step (NDArrayStep.__call__)
        self.lam = 0.0  # λ of Eqn (3) for a batch of this size
        # the calls of one step, buffers bound (NDArrayStep._plan)
        self.forward: list[tuple[Any, tuple[Any, ...]]] = []
        self.backward: list[tuple[Any, tuple[Any, ...]]] = []


def _runs(items: list[Any]) -> list[tuple[int, int]]:
    """(first, last) index of each maximal run of equal consecutive items."""
    runs: list[tuple[int, int]] = []
    for i, item in enumerate(items):
        if runs and items[runs[-1][1]] == item:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _phi_kind(name: str) -> str | None:
    """The buffer φ′ of an activation needs: float values, a boolean mask, or none."""
    return {"relu": "bool", "tanh": "float", "sigmoid": "float"}.get(name)


class NDArrayStep:
    """One mini-batch step (Algorithm 1.9, 3(a)-(e)) for a NumPy-API module ``xnp``."""

    #: φ′ of a run of hidden layers in one call after the forward pass (else per layer)
    stacked_phi_prime = True

    def __init__(self, xnp: Any, W: list[Array], b: list[Array], hidden: list[str],
                 output: str, lam: float, optimizer: Any, take: Callable[..., Any],
                 l2_per_sample: bool = False) -> None:
        """``W`` and ``b`` are the model's parameter lists; their items are replaced by views of
        the flat buffer. With ``l2_per_sample`` the λ of a batch of n samples is ``lam / n``
        (scikit-learn's ``alpha``)."""
        self.xnp, self.hidden, self.output, self.lam = xnp, hidden, output, lam
        self.l2_per_sample = l2_per_sample
        self.optimizer, self._take = optimizer, take
        self.dtype = W[0].dtype
        self.sizes = [W[0].shape[1]] + [w.shape[0] for w in W]
        L = len(W)
        self._offsets = [0]  # where Θ(ℓ) starts in a flat buffer
        for i in range(L):
            self._offsets.append(self._offsets[-1] + self.sizes[i + 1] * (self.sizes[i] + 1))
        self.P, self.Theta = self._flat(list(W), list(b))
        self.W = [t[:, :-1] for t in self.Theta]
        self.b = [t[:, -1] for t in self.Theta]
        # The caller's lists now hold views of the flat buffer, so the old parameter arrays are
        # released before the gradient and state buffers are allocated (peak memory).
        shapes = [tuple(p.shape) for pair in zip(W, b) for p in pair]
        W[:], b[:] = self.W, self.b
        self.G, self.dTheta = self._flat(None, None)
        self.dW = [t[:, :-1] for t in self.dTheta]
        self.tmpW: list[Array] = []  # scratch of Eqn (14)'s λW, made by the first plan that needs it
        # optimizer state: flat buffers of the same layout, seen by the optimizer per parameter
        old = optimizer.state
        keep = len(old) == optimizer.n_state and all(
            len(s) == 2 * L and all(tuple(a.shape) == sh for a, sh in zip(s, shapes)) for s in old)
        if not keep:
            optimizer.t = 0
        self.state, per_param = [], []
        for k in range(optimizer.n_state):
            flat, thetas = self._flat(old[k][0::2] if keep else None,
                                      old[k][1::2] if keep else None)
            self.state.append([flat])
            per_param.append([v for t in thetas for v in (t[:, :-1], t[:, -1])])
        optimizer.state = per_param
        self._ws: dict[int, _Workspace] = {}
        #: data-parallel training: reduce(G, n) turns this rank's gradient into the global one
        self.reduce: Callable[[Array, int], None] | None = None
        self._one, self._half = self.dtype.type(1.0), self.dtype.type(0.5)

    def _flat(self, W: list[Array] | None, b: list[Array] | None) -> tuple[Array, list[Array]]:
        """A zeroed flat buffer and its Θ(ℓ) views, filled from ``W``, ``b`` when given."""
        s, off = self.sizes, self._offsets
        flat = self.xnp.zeros((off[-1],), dtype=self.dtype)
        views = []
        for i in range(len(s) - 1):
            t = flat[off[i]:off[i + 1]].reshape(s[i + 1], s[i] + 1)
            if W is not None and b is not None:
                t[:, :-1] = W[i]
                t[:, -1] = b[i]
            views.append(t)
        return flat, views

    def workspace(self, n: int) -> _Workspace:
        ws = self._ws.get(n)
        if ws is None:
            ws = self._ws[n] = _Workspace(self.xnp, n, self.sizes, self.dtype, self.hidden,
                                          self.stacked_phi_prime)
            ws.lam = self.lam / n if self.l2_per_sample else self.lam
            self._plan(ws)
        return ws

    def __call__(self, A_all: Array, Y_all: Array, rows: Any) -> Any:
        """Train on the rows ``rows`` (an index array, or a slice) of (A_all, Y_all), whose rows
        are samples; returns J_B of Eqn (3) (a device scalar for CuPy, a NumPy scalar for NumPy)."""
        n = (rows.stop - rows.start) if isinstance(rows, slice) else int(rows.shape[0])
        eta = self._folded_lr()
        if n == 0:  # an empty shard of a distributed batch: no gradient of its own
            self.G[...] = 0
            J: Any = 0.0
        else:
            ws = self.workspace(n)
            ws.scale = ws.inv_n if eta is None else self.dtype.type(eta / n)
            if isinstance(rows, slice):
                ws.A[0][...] = A_all[rows].T  # samples become columns
                ws.Y[...] = Y_all[rows].T
            else:
                self._take(A_all.T, rows, ws.A[0])
                self._take(Y_all.T, rows, ws.Y)
            J = self._forward_loss_delta(ws)
            self._backward(ws)
        if self.reduce is not None:  # data-parallel: the global batch's gradient on every rank
            self.reduce(self.G, n)
        self.optimizer.t += 1
        if eta is None:
            self._update()  # step 3(e)
        else:
            self.P -= self.G  # Eqn (15), η already inside G
        return J

    def _folded_lr(self) -> float | None:
        """η of plain SGD (Eqn 15) without L2, which this step folds into δ(L)'s 1/|B| so that
        Eqn (14) yields η ∇̂θ and the update is one subtraction; None for any other update."""
        opt = self.optimizer
        spec = opt.fused(opt.t + 1) if hasattr(opt, "fused") else None
        if spec is None or spec[0] != "sgd" or self.lam:
            return None
        return float(spec[1][0])

    def _update(self) -> None:
        """Step 3(e): the optimizer's in-place update of the flat parameter buffer."""
        opt = self.optimizer
        opt.update(self.xnp, [self.P], [self.G], self.state, opt.t, True)

    # -- step 3(a)-(c): forward (Eqns 1-2), loss (Eqns 3-6), δ(L) (Eqns 10-12) --------------------
    def _forward_loss_delta(self, ws: _Workspace) -> Any:
        for f, args in ws.forward:  # Eqns (1)-(2) for ℓ = 1 .. L−1, then z(L) = Θ(L) â(L−1)
            f(*args)
        J = self._loss_delta(ws) / ws.n
        if ws.lam:  # Eqn (3): + λ/2 Σ ‖W(ℓ)‖²_F (weights only)
            xnp = self.xnp
            J = J + 0.5 * ws.lam * sum(xnp.vdot(t, t) - xnp.vdot(b, b)
                                         for t, b in zip(self.Theta, self.b))
        return J

    def _loss_delta(self, ws: _Workspace) -> Any:
        """δ(L) / |B| into ``ws.DL``; returns the batch's summed loss, |B| times Eqn (3)'s mean."""
        xnp, Y, Z, D = self.xnp, ws.Y, ws.ZL, ws.DL
        if self.output == "softmax":
            # Eqn (6) from logits and Eqn (12): δ(L) = p − e_y, p = exp(z − max) / Σ exp(z − max)
            mx, s, E = ws.r1, ws.r2, ws.TL
            xnp.maximum.reduce(Z, 0, None, mx, True)  # the ufuncs themselves: less overhead
            xnp.subtract(Z, mx, E)
            xnp.exp(E, E)
            xnp.add.reduce(E, 0, None, s, True)
            xnp.divide(E, s, D)
            D -= Y
            J = _softmax_loss(xnp, Z, Y, mx, s, ws.ones)
        elif self.output == "sigmoid":
            # Eqn (11): δ(L) = σ(z) − y
            for f, args, out in _phi_ops(xnp, "sigmoid", Z, D, self._half):
                f(*args, out)
            D -= Y
            J = self._sigmoid_loss(ws)
        else:
            # Eqn (4), ½‖a − y‖², and Eqn (10): δ(L) = a − y (identity output)
            xnp.subtract(Z, Y, out=D)
            J = 0.5 * xnp.vdot(D, D)
        D *= ws.scale  # average over the batch once, here, instead of in every Eqn (14)
        return J

    def _sigmoid_loss(self, ws: _Workspace) -> Any:
        """Eqn (5) from the logit: Σ softplus(z) − y z, with softplus(z) = log1p(e^{−|z|}) +
        max(z, 0). Overwrites z(L), which is not needed after δ(L)."""
        xnp, Z, T = self.xnp, ws.ZL, ws.TL
        xnp.abs(Z, out=T)
        xnp.negative(T, out=T)
        xnp.exp(T, out=T)
        xnp.log1p(T, out=T)
        yz = xnp.vdot(Z, ws.Y)
        xnp.maximum(Z, 0, out=Z)
        return T.sum() + Z.sum() - yz

    # -- step 3(c)-(d): Eqn (13) down the layers, Eqn (14) per layer --------------------------------
    def _backward(self, ws: _Workspace) -> None:
        for f, args in ws.backward:
            f(*args)

    def _plan(self, ws: _Workspace) -> None:
        """The calls of one step's forward and backward passes, with their buffers bound, built
        once per workspace so that a step is a flat loop over them (no per-layer Python logic)."""
        xnp, L, lam = self.xnp, len(self.W), ws.lam
        fwd: Ops = []
        for ell in range(L - 1):  # Eqn (1), z = Θ â, into the rows of â(ℓ); Eqn (2) in place
            A = ws.A[ell + 1]
            fwd.append((xnp.matmul, (self.Theta[ell], ws.Ahat[ell]), A))
            fwd += _phi_ops(xnp, self.hidden[ell], A, A, self._half, ws.Zero[ell])
        fwd.append((xnp.matmul, (self.Theta[L - 1], ws.Ahat[L - 1]), ws.ZL))  # z(L)
        fwd += self._phi_prime_forward(ws)
        stacked = {first: (last, Ds, As) for first, last, Ds, As in ws.stacks}
        in_stack = {ell for first, last, _, _ in ws.stacks for ell in range(first, last + 1)}
        bwd: Ops = []
        for ell in range(L - 1, -1, -1):
            D = ws.D[ell]
            if ell not in in_stack:  # Eqn (14): δ âᵀ / |B|
                bwd.append((xnp.matmul, (D, ws.Ahat[ell].T), self.dTheta[ell]))
                bwd += self._decay(ell, lam)
            if ell:
                Dp = ws.D[ell - 1]
                bwd.append((xnp.matmul, (self.W[ell].T, D), Dp))  # Eqn (13): (W(ℓ+1))ᵀ δ(ℓ+1) ...
                bwd += self._phi_prime_backward(ws, ell - 1, Dp)  # ... ⊙ φ′(z(ℓ))
            if ell in stacked:  # Eqn (14) for a run of layers of equal shape: one batched product
                last, Ds, As = stacked[ell]
                dT = self.G[self._offsets[ell]:self._offsets[last + 1]].reshape(
                    last - ell + 1, *self.dTheta[ell].shape)
                bwd.append((xnp.matmul, (Ds, As.transpose(0, 2, 1)), dT))
                for k in range(ell, last + 1):
                    bwd += self._decay(k, lam)
        ws.forward = [(self._bind(f), (*args, out)) for f, args, out in fwd]
        ws.backward = [(self._bind(f), (*args, out)) for f, args, out in bwd]

    def _bind(self, f: Any) -> Any:
        """``f`` as a plan calls it: output last among the positional arguments, which NumPy's
        ufuncs take without the cost of a keyword (``_phi_ops`` wraps the exceptions)."""
        return f

    def _phi_prime_forward(self, ws: _Workspace) -> Ops:
        """φ′(z(ℓ)) of every hidden layer, a run of layers with one activation per call."""
        ops: Ops = []
        for name, Ahid, T in ws.phi_groups:
            ops += _dphi_ops(self.xnp, name, Ahid, T, self._one)
        return ops

    def _phi_prime_backward(self, ws: _Workspace, ell: int, Dp: Array) -> Ops:
        """δ(ℓ) ⊙= φ′(z(ℓ)) of hidden layer ``ell`` (0-based), with φ′ from the forward pass."""
        T = ws.T[ell]
        return [] if T is None else [(self.xnp.multiply, (Dp, T), Dp)]

    def _decay(self, ell: int, lam: float) -> Ops:
        """Eqn (14)'s + λ W(ℓ), when λ ≠ 0."""
        if not lam:
            return []
        if not self.tmpW:
            self.tmpW = [self.xnp.empty(w.shape, dtype=self.dtype) for w in self.W]
        return [(self.xnp.multiply, (self.W[ell], self.dtype.type(lam)), self.tmpW[ell]),
                (self.xnp.add, (self.dW[ell], self.tmpW[ell]), self.dW[ell])]


# -- φ (Eqn 2) and δ ⊙= φ′(z) (Eqn 13) for each activation, as calls into preallocated buffers -------


def _phi_ops(xnp: Any, name: str, Z: Array, out: Array, half: Any, zero: Any = 0) -> Ops:
    """a = φ(z) into ``out`` (which may be ``Z`` itself); ``zero``: 0, or zeros shaped as z."""
    if name == "relu":  # NumPy takes maximum's output only as a keyword
        return [(_OutKeyword(xnp.maximum), (Z, zero), out)]
    if name == "tanh":
        return [(xnp.tanh, (Z,), out)]
    if name == "sigmoid":  # σ(u) = (1 + tanh(u/2)) / 2: equals 1 / (1 + e^{−u}), never overflows
        return [(xnp.multiply, (Z, half), out), (xnp.tanh, (out,), out),
                (xnp.multiply, (out, half), out), (xnp.add, (out, half), out)]
    return [] if out is Z else [(xnp.positive, (Z,), out)]  # identity


class _OutKeyword:
    """``f(*args, out)`` called as ``f(*args, out=out)``."""

    __slots__ = ("f",)

    def __init__(self, f: Any) -> None:
        self.f = f

    def __call__(self, *args: Any) -> Any:
        return self.f(*args[:-1], out=args[-1])


def _softmax_loss(xnp: Any, Z: Array, Y: Array, mx: Array, s: Array, ones: Array) -> Any:
    """Eqn (6) from logits, summed over the batch: Σ logsumexp(z) − z·y, given the column
    maxima ``mx`` and the sums ``s`` of exp(z − mx) (``s`` is overwritten; ``ones`` like ``s``)."""
    xnp.log(s, out=s)
    s += mx  # logsumexp(z) per sample
    return xnp.vdot(s, ones) - xnp.vdot(Z, Y)


def _dphi_ops(xnp: Any, name: str, A: Array, T: Array, one: Any) -> Ops:
    """φ′(z) into ``T``, computed from a = φ(z) (``A`` of any shape, ``T`` alike)."""
    if name == "relu":  # φ′ = 1 where z > 0, which is where a = max(z, 0) > 0: a boolean mask
        return [(xnp.greater, (A, 0), T)]
    if name == "tanh":  # φ′ = 1 − a²
        return [(xnp.multiply, (A, A), T), (xnp.subtract, (one, T), T)]
    if name == "sigmoid":  # φ′ = a (1 − a)
        return [(xnp.subtract, (one, A), T), (xnp.multiply, (T, A), T)]
    return []  # identity: φ′ = 1
