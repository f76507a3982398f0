"""anyfc.checkpoint: checkpoints read like untrusted input and written safely.

Every hostile file below is built by hand (zipfile, numpy.lib.format, or raw zip records)
and must be refused with a ValueError naming the file and the entry — never a crash,
another exception type, a silent wrong answer, or gigabytes of memory; nothing in a file
ever runs (pickles refused unread). Saving refuses a model that load would refuse, before
the old file is touched, and an interrupted save keeps the old checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
import zipfile
import zlib
from io import BytesIO
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyfc
from anyfc import checkpoint, io
from tests.helpers.checkpoints import _trained, anyfc_numpy

RNG = np.random.default_rng(3)
X = RNG.standard_normal((32, 6))
Y = RNG.integers(0, 3, 32)


def _model(optimizer: Any = "adam", epochs: int = 1, backend: str = "numpy") -> anyfc.Sequential:
    model = anyfc.Sequential(
        [anyfc.Dense(6, 8, "leaky_relu", seed=0, dtype="float64", backend=backend),
         anyfc.Dense(8, 3, "identity", seed=1, dtype="float64", backend=backend)])
    if optimizer is not None:
        opt = {"adam": lambda: anyfc.optimizers.Adam(0.01),
               "sgd0": lambda: anyfc.optimizers.SGD(0.05)}[optimizer]()
        model.fit(X, Y, epochs=epochs, batch_size=8, optimizer=opt, shuffle=False, verbose=0)
    return model


def _as_format_1(text: str) -> str:
    """The metadata of a Dense-only checkpoint in format 1 (sizes and activation at the
    top of each layer, the loss by its short name, the optimizer by its class name), which
    load still reads: the hostile cases below edit it."""
    meta = json.loads(text)
    meta["format_version"] = 1
    meta["loss"] = {"SoftmaxCrossEntropy": "softmax_cross_entropy"}[meta["loss"]["type"]]
    optimizer = meta["optimizer"]
    meta["optimizer"] = {"class": optimizer.pop("type"), **optimizer}
    layers = []
    for spec in meta["layers"]:
        config = spec["config"]
        act = config["activation"]
        layer = {"n_in": config["n_in"], "n_out": config["n_out"], "activation": act["name"]}
        layer.update({"alpha": act["alpha"]} if "alpha" in act else {})
        layer.update({"init": config["init"]} if "init" in config else {})
        layers.append(layer)
    meta["layers"] = layers
    return json.dumps(meta)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, np.ndarray]]:
    """A good checkpoint (Adam, t=4) in format 1: its JSON text and its arrays."""
    path = tmp_path_factory.mktemp("good") / "good.npz"
    _model().save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return _as_format_1(arrays.pop("__anyfc__").tobytes().decode()), arrays


def _npy(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    buf = BytesIO()
    np.lib.format.write_array(buf, np.asarray(value), allow_pickle=True)
    return buf.getvalue()


def _write(path: Any, meta: Any, arrays: dict[str, Any],
           method: int = zipfile.ZIP_STORED) -> Any:
    """An .npz like Sequential.save writes: ``meta`` a dict (JSON), str or raw bytes."""
    text = json.dumps(meta) if isinstance(meta, dict) else meta
    raw = text.encode() if isinstance(text, str) else text
    pairs = list(arrays.items()) if isinstance(arrays, dict) else list(arrays)
    if "__anyfc__" not in dict(pairs):
        pairs.insert(0, ("__anyfc__", np.frombuffer(raw, dtype=np.uint8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names, on purpose
        with zipfile.ZipFile(path, "w", method) as zf:
            for name, value in pairs:
                zf.writestr(name if name.endswith(".npy") or "/" in name else name + ".npy",
                            _npy(value))
    return path


def _raw_zip(path: Any, members: list[tuple[Any, ...]]) -> Any:
    """A zip written record by record, so sizes and CRCs may lie: members are
    (name, method, stored bytes, declared uncompressed size, crc[, declared stored size])."""
    with open(path, "wb") as f:
        central = []
        for name, method, data, size, crc, *stored_size in members:
            offset, n = f.tell(), name.encode()
            csize = stored_size[0] if stored_size else len(data)
            f.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc,
                                csize, size, len(n), 0) + n + data)
            central.append(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0,
                                       crc, csize, size, len(n), 0, 0, 0, 0, 0, offset) + n)
        start, directory = f.tell(), b"".join(central)
        f.write(directory + struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members),
                                        len(members), len(directory), start, 0))
    return path


def _stored(name: str, value: Any) -> tuple[str, int, bytes, int, int]:
    data = _npy(value)
    return name + ".npy", zipfile.ZIP_STORED, data, len(data), zlib.crc32(data)


def _deflated_zeros(header: bytes, n_zero_mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``header`` then ``n_zero_mib`` MiB of zeros, made in
    milliseconds: after a full flush a block of zeros compresses to the same bytes."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(header) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(bytes(1 << 20)) + co.flush(zlib.Z_FULL_FLUSH)
    return head + block * n_zero_mib + co.flush(zlib.Z_FINISH), len(header) + (n_zero_mib << 20)


def _refused(path: Any, *patterns: str, **load_kwargs: Any) -> str:
    """Load ``path``; assert a ValueError naming the file and matching ``patterns``."""
    with pytest.raises(ValueError) as info:
        anyfc.load(path, **load_kwargs)
    message = str(info.value)
    assert repr(os.fspath(path)) in message, message
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    return message


# ---------------------------------------------------------------- table of hostile files


def _meta(change):  # a change of the metadata dict
    def mutate(meta, arrays):
        change(meta)
        return meta, arrays
    return mutate


def _text(old, new):  # a change of the raw JSON text
    def mutate(meta, arrays):
        text = json.dumps(meta)
        assert old in text
        return text.replace(old, new, 1), arrays
    return mutate


def _array(name, change):  # a change of one array (a function returning the new value)
    def mutate(meta, arrays):
        arrays[name] = change(arrays[name])
        return meta, arrays
    return mutate


def _set(d, path, value):
    for key in path[:-1]:
        d = d[key]
    d[path[-1]] = value


def _meta_set(path, value):
    return _meta(lambda m: _set(m, path, value))


def _huge_header(shape):
    buf = BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


def _drop(name):
    def mutate(meta, arrays):
        del arrays[name]
        return meta, arrays
    return mutate


def _add(name, value):
    def mutate(meta, arrays):
        arrays[name] = value
        return meta, arrays
    return mutate


def _twice(name):
    def mutate(meta, arrays):
        return meta, [*arrays.items(), (name, arrays[name])]
    return mutate


HOSTILE = [
    # --- the metadata
    pytest.param(_meta_set(["optimizer", "class"], 5), r"__anyfc__\.optimizer\.class",
                 r"is 5; expected an optimizer", id="optimizer-class-not-a-string"),
    pytest.param(_meta_set(["optimizer", "class"], "Lion"), r"optimizer\.class", r"'Lion'",
                 id="optimizer-class-unknown"),
    pytest.param(_meta_set(["optimizer"], "adam"), r"__anyfc__\.optimizer ", "object or null",
                 id="optimizer-not-an-object"),
    pytest.param(_meta_set(["optimizer", "config"], [0.1]), r"optimizer\.config", "object",
                 id="optimizer-config-not-an-object"),
    pytest.param(_meta_set(["optimizer", "config", "foo"], 1), r"optimizer\.config\.foo",
                 "not a parameter of Adam", id="optimizer-config-unknown-key"),
    pytest.param(_meta_set(["optimizer", "config", "lr"], "0.1"), r"optimizer\.config\.lr",
                 "finite number", id="optimizer-lr-a-string"),
    pytest.param(_meta_set(["optimizer", "config", "lr"], True), r"optimizer\.config\.lr",
                 "finite number", id="optimizer-lr-a-bool"),
    pytest.param(_text('"lr": 0.01', '"lr": NaN'), r"optimizer\.config\.lr", "finite number",
                 id="optimizer-lr-nan"),
    pytest.param(_text('"lr": 0.01', '"lr": ' + "9" * 400), r"optimizer\.config\.lr",
                 "finite number", id="optimizer-lr-huge-int"),
    pytest.param(_meta_set(["optimizer", "config", "lr"], -1.0), r"optimizer\.config",
                 r"does not build a Adam: lr must be", id="optimizer-lr-negative"),
    pytest.param(_meta_set(["optimizer", "t"], -1), r"optimizer\.t", r"is -1",
                 id="t-negative"),
    pytest.param(_meta_set(["optimizer", "t"], 2**60), r"optimizer\.t", r"2\*\*53",
                 id="t-2**60"),
    pytest.param(_meta_set(["optimizer", "t"], "3"), r"optimizer\.t", r"is '3'", id="t-string"),
    pytest.param(_meta_set(["optimizer", "t"], 3.0), r"optimizer\.t", r"is 3\.0", id="t-float"),
    pytest.param(_meta_set(["optimizer", "t"], True), r"optimizer\.t", r"is True", id="t-bool"),
    pytest.param(_text('"n_in": 6', '"n_in": 1e400'), r"layers\[0\]\.n_in", r"is inf",
                 id="n_in-1e400"),
    pytest.param(_text('"n_in": 6', '"n_in": Infinity'), r"layers\[0\]\.n_in", r"is inf",
                 id="n_in-Infinity"),
    pytest.param(_meta_set(["layers", 0, "n_in"], "Infinity"), r"layers\[0\]\.n_in",
                 r"'Infinity'", id="n_in-string-Infinity"),
    pytest.param(_meta_set(["layers", 0, "n_in"], True), r"layers\[0\]\.n_in", r"is True",
                 id="n_in-bool"),
    pytest.param(_meta_set(["layers", 0, "n_in"], 6.0), r"layers\[0\]\.n_in", r"is 6\.0",
                 id="n_in-float"),
    pytest.param(_meta_set(["layers", 0, "n_in"], 0), r"layers\[0\]\.n_in", r"is 0",
                 id="n_in-zero"),
    pytest.param(_meta_set(["layers", 1, "n_out"], 2**31), r"layers\[1\]\.n_out",
                 r"2147483647", id="n_out-2**31"),
    pytest.param(_text('"n_in": 6', '"n_in": ' + "1" * 5000), r"__anyfc__ ", "not valid JSON",
                 id="n_in-5000-digits"),
    pytest.param(_meta_set(["layers", 0, "n_in"], 2**30), r"layers\.0\.w ",
                 r"has shape \(6, 8\), but the architecture says \(1073741824, 8\)",
                 id="huge-n_in-tiny-file"),
    pytest.param(lambda m, a: _meta_set(["layers", 0, "n_in"], 2**30)(
        m, {**a, "layers.0.w": _huge_header((2**30, 8))}),
        r"layers\.0\.w ", r"declares 128 bytes, but its header says 68719476864",
        id="huge-n_in-header-agrees-tiny-file"),
    pytest.param(_meta(lambda m: m["layers"].__setitem__(slice(None), [
        {"n_in": 2**31 - 1, "n_out": 9, "activation": "relu"},
        {"n_in": 9, "n_out": 3, "activation": "identity"}])), r"__anyfc__\.layers ",
        r"more than 17179869184 parameters", id="too-many-parameters"),
    pytest.param(_meta_set(["layers", 1, "n_in"], 7), r"layers\[1\]\.n_in", "do not chain",
                 id="sizes-do-not-chain"),
    pytest.param(_meta_set(["layers"], []), r"__anyfc__\.layers ", "non-empty list",
                 id="layers-empty"),
    pytest.param(_meta_set(["layers"], {"0": 1}), r"__anyfc__\.layers ", "non-empty list",
                 id="layers-not-a-list"),
    pytest.param(_meta_set(["layers", 0], 5), r"__anyfc__\.layers\[0\] ", "an object",
                 id="layer-not-an-object"),
    pytest.param(_meta_set(["layers", 0, "activation"], "swishy"), r"layers\[0\]\.activation",
                 "'swishy'; expected an activation", id="activation-unknown"),
    pytest.param(_meta_set(["layers", 0, "activation"], ["relu"]), r"layers\[0\]\.activation",
                 r"\['relu'\]", id="activation-not-a-string"),
    pytest.param(_meta_set(["layers", 0, "alpha"], 2.0), r"layers\[0\]\.alpha", r"\[0, 1\]",
                 id="alpha-above-1"),
    pytest.param(_text('"alpha": 0.01', '"alpha": NaN'), r"layers\[0\]\.alpha", "is nan",
                 id="alpha-nan"),
    pytest.param(_meta_set(["layers", 0, "init"], 7), r"layers\[0\]\.init", "initializer",
                 id="init-not-a-string"),
    pytest.param(_meta_set(["loss"], "hinge"), r"__anyfc__\.loss", "'hinge'; expected a loss",
                 id="loss-unknown"),
    pytest.param(_meta_set(["loss"], None), r"__anyfc__\.loss", "None", id="loss-null"),
    pytest.param(_meta_set(["dtype"], "float16"), r"__anyfc__\.dtype", "float16",
                 id="dtype-float16"),
    pytest.param(_meta_set(["format_version"], 4), r"format_version", "reads checkpoint format "
                 "versions 1, 2, 3", id="format-version-4"),
    pytest.param(_meta_set(["format_version"], True), r"format_version", "is True",
                 id="format-version-true"),
    pytest.param(_meta_set(["format"], "keras"), r"__anyfc__\.format ", "not an anyfc",
                 id="format-other"),
    pytest.param(lambda m, a: (json.dumps([m]), a), r"__anyfc__ ", "JSON list",
                 id="meta-not-an-object"),
    pytest.param(lambda m, a: ("{", a), r"__anyfc__ ", "not valid JSON", id="meta-bad-json"),
    pytest.param(lambda m, a: (b"\xff\xfe{}", a), r"__anyfc__ ", "UnicodeDecodeError",
                 id="meta-not-utf8"),
    # --- the arrays
    pytest.param(_array("optimizer.state.0.w.m", lambda a: np.zeros((8, 6))),
                 r"optimizer\.state\.0\.w\.m", r"shape \(8, 6\), but the architecture says "
                 r"\(6, 8\)", id="adam-moment-wrong-shape"),
    pytest.param(_array("optimizer.state.1.b.v", lambda a: np.zeros(())),
                 r"optimizer\.state\.1\.b\.v", r"shape \(\)", id="adam-moment-0d"),
    pytest.param(_array("layers.1.w", lambda a: _with(a, (0, 0), np.nan)), r"layers\.1\.w ",
                 r"holds 1 NaN or infinite", id="nan-weight"),
    pytest.param(_array("optimizer.state.1.b.v", lambda a: _with(a, 2, np.inf)),
                 r"optimizer\.state\.1\.b\.v", "NaN or infinite", id="inf-in-state"),
    pytest.param(_array("layers.0.b", lambda a: np.full(a.shape, -np.inf, np.float32)),
                 r"layers\.0\.b ", r"holds 8 NaN", id="float32-minus-inf-bias"),
    pytest.param(_array("layers.0.w", lambda a: a.astype(np.int64)), r"layers\.0\.w ",
                 "int64", id="int-dtype"),
    pytest.param(_array("layers.0.w", lambda a: a.astype(np.float16)), r"layers\.0\.w ",
                 "float16", id="float16-dtype"),
    pytest.param(_array("layers.0.w", lambda a: a.astype(np.complex128)), r"layers\.0\.w ",
                 "complex128", id="complex-dtype"),
    pytest.param(_array("layers.0.w", lambda a: a.astype(object)), r"layers\.0\.w ",
                 "pickled Python objects", id="object-dtype"),
    pytest.param(_array("layers.0.w", lambda a: np.zeros(6, [("x", "f8", (8,))])),
                 r"layers\.0\.w ", "dtype", id="structured-dtype"),
    pytest.param(_drop("layers.1.b"), r"layers\.1\.b missing", "", id="missing-member"),
    pytest.param(_add("evil", np.zeros(3)), r"'evil\.npy' is not an entry", "refused, unread",
                 id="extra-member"),
    pytest.param(_add("optimizer.state.0.w.x", np.zeros((6, 8))),
                 r"'optimizer\.state\.0\.w\.x\.npy'", "not an entry", id="extra-state-slot"),
    pytest.param(_add("optimizer.state.5.w.m", np.zeros((6, 8))),
                 r"'optimizer\.state\.5\.w\.m\.npy'", "not an entry",
                 id="state-for-a-missing-layer"),
    pytest.param(_add("../../etc/passwd", b"x"), r"'\.\./\.\./etc/passwd'", "not an entry",
                 id="member-path-traversal"),
    pytest.param(_twice("layers.0.w"), r"'layers\.0\.w\.npy' appears twice", "",
                 id="duplicate-member"),
    pytest.param(_array("layers.0.w", lambda a: b"not an npy file at all"), r"layers\.0\.w ",
                 "magic string", id="npy-bad-magic"),
    pytest.param(_array("layers.0.w", lambda a: b"\x93NUMPY\x03\x00" + bytes(40)),
                 r"layers\.0\.w ", "version 3.0", id="npy-version-3"),
    pytest.param(_array("layers.0.w", lambda a: b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31)),
                 r"layers\.0\.w ", r"2147483648-byte \.npy header", id="npy-header-2GiB"),
    pytest.param(_array("layers.0.w", lambda a: b"\x93NUMPY\x01\x00\x0a\x00[1, 2, 3]\n"),
                 r"layers\.0\.w ", "corrupted .npy header", id="npy-header-not-a-dict"),
    pytest.param(_array("layers.0.w", lambda a: _npy(a)[:200]), r"layers\.0\.w ",
                 r"declares 200 bytes, but its header says 512", id="npy-data-short"),
    pytest.param(_array("layers.0.w", lambda a: _npy(a) + bytes(8)), r"layers\.0\.w ",
                 r"declares 520 bytes, but its header says 512", id="npy-data-long"),
    pytest.param(_array("layers.0.w", lambda a: _npy(a.astype(np.float32))[:150]),
                 r"layers\.0\.w ", r"declares 150 bytes, but its header says 320",
                 id="npy-float32-short"),
]


@pytest.mark.hostile
@pytest.mark.parametrize("mutate, entry, problem", HOSTILE)
def test_a_hostile_file_is_refused_naming_the_file_and_the_entry(
        good, tmp_path, mutate, entry, problem):
    text, arrays = good
    meta, members = mutate(json.loads(text), {k: v.copy() for k, v in arrays.items()})
    path = _write(tmp_path / "hostile.npz", meta, members)
    _refused(path, entry, problem)


def _file(path, data):
    path.write_bytes(data)
    return path


def _crc_broken(tmp_path, text, arrays):
    path = _write(tmp_path / "crc.npz", text, arrays)
    data = bytearray(path.read_bytes())
    at = data.index(_npy(arrays["layers.0.w"])) + 200  # a byte of layers.0.w's data
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _zipped(path, text, arrays, compress_type=zipfile.ZIP_STORED, encrypted=()):
    """A checkpoint written member by member, arrays compressed with ``compress_type``,
    the members named in ``encrypted`` flagged as encrypted in the central directory."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__anyfc__.npy", _npy(np.frombuffer(text.encode(), np.uint8)))
        for name, value in arrays.items():
            zf.writestr(name + ".npy", _npy(value), compress_type=compress_type)
        for name in encrypted:
            zf.getinfo(name).flag_bits |= 0x1
    return path


