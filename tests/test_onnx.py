"""ONNX export (anyfc.onnx): every activation and loss, on every CPU backend, run by
onnxruntime and compared with ``model.predict``; metadata; the extension hook; errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx: pip install 'anyfc[onnx]'")
ort = pytest.importorskip(
    "onnxruntime", reason="ONNX export tests need onnxruntime: pip install 'anyfc[onnx]'")

import anyfc  # noqa: E402
import anyfc.onnx  # noqa: E402
from anyfc import activations  # noqa: E402
from anyfc import layers as L  # noqa: E402
from tests.conftest import Backend  # noqa: E402

ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", "identity", "gelu", "silu", "elu",
               "softplus", "softsign"]
LOSSES = ["softmax_cross_entropy", "binary_cross_entropy", "mean_squared_error"]
N_OUT = 3  # classes, labels (binary: multi-label) or targets: one width, fewer JAX compiles
TOLERANCE = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-11, "atol": 1e-13}}
N_IN = 5
NUMPY = Backend("numpy", "numpy", None)


def _data(loss: str, rows: int = 17, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and float targets of shape (rows, N_OUT): one-hot rows, 0/1 labels or
    values (17 rows: the batch checked below, so JAX compiles one shape less)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, N_IN))
    if loss == "softmax_cross_entropy":
        y = np.eye(N_OUT)[rng.integers(0, N_OUT, size=rows)]
    elif loss == "binary_cross_entropy":
        y = (X[:, :N_OUT] > 0).astype(np.float64)
    else:
        y = X[:, :N_OUT] @ rng.normal(size=(N_OUT, N_OUT))
    return X, y


def _activation(name: str) -> Any:
    """The activation ``name``, with a setting other than the default where it has one."""
    settings = {"leaky_relu": {"alpha": 0.2}, "elu": {"alpha": 0.5}}.get(name, {})
    return activations.get({"name": name, **settings})


def _zoo(cpu_bk, dtype: str) -> list:
    """Every layer type and every activation (fused into a Dense, and as a layer)."""
    where = {"backend": cpu_bk.name, "device": cpu_bk.device_name, "dtype": dtype}
    layers = [cpu_bk.dense(N_IN, 6, "relu", seed=0, dtype=dtype),
              L.BatchNorm(6, momentum=0.5, **where), L.Dropout(0.2, seed=0, **where)]
    for k, name in enumerate(ACTIVATIONS):
        layers.append(cpu_bk.dense(6, 6, _activation(name), seed=k + 1, dtype=dtype))
    layers += [L.LayerNorm(6, **where), L.Activation(_activation("gelu"), **where),
               L.LeakyReLU(alpha=0.3, **where), L.ELU(alpha=0.7, **where), L.Softsign(**where)]
    return layers


def _trained(cpu_bk, hidden: list, loss: str, dtype: str) -> anyfc.Sequential:
    """``hidden`` layers (or activation names, each a Dense of its own) and an output
    layer on ``cpu_bk``, briefly trained there: three SGD steps written out (forward, loss,
    backward, update), not ``train_step``, which JAX compiles anew for every model (~25 s
    for the zoo here), while its operations, compiled one by one, serve every model."""
    layers, n = [], N_IN
    for k, item in enumerate(hidden):
        if isinstance(item, str):
            item = cpu_bk.dense(n, 6, _activation(item), seed=k, dtype=dtype)
        layers.append(item)
        n = item.n_out or n
    layers.append(cpu_bk.dense(n, N_OUT, "identity", seed=99, dtype=dtype))
    model = anyfc.Sequential(layers, loss)
    X, y = _data(loss)
    x, t = cpu_bk.asarray(X, dtype), cpu_bk.asarray(y, dtype)
    before = anyfc.to_numpy(model.layers[0].w)
    optimizer = anyfc.optimizers.SGD(lr=0.1)
    for _ in range(3):
        model.loss.forward(model.forward(x), t)
        model.backward(model.loss.backward())
        optimizer.step(model.layers)
    assert not np.array_equal(anyfc.to_numpy(model.layers[0].w), before)
    return model


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tiny models gain nothing from threads, and on a busy 2-core machine torch's
    two threads wait on each other for ~50 ms per operation."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # tiny graphs
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check_against_model(model, path, dtype: str, output: str = "probabilities") -> None:
    """The file passes onnx's full check, and onnxruntime gives what the model does for a
    batch of 17 and, from the same rows' first, a batch of 1 (the batch axis is dynamic;
    the model runs the 17 once: on JAX each new shape compiles every operation)."""
    onnx.checker.check_model(str(path), full_check=True)
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["input"]
    X = np.random.default_rng(1).normal(size=(17, N_IN)).astype(dtype)
    if output == "probabilities":
        want = anyfc.to_numpy(model.predict(X))
    else:
        x = anyfc.to_backend(X, model.backend, model.device, dtype)
        want = anyfc.to_numpy(model.forward(x, training=False))
    assert want.shape == (17, model.n_out)
    for rows in (1, 17):
        got, = session.run(None, {"input": X[:rows]})
        assert got.dtype == np.dtype(dtype) and got.shape == (rows, model.n_out)
        np.testing.assert_allclose(got, want[:rows], **TOLERANCE[dtype])


# ---------------------------------------------------------------- matches predict


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES)
def test_every_activation_and_loss_on_every_backend(cpu_bk, loss, dtype, tmp_path):
    """Every layer type and activation in one model, so each backend trains six models,
    not sixty."""
    model = _trained(cpu_bk, _zoo(cpu_bk, dtype), loss, dtype)
    for output in ("probabilities", "logits"):
        path = tmp_path / f"{output}.onnx"
        anyfc.onnx.export(model, path, output=output)
        _check_against_model(model, path, dtype, output)
        elem = onnx.load(str(path)).graph.output[0].type.tensor_type.elem_type
        assert elem == {"float32": onnx.TensorProto.FLOAT,
                        "float64": onnx.TensorProto.DOUBLE}[dtype]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_activation_alone(activation, loss, tmp_path):
    """Each activation and loss in a model of its own (NumPy), for a failure that names it."""
    model = _trained(NUMPY, [activation], loss, "float32")
    path = tmp_path / "model.onnx"
    anyfc.onnx.export(model, path)
    _check_against_model(model, path, "float32")


@pytest.mark.parametrize("loss", LOSSES)
def test_logits_output(loss, tmp_path):
    model = anyfc.Sequential([anyfc.Dense(N_IN, 4, "tanh", seed=0),
                              anyfc.Dense(4, N_OUT, "identity", seed=1)], loss)
    path = tmp_path / "m.onnx"
    anyfc.onnx.export(model, path, output="logits")
    _check_against_model(model, path, "float32", "logits")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["Gemm", "Tanh", "Gemm"]
    name = _session(path).get_outputs()[0].name
    assert name == ("predictions" if loss == "mean_squared_error" else "logits")


OPSETS = sorted({anyfc.onnx.MIN_OPSET, 16, 17, 18, anyfc.onnx.DEFAULT_OPSET,
                 min(21, onnx.defs.onnx_opset_version())})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opset", OPSETS)
def test_every_layer_at_every_opset(opset, dtype, tmp_path):
    """The forms that depend on the opset (LayerNorm: its own operator from 17; ReduceMean's
    axes an input from 18) or on the dtype (float64: elementary operators where
    onnxruntime lacks a float64 kernel at some opsets) all run."""
    model = _trained(NUMPY, _zoo(NUMPY, dtype), "softmax_cross_entropy", dtype)
    path = tmp_path / "m.onnx"
    anyfc.onnx.export(model, path, opset=np.int64(opset))
    proto = onnx.load(str(path))
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    ops = {n.op_type for n in proto.graph.node}
    assert ("LayerNormalization" in ops) == (dtype == "float32" and opset >= 17)
    assert ("LeakyRelu" in ops) == ("Elu" in ops) == (dtype == "float32")
    _check_against_model(model, path, dtype)


# ---------------------------------------------------------------- the file


def test_graph_names_metadata_and_weights_round_trip(tmp_path):
    model = anyfc.Sequential(
        [anyfc.Dense(N_IN, 6, activations.LeakyReLU(0.3), seed=0),
         anyfc.Dense(6, 3, "identity", seed=1)], "softmax_cross_entropy")
    path = tmp_path / "m.onnx"
    anyfc.onnx.export(model, path)
    proto = onnx.load(str(path))  # re-read from disk
    onnx.checker.check_model(proto, full_check=True)
    graph = proto.graph
    assert [n.op_type for n in graph.node] == ["Gemm", "LeakyRelu", "Gemm", "Softmax"]
    assert onnx.helper.get_attribute_value(graph.node[1].attribute[0]) == pytest.approx(0.3)
    assert onnx.helper.get_attribute_value(graph.node[3].attribute[0]) == -1
    for value, width in ((graph.input[0], N_IN), (graph.output[0], 3)):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and dims[1].dim_value == width
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert (graph.input[0].name, graph.output[0].name) == ("input", "probabilities")
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    state = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    assert weights.keys() == state.keys()
    for key, value in state.items():
        assert weights[key].dtype == np.float32
        np.testing.assert_array_equal(weights[key], value)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["anyfc.architecture"]) == model.architecture()
    assert meta["anyfc.version"] == anyfc.__version__ == proto.producer_version
    assert (meta["anyfc.loss"], meta["anyfc.output"]) == ("softmax_cross_entropy",
                                                          "probabilities")
    assert proto.producer_name == "anyfc"
    # the architecture in the file rebuilds the model, with the file's weights
    rebuilt = anyfc.Sequential.from_architecture(
        json.loads(meta["anyfc.architecture"]),
        [weights[f"layers.{i}.{p}"] for i in range(2) for p in "wb"])
    X = np.random.default_rng(0).normal(size=(4, N_IN))
    np.testing.assert_array_equal(anyfc.to_numpy(rebuilt.predict(X)),
                                  anyfc.to_numpy(model.predict(X)))


def test_overwrites_atomically_through_a_link_and_leaves_no_temporary(tmp_path):
    small = anyfc.Sequential([anyfc.Dense(N_IN, 2, "identity", seed=0)], "mse")
    big = anyfc.Sequential([anyfc.Dense(N_IN, 8, "relu", seed=0), anyfc.Dense(8, 2, "identity")],
                           "mse")
    path = tmp_path / "m.onnx"
    anyfc.onnx.export(small, path)
    link = tmp_path / "link.onnx"
    link.symlink_to(path)
    anyfc.onnx.export(big, str(link))
    assert link.is_symlink() and sorted(os.listdir(tmp_path)) == ["link.onnx", "m.onnx"]
    assert len(onnx.load(str(path)).graph.node) == 3
    _check_against_model(big, path, "float32")


def test_importing_anyfc_does_not_import_onnx():
    code = ("import sys, anyfc, anyfc.onnx; "
            "sys.exit(1 if 'onnx' in sys.modules or 'onnxruntime' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_without_onnx_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    model = anyfc.Sequential([anyfc.Dense(N_IN, 2, "identity", seed=0)], "mse")
    with pytest.raises(ImportError, match=r"pip install 'anyfc\[onnx\]'"):
        anyfc.onnx.export(model, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- bad arguments


def _bad_paths(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_bytes(b"x")
    return [
        (tmp_path / "folder", ValueError, "is a folder"),
        (str(tmp_path / "folder") + os.sep, ValueError, "names a folder"),
        (str(tmp_path / "new") + os.sep, ValueError, "names a folder"),
        (tmp_path / "missing" / "m.onnx", ValueError, "does not exist; create the folder"),
        (tmp_path / "a_file" / "m.onnx", ValueError, "is not a folder"),
        ("", ValueError, "path is empty"),
        (42, TypeError, "path must be a str or os.PathLike"),
        (b"m.onnx", TypeError, "path must be a str or os.PathLike"),
    ]


BAD_OPSETS = [
    ("17", TypeError, "opset must be an integer"),
    (17.0, TypeError, "opset must be an integer"),
    (True, TypeError, "opset must be an integer"),
    (anyfc.onnx.MIN_OPSET - 1, ValueError, f"need opset {anyfc.onnx.MIN_OPSET} or later"),
    (0, ValueError, "too old"),
    (onnx.defs.onnx_opset_version() + 1, ValueError, "newer than the installed onnx"),
]

BAD_OUTPUTS = [
    ("probability", ValueError, "unknown output 'probability'; valid outputs are"),
    ("LOGITS", ValueError, "unknown output 'LOGITS'"),
    (None, TypeError, "output must be one of 'probabilities', 'logits'"),
    (["logits"], TypeError, "output must be one of"),
]


def _no_new_files(tmp_path, before):
    after = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    assert after == before, f"left behind: {after - before}"


def test_bad_arguments_raise_before_anything_is_written(tmp_path):
    model = anyfc.Sequential([anyfc.Dense(N_IN, 3, "relu", seed=0), anyfc.Dense(3, 2, "identity")])
    good = tmp_path / "good.onnx"
    cases = ([(path, {}, exc, msg) for path, exc, msg in _bad_paths(tmp_path)]
             + [(good, {"opset": v}, exc, msg) for v, exc, msg in BAD_OPSETS]
             + [(good, {"output": v}, exc, msg) for v, exc, msg in BAD_OUTPUTS])
    before = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    for path, kwargs, exc, msg in cases:
        with pytest.raises(exc) as info:
            anyfc.onnx.export(model, path, **kwargs)
        assert type(info.value) is exc, (path, kwargs, info.value)
        assert msg in str(info.value), (path, kwargs, str(info.value))
        _no_new_files(tmp_path, before)
    with pytest.raises(TypeError, match="export needs an anyfc.Sequential, got Dense"):
        anyfc.onnx.export(model.layers[0], good)
    _no_new_files(tmp_path, before)


def test_nan_weights_are_refused_and_nothing_is_written(tmp_path):
    model = anyfc.Sequential([anyfc.Dense(N_IN, 2, "identity", seed=0)], "mse")
    model.layers[0].b[1] = np.nan
    with pytest.raises(ValueError, match=r"layers\.0\.b holds NaN"):
        anyfc.onnx.export(model, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- extending


class ScaledDense(anyfc.Dense):
    """``y = tanh(x·w + b) ⊙ s``: a user's layer that brings its own ONNX form."""

    def __init__(self, *args, scale, **kwargs):
        super().__init__(*args, **kwargs)
        self.s = self.xp.asarray(np.asarray(scale), dtype=self.dtype)

    def forward(self, x, training=True):
        return super().forward(x, training) * self.s

    def onnx_nodes(self, builder):
        w = builder.add_initializer("w", self.w)
        b = builder.add_initializer("b", self.b)
        s = builder.add_initializer("s", self.s)
        u = builder.add_node("Gemm", [builder.current, w, b])
        y = builder.add_node("Tanh", [u])
        builder.current = builder.add_node("Mul", [y, s])


