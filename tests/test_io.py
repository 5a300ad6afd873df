"""Model files (vnn.io): safetensors round trips, checkpoints, atomic writes, clear load errors."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import safetensors.numpy
from conftest import host, make

import vnn
import vnn.io


def toy(n=60, m=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return X, y % k


def trained(dtype="float64", epochs=2, optimizer=None, **kw):
    X, y = toy()
    net = vnn.MLP([8, 16, 12, 3], activation=["tanh", "relu"], output="softmax", dtype=dtype,
                  seed=1, **kw)
    opt = optimizer or vnn.Adam(1e-2)
    history = net.fit(X, y, optimizer=opt, epochs=epochs, batch_size=16)
    return net, opt, history


def params(net):
    return [host(p) for p in net.weights + net.biases]


# -- round trips --------------------------------------------------------------------------------------
def test_round_trip_numpy_to_every_backend_and_back(backend, tmp_path):
    X, _ = toy()
    net, _, _ = trained()
    path = tmp_path / "model.safetensors"
    vnn.save(net, path)
    other = vnn.load(path, backend=backend.name, device=backend.device_name)
    assert other.backend == backend
    assert (other.sizes, other.activation, other.output, other.loss, other.dtype) == (
        net.sizes, net.activation, net.output, net.loss, net.dtype)
    np.testing.assert_allclose(host(other.forward(X)), host(net.forward(X)), rtol=1e-12, atol=1e-14)
    for a, b in zip(params(net), params(other)):
        np.testing.assert_array_equal(a, b)

    # the reverse: a model of the fixture's backend, saved there, read back on NumPy
    src = make(backend, [8, 16, 3], activation="sigmoid", output="sigmoid", seed=2)
    src.save(tmp_path / "back.safetensors")
    back = vnn.load(tmp_path / "back.safetensors")
    assert back.backend.name == "numpy" and back.dtype == "float32"
    np.testing.assert_allclose(host(back.forward(X)), host(src.forward(X)), rtol=1e-5, atol=1e-6)


def test_fast_path_views_are_written_contiguous_and_correct(tmp_path):
    net, _, _ = trained()
    assert not all(w.flags.c_contiguous for w in net.weights)  # views of the fast step's buffer
    net.save(tmp_path / "m.safetensors")
    stored = safetensors.numpy.load_file(str(tmp_path / "m.safetensors"))
    for ell in range(1, 4):
        for kind, arrays in (("W", net.weights), ("b", net.biases)):
            t = stored[f"{kind}{ell}"]
            assert t.flags.c_contiguous
            np.testing.assert_array_equal(t, vnn.to_numpy(arrays[ell - 1]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_preserved(dtype, tmp_path):
    net = vnn.MLP([4, 5, 2], dtype=dtype, seed=0)
    net.save(tmp_path / "m.safetensors")
    back = vnn.load(tmp_path / "m.safetensors")
    assert back.dtype == dtype
    assert all(host(p).dtype == np.dtype(dtype) for p in back.weights + back.biases)
    cast = vnn.load(tmp_path / "m.safetensors", dtype="float64")
    assert cast.dtype == "float64"
    np.testing.assert_allclose(host(cast.weights[0]), host(net.weights[0]), rtol=1e-7)


def test_file_layout_read_independently(tmp_path):
    net = vnn.MLP([6, 5, 4, 2], activation="relu", output="softmax", init="glorot", seed=0)
    path = tmp_path / "m.safetensors"
    vnn.save(net, path, extra={"classes": ["a", "b"]}, tensors={"mean": np.arange(6.0)})
    stored = safetensors.numpy.load_file(str(path))
    assert {k: v.shape for k, v in stored.items()} == {
        "W1": (5, 6), "b1": (5,), "W2": (4, 5), "b2": (4,), "W3": (2, 4), "b3": (2,),
        "mean": (6,)}
    meta = vnn.io.read_metadata(path)
    assert meta["format"] == "vanilla-nn" and meta["format_version"] == 1
    assert meta["vnn_version"] == vnn.__version__
    assert meta["sizes"] == [6, 5, 4, 2] and meta["activation"] == ["relu", "relu"]
    assert (meta["output"], meta["loss"], meta["dtype"], meta["init"]) == (
        "softmax", "cross_entropy", "float32", "glorot")
    assert meta["extra"] == {"classes": ["a", "b"]} and meta["tensors"] == ["mean"]
    assert meta["optimizer"] is None and meta["epoch"] is None and meta["history"] is None


def test_no_pickle_header_is_length_then_json(tmp_path):
    path = tmp_path / "m.safetensors"
    vnn.MLP([3, 2]).save(path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert raw[8:9] == b"{" and 8 + n <= len(raw)
    header = json.loads(raw[8:8 + n])
    assert set(header) == {"__metadata__", "W1", "b1"}
    assert not raw.startswith(b"\x80")  # a pickle stream starts with its protocol mark 0x80


# -- checkpoints ------------------------------------------------------------------------------------
def test_checkpoint_continues_exactly(tmp_path):
    X, y = toy()
    net, opt, history = trained(epochs=2)
    path = tmp_path / "ckpt.safetensors"
    vnn.io.save(net, path, optimizer=opt, epoch=2, history=history, extra={"note": "x"},
                tensors={"scale": np.ones(8)})
    ckpt = vnn.io.load_checkpoint(path)
    assert isinstance(ckpt.optimizer, vnn.Adam)
    assert (ckpt.optimizer.lr, ckpt.optimizer.beta1, ckpt.optimizer.beta2, ckpt.optimizer.eps) == (
        opt.lr, opt.beta1, opt.beta2, opt.eps)
    assert ckpt.optimizer.t == opt.t == 8
    for k in range(2):
        for a, b in zip(opt.state[k], ckpt.optimizer.state[k]):
            np.testing.assert_array_equal(host(a), host(b))
    assert ckpt.epoch == 2 and ckpt.history == history and ckpt.extra == {"note": "x"}
    np.testing.assert_array_equal(ckpt.tensors["scale"], np.ones(8))

    # two more epochs (shuffled) from the original and from the checkpoint: the same numbers
    net.fit(X, y, optimizer=opt, epochs=2, batch_size=16)
    ckpt.net.fit(X, y, optimizer=ckpt.optimizer, epochs=2, batch_size=16)
    assert ckpt.optimizer.t == opt.t == 16
    for a, b in zip(params(net), params(ckpt.net)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make_opt", [lambda: vnn.SGD(0.1), lambda: vnn.Momentum(0.05, beta=0.8)],
                         ids=["SGD", "Momentum"])
def test_checkpoint_other_optimizers_and_empty_state(make_opt, tmp_path):
    net = vnn.MLP([4, 3, 2], seed=0)
    opt = make_opt()
    vnn.io.save(net, tmp_path / "a.safetensors", optimizer=opt)  # before the first step
    ckpt = vnn.io.load_checkpoint(tmp_path / "a.safetensors")
    assert type(ckpt.optimizer) is type(opt) and repr(ckpt.optimizer) == repr(opt)
    assert ckpt.optimizer.state == [] and ckpt.optimizer.t == 0
    assert ckpt.epoch is None and ckpt.history is None and ckpt.tensors == {}
    vnn.save(net, tmp_path / "b.safetensors")
    assert vnn.io.load_checkpoint(tmp_path / "b.safetensors").optimizer is None


def test_checkpoint_state_moves_to_the_backend(backend, tmp_path):
    net, opt, _ = trained(epochs=1)
    vnn.io.save(net, tmp_path / "c.safetensors", optimizer=opt)
    ckpt = vnn.io.load_checkpoint(tmp_path / "c.safetensors", backend=backend.name,
                                  device=backend.device_name)
    assert ckpt.net.backend == backend
    for a, b in zip(opt.state[1], ckpt.optimizer.state[1]):
        assert backend.owns(b) and backend.same_device(b)
        np.testing.assert_array_equal(host(a), host(b))
    X, y = toy()
    ckpt.net.fit(X, y, optimizer=ckpt.optimizer, epochs=1, batch_size=16)  # training continues
    assert ckpt.optimizer.t == opt.t + 4


def test_reserved_and_bad_arguments(tmp_path):
    net = vnn.MLP([3, 2])
    for name in ("W1", "b7", "optim.0.W1", "__metadata__"):
        with pytest.raises(ValueError, match=f"tensors has the key '{name}', which is reserved"):
            vnn.save(net, tmp_path / "m.safetensors", tensors={name: np.zeros(2)})
    with pytest.raises(TypeError, match="extra=.* cannot be stored"):
        vnn.save(net, tmp_path / "m.safetensors", extra={"f": object()})
    with pytest.raises(ValueError, match="epoch=-1 is invalid"):
        vnn.save(net, tmp_path / "m.safetensors", epoch=-1)
    assert list(tmp_path.iterdir()) == []  # nothing written when the arguments are wrong


# -- atomic writes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fail", ["replace", "fsync"])
def test_failed_save_leaves_old_file_and_no_temp(fail, tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    vnn.MLP([4, 3, 2], seed=0).save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, fail, boom)
    with pytest.raises(OSError, match="disk on fire"):
        vnn.MLP([4, 3, 2], seed=1).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_atomic_write_replaces_and_keeps_mode(tmp_path):
    path = tmp_path / "f.bin"
    vnn.io.atomic_write_bytes(path, b"one")
    os.chmod(path, 0o640)
    vnn.io.atomic_write_bytes(str(path), b"two")
    assert path.read_bytes() == b"two"
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o640
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        vnn.io.atomic_write_bytes(tmp_path / "no-such-folder" / "f.bin", b"x")


# -- clear errors when loading ----------------------------------------------------------------------
def write(path, tensors, meta):
    path.write_bytes(safetensors.numpy.save(tensors, metadata=meta))


def saved(tmp_path):
    """A saved [4, 6, 3] model's tensors and metadata, to be altered by a test."""
    path = tmp_path / "model.safetensors"
    vnn.MLP([4, 6, 3], output="softmax", seed=0).save(path)
    tensors = safetensors.numpy.load_file(str(path))
    with safetensors.safe_open(str(path), framework="numpy") as f:
        return path, tensors, f.metadata()


