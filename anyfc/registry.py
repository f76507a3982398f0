"""One identity for everything anyfc rebuilds: layers, activations, losses, optimizers and
learning-rate schedules.

A checkpoint (and an ONNX file's ``anyfc.architecture``) names each object by the name its
*exact class* is registered under, with the settings that rebuild it::

    spec(obj) == {"type": <registered name>, "config": <JSON data>}
    build(kind, spec) -> an object of exactly that class, ``cls(**config)``

The identity is the class object, never a display ``name`` and never a base class: an
object whose class is not registered (a subclass of ``ReLU`` that overrides ``forward``,
say, which inherits ``name = "relu"``) has no spec — ``spec`` raises ``UnregisteredError``
instead of writing something that would come back as the built-in. anyfc registers each
of its classes under its class name; register your own with the decorator::

    @anyfc.register                   # or @anyfc.register(name="shifted_relu")
    class ShiftedReLU(anyfc.activations.ReLU):
        ...

The kind (``"layer"``, ``"activation"``, ``"loss"``, ``"optimizer"``, ``"schedule"``) is
the base class the registered class derives from. Each kind's ``config()`` gives the
settings: ``cls(**config)`` builds the object again (a layer's arrays travel apart, and a
layer also takes ``backend=``, ``device=``, ``dtype=``). Activations and schedules have long
put their display name first in ``config()`` (``{"name": "leaky_relu", "alpha": 0.2}``,
which ``activations.get`` and ``schedules.get`` still take); that entry is not a setting,
and a spec leaves it out, so ``name`` is no constructor argument of theirs.

A config may hold another anyfc object (a layer's activation, an optimizer's schedule):
``spec`` writes it as its own spec, and refuses it if its class is not registered.

Configs read from files are untrusted: ``check`` validates a spec without building any
array (a layer class answers with ``array_shapes(config)``, see ``anyfc.Layer``), and
``build`` turns every problem with a spec into a ``ValueError``.

This module imports nothing else of anyfc: each kind's module declares its base class
here when it is imported, and registers its own classes.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, overload

__all__ = ["KINDS", "UnregisteredError", "build", "check", "classes", "key", "name_of",
           "register", "spec"]

T = TypeVar("T", bound=type)
Shapes = dict[str, tuple[int, ...]]


class UnregisteredError(TypeError):
    """An object whose exact class is not registered, so no file can name it.

    Parameters
    ----------
    message : str
        What happened and what to do (decorate the class with ``@anyfc.register``).
    cls : type
        The unregistered class (also the attribute ``cls``).
    """

    def __init__(self, message: str, cls: type) -> None:
        super().__init__(message)
        self.cls = cls


@dataclass
class _Kind:
    name: str
    base: type
    what: str  # "anyfc.Layer", ... (for messages)
    named_config: bool  # config() leads with the display name, which is no setting
    check: Callable[[type, dict[str, Any]], Shapes] | None  # layers: their array shapes
    classes: dict[str, type] = field(default_factory=dict)


_KINDS: dict[str, _Kind] = {}
_NAMES: dict[type, tuple[_Kind, str]] = {}  # exact class -> (its kind, its registered name)
_REPLACED: dict[type, type] = {}  # an older definition -> the class now under its name

KINDS = ("layer", "activation", "loss", "optimizer", "schedule")
"""The kinds of objects the registry names, in the order files list them."""


def declare(kind: str, base: type, what: str, *, named_config: bool = False,
             check: Callable[[type, dict[str, Any]], Shapes] | None = None) -> None:
    """Called once by each kind's module: its base class, and how a spec of it is checked
    without building arrays (``None``: it holds none, so checking builds it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    _KINDS[kind] = _Kind(kind, base, what, named_config, check)


def _kind(kind: Any) -> _Kind:
    found = _KINDS.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise ValueError(f"unknown kind {kind!r:.80}; the kinds are {', '.join(KINDS)}")
    return found


def _kinds_of_class(cls: type) -> list[_Kind]:
    return [k for k in _KINDS.values() if issubclass(cls, k.base)]


# ---------------------------------------------------------------- registering


@overload
def register(cls: T, *, name: str | None = None) -> T: ...
@overload
def register(cls: None = None, *, name: str | None = None) -> Callable[[T], T]: ...


def register(cls: Any = None, *, name: str | None = None) -> Any:
    """Register a class, so checkpoints can name and rebuild its objects.

    Use it as a class decorator, bare or with ``name=``. The class, ``cls``, is a
    subclass of ``anyfc.Layer``, ``activations.Activation``, ``losses.Loss``,
    ``optimizers.Optimizer`` or ``schedules.Schedule``; ``cls(**obj.config())`` must
    build ``obj`` again. A name holds one class per kind; the same class defined again
    (its module or notebook cell run twice: same module and qualified name) replaces the
    old definition.

    Parameters
    ----------
    name : str, optional
        The name to register it under (default: its class name).

    Returns
    -------
    type or callable
        The class, registered (or, called with ``name=`` only, the decorator).

    Raises
    ------
    TypeError
        Not a class of one of those kinds.
    ValueError
        A name taken by another class, or a class registered already under another
        name.

    Examples
    --------
    >>> import anyfc
    >>> @anyfc.register(name="doubled_relu")
    ... class DoubledReLU(anyfc.activations.ReLU):
    ...     def forward(self, xp, u):
    ...         return 2 * xp.maximum(u, 0.0)
    >>> anyfc.registry.name_of(DoubledReLU)
    'doubled_relu'
    """
    if cls is None:
        return lambda c: register(c, name=name)
    if not isinstance(cls, type):
        raise TypeError(f"register needs a class, got {type(cls).__name__} {cls!r:.80}")
    found = _kinds_of_class(cls)
    if len(found) != 1:
        bases = ", ".join(_KINDS[k].what for k in KINDS if k in _KINDS)
        raise TypeError(f"register needs a subclass of one of {bases}; {cls.__qualname__} "
                        + ("is none of them" if not found else "derives from more than one"))
    kind = found[0]
    name = cls.__name__ if name is None else name
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"a registered name must be a non-empty string without surrounding "
                         f"spaces, got {name!r:.80}")
    old = _NAMES.get(cls)
    if old is not None and old[1] != name:
        raise ValueError(f"{_qualified(cls)} is registered already, as {old[1]!r}: one class "
                         "has one name")
    known = kind.classes.get(name)
    if known is not None and known is not cls:
        if _qualified(known) != _qualified(cls):
            raise ValueError(f"{_a(kind.name)} type named {name!r} is registered already "
                             f"({_qualified(known)}); register {cls.__qualname__} under "
                             "another name: @anyfc.register(name=...)")
        # the same class defined again replaces itself; objects of the old definition are
        # no longer registered (the name now rebuilds the new class)
        del _NAMES[known]
        _REPLACED[known] = cls
    kind.classes[name] = cls
    _NAMES[cls] = (kind, name)
    _REPLACED.pop(cls, None)
    return cls


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def classes(kind: str) -> Mapping[str, type]:
    """Return the classes registered for ``kind``, by name.

    Parameters
    ----------
    kind : str
        One of ``KINDS``.

    Returns
    -------
    Mapping
        ``{name: class}``, a read-only, live view.
    """
    return MappingProxyType(_kind(kind).classes)


