"""Resuming from a checkpoint: the model's parameters, the optimizer and the history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vnn.math.optimizers import Optimizer

if TYPE_CHECKING:
    from vnn.network import MLP

from vnn.train.history import History

Array = Any




def resume_from(net: MLP, path: Any, optimizer: Optimizer | None) -> tuple[Optimizer, History]:
    """Load a checkpoint written by ``fit(checkpoint=...)`` into ``net`` and the optimizer."""
    from vnn import io

    ck = io.load_checkpoint(path, device=net.device, backend=net.backend.name)
    saved = (ck.net.sizes, ck.net.activation, ck.net.output, ck.net.loss, ck.net.dtype)
    mine = (net.sizes, net.activation, net.output, net.loss, net.dtype)
    if saved != mine:
        raise ValueError(f"resume={path!r} holds a model {ck.net!r}, which differs from this one "
                         f"{net!r}; expected the same sizes, activations, output, loss and dtype")
    if ck.optimizer is None or ck.epoch is None:
        raise ValueError(f"resume={path!r} is a model file without optimizer state and epoch; "
                         "expected a checkpoint written by fit(checkpoint=...)")
    if optimizer is not None and type(optimizer) is not type(ck.optimizer):
        raise ValueError(f"optimizer={optimizer!r} differs from the checkpoint's {ck.optimizer!r}; "
                         "pass optimizer=None to continue with the saved one")
    opt = ck.optimizer if optimizer is None else optimizer
    if opt is not ck.optimizer:
        opt.state, opt.t = ck.optimizer.state, ck.optimizer.t
    net.weights, net.biases = ck.net.weights, ck.net.biases
    bit_generator = getattr(net.rng, "bit_generator", None)
    if bit_generator is not None:
        bit_generator.state = ck.net.rng.bit_generator.state  # type: ignore[attr-defined]
    history = ck.history if ck.history is not None else History()
    if history.epochs != ck.epoch:
        raise ValueError(f"resume={path!r} is inconsistent: epoch {ck.epoch} but "
                         f"{history.epochs} epochs of history")
    return opt, history
