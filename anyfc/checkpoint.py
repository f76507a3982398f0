"""The checkpoint file format: a model's architecture and arrays (and its optimizer's
configuration and state) to a file and back; files travel between backends, never execute
code when read, and are read like untrusted input.

This module knows files, plain data and NumPy arrays only; ``Sequential.save`` /
``Sequential.load`` (and ``anyfc.io``) turn a model into what ``write`` takes and what
``read`` returns back into a model.

A checkpoint (format ``anyfc``) is a NumPy ``.npz`` archive: a zip of ``.npy`` members,
each named ``<entry>.npy``:

- ``__anyfc__``: UTF-8 JSON (a 1-D uint8 array) with the format name and version, the
  architecture, the dtype, and the optimizer's hyper-parameters and step counts;
- ``layers.<i>.<name>``: layer ``i``'s parameters and buffers (``w``, ``b`` of a
  ``Dense``, ``running_mean`` of a ``BatchNorm``, ...), of the shapes its config implies;
- ``optimizer.state.<i>.<param>.<slot>``: the optimizer's state, ``slot`` one of the
  optimizer class's ``slots``, shaped like its parameter. Any of them may be absent
  (an optimizer creates a missing one as zeros on its next step, as in memory).

Format 3 (written) names every object by the name its exact class is registered under
(``anyfc.registry``: anyfc's classes under their class names, yours with
``@anyfc.register``), as a spec ``{"type": name, "config": settings}``::

    {"format": "anyfc", "format_version": 3, "anyfc_version": "...",
     "saved_from": {"backend": "torch", "device": "cuda:0"}, "dtype": "float32",
     "loss": {"type": "SoftmaxCrossEntropy", "config": {}},
     "layers": [{"type": "Dense", "config": {"n_in": 64, "n_out": 32,
                 "activation": {"name": "leaky_relu", "alpha": 0.2}, "init": "he"}},
                {"type": "Dense", "config": {..., "activation":
                 {"type": "ShiftedReLU", "config": {"shift": 0.5}}}}, ...],
     "optimizer": {"type": "Adam", "config": {"lr": 0.001, ...}, "t": 120, "epoch": 3},
     "rng": {"layers.3": {"kind": "pcg64", "value": {...}}}}

``rng`` holds each dropout layer's generator position (``DeviceRandom.position()``;
absent from files of anyfc 0.2.0's first builds, and from formats 1 and 2): loaded onto a
generator of the same kind (NumPy's PCG64 behind numpy, array_api_strict and Dask;
torch's per device type; JAX's key) training continues with the masks an uninterrupted
run would draw; onto another kind the layer starts again from its seed.

An activation inside a layer's config, and a learning-rate schedule inside the
optimizer's (``"lr"``), are written by ``activations.to_config`` and
``schedules.to_config``: anyfc's own by their ``config()`` (``{"name": "leaky_relu",
...}``, ``{"name": "cosine_decay", ...}``, whose short name names exactly that class, as
in format 2), any other registered class as its spec. An object whose class is not
registered (a subclass of ``ReLU`` inheriting ``name = "relu"``, say) is refused by
``save``: written under its parent's name it would come back as the parent.

Format 2 (read) holds ``"loss": "<short name>"``, layers as ``{"type": <class name>,
"config": ...}`` and ``"optimizer": {"class": "Adam", "config": ..., "t", "epoch"}``;
format 1 (read) Dense layers only, ``{"n_in", "n_out", "activation", "alpha"?,
"init"?}``.

Reading (``load``) trusts nothing in the file, and memory stays bounded by what the
architecture implies (itself bounded): the metadata (at most 1 MiB) is read and checked
first — types, ranges, known names, sizes that chain, at most 2**34 parameters, an
optimizer that can be built from its configuration (metadata keys it does not use, such
as ``anyfc_version`` and ``saved_from``, are ignored). A layer's config is checked by its
class's ``array_shapes`` without building it or allocating anything (``anyfc.Layer``), a
loss's, optimizer's and schedule's by building the object (they hold no arrays); a layer
is only built once its arrays were read and found to have exactly these shapes, so a
small file cannot make a layer allocate more than the file holds. Then only the members
the format defines are read, with ``zipfile`` directly: an archive with any other member
(or a member twice) is refused without reading it, and each member's ``.npy`` header
(bounded) and declared size in the zip directory must match the shape the architecture
implies before a byte of its data is read. Arrays must be float32 or float64 (pickled objects are
never loaded) and finite. Every problem with the file's content is a ``CheckpointError``
(a ``ValueError``) naming the file and the entry; a model is only returned once it and
its optimizer are fully built.

Saving checks the same rules first (a parameter reshaped after construction, NaN weights,
optimizer state of the wrong shape are refused before the file is touched), then writes a
temporary file beside the target and renames it over the target, so an interrupted save
never destroys the previous checkpoint. The new file keeps the old one's permission bits
(a new file gets ``0o666 & ~umask``, as with ``open``); a symbolic link is written
through to its target and stays a link.
"""

