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
from typing import Any, cast

from . import _backend, registry, schedules
from ._validation import real as _check
from .schedules import Schedule
from .state import path, split_path

Array = Any
State = dict[str, Array]
Rate = float | Schedule | dict[str, Any]  # a learning rate: a number or a schedule


def slot(xp: ModuleType, state: State, key: str, p: Array) -> Array:
    """Return ``state[key]``, created as zeros like ``p`` on first use.

    Parameters
    ----------
    xp : module
        The Array API namespace of ``p``.
    state : dict
        One parameter's state, ``{slot name: array}``.
    key : str
        The slot's name (``"v"``, ``"m"``, ...).
    p : array
        The parameter.

    Returns
    -------
    array
        The slot's array (not stored: the caller stores the updated one).
    """
    value = state.get(key)
    return xp.zeros_like(p) if value is None else value


def _flag(name: str, value: Any) -> bool:
    """``value`` if it is a bool, else a ValueError naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _optional_positive(name: str, value: Any) -> float | None:
    """``None``, or a positive finite number (else a ValueError naming ``name``)."""
    return None if value is None else _check(name, value, low_open=True)


def _like(x: Array, p: Array) -> Array:
    """A 0-d array ``x`` in ``p``'s dtype and on its device (``x`` itself when it already
    is): mixing dtypes would promote a float32 parameter, mixing devices fail."""
    device = _backend.device_of(p)
    if x.dtype == p.dtype and _backend.device_of(x) == device:
        return x
    return _backend.namespace_of(p).asarray(x, dtype=p.dtype, device=device)


def _subtract_scaled(p: Array, a: Any, g: Array) -> Array:
    """``p - a·g`` for a rate ``a`` that is a number (the fused, in-place update of
    ``_backend.subtract_scaled_``) or a 0-d array (``_backend.subtract_``)."""
    if isinstance(a, numbers.Real):  # a Python (or NumPy) number, never a device array
        return _backend.subtract_scaled_(p, cast(float, a), g)
    return _backend.subtract_(p, a * g)


class Optimizer:
    """Base class of the optimizers.

    Subclasses implement ``update(xp, p, g, state) -> new p`` and name the
    per-parameter state arrays they keep in ``slots`` (each shaped like its parameter).
    The learning rate ``lr`` is a number or a ``schedules.Schedule`` (or its config
    dict); ``learning_rate()`` is the rate of the next step, and ``update`` uses the
    rate of the step in progress, ``lr_t``.

    Gradient clipping (Keras's ``clipvalue``/``clipnorm``) acts on the gradients
    ``∂E/∂p`` of all parameters together, before weight decay and the update::

        g ← clip(g, -c_v, c_v)                       (clipvalue c_v, each coordinate)
        ‖g‖ = √(Σ_all parameters Σ g²);  g ← g · c_n / max(‖g‖, c_n)    (clipnorm c_n)

    value clipping first, then the norm, when both are set. The norm is a 0-d array
    computed where the gradients are: clipping reads nothing back to the host.

    Parameters
    ----------
    lr : float, anyfc.schedules.Schedule or dict
        The learning rate ``η > 0``, or a schedule (or its config dict).
    weight_decay : float, default 0
        ``λ ≥ 0``: L2 weight decay, ``g ← g + λ·p`` (decoupled in ``AdamW``).
    clipnorm : float, optional
        ``c_n > 0``: clip the gradients' global norm.
    clipvalue : float, optional
        ``c_v > 0``: clip each gradient coordinate to ``[-c_v, c_v]``.

    Attributes
    ----------
    t : int
        The number of steps taken.
    epoch : int
        The number of epochs completed.
    state : dict
        Each parameter's state by path (``"layers.0.w"``): ``{slot: array}``.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, lr: Rate, weight_decay: float = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None) -> None:
        if not isinstance(lr, (Schedule, dict)):
            _check("lr", lr, low_open=True)  # 0 only by assignment (to freeze training)
        self.lr = lr
        self.weight_decay = _check("weight_decay", weight_decay)
        self.clipnorm = _optional_positive("clipnorm", clipnorm)
        self.clipvalue = _optional_positive("clipvalue", clipvalue)
        self.t = 0  # number of steps taken
        self.epoch = 0  # number of epochs completed (end_epoch)
        self.state: dict[str, State] = {}  # parameter path ("layers.0.w") -> its state
        self.lr_t: Any = self.learning_rate()  # the rate of the step in progress

    @property
    def lr(self) -> float | Schedule:
        """The learning rate: a positive number, or a schedule (``schedules.get``
        builds one from a config dict). Checked on assignment, where 0 is accepted too
        (``opt.lr = 0.0`` freezes training; the constructor takes positive rates)."""
        return self._lr

    @lr.setter
    def lr(self, value: Rate) -> None:
        if isinstance(value, (Schedule, dict)):
            self._lr: float | Schedule = schedules.get(value)
        else:
            self._lr = _check("lr", value)

    def learning_rate(self) -> float:
        """Return the rate of the next step.

        Returns
        -------
        float
            ``lr``, or ``lr(t)`` for a per-step schedule (``t`` steps taken) and
            ``lr(epoch)`` for a per-epoch one.
        """
        lr = self._lr
        if not isinstance(lr, Schedule):
            return lr
        return lr(self.epoch if lr.per == "epoch" else self.t)

    def end_epoch(self) -> None:
        """Count one more completed epoch (the training loop calls this)."""
        self.epoch += 1

    def step(self, layers: Sequence[Any], lr: Any = None) -> None:
        """Update every parameter of ``layers`` from its gradient (after ``backward``).

        The gradients are clipped first (``clipvalue``, ``clipnorm``), then each
        parameter ``p`` becomes ``update(xp, p, g, state)``.

        Parameters
        ----------
        layers : sequence of anyfc.Layer
            The model's layers, whose ``grad_<name>`` are set.
        lr : float or 0-d array, optional
            Overrides ``learning_rate()`` for this step: a number, or a 0-d array (a
            traced scalar inside a compiled step) that is used as it is, never read.

        Raises
        ------
        RuntimeError
            A layer without its gradients (``backward`` was not called).
        """
        found = []
        for i, layer in enumerate(layers):
            for name in layer.param_names:
                g = getattr(layer, "grad_" + name)
                if g is None:
                    raise RuntimeError(f"layer {i} has no grad_{name}: call backward first")
                found.append((layer, name, path(i, name), g))
        if lr is None:
            lr_t = self.learning_rate()
        elif _backend.is_array(lr):
            lr_t = lr
        else:
            lr_t = _check("lr", lr)
        self.t += 1
        self.lr_t = lr_t
        grads = self._clip([g for *_, g in found])
        if (found and isinstance(lr_t, numbers.Real)
                and self.fused_step([key for _, _, key, _ in found],
                                    [getattr(layer, name) for layer, name, _, _ in found],
                                    grads)):
            return
        for (layer, name, key, _), g in zip(found, grads):
            p = getattr(layer, name)
            if not isinstance(lr_t, numbers.Real):  # an array: in p's dtype, on its device
                self.lr_t = _like(lr_t, p)
            state = self.state.setdefault(key, {})
            setattr(layer, name, self.update(_backend.namespace_of(p), p, g, state))

    def initial_state(self, p: Array) -> State | None:
        """Return the state the first step creates for parameter ``p``.

        A compiled step starts from it, so the first step and the next have one input
        structure and compile once.

        Parameters
        ----------
        p : array
            The parameter.

        Returns
        -------
        dict or None
            Zeros of the slots the update uses, or ``None`` where the class cannot tell
            (the default; anyfc's optimizers tell unless a subclass rewrites their
            update).
        """
        return None

    def initial_states(self, params: dict[str, Array]) -> dict[str, State] | None:
        """Return ``initial_state`` of every parameter by path.

        Parameters
        ----------
        params : dict
            The parameters by path (``"layers.0.w"``).

        Returns
        -------
        dict or None
            The states by path, or ``None`` if any parameter's is.
        """
        out = {}
        for key, p in params.items():
            state = self.initial_state(p)
            if state is None:
                return None
            out[key] = state
        return out

    def fused_step(self, keys: list[str], params: list[Array], grads: list[Array]) -> bool:
        """Update every parameter at once, in place, with multi-tensor kernels.

        The library's multi-tensor kernels (``_backend.fused``: torch's ``_foreach_*``),
        where the optimizer has such a form and the arrays allow it. The rate of the
        step is ``lr_t``, a number here. (Subclasses that override ``update`` never take
        the fused form of the class they derive from.)

        Parameters
        ----------
        keys : list of str
            The parameters' paths (``"layers.0.w"``).
        params : list of array
            The parameters, updated in place.
        grads : list of array
            Their gradients.

        Returns
        -------
        bool
            ``True`` once done; ``False`` (nothing changed) sends ``step`` to ``update``,
            parameter by parameter, which is the reference.
        """
        return False

    def _clip(self, grads: list[Array]) -> list[Array]:
        """The gradients clipped by value, then by their global norm (new arrays: the
        layers' gradient buffers are left as they are)."""
        if self.clipvalue is not None:
            c = self.clipvalue
            grads = [_backend.namespace_of(g).clip(g, -c, c) for g in grads]
        if self.clipnorm is not None and grads:
            xp = _backend.namespace_of(grads[0])
            total = xp.sum(grads[0] * grads[0])
            for g in grads[1:]:
                total = total + xp.sum(g * g)
            norm = xp.sqrt(total)  # ‖g‖, a 0-d array where the gradients are
            c = xp.asarray(self.clipnorm, dtype=norm.dtype, device=_backend.device_of(norm))
            scale = c / xp.maximum(norm, c)
            grads = [g * _like(scale, g) for g in grads]
        return grads

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        """Compute one parameter's new value from its (clipped) gradient.

        The rule of the optimizer (the class docstring gives its equations), at the rate
        of the step in progress, ``self.lr_t``; ``self.t`` is the step's number (from 1).
        Written against ``xp`` only: in place where the library allows it
        (``anyfc._backend``'s kernels), a new array where it does not (JAX).

        Parameters
        ----------
        xp : module
            The Array API namespace of ``p``.
        p : array
            The parameter.
        g : array
            Its gradient ``∂E/∂p``, clipped, of ``p``'s shape.
        state : dict
            The parameter's state, ``{slot: array}`` for the names in ``slots``
            (empty on the first step: ``slot`` creates them); updated by the method.

        Returns
        -------
        array
            The new value of ``p`` (``p`` itself when updated in place).
        """
        raise NotImplementedError

    def to(self, backend: Any, device: Any = None, dtype: Any = None) -> Optimizer:
        """Move every state array (velocities, moments), like ``Sequential.to``.

        All or nothing: every array is converted before the state is replaced.

        Parameters
        ----------
        backend : str or module
            The backend.
        device : str, device object or None
            The device (``None``: the backend's default device).
        dtype : str, dtype or None
            The floating dtype (``None``: the arrays' own).

        Returns
        -------
        Optimizer
            ``self``.
        """
        self.state = self.moved_state(backend, device, dtype)
        return self

    def moved_state(self, backend: Any, device: Any = None, dtype: Any = None
                    ) -> dict[str, State]:
        """Return the state converted as ``to`` would, without changing the optimizer.

        Arrays already in place as they are, the others as copies (never sharing memory
        with the source, which may be immutable, read-only or still held elsewhere).

        Parameters
        ----------
        backend : str or module
            The backend.
        device : str, device object or None
            The device (``None``: the backend's default device).
        dtype : str, dtype or None
            The floating dtype (``None``: the arrays' own).

        Returns
        -------
        dict
            ``{path: {slot: array}}``.
        """
        def moved(value: Array) -> Array:
            same = _backend.to_backend(value, backend, device, dtype)
            return same if same is value else _backend.to_backend(
                value, backend, device, dtype, copy=True)

        return {key: {name: moved(value) for name, value in state.items()}
                for key, state in self.state.items()}

    def state_dict(self) -> dict[str, Any]:
        """Return the counters and the state arrays by name, as checkpoints store them.

        Returns
        -------
        dict
            ``{"t": steps, "epoch": epochs, "state.<layer>.<param>.<slot>": array, ...}``
            (``<layer>`` the layer's position: the checkpoint's names for ``state``'s
            ``"layers.<layer>.<param>"`` paths).
        """
        out: dict[str, Any] = {"t": self.t, "epoch": self.epoch}
        for key, state in self.state.items():
            position, name = split_path(key)
            for slot_name, value in state.items():
                out[f"state.{position}.{name}.{slot_name}"] = value
        return out

    def load_state_dict(self, state_dict: dict[str, Any], backend: Any = None,
                        device: Any = None, dtype: Any = None) -> None:
        """Restore ``state_dict()``'s output.

        All or nothing: the step and epoch counts (each optional, 0 when absent), every
        entry's name (a slot this optimizer keeps) and every array (real numbers) are
        checked, and copied, before the state changes. Shapes are checked against a
        model's parameters when ``fit`` adopts the state.

        Parameters
        ----------
        state_dict : dict
            What ``state_dict()`` returned.
        backend : str, module or None
            The backend to copy the arrays to (``None``: the default backend).
        device : str, device object or None
            The device (``None``: the backend's default device).
        dtype : str, dtype or None
            The floating dtype (``None``: the arrays' own).

        Raises
        ------
        ValueError
            A bad count or an entry this optimizer does not keep.
        TypeError
            An entry that is no (real) array.
        """
        t, epoch = state_dict.get("t", 0), state_dict.get("epoch", 0)
        for kind, name, count in (("step", "t", t), ("epoch", "epoch", epoch)):
            if (isinstance(count, bool) or not isinstance(count, numbers.Integral)
                    or not 0 <= int(count) <= 2**53):
                raise ValueError(f"optimizer state has an invalid {kind} count {name}="
                                 f"{count!r}; expected an integer in [0, 2**53]")
        new_state: dict[str, State] = {}
        for name, value in state_dict.items():
            if name in ("t", "epoch"):
                continue
            parts = str(name).split(".")
            if (len(parts) != 4 or parts[0] != "state" or parts[3] not in self.slots
                    or not parts[1].isdigit()):
                raise ValueError(f"unexpected optimizer state entry {name!r}; "
                                 f"{type(self).__name__} keeps state.<layer>.<parameter>."
                                 f"<slot> with slot in {self.slots}")
            if not _backend.is_array(value):
                raise TypeError(f"optimizer state entry {name!r} is a {type(value).__name__}, "
                                "not an array")
            _backend.check_numeric(value, f"optimizer state entry {name!r}")
            # a copy: the state is updated in place, never into the caller's arrays
            new_state.setdefault(path(int(parts[1]), parts[2]), {})[parts[3]] = (
                _backend.to_backend(value, backend, device, dtype, copy=True))
        self.t, self.epoch, self.state = int(t), int(epoch), new_state

    def snapshot(self) -> dict[str, Any]:
        """Copy the state (on the device), with the step and epoch counts and the rate.

        Returns
        -------
        dict
            What ``restore`` takes (to undo an epoch).
        """
        return {"state": {key: {k: _backend.namespace_of(v).asarray(v, copy=True)
                                for k, v in values.items()}
                          for key, values in self.state.items()},
                "counters": (self.t, self.epoch, self.lr)}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to ``snapshot()``'s state and counters.

        Parameters
        ----------
        snapshot : dict
            What ``snapshot()`` returned.
        """
        self.state = snapshot["state"]
        self.t, self.epoch, self.lr = snapshot["counters"]

    def __copy__(self) -> Any:
        """A shallow copy sharing the arrays (``copy.deepcopy`` and pickle copy them)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin

    def __getstate__(self) -> dict[str, Any]:
        """Plain data: the state arrays as host (NumPy) copies; the model that adopts
        the optimizer moves them to where it lives."""
        out = dict(self.__dict__)
        out["state"] = {key: {k: _backend.to_numpy(v) for k, v in values.items()}
                        for key, values in self.state.items()}
        if _backend.is_array(out.get("lr_t")):
            out["lr_t"] = self.learning_rate()
        return out

    _counters = ("t", "epoch", "state", "lr_t")  # what training changes: not settings

    def config(self) -> dict[str, Any]:
        """Return the hyper-parameters as plain JSON data.

        ``type(self)(**config)`` builds the same optimizer again.

        Returns
        -------
        dict
            ``{"lr": ..., setting: value, ...}``; a schedule as ``schedules.to_config``
            gives it (anyfc's as its ``config()``, a registered one as its spec).
        """
        lr = self._lr
        out: dict[str, Any] = {"lr": schedules.to_config(lr) if isinstance(lr, Schedule)
                               else lr}
        out.update((k, v) for k, v in vars(self).items()
                   if k != "_lr" and k not in self._counters
                   and not (k in self._off_by_default and v is False))
        return out

    # options written only when on, so a config stays what subclasses written before
    # them accept
    _off_by_default = ("eps_hat", "lr_in_velocity")

    def check_settings(self) -> None:
        """Check that the hyper-parameters are still ones the class accepts.

        One may have been reassigned since construction (say ``opt.beta1 = 2.0``): the
        class checks its own ``config()`` by building a throw-away copy (no arrays).

        Raises
        ------
        ValueError
            A bad setting, naming it.
        """
        config = self.config()
        if not isinstance(self._lr, Schedule):
            config["lr"] = _check("lr", self._lr) or 1.0  # 0 is accepted by assignment
        try:
            type(self)(**config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the optimizer {type(self).__name__} has a bad setting: "
                             f"{exc}") from None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={self._lr if k == 'lr' else v!r}"
                         for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and L2 weight decay.

    ::

        g ← g + λ·p                       (weight_decay λ)
        v ← μ·v + g                       (momentum μ)
        p ← p - η·v                       (or p - η·(g + μ·v) with nesterov)

    With ``momentum=0`` this is the article's ``p -= η·g``. With ``lr_in_velocity=True``
    the rate of each step goes into the velocity instead (Keras's and scikit-learn's
    form; the same steps while the rate is constant, other steps when it changes)::

        v ← μ·v + η·g;   p ← p - v        (or p - (μ·v + η·g) with nesterov)

    Parameters
    ----------
    lr : float, anyfc.schedules.Schedule or dict, default 0.01
        The learning rate ``η``, or a schedule.
    momentum : float, default 0
        ``μ`` in [0, 1].
    nesterov : bool, default False
        Nesterov's momentum (needs ``momentum > 0``).
    weight_decay : float, default 0
        ``λ ≥ 0``.
    clipnorm, clipvalue : float, optional
        Gradient clipping (see ``Optimizer``).
    lr_in_velocity : bool, default False
        Put the rate into the velocity (above).
    """

    slots = ("v",)

    def __init__(self, lr: Rate = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, *, clipnorm: float | None = None,
                 clipvalue: float | None = None, lr_in_velocity: bool = False) -> None:
        super().__init__(lr, weight_decay, clipnorm, clipvalue)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.lr_in_velocity = _flag("lr_in_velocity", lr_in_velocity)

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum and getattr(self, "lr_in_velocity", False):
            step = self.lr_t * g  # η·g, then v ← μ·v + η·g
            v = state["v"] = _backend.scale_add_(slot(xp, state, "v", p), self.momentum, step)
            return _backend.subtract_(p, step + self.momentum * v if self.nesterov else v)
        if self.momentum:
            v = state["v"] = _backend.scale_add_(
                slot(xp, state, "v", p), self.momentum, g)
            g = g + self.momentum * v if self.nesterov else v
        return _subtract_scaled(p, self.lr_t, g)

    def initial_state(self, p: Array) -> State | None:
        if type(self).update is not SGD.update:
            return None
        return {"v": _backend.namespace_of(p).zeros_like(p)} if self.momentum else {}

    def fused_step(self, keys: list[str], params: list[Array], grads: list[Array]) -> bool:
        if type(self).update is not SGD.update:
            return False
        momentum = self.momentum
        states = [self.state.get(key, {}) for key in keys]
        vs = ([s["v"] if "v" in s else _backend.namespace_of(p).zeros_like(p)
               for s, p in zip(states, params)] if momentum else None)
        if not _backend.sgd_(params, grads, vs, lr=self.lr_t, momentum=momentum,
                             nesterov=self.nesterov, weight_decay=self.weight_decay,
                             lr_in_velocity=getattr(self, "lr_in_velocity", False)):
            return False
        for i, key in enumerate(keys):
            state = self.state.setdefault(key, {})
            if vs is not None:
                state["v"] = vs[i]
        return True


class AdaGrad(Optimizer):
    """AdaGrad: per-coordinate steps shrink with the sum of squared gradients.

    ::

        h ← h + g²;   p ← p - η·g / (√h + ε)

    Parameters
    ----------
    lr : float, anyfc.schedules.Schedule or dict, default 0.01
        The learning rate ``η``, or a schedule.
    eps : float, default 1e-8
        ``ε > 0``.
    weight_decay : float, default 0
        ``λ ≥ 0``: ``g ← g + λ·p``.
    clipnorm, clipvalue : float, optional
        Gradient clipping (see ``Optimizer``).
    """

    slots = ("h",)

    def __init__(self, lr: Rate = 0.01, eps: float = 1e-8, weight_decay: float = 0.0, *,
                 clipnorm: float | None = None, clipvalue: float | None = None) -> None:
        super().__init__(lr, weight_decay, clipnorm, clipvalue)
        self.eps = _check("eps", eps, low_open=True)

    def initial_state(self, p: Array) -> State | None:
        if type(self).update is not AdaGrad.update:
            return None
        return {"h": _backend.namespace_of(p).zeros_like(p)}

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            g = g + self.weight_decay * p
        h = state["h"] = _backend.scale_add_(slot(xp, state, "h", p), 1.0, g * g)
        return _backend.subtract_(p, self.lr_t * g / (xp.sqrt(h) + self.eps))


class RMSProp(Optimizer):
    """RMSProp: like AdaGrad with an exponential moving average of g².

    ::

        h ← ρ·h + (1-ρ)·g²;   p ← p - η·g / (√h + ε)

    Parameters
    ----------
    lr : float, anyfc.schedules.Schedule or dict, default 0.001
        The learning rate ``η``, or a schedule.
    rho : float, default 0.9
        ``ρ`` in [0, 1].
    eps : float, default 1e-8
        ``ε > 0``.
    weight_decay : float, default 0
        ``λ ≥ 0``: ``g ← g + λ·p``.
    clipnorm, clipvalue : float, optional
        Gradient clipping (see ``Optimizer``).
    """

    slots = ("h",)

    def __init__(self, lr: Rate = 0.001, rho: float = 0.9, eps: float = 1e-8,
                 weight_decay: float = 0.0, *, clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        super().__init__(lr, weight_decay, clipnorm, clipvalue)
        self.rho = _check("rho", rho, 0.0, 1.0)
        self.eps = _check("eps", eps, low_open=True)

    def initial_state(self, p: Array) -> State | None:
        if type(self).update is not RMSProp.update:
            return None
        return {"h": _backend.namespace_of(p).zeros_like(p)}

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            g = g + self.weight_decay * p
        h = state["h"] = _backend.scale_add_(
            slot(xp, state, "h", p), self.rho, g * g, 1.0 - self.rho)
        return _backend.subtract_(p, self.lr_t * g / (xp.sqrt(h) + self.eps))


class Adam(Optimizer):
    """Adam, with bias-corrected moment estimates (step t = 1, 2, ...).

    ::

        m ← β₁·m + (1-β₁)·g;   v ← β₂·v + (1-β₂)·g²
        p ← p - η · (m / (1-β₁ᵗ)) / (√(v / (1-β₂ᵗ)) + ε)

    ``weight_decay`` adds ``λ·p`` to the gradient (L2); see ``AdamW`` for the
    decoupled form. With ``eps_hat=True``, ``ε`` is Kingma & Ba's ε̂ (the formula before
    their section 2.1; TensorFlow 1's, Keras 2's and scikit-learn's Adam): it is added to
    ``√v`` before the bias correction::

        p ← p - η·√(1-β₂ᵗ)/(1-β₁ᵗ) · m / (√v + ε)

    (the two differ only where ``√v`` is comparable to ``ε``).

    Parameters
    ----------
    lr : float, anyfc.schedules.Schedule or dict, default 1e-3
        The learning rate ``η``, or a schedule.
    beta1, beta2 : float, default 0.9 and 0.999
        ``β₁``, ``β₂`` in [0, 1].
    eps : float, default 1e-8
        ``ε > 0``.
    weight_decay : float, default 0
        ``λ ≥ 0``.
    clipnorm, clipvalue : float, optional
        Gradient clipping (see ``Optimizer``).
    eps_hat : bool, default False
        Add ``ε`` before the bias correction (above).
    """

    slots = ("m", "v")

    def __init__(self, lr: Rate = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, *,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 eps_hat: bool = False) -> None:
        super().__init__(lr, weight_decay, clipnorm, clipvalue)
        self.beta1 = _check("beta1", beta1, 0.0, 1.0)
        self.beta2 = _check("beta2", beta2, 0.0, 1.0)
        self.eps = _check("eps", eps, low_open=True)
        self.eps_hat = _flag("eps_hat", eps_hat)

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            g = g + self.weight_decay * p
        return self._adam_step(xp, p, g, state)

    def initial_state(self, p: Array) -> State | None:
        if not self.plain_adam() or type(self).update not in (Adam.update, AdamW.update):
            return None
        xp = _backend.namespace_of(p)
        return {"m": xp.zeros_like(p), "v": xp.zeros_like(p)}

    def fused_step(self, keys: list[str], params: list[Array], grads: list[Array]) -> bool:
        kind = type(self)
        if not self.plain_adam() or kind.update not in (Adam.update, AdamW.update):
            return False
        states = [self.state.get(key, {}) for key in keys]
        ms = [s["m"] if "m" in s else _backend.namespace_of(p).zeros_like(p)
              for s, p in zip(states, params)]
        vs = [s["v"] if "v" in s else _backend.namespace_of(p).zeros_like(p)
              for s, p in zip(states, params)]
        if not _backend.adam_(params, grads, ms, vs, lr=self.lr_t, beta1=self.beta1,
                              beta2=self.beta2, eps=self.eps, t=self.t,
                              weight_decay=self.weight_decay,
                              decoupled=kind.update is AdamW.update,
                              eps_hat=getattr(self, "eps_hat", False)):
            return False
        for key, m, v in zip(keys, ms, vs):
            state = self.state.setdefault(key, {})
            state["m"], state["v"] = m, v
        return True

    @classmethod
    def plain_adam(cls) -> bool:
        """Whether the class steps with Adam's own ``_adam_step`` (a subclass may write
        its own, which the fused form would skip)."""
        return cls._adam_step is cls._reference_adam_step

    def _adam_step(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        b1, b2 = self.beta1, self.beta2
        m = state["m"] = _backend.scale_add_(slot(xp, state, "m", p), b1, g, 1.0 - b1)
        v = state["v"] = _backend.scale_add_(
            slot(xp, state, "v", p), b2, g * g, 1.0 - b2)
        if getattr(self, "eps_hat", False):  # ε̂: added before the bias correction
            step_size = self.lr_t * (1.0 - b2**self.t) ** 0.5 / (1.0 - b1**self.t)
            return _backend.subtract_(p, step_size * m / (xp.sqrt(v) + self.eps))
        step_size = self.lr_t / (1.0 - b1**self.t)
        denom = xp.sqrt(v) / (1.0 - b2**self.t) ** 0.5 + self.eps  # t may be traced (JAX)
        return _backend.subtract_(p, step_size * m / denom)

    _reference_adam_step = _adam_step


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter).

    ::

        p ← p - η·λ·p, then the Adam step on the undecayed gradient.

    Parameters
    ----------
    lr : float, anyfc.schedules.Schedule or dict, default 1e-3
        The learning rate ``η``, or a schedule.
    beta1, beta2 : float, default 0.9 and 0.999
        ``β₁``, ``β₂`` in [0, 1].
    eps : float, default 1e-8
        ``ε > 0``.
    weight_decay : float, default 0.01
        ``λ ≥ 0``, decoupled.
    clipnorm, clipvalue : float, optional
        Gradient clipping (see ``Optimizer``).
    eps_hat : bool, default False
        As in ``Adam``.
    """

    def __init__(self, lr: Rate = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01, *,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 eps_hat: bool = False) -> None:
        super().__init__(lr, beta1, beta2, eps, weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, eps_hat=eps_hat)

    def update(self, xp: ModuleType, p: Array, g: Array, state: State) -> Array:
        if self.weight_decay:
            p = _subtract_scaled(p, self.lr_t * self.weight_decay, p)
        return self._adam_step(xp, p, g, state)


