"""Model files from strangers (every layout check, pickles, NaN/inf) and crash-proof saves.

The files here are built byte by byte: an 8-byte little-endian header length, the JSON header,
then the tensor data, so that each check of ``vnn.io`` is met by exactly the flaw it is for.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import host

import vnn
import vnn.io

ROOT = Path(__file__).resolve().parents[1]
LOADERS = [vnn.load, vnn.io.load_checkpoint, vnn.io.read_metadata]


# -- building files by hand ------------------------------------------------------------------------
def craft(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    """8-byte little-endian header length + header (JSON of ``header``, or those bytes) + data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def vnn_meta(sizes=(2, 3, 2), dtype="float32", **kw) -> str:
    meta = {"format": "vanilla-nn", "format_version": 1, "vnn_version": vnn.__version__,
            "sizes": list(sizes), "activation": ["tanh"] * (len(sizes) - 2), "output": "softmax",
            "loss": "cross_entropy", "dtype": dtype, "init": None, "seed": None, "rng": None,
            "optimizer": None, "epoch": None, "history": None, "extra": None, "tensors": []}
    meta.update(kw)
    return json.dumps(meta)


CODES = {"float32": "F32", "float64": "F64", "int64": "I64", "uint8": "U8", "bool": "BOOL"}


def layout(arrays: dict[str, np.ndarray], meta: str | None = None) -> tuple[dict, bytes]:
    """The header and data section that hold ``arrays`` back to back, in the order given."""
    header: dict = {} if meta is None else {"__metadata__": {"vnn": meta}}
    data = b""
    for name, a in arrays.items():
        raw = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": CODES[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return header, data


def params(sizes=(2, 3, 2), dtype="float32") -> dict[str, np.ndarray]:
    """W1, b1, ..., WL, bL of an MLP of ``sizes``: distinct, recognisable values."""
    out, start = {}, 0.0
    for ell in range(1, len(sizes)):
        for kind, shape in (("W", (sizes[ell], sizes[ell - 1])), ("b", (sizes[ell],))):
            n = int(np.prod(shape))
            out[f"{kind}{ell}"] = (np.arange(n, dtype=dtype).reshape(shape) + start) / 8
            start += n
    return out


def model_bytes(arrays: dict[str, np.ndarray] | None = None, **meta_kw) -> bytes:
    """A complete, valid vnn model file (sizes [2, 3, 2], float32) unless the arguments differ."""
    header, data = layout(params() if arrays is None else arrays, vnn_meta(**meta_kw))
    return craft(header, data)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "model.safetensors"


