"""Element-wise activation functions ``y = f(u)`` and their derivatives.

Each activation has ``forward(xp, u) -> y`` and ``backward(xp, y, grad_y) -> delta``
where ``delta = ∂E/∂u = grad_y ⊙ f'(u)`` (the article's δ). Every derivative here is
written in terms of the output ``y``, so a layer keeps only ``y`` for its backward
pass, not ``u`` as well.
Softmax is not here: it is fused into ``losses.SoftmaxCrossEntropy``, where its
gradient simplifies to ``softmax(u) - t``.
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

Array = Any


class Activation:
    """Base class: the identity, ``f(u) = u``, ``f'(u) = 1``."""

    name = "identity"

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return u

    def backward(self, xp: ModuleType, y: Array, grad_y: Array) -> Array:
        return grad_y

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(Activation):
    """``f(u) = u`` — for regression outputs and logits fed to a fused loss."""


class ReLU(Activation):
    """``f(u) = max(u, 0)``;  ``f'(u) = 1 if u > 0 else 0``.

    The derivative is the mask ``y > 0`` cast to the data's float dtype and multiplied
    in: never an integer mask (that would promote float32 to float64 in NumPy), and not
    ``where``, which is several times slower on the unpredictable signs of real data.
    """

    name = "relu"

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return xp.maximum(u, 0.0)

    def backward(self, xp: ModuleType, y: Array, grad_y: Array) -> Array:
        return grad_y * xp.astype(y > 0, grad_y.dtype)


class LeakyReLU(Activation):
    """``f(u) = u if u > 0 else α·u``;  ``f'(u) = 1 if u > 0 else α`` (α = 0.01).

    With 0 ≤ α ≤ 1, ``f(u) = max(u, α·u)``, and ``u > 0`` exactly when ``y > 0``, so
    the derivative ``α + (1 - α)·[y > 0]`` reads ``y``.
    """

    name = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
            raise ValueError(f"leaky_relu needs a number 0 <= alpha <= 1, got {alpha!r}")
        self.alpha: float = float(alpha)

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return xp.maximum(u, self.alpha * u)

    def backward(self, xp: ModuleType, y: Array, grad_y: Array) -> Array:
        slope = xp.astype(y > 0, grad_y.dtype) * (1.0 - self.alpha) + self.alpha
        return grad_y * slope

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha})"


class Sigmoid(Activation):
    """``f(u) = 1 / (1 + e^{-u})``;  ``f'(u) = y (1 - y)``.

    Computed from ``e = exp(-|u|) ≤ 1`` so it never overflows: ``1/(1+e)`` for u ≥ 0
    and ``e/(1+e)`` for u < 0.
    """

    name = "sigmoid"

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return sigmoid(xp, u)

    def backward(self, xp: ModuleType, y: Array, grad_y: Array) -> Array:
        return grad_y * y * (1.0 - y)


class Tanh(Activation):
    """``f(u) = tanh(u)``;  ``f'(u) = 1 - y²``."""

    name = "tanh"

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return xp.tanh(u)

    def backward(self, xp: ModuleType, y: Array, grad_y: Array) -> Array:
        return grad_y * (1.0 - y * y)


def sigmoid(xp: ModuleType, u: Array) -> Array:
    """Overflow-free logistic function ``1 / (1 + e^{-u})``."""
    e = xp.exp(-xp.abs(u))
    return xp.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Identity,
    "linear": Identity,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}


def get(activation: str | Activation | None) -> Activation:
    """An activation object from its name (``None`` means identity).

    >>> get("relu")
    ReLU()
    """
    if activation is None:
        return Identity()
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str) and activation.lower() == "softmax":
        raise ValueError(
            "'softmax' is not a layer activation in anyfc: it is part of the loss "
            "'softmax_cross_entropy', which takes the logits of an 'identity' last layer "
            "(Dense(n, classes, 'identity')); predict() applies the softmax for you")
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; valid activations are "
            f"{', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[activation.lower()]()
