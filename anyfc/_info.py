"""``anyfc.info()`` / ``python -m anyfc``: what this machine offers each backend."""

from __future__ import annotations

import importlib
import platform
from typing import Any

from . import _backend

_DISTRIBUTIONS = {"numpy": "numpy", "cupy": "cupy", "torch": "torch", "jax": "jax",
                  "dask": "dask", "array_api_strict": "array_api_strict"}


def _devices(name: str) -> list[str]:
    """The devices a backend can use here (may raise if the library is broken)."""
    if name in ("numpy", "dask"):
        return ["cpu"]
    if name == "cupy":
        import cupy

        out = []
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            name = cupy.cuda.runtime.getDeviceProperties(i)["name"]
            out.append(f"cuda:{i} ({name.decode() if isinstance(name, bytes) else name})")
        return out
    if name == "torch":
        import torch

        out = ["cpu"]
        for i in range(torch.cuda.device_count()):
            out.append(f"cuda:{i} ({torch.cuda.get_device_name(i)})")
        return out
    if name == "jax":
        import jax

        return [f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices()]
    import array_api_strict

    return [str(d) for d in array_api_strict.__array_namespace_info__().devices()]


def backend_report() -> list[dict[str, Any]]:
    """One row per backend: name, version, devices, usable, and why not."""
    usable = set(_backend.available_backends())
    rows = []
    for name in _backend.BACKENDS:
        row: dict[str, Any] = {"backend": name, "version": None, "devices": [],
                               "usable": name in usable, "note": ""}
        try:
            module = importlib.import_module(_DISTRIBUTIONS[name])
            row["version"] = getattr(module, "__version__", "?")
        except ImportError:
            extra = _backend.EXTRAS[name]
            row["note"] = (f"not installed: pip install 'anyfc[{extra}]' (from a clone: "
                           f"pip install -e '.[{extra}]')")
            if name == "cupy":
                row["note"] = ("not installed: pip install 'anyfc[cuda12]' or 'anyfc[cuda13]' "
                               "(from a clone: pip install -e '.[cuda12]' or '.[cuda13]')")
            rows.append(row)
            continue
        try:
            row["devices"] = _devices(name)
        except Exception as exc:  # a broken driver is a fact to report, not a crash
            row["note"] = f"no usable device: {type(exc).__name__}: {exc}"
        if name == "cupy" and not row["usable"] and not row["note"]:
            row["note"] = "no CUDA device"
        rows.append(row)
    return rows


def info() -> str:
    """Print and return a report of anyfc's version and of each backend here.

    Per backend: its version, devices and whether it is usable here — the first thing
    to run on a new (GPU) machine. ``python -m anyfc`` prints the same.

    Returns
    -------
    str
        The report (also printed).
    """
    from . import __version__

    lines = [f"anyfc {__version__} (Python {platform.python_version()}, "
             f"{platform.machine()}), default backend: {_backend.get_backend()}"]
    for row in backend_report():
        mark = "yes" if row["usable"] else "no "
        version = row["version"] or "-"
        devices = ", ".join(row["devices"]) or "-"
        note = f"  [{row['note']}]" if row["note"] else ""
        lines.append(f"  {row['backend']:<17} usable: {mark}  {version:<12} {devices}{note}")
    text = "\n".join(lines)
    print(text)
    return text
