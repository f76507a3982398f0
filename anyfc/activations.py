"""Element-wise activation functions ``y = f(u)`` and their derivatives.

Each activation has ``forward(xp, u) -> y`` and ``backward(xp, y, grad_y, u=None) ->
delta`` where ``delta = ∂E/∂u = grad_y ⊙ f'(u)`` (the article's δ). Most derivatives here
are written in terms of the output ``y``, so a layer keeps only ``y`` for its backward
pass; the few that cannot be (GELU, SiLU) say so with ``uses_u = True``, and the layer
then keeps ``u`` as well and passes it in.
Softmax is not here: it is fused into ``losses.SoftmaxCrossEntropy``, where its
gradient simplifies to ``softmax(u) - t``.

Each class is registered (``anyfc.registry``) under its class name, and ``ACTIVATIONS``
gives the short names (``"relu"``, ``"swish"``, ...) of anyfc's own. A subclass of yours
is rebuilt from a file only once registered (``@anyfc.register``): its inherited ``name``
("relu" for a subclass of ``ReLU``) names the built-in, never it.
"""

from __future__ import annotations

import math
import numbers
from types import ModuleType
from typing import Any

from . import _backend, registry

Array = Any


def _setting(owner: str, rule: str, value: Any, within: Any) -> float:
    """A finite real setting (Python or NumPy number, not a bool) that satisfies
    ``within``, as a float; else a ValueError (never OverflowError, even for 10**400)."""
    try:
        ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
              and math.isfinite(float(value)) and bool(within(float(value))))
    except (OverflowError, TypeError, ValueError):
        ok = False
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:20] + "..." + shown[-8:]
        raise ValueError(f"{owner} needs a finite number {rule}, got {shown}")
    return float(value)


class Activation:
    """Base class of the activations: the identity, ``f(u) = u``, ``f'(u) = 1``.

    A subclass sets ``name`` and writes ``forward`` and ``backward`` against the
    namespace ``xp`` it is given; its constructor arguments are its settings, kept as
    attributes of the same names (``config()`` reads them). ``uses_u = True`` says that
    ``backward`` needs the input ``u`` and not only the output ``y``.
    """

    name = "identity"
    uses_u = False  # whether backward needs the input u (else y alone is enough)

    def forward(self, xp: ModuleType, u: Array) -> Array:
        """Compute ``y = f(u)``, element by element.

        Parameters
        ----------
        xp : module
            The Array API namespace of ``u``.
        u : array
            The pre-activations, ``u = x·w + b`` in a ``Dense`` layer.

        Returns
        -------
        array
            ``f(u)``, of ``u``'s shape, library, device and dtype.
        """
        return u

    def infer(self, xp: ModuleType, u: Array) -> Array:
        """Compute ``forward`` for inference, possibly in place.

        Parameters
        ----------
        xp : module
            The array namespace.
        u : array
            A fresh array the caller owns: an activation may write into it (ReLU does on
            NumPy and torch).

        Returns
        -------
        array
            ``f(u)``; by default ``forward(xp, u)``.
        """
        return self.forward(xp, u)

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        """Compute ``δ = ∂E/∂u = ∂E/∂y ⊙ f'(u)`` (the article's δ).

        Parameters
        ----------
        xp : module
            The Array API namespace of the arrays.
        y : array
            The output ``forward`` gave, from which most derivatives are computed.
        grad_y : array
            ``∂E/∂y``, of ``y``'s shape.
        u : array, optional
            The input ``forward`` was given; passed by the layer only when ``uses_u``.

        Returns
        -------
        array
            ``∂E/∂u``, of ``y``'s shape.
        """
        return grad_y

    def config(self) -> dict[str, Any]:
        """Return its display name, then the settings that rebuild it.

        The settings are ``alpha`` where it has any, JSON-able: ``get`` takes the dict for
        anyfc's activations, and ``type(self)(**settings)`` rebuilds any
        (``anyfc.registry`` leaves ``name`` out of a spec, so it is no constructor
        argument).

        Returns
        -------
        dict
            ``{"name": ..., **settings}``.
        """
        return {"name": self.name, **vars(self)}

    def check_settings(self) -> None:
        """Check that its settings are still ones the class accepts.

        A setting may have been changed since construction (say ``alpha =
        float("inf")``): the class checks its own ``config()`` by building a throw-away
        copy from it (no arrays).

        Raises
        ------
        ValueError
            A setting the class refuses, naming it.
        """
        settings = self.config()
        settings.pop("name", None)
        try:
            type(self)(**settings)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"activation {self.name} has a bad setting: {exc}") from None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Identity(Activation):
    """``f(u) = u``: for regression outputs and logits fed to a fused loss."""


