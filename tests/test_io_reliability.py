"""Model files under attack and accident: full disks, symlinks and special files in the way,
concurrent saves while reading, huge headers, and edited metadata (each gives ModelFileError)."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import fill, host
from test_files import craft, layout

import vnn
import vnn.io
from vnn.io import ModelFileError

LOADERS = [vnn.load, vnn.io.load_checkpoint, vnn.io.read_metadata, vnn.io.read_model]


def test_save_on_a_full_disk_fails_and_keeps_the_old_file(full_disk):
    path = full_disk / "model.safetensors"
    vnn.MLP([4, 3, 2], seed=0).save(path)
    before = path.read_bytes()
    fill(full_disk)
    big = vnn.MLP([64, 256, 10], dtype="float64", seed=1)  # 150 KB: cannot fit
    with pytest.raises(OSError) as info:
        big.save(path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "model.safetensors"]
    assert vnn.load(path).sizes == [4, 3, 2]


# -- symlinks and files that are not regular ------------------------------------------------------------
def test_save_onto_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "models" / "real.safetensors"
    target.parent.mkdir()
    vnn.MLP([4, 3, 2], seed=0).save(target)
    link = tmp_path / "latest.safetensors"
    link.symlink_to(os.path.relpath(target, tmp_path))
    new = vnn.MLP([4, 5, 2], seed=1)
    new.save(link)
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(target, tmp_path)
    assert vnn.load(target).sizes == [4, 5, 2]
    np.testing.assert_array_equal(host(vnn.load(link).weights[0]), host(new.weights[0]))
    assert sorted(p.name for p in target.parent.iterdir()) == ["real.safetensors"]


def test_save_through_a_chain_of_symlinks_and_onto_a_dangling_one(tmp_path):
    target = tmp_path / "real.safetensors"
    (tmp_path / "b").symlink_to(target)  # dangling: the target does not exist yet
    (tmp_path / "a").symlink_to(tmp_path / "b")
    vnn.MLP([3, 2], seed=0).save(tmp_path / "a")
    assert target.is_file() and not target.is_symlink()
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()
    assert vnn.load(tmp_path / "a").sizes == [3, 2]


def special_files(tmp_path: Path):
    """(kind, path) of a FIFO, a socket, a directory, a character device where this user may
    make one, and a symlink to the FIFO."""
    out = []
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out.append(("a FIFO", fifo))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    out.append(("a socket", tmp_path / "sock"))
    (tmp_path / "dir").mkdir()
    out.append(("a directory", tmp_path / "dir"))
    try:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        out.append(("a character device", tmp_path / "null"))
    except (OSError, AttributeError):
        pass
    (tmp_path / "to-fifo").symlink_to(fifo)
    out.append(("a FIFO", tmp_path / "to-fifo"))
    return out, sock


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_save_refuses_fifos_sockets_devices_and_directories_without_blocking(tmp_path):
    specials, sock = special_files(tmp_path)
    try:
        net = vnn.MLP([3, 2])
        for kind, path in specials:
            mode = os.lstat(path).st_mode
            for write in (lambda p: net.save(p), lambda p: vnn.io.atomic_write_bytes(p, b"x"),
                          lambda p: vnn.io.check_writable(p, "out")):
                t0 = time.perf_counter()
                with pytest.raises(ValueError, match=f"is {kind}.*expected a regular file"):
                    write(path)
                assert time.perf_counter() - t0 < 2.0
                assert os.lstat(path).st_mode == mode, f"{path} was replaced"
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".vnn-tmp")]
    finally:
        sock.close()


def test_save_into_a_missing_folder_or_to_a_non_path_is_refused_first(tmp_path):
    net = vnn.MLP([3, 2])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        net.save(tmp_path / "missing" / "m.safetensors")
    with pytest.raises(TypeError, match="is not a file path"):
        vnn.io.check_writable(5, "checkpoint")


# -- one open: concurrent saves while reading --------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import vnn
    net = vnn.MLP([8, 64, 4], dtype="float64", seed=0)
    k, end = 0, time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        k += 1
        net.weights = [np.full(W.shape, float(k)) for W in net.weights]
        net.save(sys.argv[1], extra={"id": k})
        if k == 1:
            print("first", flush=True)
""")


