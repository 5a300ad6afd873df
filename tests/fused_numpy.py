"""The fused step's kernels run on NumPy: what tests use in place of CUDA kernels."""

from __future__ import annotations

from typing import Any

import numpy as np

#: the functions a kernel body may call, as NumPy runs them
FUNCTIONS = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "sqrt": np.sqrt, "tanh": np.tanh,
             "abs": np.abs, "max": np.maximum}


def numpy_kernel(name: str, inputs: list[str], outputs: list[str], body: str) -> Any:
    """A kernel of the fused step (``backends.cupy.kernel``'s signature) run on NumPy arrays:
    ``kernel(*inputs, *outputs)`` updates the outputs in place, broadcasting as CuPy's
    ``ElementwiseKernel`` does. ``body`` is C that is also Python, executed as Python here."""
    code = compile(body, f"<{name}>", "exec")

    def run(*args: Any) -> None:
        env: dict[str, Any] = dict(zip(inputs + outputs, args))
        env.update(FUNCTIONS)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            exec(code, env)  # noqa: S102 - a body generated from the library's formulas
        for k, out in zip(outputs, args[len(inputs):]):
            out[...] = env[k]

    return run
