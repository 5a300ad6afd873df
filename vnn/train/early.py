"""Early stopping on the validation loss, with the best parameters restored."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vnn.network import MLP


class EarlyStopping:
    """``fit(early_stopping=patience)``: stop when the validation loss (Eqn 3 on
    ``validation_data``) has not gone below its best for ``patience`` epochs, and leave the
    model with the parameters of the best epoch (as Keras' ``EarlyStopping`` with
    ``restore_best_weights=True``). The best parameters are one copy on the model's device,
    taken when the loss improves; ``history.best_epoch`` names that epoch."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best: list[Any] | None = None
        self.best_loss = math.inf
        self.waited = 0  # epochs since the best (or since the start, before any finite loss)

    def stop(self, net: MLP, epoch: int, history: Any) -> bool:
        """After ``epoch`` (its val_loss recorded): keep it if it is the best; whether to stop.
        A NaN or infinite loss is never the best."""
        loss = history.val_loss[-1]
        if math.isfinite(loss) and loss < self.best_loss:
            self.best_loss, history.best_epoch, self.waited = loss, epoch, 0
            self.best = [net.xp.asarray(p, copy=True) for p in net.theta]
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self, net: MLP) -> None:
        """The best epoch's parameters back into the model, in place."""
        if self.best is not None and getattr(net.backend, "immutable", False):
            net.theta = self.best  # JAX: rebind, nothing is a view
        elif self.best is not None:
            for p, b in zip(net.theta, self.best):
                p[...] = b
