"""The protocol every layer follows — ``Dense``, the normalisations, dropout, activation
layers, and your own (``anyfc.testing.check_layer`` checks one).

A layer has

- ``param_names``: its trainable arrays (attributes ``p``), each with a gradient
  ``grad_p`` set by ``backward``; optimizers update exactly these;
- ``buffer_names``: non-trainable arrays it keeps between calls (running statistics),
  saved in checkpoints and moved with the layer;
- ``n_in``/``n_out``: feature counts, ``None`` for layers that keep any width;
- ``forward(x, training=True) -> y``: in training it keeps on itself what ``backward``
  needs; with ``training=False`` it keeps nothing (inference from many threads at once);
- ``backward(grad_y, need_grad_x=True) -> ∂E/∂x`` (``None`` when not needed);
- ``to(backend, device, dtype)``, ``shapes()`` (the shape each array must have) and
  ``config()``, plain JSON data with which ``type(layer)(**config)`` builds it again
  (another anyfc object in it, such as an activation, stands as itself or as its
  ``anyfc.registry`` spec);
- ``array_shapes(config)``, a classmethod: the shapes a layer built from ``config`` would
  have, and the config checked, without building anything (see ``Layer``);
- ``place(backend, device, dtype)``, called by ``__init__``: where the layer lives (a
  layer without arrays needs nothing else to follow the model);
- ``min_batch``: the fewest rows of a training batch it accepts (BatchNorm: 2);
- ``generator()``: its random generator (``_backend``'s ``DeviceRandom``), ``None`` for
  layers that draw nothing; the model snapshots, restores and threads its state
  through compiled steps (``anyfc.state``);
- ``check_settings()``: its settings (which a user may reassign) are still ones its class
  accepts, checked from ``config()`` without allocating (``array_shapes``);
- ``penalty(scale)``: its regularisation term of a training batch's loss (``Dense(l2=...)``),
  adding that term's gradient to its parameter gradients after ``backward``; ``None``
  (the default) for none. ``scale`` is ``1/N``, the loss's ``normalizer``.

A layer deep-copies and pickles: its arrays travel as host copies and come back on the
same backend, device and dtype; what a training forward kept is dropped.

Checkpoints name a layer class by the name it is registered under (``anyfc.register``).
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

from .. import _backend, _validation, registry

Array = Any


def size(owner: str, name: str, value: Any) -> int:
    """A layer size: a positive integer (Python or NumPy), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner} needs a positive integer {name}, got {value!r}")
    return int(value)


def real(owner: str, name: str, value: Any, low: float, high: float,
         low_open: bool = False, high_open: bool = False) -> float:
    """A real setting of a layer in [low, high] (ends open as asked), else a ValueError."""
    return _validation.real(f"{owner} {name}", value, low, high, low_open, high_open)


def describe(a: Array) -> str:
    return (f"{_backend.backend_name(_backend.namespace_of(a))} {_backend.dtype_name(a.dtype)} "
            f"on {_backend.device_of(a)}")


