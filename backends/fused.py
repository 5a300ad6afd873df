"""The fast step with its elementwise parts fused: one kernel where NumPy needs several calls.

On a GPU every call is a kernel launch (a few microseconds), so the fast step of ``ndarray_step``
is rewritten here to use one fused kernel for each elementwise formula of a step:

- Eqn (13)'s δ(ℓ) ⊙= φ′(z(ℓ)), φ′ computed from a = φ(z), one kernel per layer;
- Eqn (14)'s + λW(ℓ);
- δ(L) / |B| of Eqns (10)-(12), the softmax's exponentials included;
- the whole optimizer update of step 3(e) over the flat parameter buffer: Eqn (15), Eqn (16),
  Adam.

Each formula is written once, in :data:`FORMULAS`, in the part of C that is also Python (names,
arithmetic, comparisons, ``exp`` and ``sqrt``; statements separated by ``;``). CuPy compiles the
text as the body of an ``ElementwiseKernel``; the tests' ``numpy_kernel`` runs the very same text on NumPy
arrays, which is how the tests check these formulas, and this module's plumbing, on any machine
against the portable step. The matrix products are those of the unfused step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vnn.backends.ndarray_step import NDArrayStep, Ops, _OutKeyword, _softmax_loss, _Workspace

#: name → (input parameters, output parameters, body); outputs are read and written in place
FORMULAS: dict[str, tuple[str, str, str]] = {
    # Eqn (13): δ(ℓ) ⊙= φ′(z(ℓ)), with φ′ from a = φ(z)
    "dphi_relu": ("T a", "T d", "d = d * (a > 0)"),
    "dphi_tanh": ("T a", "T d", "d = d * (1 - a * a)"),
    "dphi_sigmoid": ("T a", "T d", "d = d * (a * (1 - a))"),
    # Eqn (14): + λ W(ℓ)
    "decay": ("T w, T lam", "T d", "d = d + lam * w"),
    # Eqns (10)-(12), times 1/|B| (or η/|B|, see NDArrayStep.scale) once, here
    "delta_identity": ("T z, T y, T scale", "T d", "d = (z - y) * scale"),
    "delta_sigmoid": ("T z, T y, T scale", "T d", "d = (1 / (1 + exp(-z)) - y) * scale"),
    "softmax_exp": ("T z, T mx", "T e", "e = exp(z - mx)"),
    "delta_softmax": ("T e, T s, T y, T scale", "T d", "d = (e / s - y) * scale"),
    # step 3(e) over the flat buffer: Eqn (15), Eqn (16) and Adam (§1.6, bias-corrected)
    "sgd": ("T g, T lr", "T p", "p = p - lr * g"),
    "momentum": ("T g, T beta, T lr", "T p, T v",
                 "v = beta * v + (1 - beta) * g; p = p - lr * v"),
    "adam": ("T g, T b1, T b2, T lr_c1, T c2, T eps", "T p, T m, T v",
             "m = b1 * m + (1 - b1) * g; v = b2 * v + (1 - b2) * (g * g); "
             "p = p - lr_c1 * m / (sqrt(v / c2) + eps)"),
}

Kernel = Callable[..., Any]


def _names(params: str) -> list[str]:
    return [p.split()[-1] for p in params.split(",")]


class FusedStep(NDArrayStep):
    """:class:`NDArrayStep` with :data:`FORMULAS` as fused kernels made by ``make_kernel``
    (``cupy.ElementwiseKernel`` on a GPU, ``numpy_kernel`` of the tests on NumPy)."""

    stacked_phi_prime = False  # φ′ is fused into each layer's δ kernel

    def __init__(self, *args: Any, make_kernel: Callable[[str], Kernel], **kwargs: Any) -> None:
        self.k = {name: make_kernel(name) for name in FORMULAS}
        super().__init__(*args, **kwargs)

    def _bind(self, f: Any) -> Any:
        # the fused kernels take outputs positionally; the library's functions by keyword
        if isinstance(f, _OutKeyword) or any(f is k for k in self.k.values()):
            return f
        return _OutKeyword(f)

    def _phi_prime_forward(self, ws: _Workspace) -> Ops:
        return []  # φ′ is computed inside each layer's kernel in the backward pass

    def _phi_prime_backward(self, ws: _Workspace, ell: int, Dp: Any) -> Ops:
        name = self.hidden[ell]
        if name == "identity":
            return []
        return [(self.k["dphi_" + name], (ws.A[ell + 1],), Dp)]

    def _decay(self, ell: int, lam: float) -> Ops:
        if not lam:
            return []
        return [(self.k["decay"], (self.W[ell], self.dtype.type(lam)), self.dW[ell])]

    def _loss_delta(self, ws: _Workspace) -> Any:
        Z, Y, D, scale = ws.ZL, ws.Y, ws.DL, ws.scale
        if self.output == "softmax":
            mx, s, E = ws.r1, ws.r2, ws.TL
            Z.max(axis=0, keepdims=True, out=mx)
            self.k["softmax_exp"](Z, mx, E)
            E.sum(axis=0, keepdims=True, out=s)
            self.k["delta_softmax"](E, s, Y, scale, D)
            return _softmax_loss(self.xnp, Z, Y, mx, s, ws.ones)
        if self.output == "sigmoid":
            self.k["delta_sigmoid"](Z, Y, scale, D)
            return self._sigmoid_loss(ws)
        self.k["delta_identity"](Z, Y, self._one, D)
        J = 0.5 * self.xnp.vdot(D, D)  # Eqn (4): ½‖a − y‖²
        D *= scale
        return J

    def _update(self) -> None:
        opt = self.optimizer
        spec = opt.fused(opt.t) if hasattr(opt, "fused") else None
        if spec is None:  # an update with no fused formula (scikit-learn's variants, a user's)
            super()._update()
            return
        name, scalars = spec
        dt = self.dtype.type
        self.k[name](self.G, *(dt(c) for c in scalars), self.P, *(s[0] for s in self.state))