def _encrypted(tmp_path, text, arrays):
    return _zipped(tmp_path / "encrypted.npz", text, arrays, encrypted=["layers.0.w.npy"])


def _bzip2(tmp_path, text, arrays):
    return _zipped(tmp_path / "bz2.npz", text, arrays, compress_type=zipfile.ZIP_BZIP2)


def _meta_wrong_dtype(tmp_path, text, arrays):
    return _write(tmp_path / "meta32.npz", b"", {**arrays, "__anyfc__": np.zeros(4, np.int32)})


FILES = [
    pytest.param(lambda p, t, a: p / "absent", None, id="missing-file"),
    pytest.param(lambda p, t, a: _file(p / "x.npz", b"hello"),
                 r"not an anyfc checkpoint.*starts with b'hell'", id="not-a-zip"),
    pytest.param(lambda p, t, a: _file(p / "x.npz", pickle.dumps({"w": 1})),
                 r"is a pickle, which anyfc never loads", id="pickle"),
    pytest.param(lambda p, t, a: _file(p / "x.npz", b"PK\x03\x04" + bytes(60)),
                 r"not an anyfc checkpoint \(expected an \.npz", id="zip-magic-then-garbage"),
    pytest.param(lambda p, t, a: _raw_zip(p / "x.npz", [_stored("a", np.ones(3))]),
                 r"no '__anyfc__' entry", id="npz-without-metadata"),
    pytest.param(_crc_broken, r"layers\.0\.w is corrupted: Bad CRC-32", id="crc-mismatch"),
    pytest.param(_encrypted, r"layers\.0\.w is encrypted", id="encrypted-member"),
    pytest.param(_bzip2, r"layers\.0\.w uses zip compression method 12", id="bzip2-member"),
    pytest.param(_meta_wrong_dtype, r"__anyfc__ has dtype int32", id="metadata-int32"),
]


