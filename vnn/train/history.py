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
        #: why training ended before ``epochs``: None, "interrupted" (Ctrl-C) or "nonfinite"
        self.stopped: str | None = None

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


def report(epoch: int, epochs: int, h: History) -> None:
    line = f"epoch {epoch:>{len(str(epochs))}}/{epochs}  loss {h.loss[-1]:.6g}"
    if h.val_loss:
        line += f"  val_loss {h.val_loss[-1]:.6g}"
    line += f"  {h.seconds[-1]:.2f}s  {h.samples_per_second[-1]:,.0f} samples/s"
    print(line, file=sys.stderr, flush=True)
