"""``python -m bench.lbfgs_cost``: what L-BFGS's host round trip costs per evaluation.

``vnn.train.lbfgs`` hands SciPy one flat float64 vector on the host: each evaluation of J and ∇J
copies θ to the model's device and [∇J, J] back. On a GPU those two copies (and the wait for the
second) are all that lbfgs adds to the backprop itself. Here, on the CPU, ``lbfgs.minimize`` runs
10 iterations with its packing (transposes, concatenation, dtype casts, the copies) and the
backprop timed where it calls them; the rest of the time is SciPy's own (the two-loop recursion
and the line search). Per evaluation, medians of the rounds.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
from typing import Any

import numpy as np

#: (name, layer sizes, samples): a small problem of the kind lbfgs is for, and a larger one
CASES = [("digits-like", [64, 100, 10], 1347), ("mnist-like", [784, 256, 256, 10], 10000)]


def _timed(function: Any, spent: dict[str, float], key: str) -> Any:
    """``function``, adding the seconds each call takes to ``spent[key]``."""
    import functools

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = function(*args, **kwargs)
        spent[key] += time.perf_counter() - t0
        return out

    return timed


def measure(rounds: int, device: str, dtype: str) -> list[dict[str, Any]]:
    import vnn
    from vnn.train import lbfgs

    rows = []
    for name, sizes, n in CASES:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, sizes[0])).astype(dtype)
        y = rng.integers(0, sizes[-1], size=n)
        net = vnn.MLP(sizes, activation="relu", output="softmax", device=device, dtype=dtype,
                      seed=0)
        A, Y, _ = net.prepare(X, y)
        packing = lbfgs.Packing(net)
        spent = {"round trip": 0.0, "backprop": 0.0}
        # the library's own functions, each timed where lbfgs.minimize calls it
        for owner, attr, key in ((lbfgs.Packing, "pack", "round trip"),
                                 (lbfgs.Packing, "unpack", "round trip"),
                                 (net, "gradients", "backprop")):
            setattr(owner, attr, _timed(getattr(owner, attr), spent, key))
        times: dict[str, list[float]] = {"evaluation": [], "round trip": [], "backprop": [],
                                          "scipy per evaluation": []}
        theta = lbfgs.Packing(net).pack(net.weights, net.biases)
        try:
            for _ in range(rounds):
                net.theta = packing.unpack(theta)  # the same start each round
                spent.update({"round trip": 0.0, "backprop": 0.0})
                t0 = time.perf_counter()
                result = lbfgs.minimize(net, A, Y, None, 1e-4, 10, 10**6, 0.0)
                total = time.perf_counter() - t0
                k = result.nfev
                times["evaluation"].append((spent["round trip"] + spent["backprop"]) / k)
                times["round trip"].append(spent["round trip"] / k)
                times["backprop"].append(spent["backprop"] / k)
                times["scipy per evaluation"].append(
                    (total - spent["round trip"] - spent["backprop"]) / k)
        finally:
            for attr in ("pack", "unpack"):
                setattr(lbfgs.Packing, attr, getattr(lbfgs.Packing, attr).__wrapped__)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"case": name, "sizes": sizes, "n": n, "parameters": packing.size,
                     "dtype": dtype, "device": device, "rounds": rounds, "seconds": med,
                     "round_trip_share": med["round trip"] / med["evaluation"],
                     "bytes_each_way": packing.size * np.dtype(dtype).itemsize})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = [f"{'case':12s} {'params':>8s} {'n':>6s} {'eval ms':>8s} {'backprop ms':>11s} "
           f"{'round trip ms':>13s} {'share':>6s} {'scipy ms/eval':>13s} {'bytes each way':>14s}"]
    for r in rows:
        s = r["seconds"]
        out.append(f"{r['case']:12s} {r['parameters']:>8d} {r['n']:>6d} "
                   f"{1e3 * s['evaluation']:>8.2f} {1e3 * s['backprop']:>11.2f} "
                   f"{1e3 * s['round trip']:>13.3f} {100 * r['round_trip_share']:>5.1f}% "
                   f"{1e3 * s['scipy per evaluation']:>13.3f} {r['bytes_each_way']:>14,d}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lbfgs_cost", description=__doc__)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    from bench import machine

    rows = measure(args.rounds, args.device, args.dtype)
    machine.write_results(args.out, f"lbfgs_cost_{args.device.replace(':', '')}",
                          f"L-BFGS host round trip per evaluation, {args.dtype}, median of "
                          f"{args.rounds} rounds", table(rows), rows, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