@pytest.mark.hostile
@pytest.mark.parametrize("build, pattern", FILES)
def test_a_broken_archive_is_refused(good, tmp_path, build, pattern):
    text, arrays = good
    path = build(tmp_path, text, {k: v.copy() for k, v in arrays.items()})
    if pattern is None:
        with pytest.raises(FileNotFoundError, match="no checkpoint at"):
            anyfc.load(path)
    else:
        _refused(path, pattern)


@pytest.mark.hostile
def test_a_truncated_checkpoint_at_every_length_is_refused(tmp_path):
    """Cut at any byte: a ValueError, never another exception (and never a model)."""
    path = tmp_path / "model.npz"
    _model().save(path)
    data = path.read_bytes()
    for cut in range(0, len(data), 37):
        (tmp_path / "cut.npz").write_bytes(data[:cut])
        with pytest.raises(ValueError):
            anyfc.load(tmp_path / "cut.npz")


# ---------------------------------------------------------------- zip bombs: fast, small


def _bomb_members(text: str, arrays: dict[str, np.ndarray], name: str, member: tuple):
    members = [_stored("__anyfc__", np.frombuffer(text.encode(), np.uint8))]
    members += [_stored(k, v) for k, v in arrays.items()]
    return [member if m[0] == name + ".npy" else m for m in members]


