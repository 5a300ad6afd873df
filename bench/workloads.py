"""The benchmark workloads: architecture, batch size and synthetic data (fixed seeds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple[int, ...]
    activation: str
    output: str
    batch: int
    cuda_only: bool = False
    #: the update every contender runs: "sgd" (Eqn 15), "momentum" (β = 0.9) or "adam"
    optimizer: str = "sgd"

    @property
    def label(self) -> str:
        hidden = self.sizes[1:-1]
        if len(set(hidden)) == 1 and len(hidden) > 2:
            mid = f"[{hidden[0]}x{len(hidden)}]"
        else:
            mid = "-".join(map(str, hidden))
        return (f"{self.sizes[0]}-{mid}-{self.sizes[-1]} {self.activation}/{self.output}, "
                f"batch {self.batch}, {self.optimizer}")

    def data(self, steps: int, dtype: str = "float32", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``steps`` batches of inputs and targets on the host (labels, or values for regression)."""
        rng = np.random.default_rng(seed)
        n = steps * self.batch
        X = rng.standard_normal((n, self.sizes[0]), dtype=dtype)
        if self.output == "softmax":
            y = rng.integers(0, self.sizes[-1], size=n)
        elif self.output == "sigmoid":
            y = rng.integers(0, 2, size=n)
        else:
            y = rng.standard_normal((n, self.sizes[-1]), dtype=dtype)
        return X, y

    def gemm_shapes(self) -> list[tuple[int, int, int]]:
        """(m, k, n) of every matrix product one training step needs: L forward (Eqn 1),
        L weight gradients (Eqn 14) and L−1 back-propagated deltas (Eqn 13)."""
        B, s = self.batch, self.sizes
        L = len(s) - 1
        fwd = [(B, s[i], s[i + 1]) for i in range(L)]
        dW = [(s[i + 1], B, s[i]) for i in range(L)]
        dA = [(B, s[i + 1], s[i]) for i in range(1, L)]
        return fwd + dW + dA


WORKLOADS = {
    w.name: w
    for w in [
        Workload("small", (64, 128, 10), "relu", "softmax", 64),
        Workload("mnist", (784, 256, 256, 10), "relu", "softmax", 128),
        Workload("wide", (784, 2048, 2048, 10), "relu", "softmax", 256),
        Workload("deep", (32,) + (64,) * 8 + (1,), "tanh", "identity", 32),
        Workload("gpu-wide", (4096, 4096, 4096, 10), "relu", "softmax", 1024, cuda_only=True),
    ]
}

#: the learning rate every runner uses with SGD and momentum (no L2)
LR = 0.01
#: momentum's β, and Adam's learning rate (β₁, β₂, ε: every library's defaults, 0.9, 0.999, 1e-8)
BETA, ADAM_LR = 0.9, 1e-3
OPTIMIZERS = ("sgd", "momentum", "adam")
