"""How libraries report floating-point trouble while anyfc computes: anyfc checks
finiteness itself (one device read an epoch) and raises its own error naming the fix, so
NumPy's overflow and invalid-value ``RuntimeWarning``s would only repeat it, noisily."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

import numpy as np

from .namespaces import backend_name

_HOST = ("numpy", "dask", "array_api_strict")  # libraries that compute with NumPy


@contextlib.contextmanager
def quiet(xp: ModuleType) -> Iterator[None]:
    """NumPy's floating-point warnings off inside (this thread only) where ``xp``
    computes with NumPy; nothing to do elsewhere (GPU libraries do not warn)."""
    if backend_name(xp) in _HOST:
        with np.errstate(all="ignore"):
            yield
    else:
        yield
