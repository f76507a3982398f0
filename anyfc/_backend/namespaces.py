"""Backend names and namespaces: which array libraries anyfc knows (``BACKENDS``, their
aliases and extras), the default backend (``set_backend``/``get_backend``,
``$ANYFC_BACKEND``), the Array API namespace of a backend (``get_namespace``) or of an
array (``namespace_of``), which libraries can compute here (``available_backends``), and
what kind of data an input holds (``is_array``, ``check_numeric``).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

Array = Any  # an array of any Array API library

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

chosen_backend: str | None = None  # set_backend's choice (None: $ANYFC_BACKEND, else numpy)
_namespace_by_type: dict[type, ModuleType] = {}


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
    """Set the default backend, used wherever ``backend=None``.

    It takes precedence over ``$ANYFC_BACKEND``.

    Parameters
    ----------
    backend : str or module
        A backend name (``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"dask"``,
        ``"array_api_strict"``) or the library's module.

    Raises
    ------
    ValueError
        An unknown backend, listing the valid ones.
    ImportError
        A backend that is not installed, naming the extra to install.

    Examples
    --------
    >>> set_backend("numpy"); get_backend()
    'numpy'
    """
    global chosen_backend
    name = backend_name(backend)
    get_namespace(name)
    chosen_backend = name


def get_backend() -> str:
    """Return the default backend's name.

    Returns
    -------
    str
        ``set_backend``'s choice, else ``$ANYFC_BACKEND``, else ``"numpy"``.
    """
    if chosen_backend is not None:
        return chosen_backend
    env = os.environ.get("ANYFC_BACKEND")
    return _canonical_name(env) if env else "numpy"


def cuda_device_count() -> int:
    """How many CUDA devices CuPy can use here (0 without CuPy, a driver or a device)."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device, or no cupy: all mean "not usable"
        return 0


def available_backends() -> list[str]:
    """List the backends that import *and* can compute here (cupy needs a CUDA device).

    Returns
    -------
    list of str
        Their names, in the order of ``BACKENDS``.

    Examples
    --------
    >>> "numpy" in available_backends()
    True
    """
    found = []
    for name in BACKENDS:
        try:
            get_namespace(name)
        except ImportError:
            continue
        if name == "cupy" and cuda_device_count() == 0:
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
    if isinstance(a, np.ma.MaskedArray):  # its mask would be silently dropped
        raise TypeError(f"{what} is a NumPy masked array; anyfc does not honour masks: fill "
                        f"the masked entries first, e.g. np.ma.filled({what}, value) or "
                        f"{what}.filled(value), or drop those rows")
    shape = getattr(a, "shape", None)
    if is_array(a) and shape is not None and any(
            d is None or (isinstance(d, float) and d != d) for d in shape):
        raise ValueError(f"{what} has unknown chunk sizes (shape {tuple(shape)}), as a Dask "
                         f"array after boolean indexing has; call {what}.compute_chunk_sizes() "
                         "first")
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
        hint = ("; encode text labels as integers 0..k-1 (sklearn.preprocessing.LabelEncoder, "
                "or pandas' .cat.codes) and text features as numbers (one-hot), or use "
                "anyfc.sklearn.MLPClassifier, which takes labels of any kind"
                if host_dtype.kind in "USO" else "")
        raise TypeError(f"{what} has dtype {host_dtype} ({type(a).__name__}); anyfc needs "
                        f"real numbers{hint}")
    return names[host_dtype.kind]
