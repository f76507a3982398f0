"""Learning-rate schedules: the rate η of an optimizer as a function of a count.

A schedule is a plain object: ``schedule(count)`` gives the rate, a Python float,
computed with Python arithmetic only (no arrays, nothing on a device). ``per`` says what
``count`` is:

- ``"step"``: the number of optimizer steps taken before this one (0 for the first);
- ``"epoch"``: the number of epochs completed (0 during the first).

An optimizer given a schedule as its ``lr`` asks it for the rate of every step
(``Optimizer.learning_rate``). ``config()`` is plain JSON data naming the schedule and
every constructor argument; ``get`` builds a schedule back from it, and only ever one of
the classes in ``SCHEDULES`` (configurations come from checkpoint files, which may not
be trusted), or from a spec (``anyfc.registry``) of a registered class: anyfc's are
registered under their class names, yours with ``@anyfc.register``.

>>> sched = CosineDecay(0.1, decay_steps=100, warmup_steps=10)
>>> sched(0), sched(10), sched(60), sched(110)
(0.0, 0.1, 0.05, 0.0)
>>> get(sched.config()) == sched
True
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

from . import registry
from ._validation import integer as _integer
from ._validation import real as _real

PERS = ("step", "epoch")
"""What a schedule's ``count`` counts: optimizer steps, or completed epochs."""


def _per(value: Any) -> str:
    if not isinstance(value, str) or value not in PERS:
        raise ValueError(f"per must be 'step' or 'epoch', got {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


class Schedule:
    """Base class of the schedules: ``schedule(count)`` is the rate.

    A schedule has ``__call__(count) -> float`` (the rate), ``per`` (``"step"`` or
    ``"epoch"``) and ``config()``. Subclasses set ``name`` (their key in ``SCHEDULES``),
    write ``rate(count)`` and keep each constructor argument as an attribute of the same
    name, listed in ``arguments`` (the order of ``config()`` and ``repr``).
    """

    name: ClassVar[str] = ""
    arguments: ClassVar[tuple[str, ...]] = ()
    per: str = "step"

    def __call__(self, count: int) -> float:
        """Return the rate when ``count`` steps (or epochs, by ``per``) are behind us.

        Parameters
        ----------
        count : int
            Steps taken before this one, or epochs completed (``per``); checked.

        Returns
        -------
        float
            ``rate(count)``.

        Raises
        ------
        ValueError
            ``count`` is no integer ≥ 0.
        """
        return self.rate(_integer(count, "count", low=0))

    def rate(self, count: int) -> float:
        """Compute the rate ``η(count)``: the formula each subclass writes.

        Parameters
        ----------
        count : int
            Steps taken before this one, or epochs completed (``per``), ≥ 0 (already
            checked by ``__call__``).

        Returns
        -------
        float
            The learning rate, a Python float (no arrays: Python arithmetic only).
        """
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Return the schedule as plain JSON data: ``get(config)`` builds an equal one.

        Returns
        -------
        dict
            ``{"name": ..., <every constructor argument>: value}``.
        """
        return {"name": self.name, **{key: getattr(self, key) for key in self.arguments}}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.config(), sort_keys=True))

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={getattr(self, key)!r}" for key in self.arguments)
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The same rate at every step: ``η(count) = lr``.

    Parameters
    ----------
    lr : float
        The rate, > 0.
    """

    name = "constant"
    arguments = ("lr",)

    def __init__(self, lr: float) -> None:
        self.lr = _real("lr", lr, low_open=True)

    def rate(self, count: int) -> float:
        return self.lr


class StepDecay(Schedule):
    """The rate cut by ``gamma`` every ``step_size`` counts (epochs by default).

    ::

        η(count) = lr · γ^⌊count / step_size⌋

    Parameters
    ----------
    lr : float
        The first rate, > 0.
    step_size : int
        Counts between cuts, ≥ 1.
    gamma : float, default 0.1
        ``γ`` in (0, 1].
    per : {"epoch", "step"}, default "epoch"
        What ``count`` counts.
    """

    name = "step_decay"
    arguments = ("lr", "step_size", "gamma", "per")

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1,
                 per: str = "epoch") -> None:
        self.lr = _real("lr", lr, low_open=True)
        self.step_size = _integer(step_size, "step_size")
        self.gamma = _real("gamma", gamma, 0.0, 1.0, low_open=True, high_open=False)
        self.per = _per(per)

    def rate(self, count: int) -> float:
        return self.lr * self.gamma ** (count // self.step_size)


class ExponentialDecay(Schedule):
    """Exponential decay, as Keras's ``ExponentialDecay``.

    ::

        η(count) = lr · rate^(count / decay_steps)
        η(count) = lr · rate^⌊count / decay_steps⌋      (staircase)

    Parameters
    ----------
    lr : float
        The first rate, > 0.
    decay_rate : float
        ``rate`` in (0, 1].
    decay_steps : int, default 1
        ≥ 1.
    staircase : bool, default False
        Decay in whole steps of ``decay_steps``.
    per : {"step", "epoch"}, default "step"
        What ``count`` counts.
    """

    name = "exponential_decay"
    arguments = ("lr", "decay_rate", "decay_steps", "staircase", "per")

    def __init__(self, lr: float, decay_rate: float, decay_steps: int = 1,
                 staircase: bool = False, per: str = "step") -> None:
        self.lr = _real("lr", lr, low_open=True)
        self.decay_rate = _real("decay_rate", decay_rate, 0.0, 1.0, low_open=True,
                                high_open=False)
        self.decay_steps = _integer(decay_steps, "decay_steps")
        self.staircase = _flag("staircase", staircase)
        self.per = _per(per)

    def rate(self, count: int) -> float:
        exponent = (count // self.decay_steps if self.staircase
                    else count / self.decay_steps)
        return self.lr * self.decay_rate ** exponent


class CosineDecay(Schedule):
    """A linear warm-up, then a cosine from ``lr`` down to ``final_lr``.

    Loshchilov & Hutter's SGDR without restarts. With ``W = warmup_steps``,
    ``D = decay_steps``, ``η₀ = warmup_start`` and ``η_min = final_lr``::

        η(c) = η₀ + (lr - η₀) · c / W                              c < W
        η(c) = η_min + (lr - η_min) · ½ · (1 + cos(π · (c - W) / D))   W ≤ c < W + D
        η(c) = η_min                                              c ≥ W + D

    so the rate is ``warmup_start`` at count 0, ``lr`` at count ``W``, and ``final_lr``
    from ``W + D`` on.

    Parameters
    ----------
    lr : float
        The peak rate, > 0.
    decay_steps : int
        ``D`` ≥ 1.
    warmup_steps : int, default 0
        ``W`` ≥ 0.
    warmup_start : float, default 0
        ``η₀`` in ``[0, lr]``.
    final_lr : float, default 0
        ``η_min`` in ``[0, lr]``.
    per : {"step", "epoch"}, default "step"
        What ``count`` counts.
    """

    name = "cosine_decay"
    arguments = ("lr", "decay_steps", "warmup_steps", "warmup_start", "final_lr", "per")

    def __init__(self, lr: float, decay_steps: int, warmup_steps: int = 0,
                 warmup_start: float = 0.0, final_lr: float = 0.0, per: str = "step") -> None:
        self.lr = _real("lr", lr, low_open=True)
        self.decay_steps = _integer(decay_steps, "decay_steps")
        self.warmup_steps = _integer(warmup_steps, "warmup_steps", low=0)
        self.warmup_start = _real("warmup_start", warmup_start, 0.0, self.lr, high_open=False)
        self.final_lr = _real("final_lr", final_lr, 0.0, self.lr, high_open=False)
        self.per = _per(per)

    def rate(self, count: int) -> float:
        warm, lr, low = self.warmup_steps, self.lr, self.final_lr
        if count < warm:
            return self.warmup_start + (lr - self.warmup_start) * count / warm
        if count >= warm + self.decay_steps:
            return low
        return low + (lr - low) * 0.5 * (1.0 + math.cos(math.pi * (count - warm)
                                                        / self.decay_steps))


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (Constant, StepDecay, ExponentialDecay, CosineDecay)}
"""anyfc's schedule classes by the ``name`` in their ``config()``: the only ones ``get``
builds from a ``config()`` (any registered one from a spec)."""

