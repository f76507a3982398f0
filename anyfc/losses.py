"""Loss functions ``E(y, t)``, each the mean over the batch, with their gradient.

``value_and_gradient(y, t, w=None)`` returns ``E`` (a 0-d array) and ``∂E/∂y`` (the
shape of ``y``) and keeps nothing on the loss, so one loss object serves many models and
threads at once: the training step calls it. ``value(y, t, w=None)`` is ``E`` alone
(evaluation). ``forward(y, t, w=None)`` then ``backward()`` is the same pair for a loop
written by hand, the article's way: ``forward`` keeps the gradient for ``backward``.
The classification losses take *logits* (the output of an identity layer) and fuse the
softmax or sigmoid into the loss, where the gradient simplifies to ``(p - t) / h`` and
the log never sees a 0.

Sample weights. ``w`` (shape ``(h,)``, one weight per row, ``y``'s library, device and
dtype) weights each row's error ``e_k`` by ``w_k``, with the normaliser ``n`` kept as it
is unweighted (Keras's "sum over batch size": the weights are *not* renormalised to sum
to ``n``, so doubling every weight doubles ``E`` and its gradient)::

    E = (1/n) Σ_k w_k e_k,      ∂E/∂y_k = w_k ∂e_k/∂y_k / n

``n`` is ``h`` for softmax cross-entropy and the ``h·c`` entries for binary
cross-entropy and mean squared error (each entry of row ``k`` weighted by ``w_k``).
``w=None`` runs exactly the unweighted code (no extra operation). The weights are
checked once per ``fit`` by ``_validation.sample_weight`` (and built from class weights
by ``_validation.class_weight``); here only their shape is checked, and their dtype
cast to ``y``'s if it differs.

Settings (each loss's constructor; the defaults are the formulas above):

- ``reduction``: what the sum over rows is divided by. ``"sum_over_batch_size"``
  (default, Keras's): the rows ``h``, as above. ``"mean_with_sample_weight"`` (Keras's
  name; scikit-learn's and torch's weighted mean): the sum of the row weights, so
  ``E = Σ_k w_k e_k / Σ_k w_k`` and integer weights equal repeated rows (without weights
  the two are the same; a batch whose weights are all 0 has ``E = 0``).
- ``outputs`` (binary cross-entropy, squared error): how a row's errors over its ``c``
  outputs make its ``e_k``: their ``"mean"`` (default, as above) or their ``"sum"``
  (scikit-learn's binary log loss and squared error).
- ``half`` (squared error): ``E`` halved, so ``∂E/∂y = w_k (y_k - t_k) / N``
  (scikit-learn's ``squared_error``).

``normalizer(y, w)`` is the divisor ``N`` of a batch (``h``, or ``Σ w`` under
``mean_with_sample_weight``); a layer's penalty (``Dense(l2=...)``) is scaled by it too.
``config()`` gives the name and the settings that differ from the defaults.
"""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

from . import _backend, registry
from .activations import sigmoid

Array = Any


def row_weights(y: Array, w: Array) -> Array:
    """Return the row weights ``w`` in ``y``'s dtype, checking their shape.

    A shape check only: no array operation.

    Parameters
    ----------
    y : array
        The network's output, ``h`` rows.
    w : array
        One weight per row, of shape ``(h,)``.

    Returns
    -------
    array
        ``w``, cast to ``y``'s dtype where it differs.

    Raises
    ------
    ValueError
        ``w`` is not of shape ``(h,)``.
    """
    h, rows = y.shape[0], w.shape[0] if getattr(w, "ndim", None) == 1 else None
    if rows is None or (isinstance(h, int) and isinstance(rows, int) and rows != h):
        shape = tuple(w.shape) if hasattr(w, "shape") else type(w).__name__
        raise ValueError(f"the sample weights w must have shape ({h},), one per row of y, "
                         f"got {shape}")
    return w if w.dtype == y.dtype else _backend.namespace_of(y).astype(w, y.dtype)