#: anyfc's optimizer classes by short name: the names ``fit(optimizer=...)`` and ``get``
#: take.
OPTIMIZERS: dict[str, type[SGD] | type[AdaGrad] | type[RMSProp] | type[Adam]] = {
    "sgd": SGD, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW,
}


registry.declare("optimizer", Optimizer, "optimizers.Optimizer")
for _cls in OPTIMIZERS.values():
    registry.register(_cls)


def get(optimizer: str | Optimizer | dict[str, Any] | None) -> Optimizer:
    """Build an optimizer from any of the forms ``fit`` takes.

    Parameters
    ----------
    optimizer : str, dict, Optimizer or None
        A short name (``OPTIMIZERS``) or registered name (with default
        hyper-parameters), a spec (``{"type": "SGD", "config": {"lr": 0.1}}``,
        ``anyfc.registry``), or the optimizer itself; ``None`` gives ``Adam()``.

    Returns
    -------
    Optimizer
        The optimizer (``optimizer`` itself when it is one).

    Raises
    ------
    ValueError
        An unknown name, listing the valid ones, or bad settings.
    TypeError
        An optimizer class given instead of an instance (the message says so).

    Examples
    --------
    >>> get("sgd").config()["momentum"]
    0.0
    """
    if optimizer is None:
        return Adam()
    if isinstance(optimizer, Optimizer):
        return optimizer
    found: Optimizer = registry.lookup("optimizer", optimizer, OPTIMIZERS, "optimizer",
                                        "optimizers")
    return found
