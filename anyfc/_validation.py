"""Checks at the public boundary: bad data is refused with a message that names the
problem (and the fix), before anything in the model changes.

Shape and value problems raise ``ValueError``, type problems ``TypeError``. Each value
check is one reduction on the device and one explicit read of its result, done once per
call of ``fit``/``predict``/``evaluate`` — never per batch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

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


def real(name: str, value: Any, low: float = 0.0, high: float = math.inf,
         low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float in the range, or a ValueError naming ``name``. Any finite real
    number is accepted (NumPy scalars too: ``y.max() + 1`` gives one); booleans are not."""
    try:  # a huge Python int (10**400) does not convert: out of range, not OverflowError
        ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
              and math.isfinite(float(value)))
    except (OverflowError, TypeError, ValueError):
        ok = False
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:20] + "..." + shown[-8:]
        raise ValueError(f"{name} must be a finite number in {lo}{low}, {high}{hi}, got {shown}")
    return float(value)


INT_MAX = 2**63 - 1
"""The largest integer setting (a count, a size, a patience): what an int64 holds."""


def integer(value: Any, name: str, low: int = 1, high: int = INT_MAX) -> int:
    """``value`` as an int in ``[low, high]`` (Python or NumPy integers; not bools), else
    a ValueError naming ``name`` (``patience=10**400`` too: no setting needs more than an
    int64, and every size is one)."""
    if type(value) is int and low <= value <= high:  # the common case, without the ABCs
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        kind = "positive" if low == 1 else "non-negative" if low == 0 else f">= {low}"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")
    if int(value) > high:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:20] + "..." + shown[-8:]
        raise ValueError(f"{name} must be at most {high}, got {shown}")
    return int(value)


def verbosity(value: Any) -> int:
    """A ``verbose`` setting: True/False or a non-negative integer, as an int."""
    return int(value) if isinstance(value, bool) else integer(value, "verbose", 0)


def batch_size(value: Any, allow_none: bool = False) -> int | None:
    """A batch size: a positive integer (or ``None`` = everything at once, where allowed)."""
    if value is None and allow_none:
        return None
    return integer(value, "batch_size")


