"""``python -m bench.distributed``: data-parallel throughput on 1, 2, ... MPI ranks.

Each rank runs with one BLAS thread, so P ranks use P cores. The workload is ``mnist``
(784-256-256-10 ReLU/softmax, float32, global batch 128, SGD) on synthetic data; every rank trains
on its shard of each global batch and the gradients are summed with one allreduce per step. The
report gives global samples/s (median of the epochs after the first), the speed-up over one rank,
and the share of a step spent in the allreduce.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).parent


def worker(args: argparse.Namespace) -> None:
    import vnn
    from bench.workloads import WORKLOADS
    from vnn.distributed import Communicator

    w = WORKLOADS[args.workload]
    X, y = w.data(args.steps, "float32")
    net = vnn.MLP(list(w.sizes), activation=w.activation, output=w.output, dtype="float32", seed=0)
    comm = Communicator(net.backend) if args.ranks > 1 else None
    times, comm_s = [], []
    for _ in range(args.epochs):
        before = comm.seconds if comm else 0.0
        t0 = time.perf_counter()
        net.fit(X, y, optimizer=vnn.SGD(0.01), epochs=1, batch_size=w.batch, shuffle=False,
                distributed=comm if comm else False)
        times.append(time.perf_counter() - t0)
        comm_s.append((comm.seconds if comm else 0.0) - before)
    if comm is None or comm.rank == 0:
        keep = slice(1, None)  # the first epoch builds workspaces
        med = statistics.median(times[keep])
        result = {"ranks": args.ranks, "workload": w.name, "samples": X.shape[0],
                  "epoch_seconds": times, "allreduce_seconds": comm_s,
                  "samples_per_second": X.shape[0] / med,
                  "allreduce_share": statistics.median(c / t for c, t in
                                                       zip(comm_s[keep], times[keep])),
                  "gradient_bytes": 4 * net.n_parameters}
        pathlib.Path(args.out).write_text(json.dumps(result), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__)
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts")
    p.add_argument("--workload", default="mnist")
    p.add_argument("--steps", type=int, default=60, help="global batches per epoch")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.ranks = int(args.ranks)
        worker(args)
        return 0
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = "mpiexec"
    rows = []
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for ranks in [int(r) for r in args.ranks.split(",")]:
        out = pathlib.Path(args.out) / f".distributed_{ranks}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "bench.distributed", "--worker",
               "--ranks", str(ranks), "--workload", args.workload, "--steps", str(args.steps),
               "--epochs", str(args.epochs), "--out", str(out)]
        subprocess.run(cmd, check=True, env=env, cwd=HERE.parent)
        rows.append(json.loads(out.read_text(encoding="utf-8")))
        out.unlink()
    from bench import machine

    base = rows[0]["samples_per_second"]
    lines = [f"vnn data-parallel training over MPI, {args.workload}, float32, global batch "
             f"{rows[0]['samples'] // args.steps}, one BLAS thread per rank, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             machine.one_line(machine.describe()), "",
             f"{'ranks':>5s} {'samples/s':>10s} {'speed-up':>9s} {'allreduce share':>16s} "
             f"{'gradient bytes':>15s}"]
    for r in rows:
        lines.append(f"{r['ranks']:>5d} {r['samples_per_second']:>10,.0f} "
                     f"{r['samples_per_second'] / base:>8.2f}x {100 * r['allreduce_share']:>15.1f}% "
                     f"{r['gradient_bytes']:>15,d}")
    text = "\n".join(lines)
    print(text)
    (pathlib.Path(args.out) / "distributed.txt").write_text(text + "\n", encoding="utf-8")
    (pathlib.Path(args.out) / "distributed.json").write_text(json.dumps(rows, indent=1),
                                                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
