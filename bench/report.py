"""``python -m bench``: one alternating run of every contender, a table, JSON and a bar chart.

Every round times each contender once, in an order that rotates from round to round
(A B C, B C A, ...), so drift of a shared, noisy machine hits every contender alike. Each timed run
records the cores other processes kept busy meanwhile (``bench.machine.Load``); a round in which any
run saw more than ``--max-load`` is dropped whole, and the table shows medians over the clean rounds
with the min-max range. Each workload runs with plain SGD, momentum and Adam.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from vnn.backends import loops as compiled_loops

from bench import machine
from bench.runners import VnnRunner, cuda_available, runners_for
from bench.workloads import OPTIMIZERS, WORKLOADS, Workload

PEERS = ("torch-eager", "jax-jit", "sklearn-mlp")


def calibrate(w: Workload, dtype: str, device: str, seconds: float) -> int:
    """Steps per timed run so that vnn takes about ``seconds`` on this machine (timed over runs of
    doubling length until one lasts 50 ms, so that one noisy step cannot set it)."""
    steps = 4
    while True:
        r = VnnRunner(w, dtype, steps, device=device)
        r.run()
        t0 = time.perf_counter()
        r.run()
        elapsed = time.perf_counter() - t0
        if elapsed >= 0.05 or steps >= 2000:
            break
        steps *= 2
    return max(3, min(2000, round(seconds * steps / max(elapsed, 1e-7))))


def measure(w: Workload, dtype: str, device: str, rounds: int, steps: int,
            log: Any = sys.stderr, gap: float = 0.0) -> tuple[dict[str, list[float]], list[float]]:
    """Samples/s of every contender in each round, and each round's load: the most cores other
    processes kept busy during any of its runs (nan where the machine cannot tell). Each timed
    run follows ``gap`` seconds of idle: the thread pools of the contender before (OpenBLAS,
    XLA's, PyTorch's) spin for a while after their last call and would take a core from it."""
    made = []
    for name, factory in runners_for(device):
        try:
            r = factory(w, dtype, steps)
            r.run()  # warm-up: compilation, workspaces, caches
            made.append((name, r))
        except Exception as exc:  # a peer that cannot run this workload is reported, not fatal
            print(f"  {name}: skipped ({type(exc).__name__}: {exc})", file=log)
    rates: dict[str, list[float]] = {name: [] for name, _ in made}
    loads: list[float] = []
    for k in range(rounds):
        order = made[k % len(made):] + made[:k % len(made)]
        worst = 0.0
        for name, r in order:
            time.sleep(gap)
            with machine.Load() as load:
                t0 = time.perf_counter()
                r.run()
                rates[name].append(r.samples / (time.perf_counter() - t0))
            worst = float("nan") if load.cores is None or worst != worst else max(worst, load.cores)
        loads.append(worst)
    return rates, loads


def clean(rates: dict[str, list[float]], loads: list[float], max_load: float
          ) -> tuple[dict[str, float], list[int]]:
    """Medians over the rounds whose load was at most ``max_load`` (all rounds when none was,
    or when the load is unknown), and the indices of the rounds dropped."""
    dropped = [k for k, x in enumerate(loads) if x == x and x > max_load]
    keep = [k for k in range(len(loads)) if k not in dropped] or list(range(len(loads)))
    if len(keep) == len(loads):
        dropped = []
    return {n: statistics.median([v[k] for k in keep]) for n, v in rates.items()}, dropped


def all_loaded(loads: list[float], max_load: float) -> bool:
    """Whether every round saw more load than ``max_load`` (then none is dropped, and the table
    says that its medians are of loaded rounds)."""
    return bool(loads) and all(x == x and x > max_load for x in loads)


def need_bytes(w: Workload, dtype: str, steps: int) -> int:
    """What training needs to hold: parameters, gradients, the optimizer's state (none for SGD,
    a velocity for momentum, two moments for Adam), z and a of one batch for every layer, and the
    data (inputs and one-hot targets)."""
    item = 4 if dtype == "float32" else 8
    s, B = w.sizes, w.batch
    params = sum(s[i] * s[i + 1] + s[i + 1] for i in range(len(s) - 1))
    state = {"sgd": 0, "momentum": 1, "adam": 2}[w.optimizer]
    acts = 2 * B * sum(s[1:])
    data = steps * B * (s[0] + s[-1])
    return item * ((2 + state) * params + acts + data)


def peak_memory(w: Workload, dtype: str, steps: int, loops: bool | None = None) -> tuple[int, int]:
    """Peak bytes allocated (tracemalloc, which sees NumPy's buffers) while vnn-numpy builds its
    model and data and trains ``steps`` steps (``loops``: with the compiled loops, with NumPy's
    calls, or as installed); and the bytes it needs by :func:`need_bytes`. A one-step run first
    imports and initialises everything, so that the peak does not depend on what this process
    happened to load before."""
    VnnRunner(w, dtype, 1, loops=loops).run()
    gc.collect()
    tracemalloc.start()
    try:
        r = VnnRunner(w, dtype, steps, loops=loops)
        r.run()
        r.run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, need_bytes(w, dtype, steps)


def growth(w: Workload, dtype: str, total_steps: int = 10_000) -> int:
    """Bytes still allocated after ``total_steps`` more steps than after the first 100."""
    r = VnnRunner(w, dtype, 100)
    r.run()
    gc.collect()
    tracemalloc.start()
    try:
        r.run()
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(total_steps // 100):
            r.run()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    for res in results:
        rates, med = res["rates"], res["median"]
        dropped = res.get("dropped", [])
        note = (f", {len(dropped)} dropped (other processes above {res['max_load']} cores)"
                if dropped else "")
        if all_loaded(res.get("load", []), res.get("max_load", 0.5)):
            note = f", every round loaded (other processes above {res['max_load']} cores)"
        lines.append(f"\n{res['workload']}: {res['label']} ({res['dtype']}), "
                     f"{res['steps']} steps per run, {res['rounds']} rounds"
                     + (f", {res['gap']:g} s idle before each run" if res.get("gap") else "")
                     + note)
        peers = [p for p in PEERS if p in med]
        head = f"  {'contender':<22}{'samples/s':>12}  {'min-max':>21}"
        head += "".join(f"{'x ' + p.split('-')[0]:>10}" for p in peers) + f"{'% floor':>9}"
        lines.append(head)
        for name, values in rates.items():
            row = f"  {name:<22}{_fmt_rate(med[name]):>12}  " \
                  f"{_fmt_rate(min(values)) + '-' + _fmt_rate(max(values)):>21}"
            for p in peers:
                row += f"{med[name] / med[p]:>9.2f}x" if name.startswith("vnn") else f"{'':>10}"
            floor = med.get("gemm-floor")
            row += f"{100 * med[name] / floor:>8.0f}%" if floor and name != "gemm-floor" else ""
            lines.append(row)
        if "memory" in res:
            m = res["memory"]
            peaks = m["peaks"] if "peaks" in m else {"vnn": m["peak"]}
            lines.append("  peak memory (tracemalloc): " + ", ".join(
                f"{row} {peak / 2**20:.1f} MiB = {peak / m['need']:.2f}x" for row, peak in
                peaks.items()) + f" what it needs ({m['need'] / 2**20:.1f} MiB)")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names: list[str] = []
    for res in results:
        names += [n for n in res["median"] if n not in names]
    fig, ax = plt.subplots(figsize=(2.2 + 1.9 * len(results), 4.2))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + i * width for j, res in enumerate(results) if name in res["median"]]
        ys = [res["median"][name] for res in results if name in res["median"]]
        ax.bar(xs, ys, width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(results))],
                  [f"{r['workload']}\n{r.get('optimizer', 'sgd')}" for r in results])
    ax.set_yscale("log")
    ax.set_ylabel("training samples / s (median)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--workloads", default=None,
                   help="comma-separated subset of " + ",".join(WORKLOADS))
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                   help="comma-separated subset of " + ",".join(OPTIMIZERS) + " (default: all)")
    p.add_argument("--max-load", type=float, default=0.5,
                   help="drop rounds in which other processes kept more cores busy (default 0.5)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--seconds", type=float, default=0.25, help="target length of one timed run")
    p.add_argument("--gap", type=float, default=0.2,
                   help="seconds of idle before each timed run (other pools' threads stop spinning)")
    p.add_argument("--out", default="bench/results", help="folder for the JSON, PNG and table")
    p.add_argument("--tag", default=None, help="file name stem (default: cpu or cuda)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    args = p.parse_args(argv)
    if not args.gap >= 0:
        p.error(f"--gap {args.gap}: expected a number of seconds >= 0")

    device = args.device
    if device.startswith("cuda") and not cuda_available():
        p.error(f"--device {device}: CuPy with a visible GPU is needed")
    names = args.workloads.split(",") if args.workloads else [
        n for n, w in WORKLOADS.items() if device.startswith("cuda") or not w.cuda_only]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        p.error(f"--workloads: unknown {unknown}; expected some of {list(WORKLOADS)}")
    optimizers = args.optimizers.split(",")
    if [o for o in optimizers if o not in OPTIMIZERS]:
        p.error(f"--optimizers: {args.optimizers!r}; expected some of {list(OPTIMIZERS)}")
    info = machine.describe(device)
    about = machine.one_line(info).replace("\n", "\n# ")
    print(f"# vanilla-nn training throughput, {info['date']}\n# {about}", file=sys.stderr)
    results = []
    for name in names:
        for opt in optimizers:
            w = dataclasses.replace(WORKLOADS[name], optimizer=opt)
            steps = calibrate(w, args.dtype, device, args.seconds)
            print(f"{name} ({opt}): {steps} steps per timed run ...", file=sys.stderr)
            rates, loads = measure(w, args.dtype, device, args.rounds, steps, gap=args.gap)
            median, dropped = clean(rates, loads, args.max_load)
            res: dict[str, Any] = {
                "workload": name, "optimizer": opt, "label": w.label, "dtype": args.dtype,
                "steps": steps, "batch": w.batch, "rounds": args.rounds, "gap": args.gap,
                "rates": rates,
                "load": loads, "max_load": args.max_load, "dropped": dropped, "median": median,
            }
            if not args.no_memory and device == "cpu":
                peaks = {}
                for row, loops in (("vnn-compiled", True), ("vnn-numpy", False)):
                    if loops and compiled_loops.version() is None:  # numba not importable
                        continue
                    peaks[row], need = peak_memory(w, args.dtype, steps, loops)
                res["memory"] = {"peaks": peaks, "need": need}
            results.append(res)
    extra = {}
    if not args.no_memory and device == "cpu":
        extra["growth_10k_steps_small_bytes"] = growth(WORKLOADS["small"], args.dtype)
    text = table(results)
    if extra:
        text += (f"\n\nmemory growth of vnn-numpy over 10,000 steps of 'small' (tracemalloc): "
                 f"{extra['growth_10k_steps_small_bytes']:+,} bytes")
    header = f"vanilla-nn training throughput, {info['date']}\n{machine.one_line(info)}"
    print(header + "\n" + text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.tag or ("cuda" if device.startswith("cuda") else "cpu")
    (out / f"{stem}.json").write_text(json.dumps(
        {"machine": info, "device": device, "results": results, **extra}, indent=1))
    (out / f"{stem}.txt").write_text(header + "\n" + text + "\n")
    if plot(results, out / f"{stem}.png", header.replace("\n", "\n")):
        print(f"\nwrote {out / (stem + '.json')}, {out / (stem + '.txt')}, {out / (stem + '.png')}",
              file=sys.stderr)
    return 0