class Layer:
    """Base class of every layer: placement, moving, input checks.

    Subclasses set ``param_names``/``buffer_names``/``cache_names`` and write
    ``forward``, ``backward``, ``shapes`` and ``config``; ``@anyfc.register`` lets
    checkpoints rebuild them (the module docstring lists the whole protocol;
    ``anyfc.testing.check_layer`` checks a layer against it).

    Checking a config never allocates. A checkpoint's configs are untrusted, so before a
    layer is built from one, ``array_shapes(config)`` says which shapes its arrays will
    have, and the file must hold exactly those arrays, read and checked, before the layer
    is built: building then allocates no more than the file really holds. anyfc's layers
    compute the shapes from the numbers and check every setting themselves. For your own
    layer class without an ``array_shapes``, a checkpoint builds nothing either: it calls
    your ``shapes()`` on a bare instance (``__init__`` not run) whose attributes are the
    config's entries, so that works when ``shapes()`` reads only attributes named like
    ``config()``'s keys (each constructor argument kept under its own name, as usual); the
    other settings are checked by ``__init__`` when the layer is built, after its arrays
    were found in the file. When ``shapes()`` needs more, or ``__init__`` allocates
    anything besides the parameters and buffers ``shapes()`` describes, write a classmethod
    ``array_shapes(config)`` that checks the config and returns the shapes without building
    the layer (``Dense.array_shapes`` is one): without it, such a layer trains, but
    ``save`` and ``load`` refuse it rather than build it from a file's numbers. A subclass
    of one of anyfc's layers inherits that layer's ``array_shapes``: one that adds settings
    or changes ``shapes()`` writes its own.
    """

    param_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()
    cache_names: tuple[str, ...] = ()  # per-call arrays kept by forward for backward
    n_in: int | None = None
    n_out: int | None = None
    min_batch: int = 1  # rows of a training batch the layer needs at least
    _where: tuple[ModuleType, Any, Any] | None = None  # set by place() in __init__

    def place(self, backend: Any, device: Any, dtype: Any) -> tuple[ModuleType, Any, Any]:
        """Resolve and remember where the layer lives.

        Every ``__init__`` calls it (a layer without arrays needs nothing else).

        Parameters
        ----------
        backend : str, module or None
            The backend (``None``: the default backend).
        device : str, device object or None
            The device (``None``: the backend's default device).
        dtype : str, dtype or None
            The floating dtype (``None``: float32).

        Returns
        -------
        tuple
            ``(xp, device, dtype)``: the namespace, and the library's own device and
            dtype objects, for creating the layer's arrays.
        """
        xp = _backend.get_namespace(backend)
        dev = _backend.resolve_device(xp, device)
        dt = _backend.resolve_dtype(xp, dtype)
        self._where = (xp, dev, dt)
        return xp, dev, dt

    _place = place  # the name layers written for anyfc 0.1 call

    def generator(self) -> Any:
        """Return the layer's random generator (created where needed).

        Returns
        -------
        generator or None
            The generator the layer draws from, or ``None`` for a layer that draws no
            random numbers (the default).
        """
        return None

    def set_generator(self, generator: Any) -> None:
        """Draw from ``generator`` from now on (a compiled step's stand-in).

        Parameters
        ----------
        generator : generator
            A generator of the kind ``generator()`` returns.

        Raises
        ------
        TypeError
            The layer draws no random numbers (its ``generator()`` is ``None``).
        """
        raise TypeError(f"{type(self).__name__} draws no random numbers")

    def penalty(self, scale: Any) -> Array | None:
        """Add the layer's regularisation term of a training batch's loss.

        Called after ``backward``: the term's gradient is added to the parameter
        gradients ``backward`` set.

        Parameters
        ----------
        scale : float or 0-d array
            ``1/N``, the loss's normalizer (``N``: the batch's rows, or its row
            weights' sum).

        Returns
        -------
        array or None
            The term (a 0-d array), or ``None``: the layer adds nothing (the default).
        """
        return None

    def check_settings(self) -> None:
        """Check that the layer's settings are still ones its class accepts.

        A setting may have been reassigned since construction (say ``rate = 1.5``): the
        class checks its own ``config()`` with ``array_shapes``, without allocating.

        Raises
        ------
        ValueError
            A setting the class refuses, naming the layer and the setting.
        """
        try:
            type(self).array_shapes(self.config())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{type(self).__name__} has a bad setting: {exc}") from None

    # ------------------------------------------------------------ where it lives

    def arrays(self) -> dict[str, Array]:
        """Return the parameters and buffers by name (the live arrays).

        Returns
        -------
        dict
            ``{name: array}`` for ``param_names`` then ``buffer_names``.
        """
        return {name: getattr(self, name) for name in self.param_names + self.buffer_names}

    def _first(self) -> Array | None:
        for name in self.param_names + self.buffer_names:
            value = getattr(self, name, None)
            if _backend.is_array(value):
                return value
        return None

    def _placement(self) -> tuple[ModuleType, Any, Any]:
        # on the hot path (every forward and backward checks its input against it): the
        # answer is kept with the array it was read from, and read again only when that
        # array is another object or has another dtype (a reassigned ``w``; every step's
        # new arrays on JAX)
        names = self.param_names + self.buffer_names
        if names:
            head = getattr(self, names[0], None)
            placed = self.__dict__.get("_placed")
            if placed is not None and placed[0] is head and head.dtype == placed[1][2]:
                return placed[1]
        first = self._first()
        if first is not None:
            found = (_backend.namespace_of(first), _backend.device_of(first), first.dtype)
            if names and first is head:
                self._placed = (first, found)  # one assignment: safe from other threads
            return found
        if self._where is None:
            raise TypeError(
                f"{type(self).__name__} was never placed: a layer's __init__ must call "
                "self.place(backend, device, dtype) (see anyfc.layers.base.Layer)")
        return self._where

    @property
    def xp(self) -> ModuleType:
        """The Array API namespace the layer computes with."""
        return self._placement()[0]

    @property
    def backend(self) -> str:
        """The name of the layer's backend (``"numpy"``, ``"torch"``, ...)."""
        return _backend.backend_name(self.xp)

    @property
    def device(self) -> Any:
        """The device the layer's arrays live on (the library's own device object)."""
        return self._placement()[1]

    @property
    def dtype(self) -> Any:
        """The floating dtype of the layer's arrays (the library's own dtype object)."""
        return self._placement()[2]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Return the shape each parameter and buffer must have, from the layer's sizes.

        Returns
        -------
        dict
            ``{name: shape}`` for every name in ``param_names`` and ``buffer_names``
            (empty for a layer without arrays, the default).
        """
        return {}

    def config(self) -> dict[str, Any]:
        """Return the layer's settings as plain JSON data.

        ``type(self)(**config)`` builds this layer again, with new arrays (the
        parameters and buffers travel apart, as in a checkpoint).

        Returns
        -------
        dict
            The constructor arguments, by name (empty by default).
        """
        return {}

    def check_values(self, arrays: dict[str, Array]) -> str | None:
        """Say what is wrong with these values of the layer's arrays, if anything.

        Beyond shape and finiteness, which the model checks: e.g. a negative running
        variance. Called where arrays enter from outside (``load_state_dict``, ``load``)
        and before training; may read the device once.

        Parameters
        ----------
        arrays : dict
            Candidate values of the layer's arrays, by name.

        Returns
        -------
        str or None
            What is wrong, or ``None`` (the default: nothing).
        """
        return None

    @classmethod
    def array_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """Return ``shapes()`` of the layer ``cls(**config)`` would build, without building it.

        Nothing is allocated: checkpoints ask this of untrusted configs before reading a
        byte of their arrays. anyfc's layers check every setting here. This default (see
        the class docstring) runs ``shapes()`` on a bare instance holding the config's
        entries as attributes; only where that cannot tell does it build the layer, for
        the settings of a live layer (``fit`` and ``save`` check them with this): a
        checkpoint's config is never built before its arrays are read
        (``anyfc.registry.check`` asks the bare instance alone).

        Parameters
        ----------
        config : dict
            A layer's ``config()``.

        Returns
        -------
        dict
            ``{name: shape}`` of its parameters and buffers.

        Raises
        ------
        TypeError, ValueError
            A setting the class does not take, or refuses.
        """
        try:
            return cls.bare_shapes(config)
        except TypeError:
            build: Any = cls
            return dict(build(**config, backend="numpy").shapes())

    @classmethod
    def bare_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """Return ``shapes()`` of a bare instance whose attributes are the config's entries.

        The instance's ``__init__`` is not run: nothing is built.

        Parameters
        ----------
        config : dict
            A layer's ``config()``.

        Returns
        -------
        dict
            ``{name: shape}`` of its parameters and buffers.

        Raises
        ------
        TypeError
            ``shapes()`` cannot tell from the config alone (it reads other attributes),
            or a key is no identifier.
        """
        name = cls.__name__
        for setting in config:
            if not isinstance(setting, str) or not setting.isidentifier() or (
                    setting.startswith("_")):
                raise TypeError(f"{name} takes no setting {setting!r:.80}")
        try:
            bare = object.__new__(cls)
            vars(bare).update(config)
            shapes = cls.shapes(bare)
            return {str(k): tuple(v) for k, v in shapes.items()}
        except Exception as exc:  # shapes() reads what the config does not hold, ...
            raise TypeError(
                f"the array shapes of a {name} cannot be worked out from its config without "
                f"building it ({type(exc).__name__}: {str(exc)[:200]}): {name}.shapes() must "
                f"read only attributes named like its config's keys, or {name} must have a "
                "classmethod array_shapes(config) that checks the config and returns the "
                "shapes (see anyfc.Layer)") from None

    def to(self, backend: str | ModuleType | None = None, device: Any = None,
           dtype: Any = None) -> Layer:
        """Move every array (parameters, gradients, buffers) to another backend, device or dtype.

        In place, and all or nothing: every array is converted (copied) before any is
        set.

        Parameters
        ----------
        backend : str, module or None
            The backend (``None``: the current one).
        device : str, device object or None
            The device (``None``: the backend's default device).
        dtype : str, dtype or None
            The floating dtype (``None``: the current one).

        Returns
        -------
        Layer
            ``self``.
        """
        self.commit(self.moved(backend, device, dtype))
        return self

    def moved(self, backend: str | ModuleType | None = None, device: Any = None,
              dtype: Any = None) -> dict[str, Any]:
        """Return the layer's arrays converted as ``to`` would, without changing the layer.

        Parameters
        ----------
        backend : str, module or None
            The backend (``None``: the current one).
        device : str, device object or None
            The device (``None``: the backend's default device).
        dtype : str, dtype or None
            The floating dtype (``None``: the current one).

        Returns
        -------
        dict
            ``{attribute: new array}`` plus the new placement under ``"_where"``, what
            ``commit`` takes.
        """
        xp = _backend.get_namespace(self.backend if backend is None else backend)
        dev = _backend.resolve_device(xp, device)
        dt = _backend.resolve_dtype(xp, self.dtype if dtype is None else dtype)
        out: dict[str, Any] = {}
        names = [n for p in self.param_names for n in (p, "grad_" + p)] + list(self.buffer_names)
        for attr in names:
            value = getattr(self, attr, None)
            if value is not None:  # a copy: the layer never shares the source's memory
                out[attr] = _backend.to_backend(value, xp, dev, dt, copy=True)
        out["_where"] = (xp, dev, dt)
        return out

    def commit(self, values: dict[str, Any]) -> None:
        """Set what ``moved`` returned (and drop what the last forward kept).

        Parameters
        ----------
        values : dict
            ``moved``'s result.
        """
        for attr, value in values.items():
            setattr(self, attr, value)
        self.forget()

    def forget(self) -> None:
        """Drop what the last training forward kept for backward (it can be large)."""
        for name in self.cache_names:
            setattr(self, name, None)

    def reset_random(self) -> None:
        """Restart the layer's random stream from its seed (random layers only)."""

    # ------------------------------------------------------------ the math

    def forward(self, x: Array, training: bool = True) -> Array:
        """Compute the layer's output for a batch.

        Parameters
        ----------
        x : array
            A batch, one sample per row, of the layer's library, device and dtype.
        training : bool, default True
            In training, keep on the layer what ``backward`` needs (``cache_names``) and
            behave as in training (dropout drops, batch normalisation uses the batch's
            statistics); with ``False``, keep nothing on the layer, so that inference may
            run from many threads at once.

        Returns
        -------
        array
            ``y``, one row per row of ``x``.
        """
        raise NotImplementedError

    def backward(self, grad_y: Array, need_grad_x: bool = True) -> Array | None:
        """Back-propagate ``∂E/∂y`` through the last training ``forward``.

        Sets ``grad_<name>`` for each name in ``param_names``.

        Parameters
        ----------
        grad_y : array
            ``∂E/∂y``, of the shape of the last training ``forward``'s output.
        need_grad_x : bool, default True
            Whether the caller needs ``∂E/∂x``: the model passes ``False`` for its
            first layer, which then may skip computing it.

        Returns
        -------
        array or None
            ``∂E/∂x``, of ``x``'s shape, or ``None`` when ``need_grad_x`` is false.
        """
        raise NotImplementedError

    def infer(self, x: Array) -> Array:
        """Compute ``forward(x, training=False)`` for an input the model has checked.

        ``Sequential.predict`` calls it. A layer may skip its own input checks here; by
        default it runs ``forward``, checks included. It must never write into ``x``.

        Parameters
        ----------
        x : array
            An array of the layer's library, device and dtype, 2-D, as wide as the layer
            takes.

        Returns
        -------
        array
            The layer's output, keeping nothing on the layer.
        """
        return self.forward(x, training=False)

    def _check_input(self, x: Array, what: str) -> None:
        """``x`` is an array of the layer's library, device and dtype, with ``n_in``
        features when the layer has a fixed width."""
        name = type(self).__name__
        if not _backend.is_array(x) or _backend.namespace_of(x) is not self.xp:
            raise TypeError(
                f"{name}.{what} got {type(x).__module__}.{type(x).__name__}, but the layer "
                f"computes with {self.backend} arrays; convert with anyfc.to_backend(x, "
                f"{self.backend!r}) (Sequential.fit/predict do this for you)")
        device = _backend.device_of(x)  # None for values traced by a compiler (JAX)
        if device is not None and device != self.device:
            raise TypeError(f"{name}.{what} got an array on device {_backend.device_of(x)!r}, "
                            f"but the layer's arrays are on {self.device!r}")
        if x.dtype != self.dtype:
            raise TypeError(
                f"{name}.{what} got an array of dtype {_backend.dtype_name(x.dtype)}, but the "
                f"layer's arrays are {_backend.dtype_name(self.dtype)}; convert with "
                f"anyfc.to_backend(x, {self.backend!r}, "
                f"dtype={_backend.dtype_name(self.dtype)!r}) (Sequential.fit/predict do this "
                "for you)")
        if what == "forward" and (x.ndim != 2 or (self.n_in is not None
                                                  and x.shape[1] != self.n_in)):
            width = f"{self.n_in} features per row" if self.n_in is not None else "features"
            raise ValueError(f"{self!r}.forward expects a 2-D batch with {width}, got shape "
                             f"{tuple(x.shape)}")

    def _check_backward(self, grad_y: Array, kept: Array | None) -> None:
        if kept is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before a training "
                               "forward (forward(x, training=True))")
        self._check_input(grad_y, "backward")
        if tuple(grad_y.shape) != tuple(kept.shape):
            raise ValueError(f"{type(self).__name__}.backward expects grad_y of shape "
                             f"{tuple(kept.shape)} (the forward output), got "
                             f"{tuple(grad_y.shape)}")

    # ------------------------------------------------------------ copies and pickles

    def __copy__(self) -> Any:
        """A shallow copy sharing the arrays (``copy.deepcopy`` and pickle copy them)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin

    def __getstate__(self) -> dict[str, Any]:
        """Plain data: every array as a host (NumPy) copy, the placement as names, and
        nothing a training forward kept."""
        xp, dev, dt = self._placement()
        state = dict(self.__dict__)
        state.pop("_placed", None)  # a cache holding an array and a module
        for name in self.cache_names:
            state.pop(name, None)
        hosted = [key for key, value in state.items() if _backend.is_array(value)]
        for key in hosted:
            state[key] = _backend.to_numpy(state[key])
        state["_hosted"] = hosted
        state["_where"] = (_backend.backend_name(xp), _backend.device_token(xp, dev),
                           _backend.dtype_name(dt))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Back on the backend, device and dtype it was pickled from (a ``ValueError``
        naming the device where it does not exist here, an ``ImportError`` where the
        library is not installed)."""
        backend, device, dtype = state.pop("_where")
        hosted = set(state.pop("_hosted", ()))
        xp, dev, dt = self.place(backend, device, dtype)
        for key, value in state.items():
            if key in hosted:  # the layer's arrays are all of its dtype
                value = _backend.to_backend(value, xp, dev, dt, copy=True)
            setattr(self, key, value)
        for name in self.cache_names:
            setattr(self, name, None)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _array_shapes(cls: type, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """How ``anyfc.registry.check`` checks a layer's (untrusted) config: the class's own
    ``array_shapes``, or for a class without one the bare instance only, never a build."""
    layer_cls: type[Layer] = cls
    if getattr(layer_cls.array_shapes, "__func__", None) is _DEFAULT_ARRAY_SHAPES:
        return layer_cls.bare_shapes(config)
    return layer_cls.array_shapes(config)


_DEFAULT_ARRAY_SHAPES = Layer.array_shapes.__func__  # type: ignore[attr-defined]


registry.declare("layer", Layer, "anyfc.Layer", check=_array_shapes)
