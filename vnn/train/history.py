"""The record of a training run, and what training warns and raises."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass



Array = Any




@dataclass
class History:
    """What ``fit`` measured, one entry per epoch (Python floats).

    ``loss`` is Eqn (3) averaged over the epoch's mini-batches (weighted by batch size);
    ``val_loss`` is Eqn (3) on the validation data at the end of the epoch (empty without it).
    """

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    samples_per_second: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        #: why training ended before ``epochs``: None, "interrupted" (Ctrl-C), "nonfinite" or
        #: "early" (early stopping)
        self.stopped: str | None = None
        #: with early stopping: the epoch (1-based) of the lowest val_loss, whose parameters the
        #: model holds at the end
        self.best_epoch: int | None = None

    @property
    def epochs(self) -> int:
        return len(self.loss)


class NothingToTrainWarning(UserWarning):
    """``fit(resume=...)`` was given a checkpoint already past ``epochs``: nothing is trained,
    the model holds the checkpoint's parameters and ``fit`` returns the checkpoint's history."""


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or parameter. The model keeps the parameters (and the
    optimizer its state) of the last step that left everything finite."""

    def __init__(self, message: str, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch, self.batch = epoch, batch


class Progress:
    """``fit(progress=True)``: a tqdm bar of the epochs (``tqdm.auto``: a widget in notebooks),
    with the last loss and val_loss; on a stream that is not a terminal, nothing. ``start``:
    the epochs already done (resuming)."""

    def __init__(self, enabled: bool, epochs: int, start: int = 0, unit: str = "epoch") -> None:
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs, initial=start, unit=unit, desc="training",
                            file=sys.stderr, disable=None, dynamic_ncols=True)

    def __call__(self, h: History) -> None:
        if self.bar is not None:
            post = {"loss": f"{h.loss[-1]:.4g}"}
            if h.val_loss:
                post["val_loss"] = f"{h.val_loss[-1]:.4g}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
