"""Layers, each written once against the Array API: ``Dense`` (the article's
MiddleLayer), ``BatchNorm``, ``LayerNorm``, ``Dropout`` and activation layers, all
following the small protocol in ``base.Layer``.

``LAYERS`` maps each built-in layer's type name to its class: checkpoints name layers
by these and rebuild only these (a file never names code to run); ``register`` adds
your own layer class.
"""

from __future__ import annotations

from .activation import (
    ELU,
    GELU,
    Activation,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Softsign,
    Tanh,
)
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNorm, LayerNorm

LAYERS: dict[str, type[Layer]] = {cls.__name__: cls for cls in (
    Dense, BatchNorm, LayerNorm, Dropout, Activation, ReLU, LeakyReLU, Sigmoid, Tanh, GELU,
    SiLU, ELU, Softplus, Softsign)}


def register(cls: type[Layer]) -> type[Layer]:
    """Let checkpoints rebuild layers of your class ``cls`` by its name (use as a class
    decorator). ``cls(**layer.config())`` must build the layer again."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register needs a subclass of anyfc.Layer, got {cls!r}")
    known = LAYERS.get(cls.__name__)
    if known is not None and known is not cls and (
            known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"a layer type named {cls.__name__!r} is registered already "
                         f"({known.__module__}.{known.__qualname__})")
    # the same class defined again (a module or notebook cell run twice) replaces itself
    LAYERS[cls.__name__] = cls
    return cls


__all__ = ["LAYERS", "ELU", "GELU", "Activation", "BatchNorm", "Dense", "Dropout", "Layer",
           "LayerNorm", "LeakyReLU", "ReLU", "SiLU", "Sigmoid", "Softplus", "Softsign", "Tanh",
           "register"]
