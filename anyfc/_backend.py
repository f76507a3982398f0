"""Everything that knows about concrete array libraries lives here.

The math modules (``layers``, ``activations``, ``losses``, ``optimizers``) see only an
Array API namespace ``xp``; this module turns user-facing names (``"numpy"``,
``"cuda:1"``, ``"float32"``) into namespaces, devices and dtypes, draws random numbers
on the host, and moves arrays between libraries and devices.

>>> from anyfc import _backend
>>> xp = _backend.get_namespace("numpy")
>>> _backend.backend_name(xp)
'numpy'
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from . import _precision

Array = Any  # an array of any Array API library
Device = Any  # a device object of any Array API library, or a string naming one

BACKENDS: tuple[str, ...] = ("numpy", "cupy", "torch", "jax", "dask", "array_api_strict")
"""Backend names anyfc understands, in the order ``available_backends`` reports them."""

EXTRAS: dict[str, str] = {
    "numpy": "",
    "cupy": "cuda12",  # or cuda13, matching the CUDA driver
    "torch": "torch",
    "jax": "jax",
    "dask": "dask",
    "array_api_strict": "strict",
}
"""The optional extra that installs each backend (``pip install 'anyfc[extra]'``)."""

_ALIASES = {"strict": "array_api_strict", "np": "numpy", "cp": "cupy", "jnp": "jax"}
_MODULES = {  # import name -> namespace used by anyfc
    "numpy": "array_api_compat.numpy",
    "cupy": "array_api_compat.cupy",
    "torch": "array_api_compat.torch",
    "jax": "jax.numpy",
    "dask": "array_api_compat.dask.array",
    "array_api_strict": "array_api_strict",
}
_DTYPES = ("float32", "float64")

_default_backend: str | None = None
_namespace_by_type: dict[type, ModuleType] = {}


# ---------------------------------------------------------------- backend names


def _canonical_name(backend: str) -> str:
    name = _ALIASES.get(backend.lower(), backend.lower())
    if name not in BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}; valid backends are {', '.join(BACKENDS)}"
        )
    return name


def backend_name(backend: str | ModuleType) -> str:
    """Canonical name of a backend given by name, library module or namespace.

    >>> import numpy
    >>> backend_name(numpy), backend_name("strict")
    ('numpy', 'array_api_strict')
    """
    if isinstance(backend, str):
        return _canonical_name(backend)
    found = _name_by_module.get(id(backend))
    if found is not None and found[0] is backend:
        return found[1]
    name = _module_backend_name(backend)
    _name_by_module[id(backend)] = (backend, name)  # holds the module: ids stay unique
    return name


_name_by_module: dict[int, tuple[Any, str]] = {}  # backend_name is on the hot path


def _module_backend_name(backend: Any) -> str:
    mod = getattr(backend, "__name__", "")
    for name in BACKENDS:
        if mod == name or mod.startswith(name + ".") or mod == _MODULES[name]:
            return name
        if mod.startswith("array_api_compat." + name):
            return name
    if mod == "jax.numpy":
        return "jax"
    raise ValueError(
        f"{backend!r} is not a supported array library; valid backends are "
        f"{', '.join(BACKENDS)}"
    )


def get_namespace(backend: str | ModuleType | None = None) -> ModuleType:
    """The Array API namespace for ``backend`` (a name, a library module, or ``None``
    for the default backend).

    Raises ``ValueError`` for an unknown name and ``ImportError`` naming the extra
    to install when the library is missing.

    >>> get_namespace("numpy").__name__
    'array_api_compat.numpy'
    """
    name = get_backend() if backend is None else backend_name(backend)
    try:
        if name == "jax":
            importlib.import_module("jax")
        elif name == "cupy":
            importlib.import_module("cupy")
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:
        hint = f"pip install 'anyfc[{EXTRAS[name]}]'"
        if name == "cupy":
            hint += " (CUDA 12) or pip install 'anyfc[cuda13]' (CUDA 13)"
        raise ImportError(f"backend {name!r} is not installed here; {hint} ({exc})") from exc


def set_backend(backend: str | ModuleType) -> None:
    """Set the default backend used when ``backend=None`` (checks it imports).

    >>> set_backend("numpy"); get_backend()
    'numpy'
    """
    global _default_backend
    name = backend_name(backend)
    get_namespace(name)
    _default_backend = name


def get_backend() -> str:
    """The default backend: ``set_backend``'s, else ``$ANYFC_BACKEND``, else numpy."""
    if _default_backend is not None:
        return _default_backend
    env = os.environ.get("ANYFC_BACKEND")
    return _canonical_name(env) if env else "numpy"


