"""Checkpoints that travel between backends and never execute code on load.

A checkpoint is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) read with
``allow_pickle=False``:

- ``__anyfc__``: UTF-8 JSON (stored as bytes) with the format name and version, the
  architecture (layer sizes, activations), the loss, the dtype, and the optimizer's class,
  hyper-parameters and step count;
- ``layers.<i>.w``, ``layers.<i>.b``: the parameters;
- ``optimizer.state.<i>.<param>.<slot>``: the optimizer's state (velocities, moments).

Saving writes a temporary file beside the target and renames it over the target, so an
interrupted save never destroys the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from . import _backend, optimizers
from .model import Sequential

FORMAT = "anyfc"
FORMAT_VERSION = 1
META_KEY = "__anyfc__"


def save(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (architecture, weights, optimizer and its state) to ``path``."""
    from . import __version__

    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "anyfc_version": __version__,
        "saved_from": {"backend": model.backend, "device": str(model.device)},
        **model.architecture(),
        "optimizer": None,
    }
    arrays = {key: _backend.to_numpy(value) for key, value in model.state_dict().items()}
    if model.optimizer is not None:
        opt_state = model.optimizer.state_dict()
        meta["optimizer"] = {"class": type(model.optimizer).__name__,
                             "config": model.optimizer.config(), "t": opt_state.pop("t")}
        arrays.update({"optimizer." + k: _backend.to_numpy(v) for k, v in opt_state.items()})
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".anyfc-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata and arrays of a checkpoint, refusing anything but plain arrays."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80":
        raise ValueError(f"{path!r} is a pickle, which anyfc never loads (it could run code)")
    if head != b"PK\x03\x04":
        raise ValueError(f"{path!r} is not an anyfc checkpoint (expected an .npz archive "
                         f"written by Sequential.save; the file starts with {head!r})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an .npz archive")
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(f"{path!r} holds pickled data, which anyfc never loads "
                             "(it could run code)") from exc
        raise ValueError(f"{path!r} is not an anyfc checkpoint: {exc}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path!r} is not an anyfc checkpoint (expected an .npz "
                         f"archive written by Sequential.save): {exc}") from exc
    if META_KEY not in arrays:
        raise ValueError(f"{path!r} is an .npz archive but not an anyfc checkpoint "
                         f"(no {META_KEY!r} entry)")
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path!r} has a corrupted {META_KEY!r} entry: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not an anyfc checkpoint (format {meta!r:.60})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path!r} has checkpoint format version "
                         f"{meta.get('format_version')!r}; this anyfc reads {FORMAT_VERSION}")
    return meta, arrays


def load(path: str | os.PathLike[str], backend: Any = None, device: Any = None) -> Sequential:
    """Rebuild a model saved by ``Sequential.save`` on ``backend``/``device`` (default:
    the default backend), with its optimizer, so ``fit`` continues where it stopped."""
    path = os.fspath(path)
    meta, arrays = _read(path)
    try:
        n_layers = len(meta["layers"])
        params = [arrays.get(f"layers.{i}.{name}") for i in range(n_layers) for name in "wb"]
        missing = [f"layers.{i}.{name}" for i in range(n_layers) for name in "wb"
                   if f"layers.{i}.{name}" not in arrays]
        if missing:
            raise ValueError(f"{path!r} is a corrupted anyfc checkpoint: no {missing}")
        model = Sequential.from_architecture(meta, params, backend, device)
        opt_meta = meta.get("optimizer")
        if opt_meta is not None:
            cls = optimizers.OPTIMIZERS[opt_meta["class"].lower()]
            opt = cls(**opt_meta["config"])
            state = {k[len("optimizer."):]: v for k, v in arrays.items()
                     if k.startswith("optimizer.")}
            opt.load_state_dict({"t": opt_meta["t"], **state}, model.xp, model.device,
                                model.dtype)
            model.optimizer = opt
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path!r} is a corrupted anyfc checkpoint: missing or bad "
                         f"entry {exc}") from exc
    return model
