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
    """Rebuild a model saved by ``Sequential.save``, with its optimizer.

    ``fit`` then continues where it stopped. The file is read as untrusted
    (``anyfc.checkpoint``): loading never runs code. Also ``anyfc.load``.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint.
    backend : str, module or None
        The backend to load onto (``None``: the default backend).
    device : str, device object or None
        The device (``None``: the backend's default device).
    dtype : str, dtype or None
        Build the model in this dtype (``None``: the file's), refusing values that do
        not fit it.

    Returns
    -------
    Sequential
        The model, with its optimizer as ``optimizer``.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        A bad file (a ``ValueError``) naming the entry.
    """
    return Sequential.load(path, backend, device, dtype)


def save(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (architecture, weights, optimizer and its state) to ``path``.

    ``model.save(path)`` is the same, and also checks the model's structure first.

    Parameters
    ----------
    model : Sequential
        The model.
    path : str or os.PathLike
        The file to write (atomically; its folder must exist).

    Raises
    ------
    CheckpointError
        What ``load`` would refuse, before the file is touched.
    """
    _write(path, model.architecture(), model.state_dict(), model.optimizer,
           {"backend": model.backend, "device": str(model.device)})
