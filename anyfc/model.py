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

import copy
import json
import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from . import _backend, _data, _validation, losses, optimizers
from . import layers as _layers
from .layers import Layer

Array = Any


class History(dict):  # type: ignore[type-arg]
    """Per-epoch metrics returned by ``fit``: ``history["loss"]``, ``["accuracy"]``,
    ``["val_loss"]``, ``["val_accuracy"]`` (accuracy for classification losses)."""

    @property
    def epochs(self) -> int:
        return len(self.get("loss", []))


class Sequential:
    """Layers applied one after the other, trained against ``loss``.

    Parameters
    ----------
    layers : the layers (``anyfc.Layer``s), input first; each fixed width ``n_out`` must
        equal the next fixed ``n_in`` (activation and dropout layers keep any width).
    loss : ``"softmax_cross_entropy"`` (default; the last layer gives logits),
        ``"binary_cross_entropy"`` (logits too) or ``"mean_squared_error"``.
    backend, device, dtype : where the model lives; the layers are moved there.
        ``None`` keeps the first layer's.

    >>> from anyfc import Dense, Sequential
    >>> model = Sequential([Dense(64, 32, seed=0), Dense(32, 10, "identity", seed=1)])
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
        self._check_structure(placement=False)
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
        return self.layers[0].xp

    @property
    def backend(self) -> str:
        return self.layers[0].backend

    @property
    def device(self) -> Any:
        return self.layers[0].device

    @property
    def dtype(self) -> Any:
        return self.layers[0].dtype

    @property
    def n_in(self) -> int:
        return next(layer.n_in for layer in self.layers if layer.n_in is not None)

    @property
    def n_out(self) -> int:
        return next(layer.n_out for layer in reversed(self.layers) if layer.n_out is not None)

    def to(self, backend: str | ModuleType | None = None, device: Any = None,
           dtype: Any = None) -> Sequential:
        """Move every layer, and the optimizer's state, to ``backend``/``device``/
        ``dtype`` (``None``: same backend, its default device, same dtype); returns
        ``self``. Arrays go through DLPack where both libraries support it, else
        through the host — once, here, never per step."""
        xp = _backend.get_namespace(self.backend if backend is None else backend)
        dev = _backend.resolve_device(xp, device)
        dt = _backend.resolve_dtype(xp, self.dtype if dtype is None else dtype)
        self._check_structure(placement=False)
        # all or nothing: convert everything first, then set it
        moved = [layer.moved(xp, dev, dt) if (
            layer.xp is not xp or layer.device != dev or layer.dtype != dt) else None
            for layer in self.layers]
        state = None if self.optimizer is None else self.optimizer.moved_state(xp, dev, dt)
        for layer, values in zip(self.layers, moved):
            if values is not None:
                layer._commit(values)
        if self.optimizer is not None and state is not None:
            self.optimizer.state = state
        return self

    def _check_structure(self, placement: bool = True) -> None:
        """The model as it is now is one a step can run on: ``layers`` is a non-empty list
        of distinct layers whose parameters have the shapes their sizes say and whose
        sizes chain, suited to the loss; with ``placement``, every parameter is of the
        model's library, device and dtype. Only Python attributes are read, never the
        device: this runs at the start of every public call, since ``layers``, ``w`` and
        ``b`` are plain attributes a user may reassign."""
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
        """Plain data (JSON-able) that rebuilds this model with ``from_architecture``:
        the loss, the dtype, and each layer's type name and ``config()``."""
        return {"loss": self.loss.name, "dtype": _backend.dtype_name(self.dtype),
                "layers": [{"type": type(layer).__name__, "config": layer.config()}
                           for layer in self.layers]}

    @classmethod
    def from_architecture(cls, arch: dict[str, Any], arrays: list[Any],
                          backend: str | ModuleType | None = None,
                          device: Any = None) -> Sequential:
        """A model from ``architecture()``'s data and its arrays — each layer's parameters
        then buffers, in order (``_arrays()``; for Dense models ``[w0, b0, w1, ...]``) —
        on ``backend``/``device``, with no random draw. Layer types are looked up in
        ``anyfc.layers.LAYERS`` only. The format-1 architecture (Dense only, sizes and
        activation at the top of each layer) is read too."""
        xp = _backend.get_namespace(backend)
        dev = _backend.resolve_device(xp, device)
        dtype = arch["dtype"]
        specs = [_spec(spec) for spec in arch["layers"]]
        built = []
        for i, (kind, config) in enumerate(specs):
            layer_cls: Any = _layers.LAYERS.get(kind)
            if layer_cls is None:
                raise ValueError(f"layer {i} has type {kind!r}, which is not a known layer "
                                 f"(known: {', '.join(_layers.LAYERS)})")
            built.append(layer_cls(**config, backend=xp, device=dev, dtype=dtype))
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
        for (i, name), value in values.items():
            setattr(built[i], name, value)
        _check_values(built)
        return cls(built, losses.get(arch["loss"]))

    def state_dict(self, copy: bool = False) -> dict[str, Array]:
        """The parameters and buffers by name (``"layers.0.w"``, ``"layers.0.b"``,
        ``"layers.1.running_mean"``, ...), as arrays
        of the model's backend: the live arrays (training updates them in place), or with
        ``copy=True`` copies on the same device that later training never changes."""
        xp = self.xp
        return {f"layers.{i}.{name}": xp.asarray(value, copy=True) if copy else value
                for i, layer in enumerate(self.layers) for name, value in layer.arrays().items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Set every parameter from ``state_dict`` (arrays of any library). All or nothing:
        names, shapes, types and finiteness are checked and every array is copied to the
        model's backend, device and dtype before any parameter changes. The model owns the
        copies, so training never writes into the caller's arrays."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict needs a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        self._check_structure()
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state_dict))
        extra = sorted(map(str, set(state_dict) - set(expected)))
        if missing or extra:
            raise ValueError(f"state_dict does not match the model: missing {missing}, "
                             f"unexpected {extra}")
        for key, current in expected.items():
            shape = tuple(getattr(state_dict[key], "shape", ()))
            if shape != tuple(current.shape):
                raise ValueError(f"{key} has shape {shape}, but the model's is "
                                 f"{tuple(current.shape)}")
            _backend.check_numeric(state_dict[key], key)
        new = {key: _backend.to_backend(state_dict[key], self.xp, self.device, self.dtype,
                                        copy=True) for key in expected}
        bad = [key for key, value in new.items() if not self._finite([value])]
        if bad:
            raise ValueError(f"{bad[0]} holds NaN or infinity; the model is unchanged")
        _check_values(self.layers, lambda k, layer: {
            name: new[f"layers.{k}.{name}"] for name in layer.arrays()},
            "; the model is unchanged")
        for key, value in new.items():
            _, i, name = key.split(".")
            setattr(self.layers[int(i)], name, value)

    def save(self, path: str) -> None:
        """Save architecture, weights and optimizer state to ``path`` (see anyfc.io)."""
        from . import io

        self._check_structure()
        self._check_settings()
        io.save(self, path)

    # ------------------------------------------------------------ the math

    def forward(self, x: Array, training: bool = True) -> Array:
        """The network's raw output (logits for the classification losses). In training
        each layer keeps what its backward pass needs; with ``training=False`` nothing is
        kept on the layers (inference, safe from many threads at once)."""
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_y: Array) -> None:
        """Back-propagate ``∂E/∂y`` through every layer, top down, setting their
        gradients (the first layer computes no ``∂E/∂x``: nobody needs it)."""
        for i in range(len(self.layers) - 1, -1, -1):
            grad_y = self.layers[i].backward(grad_y, need_grad_x=i > 0)

    def train_step(self, x: Array, t: Array, optimizer: optimizers.Optimizer) -> Array:
        """One mini-batch: forward, loss, backward, update. Returns the loss (0-d).

        Where the backend compiles (JAX), the same code is traced once per optimizer
        and batch shape and then runs as one compiled function.
        """
        return self._train_step(x, t, optimizer)[0]

    def _train_step(self, x: Array, t: Array,
                    optimizer: optimizers.Optimizer) -> tuple[Array, Array]:
        """``train_step``, also returning the network's output (for the accuracy)."""
        compiled = self._compiled_step(optimizer)
        if compiled is None:
            return self._step(x, t, optimizer)
        keys = [r.state for r in self._generators()]
        # the step count goes in as a float: an int would be a 32-bit integer under JAX's
        # default mode and overflow past 2**31 - 1 steps
        params, buffers, keys, state, e, y = compiled(
            self._params(), self._buffers(), keys, optimizer.state, float(optimizer.t + 1),
            x, t)
        self._set_params(params)
        self._set_buffers(buffers)
        for generator, key in zip(self._generators(), keys):
            generator.state = key
        optimizer.state, optimizer.t = state, optimizer.t + 1
        self._forget()
        return e, y

    def _step(self, x: Array, t: Array,
              optimizer: optimizers.Optimizer) -> tuple[Array, Array]:
        y = self.forward(x)
        e = self.loss.forward(y, t)
        self.backward(self.loss.backward())
        optimizer.step(self.layers)
        buffers = self._buffers()
        if buffers and _backend.is_lazy(buffers[0]):  # Dask: no graph growing step by step
            self._set_buffers(_backend.materialize(buffers))
        return e, y

    def _slots(self, kind: str) -> list[tuple[Layer, str]]:
        """(layer, attribute) of every parameter (``kind="param"``), buffer (``"buffer"``)
        or both (``"array"``: the order ``from_architecture`` takes)."""
        def names(layer: Layer) -> tuple[str, ...]:
            return {"param": layer.param_names, "buffer": layer.buffer_names,
                    "array": layer.param_names + layer.buffer_names}[kind]
        return [(layer, name) for layer in self.layers for name in names(layer)]

    def _params(self) -> list[Array]:
        return [getattr(layer, name) for layer, name in self._slots("param")]

    def _set_params(self, values: list[Array]) -> None:
        for (layer, name), value in zip(self._slots("param"), values):
            setattr(layer, name, value)

    def _buffers(self) -> list[Array]:
        return [getattr(layer, name) for layer, name in self._slots("buffer")]

    def _set_buffers(self, values: list[Array]) -> None:
        for (layer, name), value in zip(self._slots("buffer"), values):
            setattr(layer, name, value)

    def _arrays(self) -> list[Array]:
        """Every layer's parameters then buffers, in ``from_architecture``'s order."""
        return [getattr(layer, name) for layer, name in self._slots("array")]

    def _generators(self) -> list[Any]:
        """The random generators of the layers that draw (dropout), created where needed,
        whose state a compiled step threads through (JAX keys)."""
        return [layer._generator() for layer in self.layers if hasattr(layer, "_generator")]

    def _signature(self, optimizer: optimizers.Optimizer) -> tuple[Any, ...]:
        """Everything a compiled step closes over: each layer's type and settings (sizes,
        activations and their parameters, rates, ...), the loss, the optimizer and its
        settings, and where the model lives. anyfc's own layers, losses and optimizers are
        fully described by their type and settings, so models alike share one compiled
        step (a grid search compiles once); objects of other classes (your own layers)
        are keyed by identity too, since their behaviour may hang on more than their
        config. A compiled step is reused only while this is unchanged."""
        def ours(obj: Any) -> Any:
            return None if type(obj).__module__.startswith("anyfc.") else id(obj)

        layers = tuple((type(layer), ours(layer),
                        json.dumps(layer.config(), sort_keys=True, default=repr))
                       for layer in self.layers)
        return (layers, type(self.loss), ours(self.loss), type(optimizer), ours(optimizer),
                tuple(sorted(optimizer.config().items())), self.xp, str(self.device),
                _backend.dtype_name(self.dtype))

    def _compiled_step(self, optimizer: optimizers.Optimizer) -> Any:
        """``_step`` as a pure function of (parameters, buffers, random keys, optimizer
        state, step count, x, t), compiled by the backend; ``None`` where the backend
        runs eagerly. Compiled steps are kept process-wide by ``_signature``."""
        # layers and their settings, the loss and hyper-parameters are constants of the
        # compiled function: any change (a new activation, a learning-rate schedule) must
        # compile it again, never be silently ignored
        key = self._signature(optimizer)
        with _STEPS_LOCK:
            found = _STEPS.get(key)
            if found is not None:
                _STEPS.move_to_end(key)
                return found
        if not _backend.compiles(self.xp):
            return None
        # the structure the step is traced from: copies of the layers, loss and optimizer
        # holding settings only (no arrays: the compiled step must not keep them alive)
        template = copy.copy(self)
        template.layers = [copy.copy(layer) for layer in self.layers]
        for layer in template.layers:
            for name in (*layer.param_names, *(f"grad_{p}" for p in layer.param_names),
                         *layer.buffer_names, *layer.cache_names):
                setattr(layer, name, None)
        template.loss = copy.copy(self.loss)
        template.optimizer = None
        opt_template = copy.copy(optimizer)
        opt_template.state = {}

        def pure(params: list[Array], buffers: list[Array], keys: list[Array],
                 state: dict[str, Any], step: Any, x: Array, t: Array) -> tuple[Any, ...]:
            # traced on a shadow of the template (its own layer, loss, generator and
            # optimizer objects), so tracing never puts traced values on a model's layers
            # that predict() in another thread may be reading
            shadow = copy.copy(template)
            shadow.layers = [copy.copy(layer) for layer in template.layers]
            shadow.loss = copy.copy(template.loss)
            shadow._set_params(params)
            shadow._set_buffers(buffers)
            drawing: list[Any] = [layer for layer in shadow.layers
                                  if hasattr(layer, "_generator")]
            for layer, k in zip(drawing, keys):
                layer.rng = layer._generator().with_state(k)
            opt = copy.copy(opt_template)
            opt.state, opt.t = dict(state), step - 1
            e, y = shadow._step(x, t, opt)
            keys_out = [r.state for r in shadow._generators()]
            return shadow._params(), shadow._buffers(), keys_out, opt.state, e, y

        compiled = _backend.compile_step(self.xp, pure)
        with _STEPS_LOCK:
            _STEPS[key] = compiled
            while len(_STEPS) > _MAX_STEPS:
                _STEPS.popitem(last=False)
        return compiled

    # ------------------------------------------------------------ data

    def _inputs(self, X: Any, what: str = "X") -> Array:
        """``X`` checked and moved to the model's backend/device/dtype (one transfer)."""
        return _validation.inputs(X, self.xp, self.device, self.dtype, self.n_in, what)

    def _targets(self, y: Any, n: int, what: str = "y") -> Array:
        """``y`` checked against the loss and moved to the model's device."""
        return _validation.targets(y, self.loss, self.xp, self.device, self.dtype, n,
                                   self.n_out, what)

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
        shuffle: bool = True,
        seed: int | None = None,
        verbose: int = 1,
        strategy: str = "auto",
    ) -> History:
        """Train for ``epochs`` passes over ``(X, y)`` in mini-batches.

        ``X`` and ``y`` may be arrays of any supported library (or nested lists); they
        are moved to the model's backend and device once. ``optimizer`` defaults to the
        one this model last trained with, else ``Adam()``. ``seed`` fixes the shuffling.
        Returns a ``History`` of per-epoch loss (and accuracy, and ``val_`` metrics).

        Dask arrays larger than memory: with ``strategy="auto"`` they are streamed a
        chunk at a time to a model on any other backend; ``strategy="data_parallel"``
        computes each step's gradients chunk by chunk where the chunks live (Dask
        workers) and adds them up. See ``anyfc/_data.py``.
        """
        # every argument is checked, and the data planned, before anything changes
        epochs = _validation.integer(epochs, "epochs", 0)
        batch_size = _validation.integer(batch_size, "batch_size")
        verbose = int(verbose) if isinstance(verbose, bool) else _validation.integer(
            verbose, "verbose", 0)
        if strategy not in ("auto", "data_parallel"):
            raise ValueError(f"unknown strategy {strategy!r}; valid: 'auto', 'data_parallel'")
        rng = _seeded(seed)
        self._check_structure()
        opt = optimizers.get(optimizer if optimizer is not None else self.optimizer)
        opt_state = self._adopt(opt)
        self._check_settings()
        if not self._finite([*self._arrays(), *_state_arrays(opt)]):
            raise ValueError("the model's parameters, buffers or optimizer state hold NaN or "
                             "infinity before training; load or assign finite ones (see "
                             "model.load_state_dict)")
        _check_values(self.layers)
        n, n_batches, batches, step = self._training_plan(X, y, batch_size, shuffle, strategy,
                                                          opt)
        val = None
        if validation_data is not None:
            val_x, val_y = _validation.pair(validation_data, "validation_data")
            val = self._evaluation_plan(val_x, val_y, 1024, "validation X", "validation y")
        previous = self.optimizer
        self.optimizer = opt
        opt.state = opt_state
        history = History(loss=[])
        if self.loss.classification:
            history["accuracy"] = []
        if val is not None:
            history.update({"val_" + k: [] for k in list(history)})
        bar = _Progress(verbose, epochs, n_batches)
        for epoch in range(1, epochs + 1):
            bar.start(epoch)
            snapshot = self._snapshot()
            try:
                total: Any = 0.0
                correct: Any = 0.0
                last: Any = None
                for last in batches(rng):
                    loss_sum, hits = step(*last)
                    total, correct = _backend.materialize([total + loss_sum, correct + hits])
                    bar.batch()
                # the loss of each batch is taken before its update, so the epoch's last
                # update is checked apart: the parameters, the optimizer state and the loss
                # of the last batch under the updated model must all be finite (one read of
                # the device per epoch)
                finite = self._finite([total, self._probe(*last), *self._arrays(),
                                       *_state_arrays(opt)])
            except BaseException:
                self._restore(snapshot)  # an epoch is all or nothing, even when interrupted
                if epoch == 1:  # nothing trained: the model keeps its optimizer, too
                    self.optimizer = previous
                raise
            metrics = self._metrics(total, correct, n)
            if not finite:
                self._restore(snapshot)
                if epoch == 1:
                    self.optimizer = previous
                raise FloatingPointError(
                    f"training diverged in epoch {epoch}: its mean loss was {metrics['loss']}, "
                    "and after its last update the parameters, the optimizer state or the "
                    "loss are no longer all finite; try a lower learning rate (the optimizer "
                    f"has lr={opt.lr}). The model and its optimizer keep their state from "
                    f"before epoch {epoch}."
                )
            if val is not None:
                metrics.update({"val_" + k: v for k, v in self._evaluate(*val).items()})
            for key, value in metrics.items():
                history[key].append(value)
            bar.end(metrics)
        self._forget()
        return history

    def _probe(self, xb: Array, tb: Array) -> Any:
        """The loss of one training batch under the current parameters (0.0 for batches
        that are not on the model's backend: data-parallel row ranges)."""
        if _backend.is_lazy(xb) and not _backend.is_lazy(self._arrays()[0]):
            return 0.0
        return self.loss.value(self.forward(xb, training=False), tb)

    def _adopt(self, opt: optimizers.Optimizer) -> dict[str, Any]:
        """``opt``'s state, checked against this model's parameters and moved to where
        the model lives (not yet set: ``fit`` commits it once everything is checked)."""
        params = {f"{i}.{name}": getattr(layer, name)
                  for i, layer in enumerate(self.layers) for name in layer.param_names}
        for slot, values in opt.state.items():
            for key, value in values.items():
                p = params.get(slot)
                if p is None or tuple(value.shape) != tuple(p.shape):
                    raise ValueError(
                        f"the optimizer's state {slot}.{key} (shape {tuple(value.shape)}) does "
                        f"not fit this model's parameters: the optimizer was used with "
                        f"another model; pass a new one (e.g. {type(opt).__name__}"
                        f"(**old.config())) or reset its state")
        return opt.moved_state(self.xp, self.device, self.dtype)

    def _finite(self, arrays: list[Any]) -> bool:
        """Whether every array (or number) in ``arrays`` is finite: one reduction per
        array on the device, one read of the result."""
        xp = self.xp
        flags = [xp.all(xp.isfinite(a)) if _backend.is_array(a) else
                 xp.asarray(math.isfinite(a), device=self.device) for a in arrays]
        if not flags:
            return True
        return bool(_backend.to_float(xp.all(xp.stack(flags))))

    def _streams(self, X: Any) -> bool:
        """Whether ``X`` is a Dask array to stream to a model that is not on Dask."""
        return _backend.is_lazy(X) and not _backend.is_lazy(self._arrays()[0])

    def _lazy_data(self, X: Any, y: Any, what_x: str = "X",
                   what_y: str = "y") -> tuple[Array, Array]:
        """Dask ``X``/``y`` checked in one pass over the data (lazily cast), with the
        same checks as in-memory data, and chunked alike along rows."""
        dask_xp = _data.namespace()
        X = _validation.inputs(X, dask_xp, "cpu", self.dtype, self.n_in, what_x)
        t = _validation.targets(y, self.loss, dask_xp, "cpu", self.dtype, X.shape[0],
                                self.n_out, what_y)
        return _data.aligned(X, t)

    def _training_plan(self, X: Any, y: Any, batch_size: int, shuffle: bool, strategy: str,
                       opt: optimizers.Optimizer) -> tuple[int, int, Any, Any]:
        """(rows, batches per epoch, batches(rng) -> iterator, step(xb, tb) -> (summed
        loss, hits)) for in-memory, streamed or data-parallel training."""
        xp = self.xp

        def local_step(xb: Array, tb: Array) -> tuple[Array, Any]:
            e, yb = self._train_step(xb, tb, opt)
            hits = self.loss.n_correct(xp, yb, tb)[0] if self.loss.classification else 0.0
            return e * xb.shape[0], hits

        if strategy == "data_parallel":
            if not self._streams(X):
                raise ValueError("strategy='data_parallel' needs X as a Dask array (e.g. "
                                 "dask.array.from_array(X, chunks=...)) and a model that is "
                                 f"not on the dask backend; got {type(X).__name__} and "
                                 f"backend {self.backend!r}")
            _data.check_parallel(self)
            Xd, td = self._lazy_data(X, y)
            n = Xd.shape[0]
            return (n, math.ceil(n / batch_size),
                    lambda rng: _data.row_batches(Xd, td, batch_size, shuffle, rng),
                    lambda xb, tb: _data.parallel_step(self, opt, xb, tb))
        if self._streams(X):
            Xd, td = self._lazy_data(X, y)
            self._check_min_batch([c % batch_size or min(batch_size, c)
                                   for c in Xd.chunks[0] if c], "the Dask chunks "
                                  f"{tuple(Xd.chunks[0])} in batches of {batch_size} leave a "
                                  "batch of {smallest}; rechunk the data or choose another "
                                  "batch_size")
            n_batches = sum(math.ceil(c / batch_size) for c in Xd.chunks[0])
            return (Xd.shape[0], n_batches,
                    lambda rng: _data.stream(Xd, td, self, batch_size, shuffle, rng),
                    local_step)
        X = self._inputs(X)
        t = self._targets(y, X.shape[0])
        n = X.shape[0]

        def in_memory(rng: Any) -> Any:
            order = _backend.from_host(rng.permutation(n), xp, self.device, None) if (
                shuffle) else None
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)  # the standard leaves overshoot undefined
                if order is None:
                    yield X[start:stop, ...], t[start:stop, ...]
                else:
                    idx = order[start:stop]
                    yield xp.take(X, idx, axis=0), xp.take(t, idx, axis=0)

        self._check_min_batch([n % batch_size or min(batch_size, n)],
                              f"{n} rows in batches of {batch_size} leave a last batch of "
                              "{smallest}; choose another batch_size")
        return n, math.ceil(n / batch_size), in_memory, local_step

    def _check_min_batch(self, sizes: list[int], why: str) -> None:
        """Refuse, before training, batches smaller than a layer needs (BatchNorm: 2)."""
        smallest = min(sizes, default=0)
        for i, layer in enumerate(self.layers):
            need = getattr(layer, "min_batch", 1)
            if smallest and smallest < need:
                raise ValueError(f"layer {i} ({type(layer).__name__}) needs at least {need} "
                                 "rows per training batch, but " + why.format(
                                     smallest=smallest))

    def _check_settings(self) -> None:
        """Every layer's settings (changed since construction, say ``rate = 1.5``) are
        still ones its class accepts: the class checks its own ``config()``."""
        for i, layer in enumerate(self.layers):
            try:
                type(layer).array_shapes(layer.config())
            except (TypeError, ValueError) as exc:
                raise ValueError(f"layer {i} ({type(layer).__name__}) has a bad setting: "
                                 f"{exc}") from None

    def _snapshot(self) -> dict[str, Any]:
        """Copies of the parameters, buffers and optimizer state (taken once per epoch, so
        a diverged or interrupted epoch can be undone without a check per batch)."""
        xp = self.xp
        arrays = [xp.asarray(v, copy=True) for v in self._arrays()]
        opt = self.optimizer
        state = {} if opt is None else {
            slot: {k: xp.asarray(v, copy=True) for k, v in values.items()}
            for slot, values in opt.state.items()}
        return {"arrays": arrays, "state": state, "t": None if opt is None else opt.t}

    def _restore(self, snapshot: dict[str, Any]) -> None:
        for (layer, name), value in zip(self._slots("array"), snapshot["arrays"]):
            setattr(layer, name, value)
        if self.optimizer is not None:
            self.optimizer.state, self.optimizer.t = snapshot["state"], snapshot["t"]
        self._forget()

    def _forget(self) -> None:
        """Drop what the layers kept for backward (it can be large)."""
        for layer in self.layers:
            layer.forget()

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
        """Class probabilities (softmax or sigmoid) for the classification losses, the
        raw output for MSE; on the model's backend and device. For a Dask array, a
        lazy Dask array computed chunk by chunk (in parallel on Dask's workers).
        Keeps nothing on the model: safe from many threads at once."""
        batch_size = _validation.batch_size(batch_size, allow_none=True)
        self._check_structure()
        if self._streams(X):
            dask_xp = _data.namespace()
            return _data.predict_lazy(
                self, _validation.inputs(X, dask_xp, "cpu", self.dtype, self.n_in))
        X = self._inputs(X)
        xp = self.xp
        out = [self.loss.output(xp, self.forward(xb, training=False))
               for _, xb in self._batches(X, batch_size)]
        return out[0] if len(out) == 1 else xp.concat(out, axis=0)

    def evaluate(self, X: Any, y: Any, *, batch_size: int | None = 1024) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` (accuracy for classification losses).
        Dask arrays are streamed a chunk at a time. Keeps nothing on the model."""
        batch_size = _validation.batch_size(batch_size, allow_none=True)
        self._check_structure()
        return self._evaluate(*self._evaluation_plan(X, y, batch_size))

    def _evaluation_plan(self, X: Any, y: Any, batch_size: int | None, what_x: str = "X",
                         what_y: str = "y") -> tuple[int, Any]:
        """(rows, batches() -> iterator of (x, t)) for in-memory or streamed data."""
        if self._streams(X):
            Xd, td = self._lazy_data(X, y, what_x, what_y)
            rng = _backend.host_rng(0)
            return Xd.shape[0], lambda: _data.stream(Xd, td, self, batch_size, False, rng)
        X = self._inputs(X, what_x)
        t = self._targets(y, X.shape[0], what_y)
        n = X.shape[0]

        def in_memory() -> Any:
            for start, xb in self._batches(X, batch_size):
                yield xb, t[start:start + xb.shape[0], ...]

        return n, in_memory

    def _evaluate(self, n: int, batches: Any) -> dict[str, float]:
        xp = self.xp
        total: Any = 0.0
        correct: Any = 0.0
        for xb, tb in batches():
            yb = self.forward(xb, training=False)
            total = total + self.loss.value(yb, tb) * xb.shape[0]
            if self.loss.classification:
                correct = correct + self.loss.n_correct(xp, yb, tb)[0]
            total, correct = _backend.materialize([total, correct])
        return self._metrics(total, correct, n)

    def _metrics(self, total: Any, correct: Any, n: int) -> dict[str, float]:
        """Loss and accuracy from device sums over ``n`` samples: the one host read."""
        metrics = {"loss": _backend.to_float(total) / n}
        if self.loss.classification:
            metrics["accuracy"] = _backend.to_float(correct) / _count(self.loss, n, self.n_out)
        return metrics

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n    {inner}\n], loss={self.loss.name!r})"


_STEPS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # signature -> compiled step
_STEPS_LOCK = threading.Lock()
_MAX_STEPS = 64  # the least recently used compiled steps are dropped past this


def _check_values(layers: list[Layer], arrays_of: Any = None, after: str = "") -> None:
    """Each layer's ``check_values`` on its arrays (or on ``arrays_of(i, layer)``: values
    about to be set), as a ValueError naming the layer."""
    for i, layer in enumerate(layers):
        problem = layer.check_values(layer.arrays() if arrays_of is None else
                                     arrays_of(i, layer))
        if problem:
            raise ValueError(f"layers.{i}: {problem}{after}")


def _spec(spec: Any) -> tuple[str, dict[str, Any]]:
    """(layer type, config) of one layer of an architecture; format 1 (Dense only:
    ``{"n_in", "n_out", "activation", "alpha"?, "init"?}``) is converted."""
    if "type" in spec:
        return spec["type"], dict(spec["config"])
    activation: Any = spec["activation"]
    if "alpha" in spec:
        activation = {"name": activation, "alpha": spec["alpha"]}
    config = {"n_in": spec["n_in"], "n_out": spec["n_out"], "activation": activation}
    if "init" in spec:
        config["init"] = spec["init"]
    return "Dense", config


def _seeded(seed: Any) -> Any:
    """The host generator for ``fit``'s shuffling, or a ValueError for a bad seed."""
    try:
        return _backend.host_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"seed must be None, a non-negative integer or a numpy Generator, "
                         f"got {seed!r}") from exc


def _state_arrays(opt: optimizers.Optimizer) -> list[Array]:
    return [value for values in opt.state.values() for value in values.values()]


def _count(loss: losses.Loss, n: int, n_out: int) -> int:
    """How many predictions ``n_correct`` counts over ``n`` samples."""
    return n * n_out if isinstance(loss, losses.BinaryCrossEntropy) else n


class _Progress:
    """A one-line progress bar per epoch (verbose=1), or one line per epoch
    (verbose=2, or verbose=1 when the output is not a terminal). It never reads
    the device: the loss is shown when the epoch ends."""

    def __init__(self, verbose: int, epochs: int, n_batches: int) -> None:
        self.verbose, self.epochs, self.n_batches = verbose, epochs, n_batches
        self.live = verbose == 1 and sys.stdout.isatty()

    def start(self, epoch: int) -> None:
        self.epoch, self.done, self.t0, self.shown = epoch, 0, time.perf_counter(), 0.0

    def batch(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.live and (now - self.shown > 0.1 or self.done == self.n_batches):
            self.shown = now
            width = 30
            filled = width * self.done // self.n_batches
            sys.stdout.write(
                f"\rEpoch {self.epoch}/{self.epochs} [{'=' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.n_batches}")
            sys.stdout.flush()

    def end(self, metrics: dict[str, float]) -> None:
        if not self.verbose:
            return
        text = " - ".join(f"{k}: {v:.4f}" for k, v in metrics.items())
        lead = "\r" if self.live else ""
        seconds = time.perf_counter() - self.t0
        print(f"{lead}Epoch {self.epoch}/{self.epochs} - {seconds:.2f}s - {text}" + " " * 10)
