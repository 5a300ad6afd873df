"""Training (Algorithm 1.9): the loop, the divergence guard, checkpoints and resuming, history.

``vnn.train.fit`` is what ``MLP.fit`` runs; ``Trainer`` runs one step of it on data already on
the device.
"""

from __future__ import annotations

from vnn.step.portable import step
from vnn.train.history import DivergenceError, History, NothingToTrainWarning
from vnn.train.loop import fit, positive_weights, weighted_batches
from vnn.train.trainer import Trainer, evaluate

__all__ = ["DivergenceError", "History", "NothingToTrainWarning", "Trainer", "evaluate", "fit",
           "positive_weights", "step", "weighted_batches"]
