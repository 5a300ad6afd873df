"""``python -m bench.compare --baseline REV``: vnn NumPy training throughput, a revision vs the working tree.

Method. Each tree is copied into a temporary import root (vnn/, backends/ as vnn/backends and as top-level
backends, bench/, and this file as bench/compare.py), so edits made during the run do not matter and both
run the same worker code against their own vnn. One persistent worker process per tree, with the same
inherited environment (BLAS threads included), builds each (workload, config) runner once, warm-up run
included, then times one ``run()`` per request. Both workers calibrate (same process history); the
baseline's step count is used by both. The parent ALTERNATES: in round k every (workload, config) is
timed baseline then new for even k, new then baseline for odd k, so drift of a shared machine hits both
alike. Each timed run follows ``--gap`` s of idle: OpenBLAS threads spin ~0.1 s after a call, and the
idle worker's spinning threads slowed the side that ran second by up to 40% on 2 cores. The table gives
medians over the rounds with min-max, and new/baseline as the ratio of medians ("paired": the median of
the per-round ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ("sgd", "momentum", "adam-l2")
SIDES = ("baseline", "new")


# ---- worker: runs inside one tree's import root, one JSON request and reply per line ----

def make_trainer(net: Any, opt: Any, l2: float) -> Any:
    """The trainer for one config; adapt here if the current tree changes Trainer's signature."""
    import vnn.train

    return vnn.train.Trainer(net, opt, l2)


def build_runner(workload: str, config: str, dtype: str, steps: int) -> Any:
    import vnn
    from bench.runners import VnnRunner
    from bench.workloads import WORKLOADS

    r = VnnRunner(WORKLOADS[workload], dtype, steps)
    if config != "sgd":  # sgd: the runner as is (plain SGD, no L2, the benchmark's default)
        opt = vnn.Momentum(0.01) if config == "momentum" else vnn.Adam(1e-3)
        with r.be.activate():
            r.trainer = make_trainer(r.net, opt, 1e-4 if config == "adam-l2" else 0.0)
    r.run()  # warm-up: workspaces, caches
    return r


def worker() -> int:
    out, sys.stdout = sys.stdout, sys.stderr  # nothing but replies on the pipe
    runners: dict[str, Any] = {}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["cmd"] == "hello":
                import vnn.backends  # binds vnn too

                reply: dict[str, Any] = {"vnn": vnn.__file__, "backends": vnn.backends.__file__}
            elif req["cmd"] == "calibrate":
                from bench.report import calibrate
                from bench.workloads import WORKLOADS

                reply = {"steps": calibrate(WORKLOADS[req["workload"]], req["dtype"], "cpu", req["seconds"])}
            elif req["cmd"] == "build":
                runners[req["key"]] = build_runner(req["workload"], req["config"], req["dtype"], req["steps"])
                reply = {}
            else:  # "time"
                r = runners[req["key"]]
                t0 = time.perf_counter()
                r.run()
                reply = {"rate": r.samples / (time.perf_counter() - t0)}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


# ---- parent ----