def _cuda_device_count() -> int:
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device, or no cupy: all mean "not usable"
        return 0


def available_backends() -> list[str]:
    """Backends that import *and* can compute here (cupy needs a CUDA device).

    >>> "numpy" in available_backends()
    True
    """
    found = []
    for name in BACKENDS:
        try:
            get_namespace(name)
        except ImportError:
            continue
        if name == "cupy" and _cuda_device_count() == 0:
            continue
        found.append(name)
    return found


def namespace_of(x: Array) -> ModuleType:
    """The namespace of an array (cached per array type: this is on the hot path).

    >>> import numpy as np
    >>> namespace_of(np.ones(2)).__name__
    'array_api_compat.numpy'
    """
    kind = type(x)
    xp = _namespace_by_type.get(kind)
    if xp is None:
        xp = array_api_compat.array_namespace(x)
        _namespace_by_type[kind] = xp
    return xp


def is_array(x: object) -> bool:
    """Whether ``x`` is an array of a library that speaks the Array API."""
    return bool(array_api_compat.is_array_api_obj(x)) and not isinstance(x, (int, float))


def check_numeric(a: Any, what: str = "input") -> str:
    """The kind of ``a``'s data — ``"real floating"``, ``"integral"`` or ``"bool"`` —
    or a ``TypeError`` naming ``what`` for complex, string, object and other data.

    >>> check_numeric([1, 2])
    'integral'
    """
    if is_array(a) and not array_api_compat.is_numpy_array(a):
        xp = namespace_of(a)
        for kind in ("real floating", "integral", "bool"):
            if xp.isdtype(a.dtype, kind):
                return kind
        raise TypeError(f"{what} has dtype {a.dtype}; anyfc needs real numbers")
    try:
        host_dtype = np.asarray(a).dtype
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise TypeError(f"{what} is not a rectangular array of numbers ({exc})") from exc
    names = {"f": "real floating", "i": "integral", "u": "integral", "b": "bool"}
    if host_dtype.kind not in names:
        raise TypeError(
            f"{what} has dtype {host_dtype} ({type(a).__name__}); anyfc needs real numbers")
    return names[host_dtype.kind]


def device_of(x: Array) -> Device:
    """The device an array lives on (``"cpu"`` for NumPy)."""
    return array_api_compat.device(x)


# ---------------------------------------------------------------- devices and dtypes


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
    count = _cuda_device_count()
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


def index_dtype(xp: ModuleType) -> Any:
    """The integer dtype anyfc uses on ``xp`` for class labels and row indices: int64,
    except on JAX without 64-bit mode (``jax_enable_x64`` off), where it is int32 — so
    anyfc never asks JAX for an int64 it would truncate (with a ``UserWarning``).

    >>> index_dtype(get_namespace("numpy")) == get_namespace("numpy").int64
    True
    """
    return xp.int32 if _narrow_ints(xp) else xp.int64


def _narrow_ints(xp: ModuleType) -> bool:
    """Whether ``xp`` holds no 64-bit integers (JAX without ``jax_enable_x64``)."""
    if backend_name(xp) != "jax":
        return False
    import jax

    return not jax.config.read("jax_enable_x64")