def name_of(cls: type) -> str | None:
    """Return the name a class itself is registered under (not a base class's).

    Returns
    -------
    str or None
        The name ``cls`` is registered under, or ``None``.
    """
    entry = _NAMES.get(cls)
    return None if entry is None else entry[1]


# ---------------------------------------------------------------- specs


def _unregistered(cls: type, kind: _Kind) -> UnregisteredError:
    newer = _REPLACED.get(cls)
    if newer is not None:
        return UnregisteredError(
            f"{_qualified(cls)} is an older definition of the {kind.name} class registered as "
            f"{name_of(newer)!r}, which was defined again since (its module or cell ran "
            "twice): build the object again from the new class", cls)
    parent = next((c for c in cls.__mro__[1:] if c in _NAMES), None)
    came_back = (f"; written under its parent's name it would come back as a "
                 f"{parent.__name__}, computing something else" if parent is not None else "")
    return UnregisteredError(
        f"{_qualified(cls)} is not registered, so no checkpoint can name it{came_back}: "
        f"decorate the class with @anyfc.register (or @anyfc.register(name=...)), and make "
        f"its config() return the settings with which {cls.__name__}(**config) rebuilds it",
        cls)


def _settings(obj: Any, kind: _Kind) -> dict[str, Any]:
    config = obj.config()
    if not isinstance(config, dict):
        raise TypeError(f"{type(obj).__name__}.config() returned a {type(config).__name__}, "
                        "not a dict")
    if kind.named_config:
        config = {k: v for k, v in config.items() if k != "name"}
    return config