class Loss:
    """Base class of the losses.

    A subclass writes ``value_and_gradient`` (and, for a classification loss,
    ``n_correct`` and ``output``); ``classification`` says whether accuracy is
    meaningful. ``w`` is an optional per-row sample weight (see the module docstring):
    ``E = (1/n) Σ_k w_k e_k``; ``w=None`` is the unweighted loss, computed as before.
    """

    name = "loss"
    classification = False
    reduction = "sum_over_batch_size"  # built-in losses take it as a setting

    def normalizer(self, y: Array, w: Array | None = None) -> Any:
        """Return ``N``, what the loss divides its (weighted) sum over the ``h`` rows by.

        Parameters
        ----------
        y : array
            The network's output, ``h`` rows.
        w : array, optional
            The row weights.

        Returns
        -------
        int or 0-d array
            ``h`` (a Python int), or under ``reduction="mean_with_sample_weight"`` the
            sum of the weights (a 0-d array of ``y``'s dtype; 1 where they are all 0).
        """
        if w is None or self.reduction == "sum_over_batch_size":
            return y.shape[0]
        xp = _backend.namespace_of(y)
        total = xp.sum(row_weights(y, w))
        return xp.where(total > 0, total, xp.ones_like(total))

    def settings(self) -> dict[str, Any]:
        """Return the settings that differ from the defaults (what ``repr`` shows).

        Returns
        -------
        dict
            ``{setting: value}``; empty for the base class.
        """
        return {}

    def check_settings(self) -> None:
        """Check that settings reassigned since construction are ones the class accepts.

        Say ``loss.reduction = "mean"``: the class checks its own ``settings()`` on a
        throw-away copy. A loss without settings has nothing to check.

        Raises
        ------
        ValueError
            A bad setting, naming the loss and the setting.
        """
        settings = self.settings()
        if settings:
            try:
                type(self)(**settings)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"the loss {type(self).__name__} has a bad setting: "
                                 f"{exc}") from None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A loss written for anyfc 0.1 (``forward`` keeping its batch, ``backward()``
        reading it) gets a ``value_and_gradient`` that runs them on a scratch copy, so
        it too keeps nothing between the training step's calls."""
        super().__init_subclass__(**kwargs)
        if "value_and_gradient" in cls.__dict__ or not (
                "forward" in cls.__dict__ or "backward" in cls.__dict__):
            return

        def value_and_gradient(self: Loss, y: Array, t: Array,
                               w: Array | None = None) -> tuple[Array, Array]:
            scratch = copy.copy(self)
            # the parent's pair inside the copy: its forward may call super().forward
            scratch.value_and_gradient = super(cls, scratch).value_and_gradient  # type: ignore
            e = scratch.forward(y, t) if w is None else scratch.forward(y, t, w)
            return e, scratch.backward()

        cls.value_and_gradient = value_and_gradient  # type: ignore[method-assign]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("grad_y", None)  # what a hand-written loop's forward kept
        return state

    def __copy__(self) -> Any:
        """A shallow copy sharing the arrays (``copy.deepcopy`` and pickle copy them)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin

    def value_and_gradient(self, y: Array, t: Array,
                           w: Array | None = None) -> tuple[Array, Array]:
        """Compute ``E(y, t)`` and ``∂E/∂y``, keeping nothing (the training step calls it).

        Parameters
        ----------
        y : array
            The network's raw output (logits for the classification losses), ``h`` rows.
        t : array
            The targets: labels of shape ``(h,)`` or rows of ``y``'s shape.
        w : array, optional
            One weight per row, shape ``(h,)``.

        Returns
        -------
        tuple
            ``(E, ∂E/∂y)``: a 0-d array, and an array of ``y``'s shape.
        """
        raise NotImplementedError

    def value(self, y: Array, t: Array, w: Array | None = None) -> Array:
        """Compute ``E(y, t)``, keeping nothing (evaluation: safe from many threads at once).

        Parameters
        ----------
        y : array
            The network's raw output, ``h`` rows.
        t : array
            The targets.
        w : array, optional
            One weight per row, shape ``(h,)``.

        Returns
        -------
        array
            ``E``, a 0-d array.
        """
        return self.value_and_gradient(y, t, w)[0]

    def gradient(self, y: Array, t: Array, w: Array | None = None) -> Array:
        """Compute ``∂E/∂y``, keeping nothing.

        Parameters
        ----------
        y : array
            The network's raw output, ``h`` rows.
        t : array
            The targets.
        w : array, optional
            One weight per row, shape ``(h,)``.

        Returns
        -------
        array
            ``∂E/∂y``, of ``y``'s shape.
        """
        return self.value_and_gradient(y, t, w)[1]

    def forward(self, y: Array, t: Array, w: Array | None = None) -> Array:
        """Compute ``E(y, t)``, keeping ``∂E/∂y`` on the loss for ``backward()``.

        For a loop written by hand; anyfc's own training step calls
        ``value_and_gradient``.

        Parameters
        ----------
        y : array
            The network's raw output, ``h`` rows.
        t : array
            The targets.
        w : array, optional
            One weight per row, shape ``(h,)``.

        Returns
        -------
        array
            ``E``, a 0-d array.
        """
        e, self.grad_y = self.value_and_gradient(y, t, w)
        return e

    def backward(self) -> Array:
        """Return ``∂E/∂y`` of the last ``forward`` (with its weights).

        Returns
        -------
        array
            ``∂E/∂y``, of ``y``'s shape.

        Raises
        ------
        RuntimeError
            No ``forward`` came before.
        """
        grad_y = getattr(self, "grad_y", None)
        if grad_y is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return grad_y

    def output(self, xp: ModuleType, y: Array) -> Array:
        """Return what ``predict`` gives for the raw network output ``y``.

        Parameters
        ----------
        xp : module
            The Array API namespace of ``y``.
        y : array
            The network's raw output.

        Returns
        -------
        array
            ``y`` itself (regression), or the probabilities (softmax, sigmoid).
        """
        return y

    def n_correct(self, xp: ModuleType, y: Array, t: Array) -> tuple[Array, int]:
        """Count the correct predictions, for accuracy.

        Parameters
        ----------
        xp : module
            The Array API namespace of ``y``.
        y : array
            The network's raw output.
        t : array
            The targets.

        Returns
        -------
        tuple
            ``(number correct, a 0-d array; number of predictions, an int)``.

        Raises
        ------
        TypeError
            The loss is no classification loss.
        """
        raise TypeError(f"{self.name} is not a classification loss")

    def targets(self, xp: ModuleType, t: Array, n_out: int, dtype: Any) -> Array:
        """Return the targets in the form ``forward`` compares with ``y``.

        Parameters
        ----------
        xp : module
            The Array API namespace of ``t``.
        t : array
            The targets as given: labels of shape ``(h,)`` or rows.
        n_out : int
            The network's number of outputs.
        dtype : dtype
            ``y``'s dtype.

        Returns
        -------
        array
            The targets, of ``y``'s shape (``(h, n_out)``) and dtype.
        """
        if t.ndim == 1 and n_out == 1:
            t = xp.reshape(t, (-1, 1))
        return xp.astype(t, dtype) if t.dtype != dtype else t

    def config(self) -> dict[str, Any]:
        """Return the settings with which ``type(self)(**config)`` builds this loss again.

        Plain JSON: its public attributes that are numbers, booleans or strings (what
        ``forward`` keeps for ``backward`` is arrays, not settings), but the scales at
        their defaults. A loss whose settings are kept otherwise writes its own.

        Returns
        -------
        dict
            ``{setting: value}``.
        """
        out = {k: v for k, v in vars(self).items()
               if not k.startswith("_") and isinstance(v, (bool, int, float, str))}
        return {k: v for k, v in out.items()  # the scales at their defaults: left out
                if not (k in SCALE_DEFAULTS and SCALE_DEFAULTS[k] == v)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


#: The values of the losses' ``reduction`` setting (see the module docstring).
REDUCTIONS = ("sum_over_batch_size", "mean_with_sample_weight")
#: The default of each scale setting, which ``config()`` leaves out.
SCALE_DEFAULTS = {"reduction": "sum_over_batch_size", "outputs": "mean", "half": False}
#: The values of the ``outputs`` setting (binary cross-entropy, squared error).
OUTPUTS = ("mean", "sum")


def _choice(owner: str, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{owner} {name} must be one of {', '.join(map(repr, allowed))}, "
                         f"got {value!r}")
    return value


class SoftmaxCrossEntropy(Loss):
    """Softmax of logits ``z`` followed by cross-entropy, mean over the batch of ``h``.

    ::

        p = softmax(z) = e^{z - m} / Σ_j e^{z_j - m}     (m = max_j z_j: no overflow)
        E = -(1/h) Σ_k Σ_j t_kj log p_kj,   log p = (z - m) - log Σ_j e^{z_j - m}
        ∂E/∂z = (p - t) / h

    With row weights ``w`` (shape ``(h,)``; ``N = h``, or ``Σ w`` with
    ``reduction="mean_with_sample_weight"``)::

        E = -(1/N) Σ_k w_k Σ_j t_kj log p_kj,   ∂E/∂z_k = w_k (p_k - t_k) / N

    Targets are integer class labels (shape ``(h,)``) or one-hot rows (``(h, c)``).

    Parameters
    ----------
    reduction : str, default "sum_over_batch_size"
        ``N``: the rows ``h``, or with ``"mean_with_sample_weight"`` the sum of the row
        weights (see the module docstring).
    """

    name = "softmax_cross_entropy"
    classification = True

    def __init__(self, reduction: str = "sum_over_batch_size") -> None:
        self.reduction = _choice(type(self).__name__, "reduction", reduction, REDUCTIONS)

    def settings(self) -> dict[str, Any]:
        reduction = getattr(self, "reduction", Loss.reduction)
        return {} if reduction == Loss.reduction else {"reduction": reduction}

    def targets(self, xp: ModuleType, t: Array, n_out: int, dtype: Any) -> Array:
        if t.ndim == 1:  # labels → one-hot
            classes = xp.arange(n_out, dtype=t.dtype, device=_backend.device_of(t))
            t = xp.reshape(t, (-1, 1)) == classes
        return xp.astype(t, dtype) if t.dtype != dtype else t

    def _log_p(self, y: Array, t: Array) -> tuple[ModuleType, Array, Array]:
        xp = _backend.namespace_of(y)
        t = self.targets(xp, t, y.shape[1], y.dtype)
        z = y - xp.max(y, axis=1, keepdims=True)
        return xp, t, z - xp.log(xp.sum(xp.exp(z), axis=1, keepdims=True))

    @staticmethod
    def _energy(xp: ModuleType, t: Array, log_p: Array, w: Array | None, n: Any) -> Array:
        if w is None:  # E = -(1/h) Σ_k Σ_j t_kj log p_kj
            return -xp.sum(t * log_p) / n
        # E = -(1/N) Σ_k w_k Σ_j t_kj log p_kj
        return -xp.sum(w * xp.sum(t * log_p, axis=1)) / n

    def value(self, y: Array, t: Array, w: Array | None = None) -> Array:
        if w is not None:
            w = row_weights(y, w)
        xp, t, log_p = self._log_p(y, t)
        return self._energy(xp, t, log_p, w, self.normalizer(y, w))

    def value_and_gradient(self, y: Array, t: Array,
                           w: Array | None = None) -> tuple[Array, Array]:
        if w is not None:
            w = row_weights(y, w)
        xp, t, log_p = self._log_p(y, t)
        p, n = xp.exp(log_p), self.normalizer(y, w)
        if w is None:  # ∂E/∂z = (p - t) / h
            return self._energy(xp, t, log_p, w, n), (p - t) / n
        # w_k (p_k - t_k) / N
        return self._energy(xp, t, log_p, w, n), (p - t) * (xp.reshape(w, (-1, 1)) / n)

    def n_correct(self, xp: ModuleType, y: Array, t: Array) -> tuple[Array, int]:
        labels = t if t.ndim == 1 else xp.argmax(t, axis=1)
        hits = xp.argmax(y, axis=1) == labels
        return xp.sum(xp.astype(hits, y.dtype)), y.shape[0]

    def output(self, xp: ModuleType, y: Array) -> Array:
        fast = _backend.softmax_rows(y)  # the same operations, fewer wrappers (NumPy)
        if fast is not None:
            return fast
        z = xp.exp(y - xp.max(y, axis=1, keepdims=True))
        return z / xp.sum(z, axis=1, keepdims=True)


class _PerOutput(Loss):
    """A loss whose row error ``e_k`` combines ``c`` per-output errors.

    Their mean (``outputs="mean"``, the default) or their sum (``outputs="sum"``).

    Parameters
    ----------
    reduction : str, default "sum_over_batch_size"
        ``N``: the rows ``h``, or the sum of the row weights.
    outputs : str, default "mean"
        ``"mean"`` or ``"sum"`` of a row's errors over its outputs.
    """

    outputs = "mean"

    def __init__(self, reduction: str = "sum_over_batch_size", outputs: str = "mean") -> None:
        owner = type(self).__name__
        self.reduction = _choice(owner, "reduction", reduction, REDUCTIONS)
        self.outputs = _choice(owner, "outputs", outputs, OUTPUTS)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if getattr(self, "reduction", Loss.reduction) != Loss.reduction:
            out["reduction"] = self.reduction
        if getattr(self, "outputs", "mean") != "mean":
            out["outputs"] = self.outputs
        return out

    def _divisor(self, y: Array, w: Array | None) -> Any:
        """``N·c`` (``outputs="mean"``) or ``N`` (``"sum"``): the defaults give ``h·c``."""
        n = self.normalizer(y, w)
        return n * y.shape[1] if self.outputs == "mean" else n


class BinaryCrossEntropy(_PerOutput):
    """Sigmoid of logits ``z`` followed by binary cross-entropy, mean over all entries.

    The mean is over all ``n = h·c`` entries (one per sample for a single output)::

        E = (1/n) Σ [ max(z, 0) - z·t + log(1 + e^{-|z|}) ]   (= -t log p - (1-t) log(1-p))
        ∂E/∂z = (σ(z) - t) / n

    With row weights ``w`` (shape ``(h,)``; every entry of row ``k`` weighted by
    ``w_k``)::

        E = (1/n) Σ_k w_k Σ_j [ max(z_kj, 0) - z_kj t_kj + log(1 + e^{-|z_kj|}) ]
        ∂E/∂z_k = w_k (σ(z_k) - t_k) / n

    ``n = N·c``, or ``N`` with ``outputs="sum"`` (``N = h``, or ``Σ w`` with
    ``reduction="mean_with_sample_weight"``): scikit-learn's binary log loss is
    ``BinaryCrossEntropy("mean_with_sample_weight", outputs="sum")``.

    Targets are 0/1 of shape ``(h,)`` (single output) or ``(h, k)`` (k labels).

    Parameters
    ----------
    reduction : str, default "sum_over_batch_size"
        ``N``: the rows ``h``, or with ``"mean_with_sample_weight"`` the sum of the row
        weights.
    outputs : str, default "mean"
        ``"mean"`` or ``"sum"`` of a row's errors over its outputs.
    """

    name = "binary_cross_entropy"
    classification = True

    def value(self, y: Array, t: Array, w: Array | None = None) -> Array:
        xp = _backend.namespace_of(y)
        t = self.targets(xp, t, y.shape[1], y.dtype)
        per_entry = xp.maximum(y, 0.0) - y * t + xp.log1p(xp.exp(-xp.abs(y)))
        if w is None:
            return xp.sum(per_entry) / self._divisor(y, w)
        w = row_weights(y, w)  # (1/n) Σ_k w_k Σ_j e_kj
        return xp.sum(w * xp.sum(per_entry, axis=1)) / self._divisor(y, w)

    def value_and_gradient(self, y: Array, t: Array,
                           w: Array | None = None) -> tuple[Array, Array]:
        xp = _backend.namespace_of(y)
        t = self.targets(xp, t, y.shape[1], y.dtype)
        if w is None:  # (σ(z) - t) / n
            return self.value(y, t), (sigmoid(xp, y) - t) / self._divisor(y, w)
        w = row_weights(y, w)  # w_k (σ(z_k) - t_k) / n
        n = self._divisor(y, w)
        return self.value(y, t, w), (sigmoid(xp, y) - t) * (xp.reshape(w, (-1, 1)) / n)

    def n_correct(self, xp: ModuleType, y: Array, t: Array) -> tuple[Array, int]:
        t = self.targets(xp, t, y.shape[1], y.dtype)
        hits = (y > 0) == (t > 0.5)
        return xp.sum(xp.astype(hits, y.dtype)), y.shape[0] * y.shape[1]

    def output(self, xp: ModuleType, y: Array) -> Array:
        return sigmoid(xp, y)


class MeanSquaredError(_PerOutput):
    """Mean over all ``n = h·c`` entries of the squared error.

    ::

        E = (1/n) Σ (y - t)²,   ∂E/∂y = 2 (y - t) / n

    With row weights ``w`` (shape ``(h,)``; every entry of row ``k`` weighted by
    ``w_k``)::

        E = (1/n) Σ_k w_k Σ_j (y_kj - t_kj)²,   ∂E/∂y_k = 2 w_k (y_k - t_k) / n

    ``n = N·c``, or ``N`` with ``outputs="sum"`` (``N = h``, or ``Σ w`` with
    ``reduction="mean_with_sample_weight"``); ``half=True`` halves ``E`` (gradient
    ``w_k (y_k - t_k) / n``). scikit-learn's ``squared_error`` is descended as
    ``MeanSquaredError("mean_with_sample_weight", outputs="sum", half=True)``, whose
    value for ``c > 1`` outputs is ``c`` times the one scikit-learn reports (its
    average over the outputs).

    Parameters
    ----------
    reduction : str, default "sum_over_batch_size"
        ``N``: the rows ``h``, or with ``"mean_with_sample_weight"`` the sum of the row
        weights.
    outputs : str, default "mean"
        ``"mean"`` or ``"sum"`` of a row's errors over its outputs.
    half : bool, default False
        Halve ``E`` (and its gradient).
    """

    name = "mean_squared_error"
    half = False

    def __init__(self, reduction: str = "sum_over_batch_size", outputs: str = "mean",
                 half: bool = False) -> None:
        super().__init__(reduction, outputs)
        if not isinstance(half, bool):
            raise ValueError(f"MeanSquaredError half must be True or False, got {half!r}")
        self.half = half

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        if getattr(self, "half", False) is not False:  # a reassigned value, as it is
            out["half"] = self.half
        return out

    def value(self, y: Array, t: Array, w: Array | None = None) -> Array:
        diff = y - self.targets(_backend.namespace_of(y), t, y.shape[1], y.dtype)
        if w is None:
            e = self._mean_square(diff, self._divisor(y, w))
        else:
            w = row_weights(y, w)
            e = self._weighted_mean_square(diff, w, self._divisor(y, w))
        return 0.5 * e if self.half else e

    def value_and_gradient(self, y: Array, t: Array,
                           w: Array | None = None) -> tuple[Array, Array]:
        xp = _backend.namespace_of(y)
        diff = y - self.targets(xp, t, y.shape[1], y.dtype)
        two = 1.0 if self.half else 2.0
        if w is None:  # 2 (y - t) / n
            n = self._divisor(y, w)
            e = self._mean_square(diff, n)
            return (0.5 * e if self.half else e), (two / n) * diff
        w = row_weights(y, w)  # 2 w_k (y_k - t_k) / n
        n = self._divisor(y, w)
        e = self._weighted_mean_square(diff, w, n)
        return (0.5 * e if self.half else e), ((two / n) * xp.reshape(w, (-1, 1))) * diff

    @staticmethod
    def _mean_square(diff: Array, n: Any = None) -> Array:
        """(1/n) Σ diff² (``n``: every entry unless given)"""
        n = diff.shape[0] * diff.shape[1] if n is None else n
        return _backend.namespace_of(diff).sum(diff * diff) / n

    @staticmethod
    def _weighted_mean_square(diff: Array, w: Array, n: Any = None) -> Array:
        """(1/n) Σ_k w_k Σ_j diff_kj²"""
        xp = _backend.namespace_of(diff)
        n = diff.shape[0] * diff.shape[1] if n is None else n
        return xp.sum(w * xp.sum(diff * diff, axis=1)) / n


#: anyfc's loss classes by short name: the names ``Sequential(loss=...)`` and ``get``
#: take.
LOSSES: dict[str, type[Loss]] = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "cross_entropy": SoftmaxCrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


registry.declare("loss", Loss, "losses.Loss")
for _cls in (SoftmaxCrossEntropy, BinaryCrossEntropy, MeanSquaredError):
    registry.register(_cls)


def get(loss: str | Loss | dict[str, Any]) -> Loss:
    """Build a loss object from any of the forms ``Sequential`` takes.

    Parameters
    ----------
    loss : str, dict or Loss
        Its short name (``LOSSES``) or registered name, its spec (``{"type":
        "MeanSquaredError", "config": {}}``, ``anyfc.registry``), the short form
        ``{"name": "mse", setting: value, ...}``, or the object itself.

    Returns
    -------
    Loss
        The loss (``loss`` itself when it is one).

    Raises
    ------
    ValueError
        An unknown name, listing the valid ones, or bad settings.

    Examples
    --------
    >>> get("mse")
    MeanSquaredError()
    >>> get({"name": "mse", "outputs": "sum", "half": True})
    MeanSquaredError(outputs='sum', half=True)
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, dict) and "type" not in loss and isinstance(loss.get("name"), str):
        # the short form {"name": "mean_squared_error", setting: value}
        settings = {k: v for k, v in loss.items() if k != "name"}
        cls = LOSSES.get(loss["name"].lower())
        if cls is None:
            raise ValueError(f"unknown loss {loss['name']!r}; valid losses are "
                             f"{', '.join(LOSSES)}")
        loss = {"type": registry.name_of(cls), "config": settings}
    found: Loss = registry.lookup("loss", loss, LOSSES, "loss", "losses")
    return found