def _meta_for_float32_square(text: str, n: int) -> str:
    meta = json.loads(text)
    meta.update(dtype="float32", optimizer=None,
                layers=[{"n_in": n, "n_out": n, "activation": "identity"}])
    return json.dumps(meta)


BOMBS = [
    # a weight member that inflates to 1 GiB of zeros where (6, 8) float64 is expected
    pytest.param("layers.0.w", "deflate-1GiB", None,
                 r"layers\.0\.w declares 1073741952 bytes; shape \(6, 8\) needs at most",
                 id="deflated-1GiB-weight"),
    # the metadata inflating to 1 GiB
    pytest.param("__anyfc__", "deflate-1GiB", None,
                 r"__anyfc__ declares 1073741952 bytes; the metadata may take at most",
                 id="deflated-1GiB-metadata"),
    # a stored member whose directory entry claims 1 GiB (the shape agrees) in a tiny file
    pytest.param("layers.0.w", "stored-lie", 2**14,
                 r"layers\.0\.w declares 1073741952 bytes at offset \d+, past the end",
                 id="stored-size-lie"),
    # a deflated member claiming 1 GiB (the shape agrees) from 1 KiB of compressed data
    pytest.param("layers.0.w", "deflate-lie", 2**14,
                 r"layers\.0\.w declares 1073741952 bytes from 1024 compressed bytes",
                 id="deflate-ratio-lie"),
]


@pytest.mark.hostile
@pytest.mark.parametrize("name, kind, square, pattern", BOMBS)
def test_a_zip_bomb_is_refused_fast_and_in_little_memory(good, tmp_path, name, kind, square,
                                                         pattern):
    text, arrays = good
    arrays = {k: v for k, v in arrays.items() if k.startswith("layers.")}
    if square:  # an architecture that agrees with the member's 1 GiB
        text = _meta_for_float32_square(text, square)
        arrays = {"layers.0.w": np.zeros((1, 1), np.float32), "layers.0.b": np.zeros(square,
                                                                                    np.float32)}
    buf = BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": (2**14, 2**14)})
    header = buf.getvalue()  # 1 GiB of float32
    assert len(header) == 128
    if kind == "deflate-1GiB":
        data, size = _deflated_zeros(header, 1024)
        member = (name + ".npy", zipfile.ZIP_DEFLATED, data, size, 0)
    elif kind == "stored-lie":
        member = (name + ".npy", zipfile.ZIP_STORED, header + bytes(64), 2**30 + 128, 0,
                  2**30 + 128)
    else:
        member = (name + ".npy", zipfile.ZIP_DEFLATED, bytes(1024), 2**30 + 128, 0)
    path = _raw_zip(tmp_path / "bomb.npz", _bomb_members(text, arrays, name, member))
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    start = time.perf_counter()
    try:
        _refused(path, pattern)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"peak {peak / 2**10:.0f} KiB in {seconds:.3f} s")
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"
    assert seconds < 5.0