from __future__ import annotations

import errno
import inspect
import json
import math
import numbers
import os
import reprlib
import secrets
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import IO, Any, TypeGuard

import numpy as np

from . import _backend, activations, initializers, losses, optimizers, registry, schedules
from . import layers as _layers

#: The format's name, in every file's metadata (``"format"``).
FORMAT = "anyfc"
#: The version written; 1 (Dense only) and 2 (names of anyfc's classes) are read too.
FORMAT_VERSION = 3  # written; 1 (Dense only) and 2 (names of anyfc's classes) are read too
#: The versions read.
READ_VERSIONS = (1, 2, 3)
#: The archive member holding the JSON metadata.
META_KEY = "__anyfc__"

#: The largest JSON metadata read, in bytes.
MAX_META_BYTES = 1 << 20  # the JSON metadata
#: The largest layer size read (``n_in``, ``n_out``).
MAX_LAYER_SIZE = 2**31 - 1  # n_in, n_out
#: The most parameters read, over all layers' ``w`` and ``b``.
MAX_PARAMETERS = 2**34  # elements over all layers' w and b
#: The largest step count ``t`` of an optimizer read.
MAX_STEPS = 2**53  # the optimizer's step count t
_MAX_NPY_HEADER = 10_000  # bytes of a member's .npy header dictionary (NumPy's own bound)
_DEFLATE_RATIO = 1100  # deflate expands at most ~1032:1
_CHUNK = 1 << 20  # bytes read, elements checked, at a time
_FLOAT_DTYPES = ("float32", "float64")


class CheckpointError(ValueError):
    """A checkpoint that ``load`` refuses, or a model that ``save`` refuses to write.

    The message names the file and the entry.
    """


Fail = Callable[[str, str], CheckpointError]


def _load_failure(path: str) -> Fail:
    return lambda entry, problem: CheckpointError(
        f"{path!r} is not a valid anyfc checkpoint: {entry} {problem}")


def _save_failure(path: str) -> Fail:
    return lambda entry, problem: CheckpointError(f"refusing to save {path!r}: {entry} {problem}")


# ---------------------------------------------------------------- the metadata


