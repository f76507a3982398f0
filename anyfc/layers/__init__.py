"""Layers, each written once against the Array API: ``Dense`` (the article's
MiddleLayer), ``BatchNorm``, ``LayerNorm``, ``Dropout`` and activation layers, all
following the small protocol in ``base.Layer``.

``LAYERS`` maps the name of each registered layer class (anyfc's, by their class names,
and yours) to it: a read-only view of ``anyfc.registry``'s layers. Checkpoints name layers
by these and rebuild only these (a file never names code to run); ``anyfc.register``
(also ``register`` here) adds your own layer class.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import registry
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

for _cls in (Dense, BatchNorm, LayerNorm, Dropout, Activation, ReLU, LeakyReLU, Sigmoid, Tanh,
             GELU, SiLU, ELU, Softplus, Softsign):
    registry.register(_cls)

#: The registered layer classes by name (anyfc's by their class names, and yours): a
#: read-only view of ``anyfc.registry``'s layers, which checkpoints rebuild.
LAYERS: Mapping[str, type[Layer]] = registry.classes("layer")  # type: ignore[assignment]


def register(cls: type[Layer]) -> type[Layer]:
    """Let checkpoints rebuild layers of your class ``cls`` by its name.

    Use it as a class decorator: ``anyfc.register`` for layers only. ``cls``, the class
    decorated, is a subclass of ``anyfc.Layer``; ``cls(**layer.config())`` must build
    the layer again.

    Returns
    -------
    type
        ``cls``, registered under its class name.

    Raises
    ------
    TypeError
        ``cls`` is no subclass of ``anyfc.Layer``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register needs a subclass of anyfc.Layer, got {cls!r}")
    return registry.register(cls)


__all__ = ["LAYERS", "ELU", "GELU", "Activation", "BatchNorm", "Dense", "Dropout", "Layer",
           "LayerNorm", "LeakyReLU", "ReLU", "SiLU", "Sigmoid", "Softplus", "Softsign", "Tanh",
           "register"]
