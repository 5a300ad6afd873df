"""scikit-learn's optimizers: vnn's Momentum and Adam in scikit-learn's forms (one formula each,
``vnn.math.formulas``), plus scikit-learn's learning-rate schedules and stopping rules.
"""

from __future__ import annotations

from typing import Any

from vnn.math.optimizers import Adam, Momentum, Optimizer

Array = Any



# -- scikit-learn's optimizers: vnn's Momentum and Adam in scikit-learn's forms, plus its schedules --
class SklearnSGD(Momentum):
    """scikit-learn's SGD: heavy-ball or Nesterov momentum (v ← μv − η∇ ; θ ← θ + v, Nesterov:
    θ ← θ + μv − η∇; :class:`vnn.Momentum` keeps −v), with scikit-learn's learning-rate
    schedules between epochs."""

    def __init__(self, lr: float, schedule: str = "constant", momentum: float = 0.9,
                 nesterov: bool = True, power_t: float = 0.5) -> None:
        Optimizer.__init__(self, lr)
        self.beta, self.form = momentum, "nesterov" if nesterov else "heavy_ball"
        self.lr_init, self.schedule, self.momentum = self.lr, schedule, momentum
        self.nesterov, self.power_t = nesterov, power_t

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A pickle of an older version (scikit-learn's velocity v, no ``form``) continues as it
        would have: the formula keeps −v."""
        if "form" not in state:
            state = {**state, "beta": state["momentum"],
                     "form": "nesterov" if state["nesterov"] else "heavy_ball",
                     "state": [[-v for v in kind] for kind in state.get("state", [])]}
        self.__dict__.update(state)

    def iteration_ends(self, samples_seen: int) -> None:
        if self.schedule == "invscaling":
            self.lr = self.lr_init / (samples_seen + 1) ** self.power_t

    def trigger_stopping(self, msg: str, verbose: bool) -> bool:
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.lr <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.lr /= 5.0
        if verbose:
            print(msg + f" Setting learning rate to {self.lr:f}")
        return False


class SklearnAdam(Adam):
    """scikit-learn's Adam: θ ← θ − η √(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε)."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        Optimizer.__init__(self, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.eps_after_correction = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A pickle of an older version (no ``eps_after_correction``) continues as it would have."""
        self.__dict__.update({"eps_after_correction": False, **state})

    def iteration_ends(self, samples_seen: int) -> None:
        pass

    def trigger_stopping(self, msg: str, verbose: bool) -> bool:
        if verbose:
            print(msg + " Stopping.")
        return True