registry.declare("schedule", Schedule, "schedules.Schedule", named_config=True)
for _cls in SCHEDULES.values():
    registry.register(_cls)


def to_config(schedule: Schedule) -> dict[str, Any] | Schedule:
    """Give how an optimizer's ``config()`` holds ``schedule``.

    The form is one ``get`` takes back and that names its exact class.

    Parameters
    ----------
    schedule : Schedule
        The schedule.

    Returns
    -------
    dict or Schedule
        One of anyfc's as its ``config()`` (its ``name`` in ``SCHEDULES`` names exactly
        its class), another registered class as its spec, any other as the object
        itself, which ``anyfc.registry.spec`` refuses to write.
    """
    if SCHEDULES.get(schedule.name) is type(schedule):
        return schedule.config()
    if registry.name_of(type(schedule)) is not None:
        return registry.spec(schedule)
    return schedule


def get(spec: Schedule | dict[str, Any]) -> Schedule:
    """Build a schedule from itself, from its ``config()`` or from its spec.

    A configuration must name one of ``SCHEDULES`` and hold only that class's
    arguments; each value is checked by the class, so bad data is refused, never
    anything else built.

    Parameters
    ----------
    spec : Schedule or dict
        The schedule, its ``config()``, or its spec (``{"type": ..., "config": ...}``,
        ``anyfc.registry``).

    Returns
    -------
    Schedule
        The schedule.

    Raises
    ------
    ValueError
        An unknown name, unexpected or missing arguments, bad values.
    TypeError
        Neither a schedule nor a dict.

    Examples
    --------
    >>> get({"name": "step_decay", "lr": 0.1, "step_size": 10})
    StepDecay(lr=0.1, step_size=10, gamma=0.1, per='epoch')
    """
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, dict):
        raise TypeError(f"a learning-rate schedule must be a Schedule or its config dict, "
                        f"got {type(spec).__name__}")
    if "type" in spec:
        built: Schedule = registry.build("schedule", spec)
        return built
    name = spec.get("name")
    if not isinstance(name, str) or name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r:.80}; valid schedules are "
                         f"{', '.join(SCHEDULES)}")
    cls = SCHEDULES[name]
    unexpected = [key for key in spec if key != "name" and key not in cls.arguments]
    if unexpected:
        raise ValueError(f"unexpected argument(s) {', '.join(repr(k)[:80] for k in unexpected)}"
                         f" for schedule {name!r}; its arguments are {', '.join(cls.arguments)}")
    build: Any = cls
    try:
        schedule: Schedule = build(**{key: value for key, value in spec.items()
                                      if key != "name"})
    except TypeError as exc:  # a required argument is missing
        raise ValueError(f"schedule {name!r} cannot be built from {sorted(spec)}: "
                         f"{exc}") from None
    return schedule