@dataclass
class _Plan:
    """Checked metadata: the architecture ``from_architecture`` takes, the optimizer
    (built, without state), and the shape of every entry the file may hold."""

    arch: dict[str, Any]
    optimizer: optimizers.Optimizer | None
    t: int
    epoch: int = 0
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)  # all required
    state: dict[str, tuple[int, ...]] = field(default_factory=dict)  # each optional
    rng: dict[str, dict[str, Any]] = field(default_factory=dict)  # positions, by layer path


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """A finite int or float (not a bool) that converts to a finite float."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**1023
    return isinstance(value, float) and math.isfinite(value)


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlevel = 3


def _r(value: Any) -> str:
    """A short repr, safe for any JSON value (deep nesting, huge lists)."""
    return _SHORT.repr(value)


def _name(value: Any, known: Any, entry: str, what: str, fail: Fail) -> str:
    """``value`` lower-cased, if it is a string naming one of ``known``."""
    if not isinstance(value, str) or value.lower() not in known:
        raise fail(entry, f"is {_r(value)}; expected {what}: {', '.join(known)}")
    return value.lower()


def _check_meta(meta: Any, fail: Fail) -> _Plan:
    """The metadata as a ``_Plan``, or a CheckpointError naming the first bad entry."""
    key = META_KEY
    if not isinstance(meta, dict):
        raise fail(key, f"is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise fail(f"{key}.format", f"is {_r(meta.get('format'))}, not {FORMAT!r}: this is "
                   "not an anyfc checkpoint")
    version = meta.get("format_version")
    if not _is_int(version) or version not in READ_VERSIONS:
        raise fail(f"{key}.format_version", f"is {_r(version)}; this anyfc reads checkpoint "
                   f"format versions {', '.join(map(str, READ_VERSIONS))}")
    loss: Any
    if version >= 3:
        loss = _spec(meta.get("loss"), "loss", f"{key}.loss", fail)
    else:
        loss = _name(meta.get("loss"), losses.LOSSES, f"{key}.loss", "a loss", fail)
    dtype = meta.get("dtype")
    if not isinstance(dtype, str) or dtype not in _FLOAT_DTYPES:
        raise fail(f"{key}.dtype", f"is {_r(dtype)}; expected one of {', '.join(_FLOAT_DTYPES)}")
    specs = meta.get("layers")
    if not isinstance(specs, list) or not specs:
        raise fail(f"{key}.layers", f"is {_r(specs)}; expected a non-empty list of layers")
    layers, params = (_v1_layers if version == 1 else _v2_layers)(specs, fail)
    arch = {"loss": loss, "dtype": dtype, "layers": layers}
    rng = _rng(meta.get("rng", {}), len(layers), fail)

    opt_meta = meta.get("optimizer")
    if opt_meta is None:
        return _Plan(arch, None, 0, 0, params, rng=rng)
    where = f"{key}.optimizer"
    if not isinstance(opt_meta, dict):
        raise fail(where, f"is {_r(opt_meta)}; expected an object or null")
    cls: Any
    if version >= 3:
        kind = opt_meta.get("type")
        cls = registry.classes("optimizer").get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise fail(f"{where}.type", f"is {_r(kind)}; expected a registered optimizer type: "
                       f"{', '.join(registry.classes('optimizer'))}")
    else:
        cls = optimizers.OPTIMIZERS[_name(opt_meta.get("class"), optimizers.OPTIMIZERS,
                                          f"{where}.class", "an optimizer", fail)]
    config = opt_meta.get("config")
    if not isinstance(config, dict):
        raise fail(f"{where}.config", f"is {_r(config)}; expected an object")
    accepted = {name: p.default for name, p in
                inspect.signature(cls.__init__).parameters.items() if name != "self"}
    for name, value in config.items():
        if name not in accepted:
            raise fail(f"{where}.config.{name[:80]}", f"is not a parameter of {cls.__name__}; "
                       f"its parameters are {', '.join(accepted)}")
        if name == "lr" and isinstance(value, dict):  # a schedule: built from the registry
            try:
                if version < 3 and "type" in value:
                    raise ValueError("format 2 names a schedule by its config()'s name")
                config = {**config, "lr": schedules.get(value)}
            except (TypeError, ValueError) as exc:
                raise fail(f"{where}.config.lr", f"is not a learning-rate schedule: "
                           f"{str(exc)[:200]}") from exc
            continue
        if value is None and accepted[name] is None:  # an option left off (clipnorm)
            continue
        if accepted[name] is not None and not isinstance(accepted[name], numbers.Real):
            continue  # a setting of your optimizer of another kind: its class checks it
        if isinstance(accepted[name], bool) != isinstance(value, bool) or not (
                isinstance(value, bool) or _is_real(value)):
            want = "true or false" if isinstance(accepted[name], bool) else "a finite number"
            raise fail(f"{where}.config.{name}", f"is {_r(value)}; expected {want}")
    try:
        optimizer = cls(**config)
    except (TypeError, ValueError) as exc:
        raise fail(f"{where}.config", f"does not build a {cls.__name__}: {exc}") from exc
    except Exception as exc:  # your optimizer's checks may raise anything on bad data
        raise fail(f"{where}.config", f"does not build a {cls.__name__}: "
                   f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    t = opt_meta.get("t")
    if not _is_int(t) or not 0 <= t <= MAX_STEPS:
        raise fail(f"{where}.t", f"is {_r(t)}; expected an integer in [0, 2**53]")
    epoch = opt_meta.get("epoch", 0)  # absent from files written before schedules
    if not _is_int(epoch) or not 0 <= epoch <= MAX_STEPS:
        raise fail(f"{where}.epoch", f"is {_r(epoch)}; expected an integer in [0, 2**53]")
    state = {f"optimizer.state.{i}.{p}.{slot}": params[f"layers.{i}.{p}"]
             for i, spec in enumerate(layers)
             for p in _layers.LAYERS[spec["type"]].param_names for slot in cls.slots}
    return _Plan(arch, optimizer, t, epoch, params, state, rng)


def _rng(value: Any, n_layers: int, fail: Fail) -> dict[str, dict[str, Any]]:
    """The generators' positions by layer path (``"layers.3"``), each
    ``{"kind": str, "value": ...}``; the generator checks the value when it is set."""
    where = f"{META_KEY}.rng"
    if not isinstance(value, dict):
        raise fail(where, f"is {_r(value)}; expected an object")
    for key, position in value.items():
        index = key.removeprefix("layers.")
        if not (key.startswith("layers.") and index.isdigit() and int(index) < n_layers):
            raise fail(f"{where}.{key[:80]}", f"is not a layer path (layers.0 to "
                       f"layers.{n_layers - 1})")
        if not (isinstance(position, dict) and set(position) == {"kind", "value"}
                and isinstance(position["kind"], str)):
            raise fail(f"{where}.{key}", f"is {_r(position)}; expected "
                       "{\"kind\": ..., \"value\": ...}")
    return value


def _spec(value: Any, kind: str, entry: str, fail: Fail) -> dict[str, Any]:
    """``value``, if it is a spec of a registered ``kind`` whose config its class takes
    (for the kinds without arrays: builds one and drops it)."""
    try:
        registry.check(kind, value)
    except ValueError as exc:
        raise fail(entry, f"is {_r(value)}; {str(exc)[:300]}") from exc
    return dict(value)


def _v2_layers(specs: list[Any], fail: Fail) -> tuple[list[dict[str, Any]],
                                                        dict[str, tuple[int, ...]]]:
    """Formats 2 and 3: ``[{"type": name, "config": {...}}, ...]``, each type a
    registered layer class (``anyfc.layers.LAYERS``) and each config checked by the layer
    class itself (``array_shapes``, which allocates nothing: ``anyfc.Layer``)."""
    layers: list[dict[str, Any]] = []
    params: dict[str, tuple[int, ...]] = {}
    total = 0
    for i, spec in enumerate(specs):
        where = f"{META_KEY}.layers[{i}]"
        if not isinstance(spec, dict):
            raise fail(where, f"is {_r(spec)}; expected an object")
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in _layers.LAYERS:
            raise fail(f"{where}.type", f"is {_r(kind)}; expected a layer type: "
                       f"{', '.join(_layers.LAYERS)}")
        config = spec.get("config")
        if not isinstance(config, dict):
            raise fail(f"{where}.config", f"is {_r(config)}; expected an object")
        cls = _layers.LAYERS[kind]
        try:
            shapes = registry.check("layer", {"type": kind, "config": config})
        except ValueError as exc:  # what the class's array_shapes raised, or bad shapes
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise fail(f"{where}.config", f"does not build a {kind}: {str(cause)[:500]}"
                       ) from exc
        names = cls.param_names + cls.buffer_names
        if set(shapes) != set(names):
            raise fail(f"{where}.config", f"gives arrays {sorted(shapes)}; a {kind} has "
                       f"{sorted(names)}")
        for name in names:
            total += math.prod(shapes[name])
            params[f"layers.{i}.{name}"] = shapes[name]
        if total > MAX_PARAMETERS:
            raise fail(f"{META_KEY}.layers", f"hold more than {MAX_PARAMETERS} parameters "
                       f"(counted up to layer {i})")
        layers.append({"type": kind, "config": config})
    return layers, params


def _v1_layers(specs: list[Any], fail: Fail) -> tuple[list[dict[str, Any]],
                                                        dict[str, tuple[int, ...]]]:
    """Format 1: Dense layers only, ``[{"n_in", "n_out", "activation", "alpha"?,
    "init"?}, ...]``, returned in format 2's form."""
    key = META_KEY
    layers: list[dict[str, Any]] = []
    params: dict[str, tuple[int, ...]] = {}
    total = 0
    last_out = None
    for i, spec in enumerate(specs):
        where = f"{key}.layers[{i}]"
        if not isinstance(spec, dict):
            raise fail(where, f"is {_r(spec)}; expected an object")
        sizes = []
        for size in ("n_in", "n_out"):
            n = spec.get(size)
            if not _is_int(n) or not 1 <= n <= MAX_LAYER_SIZE:
                raise fail(f"{where}.{size}", f"is {_r(n)}; expected an integer in "
                           f"[1, {MAX_LAYER_SIZE}]")
            sizes.append(n)
        n_in, n_out = sizes
        if last_out is not None and last_out != n_in:
            raise fail(f"{where}.n_in", f"is {n_in}, but layer {i - 1} gives "
                       f"{last_out} outputs: the sizes do not chain")
        last_out = n_out
        act: Any = _name(spec.get("activation"), activations.ACTIVATIONS,
                         f"{where}.activation", "an activation", fail)
        if act == "leaky_relu" and "alpha" in spec:
            alpha = spec["alpha"]
            if not _is_real(alpha) or not 0 <= alpha <= 1:
                raise fail(f"{where}.alpha", f"is {_r(alpha)}; expected a number in [0, 1]")
            act = {"name": act, "alpha": float(alpha)}
        config: dict[str, Any] = {"n_in": n_in, "n_out": n_out, "activation": act}
        if "init" in spec:
            config["init"] = _name(spec["init"], initializers.INITIALIZERS, f"{where}.init",
                                   "an initializer", fail)
        total += n_in * n_out + n_out
        if total > MAX_PARAMETERS:
            raise fail(f"{key}.layers", f"hold more than {MAX_PARAMETERS} parameters "
                       f"(counted up to layer {i})")
        params[f"layers.{i}.w"], params[f"layers.{i}.b"] = (n_in, n_out), (n_out,)
        layers.append({"type": "Dense", "config": config})
    return layers, params


