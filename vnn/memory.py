"""How many bytes a network needs, checked against the backend's free memory before allocating.

Two moments are checked, each within microseconds (a few integer sums, no arrays):

- building a model (:class:`vnn.MLP`): its parameters, and on the host the float64 draw of each
  layer's initial weights (§1.7), one layer at a time;
- ``fit``: what training allocates on top of the parameters: gradients (Eqn 14), the optimizer's
  state (``Optimizer.n_state`` arrays per parameter), the copy of parameters and state taken at
  each epoch's start (to fall back on when training diverges), one batch's activations and δ of
  every layer (the workspace of ``vnn/step/workspace.py``), and the data moved to the device.

What exceeds the memory the backend reports (:meth:`backends.Backend.available_memory`) is
refused with :class:`ModelTooLargeError`. When a backend cannot tell, only :data:`SANITY_LIMIT`
applies. The figures are estimates ("about"), close to what NumPy allocates (tests measure it).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vnn.backends import Backend
    from vnn.network import MLP

ITEMSIZE = {"float32": 4, "float64": 8}
#: bytes per weight of the host draw of §1.7 (float64, whatever the model's dtype)
DRAW_ITEMSIZE = 8
#: the most a model may need when the backend cannot tell its free memory (1 PiB)
SANITY_LIMIT = 2**50
#: needs up to this many bytes (16 MiB) are not checked: asking the system for its free memory
#: (``/proc/meminfo``, the GPU driver) costs more than building a small model
UNCHECKED = 2**24


class ModelTooLargeError(ValueError, MemoryError):
    """A network, or what training it allocates, needs more memory than is available.

    Raised before anything is allocated; the message gives the size and what it is made of. A
    subclass of both ``ValueError`` (the sizes asked for are too large) and ``MemoryError``.
    """


def human(n_bytes: int) -> str:
    """A number of bytes in decimal units: ``'512 B'``, ``'24.0 GB'``."""
    if n_bytes < 1000:
        return f"{n_bytes} B"
    for k, unit in enumerate(("kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"), start=1):
        if n_bytes < 1000 ** (k + 1) or unit == "YB" and n_bytes < 10**30:
            return f"{n_bytes / 1000**k:.1f} {unit}"
    return f"{Decimal(n_bytes):.2E} B"


def count(n: int) -> str:
    """A count with thousands separators (in scientific notation beyond 10^24)."""
    return f"{n:,}" if n < 10**24 else f"{Decimal(n):.2E}"


def weight_elements(sizes: list[int]) -> list[int]:
    """|W(ℓ)| = m_ℓ m_{ℓ−1} for ℓ = 1..L."""
    return [m_in * m_out for m_in, m_out in zip(sizes, sizes[1:])]


def parameter_count(sizes: list[int]) -> int:
    """Σ_ℓ m_ℓ (m_{ℓ−1} + 1): every W(ℓ) and b(ℓ)."""
    return sum(weight_elements(sizes)) + sum(sizes[1:])


def draw_peak(sizes: list[int], dtype: str, on_host: bool) -> int:
    """Host bytes at the peak of drawing the initial weights, one layer at a time (§1.7).

    Layer ℓ is drawn in float64 and converted to ``dtype`` (no copy for float64). On a host
    backend the converted layer is the parameter itself and the layers before it are alive; a
    device backend only holds one layer's draw and its converted copy on the host.
    """
    it = ITEMSIZE[dtype]
    copy = 0 if dtype == "float64" else it
    done, peak = 0, 0
    for w in weight_elements(sizes):
        peak = max(peak, (done if on_host else 0) + (DRAW_ITEMSIZE + copy) * w)
        done += it * w
    return peak


def batch_elements(sizes: list[int], n: int) -> int:
    """Numbers held for one batch of ``n`` rows by the step's workspace (``_Workspace``)."""
    L = len(sizes) - 1
    hidden = sizes[1:L]
    per_row = (sum(m + 1 for m in sizes[:L])  # â(0..L−1), each with its row of ones
               + 4 * sizes[L]  # y, z(L), δ(L) and the loss's scratch
               + sum(m + 1 for m in hidden)  # φ′ of the hidden layers
               + sum(hidden)  # δ of the hidden layers
               + max(hidden, default=0)  # ReLU's zeros
               + 3)
    return n * per_row


def _refuse(head: str, need: int, parts: str, free: Callable[[], int | None], where: str,
            advice: str) -> None:
    """Raise ``ModelTooLargeError`` when ``need`` bytes exceed what ``free()`` reports (asked
    only for needs above :data:`UNCHECKED`; ``where``: which memory, e.g. ``" on cuda:0"``);
    ``head`` says who needs how much, ``parts`` what of."""
    if need <= UNCHECKED:
        return
    available = free()
    limit = SANITY_LIMIT if available is None else available
    if need <= limit:
        return
    have = (f"about {human(available)} is available{where}" if available is not None else
            f"that is more than {human(SANITY_LIMIT)}, the most vnn allocates where the "
            "backend cannot tell its free memory")
    raise ModelTooLargeError(f"{head} ({parts}) but {have}; {advice}")


