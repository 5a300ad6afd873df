"""``vnn info``: the versions, the backends and devices this machine offers."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import platform
import shutil
import sys
from pathlib import Path

import vnn
from vnn.cli.options import BACKEND_NAMES


# -- info -----------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cmd_info(args: argparse.Namespace) -> int:
    from vnn import backends

    print(f"vnn {vnn.__version__} ({Path(vnn.__file__).parent})")
    print(f"python {platform.python_version()} ({sys.executable}), {platform.platform()}")
    error = None
    try:
        found = backends.available()
    except Exception as exc:  # a broken installation of an optional library
        found, error = [], exc
    devices: dict[str, list[str]] = {}
    for be in found:
        devices.setdefault(be.name, []).append(be.device_name)
    print("backends:")
    width = max(len(n) for n in BACKEND_NAMES) + 1
    for name in BACKEND_NAMES:
        if importlib.util.find_spec(name) is None:
            status = "not installed"
        else:
            module = sys.modules.get(name)
            version = getattr(module, "__version__", None) or "?"
            seen = devices.get(name)
            if seen:
                status = f"{version:<10} devices: {', '.join(seen)}"
            elif error is not None:
                status = f"{version:<10} could not be checked ({type(error).__name__}: {error})"
            else:
                status = f"{version:<10} installed, no device available (no GPU seen)"
        print(f"  {name:<{width}}  {status}")
    print("optional:")
    for dist, use in (("scikit-learn", "vnn train --dataset"), ("matplotlib", "vnn train --plot"),
                      ("safetensors", "model files"), ("tqdm", "progress bar"),
                      ("scipy", "vnn.LBFGS, solver='lbfgs'"),
                      ("mpi4py", "--distributed, fit(distributed=True)"),
                      ("mpich", "the MPI library mpi4py runs on")):
        print(f"  {dist:<{width}}  {_version(dist) or 'not installed':<10} {use}")
    print(f"  {'numba':<{width}}  {_version('numba') or 'not installed':<10} {_compiled()}")
    print("parallel and GPU:")
    print(f"  {'mpiexec':<{width}}  {shutil.which('mpiexec') or 'not on PATH'}")
    print(f"  {'nvrtc':<{width}}  {_nvrtc()}")
    print(f"  {'gpu':<{width}}  {_gpus()}")
    return 0


def _compiled() -> str:
    """Whether NumPy models train with compiled loops (backends/loops.py), and why not."""
    import os

    from vnn.backends import loops

    if not loops.installed():
        return "compiled CPU step: off (pip install 'vanilla-nn[fast]')"
    if not loops.enabled():
        return f"compiled CPU step: off (VNN_NUMBA={os.environ.get('VNN_NUMBA')})"
    when = ("every job (VNN_NUMBA=1)" if loops.mode() == "on" else
            f"jobs of about {loops.AUTO_SECONDS:g} s or more (VNN_NUMBA=1: every job)")
    return f"compiled CPU step: on for {when}; cache {loops.cache_dir()}"


def _nvrtc() -> str:
    """NVRTC's version as CuPy loads it (CuPy compiles every kernel through it)."""
    if importlib.util.find_spec("cupy") is None:
        return "not checked (CuPy is not installed)"
    try:
        from cupy.cuda import compiler

        major, minor = compiler._get_nvrtc_version()
        return f"{major}.{minor}"
    except Exception as exc:  # noqa: BLE001 - a missing or broken NVRTC, reported as such
        return f"not usable ({type(exc).__name__}: {exc}); pip install 'vanilla-nn[cuda13]'"


def _gpus() -> str:
    """The GPUs CuPy (or else torch) can use, by name, or why there are none."""
    if importlib.util.find_spec("cupy") is not None:
        try:
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
            names = [cupy.cuda.runtime.getDeviceProperties(i)["name"].decode()
                     for i in range(count)]
            return ", ".join(f"cuda:{i} {n}" for i, n in enumerate(names)) or "none visible"
        except Exception as exc:  # noqa: BLE001 - no driver, an old one, no device
            return f"none visible to CuPy ({type(exc).__name__}: {exc})"
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}"
                             for i in range(torch.cuda.device_count()))
    return "none seen (CuPy is not installed; torch sees no CUDA device)"
