"""``python -m bench.sklearn_fit``: fit time of vnn.sklearn's estimators against scikit-learn's.

Same data (digits, breast_cancer, diabetes; 75/25 split, random_state=0, standardised X), same
default hyperparameters and random_state, for each solver (adam, lbfgs), in one run that
alternates the two libraries; medians of the rounds. With the same random_state both run the same
number of epochs or L-BFGS iterations (tests check the fitted numbers agree), so the ratio is the
speed of one epoch or iteration.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
import warnings
from typing import Any

import numpy as np


def _data(name: str, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr).astype(dtype), sc.transform(Xte).astype(dtype), ytr, yte


def measure(rounds: int, dtypes: list[str], device: str,
            solvers: tuple[str, ...] = ("adam", "lbfgs")) -> list[dict[str, Any]]:
    from sklearn import neural_network as skn
    from sklearn.exceptions import ConvergenceWarning

    from vnn import sklearn as vsk

    rows = []
    for name, kind, solver, dtype in [(n, k, s, d) for s in solvers for n, k in
                                      [("digits", "clf"), ("breast_cancer", "clf"),
                                       ("diabetes", "reg")] for d in dtypes]:
        Xtr, Xte, ytr, yte = _data(name, dtype)
        clf = kind == "clf"
        makers = {
            "scikit-learn": (skn.MLPClassifier if clf else skn.MLPRegressor,
                             {"solver": solver}),
            "vnn": (vsk.MLPClassifier if clf else vsk.MLPRegressor,
                    {"device": device, "solver": solver}),
        }
        times: dict[str, list[float]] = {k: [] for k in makers}
        scores: dict[str, float] = {}
        iters: dict[str, int] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for k in range(rounds):
                for lib in (list(makers) if k % 2 == 0 else list(makers)[::-1]):
                    cls, extra = makers[lib]
                    est = cls(random_state=0, **extra)
                    t0 = time.perf_counter()
                    est.fit(Xtr, ytr)
                    times[lib].append(time.perf_counter() - t0)
                    scores[lib], iters[lib] = float(est.score(Xte, yte)), int(est.n_iter_)
        med = {lib: statistics.median(v) for lib, v in times.items()}
        rows.append({"data": name, "solver": solver, "dtype": dtype, "device": device,
                     "rounds": rounds,
                     "seconds": med, "min_max": {k: [min(v), max(v)] for k, v in times.items()},
                     "score": scores, "n_iter": iters,
                     "speedup": med["scikit-learn"] / med["vnn"]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = [f"{'data':14s} {'solver':6s} {'dtype':8s} {'iters':>6s} {'sklearn s':>10s} {'vnn s':>8s} "
           f"{'vnn speed-up':>12s} {'sklearn score':>13s} {'vnn score':>10s}"]
    for r in rows:
        out.append(f"{r['data']:14s} {r.get('solver', 'adam'):6s} {r['dtype']:8s} "
                   f"{r['n_iter']['vnn']:>6d} "
                   f"{r['seconds']['scikit-learn']:>10.3f} {r['seconds']['vnn']:>8.3f} "
                   f"{r['speedup']:>11.2f}x {r['score']['scikit-learn']:>13.4f} "
                   f"{r['score']['vnn']:>10.4f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sklearn_fit", description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--solvers", default="adam,lbfgs")
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    from bench import machine

    rows = measure(args.rounds, args.dtypes.split(","), args.device,
                   tuple(args.solvers.split(",")))
    machine.write_results(args.out, f"sklearn_fit_{args.device.replace(':', '')}",
                          f"vnn.sklearn vs scikit-learn fit time, defaults, random_state=0, "
                          f"median of {args.rounds} alternating rounds", table(rows), rows,
                          args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
