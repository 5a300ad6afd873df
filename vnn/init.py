"""He and Glorot initialisation (§1.7), drawn on the host so every backend starts alike."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from vnn.backends import HostRNG

SCHEMES = ("he", "glorot")


def he(rng: HostRNG, m_out: int, m_in: int) -> Any:
    """§1.7, He: W_ij ~ N(0, 2 / m_{ℓ−1}), for layers whose output goes through ReLU."""
    W = rng.standard_normal((m_out, m_in))
    W *= math.sqrt(2.0 / m_in)  # in place: one float64 array per layer, never two
    return W


def glorot(rng: HostRNG, m_out: int, m_in: int) -> Any:
    """§1.7, Xavier/Glorot: W_ij ~ N(0, 2 / (m_{ℓ−1} + m_ℓ)), for tanh, sigmoid and the rest."""
    W = rng.standard_normal((m_out, m_in))
    W *= math.sqrt(2.0 / (m_in + m_out))
    return W


def scheme_for(layer_activation: str, init: str | None) -> str:
    """The scheme of §1.7 for a layer: ``init`` if given, else He for ReLU and Glorot otherwise."""
    if init is not None:
        if init not in SCHEMES:
            raise ValueError(f"init={init!r} is not known; expected one of {list(SCHEMES)} or None")
        return init
    return "he" if layer_activation == "relu" else "glorot"


def initial_weights(rng: HostRNG, sizes: list[int], layer_activations: list[str],
                    init: str | None) -> Iterator[Any]:
    """One host float64 matrix per layer, W^(ℓ) of shape (m_ℓ, m_{ℓ−1}), in layer order.

    A generator: each layer is drawn when asked for, so only one float64 draw is alive at a time.
    """
    draw = {"he": he, "glorot": glorot}
    for i, name in enumerate(layer_activations):
        yield draw[scheme_for(name, init)](rng, sizes[i + 1], sizes[i])
