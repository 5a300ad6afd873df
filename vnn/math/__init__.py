"""The derivation's formulas, each written once: φ and φ′ (Eqn 2, 13), the losses and δ(L)
(Eqns 4-6, 10-12), the L2 term (Eqns 3, 14) and the updates (Eqns 15, 16, Adam).

``formulas.FORMULAS`` holds the elementwise formulas in a small language (``formula``) that every
step executes: evaluated on ``xp``, compiled into calls on preallocated buffers, or into one CUDA
kernel. ``activations``, ``losses`` and ``optimizers`` name them and add the reductions.
"""