def resolve_dtype(xp: ModuleType, dtype: Any = None) -> Any:
    """The floating dtype of ``xp`` for ``dtype`` (a name, a dtype of any library, or
    ``None`` for float32). Enables JAX's 64-bit mode when float64 is asked for.

    >>> resolve_dtype(get_namespace("numpy"), "float64")
    dtype('float64')
    """
    name = "float32" if dtype is None else dtype_name(dtype)
    if name not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; valid dtypes are {', '.join(_DTYPES)}")
    if name == "float64" and backend_name(xp) == "jax":
        import jax

        if not jax.config.read("jax_enable_x64"):
            jax.config.update("jax_enable_x64", True)
    return getattr(xp, name)


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for ``"float32"``, ``numpy.float32``, ``torch.float32``, ...

    >>> import numpy as np
    >>> dtype_name(np.float64)
    'float64'
    """
    if isinstance(dtype, str):
        return dtype
    # keyed with the type first: dtypes of different libraries are never compared (that
    # warns on array_api_strict)
    key = (type(dtype), dtype)
    try:
        return _dtype_names[key]
    except (KeyError, TypeError):  # not seen yet, or not hashable
        pass
    text = str(dtype)
    name = next((n for n in ("bfloat16", "float16", "float32", "float64", "complex64",
                             "complex128") if n in text), text)
    try:
        if len(_dtype_names) < 256:
            _dtype_names[key] = name
    except TypeError:
        pass
    return name


_dtype_names: dict[tuple[type, Any], str] = {}  # dtype_name is on the hot path (step keys)


# ---------------------------------------------------------------- host randomness


def host_rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """A NumPy generator: random numbers are drawn on the host, so one seed gives the
    same numbers whatever the backend.

    >>> host_rng(0).integers(10)
    8
    """
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def from_host(a: Any, xp: ModuleType, device: Device, dtype: Any = None) -> Array:
    """Copy a host (NumPy) array or nested list to ``xp`` on ``device`` as ``dtype``.

    With ``dtype=None`` integer data (a permutation, labels) becomes
    ``index_dtype(xp)`` — int32 on JAX without 64-bit mode, checked to fit — and other
    data keeps its dtype. Any layout (negative strides, read-only, memmap) is accepted.
    """
    host = _host_view(a)
    if dtype is None and host.dtype.kind in "iu":
        dtype = index_dtype(xp)
        if _narrow_ints(xp):
            host = _as_int32(host)
    return xp.asarray(_host_copy(host, private=False), dtype=dtype, device=device)


# ---------------------------------------------------------------- moving arrays


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of any array: an explicit, synchronising host transfer. Always a
    copy, so later in-place parameter updates never show through it.

    >>> to_numpy([1, 2])
    array([1, 2])
    """
    return np.array(_host_view(a), copy=True)


def _host_view(a: Any) -> np.ndarray:
    """``a`` as a NumPy array, sharing memory where the library allows (torch tensors
    are detached first; a read-only or strided view may come back)."""
    if not is_array(a) or array_api_compat.is_numpy_array(a):
        return np.asarray(a)
    if array_api_compat.is_cupy_array(a):
        return np.asarray(a.get())
    if array_api_compat.is_torch_array(a):
        return np.asarray(a.detach().cpu().resolve_conj().resolve_neg().numpy())
    if array_api_compat.is_dask_array(a):
        return _host_view(a.compute())
    if backend_name(namespace_of(a)) == "array_api_strict":
        return np.asarray(a.to_device(namespace_of(a).Device("CPU_DEVICE")))
    return np.asarray(a)  # jax and others implement __array__


def _plain(host: np.ndarray) -> bool:
    """Whether a NumPy array is laid out the way every library can import it: C order,
    no negative strides."""
    return bool(host.flags.c_contiguous) and all(s >= 0 for s in host.strides)


def _host_copy(host: np.ndarray, private: bool) -> np.ndarray:
    """``host`` laid out for any library to import: itself when it already is (and
    ``private`` is not asked for), else a C-ordered copy. A read-only array is always
    copied: torch would import it as writable memory, and an in-place update of that
    is a segmentation fault."""
    if private or not host.flags.writeable or not _plain(host):
        return np.array(host, order="C", copy=True, subok=False)
    return host


_INT32 = np.iinfo(np.int32)


def _as_int32(host: np.ndarray) -> np.ndarray:
    """Integer host data as int32 (for JAX without 64-bit mode), or a ``ValueError``
    when a value does not fit: JAX would silently wrap it around."""
    if host.dtype.itemsize < 4 or host.dtype == np.int32:
        return host.astype(np.int32)
    if host.size and (int(host.min()) < _INT32.min or int(host.max()) > _INT32.max):
        raise ValueError(
            f"integer values up to {int(host.max())} (down to {int(host.min())}) do not fit "
            "in int32, the widest integer of JAX without 64-bit mode; enable it with "
            "jax.config.update('jax_enable_x64', True) or use smaller values")
    return host.astype(np.int32)