class Cube(activations.Activation):
    """``f(u) = u³``: a user's activation, without an ONNX form."""

    name = "cube"

    def forward(self, xp, u):
        return u * u * u


class CubeWithForm(Cube):
    def onnx_nodes(self, builder):
        u = builder.current
        builder.current = builder.add_node("Mul", [builder.add_node("Mul", [u, u]), u])


class Shift(L.Layer):
    """``y = x + c`` for any width: a user's layer of the Layer protocol (inference only
    here), without an ONNX form."""

    def __init__(self, c=1.5, *, backend=None, device=None, dtype="float32"):
        self.c = float(c)
        self._place(backend, device, dtype)

    def forward(self, x, training=True):
        self._check_input(x, "forward")
        return x + self.c

    def config(self):
        return {"c": self.c}


class ShiftWithForm(Shift):
    def onnx_nodes(self, builder):
        c = builder.add_initializer("c", np.asarray(self.c))
        builder.current = builder.add_node("Add", [builder.current, c])


class PlainSubclass(anyfc.Dense):
    pass


def test_a_layer_with_onnx_nodes_exports(tmp_path):
    model = anyfc.Sequential(
        [anyfc.Dense(N_IN, 4, "relu", seed=0),
         ScaledDense(4, 3, "tanh", scale=[1.0, -2.0, 0.5], seed=1),
         ShiftWithForm(-0.25),
         anyfc.Dense(3, 2, CubeWithForm(), seed=2),
         anyfc.Dense(2, 2, "identity", seed=3)], "mse")
    path = tmp_path / "m.onnx"
    anyfc.onnx.export(model, path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["Gemm", "Relu", "Gemm", "Tanh", "Mul", "Add", "Gemm", "Mul", "Mul", "Gemm"]
    _check_against_model(model, path, "float32")


def test_a_registered_form_is_used(monkeypatch, tmp_path):
    monkeypatch.setitem(anyfc.onnx.LAYER_FORMS, PlainSubclass,
                        anyfc.onnx.LAYER_FORMS[anyfc.Dense])
    model = anyfc.Sequential([PlainSubclass(N_IN, 2, "identity", seed=0)], "mse")
    anyfc.onnx.export(model, tmp_path / "m.onnx")
    _check_against_model(model, tmp_path / "m.onnx", "float32")


def test_what_has_no_onnx_form_is_named(tmp_path):
    plain = anyfc.Sequential([anyfc.Dense(N_IN, 3, "relu", seed=0),
                              PlainSubclass(3, 2, "identity")])
    with pytest.raises(TypeError, match=r"layer 1 \(PlainSubclass\), which has no ONNX form; "
                       r"give PlainSubclass a method onnx_nodes\(builder\)") as info:
        anyfc.onnx.export(plain, tmp_path / "m.onnx")
    assert "LAYER_FORMS[PlainSubclass] = anyfc.onnx.LAYER_FORMS[Dense]" in str(info.value)
    shift = anyfc.Sequential([anyfc.Dense(N_IN, 3, "relu", seed=0), Shift(),
                              anyfc.Dense(3, 2, "relu")])
    with pytest.raises(TypeError, match=r"layer 1 \(Shift\), which has no ONNX form; give "
                       r"Shift a method onnx_nodes\(builder\) that adds its nodes \(see "
                       r"anyfc.onnx.Builder\), or register a function form\(shift, builder\) "
                       r"in anyfc.onnx.LAYER_FORMS"):
        anyfc.onnx.export(shift, tmp_path / "m.onnx")
    act = anyfc.Sequential([anyfc.Dense(N_IN, 3, Cube()), anyfc.Dense(3, 2, "identity")])
    with pytest.raises(TypeError, match=r"layers\.0 \(Dense\) has activation Cube, which "
                       r"has no ONNX form; give Cube a method onnx_nodes"):
        anyfc.onnx.export(act, tmp_path / "m.onnx")

    class Hinge(anyfc.losses.MeanSquaredError):
        name = "hinge"
    loss = anyfc.Sequential([anyfc.Dense(N_IN, 2, "identity")], Hinge())
    with pytest.raises(TypeError, match=r"the loss Hinge \(hinge\).*output='logits'"):
        anyfc.onnx.export(loss, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []
    anyfc.onnx.export(loss, tmp_path / "m.onnx", output="logits")  # raw output: no form needed
    _check_against_model(loss, tmp_path / "m.onnx", "float32", "logits")


def test_a_hook_that_loses_the_current_tensor_is_refused(tmp_path):
    class Forgetful(anyfc.Dense):
        def onnx_nodes(self, builder):
            builder.add_node("Relu", [builder.current])
            builder.current = "somewhere"

    class Wrong(anyfc.Dense):  # gives one output more than the layer says
        def onnx_nodes(self, builder):
            w = builder.add_initializer("w", np.zeros((self.n_in, self.n_out + 1)))
            b = builder.add_initializer("b", np.zeros(self.n_out + 1))
            builder.current = builder.add_node("Gemm", [builder.current, w, b])

    for cls, exc, msg in ((Forgetful, ValueError, "builder.current is 'somewhere'"),
                          (Wrong, ValueError, "is not valid")):
        model = anyfc.Sequential([cls(N_IN, 2, "identity", seed=0)], "mse")
        with pytest.raises(exc, match=msg):
            anyfc.onnx.export(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="reads \\['nowhere'\\]"):
        anyfc.onnx.Builder(onnx, np.dtype("float32"), 17).add_node("Relu", ["nowhere"])
    assert os.listdir(tmp_path) == []


@pytest.mark.hostile
@pytest.mark.parametrize("spoil", [
    lambda m: setattr(m.layers[0].activation, "alpha", float("inf")),
    lambda m: setattr(m.layers[1], "eps", -1.0),
], ids=["leaky-alpha-inf", "bn-eps-negative"])
def test_export_refuses_a_setting_spoilt_after_construction(spoil, tmp_path):
    model = anyfc.Sequential([anyfc.Dense(3, 4, "leaky_relu", backend="numpy", seed=0),
                              L.BatchNorm(4, backend="numpy"),
                              anyfc.Dense(4, 2, backend="numpy", seed=1)],
                             loss="softmax_cross_entropy")
    spoil(model)
    with pytest.raises(ValueError, match="has a bad setting"):
        anyfc.onnx.export(model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
