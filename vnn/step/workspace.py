"""The buffers of the preallocated step for one batch size, samples as columns (§1.9's layout).

A batch of n samples is the matrix a(ℓ) of shape (m_ℓ, n), stored with one extra row of ones,
â(ℓ) = [a(ℓ); 1ᵀ], so that Eqn (1) with the bias is one product z(ℓ) = Θ(ℓ) â(ℓ−1) and Eqn (14)
with the bias gradient is one product δ(ℓ) â(ℓ−1)ᵀ.
"""

from __future__ import annotations

import ast
from typing import Any

from vnn.math.formulas import FORMULAS


def phi_prime_kind(name: str) -> str | None:
    """The buffer φ′ of an activation needs, read from its formula: none where φ′ is the number 1
    (identity), a boolean mask where it is a comparison (ReLU), else float values."""
    expr = FORMULAS[name + "_prime"].expression
    if isinstance(expr, ast.Constant):
        return None
    return "bool" if isinstance(expr, ast.Compare) else "float"


def runs(items: list[Any]) -> list[tuple[int, int]]:
    """(first, last) index of each maximal run of equal consecutive items."""
    out: list[tuple[int, int]] = []
    for i, item in enumerate(items):
        if out and items[out[-1][1]] == item:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


class Workspace:
    """Buffers for one batch size ``n``: â(0..L−1), z(L), δ, φ′, scratch.

    Kept small so that a step's data stays in cache: a hidden layer's z(ℓ) is never stored (Eqn 1
    writes into the rows of â(ℓ) and φ is applied there; every φ′ is computed from a = φ(z)).
    All â(ℓ) lie one after another in one buffer, so that φ′ of a run of hidden layers with the
    same activation is one call over all of them (the rows of ones give harmless values that are
    never read), and the â(ℓ−1) of a run of layers of equal shape form one stack for one batched
    Eqn (14). The δ(ℓ) of such a run are kept in a stack too; other hidden δ(ℓ) alternate between
    two buffers (Eqn 13 needs only δ(ℓ+1)).
    """

    def __init__(self, xnp: Any, n: int, sizes: list[int], dtype: Any,
                 hidden: list[str], phi_prime: bool = True, batched: bool = True) -> None:
        """With ``phi_prime`` false no φ′ buffers are made (a step that fuses φ′ into δ); with
        ``batched`` false no δ stacks (every Eqn 14 a 2-d product)."""
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
        self._phi_prime(xnp, H[offs[1]:], offs, sizes, dtype, hidden, phi_prime)
        self._deltas(xnp, H, offs, sizes, dtype, batched)
        self.r1 = xnp.empty((1, n), dtype=dtype)  # column maxima of z(L)
        self.r2 = xnp.empty((1, n), dtype=dtype)  # column sums of exp(z(L) − max)
        self.r3 = xnp.empty((1, n), dtype=dtype)  # scratch of the loss's per-sample term
        self.ones = xnp.ones((1, n), dtype=dtype)  # Σ over a row as a dot product
        self.inv_n = dtype.type(1.0 / n)
        self.scale = self.inv_n  # what δ(L) is multiplied by this step (PreallocatedStep.__call__)
        self.lam = 0.0  # λ of Eqn (3) for a batch of this size
        # the calls of one step, buffers bound (PreallocatedStep.plan)
        self.forward: list[tuple[Any, tuple[Any, ...]]] = []
        self.loss: Any = None  # J_B: Σ ℓ, Eqns (4)-(6), and δ(L), Eqns (10)-(12)
        self.backward: list[tuple[Any, tuple[Any, ...]]] = []

    def _phi_prime(self, xnp: Any, hid: Any, offs: list[int], sizes: list[int], dtype: Any,
                   hidden: list[str], phi_prime: bool) -> None:
        """φ′ of hidden layer ℓ (0-based: of â(ℓ+1)) in the same layout as â(1..L−1): a float
        buffer for tanh and sigmoid, a boolean one for ReLU masks, made only when used."""
        self.phi_groups: list[tuple[str, Any, Any]] = []  # (activation, â slice, φ′ slice)
        self.T: list[Any] = []
        flat = {k: (xnp.empty(hid.shape, dtype=dtype if k == "float" else bool)
                    if phi_prime and any(phi_prime_kind(h) == k for h in hidden) else None)
                for k in ("float", "bool")}
        for first, last in runs(hidden):
            lo, hi = offs[first + 1] - offs[1], offs[last + 2] - offs[1]
            kind = phi_prime_kind(hidden[first])
            buf = flat[kind] if kind else None
            self.phi_groups.append((hidden[first], hid[lo:hi], None if buf is None else buf[lo:hi]))
        for ell, m in enumerate(sizes[1:-1]):
            kind = phi_prime_kind(hidden[ell])
            buf = flat[kind] if kind else None
            lo = offs[ell + 1] - offs[1]
            self.T.append(None if buf is None else buf[lo:lo + m * self.n].reshape(m, self.n))

    def _deltas(self, xnp: Any, H: Any, offs: list[int], sizes: list[int], dtype: Any,
                batched: bool) -> None:
        """δ(ℓ) / |B| of hidden layer ℓ (0-based): stacked for runs of equal shape (``batched``),
        else in the pair buffer ℓ mod 2; then δ(L).

        Each hidden δ(ℓ) is the first m_ℓ rows of an (m_ℓ + 1, n) buffer ``Dx[ℓ]``: Eqn (13)
        writes Θ(ℓ+1)ᵀ δ(ℓ+1) there whole (the spare row is b(ℓ+1)ᵀ δ(ℓ+1), never read), so its
        product reads Θ(ℓ+1), a contiguous array, instead of the strided view W(ℓ+1) of it,
        which cuBLAS (through CuPy) would first copy.
        """
        L, n = len(sizes) - 1, self.n
        shapes = [(sizes[i + 1], sizes[i]) for i in range(L - 1)]
        self.D: list[Any] = [None] * (L - 1)
        self.Dx: list[Any] = [None] * (L - 1)
        self.stacks: list[tuple[int, int, Any, Any]] = []  # (first, last, δ stack, â stack)
        single = list(range(L - 1))  # layers whose δ is not in a stack
        for first, last in runs(shapes) if batched else []:
            if last == first:
                continue
            (m, k), c = shapes[first], last - first + 1
            Dx = xnp.empty((c, m + 1, n), dtype=dtype)
            As = H[offs[first]:offs[last + 1]].reshape(c, k + 1, n)
            self.stacks.append((first, last, Dx[:, :-1], As))
            for i in range(c):
                self.Dx[first + i], self.D[first + i] = Dx[i], Dx[i, :-1]
                single.remove(first + i)
        widest = max((sizes[ell + 1] + 1 for ell in single), default=1) * n
        pair = [xnp.empty((widest,), dtype=dtype) for _ in range(2 if single else 0)]
        for ell in single:
            m = sizes[ell + 1]
            self.Dx[ell] = pair[ell % 2][:(m + 1) * n].reshape(m + 1, n)
            self.D[ell] = self.Dx[ell][:-1]
        self.D.append(self.DL)