@pytest.fixture
def untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tensor data is read from the file: the layout checks come first."""

    def boom(*args, **kwargs):
        raise AssertionError("the file's tensor data was read")

    monkeypatch.setattr(vnn.io.layout, "Tensors", boom)


def refused(path: Path, *phrases: str) -> str:
    """Every loader refuses ``path`` with a ValueError naming it and saying each of ``phrases``."""
    msg = ""
    for load in LOADERS:
        with pytest.raises(ValueError) as info:
            load(path)
        msg = str(info.value)
        assert str(path) in msg, msg
        for phrase in phrases:
            assert phrase in msg, f"{phrase!r} not in {msg!r}"
    return msg


def refused_layout(path: Path, *phrases: str) -> str:
    """Refused by the layout checks: not a (valid) safetensors file; pickles never loaded."""
    msg = refused(path, "safetensors file", "pickles are never loaded", *phrases)
    assert re.search(r"is not a (valid )?safetensors file", msg), msg
    return msg


# -- a valid file -----------------------------------------------------------------------------------
def test_handmade_valid_file_loads(path):
    path.write_bytes(model_bytes())
    net = vnn.load(path)
    assert net.sizes == [2, 3, 2] and net.dtype == "float32" and net.output == "softmax"
    for name, a in params().items():
        got = (net.weights if name[0] == "W" else net.biases)[int(name[1:]) - 1]
        np.testing.assert_array_equal(host(got), a)
    assert vnn.io.read_metadata(path)["sizes"] == [2, 3, 2]
    assert vnn.io.load_checkpoint(path).optimizer is None


def test_header_length_starting_with_0x80_is_not_taken_for_a_pickle(path):
    header, data = layout(params(), vnn_meta())
    text = json.dumps(header).encode()
    text += b" " * ((0x80 - len(text)) % 0x100)  # safetensors pads headers with spaces
    raw = craft(text, data)
    assert raw[:1] == b"\x80"  # a pickle's first byte, here the low byte of the header length
    path.write_bytes(raw)
    assert vnn.load(path).sizes == [2, 3, 2]


def test_extra_tensors_of_other_plain_dtypes_load(path):
    arrays = {**params(), "ids": np.arange(4, dtype=np.int64), "mask": np.array([True, False]),
              "empty": np.zeros((0, 3), np.uint8)}
    path.write_bytes(model_bytes(arrays, tensors=["ids", "mask", "empty"]))
    ckpt = vnn.io.load_checkpoint(path)
    np.testing.assert_array_equal(ckpt.tensors["ids"], np.arange(4))
    np.testing.assert_array_equal(ckpt.tensors["mask"], [True, False])
    assert ckpt.tensors["empty"].shape == (0, 3)


# -- the 8-byte length and the header ----------------------------------------------------------------
def test_shorter_than_8_bytes(path, untouched):
    path.write_bytes(b"\x10\x00\x00")
    refused_layout(path, "3 bytes long", "shorter than the 8-byte header length", "truncated")
    path.write_bytes(b"")
    refused_layout(path, "0 bytes long", "truncated")


def test_shorter_than_8_plus_header_length(path, untouched):
    full = model_bytes()
    (n,) = struct.unpack("<Q", full[:8])
    path.write_bytes(full[:8 + n // 2])
    refused_layout(path, f"header length field says {n} bytes", f"only {n // 2} follow",
                   "truncated")


def test_header_length_over_the_limit(path, untouched):
    path.write_bytes(craft(b"{}", length=vnn.io.MAX_HEADER_BYTES + 1))
    refused_layout(path, f"says {vnn.io.MAX_HEADER_BYTES + 1} bytes", "more than the limit of "
                   f"{vnn.io.MAX_HEADER_BYTES}", "MAX_HEADER_BYTES")
    assert vnn.io.MAX_HEADER_BYTES == 16 * 1024 * 1024


def test_header_over_a_lowered_limit_is_refused_unread(path, untouched, monkeypatch):
    path.write_bytes(model_bytes())  # a valid file, but its header is over a limit of 64 bytes
    monkeypatch.setattr(vnn.io.layout, "MAX_HEADER_BYTES", 64)
    refused_layout(path, "more than the limit of 64")


def test_header_not_utf8(path, untouched):
    path.write_bytes(craft(b'{"W1": "\xff\xfe"}'))
    refused_layout(path, "header is not UTF-8")


def test_header_not_json(path, untouched):
    path.write_bytes(craft(b'{"W1": {"dtype": "F32",'))
    refused_layout(path, "header is not valid JSON")


def test_header_nested_too_deeply(path, untouched):
    path.write_bytes(craft(b"[" * 200_000 + b"]" * 200_000))
    refused_layout(path, "header is not valid JSON", "nested too deeply")


@pytest.mark.parametrize("text", [b"[]", b'"W1"', b"3", b"null"])
def test_header_not_an_object(text, path, untouched):
    path.write_bytes(craft(text))
    refused_layout(path, "not an object")


def test_header_duplicate_tensor_names(path, untouched):
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    path.write_bytes(craft(f'{{"W1": {entry}, "W1": {entry}}}'.encode(), b"\0" * 4))
    refused_layout(path, "the key 'W1' more than once", "duplicate keys")


def test_header_duplicate_keys_inside_an_entry(path, untouched):
    text = b'{"W1": {"dtype": "F32", "dtype": "F64", "shape": [1], "data_offsets": [0, 4]}}'
    path.write_bytes(craft(text, b"\0" * 4))
    refused_layout(path, "the key 'dtype' more than once")


def test_header_metadata_not_strings(path, untouched):
    header, data = layout(params())
    header["__metadata__"] = {"vnn": {"format": "vanilla-nn"}}
    path.write_bytes(craft(header, data))
    refused_layout(path, "__metadata__ is not an object of strings")


def test_vnn_metadata_duplicate_keys(path):
    header, data = layout(params())
    header["__metadata__"] = {"vnn": vnn_meta()[:-1] + ', "sizes": [2, 3, 2]}'}
    path.write_bytes(craft(header, data))
    refused(path, "'vnn' metadata has the key 'sizes' more than once")


# -- the tensor entries -----------------------------------------------------------------------------
def entry_file(path: Path, **fields) -> None:
    """A file with one tensor 't' of 2 float32 values whose entry has ``fields`` changed."""
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], **fields}
    path.write_bytes(craft({"t": entry}, b"\0" * 8))


def test_the_entry_template_is_valid(path):
    entry_file(path)
    with pytest.raises(ValueError, match="but not a vanilla-nn model"):  # past the layout checks
        vnn.load(path)


@pytest.mark.parametrize("dtype", ["object", "O", "|O", "pickle", "BF16", "F8_E4M3", "C64",
                                   "f32", "", 5, None])
def test_dtype_not_plain_numeric(dtype, path, untouched):
    entry_file(path, dtype=dtype)
    refused_layout(path, f"tensor 't' has dtype {dtype!r}, which vnn does not read",
                   "plain numeric")


@pytest.mark.parametrize("shape", [[-2], [2.0], ["2"], [True, 2], "2", 2, None, {"0": 2}])
def test_shape_not_a_list_of_non_negative_ints(shape, path, untouched):
    entry_file(path, shape=shape)
    refused_layout(path, f"tensor 't' has shape {shape!r}", "list of integers >= 0")


@pytest.mark.parametrize("offsets", [[0], [0, 8, 8], [8, 0], [-8, 0], [0, 8.0], [False, 8],
                                     "0,8", None])
def test_data_offsets_not_begin_end_ints(offsets, path, untouched):
    entry_file(path, data_offsets=offsets)
    refused_layout(path, f"tensor 't' has data_offsets {offsets!r}", "[begin, end]")


@pytest.mark.parametrize(("dtype", "shape", "offsets"), [
    ("F32", [3], [0, 8]), ("F64", [2], [0, 8]), ("U8", [2], [0, 8]), ("F32", [0], [0, 8]),
    ("F32", [2, 2], [0, 8])])
def test_sizes_disagree_with_shape_x_dtype(dtype, shape, offsets, path, untouched):
    entry_file(path, dtype=dtype, shape=shape, data_offsets=offsets)
    refused_layout(path, "sizes that disagree with shape x dtype", "tensor 't'", "8 bytes")


def test_overlapping_tensors(path, untouched):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    path.write_bytes(craft(header, b"\0" * 12))
    refused_layout(path, "tensor 'b' (bytes [4, 12]) overlaps tensor 'a'")


def test_aliased_tensors(path, untouched):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    path.write_bytes(craft(header, b"\0" * 8))
    refused_layout(path, "overlaps tensor")


def test_gap_between_tensors(path, untouched):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}
    path.write_bytes(craft(header, b"\0" * 20))
    refused_layout(path, "gap of 4 unused bytes before tensor 'b'")


def test_gap_before_the_first_tensor(path, untouched):
    entry_file(path, data_offsets=[4, 12])
    refused_layout(path, "gap of 4 unused bytes before tensor 't'")


def test_trailing_bytes(path, untouched):
    path.write_bytes(model_bytes() + b"\0" * 5)
    refused_layout(path, "5 trailing bytes after the last tensor's data")


def test_missing_bytes(path, untouched):
    path.write_bytes(model_bytes()[:-6])
    refused_layout(path, "6 bytes of tensor data are missing", "truncated")


# -- pickles and other formats ----------------------------------------------------------------------
class _Payload:
    """Unpickling this creates the file ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_pickle_is_refused_without_unpickling(protocol, path, tmp_path, untouched):
    # the payload works: unpickling it does create a marker file
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Payload(proof), protocol=protocol)).close()
    assert proof.exists()

    marker = tmp_path / "marker"
    path.write_bytes(pickle.dumps({"W1": _Payload(marker)}, protocol=protocol))
    assert path.read_bytes()[:1] == b"\x80"
    msg = refused(path, "is not a safetensors file", "pickle", "pickles are never loaded")
    assert "0x80" in msg
    assert not marker.exists()