class ReLU(Activation):
    """``f(u) = max(u, 0)``;  ``f'(u) = 1 if u > 0 else 0``.

    The derivative is the mask ``y > 0`` cast to the data's float dtype and multiplied
    in: never an integer mask (that would promote float32 to float64 in NumPy), and not
    ``where``, which is several times slower on the unpredictable signs of real data.
    """

    name = "relu"

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return xp.maximum(u, 0.0)

    def infer(self, xp: ModuleType, u: Array) -> Array:
        done = _backend.relu_(u) if type(self) is ReLU else None  # in place (NumPy, torch)
        return self.forward(xp, u) if done is None else done

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        return grad_y * xp.astype(y > 0, grad_y.dtype)


class LeakyReLU(Activation):
    """``f(u) = u if u > 0 else α·u``;  ``f'(u) = 1 if u > 0 else α`` (α = 0.01).

    With 0 ≤ α ≤ 1, ``f(u) = max(u, α·u)``, and ``u > 0`` exactly when ``y > 0``, so
    the derivative ``α + (1 - α)·[y > 0]`` reads ``y``.

    Parameters
    ----------
    alpha : float, default 0.01
        The slope ``α`` for negative ``u``, ``0 <= alpha <= 1``.
    """

    name = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha: float = _setting("leaky_relu", "0 <= alpha <= 1", alpha,
                                     lambda a: 0 <= a <= 1)

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return xp.maximum(u, self.alpha * u)

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        slope = xp.astype(y > 0, grad_y.dtype) * (1.0 - self.alpha) + self.alpha
        return grad_y * slope



class Sigmoid(Activation):
    """``f(u) = 1 / (1 + e^{-u})``;  ``f'(u) = y (1 - y)``.

    Computed from ``e = exp(-|u|) ≤ 1`` so it never overflows: ``1/(1+e)`` for u ≥ 0
    and ``e/(1+e)`` for u < 0.
    """

    name = "sigmoid"

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return sigmoid(xp, u)

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        return grad_y * y * (1.0 - y)


class Tanh(Activation):
    """``f(u) = tanh(u)``;  ``f'(u) = 1 - y²``."""

    name = "tanh"

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return xp.tanh(u)

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        return grad_y * (1.0 - y * y)


class ELU(Activation):
    """``f(u) = u if u > 0 else α(e^u - 1)``;  ``f'(u) = 1 if u > 0 else y + α`` (α = 1).

    ``u > 0`` exactly when ``y > 0``, so the derivative reads ``y``.

    Parameters
    ----------
    alpha : float, default 1.0
        ``α > 0``, the value ``f`` tends to, negated, as ``u → -∞``.
    """

    name = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha: float = _setting("elu", "alpha > 0", alpha, lambda a: a > 0)

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return xp.where(u > 0, u, self.alpha * xp.expm1(xp.minimum(u, 0.0)))

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        return grad_y * xp.where(y > 0, xp.ones_like(y), y + self.alpha)


class Softplus(Activation):
    """``f(u) = log(1 + e^u) = max(u, 0) + log(1 + e^{-|u|})``.

    ``f'(u) = σ(u) = 1 - e^{-y}``, computed as ``-expm1(-y)`` (exact for tiny y).
    """

    name = "softplus"

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return xp.maximum(u, 0.0) + xp.log1p(xp.exp(-xp.abs(u)))

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        return grad_y * -xp.expm1(-y)


class Softsign(Activation):
    """``f(u) = u / (1 + |u|)``;  ``f'(u) = 1 / (1 + |u|)² = (1 - |y|)²``."""

    name = "softsign"

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return u / (1.0 + xp.abs(u))

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        s = 1.0 - xp.abs(y)
        return grad_y * s * s


class SiLU(Activation):
    """``f(u) = u·σ(u)`` (swish);  ``f'(u) = σ(u) + y·(1 - σ(u))``. Needs ``u``."""

    name = "silu"
    uses_u = True

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return u * sigmoid(xp, u)

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        s = sigmoid(xp, u)
        return grad_y * (s + y * (1.0 - s))


class GELU(Activation):
    """GELU in its tanh form (the standard has no ``erf``).

    With ``k = √(2/π)``::

        f(u)  = ½·u·(1 + t),   t = tanh(k·(u + 0.044715·u³))
        f'(u) = ½·(1 + t) + ½·u·(1 - t²)·k·(1 + 3·0.044715·u²)

    Needs ``u``.
    """

    name = "gelu"
    uses_u = True
    K = 0.7978845608028654  # √(2/π)
    C = 0.044715

    def forward(self, xp: ModuleType, u: Array) -> Array:
        return 0.5 * u * (1.0 + xp.tanh(self.K * (u + self.C * u * u * u)))

    def backward(self, xp: ModuleType, y: Array, grad_y: Array, u: Array = None) -> Array:
        t = xp.tanh(self.K * (u + self.C * u * u * u))
        slope = 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * self.K * (
            1.0 + 3.0 * self.C * u * u)
        return grad_y * slope


