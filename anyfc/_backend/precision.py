"""anyfc's one precision policy for float32 matrix products: ``set_precision``,
``get_precision``, and ``precision_scope``, which applies it to one library around
anyfc's own computations.

``"highest"`` (the default): every float32 product anyfc computes is a full float32
product, on every backend and device — also where the library's own default is a
reduced precision (JAX on NVIDIA GPUs uses TF32 unless told otherwise).

``"high"`` (opt-in): float32 products on NVIDIA GPUs may use TF32 tensor cores (10
mantissa bits in the products, float32 accumulation), alike on every GPU backend:

=========  =============================================  ==================================
library    "highest"                                      "high"
=========  =============================================  ==================================
JAX        ``jax.default_matmul_precision("highest")``    ``"tensorfloat32"`` (HIGH)
torch      ``torch.backends.cuda.matmul.fp32_precision``  ``= "tf32"`` (``allow_tf32`` on
           ``= "ieee"`` (``allow_tf32 = False`` on older  older torch); CUDA devices only
           torch); CUDA devices only
CuPy       float32 compute type ``COMPUTE_TYPE_DEFAULT``  ``COMPUTE_TYPE_TF32``
NumPy,     nothing to set: always full float32            the same (no TF32 on the host)
Dask, ...
=========  =============================================  ==================================

The setting is *scoped*: anyfc applies it around its own computations
(``precision_scope``: the training step, and JAX's compiled steps record it when they
are traced) and restores the library's previous setting afterwards, so nothing global is
left changed for the user's own code. The precision is part of a compiled step's key:
changing it compiles the step again. float64 products are always full float64.

Paths not run on a GPU here (marked so in the code): the torch and CuPy knobs only act on
CUDA devices, and were checked on a CPU machine only (the flags are set and restored).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from .namespaces import backend_name

PRECISIONS: tuple[str, ...] = ("highest", "high")
"""Valid values of ``set_precision``."""

_JAX_NAMES = {"highest": "highest", "high": "tensorfloat32"}
_state = {"precision": "highest"}
_lock = threading.Lock()


def _check(precision: Any) -> str:
    if not isinstance(precision, str) or precision.lower() not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid precisions are "
                         f"{', '.join(repr(p) for p in PRECISIONS)} ('highest': full float32 "
                         "products, the default; 'high': TF32 allowed on NVIDIA GPUs)")
    return precision.lower()


def set_precision(precision: str) -> None:
    """Set anyfc's precision of float32 matrix products.

    It applies to anyfc's own computations only, scoped (see
    ``anyfc._backend.precision``); the libraries' global settings are left as the user set
    them. Compiled training steps are keyed on it: the next step after a change compiles
    again.

    Parameters
    ----------
    precision : {"highest", "high"}
        ``"highest"``: full float32 products (the default); ``"high"``: TF32 tensor cores
        allowed on NVIDIA GPUs, for every GPU backend alike.

    Raises
    ------
    ValueError
        Another value, naming the valid ones.

    Examples
    --------
    >>> set_precision("high"); get_precision()
    'high'
    >>> set_precision("highest")
    """
    value = _check(precision)
    with _lock:
        _state["precision"] = value


def get_precision() -> str:
    """Return anyfc's precision of float32 matrix products.

    Returns
    -------
    str
        ``"highest"`` or ``"high"`` (``set_precision``).

    Examples
    --------
    >>> get_precision()
    'highest'
    """
    return _state["precision"]


@contextlib.contextmanager
def precision(value: str) -> Iterator[None]:
    """``set_precision(value)`` for the duration of a ``with`` block (then the previous
    setting again)."""
    new = _check(value)
    with _lock:
        old, _state["precision"] = _state["precision"], new
    try:
        yield
    finally:
        with _lock:
            _state["precision"] = old


def jax_precision(value: str | None = None) -> str:
    """The ``jax_default_matmul_precision`` name of an anyfc precision (``None``: the
    current one): ``"highest"`` or ``"tensorfloat32"``."""
    return _JAX_NAMES[get_precision() if value is None else _check(value)]


def _is_cuda(device: Any) -> bool:
    return getattr(device, "type", str(device).partition(":")[0]) == "cuda"


@contextlib.contextmanager
def _torch_scope(high: bool) -> Iterator[None]:
    # Only for CUDA devices; NOT RUN ON A GPU here (no GPU on the development machine):
    # the flags themselves are set and restored on the CPU build in the tests.
    import torch

    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch ≥ 2.9: the new API; mixing the legacy
        # one in would make torch raise on the user's next read of either
        old = matmul.fp32_precision
        want = "tf32" if high else "ieee"
        if old == want:
            yield
            return
        matmul.fp32_precision = want
        try:
            yield
        finally:
            matmul.fp32_precision = old
        return
    old_flag = bool(matmul.allow_tf32)
    if old_flag == high:
        yield
        return
    matmul.allow_tf32 = high
    try:
        yield
    finally:
        matmul.allow_tf32 = old_flag


@contextlib.contextmanager
def _cupy_scope(high: bool) -> Iterator[None]:
    # NOT RUN ON A GPU here (no CuPy device on the development machine). CuPy keeps one
    # compute type per dtype for its cuBLAS products, initialised from $CUPY_TF32.
    import numpy
    from cupy._core import _routines_linalg as linalg

    want = linalg.COMPUTE_TYPE_TF32 if high else linalg.COMPUTE_TYPE_DEFAULT
    old = linalg.get_compute_type(numpy.float32)
    if old == want:
        yield
        return
    linalg.set_compute_type(numpy.float32, want)
    try:
        yield
    finally:
        linalg.set_compute_type(numpy.float32, old)


def scope(backend: str, device: Any = None,
          value: str | None = None) -> contextlib.AbstractContextManager[None]:
    """A context applying precision ``value`` (``None``: the current one) to
    ``backend``'s float32 products on ``device`` and restoring the library's own setting
    on exit (a no-op where there is nothing to set: NumPy, Dask, array_api_strict, torch
    on the CPU)."""
    value = get_precision() if value is None else _check(value)
    high = value == "high"
    if backend == "jax":
        import jax

        return jax.default_matmul_precision(_JAX_NAMES[value])
    if backend == "torch" and _is_cuda(device):
        return _torch_scope(high)
    if backend == "cupy":
        return _cupy_scope(high)
    return contextlib.nullcontext()


def sets_anything(xp: ModuleType, device: Any = None) -> bool:
    """Whether ``precision_scope(xp, device)`` sets anything (JAX, CuPy, torch on CUDA):
    where it does not, a caller on a hot path may leave the scope out."""
    backend = backend_name(xp)
    return backend in ("jax", "cupy") or (backend == "torch" and _is_cuda(device))


def precision_scope(xp: ModuleType, device: Any = None, precision: str | None = None
                    ) -> Any:
    """A context manager applying ``precision`` (``None``: ``get_precision()``) to
    ``xp``'s float32 products on ``device`` for its duration, then restoring the
    library's own setting. anyfc's training step runs in one; wrap other computations of
    anyfc's in it too (``predict`` on JAX or on a GPU)."""
    return scope(backend_name(xp), device, precision)