def spec(obj: Any) -> dict[str, Any]:
    """Return the plain data that names ``obj``'s exact class and rebuilds it.

    Parameters
    ----------
    obj : object
        A layer, activation, loss, optimizer or schedule.

    Returns
    -------
    dict
        ``{"type": <the name obj's exact class is registered under>, "config": <its
        settings>}``, anyfc objects in the settings written as their own specs.

    Raises
    ------
    UnregisteredError
        An object of a class that is not registered itself (an unregistered subclass
        of a registered class too): nothing could rebuild it.
    TypeError
        Not an object of any kind.

    Examples
    --------
    >>> import anyfc
    >>> spec(anyfc.activations.LeakyReLU(0.2))
    {'type': 'LeakyReLU', 'config': {'alpha': 0.2}}
    """
    entry = _NAMES.get(type(obj))
    if entry is None:
        found = _kinds_of_class(type(obj))
        if not found:
            raise TypeError(f"spec needs a layer, activation, loss, optimizer or schedule, "
                            f"got {type(obj).__name__}")
        raise _unregistered(type(obj), found[0])
    kind, name = entry
    return {"type": name, "config": _nested_specs(_settings(obj, kind))}


def _is_object(value: Any) -> bool:
    return any(isinstance(value, k.base) for k in _KINDS.values())


def _nested_specs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nested_specs(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nested_specs(v) for v in value]
    if _is_object(value):
        return spec(value)
    return value


def _resolve(kind: Any, spec: Any) -> tuple[_Kind, type, dict[str, Any]]:
    """The kind, the registered class and the config of ``spec``, or a ValueError."""
    k = _kind(kind)
    if not isinstance(spec, Mapping) or "type" not in spec or set(spec) - {"type", "config"}:
        raise ValueError(f"{_a(k.name)} spec is an object {{\"type\": name, \"config\": "
                         f"{{...}}}}, got {_short(spec)}")
    name, config = spec["type"], spec.get("config", {})
    cls = k.classes.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown {k.name} type {_short(name)}; the registered {k.name} "
                         f"types are {', '.join(k.classes)} (register your own class with "
                         "@anyfc.register)")
    if not isinstance(config, Mapping) or not all(isinstance(n, str) for n in config):
        raise ValueError(f"the config of {k.name} {name!r} must be an object of settings, "
                         f"got {_short(config)}")
    return k, cls, dict(config)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def build(kind: str, spec: Any, **kwargs: Any) -> Any:
    """Build an object of the class registered under ``spec["type"]`` for ``kind``.

    Built with ``cls(**spec["config"], **kwargs)``.

    Parameters
    ----------
    kind : str
        One of ``KINDS``.
    spec : dict
        ``{"type": name, "config": settings}`` (``"config"`` may be left out).
    **kwargs
        More constructor arguments (a layer takes ``backend=``, ``device=`` and
        ``dtype=``).

    Returns
    -------
    object
        The object.

    Raises
    ------
    ValueError
        An unknown kind or type, or a config the class refuses — never another
        exception (configs come from files).
    """
    k, cls, config = _resolve(kind, spec)
    try:
        return cls(**config, **kwargs)
    except Exception as exc:  # whatever the class's checks raise on bad data
        raise ValueError(f"{k.name} {spec['type']!r} cannot be built from this config: "
                         f"{type(exc).__name__}: {str(exc)[:300]}") from exc


