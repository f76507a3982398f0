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


def resolve_device(xp: ModuleType, device: Device | None = None) -> Device:
    """A device object of ``xp`` for a user's ``device`` (``None`` → the default).

    Accepts ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (cupy, torch, jax), ``"gpu:0"`` (jax),
    ``"device1"`` (array_api_strict), an int (CUDA ordinal), or a device object.

    >>> resolve_device(get_namespace("numpy"))
    'cpu'
    """
    name = backend_name(xp)
    if name in ("numpy", "dask"):
        if device not in (None, "cpu"):
            raise ValueError(f"backend {name!r} has only the device 'cpu', not {device!r}")
        return "cpu"
    if name == "torch":
        import torch

        if device is None:
            return torch.device("cpu")
        dev = torch.device(device) if not isinstance(device, torch.device) else device
        if dev.type == "cuda" and dev.index is None:  # arrays report "cuda:0", not "cuda"
            dev = torch.device("cuda", torch.cuda.current_device())
        return dev
    if name == "cupy":
        import cupy

        if device is None:
            return cupy.cuda.Device()
        if isinstance(device, cupy.cuda.Device):
            return device
        if isinstance(device, str):
            kind, _, index = device.partition(":")
            if kind not in ("cuda", "gpu"):
                raise ValueError(f"backend 'cupy' needs a CUDA device, not {device!r}")
            device = int(index or 0)
        return cupy.cuda.Device(int(device))
    if name == "jax":
        import jax

        if device is None:
            return jax.devices()[0]
        if isinstance(device, int):
            return jax.devices()[device]
        if isinstance(device, str):
            platform, _, index = device.partition(":")
            platform = "gpu" if platform == "cuda" else platform
            return jax.devices(platform)[int(index or 0)]
        return device
    # array_api_strict
    if device is None:
        return xp.Device("CPU_DEVICE")
    return xp.Device(device) if isinstance(device, str) else device


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
    text = str(dtype)
    for name in ("bfloat16", "float16", "float32", "float64", "complex64", "complex128"):
        if name in text:
            return name
    return text


# ---------------------------------------------------------------- host randomness


def host_rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """A NumPy generator: random numbers are drawn on the host, so one seed gives the
    same numbers whatever the backend.

    >>> host_rng(0).integers(10)
    8
    """
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def from_host(a: Any, xp: ModuleType, device: Device, dtype: Any) -> Array:
    """Copy a host (NumPy) array or nested list to ``xp`` on ``device`` as ``dtype``."""
    return xp.asarray(np.asarray(a), dtype=dtype, device=device)


# ---------------------------------------------------------------- moving arrays


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of any array: an explicit, synchronising host transfer. Always a
    copy, so later in-place parameter updates never show through it.

    >>> to_numpy([1, 2])
    array([1, 2])
    """
    return np.array(_host_view(a), copy=True)


def _host_view(a: Any) -> Any:
    """``a`` as a host array, sharing memory where the library allows."""
    if not is_array(a) or array_api_compat.is_numpy_array(a):
        return a
    if array_api_compat.is_cupy_array(a):
        return a.get()
    if array_api_compat.is_torch_array(a):
        return a.detach().cpu().resolve_conj().numpy()
    if array_api_compat.is_dask_array(a):
        return _host_view(a.compute())
    if backend_name(namespace_of(a)) == "array_api_strict":
        return a.to_device(namespace_of(a).Device("CPU_DEVICE"))
    return a  # jax and others implement __array__


def _transfer(a: Array, xp: ModuleType, device: Device) -> Array:
    """Move ``a`` from another library to ``xp``: DLPack when both sides can, else the
    host."""
    if backend_name(xp) != "dask" and not array_api_compat.is_dask_array(a):
        try:
            out = xp.from_dlpack(a)
            if device_of(out) != device:
                out = array_api_compat.to_device(out, device)
            return out
        except (TypeError, ValueError, RuntimeError, BufferError, NotImplementedError,
                AttributeError):
            pass  # the two libraries cannot share this array: go through the host
    return xp.asarray(np.asarray(_host_view(a)), device=device)


def to_backend(
    a: Any,
    backend: str | ModuleType | None = None,
    device: Device | None = None,
    dtype: Any = None,
    copy: bool = False,
) -> Array:
    """``a`` (an array of any library, or a nested list) as an array of ``backend`` on
    ``device``; floating data is cast to ``dtype`` when one is given. With ``copy``, the
    result never shares memory with ``a`` (else it may, as DLPack transfers do).

    >>> to_backend([1.0, 2.0], "numpy", dtype="float32").dtype
    dtype('float32')
    """
    xp = get_namespace(backend)
    dev = resolve_device(xp, device)
    target = None if dtype is None else resolve_dtype(xp, dtype)  # first: may enable x64
    if not is_array(a):
        out = xp.asarray(np.asarray(a), device=dev)
    elif namespace_of(a) is xp:
        out = a if device_of(a) == dev else array_api_compat.to_device(a, dev)
    else:
        out = _transfer(a, xp, dev)
    if target is not None and out.dtype != target:
        out = xp.astype(out, target)
    elif copy and is_array(a):
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


def compile_step(xp: ModuleType, fn: Any) -> Any:
    """``fn`` compiled for ``xp`` where that pays: ``jax.jit`` for JAX (its arrays are
    immutable, and XLA fuses the element-wise work into few kernels; the parameters
    and optimizer state, arguments 0 and 1, are donated so they update in place).
    ``None`` for the other libraries, which run the same Python code eagerly."""
    if backend_name(xp) != "jax":
        return None
    import jax

    return jax.jit(fn, donate_argnums=(0, 1))


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
