"""How an error reaches the user: one line ``vnn: error: ...``, or its traceback with VNN_DEBUG=1."""

from __future__ import annotations

import os

from vnn.cli.files import (
    UsageError,
)


def debug() -> bool:
    """``VNN_DEBUG=1``: let errors propagate with their traceback."""
    return os.environ.get("VNN_DEBUG", "").strip() not in ("", "0")


def one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.strip().splitlines() if line.strip())


def error_message(exc: Exception) -> str:
    """What the one-line error says about ``exc``."""
    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, (ValueError, TypeError, OSError, ImportError)):
        if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
            return f"{exc.filename}: {exc.strerror}"
        return str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return f"not enough memory: {exc or 'MemoryError'}"
    # a broken file read by a library, or a bug in vnn
    return f"{type(exc).__name__}: {exc} (set VNN_DEBUG=1 to see where it was raised)"
