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

    Parameters
    ----------
    activation : str, dict or anyfc.activations.Activation, default "relu"
        The function, in any form ``anyfc.activations.get`` takes.
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).

    Examples
    --------
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
        """Compute ``y = f(x)``.

        Parameters
        ----------
        x : array
            A batch, of the layer's library, device and dtype.
        training : bool, default True
            Keep ``y`` (and ``x`` where ``f'`` needs it) for ``backward``.

        Returns
        -------
        array
            ``y``, of ``x``'s shape.
        """
        self._check_input(x, "forward")
        y = self.activation.forward(self.xp, x)
        if training:
            self.y = y
            self.x = x if self.activation.uses_u else None
        return y

    def backward(self, grad_y: Array, need_grad_x: bool = True) -> Array | None:
        """Compute ``∂E/∂x = grad_y ⊙ f'(x)``.

        Parameters
        ----------
        grad_y : array
            ``∂E/∂y`` for the last training ``forward``'s output.
        need_grad_x : bool, default True
            Unused: the layer has no parameters, and its only work is ``∂E/∂x``.

        Returns
        -------
        array
            ``∂E/∂x``.
        """
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
    """An ``Activation`` whose function is fixed by the class (``ReLU()``).

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        The function's settings (``alpha`` for ``LeakyReLU`` and ``ELU``).
    """

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
    """``y = max(x, 0)``.

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        None for this function.
    """

    function = "relu"


class LeakyReLU(_Named):
    """``y = x if x > 0 else α·x``.

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        ``alpha``: ``α``, ``0 <= alpha <= 1`` (default 0.01).
    """

    function = "leaky_relu"


class Sigmoid(_Named):
    """``y = 1 / (1 + e^{-x})``.

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        None for this function.
    """

    function = "sigmoid"


class Tanh(_Named):
    """``y = tanh(x)``.

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        None for this function.
    """

    function = "tanh"


class GELU(_Named):
    """``y = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))``.

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        None for this function.
    """

    function = "gelu"


class SiLU(_Named):
    """``y = x·σ(x)``.

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        None for this function.
    """

    function = "silu"


class ELU(_Named):
    """``y = x if x > 0 else α(e^x - 1)``.

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        ``alpha``: ``α > 0`` (default 1).
    """

    function = "elu"


class Softplus(_Named):
    """``y = log(1 + e^x)``.

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        None for this function.
    """

    function = "softplus"


class Softsign(_Named):
    """``y = x / (1 + |x|)``.

    Parameters
    ----------
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).
    **settings
        None for this function.
    """

    function = "softsign"
