"""Devices: where an array lives (``device_of``), and the device object of each library
for a user's ``"cpu"``, ``"cuda:1"``, ``"gpu:0"``, ordinal or device object
(``resolve_device``, one resolver per library), with errors that list the devices there
are.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from .namespaces import backend_name, cuda_device_count

Array = Any  # an array of any Array API library
Device = Any  # a device object of any Array API library, or a string naming one


def device_of(x: Array) -> Device:
    """The device an array lives on (``"cpu"`` for NumPy)."""
    if type(x) is np.ndarray:  # on the hot path: NumPy has one device
        return "cpu"
    return array_api_compat.device(x)


def _is_index(device: object) -> bool:
    """Whether ``device`` is an integer device ordinal (``bool`` is not one)."""
    return isinstance(device, (int, np.integer)) and not isinstance(device, (bool, np.bool_))


def _no_device(name: str, device: object, devices: Sequence[str],
               exc: BaseException | None = None) -> ValueError:
    """The error for a device that does not exist (or is not usable) here."""
    first = str(exc).strip().splitlines()[0][:200] if exc is not None and str(exc).strip() else ""
    why = f" ({first})" if first else ""
    return ValueError(f"backend {name!r} has no device {device!r}; devices here: "
                      f"{', '.join(devices) or 'none'}{why}")


def _bad_device_type(name: str, device: object, accepted: str) -> TypeError:
    return TypeError(f"backend {name!r} takes a device as {accepted}, not "
                     f"{type(device).__name__} {device!r}")


def _torch_devices() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def _resolve_torch(device: Device) -> Device:
    import torch

    if device is None:
        return torch.device("cpu")
    if not (isinstance(device, (str, torch.device)) or _is_index(device)):
        raise _bad_device_type("torch", device, "a string ('cpu', 'cuda:1'), a CUDA ordinal "
                               "or a torch.device")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(
            device if isinstance(device, str) else int(device))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise _no_device("torch", device, _torch_devices(), exc) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = dev.index
        if index is None and count:
            index = torch.cuda.current_device()  # arrays report "cuda:0", not "cuda"
        if index is None or not 0 <= index < count:
            raise _no_device("torch", device, _torch_devices())
        return torch.device("cuda", index)
    try:  # mps, xpu, meta, ...: usable if a tensor can be made there
        torch.empty(0, device=dev)
    except Exception as exc:  # torch raises RuntimeError, AssertionError, ... here
        raise _no_device("torch", device, _torch_devices(), exc) from None
    return dev


def _resolve_cupy(device: Device) -> Device:
    import cupy

    if device is None:
        return cupy.cuda.Device()
    count = cuda_device_count()
    if isinstance(device, cupy.cuda.Device):
        index = int(device.id)
    elif _is_index(device):
        index = int(device)
    elif isinstance(device, str):
        kind, _, number = device.partition(":")
        if kind not in ("cuda", "gpu") or not (number == "" or number.isdigit()):
            raise _no_device("cupy", device, [f"cuda:{i}" for i in range(count)])
        index = int(number or 0)
    else:
        raise _bad_device_type("cupy", device, "a string ('cuda:1'), a CUDA ordinal or a "
                               "cupy.cuda.Device")
    if not 0 <= index < count:
        raise _no_device("cupy", device, [f"cuda:{i}" for i in range(count)])
    return device if isinstance(device, cupy.cuda.Device) else cupy.cuda.Device(index)


def _jax_devices() -> dict[str, list[Any]]:
    """JAX's devices by platform: the default backend's, and the CPU's."""
    import jax

    found: dict[str, list[Any]] = {}
    for platform in (None, "cpu"):
        try:
            devices = jax.devices(platform)
        except RuntimeError:
            continue
        if devices:
            found.setdefault(devices[0].platform, list(devices))
    return found


def _jax_device_names() -> list[str]:
    return [f"{p}:{i}" for p, devices in _jax_devices().items() for i in range(len(devices))]


