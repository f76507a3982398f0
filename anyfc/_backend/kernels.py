"""Kernels that write into existing arrays where the library allows it: ``subtract_``,
``subtract_scaled_`` and ``scale_add_`` update their first argument in place (parameters,
optimizer state, running statistics), ``matmul`` writes into the previous result's buffer
(``out``). Where the library does not allow it (JAX) they return a new array, so callers
always rebind to the result.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .namespaces import namespace_of

Array = Any  # an array of any Array API library


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
        if array_api_compat.is_torch_array(a):  # torch's own, without the wrapper's checks
            import torch

            return torch.matmul(a, b, out=target)
        return namespace_of(a).matmul(a, b, out=target)
    return a @ b


def take_rows(a: Array, index: Array) -> Array:
    """``take(a, index, axis=0)``: the rows of ``a`` at ``index`` (torch's
    ``index_select`` called directly; the namespace's ``take`` elsewhere)."""
    if array_api_compat.is_torch_array(a):
        import torch

        return torch.index_select(a, 0, index)
    return namespace_of(a).take(a, index, axis=0)


def scale_add_(x: Array, a: float, y: Array, b: float = 1.0) -> Array:
    """``a * x + b * y``, in place in ``x`` when the array library allows it."""
    if array_api_compat.is_writeable_array(x):
        x *= a
        x += y if b == 1.0 else b * y
        return x
    return a * x + b * y


def softmax_rows(y: Array) -> Array | None:
    """``exp(y - max) / Σ exp(y - max)`` along each row in a new array, for a NumPy
    ``y``: the same operations as ``losses.SoftmaxCrossEntropy.output`` (the reference,
    which runs where this gives ``None``), with NumPy's reductions called directly and
    the exponential and the division in place (at a batch of one row, the Python
    wrappers around the reductions cost more than the arithmetic)."""
    if type(y) is not np.ndarray or y.ndim != 2:
        return None
    z = np.subtract(y, np.maximum.reduce(y, axis=1, keepdims=True))
    np.exp(z, out=z)
    z /= np.add.reduce(z, axis=1, keepdims=True)
    return z


def total(x: Array) -> Array:
    """The sum of every element of ``x`` (0-d), NumPy's reduction called directly (an
    overflow gives infinity without a warning: callers use the sum as a cheap check)."""
    if type(x) is np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.add.reduce(x, axis=None)
    return namespace_of(x).sum(x)


def affine(x: Array, w: Array, b: Array) -> Array:
    """``x @ w + b`` with the bias added into the product's own (new) buffer where the
    library allows it: the same values, one large temporary fewer (at a batch of 1024
    rows, NumPy's second buffer cost as much as the product)."""
    u = x @ w
    if array_api_compat.is_numpy_array(u) or array_api_compat.is_torch_array(u):
        u += b
        return u
    return u + b


def relu_(u: Array) -> Array | None:
    """``max(u, 0)`` written into ``u`` (a fresh array its caller owns) for NumPy and
    torch; ``None`` elsewhere (the caller runs the Array API form)."""
    if type(u) is np.ndarray:
        return np.maximum(u, 0.0, out=u)
    if array_api_compat.is_torch_array(u) and not u.requires_grad:
        return u.clamp_(min=0.0)
    return None
