"""Checks at the public boundary: bad data is refused with a message that names the
problem (and the fix), before anything in the model changes.

Shape and value problems raise ``ValueError``, type problems ``TypeError``. Each value
check is one reduction on the device and one explicit read of its result, done once per
call of ``fit``/``predict``/``evaluate`` — never per batch.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import _backend, losses

Array = Any


def _holds(xp: ModuleType, condition: Array) -> bool:
    """Whether a boolean array is true everywhere (one explicit host read)."""
    return bool(_backend.to_float(xp.all(condition)))


def _first_rows(bad: Array, limit: int = 3) -> list[int]:
    """Indices of the first rows where a boolean array (1-D or 2-D) is true — only
    called on the error path, so it may read the whole mask on the host."""
    mask: Any = _backend.to_numpy(bad)
    rows = mask.any(axis=1) if mask.ndim == 2 else mask
    return [int(i) for i in rows.nonzero()[0][:limit]]


def _check_finite(xp: ModuleType, a: Array, what: str) -> None:
    finite = xp.isfinite(a)
    if not _holds(xp, finite):
        rows = _first_rows(~finite)
        raise ValueError(f"{what} contains NaN or infinity (rows {rows}...); remove or impute "
                         "those values before training")


def inputs(X: Any, xp: ModuleType, device: Any, dtype: Any, n_in: int, what: str = "X") -> Array:
    """``X`` as a finite 2-D float array of ``n_in`` columns on ``xp``/``device``."""
    _backend.check_numeric(X, what)
    X = _backend.to_backend(X, xp, device, dtype)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (samples × features), got shape {tuple(X.shape)}")
    if X.shape[1] != n_in:
        raise ValueError(f"{what} has {X.shape[1]} features per row but the first layer takes "
                         f"{n_in} (n_in)")
    if X.shape[0] == 0:
        raise ValueError(f"{what} is empty (0 rows)")
    _check_finite(xp, X, what)
    return X


def targets(y: Any, loss: losses.Loss, xp: ModuleType, device: Any, dtype: Any, n: int,
            n_out: int, what: str = "y") -> Array:
    """``y`` checked against what ``loss`` needs, on ``xp``/``device``: integer labels
    (int64) or one-hot rows for softmax cross-entropy, 0..1 values for binary
    cross-entropy, finite values for mean squared error."""
    kind = _backend.check_numeric(y, what)
    t = _backend.to_backend(y, xp, device, dtype if kind != "integral" else None)
    if t.ndim == 0 or t.shape[0] != n:
        rows = "a scalar" if t.ndim == 0 else f"{t.shape[0]} rows"
        raise ValueError(f"X has {n} rows but {what} has {rows}")
    if isinstance(loss, losses.SoftmaxCrossEntropy):
        return _class_targets(t, kind, xp, dtype, n_out, what)
    if not (t.ndim == 2 and t.shape[1] == n_out) and not (t.ndim == 1 and n_out == 1):
        raise ValueError(f"{what} has shape {tuple(t.shape)}; {loss.name} with {n_out} "
                         f"output(s) needs ({n}, {n_out})" + (f" or ({n},)" if n_out == 1 else ""))
    t = xp.astype(t, dtype) if t.dtype != dtype else t
    _check_finite(xp, t, what)
    if isinstance(loss, losses.BinaryCrossEntropy):
        inside = (t >= 0) & (t <= 1)
        if not _holds(xp, inside):
            raise ValueError(f"{what} must hold 0/1 targets (or probabilities in [0, 1]) for "
                             f"binary_cross_entropy; rows {_first_rows(~inside)} do not")
    return t


def _class_targets(t: Array, kind: str, xp: ModuleType, dtype: Any, n_out: int,
                   what: str) -> Array:
    if t.ndim == 2:
        if t.shape[1] != n_out:
            raise ValueError(f"{what} has {t.shape[1]} columns but the last layer gives {n_out} "
                             "class scores; one-hot rows need one column per class")
        t = xp.astype(t, dtype) if t.dtype != dtype else t
        binary = (t == 0) | (t == 1)
        if not _holds(xp, binary) or not _holds(xp, xp.sum(t, axis=1) == 1):
            bad = ~binary | (xp.reshape(xp.sum(t, axis=1), (-1, 1)) != 1)
            raise ValueError(f"rows {_first_rows(bad)} of {what} are not one-hot (exactly one 1, "
                             "the rest 0)")
        return t
    if t.ndim != 1:
        raise ValueError(f"{what} must be class labels of shape (n,) or one-hot rows of shape "
                         f"(n, {n_out}), got shape {tuple(t.shape)}")
    if kind == "real floating":
        _check_finite(xp, t, what)
        whole = t == xp.floor(t)
        if not _holds(xp, whole):
            rows = _first_rows(~whole)
            raise ValueError(f"{what} holds non-integer class labels (rows {rows}); "
                             f"softmax_cross_entropy needs integers 0..{n_out - 1}")
    t = xp.astype(t, xp.int64)
    low, high = int(_backend.to_float(xp.min(t))), int(_backend.to_float(xp.max(t)))
    if low < 0 or high >= n_out:
        bad = low if low < 0 else high
        hint = "; the labels seem to start at 1: subtract 1" if (low, high) == (1, n_out) else ""
        raise ValueError(f"{what} has class label {bad}, outside 0..{n_out - 1} (the last "
                         f"layer gives {n_out} class scores){hint}")
    return t
