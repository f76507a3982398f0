"""Weight initialisers, drawn on the host so a seed means the same weights everywhere.

Each initialiser maps ``(rng, n_in, n_out)`` to a float64 NumPy array of shape
``(n_in, n_out)``; ``Dense`` casts and moves it to its backend, device and dtype once.

- He (Kaiming), for the ReLU family: ``Var[w] = 2 / n_in``.
- Xavier (Glorot), for sigmoid, tanh and identity: ``Var[w] = 2 / (n_in + n_out)``.

A normal draw uses the standard deviation ``σ = √Var``; a uniform draw uses
``U(-a, a)`` with ``a = √(3·Var)``, which has the same variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Generator = Any  # numpy.random.Generator, passed in by the caller
Initializer = Callable[[Generator, int, int], Any]


def he_normal(rng: Generator, n_in: int, n_out: int) -> Any:
    """Draw ``w ~ N(0, 2 / n_in)``: the article's ``randn(n_in, n) * sqrt(2 / n_in)``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The host generator to draw from.
    n_in, n_out : int
        The layer's sizes.

    Returns
    -------
    numpy.ndarray
        float64, of shape ``(n_in, n_out)``.

    Examples
    --------
    >>> import numpy as np
    >>> he_normal(np.random.default_rng(0), 3, 2).shape
    (3, 2)
    """
    return rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)


def he_uniform(rng: Generator, n_in: int, n_out: int) -> Any:
    """Draw ``w ~ U(-a, a)``, ``a = √(6 / n_in)``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The host generator to draw from.
    n_in, n_out : int
        The layer's sizes.

    Returns
    -------
    numpy.ndarray
        float64, of shape ``(n_in, n_out)``.
    """
    a = math.sqrt(6.0 / n_in)
    return rng.uniform(-a, a, size=(n_in, n_out))


def xavier_normal(rng: Generator, n_in: int, n_out: int) -> Any:
    """Draw ``w ~ N(0, 2 / (n_in + n_out))``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The host generator to draw from.
    n_in, n_out : int
        The layer's sizes.

    Returns
    -------
    numpy.ndarray
        float64, of shape ``(n_in, n_out)``.
    """
    return rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / (n_in + n_out))


def xavier_uniform(rng: Generator, n_in: int, n_out: int) -> Any:
    """Draw ``w ~ U(-a, a)``, ``a = √(6 / (n_in + n_out))``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The host generator to draw from.
    n_in, n_out : int
        The layer's sizes.

    Returns
    -------
    numpy.ndarray
        float64, of shape ``(n_in, n_out)``.
    """
    a = math.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-a, a, size=(n_in, n_out))


#: The initialisers by name: the names ``Dense(init=...)`` and ``get`` take.
INITIALIZERS: dict[str, Initializer] = {
    "he": he_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "xavier": xavier_normal,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "glorot": xavier_normal,
    "glorot_normal": xavier_normal,
    "glorot_uniform": xavier_uniform,
}

_RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "silu")


def default_for(activation: str) -> str:
    """Return the default initialiser's name for an activation.

    Parameters
    ----------
    activation : str
        The activation's ``name`` (``"relu"``, ``"tanh"``, ...).

    Returns
    -------
    str
        ``"he"`` for the ReLU family (ReLU, leaky ReLU, ELU, GELU, SiLU), ``"xavier"``
        for everything else.
    """
    return "he" if activation in _RELU_FAMILY else "xavier"


def get(init: str | Initializer) -> Initializer:
    """Return an initialiser from its name, or the callable itself.

    Parameters
    ----------
    init : str or callable
        A name in ``INITIALIZERS``, or a callable ``(rng, n_in, n_out) -> array``.

    Returns
    -------
    callable
        The initialiser.

    Raises
    ------
    ValueError
        An unknown name, listing the valid ones.

    Examples
    --------
    >>> get("he").__name__
    'he_normal'
    """
    if callable(init):
        return init
    if not isinstance(init, str) or init.lower() not in INITIALIZERS:
        raise ValueError(
            f"unknown initializer {init!r}; valid initializers are {', '.join(INITIALIZERS)}"
        )
    return INITIALIZERS[init.lower()]
