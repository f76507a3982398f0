"""Laziness, decided in one place: whether an array is lazy (Dask: computed on demand,
``is_lazy``), and concrete versions of lazy arrays (``materialize``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import array_api_compat

Array = Any  # an array of any Array API library


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
