"""One training step on a model: forward, loss, backward, update — eagerly, or as one
compiled function where the backend compiles (JAX).

    y = model.forward(x);  E = loss(y, t[, w]);  model.backward(∂E/∂y);  optimizer.step

The compiled step is the same code traced once into a pure function of (parameters,
buffers, random keys, optimizer state, step count, learning rate, x, t, w). It is keyed
on everything it closes over (``signature``); the learning rate is an *argument*, so a
schedule or a callback that changes it never compiles the step again.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter, OrderedDict
from typing import Any

from .. import _backend

Array = Any
Model = Any  # a Sequential (not imported: the model imports this module)

STEPS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # signature -> compiled step
_LOCK = threading.Lock()
MAX_STEPS = 64  # the least recently used compiled steps are dropped past this
TRACES: Counter[str] = Counter()  # backend name -> times a step was traced (tests read it)


def train_step(model: Model, x: Array, t: Array, w: Array | None,
               optimizer: Any) -> tuple[Array, Array]:
    """One mini-batch on ``model``; returns (the batch's mean loss as a 0-d array, the
    network's output). ``w``: per-row loss weights or ``None``."""
    step = compiled(model, optimizer)
    if step is None:
        return eager_step(model, x, t, w, optimizer)
    generators = model._generators()
    # the step count goes in as a float: an int would be a 32-bit integer under JAX's
    # default mode and overflow past 2**31 - 1 steps; the learning rate is a float too
    params, buffers, keys, state, e, y = step(
        model._params(), model._buffers(), [g.state for g in generators], optimizer.state,
        float(optimizer.t + 1), float(optimizer.learning_rate()), x, t, w)
    model._set_params(params)
    model._set_buffers(buffers)
    for generator, key in zip(generators, keys):
        generator.state = key
    optimizer.state, optimizer.t = state, optimizer.t + 1
    model._forget()
    return e, y


def eager_step(model: Model, x: Array, t: Array, w: Array | None, optimizer: Any,
               lr: Any = None) -> tuple[Array, Array]:
    """The reference step, written once against the model's namespace."""
    y = model.forward(x)
    e = model.loss.forward(y, t) if w is None else model.loss.forward(y, t, w)
    model.backward(model.loss.backward())
    optimizer.step(model.layers, lr=lr)
    buffers = model._buffers()
    if buffers and _backend.is_lazy(buffers[0]):  # Dask: no graph growing step by step
        model._set_buffers(_backend.materialize(buffers))
    return e, y


def signature(model: Model, optimizer: Any) -> tuple[Any, ...]:
    """Everything a compiled step closes over: each layer's type and settings (sizes,
    activations and their parameters, rates, ...), the loss, the optimizer and its
    settings except the learning rate (an argument), and where the model lives. anyfc's
    own layers, losses and optimizers are fully described by their type and settings, so
    models alike share one compiled step (a grid search compiles once); objects of other
    classes (your own layers) are keyed by identity too, since their behaviour may hang
    on more than their config."""
    def ours(obj: Any) -> Any:
        return None if type(obj).__module__.startswith("anyfc.") else id(obj)

    layers = tuple((type(layer), ours(layer),
                    json.dumps(layer.config(), sort_keys=True, default=repr))
                   for layer in model.layers)
    settings = json.dumps({k: v for k, v in optimizer.config().items() if k != "lr"},
                          sort_keys=True, default=repr)
    return (layers, type(model.loss), ours(model.loss), type(optimizer), ours(optimizer),
            settings, model.xp, str(model.device), _backend.dtype_name(model.dtype))


def compiled(model: Model, optimizer: Any) -> Any:
    """``eager_step`` as a pure function compiled by the backend, or ``None`` where the
    backend runs eagerly. Compiled steps are kept process-wide by ``signature``."""
    key = signature(model, optimizer)
    with _LOCK:
        found = STEPS.get(key)
        if found is not None:
            STEPS.move_to_end(key)
            return found
    if not _backend.compiles(model.xp):
        return None
    # the structure the step is traced from: copies of the model, layers, loss and
    # optimizer holding settings only (no arrays: the compiled step must not keep them
    # alive, nor see a later change to the live objects)
    template = copy.copy(model)
    template.layers = [copy.copy(layer) for layer in model.layers]
    for layer in template.layers:
        for name in (*layer.param_names, *(f"grad_{p}" for p in layer.param_names),
                     *layer.buffer_names, *layer.cache_names):
            setattr(layer, name, None)
    template.loss = copy.copy(model.loss)
    template.optimizer = None
    opt_template = copy.copy(optimizer)
    opt_template.state = {}
    backend = model.backend

    def pure(params: list[Array], buffers: list[Array], keys: list[Array],
             state: dict[str, Any], step: Any, lr: Any, x: Array, t: Array,
             w: Array | None) -> tuple[Any, ...]:
        TRACES[backend] += 1  # runs only while tracing
        # traced on a shadow of the template (its own layer, loss, generator and
        # optimizer objects), so tracing never puts traced values on a model's layers
        # that predict() in another thread may be reading
        shadow = copy.copy(template)
        shadow.layers = [copy.copy(layer) for layer in template.layers]
        shadow.loss = copy.copy(template.loss)
        shadow._set_params(params)
        shadow._set_buffers(buffers)
        drawing: list[Any] = [layer for layer in shadow.layers if hasattr(layer, "_generator")]
        for layer, k in zip(drawing, keys):
            layer.rng = layer._generator().with_state(k)
        opt = copy.copy(opt_template)
        opt.state, opt.t = dict(state), step - 1
        e, y = eager_step(shadow, x, t, w, opt, lr=lr)
        keys_out = [r.state for r in shadow._generators()]
        return shadow._params(), shadow._buffers(), keys_out, opt.state, e, y

    compiled = _backend.compile_step(model.xp, pure)
    with _LOCK:
        STEPS[key] = compiled
        while len(STEPS) > MAX_STEPS:
            STEPS.popitem(last=False)
    return compiled
