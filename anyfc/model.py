"""``Sequential``: a stack of layers with a loss, mini-batch training and a history.

Training loop, per mini-batch (the article's procedure, for a whole network):

    y = layers[-1](... layers[0](x))            forward, keeping what backward needs
    E = loss(y, t)
    g = ∂E/∂y;  g = layer.backward(g) for each layer from the top down
    optimizer.step(layers)                      p ← p - η·(update from ∂E/∂p)

The model's arrays never leave its backend and device during training: the loss and
accuracy of an epoch are summed on the device and read once at the epoch's end.
"""

from __future__ import annotations

import math
import operator
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

from . import _backend, _dask, _validation, activations, checkpoint, losses, optimizers, registry
from .layers import Layer
from .state import ModelState, layer_path, path, split_path
from .training import data as _data
from .training import loop, step
from .training.callbacks import Callback
from .training.history import History

Array = Any

__all__ = ["History", "Sequential"]


class Sequential:
    """Layers applied one after the other, trained against ``loss``.

    The module docstring gives the training loop it runs per mini-batch.

    Parameters
    ----------
    layers : iterable of anyfc.Layer
        The layers, input first; each fixed width ``n_out`` must equal the next fixed
        ``n_in`` (activation and dropout layers keep any width).
    loss : str or anyfc.losses.Loss, default "softmax_cross_entropy"
        ``"softmax_cross_entropy"`` (the last layer gives logits),
        ``"binary_cross_entropy"`` (logits too) or ``"mean_squared_error"``, or a loss
        object (with settings: ``anyfc.losses``).
    backend, device, dtype : optional
        Where the model lives; the layers are moved there. ``None`` keeps the first
        layer's.

    Attributes
    ----------
    layers : list of anyfc.Layer
        The layers (a plain attribute).
    loss : anyfc.losses.Loss
        The loss.
    optimizer : anyfc.optimizers.Optimizer or None
        The optimizer the model last trained with (``fit`` continues with it).

    Raises
    ------
    ValueError
        Sizes that do not chain, the same layer object twice, a loss that does not fit
        the last layer.
    TypeError
        Something in ``layers`` that is not an ``anyfc.Layer``.

    Examples
    --------
    >>> from anyfc import Dense, Sequential
    >>> model = Sequential([Dense(64, 32, "relu", seed=0), Dense(32, 10, "identity", seed=1)])
    >>> model.backend, model.n_in, model.n_out
    ('numpy', 64, 10)
    """

    def __init__(
        self,
        layers: Iterable[Layer],
        loss: str | losses.Loss = "softmax_cross_entropy",
        *,
        backend: str | ModuleType | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        self.layers = list(layers)
        self.loss = losses.get(loss)
        self.check(placement=False)
        _warn_if_not_logits(self.layers, self.loss)
        self.optimizer: optimizers.Optimizer | None = None
        # where the model lives: that of its first layer with arrays (parameter-free
        # layers such as Dropout take the default placement and follow the model)
        first = next((layer for layer in self.layers if layer.arrays()), self.layers[0])
        if backend is None and device is None:
            device = first.device
        self.to(first.backend if backend is None else backend, device,
                first.dtype if dtype is None else dtype)

    # ------------------------------------------------------------ where it lives

    @property
    def xp(self) -> ModuleType:
        """The Array API namespace the model computes with."""
        return self.layers[0].xp

    @property
    def backend(self) -> str:
        """The name of the model's backend (``"numpy"``, ``"torch"``, ...)."""
        return self.layers[0].backend

    @property
    def device(self) -> Any:
        """The device the model's arrays live on (the library's own device object)."""
        return self.layers[0].device

    @property
    def dtype(self) -> Any:
        """The floating dtype of the model's arrays (the library's own dtype object)."""
        return self.layers[0].dtype

    @property
    def n_in(self) -> int:
        """The number of input features (the first fixed-width layer's ``n_in``)."""
        return next(layer.n_in for layer in self.layers if layer.n_in is not None)

    @property
    def n_out(self) -> int:
        """The number of outputs (the last fixed-width layer's ``n_out``)."""
        return next(layer.n_out for layer in reversed(self.layers) if layer.n_out is not None)

    def to(self, backend: str | ModuleType | None = None, device: Any = None,
           dtype: Any = None) -> Sequential:
        """Move every layer, and the optimizer's state, to another backend, device or dtype.

        Arrays go through DLPack where both libraries support it, else through the host
        — once, here, never per step. Moved arrays are copies, so the model never writes
        into memory a caller (or an immutable JAX array) holds. All or nothing.

        Parameters
        ----------
        backend : str, module or None
            The backend (``None``: the same).
        device : str, device object or None
            The device (``None``: the backend's default device).
        dtype : str, dtype or None
            The floating dtype (``None``: the same).

        Returns
        -------
        Sequential
            ``self``.

        Raises
        ------
        ValueError
            A parameter, buffer or optimizer state that does not fit ``dtype`` (the
            model is left as it was), or an unknown device.
        ImportError
            A backend that is not installed, naming the extra to install.
        """
        xp = _backend.get_namespace(self.backend if backend is None else backend)
        dev = _backend.resolve_device(xp, device)
        dt = _backend.resolve_dtype(xp, self.dtype if dtype is None else dtype)
        self.check(placement=False)
        # all or nothing: convert everything first, then set it; moved arrays are copies,
        # so the model never writes into memory a caller (or an immutable JAX array) holds
        with _backend.quiet(_backend.get_namespace("numpy")):  # overflow: reported below
            moved = [layer.moved(xp, dev, dt) if (
                layer.xp is not xp or layer.device != dev or layer.dtype != dt) else None
                for layer in self.layers]
            state = None if self.optimizer is None else self.optimizer.moved_state(
                xp, dev, dt)
        _check_fits(self.layers, moved, self.optimizer, state, xp, dev, dt)
        for layer, values in zip(self.layers, moved):
            if values is not None:
                layer.commit(values)
        if self.optimizer is not None and state is not None:
            self.optimizer.state = state
        return self

    def check(self, placement: bool = True) -> None:
        """Check that the model as it is now is one a step can run on.

        ``layers`` is a non-empty list of distinct layers whose parameters have the
        shapes their sizes say and whose sizes chain, suited to the loss. Only Python
        attributes are read, never the device: this runs at the start of every public
        call, since ``layers``, ``w`` and ``b`` are plain attributes a user may reassign.

        Parameters
        ----------
        placement : bool, default True
            Also check that every parameter is of the model's library, device and dtype.

        Raises
        ------
        ValueError
            Wrong shapes, sizes that do not chain, a layer twice, a loss that does not
            fit.
        TypeError
            Something that is no layer, or an array of another library, device or dtype.
        """
        layers = self.layers
        if not isinstance(layers, list) or not layers:
            raise ValueError("Sequential needs at least one layer")
        seen: dict[int, int] = {}
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not an anyfc.Layer "
                                "(Dense, BatchNorm, ReLU, ...)")
            if id(layer) in seen:
                raise ValueError(
                    f"layer {i} is the same object as layer {seen[id(layer)]}; one layer object "
                    "may appear only once in a model (each use needs its own input, output "
                    f"and gradients): create another {type(layer).__name__} for the second use")
            seen[id(layer)] = i
            for name, shape in layer.shapes().items():
                got = tuple(getattr(getattr(layer, name, None), "shape", ()))
                if got != shape:
                    raise ValueError(
                        f"layers.{i}.{name} has shape {got}, but the layer is {layer!r}, which "
                        f"needs {shape}; build a new {type(layer).__name__} for other sizes")
        sized = [(i, layer) for i, layer in enumerate(layers) if layer.n_in is not None]
        if not sized:
            raise ValueError("a model needs at least one layer of fixed width (Dense, BatchNorm, "
                             "LayerNorm) to know its number of features")
        for (i, below), (j, above) in zip(sized, sized[1:]):
            if below.n_out != above.n_in:
                raise ValueError(
                    f"layer sizes do not chain: layer {i} gives {below.n_out} outputs but "
                    f"layer {j} takes {above.n_in} inputs"
                )
        if isinstance(self.loss, losses.SoftmaxCrossEntropy) and (sized[-1][1].n_out or 0) < 2:
            raise ValueError(
                "softmax_cross_entropy needs at least 2 outputs (one score per class), but the "
                "last layer gives 1; for a yes/no problem with one output unit use "
                "loss='binary_cross_entropy'")
        if placement:
            xp, dev, dt = self.xp, self.device, self.dtype
            for i, layer in enumerate(layers):
                if layer.xp is not xp or layer.device != dev or layer.dtype != dt:
                    raise TypeError(
                        f"layer {i} ({type(layer).__name__}) computes with {layer.backend} "
                        f"{_backend.dtype_name(layer.dtype)} on {layer.device!r}, but the model "
                        f"is {self.backend} {_backend.dtype_name(dt)} on {dev!r}; call "
                        "model.to(...) to move everything")
                for name, p in layer.arrays().items():
                    if (not _backend.is_array(p) or _backend.namespace_of(p) is not xp
                            or _backend.device_of(p) != dev or p.dtype != dt):
                        raise TypeError(
                            f"layers.{i}.{name} is a {type(p).__module__}.{type(p).__name__} "
                            f"({getattr(p, 'dtype', '?')}), but the model is "
                            f"{self.backend} {_backend.dtype_name(dt)} on {dev!r}; assign "
                            "arrays of the model's backend, device and dtype, or call "
                            "model.to(...) to move everything")

    # ------------------------------------------------------------ state

    def architecture(self) -> dict[str, Any]:
        """Return plain data (JSON-able) that rebuilds this model with ``from_architecture``.

        Returns
        -------
        dict
            The loss, the dtype and the layers, the loss and each layer as its
            ``anyfc.registry.spec`` (registered type name and ``config()``).

        Raises
        ------
        anyfc.registry.UnregisteredError
            A layer, activation or loss whose exact class is not registered (a
            ``TypeError``): nothing could rebuild it.
        """
        return {"loss": registry.spec(self.loss), "dtype": _backend.dtype_name(self.dtype),
                "layers": [registry.spec(layer) for layer in self.layers]}

    @classmethod
    def from_architecture(cls, arch: dict[str, Any], arrays: list[Any],
                          backend: str | ModuleType | None = None,
                          device: Any = None) -> Sequential:
        """Build a model from ``architecture()``'s data and its arrays, with no random draw.

        Layers, and the loss, are built by ``anyfc.registry`` from the classes registered
        under their names only. The loss may also be a short name (``"mse"``: formats 1
        and 2), and the format-1 architecture (Dense only, sizes and activation at the
        top of each layer) is read too.

        Parameters
        ----------
        arch : dict
            What ``architecture()`` returns.
        arrays : list of array
            Each layer's parameters then buffers, in order (for Dense models
            ``[w0, b0, w1, ...]``), of any library; copied.
        backend : str, module or None
            The backend (``None``: the default backend).
        device : str, device object or None
            The device (``None``: the backend's default device).

        Returns
        -------
        Sequential
            The model.

        Raises
        ------
        ValueError
            An architecture that does not build, or arrays that do not fit it.
        """
        xp = _backend.get_namespace(backend)
        dev = _backend.resolve_device(xp, device)
        dtype = arch["dtype"]
        built = []
        for i, spec in enumerate(arch["layers"]):
            try:
                built.append(registry.build("layer", _spec(spec), backend=xp, device=dev,
                                            dtype=dtype))
            except ValueError as exc:
                raise ValueError(f"layer {i}: {exc}") from exc
        names = [(i, n) for i, layer in enumerate(built)
                 for n in layer.param_names + layer.buffer_names]
        if len(arrays) != len(names):
            raise ValueError(f"the architecture needs {len(names)} arrays, got {len(arrays)}")
        values = {}
        for (i, name), value in zip(names, arrays):
            shape = built[i].shapes()[name]
            if tuple(getattr(value, "shape", ())) != shape:
                raise ValueError(f"layers.{i}.{name} has shape "
                                 f"{tuple(getattr(value, 'shape', ()))}, but the "
                                 f"architecture says {shape}")
            _backend.check_numeric(value, f"layers.{i}.{name}")
            values[(i, name)] = _backend.to_backend(value, xp, dev, dtype, copy=True)
        _refuse_nonfinite({f"layers.{i}.{name}": v for (i, name), v in values.items()},
                          xp, dev, dtype)
        for (i, name), value in values.items():
            setattr(built[i], name, value)
        _check_values(built)
        return cls(built, losses.get(arch["loss"]))

    def state(self, *, rng: bool = True) -> ModelState:
        """Return the model's state as one value.

        Parameters
        ----------
        rng : bool, default True
            Include the random generators' positions.

        Returns
        -------
        anyfc.state.ModelState
            Its parameters, buffers and (with ``rng``) random generators' positions,
            keyed by path (``"layers.0.w"``). The arrays are the live ones; ``.copy()``
            gives copies that later training never changes.
        """
        params: dict[str, Array] = {}
        buffers: dict[str, Array] = {}
        positions: dict[str, Any] = {}
        for i, layer in enumerate(self.layers):
            for name in layer.param_names:
                params[path(i, name)] = getattr(layer, name)
            for name in layer.buffer_names:
                buffers[path(i, name)] = getattr(layer, name)
            if rng:
                generator = layer.generator()
                if generator is not None:
                    positions[layer_path(i)] = generator.snapshot()
        return ModelState(params, buffers, positions)

    def set_state(self, state: ModelState) -> None:
        """Assign ``state``: its arrays themselves, no copy.

        All or nothing: its parameter and buffer paths must be the model's and each
        array of the shape it has, checked before anything is set; generator positions
        are restored where ``state.rng`` has them. Values are not converted or read
        (``load_state_dict`` is the checked way in for outside arrays).

        Parameters
        ----------
        state : anyfc.state.ModelState
            A state of this model: ``state().copy()``, or a compiled step's results.

        Raises
        ------
        TypeError
            ``state`` is no ``ModelState``.
        ValueError
            Paths or shapes that are not the model's.
        """
        if not isinstance(state, ModelState):
            raise TypeError(f"set_state needs an anyfc.state.ModelState (model.state()), "
                            f"got {type(state).__name__}")
        shapes = {path(i, name): shape for i, layer in enumerate(self.layers)
                  for name, shape in layer.shapes().items()}
        current = self.state(rng=False)
        for group, given, have in (("parameters", state.params, current.params),
                                   ("buffers", state.buffers, current.buffers)):
            if set(given) != set(have):
                raise ValueError(
                    f"the state's {group} do not match the model: missing "
                    f"{sorted(set(have) - set(given))}, unexpected "
                    f"{sorted(map(str, set(given) - set(have)))}")
            for key, value in given.items():
                if tuple(getattr(value, "shape", ())) != shapes[key]:
                    raise ValueError(f"{key} has shape {tuple(getattr(value, 'shape', ()))}, "
                                     f"but the model's is {shapes[key]}")
        generators = self.generators()
        unknown = sorted(set(state.rng) - set(generators))
        if unknown:
            raise ValueError(f"the state has generator positions for {unknown}, which draw "
                             "no random numbers in this model")
        for key, value in (*state.params.items(), *state.buffers.items()):
            position, name = split_path(key)
            setattr(self.layers[position], name, value)
        for key, snapshot in state.rng.items():
            generators[key].restore(snapshot)

    def generators(self) -> dict[str, Any]:
        """Return the random generators of the layers that draw (dropout).

        Created where needed: their state is part of ``state()`` and threads through a
        compiled step (JAX keys).

        Returns
        -------
        dict
            ``{layer path: generator}``.
        """
        out = {}
        for i, layer in enumerate(self.layers):
            generator = layer.generator()
            if generator is not None:
                out[layer_path(i)] = generator
        return out

    def state_dict(self, copy: bool = False) -> dict[str, Array]:
        """Return the parameters and buffers by path.

        Parameters
        ----------
        copy : bool, default False
            Give copies on the same device, which later training never changes, instead
            of the live arrays (which training updates in place).

        Returns
        -------
        dict
            ``{"layers.0.w": array, "layers.0.b": array, "layers.1.running_mean": ...}``,
            arrays of the model's backend.
        """
        state = self.state(rng=False)
        return (state.copy() if copy else state).arrays()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Set every parameter and buffer from ``state_dict``.

        All or nothing: names, shapes, types and finiteness are checked and every array
        is copied to the model's backend, device and dtype before any parameter changes.
        The model owns the copies, so training never writes into the caller's arrays.

        Parameters
        ----------
        state_dict : mapping
            ``{path: array}`` as ``state_dict()`` gives, arrays of any library.

        Raises
        ------
        ValueError
            A missing, extra or wrong-shaped entry, or values not finite or refused by
            a layer (a negative running variance); the model is unchanged.
        TypeError
            Not a mapping, or non-numeric arrays.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict needs a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        self.check()
        current = self.state(rng=False)
        expected = current.arrays()
        missing = sorted(set(expected) - set(state_dict))
        extra = sorted(map(str, set(state_dict) - set(expected)))
        if missing or extra:
            raise ValueError(f"state_dict does not match the model: missing {missing}, "
                             f"unexpected {extra}")
        for key, have in expected.items():
            shape = tuple(getattr(state_dict[key], "shape", ()))
            if shape != tuple(have.shape):
                raise ValueError(f"{key} has shape {shape}, but the model's is "
                                 f"{tuple(have.shape)}")
            _backend.check_numeric(state_dict[key], key)
        new = {key: _backend.to_backend(state_dict[key], self.xp, self.device, self.dtype,
                                        copy=True) for key in expected}
        bad = [key for key, value in new.items()
               if not _backend.all_finite(self.xp, self.device, [value])]
        if bad:
            raise ValueError(f"{bad[0]} holds NaN or infinity; the model is unchanged")
        _check_values(self.layers, lambda k, layer: {
            name: new[path(k, name)] for name in layer.arrays()},
            "; the model is unchanged")
        self.set_state(ModelState({k: new[k] for k in current.params},
                                  {k: new[k] for k in current.buffers}))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save architecture, weights and optimizer state to ``path``.

        Atomically (a temporary file beside it, then renamed), pickle-free, checked
        first; the format is ``anyfc.checkpoint``'s. ``anyfc.load`` reads it back.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (``.npz`` by convention); its folder must exist.

        Raises
        ------
        anyfc.checkpoint.CheckpointError
            What ``load`` would refuse, or a destination that cannot be written (a
            ``ValueError``), before the file is touched.
        anyfc.registry.UnregisteredError
            A layer, activation, loss or optimizer of an unregistered class.
        """
        self.check()
        self.check_settings()
        if self.optimizer is not None:
            self.optimizer.check_settings()
        checkpoint.write(path, self.architecture(), self.state_dict(), self.optimizer,
                         {"backend": self.backend, "device": str(self.device)},
                         {k: g.position() for k, g in self.generators().items()})

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str | ModuleType | None = None,
             device: Any = None, dtype: Any = None) -> Sequential:
        """Load a model saved by ``save``, with its optimizer, so ``fit`` continues.

        The file is read as untrusted (``anyfc.checkpoint``). ``anyfc.load`` is the same.

        Parameters
        ----------
        path : str or os.PathLike
            The checkpoint.
        backend : str, module or None
            The backend to load onto (``None``: the default backend).
        device : str, device object or None
            The device (``None``: the backend's default device).
        dtype : str, dtype or None
            Build the model in this dtype (``None``: the file's), refusing values that do
            not fit it.

        Returns
        -------
        Sequential
            The model, with its optimizer as ``optimizer``.

        Raises
        ------
        FileNotFoundError
            No such file.
        anyfc.checkpoint.CheckpointError
            A bad file (a ``ValueError``), naming the entry.
        """
        if dtype is not None:  # checked before the file is read
            _backend.resolve_dtype(_backend.get_namespace(backend), dtype)
        saved = checkpoint.read(path)
        architecture = saved.architecture if dtype is None else dict(
            saved.architecture, dtype=_backend.dtype_name(dtype))  # built in it directly
        try:
            model = cls.from_architecture(architecture, saved.arrays, backend, device)
        except (TypeError, ValueError) as exc:  # sizes that do not chain, a loss that does
            # not fit the last layer, ...: the layers' own checks, on the file's architecture
            raise checkpoint.load_failure(path, f"{checkpoint.META_KEY}.layers",
                                          str(exc)) from exc
        if saved.optimizer is not None:
            saved.optimizer.load_state_dict(saved.optimizer_state, model.xp, model.device,
                                            model.dtype)
            try:
                _refuse_nonfinite({f"optimizer state {key}.{slot}": v
                                   for key, slots in saved.optimizer.state.items()
                                   for slot, v in slots.items()},
                                  model.xp, model.device, model.dtype)
            except ValueError as exc:
                raise checkpoint.load_failure(path, "optimizer", str(exc)) from exc
            model.optimizer = saved.optimizer
        generators = model.generators()
        for key, position in saved.rng.items():  # where the kinds of generator match
            if key not in generators:
                raise checkpoint.load_failure(path, f"{checkpoint.META_KEY}.rng.{key}",
                                              "names a layer that draws no random numbers")
            try:
                generators[key].set_position(position)
            except ValueError as exc:
                raise checkpoint.load_failure(path, f"{checkpoint.META_KEY}.rng.{key}",
                                              str(exc)) from exc
        return model

    # ------------------------------------------------------------ the math

    def forward(self, x: Array, training: bool = True) -> Array:
        """Compute the network's raw output (logits for the classification losses).

        Parameters
        ----------
        x : array
            A batch, of the model's library, device and dtype.
        training : bool, default True
            In training each layer keeps what its backward pass needs; with ``False``
            nothing is kept on the layers (inference, safe from many threads at once).

        Returns
        -------
        array
            The last layer's output.
        """
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_y: Array) -> None:
        """Back-propagate ``∂E/∂y`` through every layer, top down, setting their gradients.

        Each layer is called as ``layer.backward(grad_y, need_grad_x=...)``; the first
        layer computes no ``∂E/∂x`` (``need_grad_x=False``: nobody needs it).

        Parameters
        ----------
        grad_y : array
            ``∂E/∂y`` for the output of the last training ``forward``.
        """
        for i in range(len(self.layers) - 1, -1, -1):
            grad_y = self.layers[i].backward(grad_y, need_grad_x=i > 0)

    def train_step(self, x: Array, t: Array, optimizer: optimizers.Optimizer) -> Array:
        """Train on one mini-batch: forward, loss, backward, update.

        Where the backend compiles (JAX), the same code is traced once per optimizer
        and batch shape and then runs as one compiled function (``anyfc.training.step``).

        Parameters
        ----------
        x : array
            The batch's inputs, of the model's library, device and dtype.
        t : array
            The batch's targets (labels, one-hot rows or values), on the same device.
        optimizer : anyfc.optimizers.Optimizer
            The optimizer that takes the step.

        Returns
        -------
        array
            The batch's loss, a 0-d array on the model's device.
        """
        return step.train_step(self, x, t, None, optimizer)[0]

    # ------------------------------------------------------------ training

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        optimizer: optimizers.Optimizer | str | None = None,
        validation_data: tuple[Any, Any] | None = None,
        validation_split: float = 0.0,
        shuffle: bool | str = True,
        seed: Any = None,
        verbose: int = 1,
        strategy: str = "auto",
        callbacks: Sequence[Callback] | None = None,
        class_weight: dict[int, float] | str | None = None,
        sample_weight: Any = None,
        metrics: Sequence[Any] | None = None,
        merge_last: bool = False,
    ) -> History:
        """Train for ``epochs`` passes (default 1) over ``(X, y)`` in mini-batches.

        Every argument is checked before anything changes; an epoch that raises or
        diverges is undone (``anyfc.training.loop``), so the model and its optimizer keep
        their state from before that epoch.

        Parameters
        ----------
        X : array-like
            The inputs, one sample per row: an array of any supported library (or nested
            lists), moved to the model's backend and device once; or a Dask array larger
            than memory (see ``strategy``).
        y : array-like
            The targets: class labels ``0..n-1`` or one-hot rows for
            ``softmax_cross_entropy``, 0/1 values for ``binary_cross_entropy``, values
            for ``mean_squared_error``.
        epochs : int, default 1
            Passes over the data (0 trains nothing).
        batch_size : int, default 32
            Rows per mini-batch.
        optimizer : anyfc.optimizers.Optimizer or str, optional
            Default: the one this model last trained with, else ``Adam()``; its learning
            rate may be a schedule (``anyfc.schedules``).
        validation_data : tuple, optional
            ``(X, y)`` held out, scored after each epoch (``val_`` metrics).
        validation_split : float, default 0
            Or the last fraction of the rows (before shuffling) held out, as in Keras.
        shuffle : bool or str, default True
            Shuffle the rows each epoch; ``"cumulative"`` permutes the previous epoch's
            order each epoch, as scikit-learn's MLP (in-memory data).
        seed : int, numpy.random.Generator or numpy.random.RandomState, optional
            Fixes the shuffling (default: from ``anyfc.set_seed``'s stream).
        verbose : int, default 1
            0 silent, 1 a progress bar per epoch (where the output is a terminal), 2 one
            line per epoch.
        strategy : str, default "auto"
            For Dask arrays: ``"auto"`` streams them a chunk at a time to a model on any
            other backend; ``"data_parallel"`` computes each step's gradients chunk by
            chunk where the chunks live (Dask workers) and adds them up
            (``anyfc.training.data``).
        callbacks : sequence of anyfc.callbacks.Callback, optional
            Early stopping, checkpoints, learning-rate control, CSV logs, or your own
            ``Callback`` subclasses.
        class_weight : dict or "balanced", optional
            ``{class: weight}``, or ``"balanced"`` (``n / (n_classes · count_c)``),
            weighting each row's loss; multiplies ``sample_weight``. Class weights apply
            to the training rows only: with ``validation_split`` the held-out rows keep
            their ``sample_weight`` but get no class weight (``val_loss`` is what
            ``validation_data`` on those rows gives), and ``"balanced"`` counts the
            training rows alone, as Keras does.
        sample_weight : array-like, optional
            One weight per row. The loss is ``(1/n) Σ_k w_k e_k``, as Keras's; the
            product of the weights is checked in the model's dtype (finite, ≥ 0, not
            all 0).
        metrics : sequence, optional
            What to report beside the loss, by name (``"accuracy"``,
            ``"top_k_accuracy"``, ``"precision"``, ``"recall"``, ``"f1"``,
            ``"roc_auc"``, ``"mae"``, ``"mse"``, ``"rmse"``, ``"r2"``) or as your own
            function ``f(y_true, y_pred)`` (``anyfc.metrics``); default accuracy, or MAE
            and R².
        merge_last : bool, default False
            A last batch smaller than a layer needs (BatchNorm: 2 rows) joins the batch
            before it, instead of the fit being refused (in-memory data).

        Returns
        -------
        History
            The per-epoch metrics (``loss``, and ``accuracy`` or ``mae``/``r2``, and
            their ``val_`` twins) and learning rates.

        Raises
        ------
        ValueError
            Data or arguments that do not fit (the Errors page of the documentation
            lists them), before anything changes.
        TypeError
            Data of the wrong kind (strings, complex numbers, masked arrays).
        FloatingPointError
            Training diverged, naming the epoch and the learning rate; the model is back
            where that epoch started.
        """
        return loop.fit(self, X, y, epochs=epochs, batch_size=batch_size,
                        optimizer=optimizer, validation_data=validation_data,
                        validation_split=validation_split, shuffle=shuffle, seed=seed,
                        verbose=verbose, strategy=strategy, callbacks=callbacks,
                        class_weight=class_weight, sample_weight=sample_weight,
                        metrics=metrics, merge_last=merge_last)

    def adopt(self, opt: optimizers.Optimizer) -> dict[str, Any]:
        """Return ``opt``'s state checked against this model and moved to where it lives.

        Not yet set: ``fit`` commits it once everything is checked.

        Parameters
        ----------
        opt : anyfc.optimizers.Optimizer
            An optimizer, fresh or used with this model.

        Returns
        -------
        dict
            The optimizer's state, ``{path: {slot: array}}``, on the model's backend,
            device and dtype.

        Raises
        ------
        ValueError
            State for other parameters (the same paths and shapes are needed): the
            optimizer was used with another model.
        """
        params = self.state(rng=False).params
        for key, values in opt.state.items():
            for slot, value in values.items():
                p = params.get(key)
                if p is None or tuple(value.shape) != tuple(p.shape):
                    raise ValueError(
                        f"the optimizer's state {key}.{slot} (shape {tuple(value.shape)}) does "
                        f"not fit this model's parameters: the optimizer was used with "
                        f"another model; pass a new one (e.g. {type(opt).__name__}"
                        f"(**old.config())) or reset its state")
        return opt.moved_state(self.xp, self.device, self.dtype)

    def check_min_batch(self, smallest: int, why: str) -> None:
        """Refuse, before training, batches smaller than a layer needs (BatchNorm: 2).

        Parameters
        ----------
        smallest : int
            The fewest rows a training batch of the fit will have.
        why : str
            Where that batch comes from, for the message (``{smallest}`` in it is filled
            in).

        Raises
        ------
        ValueError
            A layer needs more rows, naming it.
        """
        for i, layer in enumerate(self.layers):
            if smallest and smallest < layer.min_batch:
                raise ValueError(f"layer {i} ({type(layer).__name__}) needs at least "
                                 f"{layer.min_batch} rows per training batch, but " +
                                 why.format(smallest=smallest))

    def check_values(self) -> None:
        """Check that each layer's values are ones it accepts (a running variance ≥ 0, ...).

        Raises
        ------
        ValueError
            Values a layer refuses, naming the layer.
        """
        _check_values(self.layers)

    def check_settings(self) -> None:
        """Check that every layer's and the loss's settings are still ones their classes accept.

        A setting may have been changed since construction (say ``rate = 1.5``, or
        ``loss.reduction = "mean"``): ``Layer.check_settings``, ``Loss.check_settings``.
        Reads Python attributes only: ``fit``, ``save``, ``predict``, ``evaluate`` and
        ``anyfc.onnx.export`` call it first (``fit`` and ``save`` also
        ``Optimizer.check_settings``).

        Raises
        ------
        ValueError
            A bad setting, naming the layer (or the loss) and the setting.
        """
        for i, layer in enumerate(self.layers):
            try:
                layer.check_settings()
            except ValueError as exc:  # "Dropout has a bad setting: ..."
                raise ValueError(f"layer {i} ({type(layer).__name__}) has a bad setting: "
                                 f"{str(exc).partition(': ')[2]}") from None
        self.loss.check_settings()

    def forget(self) -> None:
        """Drop what the layers kept for backward (it can be large)."""
        for layer in self.layers:
            layer.forget()

    # ------------------------------------------------------------ copies and pickles

    def __copy__(self) -> Any:
        """A shallow copy sharing the arrays (``copy.deepcopy`` and pickle copy them)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin

    def __getstate__(self) -> dict[str, Any]:
        """Everything but ``predict``'s cached plan (it holds modules)."""
        state = dict(self.__dict__)
        state.pop("_plan", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """After unpickling (or ``copy.deepcopy``): the layers came back where they were
        (``Layer.__setstate__``); the optimizer's state, which travels on the host,
        joins them."""
        self.__dict__.update(state)
        if self.optimizer is not None:
            self.optimizer.state = self.adopt(self.optimizer)

    # ------------------------------------------------------------ inference

    @staticmethod
    def _batches(X: Array, batch_size: int | None) -> Iterable[tuple[int, Array]]:
        """``(start, rows)`` of ``X`` in batches of ``batch_size`` (checked by the caller;
        ``None``: all rows at once)."""
        n = X.shape[0]
        step = n if batch_size is None else batch_size
        for start in range(0, n, step):
            yield start, X[start:min(start + step, n), ...]

    def predict(self, X: Any, *, batch_size: int | None = 1024) -> Array:
        """Predict: class probabilities, or the raw output for regression.

        Keeps nothing on the model: safe from many threads at once. The model's checks
        (``check``, ``check_settings``) run again only when something they read has
        changed since the last call; an array of the model's own library, device and
        dtype is checked for its shape and finiteness only.

        Parameters
        ----------
        X : array-like
            The inputs, of any supported library (or nested lists), moved to the
            model's backend and device once; or a Dask array.
        batch_size : int or None, default 1024
            Rows per forward pass (``None``: all at once).

        Returns
        -------
        array
            Softmax or sigmoid probabilities for the classification losses, the raw
            output for ``mean_squared_error``; on the model's backend and device. For a
            Dask array, a lazy Dask array computed chunk by chunk (in parallel on Dask's
            workers).
        """
        batch_size = _validation.batch_size(batch_size, allow_none=True)
        plan = self._inference_plan()
        x = plan.admit(X)
        if x is None:  # another library, dtype or device, a list, a bad array: the full way
            if _data.streams(self, X):
                dask_xp = _dask.namespace()
                return _dask.predict_lazy(
                    self, _validation.inputs(X, dask_xp, "cpu", self.dtype, self.n_in))
            x = _validation.inputs(X, plan.xp, plan.device, plan.dtype, self.n_in)
        # a forward of the model's own (a subclass's, or one set on the instance) runs as
        # it is; anyfc's runs each layer's ``infer`` on the checked rows
        forward = (self.forward if "forward" in self.__dict__
                   or type(self).forward is not Sequential.forward else None)
        if plan.scoped:
            with _backend.precision_scope(plan.xp, plan.device):  # anyfc's, as in training
                return plan.run(x, batch_size, forward)
        return plan.run(x, batch_size, forward)

    def _inference_plan(self) -> _Plan:
        """The model's ``_Plan``, checked again (``check``, ``check_settings``) and built
        anew when anything it depends on has changed."""
        plan = self.__dict__.get("_plan")
        if plan is not None and plan.holds(self):
            return plan
        self.check()
        self.check_settings()  # a setting reassigned since (eps < 0, alpha = inf)
        plan = _Plan(self)
        if plan.marks is not None:
            self._plan = plan  # one assignment: safe from other threads
        return plan

    def evaluate(self, X: Any, y: Any, *, batch_size: int | None = 1024,
                 sample_weight: Any = None,
                 metrics: Sequence[Any] | None = None) -> dict[str, float]:
        """Score the model on ``(X, y)``: the loss and the metrics.

        Dask arrays are streamed a chunk at a time. Keeps nothing on the model.

        Parameters
        ----------
        X : array-like
            The inputs, as for ``fit``.
        y : array-like
            The targets, as for ``fit``.
        batch_size : int or None, default 1024
            Rows per forward pass (``None``: all at once).
        sample_weight : array-like, optional
            One weight per row, weighting the loss.
        metrics : sequence, optional
            As in ``fit``.

        Returns
        -------
        dict
            ``{"loss": ..., "accuracy": ...}`` for the classification losses,
            ``{"loss": ..., "mae": ..., "r2": ...}`` for regression (R² averaged over
            outputs, as scikit-learn's ``r2_score``), or the loss and ``metrics``;
            Python floats.
        """
        return loop.evaluate(self, X, y, batch_size=batch_size, sample_weight=sample_weight,
                             metrics=metrics)

    def summary(self, file: Any = None) -> None:
        """Print the layers with their output shapes and parameter counts.

        Then the totals and where the model lives (backend, device, dtype, loss).

        Parameters
        ----------
        file : file-like, optional
            Where to print (default: standard output).
        """
        rows = [("#", "layer", "output shape", "params")]
        width, total, buffers = None, 0, 0
        for i, layer in enumerate(self.layers):
            width = layer.n_out if layer.n_out is not None else width
            shapes = layer.shapes()
            count = sum(_size(shapes[name]) for name in layer.param_names)
            buffers += sum(_size(shapes[name]) for name in layer.buffer_names)
            total += count
            rows.append((str(i), _short(layer), f"(None, {width})", f"{count:,}"))
        cols = [max(len(r[k]) for r in rows) for k in range(4)]
        line = "-" * (sum(cols) + 6)
        out = [f"Sequential: {self.backend} {_backend.dtype_name(self.dtype)} on "
               f"{self.device!r}, loss {self.loss.name}", line]
        for k, r in enumerate(rows):
            out.append(f"{r[0]:>{cols[0]}}  {r[1]:<{cols[1]}}  {r[2]:<{cols[2]}}  "
                       f"{r[3]:>{cols[3]}}")
            if k == 0:
                out.append(line)
        out += [line, f"Total parameters: {total:,} (trainable); buffers: {buffers:,} values"]
        print("\n".join(out), file=file if file is not None else sys.stdout)

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n    {inner}\n], loss={self.loss.name!r})"


def _own(obj: Any) -> bool:
    """Whether ``obj`` is of one of anyfc's own classes (whose settings are numbers,
    strings and anyfc objects, so their identity says whether they changed)."""
    return type(obj).__module__.startswith("anyfc.")


class _Plan:
    """What ``predict`` needs of a model that stays the same from call to call — its
    namespace, device, dtype and width, the array type of its parameters, whether the
    precision scope sets anything — and the marks that say it still holds: the layer
    objects, each layer's attributes (all but what a training forward keeps for
    backward and the gradients), each activation's and the loss's, compared by
    identity, and each parameter's shape and dtype (which NumPy can change in place).
    ``marks`` is ``None`` when a layer or activation is of another class (your own):
    its settings may hang on more than its attributes, so such a model is checked at
    every call. A plan never changes; a model's is replaced whole (thread-safe)."""

    __slots__ = ("layers", "loss", "marks", "arrays", "xp", "device", "dtype", "n_in",
                 "array_type", "scoped")

    def __init__(self, model: Sequential) -> None:
        self.layers = model.layers
        self.loss = model.loss
        xp = self.xp = model.xp
        self.device, self.dtype, self.n_in = model.device, model.dtype, model.n_in
        first = next((a for layer in model.layers for a in layer.arrays().values()), None)
        self.array_type = type(first) if first is not None else None
        self.scoped = _backend.sets_anything(xp, self.device)
        self.arrays = tuple((layer, name, tuple(value.shape), value.dtype)
                            for layer in model.layers
                            for name, value in layer.arrays().items())
        marks: list[Any] = [(tuple(model.layers), len(model.layers))]
        objects: list[Any] = [model.loss]
        for layer in model.layers:
            objects.append(layer)
            objects += [v for v in vars(layer).values()
                        if isinstance(v, activations.Activation)]
        for obj in objects:
            if not _own(obj):
                self.marks = None
                return
            skip = {"_placed"}
            if isinstance(obj, Layer):
                skip.update(obj.cache_names)
                skip.update(f"grad_{name}" for name in obj.param_names)
            attributes = vars(obj)
            names = tuple(k for k in attributes if k not in skip)
            marks.append((obj, names, len(attributes), tuple(attributes[k] for k in names)))
        self.marks = tuple(marks)

    def holds(self, model: Sequential) -> bool:
        """Whether nothing the plan (and the checks before it) read has changed."""
        marks = self.marks
        layers = model.layers
        if marks is None or layers is not self.layers or model.loss is not self.loss:
            return False
        objects, count = marks[0]
        if len(layers) != count or not all(map(operator.is_, layers, objects)):
            return False
        try:
            for obj, names, size, values in marks[1:]:
                attributes = obj.__dict__
                if len(attributes) != size or not all(map(
                        operator.is_, map(attributes.__getitem__, names), values)):
                    return False
        except KeyError:
            return False
        for layer, name, shape, dtype in self.arrays:
            value = getattr(layer, name)
            if value.dtype != dtype or tuple(value.shape) != shape:
                return False
        return True

    def admit(self, X: Any) -> Array | None:
        """``X`` itself when it is an array of the model's own type, dtype and device,
        2-D with the model's width, not empty and finite; else ``None`` (the caller takes
        the full way, which converts, or names what is wrong). Finiteness is one
        reduction: a sum is finite only when every element is (a sum that overflows
        sends ``X`` the full way, whose exact check passes it)."""
        if type(X) is not self.array_type or X.dtype != self.dtype or getattr(
                X, "requires_grad", False):  # a torch graph is cut on the full way
            return None
        shape = X.shape
        if len(shape) != 2 or shape[1] != self.n_in or type(shape[0]) is not int or not (
                shape[0]):  # Dask's unknown row count is NaN: the full way names it
            return None
        if _backend.device_of(X) != self.device:
            return None
        if not math.isfinite(_backend.to_float(_backend.total(X))):
            return None
        return X

    def run(self, x: Array, batch_size: int | None, forward: Any = None) -> Array:
        """The model's output for checked rows ``x``, ``batch_size`` rows at a time:
        ``forward(rows, training=False)`` where given, else each layer's ``infer``."""
        xp, layers, output = self.xp, self.layers, self.loss.output
        n = x.shape[0]
        if batch_size is None or n <= batch_size:
            if forward is not None:
                return output(xp, forward(x, training=False))
            for layer in layers:
                x = layer.infer(x)
            return output(xp, x)
        out = []
        for start in range(0, n, batch_size):
            xb = x[start:min(start + batch_size, n), ...]
            if forward is not None:
                xb = forward(xb, training=False)
            else:
                for layer in layers:
                    xb = layer.infer(xb)
            out.append(output(xp, xb))
        return xp.concat(out, axis=0)


def _check_fits(layers: list[Layer], moved: list[Any], optimizer: Any, state: Any,
                xp: ModuleType, device: Any, dtype: Any) -> None:
    """A ValueError naming the first array whose values do not fit ``dtype`` (finite
    before the conversion, not after: a weight of 1e39 into float32), before ``to``
    changes anything. One reduction per array and one read on success."""
    new: list[tuple[str, Any, Any]] = []
    for i, (layer, values) in enumerate(zip(layers, moved)):
        if values is not None:
            new += [(f"layers.{i}.{name}", getattr(layer, name), values[name])
                    for name in layer.param_names + layer.buffer_names if name in values]
    if state is not None and optimizer is not None:
        new += [(f"optimizer state {key}.{slot}", optimizer.state[key][slot], value)
                for key, slots in state.items() for slot, value in slots.items()]
    if _backend.all_finite(xp, device, [value for _, _, value in new]):
        return
    for name, old, value in new:
        if not _backend.all_finite(xp, device, [value]) and _backend.all_finite(
                _backend.namespace_of(old), _backend.device_of(old), [old]):
            top = float(xp.finfo(dtype).max)
            raise ValueError(f"{name} holds values too large for {_backend.dtype_name(dtype)} "
                             f"(|x| > {top:.3g}); the model is left as it was: scale them "
                             "down, or keep the wider dtype")


def _refuse_nonfinite(arrays: dict[str, Array], xp: ModuleType, device: Any,
                      dtype: Any) -> None:
    """A ValueError naming the first array that is not finite once converted to ``dtype``
    (a float64 value beyond float32's range becomes infinity): one read of the device
    when all are finite."""
    if _backend.all_finite(xp, device, list(arrays.values())):
        return
    for name, value in arrays.items():
        if not _backend.all_finite(xp, device, [value]):
            raise ValueError(f"{name} holds values too large for {_backend.dtype_name(dtype)} "
                             "(they would load as infinity); load it as float64 "
                             "(dtype='float64') or fix the file")


def _warn_if_not_logits(layers: list[Layer], loss: losses.Loss) -> None:
    """A ``UserWarning`` when a classification loss, which takes logits, gets the output
    of an activation (``Dense(64, 10)`` written for logits before 0.2 made the identity
    its default, or a ReLU last): it trains, badly."""
    if not loss.classification:
        return
    last = layers[-1]
    activation = getattr(last, "activation", None)
    if activation is None or isinstance(activation, activations.Identity):
        return
    warnings.warn(
        f"the last layer ({type(last).__name__}) applies {activation.name!r} before "
        f"{loss.name}, which takes logits (it applies the "
        f"{'softmax' if isinstance(loss, losses.SoftmaxCrossEntropy) else 'sigmoid'} "
        "itself); give the last Dense activation='identity' (the default) unless you mean "
        "it", UserWarning, stacklevel=3)


def _check_values(layers: list[Layer], arrays_of: Any = None, after: str = "") -> None:
    """Each layer's ``check_values`` on its arrays (or on ``arrays_of(i, layer)``: values
    about to be set), as a ValueError naming the layer."""
    for i, layer in enumerate(layers):
        problem = layer.check_values(layer.arrays() if arrays_of is None else
                                     arrays_of(i, layer))
        if problem:
            raise ValueError(f"layers.{i}: {problem}{after}")


def _short(layer: Layer) -> str:
    """``Dense(64, 32, relu)``: the layer's type and settings, briefly."""
    def text(value: Any) -> str:
        if isinstance(value, dict) and "name" in value:
            rest = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
            return f"{value['name']}({rest})" if rest else str(value["name"])
        return str(value)

    config = layer.config()
    parts = [text(v) for k, v in config.items() if k in ("n_in", "n_out", "n", "activation")]
    parts += [f"{k}={text(v)}" for k, v in config.items()
              if k not in ("n_in", "n_out", "n", "activation", "init", "seed")]
    return f"{type(layer).__name__}({', '.join(parts)})"


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _spec(spec: Any) -> dict[str, Any]:
    """The registry spec of one layer of an architecture; format 1 (Dense only:
    ``{"n_in", "n_out", "activation", "alpha"?, "init"?}``) is converted."""
    if "type" in spec:
        return spec
    activation: Any = spec["activation"]
    if "alpha" in spec:
        activation = {"name": activation, "alpha": spec["alpha"]}
    config = {"n_in": spec["n_in"], "n_out": spec["n_out"], "activation": activation}
    if "init" in spec:
        config["init"] = spec["init"]
    return {"type": "Dense", "config": config}
