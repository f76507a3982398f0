"""Export a trained model to ONNX, to serve it where only an ONNX runtime is installed.

    >>> import anyfc.onnx                                        # doctest: +SKIP
    >>> anyfc.onnx.export(model, "digits.onnx")                  # doctest: +SKIP
    >>> import onnxruntime as ort                                # doctest: +SKIP
    >>> session = ort.InferenceSession("digits.onnx")            # doctest: +SKIP
    >>> probabilities, = session.run(None, {"input": X.astype("float32")})  # doctest: +SKIP

Needs ``pip install 'anyfc[onnx]'`` (``onnx``; ``onnxruntime`` to run the file). Importing
anyfc never imports onnx: ``export`` does, when called.

The graph uses standard ONNX operators only (default domain, opset ``DEFAULT_OPSET``,
at least ``MIN_OPSET``). In float64, where onnxruntime (1.32) has a kernel for only some
opsets (LeakyRelu, Elu, Softplus, Softsign; LayerNormalization is off by ~1e-12), anyfc's
own formula is written in elementary operators instead, so every opset runs:

===================================  =================================================
anyfc                                 ONNX
===================================  =================================================
``Dense`` (``u = x·w + b``)           ``Gemm(x, w, b)`` (``w`` stored n_in × n_out), then
                                      the activation
``relu``, ``sigmoid``, ``tanh``       ``Relu``, ``Sigmoid``, ``Tanh``
``leaky_relu(α)``, ``elu(α)``         ``LeakyRelu(alpha)``, ``Elu(alpha)`` (float64:
                                      ``Max(u, α·u)``, ``Where(u > 0, u, α·(e^u - 1))``)
``softplus``, ``softsign``            ``Softplus``, ``Softsign`` (float64: elementary)
``silu``, ``gelu`` (tanh form)        ``u·Sigmoid(u)``; ``½u(1 + Tanh(k(u + c·u³)))``
``identity``, ``Dropout``             nothing (``Dropout`` is the identity in inference)
activation layers (``ReLU()``, ...)   as the activation
``BatchNorm``                         ``BatchNormalization`` with the running statistics
``LayerNorm``                         ``LayerNormalization(axis=-1)`` (float32, opset
                                      ≥ 17), else its formula with ``ReduceMean``
loss ``softmax_cross_entropy``        ``Softmax(axis=-1)``  (``output="probabilities"``)
loss ``binary_cross_entropy``         ``Sigmoid``           (``output="probabilities"``)
loss ``mean_squared_error``           nothing
===================================  =================================================

The input is ``"input"``, of shape ``(batch, n_in)`` with a dynamic batch axis; the
output is ``"probabilities"`` (what ``model.predict`` returns for a classification loss),
``"logits"`` (``output="logits"``: the last layer's raw output) or, for a regression loss
(nothing to apply), ``"predictions"``. Both are of the model's dtype (``float32`` →
``tensor(float)``, ``float64`` → ``tensor(double)``). The model's ``architecture()`` (JSON)
and anyfc's version are in the file's ``metadata_props`` (``anyfc.architecture``,
``anyfc.version``, ``anyfc.loss``, ``anyfc.output``); ``anyfc.architecture`` is left out
when some layer, activation or the loss is of a class not registered with
``@anyfc.register``, which no architecture can name (such a model still exports when each
of those objects has a form of its own, see below).

Adding a layer type
-------------------
Each layer contributes its own nodes through one hook. For ``model.layers[i]``, export
uses, in this order:

1. the layer's method ``onnx_nodes(builder)``, if its class defines one itself, or
   inherits one and is registered (``@anyfc.register``: the class's identity is then its
   own, vouched for by its author);
2. ``LAYER_FORMS[type(layer)]``, a function ``form(layer, builder)`` (anyfc's layers; the
   exact type: a subclass may compute something else, so it needs an entry of its own).

Forms are chosen by the exact class, never by a ``name``: a subclass of ``ReLU`` that
overrides ``forward`` inherits ``name = "relu"`` but not the ``Relu`` form, and an
unregistered subclass of a class with ``onnx_nodes`` does not inherit its parent's
export. A layer with neither is refused with a ``TypeError`` naming it (and, for an
unregistered subclass, saying to register it). Activations work the same
way (an activation object's ``onnx_nodes(builder)``, else ``ACTIVATION_FORMS``), and so
does the loss's output function (``LOSS_FORMS``; only with ``output="probabilities"``).
A hook reads ``builder.current`` (the name of the tensor it receives), adds
initializers and nodes, and sets ``builder.current`` to the name of its output::

    class Scale:                                   # y = x · s, s a NumPy vector
        def onnx_nodes(self, builder):
            s = builder.add_initializer("s", self.s)
            builder.current = builder.add_node("Mul", [builder.current, s])

See ``Builder`` for the whole interface.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _backend, activations, checkpoint, losses, registry
from . import layers as _layers
from .layers import Dense
from .model import Sequential

#: The oldest opset written: Softmax over one axis (axis=-1), Gemm with a broadcast bias.
MIN_OPSET = 13  # Softmax over one axis (axis=-1), Gemm with a broadcast 1-D bias
#: The opset written by default: run by onnxruntime >= 1.13, written by onnx >= 1.12.
DEFAULT_OPSET = 17  # run by onnxruntime >= 1.13 and written by onnx >= 1.12

#: What ``export(output=...)`` takes.
OUTPUTS = ("probabilities", "logits")
#: The name of the graph's input.
INPUT_NAME = "input"

_INSTALL = "pip install 'anyfc[onnx]' (from a clone: pip install -e '.[onnx]')"
_FLOAT_TYPES = {"float32": 1, "float64": 11}  # onnx.TensorProto.FLOAT, .DOUBLE

Form = Callable[[Any, "Builder"], None]


class Builder:
    """What a hook ``onnx_nodes(builder)`` (or a form in a registry) works with.

    ``export`` makes one per model; a hook reads ``current``, adds initializers and
    nodes with the methods below, and sets ``current`` to its output's name.

    Parameters
    ----------
    onnx : module
        The ``onnx`` package.
    dtype : numpy.dtype
        The model's float dtype.
    opset : int
        The opset the graph is written for.

    Attributes
    ----------
    current : str
        The name of the tensor the layer receives (the previous layer's output, or
        ``"input"``). Set it to the name of the layer's output before returning.
    dtype : numpy.dtype
        The model's float dtype (``float32`` or ``float64``).
    opset : int
        The opset the graph is written for.
    prefix : str
        ``"layers.<i>"`` for layer ``i`` (``"output"`` for the loss's output function);
        the names below are made under it.
    """

    def __init__(self, onnx: Any, dtype: np.dtype[Any], opset: int) -> None:
        self._onnx = onnx
        self.dtype = dtype
        self.opset = opset
        self.prefix = "graph"
        self.current = INPUT_NAME
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names = {INPUT_NAME}

    def _unique(self, name: str) -> str:
        base = f"{self.prefix}.{name}"
        candidate, k = base, 1
        while candidate in self.names:
            candidate, k = f"{base}_{k}", k + 1
        self.names.add(candidate)
        return candidate

    def add_initializer(self, name: str, array: Any) -> str:
        """Store an array in the file, as a tensor the graph's nodes can read.

        Floating arrays are stored in the model's dtype and must be finite; integer
        arrays (shapes, axes) as int64.

        Parameters
        ----------
        name : str
            The tensor's name within the layer.
        array : array
            A NumPy array, or any backend's (it is copied to the host once).

        Returns
        -------
        str
            The tensor's full name, ``"<prefix>.<name>"`` (made unique).

        Raises
        ------
        ValueError
            A floating array holding NaN or infinity.
        TypeError
            An array neither floating, integer nor bool.
        """
        a = _backend.to_numpy(array)
        if a.dtype.kind == "f":
            a = a.astype(self.dtype, copy=False)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{self.prefix}.{name} holds NaN or infinity; an exported "
                                 "model would predict NaN")
        elif a.dtype.kind in "iu":
            a = a.astype(np.int64, copy=False)
        elif a.dtype.kind != "b":
            raise TypeError(f"{self.prefix}.{name}: cannot store an array of dtype {a.dtype} "
                            "in an ONNX initializer here (floating, integer or bool only)")
        full = self._unique(name)
        self.initializers.append(self._onnx.numpy_helper.from_array(a, full))
        return full

    def add_node(self, op_type: str, inputs: Sequence[str], /, **attributes: Any) -> str:
        """Add a standard ONNX operator (default domain) to the graph.

        Parameters
        ----------
        op_type : str
            The operator (``"Gemm"``, ``"Relu"``, ``"Mul"``, ...).
        inputs : sequence of str
            The names of the tensors it reads (``""`` for an omitted optional input).
        **attributes
            The operator's attributes (``alpha=0.2``, ``axis=-1``).

        Returns
        -------
        str
            The name of its (first) output.

        Raises
        ------
        TypeError
            ``inputs`` given as one string.
        ValueError
            An input that no node, initializer or graph input produces.
        """
        if isinstance(inputs, str):
            raise TypeError(f"add_node({op_type!r}, ...) needs a list of input names, "
                            f"got the string {inputs!r}")
        unknown = [i for i in inputs if i and i not in self.names]
        if unknown:
            raise ValueError(f"{self.prefix}: {op_type} reads {unknown}, which no node, "
                             "initializer or graph input produces")
        out = self._unique(op_type.lower())
        self.nodes.append(self._onnx.helper.make_node(op_type, list(inputs), [out], name=out,
                                                      **attributes))
        return out


# ---------------------------------------------------------------- built-in forms


def _identity(activation: Any, builder: Builder) -> None:
    return None


def _unary(op_type: str) -> Form:
    def form(activation: Any, builder: Builder) -> None:
        builder.current = builder.add_node(op_type, [builder.current])

    form.__name__ = f"_{op_type.lower()}"
    return form


def _constant(builder: Builder, name: str, value: float) -> str:
    """A scalar of the model's dtype."""
    return builder.add_initializer(name, np.asarray(value))


def _native_or_composed(native: Form, composed: Form) -> Form:
    """``native`` (one ONNX operator) in float32, ``composed`` (anyfc's own formula in
    elementary operators) in float64: onnxruntime (1.32) runs float64 LeakyRelu, Elu,
    Softplus and Softsign only at some opsets (16-18 or 18) and refuses the model at the
    others."""

    def form(activation: Any, builder: Builder) -> None:
        (native if builder.dtype == np.float32 else composed)(activation, builder)

    return form


def _leaky_relu_composed(activation: Any, builder: Builder) -> None:
    """``max(u, α·u)`` (0 ≤ α ≤ 1), anyfc's formula."""
    u = builder.current
    scaled = builder.add_node("Mul", [u, _constant(builder, "alpha", activation.alpha)])
    builder.current = builder.add_node("Max", [u, scaled])


def _elu_composed(activation: Any, builder: Builder) -> None:
    """``where(u > 0, u, α·(e^{min(u, 0)} - 1))``."""
    u, zero = builder.current, _constant(builder, "zero", 0.0)
    negative = builder.add_node("Exp", [builder.add_node("Min", [u, zero])])
    negative = builder.add_node("Sub", [negative, _constant(builder, "one", 1.0)])
    negative = builder.add_node("Mul", [negative, _constant(builder, "alpha", activation.alpha)])
    builder.current = builder.add_node(
        "Where", [builder.add_node("Greater", [u, zero]), u, negative])


def _softplus_composed(activation: Any, builder: Builder) -> None:
    """``max(u, 0) + log(1 + e^{-|u|})``: never overflows."""
    u = builder.current
    tail = builder.add_node("Exp", [builder.add_node("Neg", [builder.add_node("Abs", [u])])])
    tail = builder.add_node("Log", [builder.add_node("Add", [tail, _constant(builder, "one",
                                                                             1.0)])])
    head = builder.add_node("Max", [u, _constant(builder, "zero", 0.0)])
    builder.current = builder.add_node("Add", [head, tail])


def _softsign_composed(activation: Any, builder: Builder) -> None:
    """``u / (1 + |u|)``."""
    u = builder.current
    den = builder.add_node("Add", [builder.add_node("Abs", [u]), _constant(builder, "one", 1.0)])
    builder.current = builder.add_node("Div", [u, den])


def _silu(activation: Any, builder: Builder) -> None:
    """``u·σ(u)``."""
    u = builder.current
    builder.current = builder.add_node("Mul", [u, builder.add_node("Sigmoid", [u])])


def _gelu(activation: Any, builder: Builder) -> None:
    """anyfc's tanh form ``½·u·(1 + tanh(k·(u + c·u³)))``, at every opset (ONNX's own
    ``Gelu`` needs opset 20)."""
    u = builder.current
    cube = builder.add_node("Mul", [builder.add_node("Mul", [u, u]), u])
    inner = builder.add_node("Add", [u, builder.add_node(
        "Mul", [cube, _constant(builder, "c", activations.GELU.C)])])
    t = builder.add_node("Tanh", [builder.add_node(
        "Mul", [inner, _constant(builder, "k", activations.GELU.K)])])
    half_u = builder.add_node("Mul", [u, _constant(builder, "half", 0.5)])
    builder.current = builder.add_node(
        "Mul", [half_u, builder.add_node("Add", [t, _constant(builder, "one", 1.0)])])


def _with_alpha(op_type: str) -> Form:
    def form(activation: Any, builder: Builder) -> None:
        builder.current = builder.add_node(op_type, [builder.current], alpha=activation.alpha)

    return form


def _dense(layer: Dense, builder: Builder) -> None:
    """``Gemm(x, w, b)`` = x·w + b, then the activation's form."""
    w = builder.add_initializer("w", layer.w)
    b = builder.add_initializer("b", layer.b)
    builder.current = builder.add_node("Gemm", [builder.current, w, b])
    add_activation(builder, layer.activation, owner=layer)


def _activation_layer(layer: Any, builder: Builder) -> None:
    add_activation(builder, layer.activation, owner=layer)


def _batch_norm(layer: Any, builder: Builder) -> None:
    """Inference: ``γ ⊙ (x - running_mean) / √(running_var + ε) + β``."""
    inputs = [builder.current] + [builder.add_initializer(name, getattr(layer, name)) for name
                                  in ("gamma", "beta", "running_mean", "running_var")]
    builder.current = builder.add_node("BatchNormalization", inputs, epsilon=layer.eps)


def _layer_norm(layer: Any, builder: Builder) -> None:
    """Each row over its features: ``LayerNormalization`` in float32 from opset 17; else
    the formula of ``anyfc.layers.LayerNorm`` in elementary operators (before opset 17
    there is no such operator, and onnxruntime's float64 one is off by ~1e-12)."""
    gamma = builder.add_initializer("gamma", layer.gamma)
    beta = builder.add_initializer("beta", layer.beta)
    x = builder.current
    if builder.dtype == np.float32 and builder.opset >= 17:
        builder.current = builder.add_node("LayerNormalization", [x, gamma, beta], axis=-1,
                                           epsilon=layer.eps)
        return

    def row_mean(a: str) -> str:
        if builder.opset >= 18:  # the axes became an input
            axes = builder.add_initializer("axes", np.asarray([-1], dtype=np.int64))
            return builder.add_node("ReduceMean", [a, axes], keepdims=1)
        return builder.add_node("ReduceMean", [a], axes=[-1], keepdims=1)

    centered = builder.add_node("Sub", [x, row_mean(x)])
    var = row_mean(builder.add_node("Mul", [centered, centered]))
    std = builder.add_node("Sqrt", [builder.add_node("Add", [var, _constant(builder, "eps",
                                                                            layer.eps)])])
    x_hat = builder.add_node("Mul", [centered, builder.add_node(
        "Div", [_constant(builder, "one", 1.0), std])])
    builder.current = builder.add_node("Add", [builder.add_node("Mul", [gamma, x_hat]), beta])


def add_activation(builder: Builder, activation: activations.Activation,
                   owner: Any = None) -> None:
    """Add the nodes of an activation applied to ``builder.current``.

    Its ``onnx_nodes(builder)``, else its ``ACTIVATION_FORMS`` entry. For the forms of
    layers that hold an activation.

    Parameters
    ----------
    builder : Builder
        The builder.
    activation : anyfc.activations.Activation
        The activation.
    owner : object, optional
        The layer that holds it, named in errors.

    Raises
    ------
    TypeError
        An activation with no ONNX form.
    """
    holder = f" ({type(owner).__name__})" if owner is not None else ""
    _emit(activation, builder, "ACTIVATION_FORMS",
          f"{builder.prefix}{holder} has activation {type(activation).__name__}")


#: Forms of layers, keyed by exact type: ``form(layer, builder)``.
LAYER_FORMS: dict[type, Form] = {
    Dense: _dense,
    _layers.BatchNorm: _batch_norm,
    _layers.LayerNorm: _layer_norm,
    _layers.Dropout: _identity,  # inference is the identity
    **{cls: _activation_layer for cls in (
        _layers.Activation, _layers.ReLU, _layers.LeakyReLU, _layers.Sigmoid, _layers.Tanh,
        _layers.GELU, _layers.SiLU, _layers.ELU, _layers.Softplus, _layers.Softsign)},
}

#: Forms of activations, keyed by exact type: ``form(activation, builder)``.
ACTIVATION_FORMS: dict[type, Form] = {
    activations.Activation: _identity,  # the base class is the identity
    activations.Identity: _identity,
    activations.ReLU: _unary("Relu"),
    activations.LeakyReLU: _native_or_composed(_with_alpha("LeakyRelu"), _leaky_relu_composed),
    activations.Sigmoid: _unary("Sigmoid"),
    activations.Tanh: _unary("Tanh"),
    activations.ELU: _native_or_composed(_with_alpha("Elu"), _elu_composed),
    activations.Softplus: _native_or_composed(_unary("Softplus"), _softplus_composed),
    activations.Softsign: _native_or_composed(_unary("Softsign"), _softsign_composed),
    activations.SiLU: _silu,
    activations.GELU: _gelu,
}


def _softmax(loss: Any, builder: Builder) -> None:
    builder.current = builder.add_node("Softmax", [builder.current], axis=-1)


#: Forms of the losses' output functions (what ``predict`` applies), keyed by exact type.
LOSS_FORMS: dict[type, Form] = {
    losses.SoftmaxCrossEntropy: _softmax,
    losses.BinaryCrossEntropy: _unary("Sigmoid"),
    losses.MeanSquaredError: _identity,
}


def _emit(obj: Any, builder: Builder, table: str, what: str) -> None:
    """Run ``obj``'s hook, or its form in the table named ``table``; refuse an object with
    neither (``what`` says which object it is). A hook counts when ``obj``'s class defines
    it itself, or inherits it and is registered (``anyfc.registry``): the export follows
    the exact class's identity."""
    forms: dict[type, Form] = globals()[table]
    kind = type(obj)
    hook = getattr(kind, "onnx_nodes", None)
    own = callable(hook) and ("onnx_nodes" in vars(kind) or registry.name_of(kind) is not None)
    if own:
        obj.onnx_nodes(builder)
    elif kind in forms:
        forms[kind](obj, builder)
    else:
        cls = kind.__name__
        base = next((c for c in kind.__mro__[1:] if c in forms), None)
        hint = (f" (a subclass of {base.__name__} may compute something else, so it is not "
                f"exported as one; if it computes the same, register it: "
                f"anyfc.onnx.{table}[{cls}] = anyfc.onnx.{table}[{base.__name__}])"
                if base is not None and base is not activations.Activation else "")
        if callable(hook):
            inherited = next(c for c in kind.__mro__ if "onnx_nodes" in vars(c))
            hint += (f" ({cls} inherits onnx_nodes from {inherited.__name__} but is not "
                     f"registered, so it is not exported as a {inherited.__name__}: if that "
                     f"method computes {cls} too, decorate {cls} with @anyfc.register)")
        elif registry.name_of(kind) is None:
            hint += (f"; {cls} is not registered either: decorate it with @anyfc.register "
                     "so that checkpoints and the file's anyfc.architecture can name it")
        raise TypeError(
            f"cannot export to ONNX: {what}, which has no ONNX form; give {cls} a method "
            f"onnx_nodes(builder) that adds its nodes (see anyfc.onnx.Builder), or register "
            f"a function form({cls.lower()}, builder) in anyfc.onnx.{table}{hint}")
    if not isinstance(builder.current, str) or builder.current not in builder.names:
        raise ValueError(f"cannot export to ONNX: after {what}, builder.current is "
                         f"{builder.current!r}, which names no tensor of the graph; "
                         "onnx_nodes must set it to the name add_node returned")


# ---------------------------------------------------------------- checks


def _check_output(output: Any) -> str:
    if not isinstance(output, str):
        raise TypeError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got "
                        f"{type(output).__name__} {output!r:.60}")
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; valid outputs are "
                         f"{', '.join(map(repr, OUTPUTS))} (probabilities: what predict "
                         "returns; logits: the last layer's raw output)")
    return output