@pytest.mark.parametrize("raw", [b"\x80", b"\x80\x04", b"\x80\x05\x95\x10\x00"])
def test_short_pickle_like_file(raw, path, untouched):
    path.write_bytes(raw)
    refused_layout(path, "truncated")


def test_zip_archive_is_refused(path, untouched):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"W1": [1.0]}))
    refused(path, "is not a safetensors file", "zip archive", "pickles are never loaded")


def test_text_file_is_refused(path, untouched):
    path.write_text("W1 = [[1, 2], [3, 4]]\n" * 4)
    refused_layout(path, "is not a valid safetensors file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_fifo_is_refused_without_blocking(tmp_path, untouched):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    refused(fifo, "is not a regular file")


# -- the architecture and the values ----------------------------------------------------------------
def test_tensor_for_another_architecture(path):
    arrays = params()
    arrays["W2"] = np.zeros((3, 2), np.float32)  # [2, 3, 2] needs W2 of shape (2, 3)
    path.write_bytes(model_bytes(arrays))
    refused(path, "tensor 'W2' has shape (3, 2); the architecture [2, 3, 2] needs (2, 3)")


def test_tensor_missing_for_the_architecture(path):
    path.write_bytes(model_bytes({k: v for k, v in params().items() if k != "b2"}))
    refused(path, "tensor(s) 'b2' missing")


def test_nan_and_inf_weights_are_refused_unless_allowed(path):
    arrays = params()
    arrays["W2"] = arrays["W2"].copy()
    arrays["W2"][0, 0], arrays["W2"][1, 2], arrays["W2"][1, 0] = np.nan, np.inf, -np.inf
    path.write_bytes(model_bytes(arrays))
    for load in (vnn.load, vnn.io.load_checkpoint):
        with pytest.raises(ValueError, match=r"tensor 'W2' contains 3 NaN/inf values \(of 6\); "
                                             "pass allow_nonfinite=True"):
            load(path)
    net = vnn.load(path, allow_nonfinite=True)
    np.testing.assert_array_equal(host(net.weights[1]), arrays["W2"])  # NaN == NaN here
    assert vnn.io.load_checkpoint(path, allow_nonfinite=True).net.sizes == [2, 3, 2]
    assert vnn.io.read_metadata(path)["sizes"] == [2, 3, 2]  # reads no tensor data


def test_nan_bias_is_refused(path):
    arrays = params()
    arrays["b1"] = np.array([0.0, np.nan, 1.0], np.float32)
    path.write_bytes(model_bytes(arrays))
    with pytest.raises(ValueError, match="tensor 'b1' contains 1 NaN/inf values"):
        vnn.load(path)


def test_nonfinite_optimizer_state_is_refused_unless_allowed(path):
    net = vnn.MLP([2, 3, 2], output="softmax", seed=0)
    opt = vnn.Momentum(0.1)
    net.fit(np.ones((4, 2)), np.array([0, 1, 0, 1]), optimizer=opt, epochs=1, batch_size=4)
    velocity = host(opt.state[0][2]).copy()
    velocity[0, 1] = np.inf
    opt.state[0][2] = velocity
    vnn.io.save(net, path, optimizer=opt)
    with pytest.raises(ValueError, match="tensor 'optim.0.W2' contains 1 NaN/inf values"):
        vnn.io.load_checkpoint(path)
    ckpt = vnn.io.load_checkpoint(path, allow_nonfinite=True)
    assert np.isinf(host(ckpt.optimizer.state[0][2])[0, 1])
    assert vnn.load(path).sizes == [2, 3, 2]  # the model alone is finite


# -- a file replaced between the checks and the read -----------------------------------------------
def test_file_replaced_while_it_is_read_gives_the_file_that_was_opened(path, tmp_path,
                                                                      monkeypatch):
    other = tmp_path / "other.safetensors"
    other.write_bytes(model_bytes(params((2, 4, 2)), sizes=(2, 4, 2)))
    path.write_bytes(model_bytes())
    real = vnn.io.layout.check_layout

    def replaced_after_the_header(name, f, size):  # a save of another model lands meanwhile
        out = real(name, f, size)
        os.replace(other, path)
        return out

    monkeypatch.setattr(vnn.io.layout, "check_layout", replaced_after_the_header)
    net = vnn.load(path)
    assert net.sizes == [2, 3, 2]
    want = params()
    for ell, (W, b) in enumerate(zip(net.weights, net.biases), start=1):
        np.testing.assert_array_equal(host(W), want[f"W{ell}"])
        np.testing.assert_array_equal(host(b), want[f"b{ell}"])
    monkeypatch.setattr(vnn.io.layout, "check_layout", real)
    assert vnn.load(path).sizes == [2, 4, 2]  # the next load sees the new file


# -- crash-proof saves ------------------------------------------------------------------------------
TEMP = re.compile(r"\.model\.safetensors\.(\d+)\.[0-9a-f]{16}\.vnn-tmp")


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".vnn-tmp"))


