"""Algorithm 1.9's training step on preallocated buffers, for libraries with NumPy's API.

The portable reference is ``vnn/backprop.py`` (written against the Array API, allocating new
arrays). This module computes the same equations for NumPy and CuPy with ``out=`` buffers that are
allocated once per batch size and reused every step: no allocation, no copy of ``Wᵀ`` (BLAS reads
the transposed view) and one flat parameter / gradient / optimizer-state buffer so that an update is
a handful of calls however many layers there are. Tests check that both give the same numbers.

Only the canonical output/loss pairings (Eqns 10-12) take this path; other pairings use the
portable one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Array = Any

CANONICAL = {"identity": "squared_error", "sigmoid": "binary_cross_entropy",
             "softmax": "cross_entropy"}


class _Workspace:
    """Buffers for one batch size ``n``: a(0) (the gathered batch), targets, z, a, δ, temporaries."""

    def __init__(self, xnp: Any, n: int, sizes: list[int], dtype: Any) -> None:
        L = len(sizes) - 1
        self.n = n
        self.X = xnp.empty((n, sizes[0]), dtype=dtype)
        self.Y = xnp.empty((n, sizes[-1]), dtype=dtype)
        self.Z = [xnp.empty((n, m), dtype=dtype) for m in sizes[1:]]
        self.A = [xnp.empty((n, m), dtype=dtype) for m in sizes[1:]]  # a(1)..a(L)
        self.D = [xnp.empty((n, m), dtype=dtype) for m in sizes[1:]]  # δ(1)..δ(L), /n
        self.T = [xnp.empty((n, m), dtype=dtype) for m in sizes[1:L]]  # φ′ temporaries
        self.M = [xnp.empty((n, m), dtype=bool) for m in sizes[1:L]]  # ReLU masks
        self.r1 = xnp.empty((n, 1), dtype=dtype)
        self.r2 = xnp.empty((n, 1), dtype=dtype)


class NDArrayStep:
    """One mini-batch step (Algorithm 1.9, 3(a)-(e)) for NumPy-API modules ``xnp``.

    The model's parameters are moved into one flat buffer; ``self.W`` / ``self.b`` are views of it
    that the model keeps. The optimizer's state likewise becomes views of flat buffers.
    """

    def __init__(self, xnp: Any, W: list[Array], b: list[Array], hidden: list[str],
                 output: str, lam: float, optimizer: Any, take: Callable[..., Any]) -> None:
        self.xnp, self.hidden, self.output, self.lam = xnp, hidden, output, lam
        self.optimizer, self._take = optimizer, take
        self.dtype = W[0].dtype
        self.sizes = [W[0].shape[1]] + [w.shape[0] for w in W]
        shapes = [tuple(w.shape) for w in W] + [tuple(v.shape) for v in b]
        self.P, views = self._flat(shapes, list(W) + list(b))
        L = len(W)
        self.W, self.b = views[:L], views[L:]
        self.nW = sum(w.size for w in W)  # weights come first in the flat buffer
        self.G, gviews = self._flat(shapes, None)
        self.dW, self.db = gviews[:L], gviews[L:]
        self.tmpW = xnp.empty((self.nW,), dtype=self.dtype) if lam else None
        # optimizer state: flat buffers, exposed to the optimizer as per-parameter views
        order = [i for layer in range(L) for i in (layer, L + layer)]  # [W1, b1, W2, b2, ...]
        old = optimizer.state
        self.state = []
        per_param = []
        for k in range(optimizer.n_state):
            keep = (len(old) == optimizer.n_state and len(old[k]) == 2 * L
                    and all(tuple(old[k][j].shape) == shapes[order[j]] for j in range(2 * L)))
            init = [old[k][order.index(i)] for i in range(2 * L)] if keep else None
            flat, v = self._flat(shapes, init)
            self.state.append([flat])
            per_param.append([v[i] for i in order])
        if optimizer.n_state and len(old) != optimizer.n_state:
            optimizer.t = 0
        optimizer.state = per_param
        self._ws: dict[int, _Workspace] = {}

    def _flat(self, shapes: list[tuple[int, ...]], init: list[Array] | None
              ) -> tuple[Array, list[Array]]:
        xnp = self.xnp
        total = sum(_prod(s) for s in shapes)
        flat = xnp.zeros((total,), dtype=self.dtype)
        views, off = [], 0
        for i, s in enumerate(shapes):
            v = flat[off:off + _prod(s)].reshape(s)
            if init is not None:
                v[...] = init[i]
            views.append(v)
            off += _prod(s)
        return flat, views

    def workspace(self, n: int) -> _Workspace:
        ws = self._ws.get(n)
        if ws is None:
            ws = self._ws[n] = _Workspace(self.xnp, n, self.sizes, self.dtype)
        return ws

    def __call__(self, A_all: Array, Y_all: Array, rows: Any) -> Any:
        """Train on the rows ``rows`` (an index array, or a slice) of (A_all, Y_all); returns
        J_B of Eqn (3) (a device scalar for CuPy, a NumPy scalar for NumPy)."""
        xnp = self.xnp
        if isinstance(rows, slice):
            X, Y = A_all[rows], Y_all[rows]
            n = X.shape[0]
            ws = self.workspace(n)
        else:
            n = rows.shape[0]
            ws = self.workspace(n)
            X, Y = self._take(A_all, rows, ws.X), self._take(Y_all, rows, ws.Y)
        J = self._forward_loss_delta(ws, X, Y)
        self._backward(ws, X)
        if self.lam:
            xnp.multiply(self.P[:self.nW], self.lam, out=self.tmpW)
            self.G[:self.nW] += self.tmpW  # Eqn (14): + λ W(ℓ)
        opt = self.optimizer
        opt.t += 1
        opt.update(xnp, [self.P], [self.G], self.state, opt.t, True)  # step 3(e)
        return J

    # -- step 3(a)-(c): forward (Eqns 1-2), loss (Eqns 3-6), δ(L) (Eqns 10-12) --------------------
    def _forward_loss_delta(self, ws: _Workspace, X: Array, Y: Array) -> Any:
        xnp, L = self.xnp, len(self.W)
        A = X
        for ell in range(L):
            Z = ws.Z[ell]
            xnp.matmul(A, self.W[ell].T, out=Z)  # Eqn (1): z = W a + b, rows: Z = A Wᵀ + b
            Z += self.b[ell]
            if ell < L - 1:
                A = _phi(xnp, self.hidden[ell], Z, ws.A[ell])  # Eqn (2)
        n = ws.n
        D = ws.D[-1]
        if self.output == "softmax":
            # Eqn (6) from logits and Eqn (12): δ(L) = p − e_y, p = exp(z − max) / Σ exp(z − max)
            mx, s, E = ws.r1, ws.r2, ws.A[-1]
            Z.max(axis=1, keepdims=True, out=mx)
            xnp.subtract(Z, mx, out=E)
            xnp.exp(E, out=E)
            E.sum(axis=1, keepdims=True, out=s)
            xnp.divide(E, s, out=D)
            D -= Y
            xnp.log(s, out=s)
            s += mx  # logsumexp(z) per row
            J = s.sum() - xnp.vdot(Z, Y)
        elif self.output == "sigmoid":
            # Eqn (5) from the logit, softplus(z) − y z, and Eqn (11): δ(L) = σ(z) − y
            _phi(xnp, "sigmoid", Z, D)
            D -= Y
            T = ws.A[-1]
            xnp.abs(Z, out=T)
            xnp.negative(T, out=T)
            xnp.exp(T, out=T)
            xnp.log1p(T, out=T)
            J = T.sum() + xnp.maximum(Z, 0).sum() - xnp.vdot(Z, Y)
        else:
            # Eqn (4), ½‖a − y‖², and Eqn (10): δ(L) = a − y (identity output)
            xnp.subtract(Z, Y, out=D)
            J = 0.5 * xnp.vdot(D, D)
        D *= 1.0 / n  # average over the batch once, here, instead of in every Eqn (14)
        J = J / n
        if self.lam:
            J = J + 0.5 * self.lam * xnp.vdot(self.P[:self.nW], self.P[:self.nW])  # Eqn (3)
        return J

    # -- step 3(c)-(d): Eqn (13) down the layers, Eqn (14) per layer --------------------------------
    def _backward(self, ws: _Workspace, X: Array) -> None:
        xnp = self.xnp
        for ell in range(len(self.W) - 1, -1, -1):
            D = ws.D[ell]
            A_prev = ws.A[ell - 1] if ell > 0 else X
            if ell > 0 and self.hidden[ell - 1] == "identity":
                A_prev = ws.Z[ell - 1]
            xnp.matmul(D.T, A_prev, out=self.dW[ell])  # Eqn (14): Σ_i δ_i a_iᵀ / |B|
            D.sum(axis=0, out=self.db[ell])  # Eqn (14): Σ_i δ_i / |B|
            if ell > 0:
                Dp = ws.D[ell - 1]
                xnp.matmul(D, self.W[ell], out=Dp)  # Eqn (13): (W(ℓ+1))ᵀ δ(ℓ+1), as rows
                _dphi_mul(xnp, self.hidden[ell - 1], ws.Z[ell - 1], A_prev, Dp,
                          ws.T[ell - 1], ws.M[ell - 1])  # ⊙ φ′(z(ℓ))


def _phi(xnp: Any, name: str, Z: Array, out: Array) -> Array:
    """Eqn (2) into ``out``: a = φ(z). Identity returns ``Z`` itself (no copy)."""
    if name == "relu":
        return xnp.maximum(Z, 0, out=out)
    if name == "tanh":
        return xnp.tanh(Z, out=out)
    if name == "sigmoid":  # σ(u) = (1 + tanh(u/2)) / 2: never overflows
        xnp.multiply(Z, 0.5, out=out)
        xnp.tanh(out, out=out)
        out *= 0.5
        out += 0.5
        return out
    return Z


def _dphi_mul(xnp: Any, name: str, Z: Array, A: Array, D: Array, T: Array, M: Array) -> None:
    """D ⊙= φ′(z), with φ′ from z (ReLU) or from a = φ(z) (tanh: 1 − a², sigmoid: a(1 − a))."""
    if name == "relu":
        xnp.greater(Z, 0, out=M)
        xnp.multiply(D, M, out=D)
    elif name == "tanh":
        xnp.multiply(A, A, out=T)
        xnp.subtract(1.0, T, out=T)
        D *= T
    elif name == "sigmoid":
        xnp.subtract(1.0, A, out=T)
        T *= A
        D *= T


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