def test_wrong_shape_names_the_tensor_and_both_shapes(tmp_path):
    path, tensors, meta = saved(tmp_path)
    tensors["W2"] = np.zeros((3, 4), np.float32)
    write(path, tensors, meta)
    msg = r"model.safetensors: tensor 'W2' has shape \(3, 4\); the architecture \[4, 6, 3\] needs \(3, 6\)"
    with pytest.raises(ValueError, match=msg):
        vnn.load(path)
    with pytest.raises(ValueError, match=msg):
        vnn.io.read_metadata(path)


def test_missing_extra_and_wrong_dtype_tensors(tmp_path):
    path, tensors, meta = saved(tmp_path)
    write(path, {k: v for k, v in tensors.items() if k != "b1"}, meta)
    with pytest.raises(ValueError, match="tensor\\(s\\) 'b1' missing; the architecture"):
        vnn.load(path)
    write(path, {**tensors, "W3": np.zeros((2, 3), np.float32)}, meta)
    with pytest.raises(ValueError, match="unexpected tensor\\(s\\) 'W3'"):
        vnn.load(path)
    write(path, {**tensors, "b2": tensors["b2"].astype(np.float64)}, meta)
    with pytest.raises(ValueError, match="tensor 'b2' has dtype float64; the metadata says the "
                                         "model is float32"):
        vnn.load(path)


