"""The fused step's formulas run on NumPy: what tests use in place of CUDA kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
from vnn.backends.fused import FORMULAS, Kernel


def _names(params: str) -> list[str]:
    return [p.split()[-1] for p in params.split(",")]


def numpy_kernel(name: str) -> Kernel:
    """The formula ``name`` run on NumPy arrays: ``kernel(*inputs, *outputs)`` updates the
    outputs in place, broadcasting as CuPy's ``ElementwiseKernel`` does."""
    ins, outs, body = FORMULAS[name]
    inputs, outputs = _names(ins), _names(outs)
    code = compile(body.replace("; ", "\n"), f"<{name}>", "exec")

    def run(*args: Any) -> None:
        env: dict[str, Any] = dict(zip(inputs + outputs, args))
        env.update(exp=np.exp, sqrt=np.sqrt)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            exec(code, env)  # noqa: S102 - the fixed formulas of this module
        for k, out in zip(outputs, args[len(inputs):]):
            out[...] = env[k]

    return run
