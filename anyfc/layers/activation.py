"""Activation layers: ``y = f(x)`` element-wise, so ``Dense → BatchNorm → ReLU`` can be
written. ``Dense(..., activation=...)`` fuses the same functions into the dense layer.

    forward:   y = f(x)
    backward:  ∂E/∂x = ∂E/∂y ⊙ f'(x)      (f' from y, or from x where it must be)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .. import activations
from .base import Layer

Array = Any


class Activation(Layer):
    """An element-wise activation as a layer of any width: ``Activation("gelu")``.

    >>> import numpy as np
    >>> Activation("relu", backend="numpy").forward(np.array([[-1.0, 2.0]],
    ...     dtype=np.float32), training=False)
    array([[0., 2.]], dtype=float32)
    """

    cache_names = ("x", "y")

    def __init__(self, activation: str | activations.Activation | dict[str, Any] = "relu", *,
                 backend: str | ModuleType | None = None, device: Any = None,
                 dtype: Any = "float32") -> None:
        self.activation = activations.get(activation)
        self.place(backend, device, dtype)
        self.x: Array | None = None
        self.y: Array | None = None

    def forward(self, x: Array, training: bool = True) -> Array:
        """``y = f(x)``; in training keeps ``y`` (and ``x`` where ``f'`` needs it)."""
        self._check_input(x, "forward")
        y = self.activation.forward(self.xp, x)
        if training:
            self.y = y
            self.x = x if self.activation.uses_u else None
        return y

    def backward(self, grad_y: Array, need_grad_x: bool = True) -> Array | None:
        """``∂E/∂x = grad_y ⊙ f'(x)``."""
        self._check_backward(grad_y, self.y)
        return self.activation.backward(self.xp, self.y, grad_y, self.x)

    def config(self) -> dict[str, Any]:
        return {"activation": activations.to_config(self.activation)}

    @classmethod
    def array_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        unknown = set(config) - {"activation"}
        if unknown:
            raise TypeError(f"{cls.__name__} takes no setting {sorted(map(str, unknown))[0]!r}")
        activations.get(config.get("activation", "relu"))  # checks it (no arrays)
        return {}


class _Named(Activation):
    """An ``Activation`` whose function is fixed by the class (``ReLU()``); settings such
    as ``alpha`` are keyword arguments."""

    function = "identity"

    def __init__(self, *, backend: str | ModuleType | None = None, device: Any = None,
                 dtype: Any = "float32", **settings: Any) -> None:
        super().__init__({"name": self.function, **settings}, backend=backend, device=device,
                         dtype=dtype)

    def config(self) -> dict[str, Any]:
        settings = self.activation.config()
        settings.pop("name")
        return settings

    @classmethod
    def array_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        for setting in ("name", "type"):  # the function is the class's
            if setting in config:
                raise TypeError(f"{cls.__name__} takes no setting {setting!r}")
        activations.get({"name": cls.function, **config})  # checks the settings (no arrays)
        return {}


class ReLU(_Named):
    """``y = max(x, 0)``."""

    function = "relu"


class LeakyReLU(_Named):
    """``y = x if x > 0 else α·x`` (``alpha=0.01``)."""

    function = "leaky_relu"


class Sigmoid(_Named):
    """``y = 1 / (1 + e^{-x})``."""

    function = "sigmoid"


class Tanh(_Named):
    """``y = tanh(x)``."""

    function = "tanh"


class GELU(_Named):
    """``y = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))``."""

    function = "gelu"


class SiLU(_Named):
    """``y = x·σ(x)``."""

    function = "silu"


class ELU(_Named):
    """``y = x if x > 0 else α(e^x - 1)`` (``alpha=1``)."""

    function = "elu"


class Softplus(_Named):
    """``y = log(1 + e^x)``."""

    function = "softplus"


class Softsign(_Named):
    """``y = x / (1 + |x|)``."""

    function = "softsign"