def test_temp_file_name_is_recognisable_and_owned(path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((os.path.basename(src), os.fspath(dst)))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    vnn.MLP([3, 2]).save(path)
    [(name, dst)] = seen
    match = TEMP.fullmatch(name)
    assert match and int(match.group(1)) == os.getpid() and dst == str(path)
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(os.name != "posix", reason="stale temporary files are recognised by "
                                               "os.kill(pid, 0), which ends the process on Windows")
def test_save_removes_only_stale_temp_files_of_its_target(path):
    folder = path.parent
    dead, live = dead_pid(), os.getppid()
    stale = [f".model.safetensors.{dead}.{'0' * 15}1.vnn-tmp",
             f".model.safetensors.{dead}.{'a' * 16}.vnn-tmp"]
    kept = [f".model.safetensors.{os.getpid()}.{'b' * 16}.vnn-tmp",  # a save of this process
            f".model.safetensors.{live}.{'c' * 16}.vnn-tmp",          # of a running process
            f".other.safetensors.{dead}.{'d' * 16}.vnn-tmp",          # another target's
            f".model.safetensors.{dead}.not-hex-digits00.vnn-tmp",    # not vnn's name
            f".model.safetensors.{dead}.{'e' * 16}.tmp",
            f"model.safetensors.{dead}.{'f' * 16}.vnn-tmp",
            ".model.safetensors.0.0000000000000000.vnn-tmp",
            "notes.txt"]
    for name in stale + kept:
        (folder / name).write_bytes(b"partial")
    os.mkdir(folder / f".model.safetensors.{dead}.{'9' * 16}.vnn-tmp")  # a folder: left alone
    kept.append(f".model.safetensors.{dead}.{'9' * 16}.vnn-tmp")
    vnn.MLP([3, 2]).save(path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept + ["model.safetensors"])
    assert vnn.load(path).sizes == [3, 2]


SETS = r"""
def weight_sets(vnn, np):
    # weight sets A and B of a [512, 512, 512, 10] float64 MLP (4 MB): every array differs
    out = []
    for seed in (1, 2):
        m = vnn.MLP([512, 512, 512, 10], dtype="float64", seed=seed)
        rng = np.random.default_rng(seed)
        out.append((list(m.weights), [rng.standard_normal(b.shape) for b in m.biases]))
    return out
"""

CHILD = SETS + r"""
import sys
import numpy as np
import vnn

sets = weight_sets(vnn, np)
net = vnn.MLP([512, 512, 512, 10], dtype="float64", seed=0)
i = 0
while True:
    net.weights, net.biases = sets[i % 2]  # set A, then B, then A, ...
    if i == 0:
        print("saving", flush=True)
    net.save(sys.argv[1])
    i += 1
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL does not exist on Windows")
def test_save_killed_at_random_moments_leaves_a_whole_file(path):
    scope: dict = {}
    exec(SETS, scope)
    pairs = scope["weight_sets"](vnn, np)
    net = vnn.MLP([512, 512, 512, 10], dtype="float64")
    sets = [[host(p) for p in W + b] for W, b in pairs]
    assert not any(np.array_equal(a, b) for a, b in zip(*sets))
    net.weights, net.biases = pairs[0]
    net.save(path)  # set A, so that the file exists from the start
    assert path.stat().st_size > 4_000_000

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    rng = random.Random(12345)
    kills, mid_save = 0, 0
    start = time.monotonic()
    while kills < 20 or (mid_save == 0 and kills < 40 and time.monotonic() - start < 20):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = child.stdout.readline()
            if line != b"saving\n":
                child.wait(timeout=30)
                pytest.fail(f"the saving process failed: {child.stderr.read().decode()}")
            time.sleep(rng.uniform(0.010, 0.150))
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
        kills += 1
        # killed mid-save when its temporary file is left behind
        mid_save += any((m := TEMP.fullmatch(n)) is not None and m.group(1) == str(child.pid)
                        for n in temps(path.parent))

        back = vnn.load(path)
        got = [host(p) for p in back.weights + back.biases]
        which = [k for k, s in enumerate(sets) if all(np.array_equal(a, b) for a, b in zip(got, s))]
        assert len(which) == 1, f"after kill {kills} the file holds neither set A nor set B"
    assert kills >= 20
    assert mid_save >= 1, "no kill landed while a save was writing; the test proved nothing"

    net.weights, net.biases = pairs[1]
    net.save(path)  # a normal save removes the temporary files the killed saves left
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]
    back = vnn.load(path)
    assert all(np.array_equal(host(a), b) for a, b in zip(back.weights + back.biases, sets[1]))
