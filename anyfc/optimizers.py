"""Gradient-descent optimizers, written once against the Array API.

An optimizer updates every parameter ``p`` of every layer from its gradient ``g``
(``layer.grad_w`` for ``layer.w``, ...). It never holds the parameters themselves —
only per-parameter state such as a velocity — and writes the new value back to the
layer, so it works with immutable arrays (JAX), where an update makes a new array, and
updates in place where the library allows it (NumPy, CuPy, torch).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from . import _backend
from ._validation import real as _check

Array = Any
State = dict[str, Array]


def _slot(xp: ModuleType, state: State, key: str, p: Array) -> Array:
    """``state[key]``, created as zeros like ``p`` on first use."""
    value = state.get(key)
    return xp.zeros_like(p) if value is None else value


class Optimizer:
    """Base class. Subclasses implement ``update(xp, p, g, state) -> new p`` and name the
    per-parameter state arrays they keep in ``slots`` (each shaped like its parameter)."""

    slots: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        self.lr = _check("lr", lr, low_open=True)
        self.weight_decay = _check("weight_decay", weight_decay)
        self.t = 0  # number of steps taken
        self.state: dict[str, State] = {}  # "layer_index.param_name" -> state

    def step(self, layers: Sequence[Any]) -> None:
        """Update every parameter of ``layers`` from its gradient (after ``backward``)."""
        self.t += 1
        for i, layer in enumerate(layers):
            for name in layer.param_names:
                p, g = getattr(layer, name), getattr(layer, "grad_" + name)
                if g is None:
                    raise RuntimeError(f"layer {i} has no grad_{name}: call backward first")
                state = self.state.setdefault(f"{i}.{name}", {})
                setattr(layer, name, self.update(_backend.namespace_of(p), p, g, state))
        self._materialize(layers)

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        raise NotImplementedError

    def _materialize(self, layers: Sequence[Any]) -> None:
        """For lazy arrays (Dask): compute parameters and state now, in one go, so the
        graph does not grow from step to step. Eager arrays are left alone."""
        first = next((getattr(layer, name) for layer in layers for name in layer.param_names),
                     None)
        if first is None or not _backend.is_lazy(first):
            return
        slots: list[tuple[Any, str, bool]] = [
            (layer, name, False) for layer in layers for name in layer.param_names]
        slots += [(state, key, True) for state in self.state.values() for key in state]
        values = _backend.materialize(
            [c[k] if is_state else getattr(c, k) for c, k, is_state in slots])
        for (container, key, is_state), value in zip(slots, values):
            if is_state:
                container[key] = value
            else:
                setattr(container, key, value)

    def to(self, backend: Any, device: Any = None, dtype: Any = None) -> Optimizer:
        """Move every state array (velocities, moments) like ``Sequential.to`` (all or
        nothing: every array is converted before the state is replaced)."""
        self.state = self.moved_state(backend, device, dtype)
        return self

    def moved_state(self, backend: Any, device: Any = None, dtype: Any = None
                    ) -> dict[str, State]:
        """The state converted as ``to`` would, without changing the optimizer."""
        return {slot: {key: _backend.to_backend(value, backend, device, dtype)
                       for key, value in state.items()}
                for slot, state in self.state.items()}

    def state_dict(self) -> dict[str, Any]:
        """``{"t": steps, "state.<layer>.<param>.<slot>": array, ...}``."""
        out: dict[str, Any] = {"t": self.t}
        for slot, state in self.state.items():
            for key, value in state.items():
                out[f"state.{slot}.{key}"] = value
        return out

    def load_state_dict(self, state_dict: dict[str, Any], backend: Any = None,
                        device: Any = None, dtype: Any = None) -> None:
        """Restore ``state_dict()``'s output, moving arrays to ``backend``/``device``.
        All or nothing: the step count, every entry's name (a slot this optimizer keeps)
        and every array (real numbers) are checked, and copied, before the state changes.
        Shapes are checked against a model's parameters when ``fit`` adopts the state."""
        t = state_dict.get("t", 0)
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= int(t) <= 2**53:
            raise ValueError(f"optimizer state has an invalid step count t={t!r}")
        new_state: dict[str, State] = {}
        for name, value in state_dict.items():
            if name == "t":
                continue
            parts = str(name).split(".")
            if len(parts) != 4 or parts[0] != "state" or parts[3] not in self.slots:
                raise ValueError(f"unexpected optimizer state entry {name!r}; "
                                 f"{type(self).__name__} keeps state.<layer>.<parameter>."
                                 f"<slot> with slot in {self.slots}")
            if not _backend.is_array(value):
                raise TypeError(f"optimizer state entry {name!r} is a {type(value).__name__}, "
                                "not an array")
            _backend.check_numeric(value, f"optimizer state entry {name!r}")
            # a copy: the state is updated in place, never into the caller's arrays
            new_state.setdefault(f"{parts[1]}.{parts[2]}", {})[parts[3]] = (
                _backend.to_backend(value, backend, device, dtype, copy=True))
        self.t, self.state = int(t), new_state

    def config(self) -> dict[str, Any]:
        """The hyper-parameters, enough to build the same optimizer again."""
        return {k: v for k, v in vars(self).items() if k not in ("t", "state")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and L2 weight decay:

        g ← g + λ·p                       (weight_decay λ)
        v ← μ·v + g                       (momentum μ)
        p ← p - η·v                       (or p - η·(g + μ·v) with nesterov)

    With ``momentum=0`` this is the article's ``p -= η·g``.
    """

    slots = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = state["v"] = _backend.scale_add_(
                _slot(xp, state, "v", p), self.momentum, g)
            g = g + self.momentum * v if self.nesterov else v
        return _backend.subtract_scaled_(p, self.lr, g)


class AdaGrad(Optimizer):
    """AdaGrad: per-coordinate steps shrink with the sum of squared gradients:

        h ← h + g²;   p ← p - η·g / (√h + ε)
    """

    slots = ("h",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.eps = _check("eps", eps, low_open=True)

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            g = g + self.weight_decay * p
        h = state["h"] = _backend.scale_add_(_slot(xp, state, "h", p), 1.0, g * g)
        return _backend.subtract_(p, self.lr * g / (xp.sqrt(h) + self.eps))


class RMSProp(Optimizer):
    """RMSProp: like AdaGrad with an exponential moving average of g²:

        h ← ρ·h + (1-ρ)·g²;   p ← p - η·g / (√h + ε)
    """

    slots = ("h",)

    def __init__(self, lr: float = 0.001, rho: float = 0.9, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.rho = _check("rho", rho, 0.0, 1.0)
        self.eps = _check("eps", eps, low_open=True)

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            g = g + self.weight_decay * p
        h = state["h"] = _backend.scale_add_(
            _slot(xp, state, "h", p), self.rho, g * g, 1.0 - self.rho)
        return _backend.subtract_(p, self.lr * g / (xp.sqrt(h) + self.eps))


class Adam(Optimizer):
    """Adam, with bias-corrected moment estimates (step t = 1, 2, ...):

        m ← β₁·m + (1-β₁)·g;   v ← β₂·v + (1-β₂)·g²
        p ← p - η · (m / (1-β₁ᵗ)) / (√(v / (1-β₂ᵗ)) + ε)

    ``weight_decay`` adds ``λ·p`` to the gradient (L2); see ``AdamW`` for the
    decoupled form.
    """

    slots = ("m", "v")

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.beta1 = _check("beta1", beta1, 0.0, 1.0)
        self.beta2 = _check("beta2", beta2, 0.0, 1.0)
        self.eps = _check("eps", eps, low_open=True)

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            g = g + self.weight_decay * p
        return self._adam_step(xp, p, g, state)

    def _adam_step(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        b1, b2 = self.beta1, self.beta2
        m = state["m"] = _backend.scale_add_(_slot(xp, state, "m", p), b1, g, 1.0 - b1)
        v = state["v"] = _backend.scale_add_(
            _slot(xp, state, "v", p), b2, g * g, 1.0 - b2)
        step_size = self.lr / (1.0 - b1**self.t)
        denom = xp.sqrt(v) / (1.0 - b2**self.t) ** 0.5 + self.eps  # t may be traced (JAX)
        return _backend.subtract_(p, step_size * m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter):

        p ← p - η·λ·p, then the Adam step on the undecayed gradient.
    """

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        super().__init__(lr, beta1, beta2, eps, weight_decay)

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            p = _backend.subtract_scaled_(p, self.lr * self.weight_decay, p)
        return self._adam_step(xp, p, g, state)


OPTIMIZERS: dict[str, type[SGD] | type[AdaGrad] | type[RMSProp] | type[Adam]] = {
    "sgd": SGD, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW,
}


def get(optimizer: str | Optimizer | None) -> Optimizer:
    """An optimizer from a name (with default hyper-parameters) or itself; ``None``
    gives ``Adam()``.

    >>> get("sgd")
    SGD(lr=0.01, weight_decay=0.0, momentum=0.0, nesterov=False)
    """
    if optimizer is None:
        return Adam()
    if isinstance(optimizer, Optimizer):
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {optimizer!r}; valid optimizers are {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[optimizer.lower()]()