def pair(value: Any, what: str) -> tuple[Any, Any]:
    """``(X, y)`` from a 2-sequence such as ``validation_data``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        got = f"a {type(value).__name__}" + (
            f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        raise ValueError(f"{what} must be a pair (X, y), got {got}")
    return value[0], value[1]


def _check_finite(xp: ModuleType, a: Array, what: str, source: Any = None) -> None:
    """``a`` holds no NaN or infinity; ``source`` is the data before its cast to ``a``'s
    dtype, so a finite value too large for that dtype is reported as such."""
    finite = xp.isfinite(a)
    if not _holds(xp, finite):
        rows = _first_rows(~finite)
        if source is not None and _finite_on_host(source):
            top = xp.finfo(a.dtype).max
            raise ValueError(
                f"{what} holds values too large for {_backend.dtype_name(a.dtype)} (|x| > "
                f"{top:.3g}) in rows {rows}...; scale the data, or use dtype='float64'")
        raise ValueError(f"{what} contains NaN or infinity (rows {rows}...); remove or impute "
                         "those values first (e.g. sklearn.impute.SimpleImputer)")


def _finite_on_host(a: Any) -> bool:
    """Whether ``a`` is finite everywhere, read on the host (error path only)."""
    host = _backend.to_numpy(a)
    return bool(_backend.get_namespace("numpy").all(
        _backend.get_namespace("numpy").isfinite(host.astype("float64"))))


def _source(a: Any) -> Array:
    """``a`` as an array of its own library (a nested list becomes a NumPy array)."""
    return a if _backend.is_array(a) else _backend.to_backend(a, "numpy")


def _to_float(a: Any, kind: str, xp: ModuleType, device: Any, dtype: Any) -> Array:
    """``a`` on ``xp``/``device`` as ``dtype``. Integer and boolean data are cast where they
    are, before the transfer, so no library narrows them on the way (JAX without 64-bit
    mode would wrap int64 values above 2³¹)."""
    a = _source(a)
    sxp = _backend.namespace_of(a)
    target = getattr(sxp, _backend.dtype_name(dtype), None)
    if target is not None and a.dtype != target:  # cast where the data is, then move: a
        # device without float64 (some GPUs) never sees a float64 array
        a = sxp.astype(a, target)
    return _backend.to_backend(a, xp, device, dtype)


def inputs(X: Any, xp: ModuleType, device: Any, dtype: Any, n_in: int, what: str = "X") -> Array:
    """``X`` as a finite 2-D float array of ``n_in`` columns on ``xp``/``device``."""
    kind = _backend.check_numeric(X, what)
    source = X
    X = _to_float(X, kind, xp, device, dtype)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (samples × features), got shape {tuple(X.shape)}")
    if X.shape[1] != n_in:
        raise ValueError(f"{what} has {X.shape[1]} features per row but the first layer takes "
                         f"{n_in} (n_in)")
    if X.shape[0] == 0:
        raise ValueError(f"{what} is empty (0 rows)")
    _check_finite(xp, X, what, source)
    return X


def targets(y: Any, loss: losses.Loss, xp: ModuleType, device: Any, dtype: Any, n: int,
            n_out: int, what: str = "y") -> Array:
    """``y`` checked against what ``loss`` needs, on ``xp``/``device``: integer labels
    (``_backend.index_dtype``) or one-hot rows for softmax cross-entropy, 0..1 values for
    binary cross-entropy, finite values for mean squared error."""
    kind = _backend.check_numeric(y, what)
    shape = tuple(_source(y).shape)
    if len(shape) == 0 or shape[0] != n:
        rows = "a scalar" if len(shape) == 0 else f"{shape[0]} rows"
        raise ValueError(f"X has {n} rows but {what} has {rows}")
    if isinstance(loss, losses.SoftmaxCrossEntropy) and len(shape) == 1:
        return _labels(y, kind, xp, device, n_out, what)
    t = _to_float(y, kind, xp, device, dtype)
    if isinstance(loss, losses.SoftmaxCrossEntropy):
        return _one_hot(t, xp, n_out, what)
    if not (t.ndim == 2 and t.shape[1] == n_out) and not (t.ndim == 1 and n_out == 1):
        hint = ""
        if t.ndim == 1 and n_out > 1:
            hint = (f"; if {what} holds class labels 0..{n_out - 1}, use "
                    "loss='softmax_cross_entropy'")
        raise ValueError(f"{what} has shape {tuple(t.shape)}; {loss.name} with {n_out} "
                         f"output(s) needs ({n}, {n_out})" + (f" or ({n},)" if n_out == 1 else "")
                         + hint)
    _check_finite(xp, t, what, y)
    if isinstance(loss, losses.BinaryCrossEntropy):
        inside = (t >= 0) & (t <= 1)
        if not _holds(xp, inside):
            raise ValueError(f"{what} must hold 0/1 targets (or probabilities in [0, 1]) for "
                             f"binary_cross_entropy; rows {_first_rows(~inside)} do not; for "
                             "regression targets use loss='mean_squared_error'")
    return t


def _one_hot(t: Array, xp: ModuleType, n_out: int, what: str) -> Array:
    if t.ndim != 2:
        raise ValueError(f"{what} must be class labels of shape (n,) or one-hot rows of shape "
                         f"(n, {n_out}), got shape {tuple(t.shape)}")
    if t.shape[1] != n_out:
        raise ValueError(f"{what} has {t.shape[1]} columns but the last layer gives {n_out} "
                         "class scores; one-hot rows need one column per class")
    binary = (t == 0) | (t == 1)
    if not _holds(xp, binary) or not _holds(xp, xp.sum(t, axis=1) == 1):
        bad = ~binary | (xp.reshape(xp.sum(t, axis=1), (-1, 1)) != 1)
        raise ValueError(f"rows {_first_rows(bad)} of {what} are not one-hot (exactly one 1, "
                         "the rest 0) as softmax_cross_entropy needs; for several 0/1 labels "
                         "per row use loss='binary_cross_entropy', for regression targets "
                         "loss='mean_squared_error'")
    return t


def _labels(y: Any, kind: str, xp: ModuleType, device: Any, n_out: int, what: str) -> Array:
    """Class labels checked where they are (before any transfer could narrow them), then
    moved as ``_backend.index_dtype(xp)``."""
    src = _source(y)
    sxp = _backend.namespace_of(src)
    if kind == "bool":
        src = sxp.astype(src, sxp.int32)
    if kind == "real floating":
        _check_finite(sxp, src, what)
        whole = src == sxp.floor(src)
        if not _holds(sxp, whole):
            raise ValueError(f"{what} holds non-integer class labels (rows {_first_rows(~whole)}"
                             f"); softmax_cross_entropy needs integers 0..{n_out - 1}; for "
                             "regression targets use loss='mean_squared_error'")
    low, high = _backend.to_numpy(sxp.min(src)).item(), _backend.to_numpy(sxp.max(src)).item()
    if low < 0 or high >= n_out:
        bad = int(low) if low < 0 else int(high)
        hint = "; the labels seem to start at 1: subtract 1" if (low, high) == (1, n_out) else ""
        raise ValueError(f"{what} has class label {bad}, outside 0..{n_out - 1} (the last "
                         f"layer gives {n_out} class scores){hint}")
    index = sxp.int32 if _backend.index_dtype(xp) == xp.int32 else sxp.int64
    return _backend.to_backend(sxp.astype(src, index), xp, device)


# ---------------------------------------------------------------- sample and class weights


def sample_weight(w: Any, n: int, xp: ModuleType, device: Any, dtype: Any,
                  what: str = "sample_weight") -> Array | None:
    """``w`` as the per-row weights the losses take (``E = (1/n) Σ_k w_k e_k``): a 1-D
    float array of length ``n`` on ``xp``/``device`` as ``dtype``; ``None`` stays
    ``None`` (unweighted).

    ``w`` may be an array of any supported library, a NumPy array or a list, of real
    numbers (integers are cast where they are, then moved, as ``inputs`` does). Refused,
    naming ``what``: booleans, complex/strings (``TypeError``); a scalar, 2-D weights, a
    length other than ``n``, NaN or infinity, negative weights, and weights that are all
    zero (nothing would be learnt) (``ValueError``). One explicit host read on success.
    """
    if w is None:
        return None
    kind = _backend.check_numeric(w, what)
    if kind == "bool":
        raise TypeError(f"{what} has boolean values; weights must be real numbers (for a "
                        "0/1 mask of rows, pass it as floats, e.g. mask.astype(float))")
    shape = tuple(_source(w).shape)
    if len(shape) != 1:
        hint = " (a column? flatten it to shape (n,))" if len(shape) == 2 and (
            shape[1:] == (1,)) else ""
        raise ValueError(f"{what} must be 1-D (one weight per row of X), got shape "
                         f"{shape}{hint}")
    if shape[0] != n:
        raise ValueError(f"X has {n} rows but {what} has {shape[0]} weights; give one weight "
                         "per row")
    source = w
    w = _to_float(w, kind, xp, device, dtype)
    # happy path: one reduction, one read — finite, non-negative, and some weight > 0
    if _holds(xp, xp.all(xp.isfinite(w) & (w >= 0)) & xp.any(w > 0)):
        return w
    _check_finite(xp, w, what, source)
    negative = w < 0
    if not _holds(xp, ~negative):
        raise ValueError(f"{what} holds negative weights (at rows {_first_rows(negative)}...); "
                         "weights must be >= 0")
    raise ValueError(f"{what} is all zeros: no row would count in the loss; give at least "
                     "one row a positive weight")


def row_weights(w: Array, xp: ModuleType, dtype: Any) -> Array:
    """The effective per-row weights ``class_weight[c_k] · sample_weight_k`` as they will
    be used, in the model's ``dtype``: finite (a product beyond the dtype's range is
    refused, naming the weights, rather than diverging in training), non-negative and not
    all zero. One reduction and one host read."""
    if _holds(xp, xp.all(xp.isfinite(w) & (w >= 0)) & xp.any(w > 0)):
        return w
    what = "the row weights (class_weight × sample_weight)"
    finite = xp.isfinite(w)
    if not _holds(xp, finite):
        top = xp.finfo(dtype).max
        raise ValueError(f"{what} overflow {_backend.dtype_name(dtype)} (|w| > {top:.3g}) at "
                         f"rows {_first_rows(~finite)}...; scale class_weight or "
                         "sample_weight down (only their ratios matter), or use "
                         "dtype='float64'")
    if not _holds(xp, w >= 0):
        raise ValueError(f"{what} are negative at rows {_first_rows(w < 0)}...; weights "
                         "must be >= 0")
    raise ValueError(f"{what} are all zero (or underflow {_backend.dtype_name(dtype)}): no "
                     "row would count in the loss; give some rows a positive weight")


def class_weight(class_weight: Any, y: Any, loss: losses.Loss,
                 n_out: int) -> np.ndarray | None:
    """Per-row weights (a NumPy float64 array of shape ``(n,)``, on the host) from
    per-class weights, or ``None`` for ``class_weight=None``. ``fit`` multiplies them
    with the ``sample_weight`` (if any) and passes the product through ``sample_weight``,
    which moves it to the model:  ``w_k = class_weight[c_k] · sample_weight_k``.

    ``class_weight`` is a dict ``{class index: weight ≥ 0}`` (classes left out weigh 1) or
    ``"balanced"``, scikit-learn's ``n_samples / (n_classes · count_c)`` for each class
    ``c``, with ``n_classes`` the number of classes present in ``y`` (the counts do not
    include any sample weight). The class ``c_k`` of row ``k`` is:

    - ``softmax_cross_entropy``: the integer label, or the argmax of a one-hot row
      (classes ``0..n_out-1``);
    - ``binary_cross_entropy`` with a single output: the 0/1 target (classes 0 and 1).

    Refused (``ValueError`` unless noted): a regression loss, multi-label binary
    cross-entropy (several outputs), keys that are not classes (or not integers:
    ``TypeError``), negative or non-finite weights, BCE targets other than 0 and 1, all
    rows weighing zero, and a ``class_weight`` that is neither a dict nor ``"balanced"``
    (``TypeError``; another string: ``ValueError``). ``y`` is read on the host once (for
    one-hot rows only their argmax is moved): call this once per ``fit``, not per batch.
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict {{class: weight}} or 'balanced', "
                             f"got {class_weight!r}")
    elif not isinstance(class_weight, Mapping):
        raise TypeError("class_weight must be a dict {class: weight} or 'balanced', got "
                        f"{type(class_weight).__name__}")
    labels, n_classes = _class_labels(y, loss, n_out)
    if isinstance(class_weight, str):  # "balanced"
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        present = counts > 0
        per_class = np.ones(n_classes)
        per_class[present] = labels.size / (int(present.sum()) * counts[present])
    else:
        per_class = np.ones(n_classes)
        for key, value in class_weight.items():
            if isinstance(key, bool) or not isinstance(key, numbers.Integral):
                raise TypeError(f"class_weight has the key {key!r}; keys must be integer "
                                f"class indices 0..{n_classes - 1}")
            if not 0 <= int(key) < n_classes:
                raise ValueError(f"class_weight has the key {key!r}, which is not a class: "
                                 f"{loss.name} here has classes 0..{n_classes - 1}")
            per_class[int(key)] = real(f"class_weight[{key!r}]", value)
    rows = per_class[labels]
    if labels.size and not rows.any():
        raise ValueError("class_weight gives every row of y a weight of 0: no row would "
                         "count in the loss")
    return rows