def _resolve_jax(device: Device) -> Device:
    import jax

    if device is None:
        return jax.devices()[0]
    if isinstance(device, jax.Device):
        return device
    if _is_index(device):
        devices = jax.devices()
        if not 0 <= int(device) < len(devices):
            raise _no_device("jax", device, _jax_device_names())
        return devices[int(device)]
    if not isinstance(device, str):
        raise _bad_device_type("jax", device, "a string ('cpu', 'gpu:0', 'cuda:1'), an "
                               "ordinal or a jax.Device")
    platform, _, number = device.lower().partition(":")
    platform = "gpu" if platform == "cuda" else platform
    if not (number == "" or number.isdigit()):
        raise _no_device("jax", device, _jax_device_names())
    try:
        devices = jax.devices(platform)
    except RuntimeError as exc:  # "Unknown backend", or it failed to initialise
        raise _no_device("jax", device, _jax_device_names(), exc) from None
    if int(number or 0) >= len(devices):
        raise _no_device("jax", device, _jax_device_names())
    return devices[int(number or 0)]


def _resolve_strict(xp: ModuleType, device: Device) -> Device:
    if device is None:
        return xp.Device("CPU_DEVICE")
    if isinstance(device, xp.Device):
        return device
    if not isinstance(device, str):
        raise _bad_device_type("array_api_strict", device,
                               "a string ('CPU_DEVICE', 'device1') or an array_api_strict.Device")
    try:
        return xp.Device(device)
    except ValueError:
        names = [repr(d).split("'")[1] if "'" in repr(d) else repr(d)
                 for d in xp.__array_namespace_info__().devices()]
        raise _no_device("array_api_strict", device, names) from None


def resolve_device(xp: ModuleType, device: Device | None = None) -> Device:
    """A device object of ``xp`` for a user's ``device`` (``None`` → the default).

    Accepts ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (cupy, torch, jax), ``"gpu:0"`` (jax),
    ``"device1"`` (array_api_strict), an int (CUDA ordinal; JAX: index into
    ``jax.devices()``), or a device object of the library. A device that does not
    exist here is a ``ValueError`` listing those that do; something that cannot name
    a device (a float, a list) is a ``TypeError``.

    >>> from anyfc._backend.namespaces import get_namespace
    >>> resolve_device(get_namespace("numpy"))
    'cpu'
    >>> resolve_device(get_namespace("numpy"), "cuda:3")
    Traceback (most recent call last):
    ...
    ValueError: backend 'numpy' has only the device 'cpu', not 'cuda:3'; devices here: cpu
    """
    name = backend_name(xp)
    if name in ("numpy", "dask"):
        if device is None or (isinstance(device, str) and device == "cpu"):
            return "cpu"
        named = isinstance(device, str) or _is_index(device)
        if named or "device" in type(device).__name__.lower():  # another library's device
            raise ValueError(f"backend {name!r} has only the device 'cpu', not {device!r}; "
                             "devices here: cpu")
        raise _bad_device_type(name, device, "the string 'cpu'")
    if name == "torch":
        return _resolve_torch(device)
    if name == "cupy":
        return _resolve_cupy(device)
    if name == "jax":
        return _resolve_jax(device)
    return _resolve_strict(xp, device)


def device_token(xp: ModuleType, device: Device) -> str | int:
    """Plain data naming ``device`` that ``resolve_device(xp, token)`` turns back into it
    (devices are not all picklable: JAX's are not): ``"cpu"``, ``"cuda:1"``,
    ``"device1"``, ``"cpu:0"``.

    >>> from anyfc._backend import get_namespace
    >>> device_token(get_namespace("numpy"), "cpu")
    'cpu'
    """
    if backend_name(xp) == "array_api_strict":
        return repr(device).split("'")[1] if "'" in repr(device) else str(device)
    if backend_name(xp) == "cupy":
        return f"cuda:{device.id}"
    return str(device)
