"""Dtypes: the floating dtype of a library for a user's ``"float32"``/``"float64"`` or
another library's dtype (``resolve_dtype``, ``dtype_name``), and the integer dtype anyfc
uses for labels and indices (``index_dtype``: int32 on JAX without 64-bit mode, where
``narrow_ints`` holds).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .namespaces import backend_name

DTYPES = ("float32", "float64")
"""The floating dtypes anyfc computes in."""


def index_dtype(xp: ModuleType) -> Any:
    """The integer dtype anyfc uses on ``xp`` for class labels and row indices: int64,
    except on JAX without 64-bit mode (``jax_enable_x64`` off), where it is int32 — so
    anyfc never asks JAX for an int64 it would truncate (with a ``UserWarning``).

    >>> from anyfc._backend.namespaces import get_namespace
    >>> index_dtype(get_namespace("numpy")) == get_namespace("numpy").int64
    True
    """
    return xp.int32 if narrow_ints(xp) else xp.int64


def narrow_ints(xp: ModuleType) -> bool:
    """Whether ``xp`` holds no 64-bit integers (JAX without ``jax_enable_x64``)."""
    if backend_name(xp) != "jax":
        return False
    import jax

    return not jax.config.read("jax_enable_x64")


def resolve_dtype(xp: ModuleType, dtype: Any = None) -> Any:
    """The floating dtype of ``xp`` for ``dtype`` (a name, a dtype of any library, or
    ``None`` for float32). Enables JAX's 64-bit mode when float64 is asked for.

    >>> from anyfc._backend.namespaces import get_namespace
    >>> resolve_dtype(get_namespace("numpy"), "float64")
    <class 'numpy.float64'>
    """
    name = "float32" if dtype is None else dtype_name(dtype)
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; valid dtypes are {', '.join(DTYPES)}")
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