def _dlpack_safe(a: Array) -> bool:
    """Whether ``a`` can be shared through DLPack without crashing the importer:
    non-empty, C-contiguous, no negative strides, writable (torch aborts on negative
    strides, and imports read-only memory as writable)."""
    if array_api_compat.is_numpy_array(a) or array_api_compat.is_cupy_array(a):
        return (a.size > 0 and bool(a.flags.c_contiguous) and all(s >= 0 for s in a.strides)
                and bool(getattr(a.flags, "writeable", True)))
    if array_api_compat.is_torch_array(a):
        return (a.numel() > 0 and a.is_contiguous() and not a.requires_grad
                and not a.is_conj() and not a.is_neg())
    if array_api_compat.is_jax_array(a):
        return a.size > 0  # dense and immutable
    return False  # array_api_strict, Dask and the rest: through the host


def _via_host(a: Any, xp: ModuleType, device: Device, target: Any, private: bool) -> Array:
    """``a`` moved to ``xp`` through a NumPy array (``private``: one nobody else holds)."""
    host = _host_view(a)
    if host.dtype.kind in "iu" and host.dtype.itemsize >= 4 and _narrow_ints(xp):
        # JAX would wrap 64-bit integers around silently: cast here, checked
        host = host.astype(np.float32) if target is not None else _as_int32(host)
    host = _host_copy(host, private)
    if backend_name(xp) == "numpy":
        return host
    return xp.asarray(host, device=device)


def _transfer(a: Array, xp: ModuleType, device: Device, target: Any, copy: bool) -> Array:
    """Move ``a`` from another library to ``xp``: DLPack when that is safe and sharing
    is allowed (``copy`` false), else through the host."""
    wide_ints = _narrow_ints(xp) and bool(namespace_of(a).isdtype(a.dtype, "integral"))
    if not copy and not wide_ints and backend_name(xp) != "dask" and _dlpack_safe(a):
        try:
            out = xp.from_dlpack(a)
            if device_of(out) != device:
                out = array_api_compat.to_device(out, device)
            return out
        except (TypeError, ValueError, RuntimeError, BufferError, NotImplementedError,
                AttributeError):
            pass  # the two libraries cannot share this array: go through the host
    return _via_host(a, xp, device, target, private=copy)


def to_backend(
    a: Any,
    backend: str | ModuleType | None = None,
    device: Device | None = None,
    dtype: Any = None,
    copy: bool = False,
) -> Array:
    """``a`` (an array of any library, or a nested list) as an array of ``backend`` on
    ``device``; data is cast to ``dtype`` when one is given. With ``copy``, the result
    never shares memory with ``a``; without, it may (DLPack transfers share), and an
    array already of ``backend``, ``device`` and ``dtype`` comes back as itself.

    Any layout is accepted — strided, negative strides, Fortran order, read-only,
    memory-mapped, empty — and torch tensors are detached: autograd history never
    enters anyfc. DLPack is used only for arrays it can share safely (C-contiguous,
    writable); the others go through a contiguous host copy. On JAX without 64-bit
    mode, 64-bit integers become int32, or a ``ValueError`` if one does not fit.

    >>> to_backend([1.0, 2.0], "numpy", dtype="float32").dtype
    dtype('float32')
    """
    xp = get_namespace(backend)
    dev = resolve_device(xp, device)
    target = None if dtype is None else resolve_dtype(xp, dtype)  # first: may enable x64
    if not is_array(a):
        out = _via_host(a, xp, dev, target, private=copy)
        fresh = True
    else:
        if array_api_compat.is_torch_array(a) and a.requires_grad:
            a = a.detach()  # shares memory, carries no autograd graph
        if namespace_of(a) is xp:
            out = a if device_of(a) == dev else array_api_compat.to_device(a, dev)
            fresh = False  # another device's copy may still share (array_api_strict's)
        else:
            out = _transfer(a, xp, dev, target, copy)
            fresh = copy  # _transfer made a private copy when asked to
    if target is not None and out.dtype != target:
        out = xp.astype(out, target)  # a new array
    elif copy and not fresh:
        out = xp.asarray(out, copy=True)
    return out


# ---------------------------------------------------------------- parameter updates


def subtract_(p: Array, step: Array) -> Array:
    """``p - step``, in place when the array library allows it (not JAX).

    Returns the updated array; callers always rebind to the result.
    """
    if array_api_compat.is_writeable_array(p):
        p -= step
        return p
    return p - step


_CHUNK = 1 << 18  # elements per block of a NumPy update: 1 MiB of float32