def check_model(be: Backend, sizes: list[int], dtype: str, label: str) -> None:
    """Refuse a model whose parameters (and initial draw) would not fit, before drawing it.

    ``label`` names the model in the message, e.g. ``"sizes=[1, 1000000000, 1]"``.
    """
    it, n_params = ITEMSIZE[dtype], parameter_count(sizes)
    params = it * n_params
    if max(params, draw_peak(sizes, dtype, on_host=be.on_host())) <= UNCHECKED:
        return
    what = f"{count(n_params)} parameters in {dtype}, {human(params)}"
    advice = "use fewer or narrower layers"
    if be.on_host():
        peak = draw_peak(sizes, dtype, on_host=True)
        if peak > params:
            what += (f", and up to {human(peak)} while the initial weights are drawn, a layer "
                     "at a time in float64")
        need = max(params, peak)
        _refuse(f"{label} needs about {human(need)}", need, what, be.available_memory, "",
                advice)
        return
    where = f" on {be.device_name}"
    _refuse(f"{label} needs about {human(params)}{where}", params, what, be.available_memory,
            where, advice)
    from vnn.backends import host_available_memory

    peak = draw_peak(sizes, dtype, on_host=False)
    _refuse(f"drawing the initial weights of {label} needs about {human(peak)} of host memory",
            peak, "the largest layer in float64 and its copy in the model's dtype",
            host_available_memory, " on the host", advice)


def rows(data: Any) -> int:
    """The number of samples (rows) of array-like ``data`` without reading it; 0 if unknown."""
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    try:
        return len(data)
    except TypeError:
        return 0


def data_bytes(net: MLP, X: Any, y: Any, sample_weight: Any = None,
               validation_data: Any = None) -> int:
    """Bytes that moving the training (and validation) data to the device allocates.

    Inputs already of the model's library, device and dtype are used where they are; targets are
    always made anew (one-hot rows, the model's dtype); weights too.
    """
    be, dtype = net.backend, net.dtype
    it, m0, mL = ITEMSIZE[dtype], net.sizes[0], net.sizes[-1]

    def inputs(A: Any) -> int:
        kept = be.owns(A) and getattr(A, "dtype", None) == be.dtype(dtype)
        return 0 if kept else rows(A) * m0 * it

    total = inputs(X) + rows(X) * mL * it + (0 if sample_weight is None else rows(X) * it)
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        total += inputs(validation_data[0]) + rows(validation_data[0]) * mL * it
    return total


def forward_elements(sizes: list[int], n: int) -> int:
    """Numbers a forward pass (Eqns 1-2) of ``n`` rows keeps: z(ℓ) and a(ℓ) of every layer."""
    return 2 * n * sum(sizes)


def forward_rows(be: Backend, sizes: list[int], dtype: str, n: int) -> int:
    """How many of ``n`` rows one forward pass may take at once: all of them when their
    activations fit in half the free memory, else as many as do (rows are independent, so a
    pass in chunks gives the same values). Raises :class:`ModelTooLargeError` if not one does."""
    per_row = ITEMSIZE[dtype] * forward_elements(sizes, 1)
    need = per_row * n
    if need <= UNCHECKED:
        return n
    available = be.available_memory()
    budget = (SANITY_LIMIT if available is None else available) // 2
    if need <= budget:
        return n
    if per_row > budget:
        where = "" if be.on_host() else f" on {be.device_name}"
        raise ModelTooLargeError(f"a forward pass of sizes={sizes} needs about {human(per_row)}"
                                 f"{where} per row, more than half the {human(2 * budget)} "
                                 "available; use fewer or narrower layers")
    return max(1, budget // per_row)


def check_fit(net: MLP, n_state: int, n: int, batch_size: int, lam: float, data: int,
              n_val: int = 0) -> None:
    """Refuse training whose buffers would not fit next to the model, before moving any data.

    ``n_state``: the optimizer's state arrays per parameter; ``n`` samples in batches of
    ``batch_size``; ``lam``: λ (the fast step keeps a scratch copy of the weights for λW);
    ``data``: bytes of data to move (:func:`data_bytes`); ``n_val``: rows of validation data
    (their forward pass, Eqns 1-2, after each epoch).
    """
    sizes, be = net.sizes, net.backend
    it = ITEMSIZE[net.dtype]
    params = it * parameter_count(sizes)
    batch_rows = sorted({min(batch_size, n), n % batch_size} - {0}) if n else []
    parts = {
        "gradients": params,
        f"optimizer state ({n_state} per parameter)": n_state * params,
        "copies of the parameters and state at each epoch's start": (1 + n_state) * params,
        f"one batch's activations and δ ({', '.join(map(str, batch_rows)) or 0} rows)":
            it * sum(batch_elements(sizes, r) for r in batch_rows),
        "data": data,
        "λW scratch": it * sum(weight_elements(sizes)) if lam else 0,
        f"the validation pass ({n_val} rows)": it * forward_elements(sizes, n_val),
    }
    need = sum(parts.values())
    if need <= UNCHECKED:  # the message is only made for a need worth asking the system about
        return
    where = "" if be.on_host() else f" on {be.device_name}"
    _refuse(f"fit needs about {human(need)}{where} more than the model's {human(params)} of "
            "parameters", need, ", ".join(f"{k} {human(v)}" for k, v in parts.items() if v),
            be.available_memory, where, "use a smaller batch_size, network or optimizer")