def test_files_that_are_not_vnn_models(tmp_path):
    path, tensors, meta = saved(tmp_path)
    write(path, tensors, None)
    with pytest.raises(ValueError, match="safetensors file but not a vanilla-nn model: it has no "
                                         "'vnn' metadata"):
        vnn.load(path)
    write(path, tensors, {"vnn": "{not json"})
    with pytest.raises(ValueError, match="not valid JSON"):
        vnn.load(path)
    write(path, tensors, {"vnn": json.dumps({"format": "other"})})
    with pytest.raises(ValueError, match="has format 'other'; expected 'vanilla-nn'"):
        vnn.load(path)
    newer = {**json.loads(meta["vnn"]), "format_version": 2}
    write(path, tensors, {"vnn": json.dumps(newer)})
    with pytest.raises(ValueError, match="format_version 2"):
        vnn.load(path)
    broken = {**json.loads(meta["vnn"]), "sizes": [4, 0, 3]}
    write(path, tensors, {"vnn": json.dumps(broken)})
    with pytest.raises(ValueError, match=r"metadata sizes=\[4, 0, 3\] is invalid"):
        vnn.load(path)
    path.write_bytes(b"definitely not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors is not a valid safetensors file"):
        vnn.load(path)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        vnn.load(tmp_path / "nope.safetensors")