# ---------------------------------------------------------------- the arrays


def _count_nonfinite(a: np.ndarray) -> int:
    """How many NaN/infinite values ``a`` holds, checked a chunk at a time (so the check
    needs little memory beyond ``a``)."""
    flat = np.ravel(a, order="K")  # a view for C and Fortran order
    return sum(int(np.count_nonzero(~np.isfinite(flat[s:s + _CHUNK])))
               for s in range(0, flat.size, _CHUNK))


def _check_array(name: str, a: np.ndarray, plan: _Plan, fail: Fail) -> None:
    """``a`` is entry ``name`` of ``plan``, float32/float64, of its shape, finite."""
    shape = plan.params.get(name, plan.state.get(name))
    if shape is None:
        raise fail(name, "is not an entry of this model's checkpoint (expected layers.<i>."
                   "<w|b> for its layers and optimizer.state.<i>.<w|b>.<slot> with slot in "
                   f"{plan.optimizer.slots if plan.optimizer else ()})")
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise fail(name, f"has dtype {a.dtype}; checkpoints hold float32 or float64 arrays")
    if tuple(a.shape) != shape:
        i, param = name.split(".")[-3:-1] if name.startswith("optimizer.") else (
            name.split(".")[1:3])
        spec = plan.arch["layers"][int(i)]
        whose = (f"its parameter layers.{i}.{param}" if name.startswith("optimizer.") else
                 f"layer {i}")
        raise fail(name, f"has shape {tuple(a.shape)}, but {whose} is a {spec['type']} with "
                   f"{_r(spec['config'])}, so the shape must be {shape}")
    bad = _count_nonfinite(a)
    if bad:
        raise fail(name, f"holds {bad} NaN or infinite value(s)")


