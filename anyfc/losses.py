"""Loss functions ``E(y, t)``, each the mean over the batch, with their gradient.

``forward(y, t)`` returns a 0-d array and keeps what ``backward()`` needs (``value(y, t)``
returns the same and keeps nothing);
``backward()`` returns ``∂E/∂y`` with the shape of ``y``. The classification losses take
*logits* (the output of an identity layer) and fuse the softmax or sigmoid into the loss,
where the gradient simplifies to ``(p - t) / h`` and the log never sees a 0.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import _backend
from .activations import sigmoid

Array = Any


class Loss:
    """Base class. ``classification`` says whether accuracy is meaningful."""

    name = "loss"
    classification = False

    def forward(self, y: Array, t: Array) -> Array:
        """``E(y, t)``, keeping what ``backward`` needs on the loss (training)."""
        raise NotImplementedError

    def value(self, y: Array, t: Array) -> Array:
        """``E(y, t)`` keeping nothing (evaluation: safe from many threads at once)."""
        raise NotImplementedError

    def backward(self) -> Array:
        raise NotImplementedError

    def output(self, xp: ModuleType, y: Array) -> Array:
        """What ``predict`` returns for raw network output ``y``."""
        return y

    def n_correct(self, xp: ModuleType, y: Array, t: Array) -> tuple[Array, int]:
        """(number of correct predictions as a 0-d array, number of predictions)."""
        raise TypeError(f"{self.name} is not a classification loss")

    def targets(self, xp: ModuleType, t: Array, n_out: int, dtype: Any) -> Array:
        """Targets in the form ``forward`` compares with ``y`` (shape of ``y``)."""
        if t.ndim == 1 and n_out == 1:
            t = xp.reshape(t, (-1, 1))
        return xp.astype(t, dtype) if t.dtype != dtype else t

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Softmax of logits ``z`` followed by cross-entropy, mean over the batch of ``h``:

        p = softmax(z) = e^{z - m} / Σ_j e^{z_j - m}     (m = max_j z_j: no overflow)
        E = -(1/h) Σ_k Σ_j t_kj log p_kj,   log p = (z - m) - log Σ_j e^{z_j - m}
        ∂E/∂z = (p - t) / h

    Targets are integer class labels (shape ``(h,)``) or one-hot rows (``(h, c)``).
    """

    name = "softmax_cross_entropy"
    classification = True

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

    def value(self, y: Array, t: Array) -> Array:
        xp, t, log_p = self._log_p(y, t)
        return -xp.sum(t * log_p) / y.shape[0]

    def forward(self, y: Array, t: Array) -> Array:
        xp, t, log_p = self._log_p(y, t)
        self.p, self.t = xp.exp(log_p), t
        return -xp.sum(t * log_p) / y.shape[0]

    def backward(self) -> Array:
        return (self.p - self.t) / self.t.shape[0]

    def n_correct(self, xp: ModuleType, y: Array, t: Array) -> tuple[Array, int]:
        labels = t if t.ndim == 1 else xp.argmax(t, axis=1)
        hits = xp.argmax(y, axis=1) == labels
        return xp.sum(xp.astype(hits, y.dtype)), y.shape[0]

    def output(self, xp: ModuleType, y: Array) -> Array:
        z = xp.exp(y - xp.max(y, axis=1, keepdims=True))
        return z / xp.sum(z, axis=1, keepdims=True)


class BinaryCrossEntropy(Loss):
    """Sigmoid of logits ``z`` followed by binary cross-entropy, mean over all ``n``
    entries (one per sample for a single output):

        E = (1/n) Σ [ max(z, 0) - z·t + log(1 + e^{-|z|}) ]   (= -t log p - (1-t) log(1-p))
        ∂E/∂z = (σ(z) - t) / n

    Targets are 0/1 of shape ``(h,)`` (single output) or ``(h, k)`` (k labels).
    """

    name = "binary_cross_entropy"
    classification = True

    def value(self, y: Array, t: Array) -> Array:
        xp = _backend.namespace_of(y)
        t = self.targets(xp, t, y.shape[1], y.dtype)
        per_entry = xp.maximum(y, 0.0) - y * t + xp.log1p(xp.exp(-xp.abs(y)))
        return xp.sum(per_entry) / (y.shape[0] * y.shape[1])

    def forward(self, y: Array, t: Array) -> Array:
        self.z, self.t = y, self.targets(_backend.namespace_of(y), t, y.shape[1], y.dtype)
        return self.value(y, self.t)

    def backward(self) -> Array:
        xp = _backend.namespace_of(self.z)
        return (sigmoid(xp, self.z) - self.t) / (self.z.shape[0] * self.z.shape[1])

    def n_correct(self, xp: ModuleType, y: Array, t: Array) -> tuple[Array, int]:
        t = self.targets(xp, t, y.shape[1], y.dtype)
        hits = (y > 0) == (t > 0.5)
        return xp.sum(xp.astype(hits, y.dtype)), y.shape[0] * y.shape[1]

    def output(self, xp: ModuleType, y: Array) -> Array:
        return sigmoid(xp, y)


class MeanSquaredError(Loss):
    """Mean over all ``n`` entries of the squared error:

        E = (1/n) Σ (y - t)²,   ∂E/∂y = 2 (y - t) / n
    """

    name = "mean_squared_error"

    def value(self, y: Array, t: Array) -> Array:
        return self._mean_square(y - self.targets(_backend.namespace_of(y), t, y.shape[1],
                                                  y.dtype))

    def forward(self, y: Array, t: Array) -> Array:
        self.diff = y - self.targets(_backend.namespace_of(y), t, y.shape[1], y.dtype)
        return self._mean_square(self.diff)

    @staticmethod
    def _mean_square(diff: Array) -> Array:
        return _backend.namespace_of(diff).sum(diff * diff) / (diff.shape[0] * diff.shape[1])

    def backward(self) -> Array:
        return (2.0 / (self.diff.shape[0] * self.diff.shape[1])) * self.diff


LOSSES: dict[str, type[Loss]] = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "cross_entropy": SoftmaxCrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(loss: str | Loss) -> Loss:
    """A loss object from its name.

    >>> get("mse")
    MeanSquaredError()
    """
    if isinstance(loss, Loss):
        return loss
    if not isinstance(loss, str) or loss.lower() not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid losses are {', '.join(LOSSES)}")
    return LOSSES[loss.lower()]()