def lookup(kind: str, value: Any, short: Mapping[str, Callable[[], Any]],
           what: str, plural: str) -> Any:
    """What each kind's ``get`` does with a value that is not yet an object: a spec
    (``{"type": ..., "config": ...}``) is built, a short name (``short``, lower-cased)
    or a registered name gives the class with its defaults; anything else is a
    ``ValueError`` listing the short names (``what``/``plural``: "loss"/"losses")."""
    if isinstance(value, dict):
        return build(kind, value)
    if isinstance(value, str):
        if value.lower() in short:
            return short[value.lower()]()
        if value in classes(kind):
            return build(kind, {"type": value})
    raise ValueError(f"unknown {what} {value!r}; valid {plural} are {', '.join(short)}")


def check(kind: str, spec: Any) -> Shapes:
    """Validate ``spec`` without allocating any array.

    Parameters
    ----------
    kind : str
        One of ``KINDS``.
    spec : dict
        ``{"type": name, "config": settings}``.

    Returns
    -------
    dict
        For a layer, the shapes its arrays will have (``cls.array_shapes(config)``: each
        a tuple of non-negative integers); for the other kinds, which hold no arrays,
        ``{}`` (the object is built and dropped).

    Raises
    ------
    ValueError
        Every problem.
    """
    k, cls, config = _resolve(kind, spec)
    if k.check is None:
        build(kind, spec)
        return {}
    try:
        shapes = k.check(cls, config)
    except Exception as exc:
        raise ValueError(f"{k.name} {spec['type']!r} has a bad config: "
                         f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    if not isinstance(shapes, Mapping):
        raise ValueError(f"{cls.__name__}.array_shapes returned {_short(shapes)}, not a dict")
    out: Shapes = {}
    for name, shape in shapes.items():
        if not isinstance(shape, (tuple, list)) or not all(
                isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0
                for n in shape):
            raise ValueError(f"{k.name} {spec['type']!r}: the shape of {name!r} is "
                             f"{_short(shape)}, not a tuple of non-negative integers")
        out[str(name)] = tuple(int(n) for n in shape)
    return out


# ---------------------------------------------------------------- keys


class _Ref:
    """Where a nested object stands in a key's text (its own key goes beside the text)."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i

    def __repr__(self) -> str:
        return f"<nested {self.i}>"


_PLAIN = (str, int, float, bool, type(None))


def _canonical(value: Any, nested: list[Hashable]) -> Any:
    """``value`` with dicts as sorted item lists and anyfc objects as ``_Ref``s (their
    keys appended to ``nested``). Runs per training step: plain values go first."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        try:
            items = sorted(value.items())  # keys are unique: only they are compared
        except TypeError:  # keys of mixed types
            items = sorted(value.items(), key=lambda kv: repr(kv[0]))
        return [(k, _canonical(v, nested)) for k, v in items]
    if kind is list or kind is tuple:
        return kind(_canonical(v, nested) for v in value)
    if _is_object(value):
        nested.append(key(value))
        return _Ref(len(nested) - 1)
    if isinstance(value, dict):
        return _canonical(dict(value), nested)
    if isinstance(value, (list, tuple)):
        return [_canonical(v, nested) for v in value]
    return value


def key(obj: Any, *, ignore: tuple[str, ...] = ()) -> Hashable:
    """Return a hashable identity of ``obj`` for caches (compiled training steps).

    Objects of different classes never share a key, whatever their names and configs
    (nor do objects holding activations of different classes); equal configs of one
    class do. Works for unregistered classes too (nothing is looked up), and costs a
    ``config()`` and a ``repr``.

    Parameters
    ----------
    obj : object
        An object with a ``config()``.
    ignore : tuple of str, optional
        The config's entries to leave out.

    Returns
    -------
    tuple
        ``(type(obj), the repr of its config's items, the keys of the anyfc objects
        nested in it)``.
    """
    config = obj.config()
    if ignore:
        config = {k: v for k, v in config.items() if k not in ignore}
    nested: list[Hashable] = []
    text = repr(_canonical(config, nested))
    return (type(obj), text, tuple(nested))
