"""``vnn info``: the versions, the backends and devices this machine offers."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import platform
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
                      ("safetensors", "model files"), ("tqdm", "progress bar")):
        print(f"  {dist:<{width}}  {_version(dist) or 'not installed':<10} {use}")
    return 0
