"""Model files in the safetensors format: no pickle, nothing executed when a file is read.

A file holds the parameters as tensors named ``W1, b1, ..., WL, bL`` (W^(ℓ) of shape
(m_ℓ, m_{ℓ−1}) and b^(ℓ) of shape (m_ℓ,), as in the derivation) and one metadata entry ``"vnn"``:
a JSON object describing the architecture (sizes, activations, output, loss, dtype, init), the
host generator's state and, for checkpoints, the optimizer (hyperparameters, step count ``t``; its
state arrays are the tensors ``optim.<k>.W<ℓ>`` / ``optim.<k>.b<ℓ>``), the epoch and the history.

>>> vnn.save(net, "model.safetensors")                          # doctest: +SKIP
>>> net = vnn.load("model.safetensors", device="cuda")          # doctest: +SKIP
>>> vnn.io.save(net, "ckpt.safetensors", optimizer=opt, epoch=5, history=h)   # doctest: +SKIP
>>> ckpt = vnn.io.load_checkpoint("ckpt.safetensors")           # doctest: +SKIP
>>> ckpt.net.fit(X, y, optimizer=ckpt.optimizer, epochs=5)      # doctest: +SKIP

Files may come from strangers. A file is opened once (:mod:`vnn.io.layout`): its raw layout is
checked first (the 8-byte header length, at most :data:`MAX_HEADER_BYTES`; UTF-8 JSON, one object,
no duplicate keys; every tensor entry a plain numeric dtype, a shape of non-negative integers and
data offsets that agree with shape x dtype; the tensors tiling the data section exactly), then
the whole metadata against what :func:`save` writes (:mod:`vnn.io.schema`) and the tensor set
against the architecture, and only then is the tensor data read, from the same descriptor.
Anything else, a pickle included, raises :class:`ModelFileError` (a ``ValueError``) naming the
file and the field; nothing is unpickled. NaN or infinite parameters are refused unless
``allow_nonfinite=True``.

Saves are atomic (:mod:`vnn.io.atomic`): a crash or a full disk at any moment leaves the previous
file whole; a symlink is followed and its target replaced; a directory, FIFO, device or socket in
the way is refused before anything is written.
"""

from __future__ import annotations

from vnn.io.atomic import atomic_write_bytes, check_writable
from vnn.io.errors import ModelFileError
from vnn.io.files import Checkpoint, load, load_checkpoint, read_metadata, read_model, save
from vnn.io.layout import MAX_HEADER_BYTES

__all__ = ["MAX_HEADER_BYTES", "Checkpoint", "ModelFileError", "atomic_write_bytes",
           "check_writable", "load", "load_checkpoint", "read_metadata", "read_model", "save"]
