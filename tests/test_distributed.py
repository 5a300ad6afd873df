"""Data-parallel training: 2 MPI ranks give the parameters of 1 process (float64, 1e-10)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vnn

SCRIPT = textwrap.dedent("""
    import sys, json
    import numpy as np
    import vnn
    out, fast, opt_name = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
    n, batch = int(sys.argv[4]), int(sys.argv[5])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 6)); y = rng.integers(0, 3, size=n)
    net = vnn.MLP([6, 9, 5, 3], activation=["tanh", "relu"], output="softmax", dtype="float64", seed=11)
    net.fast_path = fast
    import vnn.distributed as d
    seen = [0]
    shard = d.Communicator.shard
    def counting(self, rows, n_rows):
        mine = shard(self, rows, n_rows)
        seen[0] += (mine.stop - mine.start) if isinstance(mine, slice) else len(mine)
        return mine
    d.Communicator.shard = counting
    opt = {"adam": vnn.Adam(1e-2), "sgd": vnn.SGD(0.1), "momentum": vnn.Momentum(0.1, 0.9)}[opt_name]
    h = net.fit(X, y, optimizer=opt, epochs=4, batch_size=batch, l2=1e-3, distributed=True,
                validation_data=(X[:7], y[:7]))
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    np.savez(f"{out}/rank{rank}.npz", *[vnn.to_numpy(p) for p in net.weights + net.biases])
    json.dump({"loss": h.loss, "val_loss": h.val_loss, "rows": seen[0]},
              open(f"{out}/rank{rank}.json", "w"))
""")


def _mpiexec() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
    reason="MPI cannot start here: mpi4py or mpiexec is missing (pip install 'vanilla-nn[mpi]')")


@needs_mpi
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("opt,n,batch", [("adam", 53, 10),     # last global batch 3: shards 2 + 1
                                         ("momentum", 61, 10),  # last batch 1: one empty shard
                                         ("sgd", 40, 8)])
def test_two_ranks_equal_one_process(tmp_path, fast, opt, n, batch):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run = subprocess.run([_mpiexec(), "-n", "2", sys.executable, str(script), str(tmp_path),
                          "1" if fast else "0", opt, str(n), str(batch)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    # the same training in this process, without MPI
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 6))
    y = rng.integers(0, 3, size=n)
    net = vnn.MLP([6, 9, 5, 3], activation=["tanh", "relu"], output="softmax", dtype="float64",
                  seed=11)
    net.fast_path = fast
    make = {"adam": lambda: vnn.Adam(1e-2), "sgd": lambda: vnn.SGD(0.1),
            "momentum": lambda: vnn.Momentum(0.1, 0.9)}[opt]
    h = net.fit(X, y, optimizer=make(), epochs=4, batch_size=batch, l2=1e-3,
                validation_data=(X[:7], y[:7]))
    ref = [vnn.to_numpy(p) for p in net.weights + net.biases]
    import json

    rows = []
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npz")
        for i, r in enumerate(ref):
            np.testing.assert_allclose(got[f"arr_{i}"], r, rtol=0, atol=1e-10)
        hist = json.loads((tmp_path / f"rank{rank}.json").read_text())
        np.testing.assert_allclose(hist["loss"], h.loss, rtol=1e-10)
        np.testing.assert_allclose(hist["val_loss"], h.val_loss, rtol=1e-10)
        rows.append(hist["rows"])
    # each rank trained on its half of every global batch, not on all of it
    assert sum(rows) == 4 * n and abs(rows[0] - rows[1]) <= 4 * (n // batch + 1)


def test_shards_tile_the_global_batch():
    """Each rank's rows of a global batch: contiguous, disjoint, covering it, sizes within one."""
    pytest.importorskip("mpi4py")
    from vnn.distributed import Communicator

    class World:
        def __init__(self, rank, size):
            self.rank, self.size = rank, size

        def Get_rank(self):
            return self.rank

        def Get_size(self):
            return self.size

    be = vnn.MLP([2, 2]).backend
    for size in (1, 2, 3, 5):
        for n in (0, 1, 4, 7, 10):
            parts = [Communicator(be, World(r, size)).shard(slice(100, 100 + n), n)
                     for r in range(size)]
            assert [p.start for p in parts[1:]] == [p.stop for p in parts[:-1]]
            assert parts[0].start == 100 and parts[-1].stop == 100 + n
            lens = [p.stop - p.start for p in parts]
            assert max(lens) - min(lens) <= 1


def test_distributed_argument_is_checked():
    net = vnn.MLP([2, 2])
    with pytest.raises(TypeError, match="distributed='yes' is invalid"):
        net.fit(np.zeros((4, 2)), np.zeros((4, 2)), distributed="yes")


@needs_mpi
def test_command_line_under_mpiexec_prints_once_and_matches_one_process():
    pytest.importorskip("sklearn")
    args = [sys.executable, "-m", "vnn.cli", "train", "--dataset", "iris", "--epochs", "4",
            "--hidden", "8", "--batch-size", "16", "--quiet"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    two = subprocess.run([_mpiexec(), "-n", "2", *args, "--distributed"], capture_output=True,
                         text=True, timeout=120, env=env)
    one = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert two.returncode == 0 and one.returncode == 0, two.stderr + one.stderr
    lines = [ln for ln in two.stdout.splitlines() if "accuracy" in ln]
    assert len(lines) == 1  # rank 0 only
    assert lines == [ln for ln in one.stdout.splitlines() if "accuracy" in ln]