def sigmoid(xp: ModuleType, u: Array) -> Array:
    """Compute the logistic function ``1 / (1 + e^{-u})`` without overflow.

    Parameters
    ----------
    xp : module
        The Array API namespace of ``u``.
    u : array
        Any real values.

    Returns
    -------
    array
        ``σ(u)``: ``1/(1+e)`` for ``u ≥ 0`` and ``e/(1+e)`` for ``u < 0``, with
        ``e = exp(-|u|) ≤ 1``.
    """
    e = xp.exp(-xp.abs(u))
    return xp.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


#: anyfc's activation classes by short name (``"relu"``, ``"swish"``, ...): the names
#: ``get``, ``Dense(activation=...)`` and ``Activation(...)`` take.
ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Identity,
    "linear": Identity,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "gelu": GELU,
    "silu": SiLU,
    "swish": SiLU,
    "elu": ELU,
    "softplus": Softplus,
    "softsign": Softsign,
}


registry.declare("activation", Activation, "activations.Activation", named_config=True)
for _cls in (Activation, Identity, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, ELU, Softplus,
             Softsign):
    registry.register(_cls)


def to_config(activation: Activation) -> dict[str, Any] | Activation:
    """Give how a layer's ``config()`` holds ``activation``.

    The form is one ``get`` takes back and that names its exact class.

    Parameters
    ----------
    activation : Activation
        The activation object.

    Returns
    -------
    dict or Activation
        One of anyfc's as its ``config()`` (``{"name": "leaky_relu", "alpha": 0.2}``: its
        short name in ``ACTIVATIONS`` names exactly its class); another registered class
        as its spec (``{"type": ..., "config": ...}``); any other as the object itself,
        which ``anyfc.registry.spec`` refuses to write (its class is not registered, so
        no file could name it).
    """
    cls = type(activation)
    config = activation.config()
    if ACTIVATIONS.get(str(config.get("name", "")).lower()) is cls:
        return config
    if registry.name_of(cls) is not None:
        return registry.spec(activation)
    return activation


def get(activation: str | Activation | dict[str, Any] | None) -> Activation:
    """Build an activation object from any of the forms a layer takes.

    Parameters
    ----------
    activation : str, dict, Activation or None
        Its short name (``ACTIVATIONS``) or registered name, a ``config()`` of anyfc's
        (``{"name": "leaky_relu", "alpha": 0.2}``), a spec (``{"type": "LeakyReLU",
        "config": {"alpha": 0.2}}``, ``anyfc.registry``), or the object itself; ``None``
        means the identity.

    Returns
    -------
    Activation
        The activation (``activation`` itself when it is one).

    Raises
    ------
    ValueError
        An unknown name, listing the valid ones; ``"softmax"``, saying that it belongs to
        the loss; bad settings.

    Examples
    --------
    >>> get("relu")
    ReLU()
    >>> get({"name": "leaky_relu", "alpha": 0.2})
    LeakyReLU(alpha=0.2)
    """
    if activation is None:
        return Identity()
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, dict) and "type" in activation:  # a spec
        built: Activation = registry.build("activation", activation)
        return built
    if isinstance(activation, dict):  # a config(): {"name": ..., settings...}
        settings = dict(activation)
        cls = ACTIVATIONS.get(str(settings.pop("name", "")).lower())
        if cls is None:
            raise ValueError(f"unknown activation {activation!r}; valid activations are "
                             f"{', '.join(ACTIVATIONS)}")
        try:
            return cls(**settings)
        except TypeError as exc:
            raise ValueError(f"bad settings for activation {activation!r}: {exc}") from None
    if isinstance(activation, str) and activation.lower() == "softmax":
        raise ValueError(
            "'softmax' is not a layer activation in anyfc: it is part of the loss "
            "'softmax_cross_entropy', which takes the logits of an 'identity' last layer "
            "(Dense(n, classes, 'identity')); predict() applies the softmax for you")
    if isinstance(activation, str) and activation in registry.classes("activation") and (
            activation.lower() not in ACTIVATIONS):
        named: Activation = registry.build("activation", {"type": activation})
        return named
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; valid activations are "
            f"{', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[activation.lower()]()
