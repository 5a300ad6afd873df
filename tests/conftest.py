"""Fixtures: every array test runs on every backend available here.

numpy; array_api_strict on its default device and on ``device1``; torch on the CPU (and CUDA)
when installed; cupy when a GPU is present.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import array_api_compat
import numpy as np
import pytest

import vnn
from vnn import backends

try:  # float64 tests on JAX need its 64-bit mode (a process-wide switch, the user's to make)
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:
    pass

BACKENDS = backends.available()


@pytest.fixture(params=BACKENDS, ids=[f"{b.name}-{b.device_name}" for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> backends.Backend:
    return request.param


def make(be: backends.Backend, sizes: list[int], **kw: Any) -> vnn.MLP:
    """An MLP on the backend ``be`` (its library and device)."""
    return vnn.MLP(sizes, backend=be.name, device=be.device_name, **kw)


def assert_on(net: vnn.MLP, arr: Any, dtype: str | None = None) -> None:
    """``arr`` is in the model's namespace and on its device (and of ``dtype`` when given)."""
    assert array_api_compat.array_namespace(arr) is net.xp, type(arr)
    assert array_api_compat.device(arr) == net.backend.device
    if dtype is not None:
        assert arr.dtype == getattr(net.xp, dtype)


def host(arr: Any) -> np.ndarray:
    return vnn.to_numpy(arr)


# -- a real full disk -------------------------------------------------------------------------------
@pytest.fixture
def full_disk(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A folder on a 64 KiB tmpfs (mounted for the test, unmounted after)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount command here")
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: pathlib.Path) -> None:
    """Write to ``disk`` until it has no space left."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
        with pytest.raises(OSError) as raised:
            os.write(fd, b"\0")
        assert raised.value.errno == errno.ENOSPC
    finally:
        os.close(fd)



def run_in_terminal(args: list[str], env: dict[str, str] | None = None,
                    columns: int = 100) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a real terminal (a pty ``columns`` wide: a new pty
    is 0 × 0, where a progress bar has no room); its exit status and everything it printed."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(args, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the pty closes when the process ends
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return proc.wait(timeout=120), seen.decode(errors="replace")