def _check_opset(opset: Any, newest: int) -> int:
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral):
        raise TypeError(f"opset must be an integer from {MIN_OPSET} to {newest}, got "
                        f"{type(opset).__name__} {opset!r:.60}")
    opset = int(opset)
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: the exported operators need opset "
                         f"{MIN_OPSET} or later (Softmax over one axis); use "
                         f"{MIN_OPSET}..{newest}, or leave it None for {DEFAULT_OPSET}")
    if opset > newest:
        raise ValueError(f"opset {opset} is newer than the installed onnx knows (up to "
                         f"{newest}); use {MIN_OPSET}..{newest}, or upgrade onnx")
    return opset


def _check_path(path: Any) -> str:
    """The file to write (through a symbolic link, the file it names), checked before
    anything is written."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"path must be a str or os.PathLike of str, got {type(text).__name__}")
    if not text:
        raise ValueError("path is empty; give a file name such as 'model.onnx'")
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise ValueError(f"path {text!r} names a folder; give a file name such as "
                         f"{os.path.join(text, 'model.onnx')!r}")
    target = os.path.realpath(text)
    if os.path.isdir(target):
        raise ValueError(f"path {text!r} is a folder; give a file name such as "
                         f"{os.path.join(text, 'model.onnx')!r}")
    return checkpoint.check_destination(text, "ONNX file")


# ---------------------------------------------------------------- export


def export(model: Sequential, path: str | os.PathLike[str], *, opset: int | None = None,
           output: str = "probabilities") -> None:
    """Write ``model`` to ``path`` as an ONNX model, checked with ``onnx.checker``.

    Parameters
    ----------
    model : Sequential
        The model, on any backend and device; its parameters are copied to the host
        once, in its dtype (float32 or float64).
    path : str or os.PathLike
        The file to write (usually ``*.onnx``); its folder must exist. Written to a
        temporary file beside it and renamed over it, so an interrupted export leaves any
        previous file intact.
    opset : int, optional
        The ONNX opset (default ``DEFAULT_OPSET``); from ``MIN_OPSET`` to the newest the
        installed onnx knows. The file declares the oldest IR version that opset allows,
        so older runtimes read it.
    output : {"probabilities", "logits"}, default "probabilities"
        ``"probabilities"``: the graph ends with the loss's output function, and
        computes what ``model.predict`` returns; ``"logits"``: the last layer's raw
        output.

    Raises
    ------
    ImportError
        onnx is not installed.
    TypeError, ValueError
        A bad argument, or a layer (or activation, or loss) with no ONNX form (see the
        module's docstring) — all before anything is written.
    """
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
    except ImportError as exc:
        raise ImportError(f"anyfc.onnx.export needs the onnx package: {_INSTALL}") from exc
    from . import __version__, checkpoint

    output = _check_output(output)
    opset = _check_opset(opset, onnx.defs.onnx_opset_version())
    target = _check_path(path)
    if not isinstance(model, Sequential):
        raise TypeError(f"export needs an anyfc.Sequential, got {type(model).__name__}")
    model.check()
    model.check_settings()
    dtype_name = _backend.dtype_name(model.dtype)
    if dtype_name not in _FLOAT_TYPES:
        raise ValueError(f"ONNX export supports float32 and float64 models, not {dtype_name}")
    elem_type = _FLOAT_TYPES[dtype_name]
    try:  # the model as anyfc.registry names it; nothing names an unregistered class
        architecture: str | None = json.dumps(model.architecture())
    except registry.UnregisteredError:
        architecture = None

    builder = Builder(onnx, np.dtype(dtype_name), opset)
    for i, layer in enumerate(model.layers):
        builder.prefix = f"layers.{i}"
        _emit(layer, builder, "LAYER_FORMS", f"layer {i} ({type(layer).__name__})")
    loss = model.loss
    if not loss.classification and type(loss) in LOSS_FORMS:
        out_name = "predictions"
    else:
        out_name = output
    if output == "probabilities":
        builder.prefix = "output"
        _emit(loss, builder, "LOSS_FORMS", f"the loss {type(loss).__name__} ({loss.name}), "
              "whose output function predict applies (or export output='logits')")
    if builder.current == INPUT_NAME:
        builder.current = builder.add_node("Identity", [INPUT_NAME])
    _rename(builder, builder.current, out_name)

    graph = onnx.helper.make_graph(
        builder.nodes, "anyfc.Sequential",
        [onnx.helper.make_tensor_value_info(INPUT_NAME, elem_type, ["batch", model.n_in])],
        [onnx.helper.make_tensor_value_info(out_name, elem_type, ["batch", model.n_out])],
        initializer=builder.initializers)
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="anyfc", producer_version=__version__,
        doc_string=f"anyfc Sequential, loss {loss.name}, {dtype_name}, output {out_name}")
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    props = {"anyfc.version": __version__, "anyfc.loss": loss.name, "anyfc.output": out_name}
    onnx.helper.set_model_props(proto, props if architecture is None else
                                {"anyfc.architecture": architecture, **props})
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError, shape_inference.InferenceError
        raise ValueError(f"the ONNX graph built for this model is not valid (a layer's "
                         f"onnx_nodes may be wrong): {exc}") from exc
    data = proto.SerializeToString()

    checkpoint.write_atomically(target, lambda f: f.write(data))


def _rename(builder: Builder, old: str, new: str) -> None:
    """Name the graph's output tensor ``new`` (it was ``old``)."""
    for node in builder.nodes:
        for seq in (node.input, node.output):
            for k, name in enumerate(seq):
                if name == old:
                    seq[k] = new
