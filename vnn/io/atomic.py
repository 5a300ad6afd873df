"""Atomic writes: a reader sees the old file or the new one, never a part, and a failed write
(a full disk, a crash) leaves the old file whole.

Every file vnn writes (models, checkpoints, estimator files, the command line's predictions and
plots) goes through :func:`atomic_write_bytes`: the bytes go to a temporary file
``.<name>.<pid>.<random>.vnn-tmp`` in the target's folder, are flushed to disk, and the temporary
file is renamed onto the target. A symlink is followed: its final target is replaced and the
link kept. A target that exists but is not a regular file (a directory, FIFO, device or socket)
is refused before anything is written, without opening it (opening a FIFO would block).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat

__all__ = ["atomic_write_bytes", "check_writable", "file_kind"]

PathLike = str | os.PathLike[str]

#: how the temporary file of a save is named: ``.<target name>.<pid>.<16 hex digits>.vnn-tmp``
TMP_SUFFIX = ".vnn-tmp"

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words: "a regular file", "a FIFO (named
    pipe)", "a directory", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def check_writable(path: PathLike, argument: str = "path") -> str:
    """The regular file a write to ``path`` replaces (``path``, or where its symlinks lead).

    Checked before anything is written, and nothing is opened: ``path`` (the argument called
    ``argument``) must name a regular file or a new file, in a folder that exists and that this
    process may write to; an existing file must be writable to this process (a file made
    read-only is not replaced, although the rename would allow it). Raises ``TypeError`` for a
    value that is not a path, ``ValueError`` for an existing target that is not a regular file,
    ``FileNotFoundError`` for a missing folder and ``PermissionError`` for a read-only file or a
    folder that cannot be written.
    """
    try:
        name = os.fspath(path)
    except TypeError:
        raise TypeError(f"{argument}={path!r} is not a file path; expected a str or "
                        "os.PathLike") from None
    if isinstance(name, bytes) or not name:
        raise TypeError(f"{argument}={path!r} is not a file path; expected a non-empty str or "
                        "os.PathLike")
    target = os.path.realpath(name)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        kind = file_kind(info.st_mode)
        via = f" (where its symlink leads: {target})" if os.path.islink(name) else ""
        raise ValueError(f"{argument}={name!r} is {kind}{via}; expected a regular file to "
                         "replace or the name of a new file")
    if info is not None and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, f"{argument} is a read-only file (its mode says not "
                              "to replace it); make it writable first or choose another name",
                              target)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, f"the folder of {argument} does not exist", folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"the folder of {argument} is not writable", folder)
    return target


def atomic_write_bytes(path: PathLike, data: bytes, argument: str = "path") -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    ``path`` is checked first (:func:`check_writable`). The bytes go to a temporary file in the
    target's folder, are flushed to disk, and the temporary file is renamed onto the target (then
    the folder is flushed where the OS allows); the file keeps the mode of the one it replaces.
    On any error (a full disk included) the temporary file is removed, the old file is left as it
    was, and the error re-raised. A process killed mid-write leaves its temporary file behind;
    the next write of the same target removes it (on POSIX, once no process with that pid runs).
    """
    target = check_writable(path, argument)
    folder, base = os.path.split(target)
    _remove_stale_temps(folder, base)
    fd, tmp = _create_temp(folder, base)
    try:
        with os.fdopen(fd, "wb") as f:
            with contextlib.suppress(OSError):
                os.chmod(tmp, _file_mode(target))  # created readable by the owner only
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _create_temp(folder: str, base: str) -> tuple[int, str]:
    """A new, empty temporary file for a write of ``base`` in ``folder``: its descriptor and
    path."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(8)}{TMP_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", tmp)


def _remove_stale_temps(folder: str, base: str) -> None:
    """Remove the temporary files of writes of ``base`` whose process no longer runs.

    Only names of the form ``.<base>.<pid>.<16 hex digits>.vnn-tmp`` are considered, and only
    where the process ``pid`` is known to be gone; a running write's file, another target's and
    any other file are left alone, as is everything on systems without ``os.kill(pid, 0)``
    (Windows, where that call would end the process). Errors are ignored: this is housekeeping.
    """
    if os.name != "posix":
        return
    pattern = re.compile(rf"\.{re.escape(base)}\.([0-9]+)\.[0-9a-f]{{16}}{re.escape(TMP_SUFFIX)}")
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not _process_gone(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists (POSIX); ``False`` when that cannot be told."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError, ValueError):  # PermissionError: it runs, as another user
        return False
    return False


def _file_mode(path: str) -> int:
    """The mode of the file being replaced, or what a new file would get (0o666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: str) -> None:
    """Flush a folder's entries (the rename) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
