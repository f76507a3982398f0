"""``load`` and ``save``: a model to a checkpoint file and back.

The file format itself (what is written, and how an untrusted file is read) is
``anyfc.checkpoint``; this module joins it to ``Sequential``.
"""

from __future__ import annotations

import os
from typing import Any

from .checkpoint import (  # noqa: F401  (the names anyfc.io has always offered)
    FORMAT,
    FORMAT_VERSION,
    READ_VERSIONS,
    CheckpointError,
    write_atomically,
)
from .checkpoint import write as _write
from .model import Sequential


def load(path: str | os.PathLike[str], backend: Any = None, device: Any = None,
         dtype: Any = None) -> Sequential:
    """Rebuild a model saved by ``Sequential.save`` on ``backend``/``device`` (default:
    the default backend), with its optimizer, so ``fit`` continues where it stopped;
    ``dtype`` converts it after loading (refusing values that do not fit, as ``to``).
    A bad file is a ``CheckpointError`` (a ``ValueError``) naming the entry."""
    return Sequential.load(path, backend, device, dtype)


def save(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (architecture, weights, optimizer and its state) to ``path``.
    Refuses (``CheckpointError``, before the file is touched) what ``load`` would refuse;
    ``model.save(path)`` also checks the model's structure first."""
    _write(path, model.architecture(), model.state_dict(), model.optimizer,
           {"backend": model.backend, "device": str(model.device)})
