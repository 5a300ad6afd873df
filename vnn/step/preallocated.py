"""Algorithm 1.9's training step on preallocated buffers, for libraries with NumPy's API.

The portable step (``vnn.step.portable``) allocates new arrays. This one executes the same
formulas (:mod:`vnn.math.formulas`) for NumPy and CuPy with ``out=`` buffers that are allocated
once per batch size and reused every step; tests check that both give the same numbers.

The plan, decided once per batch size (layout in ``vnn.step.workspace``):

- Eqn (1) is one product per layer, z(ℓ) = Θ(ℓ) â(ℓ−1), with Θ(ℓ) = [W(ℓ) | b(ℓ)] in one flat
  buffer for all layers, so the bias is included;
- Eqn (14) is one product per layer, [∂W | ∂b] = δ(ℓ) â(ℓ−1)ᵀ / |B| (one batched product for a
  run of layers of equal shape), the 1/|B| applied once, to δ(L);
- Eqn (13) is (W(ℓ+1))ᵀ δ(ℓ+1), reading W as the strided view Θ[:, :-1] (BLAS takes it as is),
  ⊙ φ′, computed from a = φ(z) for a run of layers of one activation in one call;
- plain SGD without L2 folds η into δ(L)'s 1/|B|, so that its update is one subtraction;
- an optimizer update is its formula over the flat buffer, however many layers there are.

Each formula runs as calls compiled by ``vnn.step.compile``, or, given ``kernel`` (CuPy), as one
CUDA kernel compiled from the same formula: then φ′ is fused into each layer's δ, and δ(L) with its
1/|B| is one kernel. On NumPy with numba installed the same fused plan runs each kernel body as one
compiled loop (``vnn.backends.loops``). The model's ``weights`` and ``biases`` are views into the flat
buffer. Only the canonical output/loss pairings (Eqns 10-12) take this path; other pairings use
the portable one.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from typing import Any

from vnn.math.formula import substitute
from vnn.math.formulas import FORMULAS
from vnn.math.optimizers import Optimizer
from vnn.step.compile import Program
from vnn.step.executors import Calls, Fused, KernelMaker, Kernels, calls
from vnn.step.loss import CANONICAL, penalty, plan_loss
from vnn.step.workspace import Workspace, phi_prime_kind

Array = Any
Ops = list[tuple[Any, tuple[Any, ...]]]



def supports(output: str, loss: str) -> bool:
    """Whether this step trains the pairing (the canonical ones)."""
    return CANONICAL.get(output) == loss


class PreallocatedStep:
    """One mini-batch step (Algorithm 1.9, 3(a)-(e)) for a NumPy-API module ``xnp``."""

    def __init__(self, xnp: Any, W: list[Array], b: list[Array], hidden: list[str],
                 output: str, lam: float, optimizer: Optimizer, take: Callable[..., Any],
                 l2_per_sample: bool = False, kernel: KernelMaker | None = None,
                 batched: bool = True,
                 executor: Callable[[Any, Any], Calls] | None = None,
                 chunk: int | None = None) -> None:
        """``W`` and ``b`` are the model's parameter lists; their items are replaced by views of
        the flat buffer. With ``l2_per_sample`` the λ of a batch of n samples is ``lam / n``
        (scikit-learn's ``alpha``). ``kernel`` compiles a formula into one kernel (fused).
        ``batched``: Eqn (14) of a run of equal-shape layers as one 3-d product (else one 2-d
        product per layer). ``executor(xnp, dtype)`` makes another executor of the plan's
        formulas (``vnn.step.executors.Loops``: compiled loops on the CPU). ``chunk``: run an
        update of several calls over runs of this many elements of the flat buffer (a CPU's
        cache), not over all of it at once."""
        self.xnp, self.hidden, self.output, self.lam = xnp, hidden, output, lam
        self.chunk = chunk
        self.batched = batched
        self.l2_per_sample, self.kernel = l2_per_sample, kernel
        self.dtype = W[0].dtype
        #: how a formula runs on buffers: generated ufunc calls, or one kernel each (fused)
        self.execute = (executor(xnp, self.dtype) if executor is not None
                        else Calls(xnp, self.dtype) if kernel is None
                        else Kernels(xnp, self.dtype, kernel))
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
        self._bind_state(shapes)
        self._ws: dict[int, Workspace] = {}
        self._programs: dict[Any, Any] = {}  # compiled updates, by specialisation
        self._last_update: tuple[tuple[float, ...], Any, Callable[[], None]] | None = None
        #: data-parallel training: reduce(G, n) turns this rank's gradient into the global one
        self.reduce: Callable[[Array, int], None] | None = None
        # Eqn (15) with η already inside G: the sgd formula with lr = 1
        self._subtract_g = self._update_program({"lr": 1.0}, FORMULAS["sgd"])

    def _bind_state(self, shapes: list[tuple[int, ...]]) -> None:
        """Optimizer state: flat buffers of the parameters' layout, which the optimizer sees per
        parameter (kept when it already holds state for these shapes)."""
        opt, L = self.optimizer, len(self.W)
        old = opt.state
        keep = len(old) == opt.n_state and all(
            len(s) == 2 * L and all(tuple(a.shape) == sh for a, sh in zip(s, shapes)) for s in old)
        if not keep:
            opt.t = 0
        self.state, per_param = [], []
        for k in range(opt.n_state):
            flat, thetas = self._flat(old[k][0::2] if keep else None,
                                      old[k][1::2] if keep else None)
            self.state.append([flat])
            per_param.append([v for t in thetas for v in (t[:, :-1], t[:, -1])])
        opt.state = per_param

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

    def workspace(self, n: int) -> Workspace:
        ws = self._ws.get(n)
        if ws is None:
            ws = self._ws[n] = Workspace(self.xnp, n, self.sizes, self.dtype, self.hidden,
                                         phi_prime=not self.execute.fuses, batched=self.batched)
            ws.lam = self.lam / n if self.l2_per_sample else self.lam
            self.plan(ws)
        return ws

    # -- one step ---------------------------------------------------------------------------------
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
            for f, args in ws.forward:  # Eqns (1)-(2) for ℓ = 1 .. L−1, then z(L)
                f(*args)
            J = ws.loss() / n  # Eqns (3)-(6) and δ(L), Eqns (10)-(12)
            if ws.lam:  # Eqn (3): + λ/2 Σ ‖W(ℓ)‖²_F
                J = J + self._penalty(ws)
            for f, args in ws.backward:  # Eqns (13) and (14)
                f(*args)
        if self.reduce is not None:  # data-parallel: the global batch's gradient on every rank
            self.reduce(self.G, n)
        self.optimizer.t += 1
        if eta is None:
            self._update()  # step 3(e)
        else:
            self._subtract_g(1.0)  # Eqn (15), η already inside G
        return J

    def _folded_lr(self) -> float | None:
        """η of plain SGD (Eqn 15) without L2, which this step folds into δ(L)'s 1/|B| so that
        Eqn (14) yields η ∇̂θ and the update is one subtraction; None for any other update."""
        opt = self.optimizer
        if opt.formula != "sgd" or type(opt).update is not Optimizer.update or self.lam:
            return None
        return float(opt.scalars(opt.t + 1)["lr"])

    def _update(self) -> None:
        """Step 3(e): the optimizer's formula over the flat parameter buffer."""
        opt = self.optimizer
        if type(opt).update is not Optimizer.update:  # an optimizer with its own update
            state = [[s[0]] for s in self.state]
            self.P[...] = opt.update(self.xnp, [self.P], [self.G], state, opt.t)[0]
            for flat, new in zip(self.state, state):
                flat[0][...] = new[0]
            return
        scalars = opt.scalars(opt.t)
        f = opt.update_formula
        values = tuple([scalars[k] for k in f.scalar_order])
        last = self._last_update
        if last is not None and last[0] == values and last[1] is f:  # the same step as before
            last[2]()
            return
        folded = f.key(scalars) if 0.0 in values or 1.0 in values else ()
        key = (f.name, folded, getattr(FORMULAS, "version", 0))
        run = self._programs.get(key)
        if run is None:
            run = self._programs[key] = self._update_program(scalars, f)
        self._last_update = (values, f, functools.partial(run, *values))
        run(*values)

    def _update_program(self, scalars: dict[str, float], f: Any) -> Callable[..., Any]:
        """The update formula over the flat buffers: one program; or, given ``chunk`` and a
        formula of several calls, one program per run of ``chunk`` elements, all run in turn,
        so that each call's operands are still in the CPU's cache for the next call, and the
        scratch is one chunk instead of a whole copy of θ (the same formula on every element)."""
        n, size = int(self.P.shape[0]), self.chunk
        if size is None or n <= size or self.execute.fuses:
            return self._update_on(0, n, scalars, f, lambda: self.xnp.empty_like(self.P))
        scratch: list[Array] = []  # the i-th temporary a run asks for: scratch[i], one run long

        def temps(k: int) -> Callable[[], Array]:  # the temporaries of a run of k elements
            asked = [0]

            def temp() -> Array:
                i, asked[0] = asked[0], asked[0] + 1
                if i == len(scratch):
                    scratch.append(self.xnp.empty((size,), dtype=self.dtype))
                return scratch[i][:k]

            return temp

        parts = [self._update_on(0, size, scalars, f, temps(size))]
        if parts[0].source.count("xnp.") <= 1:  # one pass anyway (p −= g): no chunks
            return self._update_on(0, n, scalars, f, lambda: self.xnp.empty_like(self.P))
        parts += [self._update_on(i, min(n, i + size), scalars, f, temps(min(n, i + size) - i))
                  for i in range(size, n, size)]

        def run(*values: float) -> None:
            for part in parts:
                part(*values)

        return run

    def _update_on(self, i: int, j: int, scalars: dict[str, float], f: Any,
                   temp: Callable[[], Array]) -> Any:
        """The update formula's program over elements ``i:j`` of the flat buffers."""
        arrays = {"p": self.P[i:j], "g": self.G[i:j],
                  **{n: s[0][i:j] for n, s in zip(self.optimizer.state_names, self.state)}}
        return self.execute(f.name, f.specialize(f.key(scalars)), f.args, arrays, f.scalars,
                            temp=temp, consumable=frozenset("g"))

    # -- the plan --------------------------------------------------------------------------------------
    def plan(self, ws: Workspace) -> None:
        """The calls of one step's forward and backward passes, with their buffers bound, built
        once per workspace so that a step is a flat loop over them (no per-layer Python logic)."""
        xnp, L = self.xnp, len(self.W)
        fwd: Ops = []
        for ell in range(L - 1):  # Eqn (1), z = Θ â, into the rows of â(ℓ); Eqn (2) in place
            A = ws.A[ell + 1]
            fwd.append((xnp.matmul, (self.Theta[ell], ws.Ahat[ell], A)))
            fwd += calls(self._exec(self.hidden[ell], {"z": A, "a": A}))
        fwd.append((xnp.matmul, (self.Theta[L - 1], ws.Ahat[L - 1], ws.ZL)))  # z(L)
        if not self.execute.fuses:  # φ′ of every hidden layer, a run of layers per call
            for name, Ahid, T in ws.phi_groups:
                if T is not None:
                    fwd += calls(self._exec(name + "_prime", {"a": Ahid, "d": T}))
        ws.forward = fwd
        ws.loss = plan_loss(self.execute, self.xnp, self.dtype, self.output, ws)
        ws.backward = self._plan_backward(ws)

    def _plan_backward(self, ws: Workspace) -> Ops:
        xnp, L, lam = self.xnp, len(self.W), ws.lam
        stacked = {first: (last, Ds, As) for first, last, Ds, As in ws.stacks}
        in_stack = {ell for first, last, _, _ in ws.stacks for ell in range(first, last + 1)}
        bwd: Ops = []
        for ell in range(L - 1, -1, -1):
            D = ws.D[ell]
            if ell not in in_stack:  # Eqn (14): δ âᵀ / |B|
                bwd.append((xnp.matmul, (D, ws.Ahat[ell].T, self.dTheta[ell])))
                bwd += self._decay(ell, lam)
            if ell:
                # Eqn (13): W(ℓ+1)ᵀ δ(ℓ+1), the first rows of Θ(ℓ+1)ᵀ δ(ℓ+1) (ws.Dx: see Workspace) ...
                Dp = ws.D[ell - 1]
                bwd.append((xnp.matmul, (self.Theta[ell].T, D, ws.Dx[ell - 1])))
                bwd += self._phi_prime(ws, ell - 1, Dp)  # ... ⊙ φ′(z(ℓ))
            if ell in stacked:  # Eqn (14) for a run of layers of equal shape: one batched product
                last, Ds, As = stacked[ell]
                dT = self.G[self._offsets[ell]:self._offsets[last + 1]].reshape(
                    last - ell + 1, *self.dTheta[ell].shape)
                bwd.append((xnp.matmul, (Ds, As.transpose(0, 2, 1), dT)))
                for k in range(ell, last + 1):
                    bwd += self._decay(k, lam)
        return bwd

    def _phi_prime(self, ws: Workspace, ell: int, Dp: Array) -> Ops:
        """δ(ℓ) ⊙= φ′(z(ℓ)) of hidden layer ``ell`` (0-based)."""
        name = self.hidden[ell]
        if phi_prime_kind(name) is None:  # φ′ ≡ 1
            return []
        if not self.execute.fuses:  # φ′ from the forward pass
            return [(self.xnp.multiply, (Dp, ws.T[ell], Dp))]
        dphi = FORMULAS[name + "_prime"].expression
        stmt: list[tuple[str, ast.expr]] = [("d", ast.BinOp(ast.Name("d"), ast.Mult(), dphi))]
        return calls(self.execute("delta_" + name, stmt, ("a",),
                                        {"a": ws.A[ell + 1], "d": Dp}))

    def _decay(self, ell: int, lam: float) -> Ops:
        """Eqn (14)'s + λ W(ℓ), when λ ≠ 0."""
        if not lam:
            return []
        arrays = {"d": self.dW[ell], "w": self.W[ell]}
        return calls(self._exec("l2_grad", arrays, {"lam": lam},
                                      temp=lambda: self.xnp.empty(self.W[ell].shape,
                                                                  dtype=self.dtype)))

    def _penalty(self, ws: Workspace) -> Any:
        """Eqn (3)'s λ/2 Σ ‖W(ℓ)‖²_F of this step."""
        prog = self._programs.get("l2")
        if prog is None:
            prog = self._programs["l2"] = penalty(self.xnp, self.dtype, self.Theta, self.b)
        return prog(ws.lam)

    # -- executing a formula -------------------------------------------------------------------------
    def _exec(self, name: str, arrays: dict[str, Array], fixed: dict[str, float] | None = None,
              temp: Callable[[], Array] | None = None) -> Program | Fused:
        """The formula ``name`` on ``arrays``, its scalars fixed to ``fixed``: calls, or one
        kernel (fused)."""
        f = FORMULAS[name]
        statements = f.specialize(f.key(fixed or {}))
        if fixed:
            statements = [(t, substitute(e, {k: ast.Constant(v) for k, v in fixed.items()}))
                          for t, e in statements]
        return self.execute(name, statements, f.args, arrays, temp=temp)
