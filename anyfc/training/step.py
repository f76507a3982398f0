"""One training step on a model: forward, loss, backward, update — eagerly, or as one
compiled function where the backend's step compiler is on (``_backend.set_step_compiler``:
``jax.jit`` for JAX by default, ``torch.compile`` for torch on request).

    y = model.forward(x);  E = loss(y, t[, w]);  model.backward(∂E/∂y);
    E += Σ layer.penalty(1/N)  (L2 terms, gradients added);  optimizer.step

``eager_step`` is the reference and the fallback. The compiled step is the same code
traced into a pure function of (parameters, buffers, random state, optimizer state, step
count, learning rate, x, t, w). It is keyed on everything it closes over
(``signature``: layers and their settings, activations, loss, optimizer class and
settings, backend, device, dtype, the step compiler and the precision); the compiler
itself retraces for a new batch shape. The learning rate and the step count are
*arguments*, so a schedule or a callback that changes the rate never compiles the step
again. Dropout draws inside the step from the threaded key (JAX) or from numbers drawn
eagerly from the layer's own generator (torch.compile: ``StepCompiler.random``);
BatchNorm's running statistics go in and come out as buffers.

Every step runs under anyfc's precision policy (``_backend.precision_scope``: full float32
products unless ``set_precision("high")``); a JAX step records it when traced.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter, OrderedDict
from typing import Any

from .. import _backend, registry
from ..layers import Layer
from ..state import ModelState
from . import compilers
from .protocol import Model

Array = Any

STEPS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # signature -> compiled step
_LOCK = threading.Lock()
MAX_STEPS = 64  # the least recently used compiled steps are dropped past this
TRACES: Counter[str] = Counter()  # backend name -> times a step was traced (tests read it)


def train_step(model: Model, x: Array, t: Array, w: Array | None,
               optimizer: Any) -> tuple[Array, Array]:
    """One mini-batch on ``model``; returns (the batch's mean loss as a 0-d array, the
    network's output). ``w``: per-row loss weights or ``None``."""
    xp, device = model.xp, model.device  # properties: read once
    step = _compiled(model, optimizer, xp, device)
    with _backend.precision_scope(xp, device):
        if step is None:
            return eager_step(model, x, t, w, optimizer)
        generators = model.generators()
        drawn = step.random == "drawn"
        keys = (_draws(model, generators, x) if drawn else
                {k: g.state for k, g in generators.items()})
        current = model.state(rng=False)
        state = optimizer.state
        if not state:  # the state the first step would create, so that step and the next
            # have one input structure and the step compiles once (set only with the
            # step's results, below)
            state = optimizer.initial_states(current.params) or state
        # the step count goes in as a float: an int would be a 32-bit integer under JAX's
        # default mode and overflow past 2**31 - 1 steps; the learning rate is a float too
        params, buffers, keys, state, e, y = step(
            current.params, current.buffers, keys, state,
            float(optimizer.t + 1), float(optimizer.learning_rate()), x, t, w)
    model.set_state(ModelState(params, buffers))
    if not drawn:
        for key, value in keys.items():
            generators[key].state = value
    optimizer.state, optimizer.t = state, optimizer.t + 1
    model.forget()
    return e, y


def _draws(model: Model, generators: dict[str, Any], x: Array) -> dict[str, Array]:
    """The uniform numbers the eager step would draw from each dropout layer's generator
    (by layer path), drawn now, in its order and shapes: a layer that keeps its width
    (``n_out`` None) sees the width of the layer before, a batch of ``x``'s rows."""
    shapes, width = [], x.shape[1]
    for layer in model.layers:
        if layer.generator() is not None:
            shapes.append((x.shape[0], width))
        width = layer.n_out if layer.n_out is not None else width
    return {key: g.uniform(shape, model.dtype)
            for (key, g), shape in zip(generators.items(), shapes)}


class _Drawn:
    """A generator standing in for a dropout layer's inside a compiled step: it hands out
    numbers drawn before the step (``_draws``)."""

    state = None

    def __init__(self, values: Array) -> None:
        self.values = values

    def matches(self, xp: Any, device: Any) -> bool:
        return True

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Array:
        if tuple(shape) != tuple(self.values.shape) or dtype != self.values.dtype:
            raise ValueError(
                f"a layer drew {tuple(shape)} random numbers inside the compiled step, but "
                f"{tuple(self.values.shape)} were drawn for it (a layer that draws numbers "
                "must keep its input's shape); use set_step_compiler(backend, 'eager')")
        values, self.values = self.values, None
        return values


def eager_step(model: Model, x: Array, t: Array, w: Array | None, optimizer: Any,
               lr: Any = None) -> tuple[Array, Array]:
    """The reference step, written once against the model's namespace. The loss's
    value and gradient travel with the step (the loss object keeps nothing)."""
    e, y = gradients(model, x, t, w)
    optimizer.step(model.layers, lr=lr)
    if _backend.is_lazy(e):  # the loss is lazy exactly when the model's arrays are
        _settle(model, optimizer)
    return e, y


def gradients(model: Model, x: Array, t: Array, w: Array | None) -> tuple[Array, Array]:
    """Forward, loss, backward and the layers' penalties (``Layer.penalty``, with
    ``scale = 1/N``, ``N`` the loss's ``normalizer``), leaving every parameter's
    gradient on its layer: (the batch's loss with the penalties, as a 0-d array; the
    network's output). The training step and full-batch solvers (``anyfc.lbfgs``)
    share it."""
    y = model.forward(x)
    loss = model.loss
    e, grad_y = loss.value_and_gradient(y, t, w)
    model.backward(grad_y)
    scale = None
    for layer in model.layers:
        if type(layer).penalty is Layer.penalty:
            continue  # no penalty: nothing to compute, not even the scale
        if scale is None:
            scale = 1.0 / loss.normalizer(y, w)
        term = layer.penalty(scale)
        if term is not None:
            e = e + term
    return e, y


def _settle(model: Model, optimizer: Any) -> None:
    """Lazy arrays (a model on the dask backend) computed now, parameters, buffers and
    optimizer state in one go, so no graph grows from step to step;
    ``_backend.materialize`` decides, and gives eager arrays back as they are."""
    state = model.state(rng=False)
    slots = [(key, name) for key, values in optimizer.state.items() for name in values]
    arrays = [*state.params.values(), *state.buffers.values(),
              *(optimizer.state[key][name] for key, name in slots)]
    settled = _backend.materialize(arrays)
    if not arrays or settled[0] is arrays[0]:
        return
    values = iter(settled)
    model.set_state(ModelState({k: next(values) for k in state.params},
                               {k: next(values) for k in state.buffers}))
    for key, name in slots:
        optimizer.state[key][name] = next(values)


def signature(model: Model, optimizer: Any) -> tuple[Any, ...]:
    """Everything a compiled step closes over: each layer's type and settings (sizes,
    activations and their parameters, rates, ...), the loss and its settings, the
    optimizer and its settings except the learning rate (an argument), where the model
    lives (backend, device, dtype), the step compiler and the precision policy. anyfc's
    own layers, losses and optimizers are fully described by their type and settings, so
    models alike share one compiled step (a grid search compiles once); objects of other
    classes (your own layers) are keyed by identity too, since their behaviour may hang
    on more than their config. (Batch shapes are the compiler's to key on: it traces
    again for a new one.)"""
    xp, device = model.xp, model.device
    return _signature(model, optimizer, xp, device, compilers.step_compiler(xp, device))


def _ours(obj: Any) -> Any:
    if obj is None:
        return None
    return None if type(obj).__module__.startswith("anyfc.") else id(obj)


def _signature(model: Model, optimizer: Any, xp: Any, device: Any,
               compiler: Any) -> tuple[Any, ...]:
    # registry.key: the exact class and the repr of the settings, nested objects (a
    # layer's activation) by their own class (a subclass of ReLU never shares ReLU's step)
    # a layer's seed only starts its generator, whose state goes in as an argument (or
    # its draws do): models alike but for their seeds share one step
    layers = tuple((registry.key(layer, ignore=("seed",)), _ours(layer),
                    _ours(getattr(layer, "activation", None)))
                   for layer in model.layers)
    loss = model.loss
    return (layers, registry.key(loss), _ours(loss), registry.key(optimizer, ignore=("lr",)),
            _ours(optimizer), xp, str(device), _backend.dtype_name(model.dtype), compiler,
            _backend.get_precision())


def compiled(model: Model, optimizer: Any) -> Any:
    """``eager_step`` as a pure function compiled by the backend's step compiler, or
    ``None`` where the backend runs eagerly. Compiled steps are kept process-wide by
    ``signature``; each has ``random``, how its dropout numbers enter: ``"state"``
    (JAX's keys go in and the next come out) or ``"drawn"`` (drawn before the step from
    each layer's own generator, in the eager step's order: compilers that cannot take a
    generator, and libraries whose generators are stateful objects)."""
    return _compiled(model, optimizer, model.xp, model.device)


def _compiled(model: Model, optimizer: Any, xp: Any, device: Any) -> Any:
    compiler = compilers.step_compiler(xp, device)
    if compiler is None:
        return None
    key = _signature(model, optimizer, xp, device, compiler)
    with _LOCK:
        found = STEPS.get(key)
        if found is not None:
            STEPS.move_to_end(key)
            return found
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
    # random state threads through the step only where it is an array (JAX keys);
    # stateful generators (NumPy, torch, CuPy) have their numbers drawn before the step
    drawn = compiler.random == "drawn" or any(
        g.state is None for g in model.generators().values())
    precision = _backend.get_precision()

    def pure(params: dict[str, Array], buffers: dict[str, Array], keys: dict[str, Array],
             state: dict[str, Any], step: Any, lr: Any, x: Array, t: Array,
             w: Array | None) -> tuple[Any, ...]:
        TRACES[backend] += 1  # runs only while tracing
        # traced on a shadow of the template (its own layer, loss, generator and
        # optimizer objects), so tracing never puts traced values on a model's layers
        # that predict() in another thread may be reading
        shadow = copy.copy(template)
        shadow.layers = [copy.copy(layer) for layer in template.layers]
        shadow.loss = copy.copy(template.loss)
        shadow.set_state(ModelState(params, buffers))
        for key, generator in shadow.generators().items():
            layer = shadow.layers[int(key.split(".")[1])]
            layer.set_generator(_Drawn(keys[key]) if drawn else
                                generator.with_state(keys[key]))
        opt = copy.copy(opt_template)
        opt.state, opt.t = dict(state), step - 1
        # the precision is recorded in the traced products (JAX: precision=HIGHEST)
        with _backend.precision_scope(xp, device, precision):
            e, y = eager_step(shadow, x, t, w, opt, lr=lr)
        keys_out = {} if drawn else {k: r.state for k, r in shadow.generators().items()}
        out = shadow.state(rng=False)
        return out.params, out.buffers, keys_out, opt.state, e, y

    compiled = _Compiled(compiler.compile(pure, device), compiler,
                         "drawn" if drawn else "state")
    with _LOCK:
        STEPS[key] = compiled
        while len(STEPS) > MAX_STEPS:
            STEPS.popitem(last=False)
    return compiled


class _Compiled:
    """A compiled step, its compiler, and how its random numbers enter (``random``:
    ``"state"``, the generators' state goes in and out; ``"drawn"``, ``_draws``)."""

    __slots__ = ("fn", "compiler", "random")

    def __init__(self, fn: Any, compiler: Any, random: str) -> None:
        self.fn, self.compiler, self.random = fn, compiler, random

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)
