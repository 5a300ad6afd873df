"""The one error a model file that is not what vnn writes raises."""

from __future__ import annotations


class ModelFileError(ValueError):
    """A model file whose layout, metadata or tensors are not what :func:`vnn.save` writes.

    Raised for every such file by :func:`vnn.load`, :func:`vnn.io.load_checkpoint`,
    :func:`vnn.io.read_metadata`, :func:`vnn.io.read_model` and :func:`vnn.sklearn.load`; the
    message names the file and what is wrong. ``path`` is the file, ``field`` the metadata field
    or tensor at fault (``None`` for the file's framing). A subclass of ``ValueError``, so code
    that catches ``ValueError`` catches it too.
    """

    def __init__(self, message: str, path: str, field: str | None = None) -> None:
        super().__init__(message)
        self.path, self.field = path, field