# ---------------------------------------------------------------- crash-type cases


def _in_subprocess(path: Any) -> str:
    """Load ``path`` in a fresh interpreter: it must survive and report a ValueError."""
    code = textwrap.dedent(f"""
        import anyfc
        try:
            anyfc.load({os.fspath(path)!r})
        except ValueError as exc:
            print("ValueError:", exc)
        else:
            print("loaded")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


CRASHERS = [
    pytest.param(lambda text: "[" * 100_000 + "]" * 100_000, None,
                 r"__anyfc__ is not valid JSON: RecursionError", id="json-100000-deep-lists"),
    pytest.param(lambda text: '{"a": ' * 100_000 + "1" + "}" * 100_000, None,
                 r"__anyfc__ is not valid JSON: RecursionError", id="json-100000-deep-objects"),
    pytest.param(lambda text: text.replace('"layers": [', '"layers": ' + "[" * 900 + "[", 1)
                 .replace("]", "]" + "]" * 900, 1), None, r"__anyfc__\.layers\[0\] is \[\[",
                 id="json-900-deep-inside-layers"),
    pytest.param(None, b"\x93NUMPY\x01\x00" + struct.pack("<H", 9990) + b"-" * 9989 + b"1",
                 r"layers\.0\.w ", id="npy-header-deep-unary"),
    pytest.param(None, b"\x93NUMPY\x01\x00" + struct.pack("<H", 9990) + b"(" * 9990,
                 r"layers\.0\.w has a corrupted \.npy header", id="npy-header-deep-parens"),
]


@pytest.mark.hostile
@pytest.mark.parametrize("meta_text, weight, pattern", CRASHERS)
def test_crash_type_input_is_a_value_error_in_a_surviving_interpreter(good, tmp_path,
                                                                      meta_text, weight,
                                                                      pattern):
    text, arrays = good
    arrays = dict(arrays)
    if weight is not None:
        arrays["layers.0.w"] = weight
    path = _write(tmp_path / "deep.npz", meta_text(text) if meta_text else text, arrays)
    out = _in_subprocess(path)
    assert out.startswith("ValueError:") and repr(os.fspath(path)) in out, out
    assert re.search(pattern, out), out


@pytest.mark.hostile
def test_random_corruption_gives_a_value_error_or_a_model_never_a_crash(tmp_path):
    """200 checkpoints with a few bytes flipped, all loaded in one fresh interpreter."""
    _model().save(tmp_path / "good.npz")
    code = textwrap.dedent(f"""
        import numpy as np, anyfc
        data = open({os.fspath(tmp_path / 'good.npz')!r}, "rb").read()
        rng = np.random.default_rng(0)
        outcomes = {{}}
        for i in range(200):
            bad = bytearray(data)
            for at in rng.integers(0, len(bad), rng.integers(1, 4)):
                bad[at] = int(rng.integers(0, 256))
            path = {os.fspath(tmp_path / 'fuzz.npz')!r}
            open(path, "wb").write(bytes(bad))
            try:
                model = anyfc.load(path)
                kind = "loaded"
                for layer in model.layers:  # what loads is finite and well shaped
                    assert np.isfinite(anyfc.to_numpy(layer.w)).all()
            except ValueError:
                kind = "ValueError"
            outcomes[kind] = outcomes.get(kind, 0) + 1
        print(outcomes)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ValueError" in done.stdout


# ---------------------------------------------------------------- what still loads


@pytest.mark.hostile
def test_files_written_like_format_version_1_load(good, tmp_path):
    """Byte layout of the v1 writer (np.savez), np.savez_compressed, Fortran-order and
    big-endian arrays, Adam before its first step, SGD without momentum (no state)."""
    text, arrays = good
    model = _model()
    expected = anyfc.to_numpy(model.predict(X))
    raw = np.frombuffer(text.encode(), np.uint8)
    np.savez(tmp_path / "v1.npz", __anyfc__=raw, **arrays)
    np.savez_compressed(tmp_path / "zipped.npz", __anyfc__=raw, **arrays)
    odd = {k: (np.asfortranarray(v) if v.ndim == 2 else v.astype(">f8")) for k, v in
           arrays.items()}
    assert not odd["layers.0.w"].flags.c_contiguous
    np.savez(tmp_path / "odd.npz", __anyfc__=raw, **odd)
    for name in ("v1", "zipped", "odd"):
        loaded = anyfc.load(tmp_path / f"{name}.npz")
        np.testing.assert_allclose(anyfc.to_numpy(loaded.predict(X)), expected, rtol=1e-12)
        assert loaded.optimizer.t == 4 and set(loaded.optimizer.state) == set(model.optimizer.state)
        for slot, state in model.optimizer.state.items():
            for key, value in state.items():
                np.testing.assert_array_equal(loaded.optimizer.state[slot][key], value)

    fresh = json.loads(text)
    fresh["optimizer"]["t"] = 0
    params = {k: v for k, v in arrays.items() if k.startswith("layers.")}
    loaded = anyfc.load(_write(tmp_path / "t0.npz", fresh, params))
    assert loaded.optimizer.t == 0 and loaded.optimizer.state == {}

    sgd = _model("sgd0")
    sgd.save(tmp_path / "sgd.npz")
    with zipfile.ZipFile(tmp_path / "sgd.npz") as zf:
        assert not [n for n in zf.namelist() if n.startswith("optimizer.")]
    loaded = anyfc.load(tmp_path / "sgd.npz")
    assert loaded.optimizer.t == 4 and loaded.optimizer.momentum == 0
    loaded.fit(X, Y, epochs=1, verbose=0)


@pytest.mark.hostile
def test_what_save_writes_np_load_reads_alike(tmp_path):
    model = _model()
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        names = set(archive.files)
        meta = json.loads(archive["__anyfc__"].tobytes())
    assert names == {"__anyfc__", *model.state_dict(),
                     *("optimizer." + k for k in model.optimizer.state_dict()
                       if k not in ("t", "epoch"))}
    assert meta["format"] == "anyfc" and meta["format_version"] == io.FORMAT_VERSION == 3
    assert meta["optimizer"] == {"type": "Adam", "config": model.optimizer.config(), "t": 4,
                                 "epoch": model.optimizer.epoch}
    assert meta["loss"] == {"type": "SoftmaxCrossEntropy", "config": {}}


@pytest.mark.hostile
def test_round_trip_on_every_cpu_backend(cpu_bk, tmp_path):
    for optimizer in (anyfc.optimizers.Adam(0.01), anyfc.optimizers.SGD(0.05), None):
        model = anyfc.Sequential([cpu_bk.dense(6, 8, "leaky_relu", seed=0),
                                  cpu_bk.dense(8, 3, "identity", seed=1)])
        if optimizer is not None:
            model.fit(X, Y, epochs=1, batch_size=8, optimizer=optimizer, shuffle=False,
                      verbose=0)
        model.save(tmp_path / "m.npz")
        loaded = anyfc.load(tmp_path / "m.npz", backend=cpu_bk.name, device=cpu_bk.device_name)
        assert loaded.backend == cpu_bk.name
        np.testing.assert_allclose(anyfc.to_numpy(loaded.predict(X)),
                                   anyfc.to_numpy(model.predict(X)), rtol=1e-12)
        if optimizer is None:
            assert loaded.optimizer is None
            continue
        assert loaded.optimizer.t == model.optimizer.t == 4
        for slot, state in model.optimizer.state.items():
            for key, value in state.items():
                np.testing.assert_array_equal(anyfc.to_numpy(loaded.optimizer.state[slot][key]),
                                              anyfc.to_numpy(value))


# ---------------------------------------------------------------- save refuses, safely


def _reshape_w(model):
    model.layers[0].w = np.zeros((5, 5))


def _nan_weight(model):
    w = anyfc.to_numpy(model.layers[1].w)
    w[2, 1] = np.nan
    model.layers[1].w = w


def _moment_shape(model):
    model.optimizer.state["layers.0.w"]["m"] = np.zeros((8, 6))


def _moment_inf(model):
    model.optimizer.state["layers.1.b"]["v"] = np.full(3, np.inf)


def _state_for_missing_layer(model):
    model.optimizer.state["layers.7.w"] = {"m": np.zeros((2, 2))}


def _unknown_slot(model):
    model.optimizer.state["layers.0.w"]["velocity"] = np.zeros((6, 8))


def _foreign_optimizer(model):
    class Lion(anyfc.optimizers.Adam):
        pass
    model.optimizer = Lion()


def _extra_hyper_parameter(model):
    model.optimizer.schedule = "cosine"


def _int_weight(model):
    model.layers[1].b = np.zeros(3, dtype=np.int64)


SAVE_REFUSALS = [
    pytest.param(_reshape_w, r"layers\.0\.w has shape \(5, 5\), but layer 0 is a Dense with "
                 r".*'n_in': 6, 'n_out': 8.*so the shape must be \(6, 8\)", id="reshaped-weight"),
    pytest.param(_nan_weight, r"layers\.1\.w holds 1 NaN or infinite", id="nan-weight"),
    pytest.param(_moment_shape, r"optimizer\.state\.0\.w\.m has shape \(8, 6\), but its "
                 r"parameter layers\.0\.w is a Dense with .*so the shape must be \(6, 8\)",
                 id="moment-wrong-shape"),
    pytest.param(_moment_inf, r"optimizer\.state\.1\.b\.v holds 3 NaN or infinite",
                 id="moment-inf"),
    pytest.param(_state_for_missing_layer, r"optimizer\.state\.7\.w\.m is not an entry",
                 id="state-for-a-missing-layer"),
    pytest.param(_unknown_slot, r"optimizer\.state\.0\.w\.velocity is not an entry",
                 id="unknown-slot"),
    pytest.param(_foreign_optimizer, r"optimizer is a Lion, which load cannot rebuild",
                 id="foreign-optimizer"),
    pytest.param(_extra_hyper_parameter, r"__anyfc__\.optimizer\.config\.schedule is not a "
                 "parameter of Adam", id="extra-hyper-parameter"),
    pytest.param(_int_weight, r"layers\.1\.b has dtype int64", id="int-bias"),
]


@pytest.mark.hostile
@pytest.mark.parametrize("spoil, pattern", SAVE_REFUSALS)
def test_save_refuses_what_load_would_refuse_and_keeps_the_old_file(tmp_path, spoil, pattern):
    path = tmp_path / "model.npz"
    model = _model()
    model.save(path)
    old = path.read_bytes()
    spoil(model)
    with pytest.raises(ValueError) as info:
        io.save(model, path)  # anyfc.io's own checks (Sequential.save may check first)
    assert repr(os.fspath(path)) in str(info.value) and "refusing to save" in str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.npz"]


@pytest.mark.hostile
def test_save_accepts_numpy_scalar_hyper_parameters(tmp_path):
    model = _model()
    model.optimizer.lr = np.float32(0.02)  # set after construction, bypassing its check
    io.save(model, tmp_path / "m.npz")
    assert anyfc.load(tmp_path / "m.npz").optimizer.lr == pytest.approx(0.02)


@pytest.mark.hostile
@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_save_keeps_permissions_and_new_files_follow_the_umask(tmp_path):
    path = tmp_path / "model.npz"
    model = _model()
    old_umask = os.umask(0o027)
    try:
        model.save(path)
        assert path.stat().st_mode & 0o777 == 0o640
        os.umask(0o022)
        (tmp_path / "other.npz").unlink(missing_ok=True)
        model.save(tmp_path / "other.npz")
        assert (tmp_path / "other.npz").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old_umask)
    path.chmod(0o640)
    model.save(path)
    assert path.stat().st_mode & 0o777 == 0o640
    path.chmod(0o604)
    model.save(path)
    assert path.stat().st_mode & 0o777 == 0o604