def _class_labels(y: Any, loss: losses.Loss, n_out: int) -> tuple[np.ndarray, int]:
    """(class index of every row as a host int64 array, number of classes) for
    ``class_weight``."""
    if not isinstance(loss, (losses.SoftmaxCrossEntropy, losses.BinaryCrossEntropy)):
        raise ValueError(f"class_weight needs a classification loss (softmax_cross_entropy "
                         f"or binary_cross_entropy), not {loss.name}; for regression, weight "
                         "rows with sample_weight")
    kind = _backend.check_numeric(y, "y")
    src = _source(y)
    if isinstance(loss, losses.BinaryCrossEntropy):
        if n_out != 1:
            raise ValueError(f"class_weight needs a single-output binary_cross_entropy (one "
                             f"0/1 class per row); this model has {n_out} outputs (multi-label)"
                             "; weight rows with sample_weight instead")
        host = _backend.to_numpy(src).astype(np.float64)
        if not (host.ndim == 1 or (host.ndim == 2 and host.shape[1] == 1)):
            raise ValueError(f"y has shape {tuple(host.shape)}; binary_cross_entropy with 1 "
                             "output needs (n,) or (n, 1)")
        host = host.reshape(-1)
        binary = (host == 0) | (host == 1)
        if not binary.all():
            raise ValueError(f"class_weight needs 0/1 targets for binary_cross_entropy; rows "
                             f"{_first_rows(~binary)} of y are not 0 or 1")
        return host.astype(np.int64), 2
    if len(src.shape) == 2:  # one-hot rows: only their argmax travels to the host
        sxp = _backend.namespace_of(src)
        src = sxp.argmax(src, axis=1)
        kind = "integral"
    host = _backend.to_numpy(src)
    if host.ndim != 1:
        raise ValueError(f"y must be class labels of shape (n,) or one-hot rows of shape "
                         f"(n, {n_out}), got shape {tuple(host.shape)}")
    if kind != "integral":
        as_float = host.astype(np.float64)
        whole = np.isfinite(as_float) & (as_float == np.floor(as_float))
        if not whole.all():
            raise ValueError(f"y holds non-integer class labels (rows {_first_rows(~whole)})")
    labels = host.astype(np.int64)
    outside = (labels < 0) | (labels >= n_out)
    if outside.any():
        raise ValueError(f"y has class label {int(labels[outside][0])}, outside "
                         f"0..{n_out - 1}")
    return labels, n_out
