"""Moving arrays: from the host onto a device (``from_host``), to NumPy (``to_numpy``),
and between libraries and devices (``to_backend``: DLPack where sharing is safe, else
through a contiguous host copy; any layout accepted, torch tensors detached, 64-bit
integers checked on JAX without 64-bit mode); waiting for a device (``synchronize``) and
reading a 0-d array (``to_float``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from .devices import device_of, resolve_device
from .dtypes import index_dtype, narrow_ints, resolve_dtype
from .namespaces import backend_name, get_namespace, is_array, namespace_of

Array = Any  # an array of any Array API library
Device = Any  # a device object of any Array API library, or a string naming one


def from_host(a: Any, xp: ModuleType, device: Device, dtype: Any = None) -> Array:
    """Copy a host (NumPy) array or nested list to ``xp`` on ``device`` as ``dtype``.

    With ``dtype=None`` integer data (a permutation, labels) becomes
    ``index_dtype(xp)`` — int32 on JAX without 64-bit mode, checked to fit — and other
    data keeps its dtype. Any layout (negative strides, read-only, memmap) is accepted.
    """
    host = _host_view(a)
    if dtype is None and host.dtype.kind in "iu":
        dtype = index_dtype(xp)
        if narrow_ints(xp):
            host = _as_int32(host)
    return xp.asarray(_host_copy(host, private=False), dtype=dtype, device=device)


def to_numpy(a: Any) -> np.ndarray:
    """Copy any array to a NumPy array: an explicit, synchronising host transfer.

    Always a copy, so later in-place parameter updates never show through it.

    Parameters
    ----------
    a : array or nested list
        An array of any supported library.

    Returns
    -------
    numpy.ndarray
        The copy.

    Examples
    --------
    >>> to_numpy([1, 2])
    array([1, 2])
    """
    if type(a) is np.ndarray:  # on the hot path (predict's result read back)
        return np.array(a, copy=True)
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
    if host.dtype.kind in "iu" and host.dtype.itemsize >= 4 and narrow_ints(xp):
        # JAX would wrap 64-bit integers around silently: cast here, checked
        host = host.astype(np.float32) if target is not None else _as_int32(host)
    host = _host_copy(host, private)
    if backend_name(xp) == "numpy":
        return host
    return xp.asarray(host, device=device)


def _transfer(a: Array, xp: ModuleType, device: Device, target: Any, copy: bool) -> Array:
    """Move ``a`` from another library to ``xp``: DLPack when that is safe and sharing
    is allowed (``copy`` false), else through the host."""
    wide_ints = narrow_ints(xp) and bool(namespace_of(a).isdtype(a.dtype, "integral"))
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
    """Convert an array of any library (or a nested list) to an array of ``backend``.

    Any layout is accepted — strided, negative strides, Fortran order, read-only,
    memory-mapped, empty — and torch tensors are detached: autograd history never
    enters anyfc. DLPack is used only for arrays it can share safely (C-contiguous,
    writable); the others go through a contiguous host copy. On JAX without 64-bit
    mode, 64-bit integers become int32, or a ``ValueError`` if one does not fit.

    Parameters
    ----------
    a : array or nested list
        An array of any supported library, or nested lists of numbers.
    backend : str, module or None
        The backend (``None``: the default backend).
    device : str, device object or None
        The device (``None``: the backend's default device).
    dtype : str, dtype or None
        Cast to this dtype (``None``: keep the data's).
    copy : bool, default False
        Never share memory with ``a``; without, the result may (DLPack transfers share),
        and an array already of ``backend``, ``device`` and ``dtype`` comes back as
        itself.

    Returns
    -------
    array
        An array of ``backend`` on ``device``.

    Examples
    --------
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


def synchronize(x: Array) -> None:
    """Wait until the device work producing ``x`` has finished (for timing).

    Parameters
    ----------
    x : array
        An array of any library (a Dask array is computed; NumPy's returns at once).
    """
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
    if isinstance(x, (np.ndarray, np.generic)):  # on the hot path: no copy needed
        return float(x)
    return float(to_numpy(x))


def all_finite(xp: ModuleType, device: Device, values: Sequence[Any]) -> bool:
    """Whether every array (or number) in ``values`` is finite: one reduction per array
    on ``device``, one read of the result."""
    flags = [xp.all(xp.isfinite(a)) if is_array(a) else
             xp.asarray(math.isfinite(a), device=device) for a in values]
    if not flags:
        return True
    return bool(to_float(xp.all(xp.stack(flags))))
