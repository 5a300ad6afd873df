"""Every elementwise formula of the derivation, each written once (the language: ``formula``).

The activations, losses and optimizers of ``vnn.math`` are made of these; every step executes them
from here: the portable step evaluates them on ``xp``, the preallocated step compiles them into
calls on its buffers, the fused step into CUDA kernels. Changing a formula here changes all three.
"""

from __future__ import annotations

from vnn.math.formula import Formula, Table

FORMULAS: Table = Table()


def _f(name: str, text: str, args: str, scalars: str = "") -> None:
    FORMULAS[name] = Formula(name, text, args, scalars, FORMULAS)


# -- Eqn (2): a = φ(z) for the hidden activations of §1.3 --------------------------------------------
_f("relu", "a = max(z, 0)", "z")  # (u)_+ = max{u, 0}
_f("tanh", "a = tanh(z)", "z")
# σ(u) = 1 / (1 + e^{−u}), written as e^{min(u, 0)} / (1 + e^{−|u|}): equal, finite for every u
# (no exponent is positive) and accurate to rounding in relative terms where σ(u) is tiny
_f("sigmoid", "a = exp(-max(-z, 0)) / (1 + exp(-abs(z)))", "z")
_f("identity", "a = z", "z")
# the exponential output of a Poisson regression (the log link): ŷ = e^z > 0
_f("exp", "a = exp(z)", "z")

# -- φ′ of Eqn (13), from a = φ(z) (ReLU's subgradient at 0 is taken as 0) --------------------------
_f("relu_prime", "d = a > 0", "a")
_f("tanh_prime", "d = 1 - a * a", "a")  # 1 − tanh²(u)
_f("sigmoid_prime", "d = a * (1 - a)", "a")  # σ(u)(1 − σ(u))
_f("identity_prime", "d = 1", "a")
_f("exp_prime", "d = a", "a")  # (e^u)′ = e^u

# -- the softmax output of §1.3: p_k = e_k / Σ_t e_t, e_k = exp(z_k − max_t z_t) ---------------------
_f("softmax_exp", "e = exp(z - mx)", "z, mx")
_f("softmax_div", "p = e / s", "e, s")
# Jᵀg with J_kt = p_k(δ_kt − p_t) (the Jacobian in the proof of Eqn 12), given pg = Σ_t g_t p_t
_f("softmax_vjp", "d = p * (g - pg)", "p, g, pg")

# -- the losses, per element of a sample (a sample's ℓ is their sum, plus a per-sample term) ---------
_f("squared_error", "l = 0.5 * (a - y) * (a - y)", "a, y")  # Eqn (4): ½‖ŷ − y‖²
_f("squared_error_grad", "g = a - y", "a, y")  # ∂ℓ/∂a of Eqn (4), the first factor of Eqn (10)
_f("softplus", "s = max(z, 0) + log1p(exp(-abs(z)))", "z")  # log(1 + e^z), finite for all z
# Eqn (5) from the logit z: −y log σ(z) − (1 − y) log(1 − σ(z)) = softplus(z) − y z
_f("binary_cross_entropy", "l = softplus(z) - y * z", "z, y")
# Eqn (6) from logits: −Σ_k y_k log p_k = logsumexp(z) − Σ_k y_k z_k (a sample's y sums to 1):
# the element term, and the per-sample term logsumexp(z) = mx + log Σ exp(z − mx)
_f("cross_entropy", "l = -(y * z)", "z, y")
_f("logsumexp", "r = mx + log(s)", "mx, s")
# half the Poisson deviance from the log of the mean, z = log ŷ: y log(y/ŷ) − y + ŷ
# = e^z − y z + (y log y − y), with y log y = 0 at y = 0 (targets are >= 0)
_f("poisson", "l = exp(z) - y * z + y * log(y + (y <= 0)) - y", "z, y")

# -- δ(L) of the canonical pairings, Eqns (10), (11), (12): a(L) − y ---------------------------------
_f("output_delta", "d = a - y", "a, y")

# -- the L2 term of Eqn (3) per weight, and its gradient in Eqn (14) ---------------------------------
_f("l2", "r = 0.5 * lam * w * w", "w, lam", "lam")
_f("l2_grad", "d = d + lam * w", "d, w, lam", "lam")

# -- step 3(e): the updates θ ← θ − …, with g = ∇̂_B θ ------------------------------------------------
_f("sgd", "p = p - lr * g", "p, g, lr", "lr")  # Eqn (15)
# Eqn (16) (beta = β, c = 1 − β, ahead = η, nu = 0); scikit-learn's heavy ball
# (beta = μ, c = η, ahead = 1, nu = 0, v = −its velocity) and Nesterov's (ahead = μ, nu = η)
_f("momentum", "v = beta * v + c * g; p = p - (ahead * v + nu * g)", "p, g, v, beta, c, ahead, nu",
   "beta, c, ahead, nu")
# Adam (§1.6): m̂ = m / (1 − β₁ᵗ), v̂ = v / c2; lr_c1 = η / (1 − β₁ᵗ), c2 = 1 − β₂ᵗ. scikit-learn's ε
# outside the correction: c2 = 1 and lr_c1 = η √(1 − β₂ᵗ) / (1 − β₁ᵗ)
_f("adam", "m = b1 * m + (1 - b1) * g; v = b2 * v + (1 - b2) * g * g; "
   "p = p - lr_c1 * (m / (sqrt(v / c2) + eps))", "p, g, m, v, b1, b2, lr_c1, c2, eps",
   "b1, b2, lr_c1, c2, eps")
