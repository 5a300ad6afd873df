"""Fixtures: every array test runs on every backend available here.

numpy; array_api_strict on its default device and on ``device1``; torch on the CPU (and CUDA)
when installed; cupy when a GPU is present.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
import pytest

import backends
import vnn

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