def _read_exact(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError(f"ended after {len(data)} of {n} bytes")
    return data


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, entry: str, archive_size: int,
                 shape: tuple[int, ...] | None, fail: Fail) -> np.ndarray:
    """Member ``info`` as an array, reading no more than its shape implies: ``shape``
    for an array entry, ``None`` for the metadata (1-D uint8, at most MAX_META_BYTES)."""
    if info.flag_bits & 0x1:
        raise fail(entry, "is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise fail(entry, f"uses zip compression method {info.compress_type}; checkpoints "
                   "are stored or deflated")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise fail(entry, f"is stored uncompressed but declares {info.file_size} bytes "
                   f"from {info.compress_size}")
    if info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
        raise fail(entry, f"declares {info.file_size} bytes from {info.compress_size} "
                   "compressed bytes, more than deflate can give")
    if info.header_offset + info.compress_size > archive_size:
        raise fail(entry, f"declares {info.compress_size} bytes at offset "
                   f"{info.header_offset}, past the end of the {archive_size}-byte file")
    prefix_max = 12 + _MAX_NPY_HEADER
    most = prefix_max + (MAX_META_BYTES if shape is None else 8 * math.prod(shape))
    if info.file_size > most:
        implied = ("the metadata may take at most" if shape is None else
                   f"shape {shape} needs at most")
        raise fail(entry, f"declares {info.file_size} bytes; {implied} {most}")
    with zf.open(info) as f:
        magic = _read_exact(f, 8)
        major, minor = np.lib.format.read_magic(BytesIO(magic))
        if (major, minor) not in ((1, 0), (2, 0)):
            raise fail(entry, f"is a .npy file of version {major}.{minor}; expected 1.0 or 2.0")
        size_field = _read_exact(f, 2 if major == 1 else 4)
        header_len = struct.unpack("<H" if major == 1 else "<I", size_field)[0]
        if header_len > _MAX_NPY_HEADER:
            raise fail(entry, f"has a {header_len}-byte .npy header; at most "
                       f"{_MAX_NPY_HEADER} are read")
        header = BytesIO(size_field + _read_exact(f, header_len))
        read_header = (np.lib.format.read_array_header_1_0 if major == 1 else
                       np.lib.format.read_array_header_2_0)
        try:
            found, fortran, dtype = read_header(header, max_header_size=_MAX_NPY_HEADER)
        except (Exception, MemoryError) as exc:  # NumPy parses it with ast and tokenize,
            # which meet hostile text with ValueError, TokenError, MemoryError, ...
            raise fail(entry, f"has a corrupted .npy header: {type(exc).__name__}: "
                       f"{str(exc)[:200]}") from exc
        if dtype.hasobject:
            raise fail(entry, "holds pickled Python objects (object dtype), which anyfc never "
                       "loads (it could run code)")
        if shape is None:
            if dtype != np.uint8 or len(found) != 1 or found[0] > MAX_META_BYTES:
                raise fail(entry, f"has dtype {dtype} and shape {found}; expected uint8 JSON "
                           f"text of at most {MAX_META_BYTES} bytes")
        else:
            if dtype.kind != "f" or dtype.itemsize not in (4, 8) or dtype.shape != ():
                raise fail(entry, f"has dtype {dtype}; checkpoints hold float32 or float64")
            if tuple(int(n) for n in found) != shape:
                raise fail(entry, f"has shape {found}, but the architecture says {shape}")
        count = math.prod(found)
        expected_size = 8 + len(size_field) + header_len + count * dtype.itemsize
        if info.file_size != expected_size:
            raise fail(entry, f"declares {info.file_size} bytes, but its header says "
                       f"{expected_size} ({dtype}, shape {found})")
        out = np.empty(count, dtype=dtype)
        view = out.view(np.uint8)
        done = 0
        while done < len(view):  # a chunk at a time: no second copy of the data
            chunk = f.read(min(_CHUNK, len(view) - done))
            if not chunk:
                raise fail(entry, f"is truncated after {done} of {len(view)} data bytes")
            view[done:done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            done += len(chunk)
    if fortran:
        out = out.reshape(found[::-1]).T
    else:
        out = out.reshape(found)
    if not out.dtype.isnative:
        out = out.astype(out.dtype.newbyteorder("="))
    return out


def _read(path: str) -> tuple[_Plan, dict[str, np.ndarray]]:
    """The checked metadata and arrays of the checkpoint at ``path``."""
    with open(path, "rb") as f:
        head = f.read(4)
        archive_size = os.fstat(f.fileno()).st_size
    if head[:1] == b"\x80":
        raise CheckpointError(f"{path!r} is a pickle, which anyfc never loads (it could run "
                              "code)")
    if head != b"PK\x03\x04":
        raise CheckpointError(f"{path!r} is not an anyfc checkpoint (expected an .npz archive "
                              f"written by Sequential.save; the file starts with {head!r})")
    fail = _load_failure(path)
    entry = "(the zip directory)"
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            members: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                if info.filename in members:
                    raise fail(repr(info.filename), "appears twice in the archive")
                members[info.filename] = info
            meta_info = members.get(META_KEY + ".npy")
            if meta_info is None:
                raise CheckpointError(f"{path!r} is an .npz archive but not an anyfc "
                                      f"checkpoint (no {META_KEY!r} entry)")
            entry = META_KEY
            raw = _read_member(zf, meta_info, entry, archive_size, None, fail)
            try:
                meta = json.loads(raw.tobytes().decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise fail(entry, f"is not valid JSON: {type(exc).__name__}: "
                           f"{str(exc)[:200]}") from exc
            plan = _check_meta(meta, fail)

            entries = {name[:-len(".npy")]: info for name, info in members.items()
                       if name.endswith(".npy")}
            unknown = sorted(name for name in members if not name.endswith(".npy") or
                             name[:-len(".npy")] not in {META_KEY, *plan.params, *plan.state})
            if unknown:
                raise fail(", ".join(repr(u) for u in unknown[:5]),
                           f"{'is not an entry' if len(unknown) == 1 else 'are not entries'} "
                           "of this model's checkpoint (extra members are refused, unread)")
            missing = [name for name in plan.params if name not in entries]
            if missing:
                raise fail(", ".join(missing[:5]), "missing from the archive")
            arrays: dict[str, np.ndarray] = {}
            for name in [*plan.params, *(s for s in plan.state if s in entries)]:
                entry = name
                shape = plan.params.get(name, plan.state.get(name))
                arrays[name] = _read_member(zf, entries[name], name, archive_size, shape, fail)
                _check_array(name, arrays[name], plan, fail)
    except CheckpointError:
        raise
    except zipfile.BadZipFile as exc:
        if entry == "(the zip directory)":
            raise CheckpointError(f"{path!r} is not an anyfc checkpoint (expected an .npz "
                                  f"archive written by Sequential.save): {exc}") from exc
        raise fail(entry, f"is corrupted: {exc}") from exc
    except OSError as exc:
        if exc.errno not in (None, errno.EINVAL):
            raise  # a failing disk, not a bad file
        raise fail(entry, f"could not be read: {exc}") from exc
    except (Exception, MemoryError) as exc:  # anything else the content provokes: struct,
        # EOF, overflow, recursion, memory errors from zipfile, NumPy's header parser, ...
        raise fail(entry, f"is corrupted: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return plan, arrays


@dataclass
class Checkpoint:
    """What ``read`` returns, every part checked.

    Parameters
    ----------
    architecture : dict
        What ``Sequential.from_architecture`` takes.
    arrays : list of numpy.ndarray
        The parameters and buffers, in that method's order.
    optimizer : anyfc.optimizers.Optimizer or None
        The optimizer, built from its configuration, without state; ``None`` if the
        model had none.
    optimizer_state : dict
        Its ``state_dict`` (step count, epochs and state arrays, as NumPy arrays).
    rng : dict
        The random generators' positions by layer path (``"layers.1"``), each
        ``{"kind": ..., "value": ...}``; checked by the generator when set.
    """

    architecture: dict[str, Any]
    arrays: list[np.ndarray]
    optimizer: optimizers.Optimizer | None
    optimizer_state: dict[str, Any]
    rng: dict[str, dict[str, Any]] = field(default_factory=dict)


def read(path: str | os.PathLike[str]) -> Checkpoint:
    """Read the checkpoint at ``path``, checked entry by entry before anything is built.

    The module's docstring says what is checked.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    Checkpoint
        Its parts.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        A bad file (a ``ValueError``), naming the entry.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    plan, arrays = _read(path)
    state = {name[len("optimizer."):]: value for name, value in arrays.items()
             if name in plan.state}
    return Checkpoint(plan.arch, [arrays[name] for name in plan.params], plan.optimizer,
                      {"t": plan.t, "epoch": plan.epoch, **state}, plan.rng)


def load_failure(path: str | os.PathLike[str], entry: str, problem: str) -> CheckpointError:
    """Make the error for a file whose entry has a problem the caller found.

    Such as sizes that do not chain when the model is built.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    entry : str
        The entry (``"__anyfc__.layers"``).
    problem : str
        What is wrong with it.

    Returns
    -------
    CheckpointError
        The error (to raise), naming the file and the entry.
    """
    return _load_failure(os.fspath(path))(entry, problem)


# ---------------------------------------------------------------- saving


def _plain(value: Any) -> Any:
    """NumPy scalars (a hyper-parameter set to ``y.max() + 1``, say) as Python numbers."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{type(value).__name__} {value!r:.60} is not a number")


def _new_file_beside(target: str) -> tuple[int, str]:
    """A new, empty temporary file in ``target``'s folder, opened for writing, with the
    permission bits ``target`` has (or, for a new target, ``0o666 & ~umask``)."""
    folder = os.path.dirname(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".anyfc-{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as for open()
            break
        except FileExistsError:
            continue
    try:
        if os.path.exists(target):
            os.chmod(tmp, os.stat(target).st_mode & 0o777)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def write(path: str | os.PathLike[str], architecture: dict[str, Any],
          arrays: dict[str, Any], optimizer: optimizers.Optimizer | None,
          saved_from: dict[str, str] | None = None,
          rng: dict[str, Any] | None = None) -> None:
    """Write a model's architecture, arrays, optimizer and generators to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its folder must exist.
    architecture : dict
        The model's ``architecture()``.
    arrays : dict
        Its ``state_dict()``: names to arrays of any backend.
    optimizer : anyfc.optimizers.Optimizer or None
        Its optimizer (configuration and state), or ``None``.
    saved_from : dict, optional
        ``{"backend": ..., "device": ...}``, recorded in the metadata.
    rng : dict, optional
        The dropout generators' positions by layer path (``DeviceRandom.position()``);
        ``None`` entries (CuPy's, which has none) are left out.

    Raises
    ------
    CheckpointError
        What ``read`` would refuse (a ``ValueError``, before the file is touched):
        arrays whose shapes do not match the architecture, NaN or infinite parameters
        or optimizer state, state not shaped like its parameter, an optimizer (or its
        schedule) whose class is not registered.
    ValueError
        A destination that cannot be written (``check_destination``).
    """
    from . import __version__

    path = os.fspath(path)
    check_destination(path, "checkpoint")  # before any work
    fail = _save_failure(path)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "anyfc_version": __version__,
        "saved_from": dict(saved_from or {}),
        **architecture,
        "optimizer": None,
        "rng": {k: v for k, v in (rng or {}).items() if v is not None},
    }
    arrays = {key: _backend.to_numpy(value) for key, value in arrays.items()}
    opt = optimizer
    if opt is not None:
        try:
            opt_spec = registry.spec(opt)
        except registry.UnregisteredError as exc:
            what = ("" if exc.cls is type(opt) else
                    f" whose learning-rate schedule is a {exc.cls.__name__},")
            raise fail("optimizer", f"is a {type(opt).__name__},{what} which load cannot "
                       f"rebuild: {exc}") from exc
        opt_state = opt.state_dict()
        meta["optimizer"] = {**opt_spec, "t": opt_state.pop("t"),
                             "epoch": opt_state.pop("epoch", 0)}
        arrays.update({"optimizer." + k: _backend.to_numpy(v) for k, v in opt_state.items()})
    try:
        text = json.dumps(meta, default=_plain)
    except (TypeError, ValueError) as exc:
        raise fail(META_KEY, f"cannot be written as JSON: {exc}") from exc
    plan = _check_meta(json.loads(text), fail)
    for name, value in arrays.items():
        _check_array(name, value, plan, fail)
    arrays[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    write_atomically(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def check_destination(path: str | os.PathLike[str], what: str = "file") -> str:
    """Check, before any work starts, that ``path`` can be written.

    Its folder exists and is writable, and nothing but a regular file stands there (a
    folder, a FIFO, a device is never replaced). anyfc creates no folders.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    what : str, default "file"
        What it is, for the message (``"checkpoint"``, ``"CSV log"``).

    Returns
    -------
    str
        The file ``path`` names, through symbolic links.

    Raises
    ------
    ValueError
        It cannot be written, naming ``path`` and the fix.
    """
    shown = os.fspath(path)
    target = os.path.realpath(shown)
    folder = os.path.dirname(target) or "."
    if not os.path.isdir(folder):
        state = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ValueError(f"cannot write the {what} {shown!r}: its folder {folder!r} {state}; "
                         "create the folder first (os.makedirs(folder, exist_ok=True))")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the {what} {shown!r}: its folder {folder!r} is not "
                         "writable")
    if os.path.lexists(target) and not os.path.isfile(target):
        raise ValueError(f"cannot write the {what} {shown!r}: something that is not a regular "
                         "file (a folder, a FIFO, a device) stands there, and anyfc replaces "
                         "only regular files; choose another path")
    return target


def write_atomically(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a file atomically: into a temporary file beside it, synced, then renamed.

    An interrupted write never destroys the previous file, and the new one keeps its
    permission bits; through a symbolic link, the file it names is written.

    Parameters
    ----------
    path : str
        The file to write.
    write : callable
        ``write(f)`` writes the content into the binary file object ``f``.

    Raises
    ------
    ValueError
        ``path`` cannot be written (``check_destination``).
    """
    target = check_destination(path)
    fd, tmp = _new_file_beside(target)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