@pytest.mark.hostile
@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_save_writes_through_a_symbolic_link(tmp_path):
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.npz"
    link = tmp_path / "latest.npz"
    model = _model()
    model.save(target)
    link.symlink_to(target)
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == os.fspath(target)
    assert sorted(os.listdir(tmp_path / "store")) == ["real.npz"]
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "store"]
    np.testing.assert_allclose(anyfc.to_numpy(anyfc.load(target).predict(X)),
                               anyfc.to_numpy(model.predict(X)), rtol=1e-12)
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "store" / "new.npz")
    model.save(dangling)
    assert dangling.is_symlink() and (tmp_path / "store" / "new.npz").is_file()


@pytest.mark.hostile
def test_load_errors_are_checkpoint_errors_and_value_errors(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04")
    with pytest.raises(io.CheckpointError):
        anyfc.load(tmp_path / "x.npz")
    assert issubclass(io.CheckpointError, ValueError)


@pytest.mark.hostile
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB, as on Linux")
def test_a_zip_bomb_leaves_the_resident_memory_alone(good, tmp_path):
    """The same in a fresh interpreter, by its peak resident memory (which also counts
    what tracemalloc does not see: zlib's and NumPy's C allocations)."""
    text, arrays = good
    buf = BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                               "shape": (6, 8)})
    data, size = _deflated_zeros(buf.getvalue(), 1024)
    members = [_stored("__anyfc__", np.frombuffer(text.encode(), np.uint8))]
    members += [_stored(k, v) for k, v in arrays.items() if k != "layers.0.w"]
    members.append(("layers.0.w.npy", zipfile.ZIP_DEFLATED, data, size, 0))
    path = _raw_zip(tmp_path / "bomb.npz", members)
    code = textwrap.dedent(f"""
        import resource, anyfc
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            anyfc.load({os.fspath(path)!r})
        except ValueError as exc:
            print("ValueError:", exc)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print("grown KiB", grown)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"layers\.0\.w declares \d+ bytes; shape \(6, 8\)", done.stdout), done.stdout
    grown = int(done.stdout.rsplit("grown KiB", 1)[1])
    assert grown < 100 * 1024, done.stdout


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8)
    | st.sampled_from(["adam", "sgd", "relu", "float32", "he", "leaky_relu", "Infinity"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=3),
    max_leaves=8)
PLACES = [("format",), ("format_version",), ("loss",), ("dtype",), ("layers",),
          ("layers", 0), ("layers", 1, "n_in"), ("layers", 0, "n_out"),
          ("layers", 0, "activation"), ("layers", 0, "alpha"), ("layers", 1, "init"),
          ("optimizer",), ("optimizer", "class"), ("optimizer", "config"),
          ("optimizer", "config", "lr"), ("optimizer", "config", "beta1"),
          ("optimizer", "config", "nesterov"), ("optimizer", "t")]


@pytest.mark.hostile
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(PLACES), value=JSON)
def test_any_json_value_anywhere_in_the_metadata_is_a_value_error_or_a_model(
        good, tmp_path, place, value):
    text, arrays = good
    meta = json.loads(text)
    _set(meta, place, value)
    path = _write(tmp_path / "any.npz", json.dumps(meta), arrays)
    try:
        model = anyfc.load(path)
    except ValueError as exc:
        assert repr(os.fspath(path)) in str(exc)
    else:  # what loads is what the (valid) metadata says
        assert [layer.n_in for layer in model.layers] == [6, 8]


@pytest.mark.hostile
def test_members_of_mixed_float_dtypes_load_in_the_metadata_dtype(good, tmp_path):
    text, arrays = good
    mixed = {k: (v.astype(np.float32) if k.endswith((".b", ".m")) else v)
             for k, v in arrays.items()}
    model = anyfc.load(_write(tmp_path / "mixed.npz", text, mixed))
    assert all(layer.w.dtype == layer.b.dtype == np.float64 for layer in model.layers)
    assert model.optimizer.state["layers.0.w"]["m"].dtype == np.float64


# ---------------------------------------------------------------- not a checkpoint, cut saves


class _Boom:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    raw = tmp_path / "evil.npz"
    raw.write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(ValueError, match="pickle"):
        anyfc.load(raw)
    inner = tmp_path / "evil_inner.npz"
    np.savez(inner, __anyfc__=np.array([_Boom(str(marker))], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        anyfc.load(inner)
    assert not marker.exists()


def test_missing_foreign_and_corrupt_files(tmp_path, rng):
    with pytest.raises(FileNotFoundError):
        anyfc.load(tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an anyfc checkpoint"):
        anyfc.load(tmp_path / "text.npz")
    np.savez(tmp_path / "foreign.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="__anyfc__"):
        anyfc.load(tmp_path / "foreign.npz")
    model, _, _ = _trained(anyfc_numpy())
    model.save(tmp_path / "ok.npz")
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not an anyfc checkpoint"):
        anyfc.load(tmp_path / "truncated.npz")


def test_interrupted_save_keeps_the_old_checkpoint(tmp_path, rng, monkeypatch):
    model, X, _ = _trained(anyfc_numpy())
    path = tmp_path / "model.npz"
    model.save(path)
    old = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


# ---- every writer checks its destination first; reading checks values in the dtype -----

def _small(bk, dtype="float32"):
    model = anyfc.Sequential([bk.dense(3, 4, "relu", seed=0, dtype=dtype),
                              bk.dense(4, 2, seed=1, dtype=dtype)])
    model.fit(np.ones((6, 3)), [0, 1, 0, 1, 0, 1], epochs=1, verbose=0,
              optimizer=anyfc.optimizers.Adam(0.01))
    return model


def _host_state(model):
    return {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}


@pytest.mark.hostile
def test_every_writer_refuses_a_missing_folder_before_any_work(cpu_bk, tmp_path):
    model = _small(cpu_bk)
    before = _host_state(model)
    missing = tmp_path / "no" / "such"
    with pytest.raises(ValueError, match=re.escape(str(missing / "m.npz")) + ".*does not exist"):
        model.save(missing / "m.npz")
    for callback in (anyfc.ModelCheckpoint(str(missing / "m-{epoch}.npz")),
                     anyfc.CSVLogger(missing / "log.csv")):
        with pytest.raises(ValueError, match="does not exist; create the folder first"):
            model.fit(np.ones((6, 3)), [0, 1, 0, 1, 0, 1], epochs=2, verbose=0,
                      callbacks=[callback])
    after = _host_state(model)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert os.listdir(tmp_path) == []  # no temporary file anywhere


@pytest.mark.hostile
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_no_writer_replaces_what_is_not_a_regular_file(tmp_path):
    model = _small(anyfc_numpy_backend())
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    for target in (fifo, folder):
        with pytest.raises(ValueError, match="not a regular file|is a folder"):
            model.save(target)
        with pytest.raises(ValueError, match="not a regular file|is a folder"):
            model.fit(np.ones((6, 3)), [0, 1, 0, 1, 0, 1], verbose=0,
                      callbacks=[anyfc.CSVLogger(target)])
    pytest.importorskip("onnx")
    from anyfc import onnx as anyfc_onnx

    with pytest.raises(ValueError, match="not a regular file"):
        anyfc_onnx.export(model, fifo)
    assert fifo.is_fifo() and folder.is_dir()


def anyfc_numpy_backend():
    from tests.conftest import Backend

    return Backend("numpy", "numpy", None)


@pytest.mark.hostile
@pytest.mark.parametrize("entry", ["layers.0.w", "optimizer.state.0.w.m"])
def test_values_beyond_the_models_dtype_are_refused_on_load(tmp_path, entry):
    """A float32 checkpoint whose float64 member holds 1e39 would load as infinity."""
    path = tmp_path / "m.npz"
    _small(anyfc_numpy_backend()).save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    spoilt = arrays[entry].astype(np.float64)
    spoilt.flat[0] = 1e39
    arrays[entry] = spoilt
    np.savez(path, **arrays)
    name = "layers.0.w" if entry == "layers.0.w" else r"optimizer state layers\.0\.w\.m"
    with pytest.raises(ValueError, match=name + ".*too large for float32"):
        anyfc.load(path)
    loaded = anyfc.load(path, dtype="float64")  # where it fits
    assert anyfc.to_numpy(loaded.layers[0].w).dtype == np.float64
    if entry == "layers.0.w":
        assert anyfc.to_numpy(loaded.layers[0].w).flat[0] == 1e39


# ---------------------------------------------------------------- dropout positions


def _with_dropout(bk):
    where = {"backend": bk.name, "device": bk.device_name, "dtype": "float64"}
    model = anyfc.Sequential([anyfc.Dense(6, 8, "relu", seed=0, **where),
                              anyfc.Dropout(0.5, seed=3, **where),
                              anyfc.Dense(8, 3, "identity", seed=1, **where)])
    X, y = np.random.default_rng(0).standard_normal((16, 6)), np.arange(16) % 3
    model.fit(X, y, epochs=1, batch_size=4, seed=0, verbose=0)
    return model, X, y


def test_a_checkpoint_resumes_dropout_where_it_stopped(bk, tmp_path):
    """The generator's position is saved: a run resumed from the file draws the masks the
    uninterrupted run draws (on a generator of the same kind; onto another library the
    layer starts from its seed, still a working model)."""
    model, X, y = _with_dropout(bk)
    model.save(tmp_path / "m.npz")
    resumed = anyfc.load(tmp_path / "m.npz", backend=bk.name, device=bk.device_name)
    for m in (model, resumed):
        m.fit(X, y, epochs=1, batch_size=4, seed=1, verbose=0)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        np.testing.assert_array_equal(anyfc.to_numpy(b), anyfc.to_numpy(a))
    with np.load(tmp_path / "m.npz") as archive:
        meta = json.loads(archive["__anyfc__"].tobytes())
    assert set(meta["rng"]) == {"layers.1"}
    elsewhere = anyfc.load(tmp_path / "m.npz", backend="numpy")
    elsewhere.fit(X, y, epochs=1, batch_size=4, verbose=0)


@pytest.mark.hostile
@pytest.mark.parametrize("change, entry", [
    (lambda rng: [1, 2], r"__anyfc__\.rng'? is \[1, 2\]"),
    (lambda rng: {"layers.9": rng["layers.1"]}, r"rng\.layers\.9'? is not a layer path"),
    (lambda rng: {"weights": rng["layers.1"]}, r"rng\.weights'? is not a layer path"),
    (lambda rng: {"layers.0": rng["layers.1"]}, "draws no random numbers"),
    (lambda rng: {"layers.1": {"kind": rng["layers.1"]["kind"]}}, "expected"),
    (lambda rng: {"layers.1": {**rng["layers.1"], "value": 7}}, "rng.layers.1"),
    (lambda rng: {"layers.1": {**rng["layers.1"], "value": {"bit_generator": "PCG64"}}},
     "rng.layers.1"),
    (lambda rng: {"layers.1": {**rng["layers.1"], "value": [255] * 3}}, "rng.layers.1"),
])
def test_a_bad_generator_position_is_refused_naming_it(bk, tmp_path, change, entry):
    model, _, _ = _with_dropout(bk)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays.pop("__anyfc__").tobytes())
    meta["rng"] = change(meta["rng"])
    bad = _write(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(checkpoint.CheckpointError, match=entry):
        anyfc.load(bad, backend=bk.name, device=bk.device_name)


@pytest.mark.hostile
def test_a_torch_generator_state_of_garbage_is_refused_not_a_crash(tmp_path):
    torch = pytest.importorskip("torch")
    model = anyfc.Sequential([anyfc.Dense(6, 8, "relu", seed=0, backend="torch"),
                              anyfc.Dropout(0.5, seed=3, backend="torch"),
                              anyfc.Dense(8, 3, "identity", seed=1, backend="torch")])
    model.predict(np.zeros((2, 6), np.float32))
    model.generators()  # made on first use
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays.pop("__anyfc__").tobytes())
    size = len(meta["rng"]["layers.1"]["value"])
    assert size == torch.Generator().get_state().numel()
    for fill in (0, 255):
        meta["rng"]["layers.1"]["value"] = [fill] * size
        bad = _write(tmp_path / f"bad{fill}.npz", meta, arrays)
        with pytest.raises(checkpoint.CheckpointError, match="rng.layers.1"):
            anyfc.load(bad, backend="torch")