def test_reads_during_concurrent_saves_are_each_one_file(tmp_path):
    path = tmp_path / "model.safetensors"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "6"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "first"
        reads, end = 0, time.monotonic() + 4.0
        while time.monotonic() < end:
            ckpt = vnn.io.read_model(path)
            k = ckpt.extra["id"]
            for W in ckpt.net.weights:
                assert np.all(host(W) == k), f"metadata of save {k} with other weights"
            reads += 1
        assert reads > 20
    finally:
        writer.kill()
        writer.communicate()


# -- the tensor set, in time linear in the header -----------------------------------------------------
def crafted(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    header, data = layout(arrays, json.dumps(meta))
    path.write_bytes(craft(header, data))


def saved_meta(tmp_path: Path, **save_kw) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and tensors of a real checkpoint (Adam state, history, rng, extra)."""
    net = vnn.MLP([3, 4, 2], output="softmax", seed=3)
    opt = vnn.Adam()
    X = np.random.default_rng(0).standard_normal((16, 3))
    h = net.fit(X, np.arange(16) % 2, optimizer=opt, epochs=2, batch_size=8)
    p = tmp_path / "real.safetensors"
    vnn.io.save(net, p, optimizer=opt, epoch=2, history=h, extra={"note": "x"}, **save_kw)
    ckpt = vnn.io.load_checkpoint(p)
    import safetensors.numpy

    return ckpt.metadata, safetensors.numpy.load_file(str(p))


@pytest.mark.parametrize("listed", [True, False])
def test_forty_thousand_empty_tensors_take_linear_time(tmp_path, listed):
    meta, arrays = saved_meta(tmp_path)
    names = [f"t{i}" for i in range(40_000)]
    arrays.update({n: np.zeros((0,), np.float32) for n in names})
    if listed:
        meta["tensors"] = names
    crafted(tmp_path / "many.safetensors", meta, arrays)
    for load in LOADERS:
        t0 = time.perf_counter()
        if listed:
            load(tmp_path / "many.safetensors")
        else:
            with pytest.raises(ModelFileError, match="unexpected tensor"):
                load(tmp_path / "many.safetensors")
        assert time.perf_counter() - t0 < 3.0, load


# -- edited metadata: one error type, naming the file and the field -----------------------------------
def edit(meta: dict, path: str, value) -> dict:
    """``meta`` with the field at ``path`` ("a.b.c") set to ``value``, or deleted (``DELETE``)."""
    out = json.loads(json.dumps(meta))
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


DELETE = object()
NESTED = json.loads("[" * 500 + "]" * 500)

EDITS = [
    ("init", DELETE, "init"), ("ijit", None, "ijit"), ("rng.state.inc", -1, "rng"),
    ("rng.state.state", 2**130, "rng"), ("rng.bit_generator", "MT19937", "rng"),
    ("rng.has_uint32", 2.0, "rng"), ("optimizer.state", 2.0, "optimizer"),
    ("optimizer.state", 1, "optimizer"), ("optimizer.hyperparameters.lr", 10**400, "optimizer"),
    ("optimizer.hyperparameters.lr", -1, "optimizer"),
    ("optimizer.hyperparameters.beta2", 1.5, "optimizer"),
    ("optimizer.hyperparameters.momentum", 0.9, "optimizer"),
    ("optimizer.hyperparameters", [], "optimizer"),
    ("optimizer.t", 2**1100, "optimizer"), ("optimizer.t", -3, "optimizer"),
    ("optimizer.name", "RMSprop", "optimizer"), ("optimizer.extra", 1, "optimizer"),
    ("epoch", 2**1100, "epoch"), ("epoch", True, "epoch"), ("seed", -1, "seed"),
    ("seed", 1.5, "seed"), ("sizes", [3, 4, 2.0], "sizes"), ("sizes", [3], "sizes"),
    ("sizes", "342", "sizes"), ("activation", ["swish"], "activation"),
    ("activation", "tanh", "activation"), ("activation", [5], "activation"),
    ("output", "softplus", "output"), ("output", None, "output"),
    ("loss", "binary_cross_entropy", "loss"), ("loss", "hinge", "loss"),
    ("dtype", "float16", "dtype"), ("init", 5, "init"),
    ("history.loss", [1.0, "x"], "history"), ("history.loss", [2**1100, 1.0], "history"),
    ("history.epochs", [], "history"), ("history", 5, "history"), ("extra", NESTED, "extra"),
    ("extra", {"deep": NESTED}, "extra"), ("extra", [1], "extra"),
    ("tensors", ["W1"], "tensors"),
    ("tensors", ["ghost"], "tensors"), ("tensors", "ghost", "tensors"),
    ("vnn_version", 1, "vnn_version"), ("format_version", 2, "format_version"),
    ("format_version", 1.0, "format_version"), ("format", "other", "format"),
]


@pytest.mark.parametrize("field, value, named", EDITS, ids=[f"{f}={str(v)[:20]}" for f, v, _ in EDITS])
def test_edited_metadata_raises_model_file_error_naming_file_and_field(tmp_path, field, value,
                                                                      named):
    meta, arrays = saved_meta(tmp_path)
    path = tmp_path / "edited.safetensors"
    crafted(path, edit(meta, field, value), arrays)
    for load in LOADERS:
        with pytest.raises(ModelFileError) as info:
            load(path)
        assert info.value.path == str(path) and str(path) in str(info.value)
        assert info.value.field == named, (info.value.field, str(info.value))
        assert named in str(info.value)


def test_model_file_error_is_a_value_error_and_exported():
    assert issubclass(ModelFileError, ValueError)
    assert vnn.io.ModelFileError is ModelFileError


def test_save_refuses_what_load_would_refuse(tmp_path):
    net = vnn.MLP([3, 2])
    with pytest.raises(ValueError, match="extra"):
        net.save(tmp_path / "m.safetensors", extra={"deep": NESTED})
    assert not list(tmp_path.iterdir())


def test_a_real_checkpoint_round_trips_every_field(tmp_path):
    net = vnn.MLP([3, 4, 2], output="softmax", seed=3)
    opt = vnn.Adam(lr=0.01, beta1=0.8)
    X = np.random.default_rng(0).standard_normal((16, 3))
    h = net.fit(X, np.arange(16) % 2, optimizer=opt, epochs=2, batch_size=8,
                validation_data=(X, np.arange(16) % 2))
    state = net.rng.bit_generator.state
    path = tmp_path / "real.safetensors"
    vnn.io.save(net, path, optimizer=opt, epoch=2, history=h, extra={"note": "x"},
                tensors={"aux": np.arange(4.0)})
    ckpt = vnn.io.load_checkpoint(path)
    assert ckpt.metadata["sizes"] == [3, 4, 2] and ckpt.metadata["seed"] == 3
    assert ckpt.epoch == 2 and ckpt.extra == {"note": "x"}
    assert ckpt.history.loss == h.loss and ckpt.history.val_loss == h.val_loss
    assert ckpt.history.seconds == h.seconds
    assert type(ckpt.optimizer) is vnn.Adam and ckpt.optimizer.t == opt.t == 4
    assert (ckpt.optimizer.lr, ckpt.optimizer.beta1) == (0.01, 0.8)
    for saved, kept in zip(ckpt.optimizer.state, opt.state):
        for a, b in zip(saved, kept):
            np.testing.assert_array_equal(host(a), host(b))
    for a, b in zip(ckpt.net.weights + ckpt.net.biases, net.weights + net.biases):
        np.testing.assert_array_equal(host(a), host(b))
    assert ckpt.net.rng.bit_generator.state == state
    np.testing.assert_array_equal(ckpt.tensors["aux"], np.arange(4.0))


def test_reading_a_file_opens_it_once(tmp_path, monkeypatch):
    meta, _ = saved_meta(tmp_path)
    path = str(tmp_path / "real.safetensors")
    opened = []
    real = os.open

    def counting(file, *args, **kwargs):
        if os.fspath(file) == path:
            opened.append(file)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting)
    for load in LOADERS:
        opened.clear()
        load(path)
        assert len(opened) == 1, load


def test_loading_in_a_thread_while_another_saves(tmp_path):
    """Saves from one thread, loads from another: every load is one whole file."""
    path = tmp_path / "m.safetensors"
    net = vnn.MLP([4, 16, 2], dtype="float64", seed=0)
    net.save(path, extra={"id": 0})
    stop, errors = threading.Event(), []

    def saver():
        k = 0
        while not stop.is_set():
            k += 1
            net.weights = [np.full(W.shape, float(k)) for W in net.weights]
            net.save(path, extra={"id": k})

    t = threading.Thread(target=saver)
    t.start()
    try:
        for _ in range(200):
            ckpt = vnn.io.read_model(path)
            k = ckpt.extra["id"]
            if k and not all(np.all(host(W) == k) for W in ckpt.net.weights):
                errors.append(k)
    finally:
        stop.set()
        t.join()
    assert not errors


# -- shapes NumPy cannot build, dtypes a file cannot hold, values a dtype cannot hold ---------------
@pytest.mark.parametrize("shape, raw", [([0, 2**64], b""), ([0, 2**62, 2**62], b""),
                                        ([0, 2**61], b""), ([1] * 70, b"\0" * 4)])
def test_extra_tensor_shapes_numpy_cannot_build_are_refused(tmp_path, shape, raw):
    meta, arrays = saved_meta(tmp_path)
    meta["tensors"] = ["E"]
    header, data = layout(arrays, json.dumps(meta))
    header["E"] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    path = tmp_path / "shape.safetensors"
    path.write_bytes(craft(header, data + raw))
    for load in LOADERS:
        with pytest.raises(ModelFileError, match="tensor 'E' has shape"):
            load(path)


def test_loading_float64_weights_as_float32_refuses_values_that_overflow(tmp_path):
    net = vnn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)
    net.weights = [np.full((4, 3), 1e300), np.full((2, 4), 1.0)]
    path = tmp_path / "big.safetensors"
    net.save(path)
    with pytest.raises(ModelFileError, match="'W1' holds 12 values beyond float32") as info:
        vnn.load(path, dtype="float32")
    assert info.value.field == "W1"
    assert host(vnn.load(path).weights[0])[0, 0] == 1e300  # in its own dtype it loads


def test_save_refuses_what_json_or_safetensors_would_change_or_choke_on(tmp_path):
    net = vnn.MLP([3, 2])
    path = tmp_path / "m.safetensors"
    for tensors in ({"E": np.array(["a"])}, {"E": np.ones(2, complex)},
                    {"E": np.array([object()])}):
        with pytest.raises(TypeError, match=r"tensors\['E'\] has dtype"):
            net.save(path, tensors=tensors)
    for extra in ({1: 2}, {"a": [{2.5: "x"}]}):
        with pytest.raises(TypeError, match="expected str keys only"):
            net.save(path, extra=extra)
    assert not path.exists()
    net.save(path, tensors={"E": np.arange(3, dtype=">f4")})  # byte order: stored little-endian
    np.testing.assert_array_equal(vnn.io.read_model(path).tensors["E"], [0.0, 1.0, 2.0])


def test_a_read_only_file_is_not_replaced(tmp_path, monkeypatch):
    path = tmp_path / "keep.safetensors"
    vnn.MLP([3, 2], seed=0).save(path)
    before = path.read_bytes()
    os.chmod(path, 0o444)
    real = os.access  # root may write anything: ask as an ordinary user would be answered

    def as_a_user(p, mode, *args, **kwargs):
        if os.fspath(p) == str(path) and mode & os.W_OK:
            return bool(os.stat(p).st_mode & 0o222)
        return real(p, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", as_a_user)
    with pytest.raises(PermissionError, match="read-only file"):
        vnn.MLP([3, 2], seed=1).save(path)
    assert path.read_bytes() == before
    os.chmod(path, 0o644)
    vnn.MLP([3, 2], seed=1).save(path)
    assert path.read_bytes() != before


# -- files earlier versions wrote, and runs that change their validation on resume -----------------
def test_what_earlier_versions_saved_still_loads(tmp_path):
    path = tmp_path / "m.safetensors"
    net = vnn.MLP([3, 4, 2], seed=2**130)
    net.rng = np.random.Generator(np.random.PCG64DXSM(7))  # a generator of the user's choice
    deep: list = []
    for _ in range(100):
        deep = [deep]
    net.save(path, extra={"deep": deep}, history=vnn.History(loss=[1.0]))
    expected = net.rng.permutation(10)
    back = vnn.io.read_model(path)
    assert back.net.seed == 2**130 and back.extra == {"deep": deep}
    assert back.history.loss == [1.0] and back.history.seconds == []
    np.testing.assert_array_equal(back.net.rng.permutation(10), expected)


def test_resuming_with_validation_data_after_a_run_without_it(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    path = tmp_path / "ckpt.safetensors"
    net = vnn.MLP([3, 5, 2], output="softmax", seed=0)
    net.fit(X, y, epochs=2, batch_size=8, checkpoint=path)
    again = vnn.MLP([3, 5, 2], output="softmax", seed=0)
    h = again.fit(X, y, epochs=4, batch_size=8, checkpoint=path, resume=path,
                  validation_data=(X[:10], y[:10]))
    assert h.epochs == 4 and len(h.val_loss) == 2
    ckpt = vnn.io.load_checkpoint(path)
    assert ckpt.epoch == 4 and ckpt.history.loss == h.loss and ckpt.history.val_loss == h.val_loss