def import_root(src: Path, dest: Path) -> Path:
    """Lay out ``src``'s vnn/, backends/ and bench/ as an import root in ``dest``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(src / "vnn", dest / "vnn", ignore=ignore)
    if (src / "backends").is_dir():
        if not (dest / "vnn" / "backends").exists():
            shutil.copytree(src / "backends", dest / "vnn" / "backends", ignore=ignore)
        shutil.copytree(src / "backends", dest / "backends", ignore=ignore)  # for `import backends`
    shutil.copytree(src / "bench" if (src / "bench").is_dir() else REPO / "bench", dest / "bench",
                    ignore=ignore)
    shutil.copy2(Path(__file__).resolve(), dest / "bench" / "compare.py")
    return dest


class Worker:
    def __init__(self, root: Path) -> None:
        self.root = root  # same environment as ours (threads), but vnn and bench from root
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.compare", "--worker"], cwd=root,
                                     env={**os.environ, "PYTHONPATH": str(root)}, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        hello = self.ask(cmd="hello")
        if not all(Path(f).is_relative_to(root) for f in hello.values()):
            raise RuntimeError(f"worker imported vnn from outside {root}: {hello}")

    def ask(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker in {self.root} died (exit {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker in {self.root}, {req}: {reply['error']}")
        return reply

    def close(self) -> None:
        self.proc.communicate(timeout=30)  # closes its stdin: the worker's loop ends


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _fmt(values: list[float]) -> tuple[str, str]:
    return f"{statistics.median(values):,.0f}", f"{min(values):,.0f}-{max(values):,.0f}"


def table(rates: dict[str, Any], steps: dict[str, int]) -> str:
    lines = [f"{'workload':<9}{'config':<10}{'steps':>6}{'baseline samples/s':>20}{'min-max':>21}"
             f"{'new samples/s':>15}{'min-max':>21}{'new/baseline':>14}{'paired':>8}"]
    for wname, by_config in rates.items():
        for config, r in by_config.items():
            (bm, br), (nm, nr) = _fmt(r["baseline"]), _fmt(r["new"])
            ratio = statistics.median(r["new"]) / statistics.median(r["baseline"])
            paired = statistics.median(n / b for n, b in zip(r["new"], r["baseline"]))
            lines.append(f"{wname:<9}{config:<10}{steps[wname]:>6}{bm:>20}{br:>21}{nm:>15}{nr:>21}"
                         f"{ratio:>13.3f}x{paired:>7.3f}x")
    return "\n".join(lines)


def measure(workers: dict[str, Worker], workloads: list[str], configs: list[str],
            args: argparse.Namespace) -> tuple[dict[str, int], dict[str, Any]]:
    """Steps per timed run per workload, and rates[workload][config][side]: one rate per round."""
    steps: dict[str, int] = {}
    rates: dict[str, Any] = {}
    for wname in workloads:  # both calibrate (same process history, allocator state)
        found = {side: w.ask(cmd="calibrate", workload=wname, dtype=args.dtype, seconds=args.seconds)
                 for side, w in workers.items()}
        steps[wname] = found["baseline"]["steps"]
        print(f"{wname}: {steps[wname]} steps per timed run", file=sys.stderr)
        for config in configs:
            for w in workers.values():
                w.ask(cmd="build", key=f"{wname}/{config}", workload=wname, config=config,
                      dtype=args.dtype, steps=steps[wname])
        rates[wname] = {c: {side: [] for side in SIDES} for c in configs}
    for k in range(args.rounds):
        for wname in workloads:
            for config in configs:
                for side in SIDES if k % 2 == 0 else SIDES[::-1]:
                    time.sleep(args.gap)
                    reply = workers[side].ask(cmd="time", key=f"{wname}/{config}")
                    rates[wname][config][side].append(reply["rate"])
        print(f"round {k + 1}/{args.rounds} done", file=sys.stderr)
    return steps, rates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    p.add_argument("--baseline", help="git revision to compare the working tree with (required)")
    p.add_argument("--workloads", default="small,mnist,wide,deep")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of the default")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--seconds", type=float, default=0.25, help="target length of one timed run")
    p.add_argument("--gap", type=float, default=0.2, help="seconds of idle before each timed run")
    p.add_argument("--out", default=None, help="JSON file for the raw rates")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker()
    from bench.workloads import WORKLOADS

    workloads, configs = args.workloads.split(","), args.configs.split(",")
    if not args.baseline:
        p.error("--baseline REV is required")
    if bad := [n for n in workloads if n not in WORKLOADS or WORKLOADS[n].cuda_only]:
        p.error(f"--workloads: unknown or CUDA-only {bad}")
    if bad := [c for c in configs if c not in CONFIGS]:
        p.error(f"--configs: unknown {bad}; expected some of {list(CONFIGS)}")
    try:
        rev, head = git("rev-parse", "--verify", args.baseline + "^{commit}"), git("rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        p.error(f"--baseline {args.baseline}: not a revision of {REPO}")
    dirty = bool(git("status", "--porcelain", "--", "vnn", "backends", "bench", ":!bench/compare.py"))
    with tempfile.TemporaryDirectory(prefix="vnn-compare-") as tmp:
        (src := Path(tmp, "src")).mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        roots = {"baseline": import_root(src, Path(tmp, "baseline")),
                 "new": import_root(REPO, Path(tmp, "new"))}
        workers: dict[str, Worker] = {}
        try:
            for side in SIDES:
                workers[side] = Worker(roots[side])
            steps, rates = measure(workers, workloads, configs, args)
        finally:
            for w in workers.values():
                w.close()
    print(f"baseline {args.baseline} ({rev[:10]}) vs working tree ({head[:10]}"
          f"{', modified' if dirty else ''}); {args.dtype}, {args.rounds} rounds, medians\n")
    print(table(rates, steps))
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"baseline": args.baseline, "baseline_commit": rev, "head": head, "modified": dirty,
             "dtype": args.dtype, "rounds": args.rounds, "seconds": args.seconds, "gap": args.gap,
             "steps": steps, "rates": rates}, indent=1))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
