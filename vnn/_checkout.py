"""``vnn.backends`` in a source checkout that is not installed (``PYTHONPATH=.``): the sibling
folder ``backends/``, which an install maps with setuptools' ``package-dir``."""

from __future__ import annotations

import importlib.util
import pathlib
import sys


def _backends() -> None:
    if importlib.util.find_spec("vnn.backends") is not None:
        return
    folder = pathlib.Path(__file__).resolve().parent.parent / "backends"
    if not (folder / "__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location("vnn.backends", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["vnn.backends"] = module
    spec.loader.exec_module(module)
    sys.modules["vnn"].backends = module  # type: ignore[attr-defined]


_backends()