def subtract_scaled_(p: Array, a: float, g: Array) -> Array:
    """``p - a·g``, in place when the library allows it, without a temporary the size of
    ``p`` where that can be avoided (returns the updated array; callers rebind).

    A temporary as large as a 4096×4096 weight matrix costs more than the update itself:
    glibc maps every allocation over 32 MiB fresh from the kernel, page by page. So
    torch uses its fused ``sub_(g, alpha=a)``, NumPy updates in blocks of rows whose
    temporaries malloc recycles, and immutable arrays (JAX) get ``p - a·g``.
    """
    if not array_api_compat.is_writeable_array(p):
        return p - a * g
    if array_api_compat.is_torch_array(p):
        return p.sub_(g, alpha=a)
    if array_api_compat.is_numpy_array(p) and p.ndim == 2 and p.size > _CHUNK:
        rows = max(1, _CHUNK // p.shape[1])
        for i in range(0, p.shape[0], rows):
            p[i:i + rows] -= a * g[i:i + rows]
        return p
    p -= a * g
    return p


def matmul(a: Array, b: Array, out: Array | None = None) -> Array:
    """``a @ b``, written into ``out`` (the previous result of the same product) when the
    library can, so a weight gradient reuses its buffer instead of allocating a new one
    every step."""
    has_out = (array_api_compat.is_numpy_array(out) or array_api_compat.is_cupy_array(out)
               or array_api_compat.is_torch_array(out))  # libraries whose matmul takes out=
    target: Any = out
    if (has_out and array_api_compat.is_writeable_array(target) and type(target) is type(a)
            and target.dtype == a.dtype and tuple(target.shape) == (a.shape[0], b.shape[1])):
        return namespace_of(a).matmul(a, b, out=target)
    return a @ b


def scale_add_(x: Array, a: float, y: Array, b: float = 1.0) -> Array:
    """``a * x + b * y``, in place in ``x`` when the array library allows it."""
    if array_api_compat.is_writeable_array(x):
        x *= a
        x += y if b == 1.0 else b * y
        return x
    return a * x + b * y


def is_lazy(x: Array) -> bool:
    """Whether ``x`` is a lazy array (Dask) whose value is computed on demand."""
    return bool(array_api_compat.is_dask_array(x))


def materialize(arrays: Sequence[Array]) -> list[Array]:
    """Concrete versions of ``arrays``: for lazy libraries (Dask) the graph is computed
    and kept in memory, so parameters never carry a graph that grows step after step;
    for eager libraries the arrays themselves."""
    if arrays and array_api_compat.is_dask_array(arrays[0]):
        import dask

        return list(dask.persist(*arrays))
    return list(arrays)


# ---------------------------------------------------------------- precision


def set_precision(precision: str) -> None:
    """anyfc's precision of float32 matrix products on every backend: ``"highest"`` (full
    float32, the default) or ``"high"`` (TF32 allowed on NVIDIA GPUs: JAX, torch and CuPy
    alike). Scoped to anyfc's own computations; see ``anyfc._precision``.

    >>> set_precision("high"); get_precision()
    'high'
    >>> set_precision("highest")
    >>> set_precision("highest")
    """
    _precision.set_precision(precision)


def get_precision() -> str:
    """anyfc's precision of float32 matrix products: ``"highest"`` or ``"high"``."""
    return _precision.get_precision()


def precision_scope(xp: ModuleType, device: Device = None, precision: str | None = None
                    ) -> Any:
    """A context manager applying ``precision`` (``None``: ``get_precision()``) to
    ``xp``'s float32 products on ``device`` for its duration, then restoring the
    library's own setting. anyfc's training step runs in one; wrap other computations of
    anyfc's in it too (``predict`` on JAX or on a GPU)."""
    return _precision.scope(backend_name(xp), device, precision)


def synchronize(x: Array) -> None:
    """Wait until the device work producing ``x`` has finished (for timing)."""
    if array_api_compat.is_cupy_array(x):
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif array_api_compat.is_torch_array(x) and x.device.type == "cuda":
        import torch

        torch.cuda.synchronize(x.device)
    elif array_api_compat.is_jax_array(x):
        x.block_until_ready()
    elif array_api_compat.is_dask_array(x):
        x.compute()


def to_float(x: Array) -> float:
    """A 0-d array as a Python float: one explicit host transfer."""
    return float(to_numpy(x))
