"""anyfc.model (Sequential): whole-network gradients against finite differences;
prediction (probabilities on the model's device, in batches, from any library, from
threads while another trains); structure checked where it is used; ``state_dict`` /
``load_state_dict`` all or nothing; ``to`` moving parameters and optimizer state (within
and across libraries) or nothing; settings changed after construction; ``summary``.

Tests marked ``property`` are hypothesis properties over small random networks
(derandomized: the same examples every run): backward equals central finite differences
in float64 for random depths, widths, activations, normalisation and dropout layers and
every loss; ``predict`` permutes with its rows; ``evaluate`` is the same for any batch
size; a batch's gradient is the row-weighted mean of its parts', and one ``fit`` epoch of
one full batch under SGD is exactly ``p - lr · that mean``. They run on ``numpy`` and
``array_api_strict:device1`` only.
"""

from __future__ import annotations

import io as text_io
import math
import threading
from typing import Any

import array_api_compat
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyfc
from anyfc import _backend, optimizers
from anyfc.testing import numeric_grad, rel_error
from tests import references
from tests.helpers import checkpoints, training
from tests.helpers.hostile import X, Y, _assert_same, _state, _trained
from tests.helpers.model import _net
from tests.helpers.zoo import RNG, _zoo_model
from tests.references import (
    ATOL,
    CASES,
    RTOL,
    _mlp,
    _mlp_params,
    host,
    host_opt_state,
    ref_output,
    ref_probabilities,
)


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "binary_cross_entropy",
                                  "mean_squared_error"])
def test_whole_network_gradient_matches_finite_differences(bk, loss, rng):
    model = _net(bk, loss)
    x = bk.asarray(rng.standard_normal((6, 4)))
    t_host = {"softmax_cross_entropy": rng.integers(0, 3, 6),
              "binary_cross_entropy": rng.integers(0, 2, (6, 3)).astype(float),
              "mean_squared_error": rng.standard_normal((6, 3))}[loss]
    t = bk.asarray(t_host, None if t_host.dtype.kind == "i" else "float64")

    for i, layer in enumerate(model.layers):
        for name in ("w", "b"):
            p0 = anyfc.to_numpy(getattr(layer, name))

            def energy(p_host, layer=layer, name=name):
                setattr(layer, name, bk.asarray(p_host))
                return float(anyfc.to_numpy(model.loss.forward(model.forward(x), t)))

            numeric = numeric_grad(energy, p0)
            setattr(layer, name, bk.asarray(p0))
            model.loss.forward(model.forward(x), t)
            model.backward(model.loss.backward())
            err = rel_error(getattr(layer, "grad_" + name), numeric)
            assert err < 1e-6, f"layer {i} grad_{name}: relative error {err:.2e}"


def test_predict_gives_probabilities_on_the_model_device(bk, rng):
    model = _net(bk)
    p = model.predict(rng.standard_normal((7, 4)), batch_size=3)
    assert tuple(p.shape) == (7, 3)
    assert _backend.namespace_of(p) is bk.xp and _backend.device_of(p) == bk.device
    assert p.dtype == bk.xp.float64
    np.testing.assert_allclose(anyfc.to_numpy(p).sum(axis=1), 1.0, rtol=1e-12)


def test_predict_in_batches_equals_one_batch(bk, rng):
    model = _net(bk, "mean_squared_error")
    X = rng.standard_normal((10, 4))
    whole = anyfc.to_numpy(model.predict(X, batch_size=None))
    np.testing.assert_allclose(anyfc.to_numpy(model.predict(X, batch_size=4)), whole)


@pytest.mark.cross
@pytest.mark.parametrize("source", ["list", "numpy", "array_api_strict", "torch", "jax"])
def test_inputs_from_other_libraries_are_moved_once(bk, source, rng):
    model = _net(bk)
    X, y = rng.standard_normal((12, 4)), rng.integers(0, 3, 12)
    expected = anyfc.to_numpy(model.predict(X))
    if source == "list":
        Xo, yo = X.tolist(), y.tolist()
    else:
        pytest.importorskip(source)
        Xo, yo = anyfc.to_backend(X, source, dtype="float64"), anyfc.to_backend(y, source)
    got = model.predict(Xo)
    assert _backend.namespace_of(got) is bk.xp and _backend.device_of(got) == bk.device
    np.testing.assert_allclose(anyfc.to_numpy(got), expected, rtol=1e-12)
    assert model.evaluate(Xo, yo) == pytest.approx(model.evaluate(X, y), rel=1e-12)


def test_layer_sizes_must_chain():
    with pytest.raises(ValueError, match="layer 1 gives 5 outputs but layer 2 takes 6"):
        anyfc.Sequential([anyfc.Dense(2, 3, "relu"), anyfc.Dense(3, 5, "relu"),
                          anyfc.Dense(6, 1, "relu")])


def test_layers_are_moved_to_the_model_backend_and_dtype():
    model = anyfc.Sequential([anyfc.Dense(2, 3, "relu", seed=0), anyfc.Dense(3, 1, "relu", seed=1)],
                             loss="mean_squared_error", backend="array_api_strict",
                             device="device1", dtype="float64")
    import array_api_strict as strict

    for layer in model.layers:
        assert layer.backend == "array_api_strict" and layer.dtype == strict.float64
        assert layer.device == strict.Device("device1")


PROPERTY_BACKENDS = ("numpy", "array_api_strict:device1")
SETTINGS = settings(max_examples=12, derandomize=True, deadline=None, database=None,
                    print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
ACTIVATIONS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "silu", "elu",
               "softplus", "softsign"]
LOSSES = ["softmax_cross_entropy", "binary_cross_entropy", "mean_squared_error"]


@pytest.fixture
def pbk(bk):
    if bk.id not in PROPERTY_BACKENDS:
        pytest.skip(f"property tests run on {', '.join(PROPERTY_BACKENDS)} only")
    return bk


@st.composite
def networks(draw: Any, row_coupled: bool = True) -> dict[str, Any]:
    """A recipe for a small network: input width, a list of layer specs, the loss, the
    number of rows and a seed for weights and data. ``row_coupled=False`` leaves out
    BatchNorm and Dropout (rows computed apart would differ)."""
    n_in = draw(st.integers(1, 4))
    loss = draw(st.sampled_from(LOSSES))
    specs: list[tuple[str, Any]] = []
    width = n_in
    for _ in range(draw(st.integers(0, 2))):  # hidden blocks
        width = draw(st.integers(1, 4))
        specs.append(("dense", (width, draw(st.sampled_from(ACTIVATIONS)))))
        extras = ["layernorm", "activation"] + (["batchnorm", "dropout"] if row_coupled
                                                 else [])
        extra = draw(st.sampled_from([None, *extras]))
        if extra == "activation":
            specs.append((extra, draw(st.sampled_from(ACTIVATIONS))))
        elif extra is not None:
            specs.append((extra, width))
    n_out = draw(st.integers(2 if loss == "softmax_cross_entropy" else 1, 4))
    specs.append(("dense", (n_out, "identity" if loss != "mean_squared_error"
                            else draw(st.sampled_from(ACTIVATIONS)))))
    return {"n_in": n_in, "specs": specs, "loss": loss, "n_out": n_out,
            "rows": draw(st.integers(2, 7)), "seed": draw(st.integers(0, 2**20))}


def build(recipe: dict[str, Any], bk) -> anyfc.Sequential:
    where = {"backend": bk.name, "device": bk.device_name, "dtype": "float64"}
    layers: list[anyfc.Layer] = []
    width = recipe["n_in"]
    for k, (kind, arg) in enumerate(recipe["specs"]):
        seed = recipe["seed"] + k
        if kind == "dense":
            layers.append(anyfc.Dense(width, arg[0], arg[1], seed=seed, **where))
            width = arg[0]
        elif kind == "layernorm":
            layers.append(anyfc.LayerNorm(arg, **where))
        elif kind == "batchnorm":
            layers.append(anyfc.BatchNorm(arg, **where))
        elif kind == "dropout":
            layers.append(anyfc.Dropout(0.3, seed=seed % 2**31, **where))
        else:
            layers.append(anyfc.Activation(arg, **where))
    model = anyfc.Sequential(layers, loss=recipe["loss"])
    # biases, γ and β start at 0 or 1: random ones test their gradients better, and keep
    # a ReLU's input off its kink at 0 where dropout zeroed everything below it
    rng = np.random.default_rng(recipe["seed"])
    state = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    for key in state:
        if key.endswith((".b", ".gamma", ".beta")):
            state[key] = rng.normal(1.0 if key.endswith("gamma") else 0.0, 0.5,
                                    state[key].shape)
    model.load_state_dict(state)
    return model


def data(recipe: dict[str, Any], rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(recipe["seed"] + 1000)
    h = recipe["rows"] if rows is None else rows
    X = rng.standard_normal((h, recipe["n_in"]))
    k, loss = recipe["n_out"], recipe["loss"]
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, k, h)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, (h, k)).astype(np.float64)
    else:
        y = rng.standard_normal((h, k))
    return X, y


def _reset_random(model: anyfc.Sequential) -> None:
    """Dropout draws the same mask on every forward (``reset_random`` restarts its
    stream from its seed), so the function finite differences see is deterministic."""
    for layer in model.layers:
        layer.reset_random()


def _gradients(model: anyfc.Sequential, x: Any, t: Any) -> dict[str, np.ndarray]:
    _reset_random(model)
    model.loss.forward(model.forward(x), t)
    model.backward(model.loss.backward())
    return {f"{i}.{name}": anyfc.to_numpy(getattr(layer, "grad_" + name))
            for i, layer in enumerate(model.layers) for name in layer.param_names}


def _targets(bk, y: np.ndarray) -> Any:
    return bk.asarray(y, None if y.dtype.kind == "i" else "float64")


@pytest.mark.property
@SETTINGS
@given(recipe=networks())
def test_backward_equals_finite_differences(pbk, recipe):
    model = build(recipe, pbk)
    X, y = data(recipe)
    x, t = pbk.asarray(X), _targets(pbk, y)
    analytic = _gradients(model, x, t)
    for i, layer in enumerate(model.layers):
        for name in layer.param_names:
            start = anyfc.to_numpy(getattr(layer, name))
            buffers = {b: getattr(layer, b) for b in layer.buffer_names}

            def energy(value: np.ndarray, layer=layer, name=name) -> float:
                setattr(layer, name, pbk.asarray(value))
                _reset_random(model)
                return float(anyfc.to_numpy(model.loss.forward(model.forward(x), t)))

            numeric = numeric_grad(energy, start)
            setattr(layer, name, pbk.asarray(start))
            for b, value in buffers.items():  # the forwards above moved running statistics
                setattr(layer, b, value)
            np.testing.assert_allclose(analytic[f"{i}.{name}"], numeric, rtol=1e-5, atol=1e-7,
                                       err_msg=f"layer {i} ({layer!r}) grad_{name}")


@pytest.mark.property
@SETTINGS
@given(recipe=networks(), data_=st.data())
def test_predict_permutes_with_the_rows(pbk, recipe, data_):
    model = build(recipe, pbk)
    X, _ = data(recipe)
    perm = np.array(data_.draw(st.permutations(range(X.shape[0]))))
    whole = anyfc.to_numpy(model.predict(X))
    permuted = anyfc.to_numpy(model.predict(X[perm], batch_size=data_.draw(
        st.sampled_from([1, 2, 3, None]))))
    np.testing.assert_allclose(permuted, whole[perm], rtol=1e-12, atol=1e-14)


@pytest.mark.property
@SETTINGS
@given(recipe=networks(), batch_size=st.integers(1, 9))
def test_evaluate_is_the_same_for_any_batch_size(pbk, recipe, batch_size):
    model = build(recipe, pbk)
    X, y = data(recipe, rows=recipe["rows"] + 4)
    whole = model.evaluate(X, y, batch_size=None)
    batched = model.evaluate(X, y, batch_size=batch_size)
    assert batched.keys() == whole.keys()
    for key in whole:
        assert batched[key] == pytest.approx(whole[key], rel=1e-10, abs=1e-14), key


@pytest.mark.property
@SETTINGS
@given(recipe=networks(row_coupled=False), split=st.floats(0.05, 0.95),
       lr=st.sampled_from([0.01, 0.1, 0.5]))
def test_a_batch_gradient_is_the_mean_of_its_parts_and_fit_takes_that_step(pbk, recipe,
                                                                          split, lr):
    """For layers that treat rows apart, ∂E/∂p of n rows is (k·∂E₁/∂p + (n−k)·∂E₂/∂p)/n
    for any split into k and n−k rows; and one epoch of ``fit`` with batch_size=n under
    SGD moves every parameter by exactly −lr times it."""
    model = build(recipe, pbk)
    X, y = data(recipe)
    n = X.shape[0]
    k = min(max(1, round(split * n)), n - 1)
    full = _gradients(model, pbk.asarray(X), _targets(pbk, y))
    first = _gradients(model, pbk.asarray(X[:k]), _targets(pbk, y[:k]))
    second = _gradients(model, pbk.asarray(X[k:]), _targets(pbk, y[k:]))
    for key, g in full.items():
        np.testing.assert_allclose((k * first[key] + (n - k) * second[key]) / n, g,
                                   rtol=1e-9, atol=1e-13, err_msg=key)
    before = {k_: anyfc.to_numpy(v) for k_, v in model.state_dict().items()}
    model.fit(X, y, epochs=1, batch_size=n, shuffle=False, verbose=0,
              optimizer=anyfc.optimizers.SGD(lr))
    after = {k_: anyfc.to_numpy(v) for k_, v in model.state_dict().items()}
    for key, g in full.items():
        i, name = key.split(".")
        np.testing.assert_allclose(after[f"layers.{i}.{name}"],
                                   before[f"layers.{i}.{name}"] - lr * g,
                                   rtol=1e-10, atol=1e-13, err_msg=key)


def test_model_to_moves_parameters_and_optimizer_state(bk, rng):
    model, X, _ = checkpoints._trained(checkpoints.anyfc_numpy())
    expected = anyfc.to_numpy(model.predict(X))
    model.to(bk.name, bk.device_name)
    assert model.backend == bk.name and model.device == bk.device
    for state in model.optimizer.state.values():
        for value in state.values():
            assert _backend.namespace_of(value) is bk.xp
            assert _backend.device_of(value) == bk.device
    np.testing.assert_allclose(anyfc.to_numpy(model.predict(X)), expected, rtol=1e-12)
    model.fit(X, np.zeros(40, dtype=np.int64), epochs=1, verbose=0)  # trains where it now is


def test_state_dict_round_trip_and_mismatch_leaves_model_unchanged(rng):
    model, X, _ = checkpoints._trained(checkpoints.anyfc_numpy())
    sd = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    other, _, _ = checkpoints._trained(checkpoints.anyfc_numpy(), seed=1)
    other.load_state_dict(sd)
    np.testing.assert_allclose(anyfc.to_numpy(other.predict(X)), anyfc.to_numpy(model.predict(X)))
    sd["layers.0.w"][0, 0] = 123.0  # the loaded model does not alias the caller's arrays
    assert anyfc.to_numpy(other.layers[0].w)[0, 0] != 123.0
    before = anyfc.to_numpy(other.layers[1].w)
    bad = dict(sd, **{"layers.1.w": np.zeros((8, 4))})
    with pytest.raises(ValueError, match=r"layers.1.w has shape \(8, 4\)"):
        other.load_state_dict(bad)
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"layers.0.w": sd["layers.0.w"]})
    np.testing.assert_array_equal(anyfc.to_numpy(other.layers[1].w), before)


def test_summary_lists_layers_shapes_and_counts(bk):
    model = anyfc.Sequential([bk.dense(3, 6, "identity", seed=0),
                              anyfc.BatchNorm(6, backend=bk.name, device=bk.device_name,
                                              dtype="float64"),
                              anyfc.ReLU(), bk.dense(6, 2, "identity", seed=1)])
    out = text_io.StringIO()
    model.summary(file=out)
    text = out.getvalue()
    params = sum(math.prod(getattr(layer, n).shape) for layer in model.layers
                 for n in layer.param_names)
    assert f"Total parameters: {params:,}" in text and "buffers: 12 values" in text
    assert text.count("(None, 6)") == 3 and "(None, 2)" in text
    assert bk.name in text.splitlines()[0] and "float64" in text.splitlines()[0]


def test_state_dict_copy_is_a_snapshot(bk):
    model = training._model(bk)
    snap = model.state_dict(copy=True)
    kept = {k: anyfc.to_numpy(v).copy() for k, v in snap.items()}
    model.fit(training.X, training.Y, epochs=2, verbose=0)
    for key, value in snap.items():
        np.testing.assert_array_equal(anyfc.to_numpy(value), kept[key])


@pytest.mark.reference
@pytest.mark.parametrize("case", list(CASES))
def test_predict_equals_the_reference_softmax_sigmoid_or_output(bk, case):
    loss, k, _, _ = CASES[case]
    model = _mlp(bk, loss, k)
    expected = ref_probabilities(loss, ref_output(_mlp_params(model), references.X))
    for batch_size in (4, None):
        got = host(model.predict(references.X, batch_size=batch_size))
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def _placement(a: Any) -> tuple[type, Any, Any]:
    return type(a), array_api_compat.device(a), a.dtype


def _trained_with_adam(backend: str, device: Any) -> anyfc.Sequential:
    model = anyfc.Sequential([
        anyfc.Dense(4, 6, "tanh", backend=backend, device=device, dtype="float64", seed=0),
        anyfc.Dense(6, 3, "identity", backend=backend, device=device, dtype="float64",
                    seed=1)])
    model.fit(references.X, CASES["softmax"][2], epochs=2, batch_size=8, shuffle=False, verbose=0,
              optimizer=optimizers.Adam(0.01))
    return model


def _assert_moved(model: anyfc.Sequential, before: dict[str, Any], reference: Any,
                  rtol: float) -> None:
    """Every parameter and every optimizer state array lives where ``reference`` does,
    and holds the values it held before the move."""
    want = _placement(reference)
    for key, value in model.state_dict().items():
        assert _placement(value) == want, key
    state = model.optimizer.state_dict()
    arrays = [k for k in state if k.startswith("state.")]
    assert state.keys() == before.keys() and arrays and state["t"] == before["t"]
    for key in arrays:
        value = state[key]
        assert _placement(value) == want, f"optimizer {key} left at {_placement(value)}"
        np.testing.assert_allclose(host(value), before[key], rtol=rtol, err_msg=key)


@pytest.mark.reference
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_to_moves_the_optimizer_state(bk, dtype):
    """From NumPy to the backend under test, and back; float32 on the way there."""
    model = _trained_with_adam("numpy", None)
    before = host_opt_state(model.optimizer)
    model.to(bk.name, bk.device_name, dtype)
    _assert_moved(model, before, bk.asarray([0.0], dtype), 1e-6 if dtype == "float32" else 0)
    model.fit(references.X, CASES["softmax"][2], epochs=1, batch_size=8,
              verbose=0)  # trains on there
    before = host_opt_state(model.optimizer)
    model.to("numpy", None, "float64")
    _assert_moved(model, before, np.zeros(1), 0)


CPU_BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "dask"]


@pytest.mark.reference
@pytest.mark.cross
@pytest.mark.parametrize("target", CPU_BACKENDS)
def test_cross_library_to_moves_the_optimizer_state(bk, target):
    """From the backend under test to each other installed library (the ``cross`` nox
    session installs them all together)."""
    if target == bk.id:
        pytest.skip("the same library and device: test_to_moves_the_optimizer_state")
    if target not in anyfc.available_backends():
        pytest.skip(f"{target} is not installed here (nox -s cross runs this)")
    model = _trained_with_adam(bk.name, bk.device_name)
    before = host_opt_state(model.optimizer)
    expected = host(model.predict(references.X))
    model.to(target)
    reference = anyfc.to_backend(np.zeros(1), target, dtype="float64")
    _assert_moved(model, before, reference, 0)
    np.testing.assert_allclose(host(model.predict(references.X)), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.hostile
def test_one_layer_object_may_appear_once(bk):
    layer = bk.dense(4, 4, "relu", seed=0)
    with pytest.raises(ValueError, match="layer 1 is the same object as layer 0"):
        anyfc.Sequential([layer, layer, bk.dense(4, 3, "identity", seed=1)])
    model = _trained(bk)
    before = _state(model)
    model.layers.append(model.layers[0])  # a repeat slipped in after construction
    for call in (lambda: model.fit(X, Y, verbose=0), lambda: model.predict(X),
                 lambda: model.evaluate(X, Y)):
        with pytest.raises(ValueError, match="same object as layer 0"):
            call()
    model.layers.pop()
    _assert_same(before, _state(model))


@pytest.mark.hostile
def test_reshaped_parameters_are_refused_where_used(bk, tmp_path):
    model = _trained(bk)
    path = tmp_path / "good.npz"
    model.save(path)
    good = path.read_bytes()
    model.layers[0].w = bk.asarray(np.zeros((5, 6)))
    for call in (lambda: model.fit(X, Y, verbose=0), lambda: model.predict(X),
                 lambda: model.save(path)):
        with pytest.raises(ValueError, match=r"layers.0.w has shape \(5, 6\).*needs \(4, 6\)"):
            call()
    assert path.read_bytes() == good  # the good checkpoint was not touched


@pytest.mark.hostile
def test_parameters_of_another_placement_are_refused(bk):
    model = _trained(bk)
    model.layers[1].b = np.zeros(3, dtype=np.float32)
    if bk.name == "numpy":  # same library: only the dtype differs
        match = "float32.*the model is numpy float64"
    else:
        match = "numpy.ndarray.*the model is"
    with pytest.raises(TypeError, match=match):
        model.predict(X)


@pytest.mark.hostile
def test_softmax_with_one_output_is_refused_with_the_loss_to_use(bk):
    with pytest.raises(ValueError, match="at least 2 outputs.*binary_cross_entropy"):
        anyfc.Sequential([bk.dense(4, 1, "identity", seed=0)])


@pytest.mark.hostile
def test_a_failed_move_changes_nothing(bk, monkeypatch):
    model = _trained(bk)
    before = _state(model)
    real = _backend.to_backend
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("transfer failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(_backend, "to_backend", flaky)
    target = "numpy" if bk.name != "numpy" else "array_api_strict"
    with pytest.raises(RuntimeError, match="transfer failed"):
        model.to(target)
    monkeypatch.undo()
    _assert_same(before, _state(model))


@pytest.mark.hostile
def test_a_model_trained_on_any_backend_moves_anywhere(bk):
    model = _trained(bk)
    expected = anyfc.to_numpy(model.predict(X))
    model.to("numpy")
    np.testing.assert_allclose(anyfc.to_numpy(model.predict(X)), expected, rtol=1e-10)
    model.fit(X, Y, epochs=1, verbose=0)
    model.to(bk.name, bk.device_name)
    model.fit(X, Y, epochs=1, verbose=0)


@pytest.mark.hostile
def test_load_state_dict_is_all_or_nothing_and_owns_its_arrays(bk):
    model = _trained(bk)
    before = _state(model)
    good = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    for key, value, error, pattern in [
        ("layers.1.b", np.array([0.0, np.nan, 0.0]), ValueError, "layers.1.b holds NaN"),
        ("layers.1.b", np.zeros(4), ValueError, r"layers.1.b has shape \(4,\)"),
        ("layers.1.w", np.full((6, 3), "a"), TypeError, "layers.1.w has dtype"),
    ]:
        bad = {k: v + 1.0 for k, v in good.items()}
        bad[key] = value
        with pytest.raises(error, match=pattern):
            model.load_state_dict(bad)
        _assert_same(before, _state(model))
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([("layers.0.w", good["layers.0.w"])])
    mine = {k: v.copy() for k, v in good.items()}
    for v in mine.values():
        v.flags.writeable = False  # read-only, as a memory-mapped file would be
    model.load_state_dict(mine)
    model.fit(X, Y, epochs=1, verbose=0)
    for key, value in mine.items():
        np.testing.assert_array_equal(value, good[key])  # never written into


@pytest.mark.hostile
def test_state_dict_copies_survive_training(bk):
    model = _trained(bk)
    live, copies = model.state_dict(), model.state_dict(copy=True)
    kept = {k: anyfc.to_numpy(v) for k, v in copies.items()}
    model.fit(X, Y, epochs=2, verbose=0)
    for key, value in copies.items():
        np.testing.assert_array_equal(anyfc.to_numpy(value), kept[key])
        anyfc.to_numpy(live[key])  # the live arrays are still readable (no donation)


@pytest.mark.hostile
def test_inference_keeps_nothing_on_the_layers(bk):
    model = _trained(bk)
    model.predict(X)
    model.evaluate(X, Y)
    assert all(layer.x is None and layer.y is None for layer in model.layers)


BAD_CALLS = [
    lambda m: m.fit(X[:, :3], Y, verbose=0),
    lambda m: m.fit(X, Y[:5], verbose=0),
    lambda m: m.fit(X, Y + 3, verbose=0),
    lambda m: m.fit(X, Y, batch_size=0, verbose=0),
    lambda m: m.fit(X, Y, seed=1.5, verbose=0),
    lambda m: m.fit(X, Y, validation_data=(X, Y, Y), verbose=0),
    lambda m: m.fit(X, Y, optimizer="nope", verbose=0),
    lambda m: m.fit(np.where(X > 1, np.nan, X), Y, verbose=0),
    lambda m: m.predict(X[:, :2]),
    lambda m: m.evaluate(X, Y, batch_size=-3),
    lambda m: m.load_state_dict({"layers.0.w": X}),
    lambda m: m.to("numpy", device="gpu:7"),
    lambda m: m.to(dtype="float16"),
]


@pytest.mark.hostile
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(BAD_CALLS) - 1), rows=st.integers(1, 24),
       backend=st.sampled_from([("numpy", None), ("array_api_strict", "device1")]))
def test_any_refused_call_leaves_the_model_unchanged(index, rows, backend):
    name, device = backend
    model = anyfc.Sequential([anyfc.Dense(4, 6, "relu", backend=name, device=device, seed=0),
                              anyfc.Dense(6, 3, "identity", backend=name, device=device,
                                          seed=1)])
    model.fit(X[:rows], Y[:rows], epochs=1, optimizer=anyfc.optimizers.Adam(0.01), verbose=0)
    before = _state(model)
    with pytest.raises((ValueError, TypeError)):
        BAD_CALLS[index](model)
    _assert_same(before, _state(model))


def test_predict_from_threads_while_another_trains_with_every_layer(bk):
    model = _zoo_model(bk)
    X, y = RNG.standard_normal((40, 6)), RNG.integers(0, 3, 40)
    model.fit(X, y, epochs=1, batch_size=8, seed=0, verbose=0)
    errors = []
    rounds, batch = (3, 20) if bk.is_lazy else (10, 8)  # Dask: each step computes a graph

    def predict_many():
        try:
            for _ in range(rounds):
                p = anyfc.to_numpy(model.predict(X[:5]))
                assert p.shape == (5, 3) and np.allclose(p.sum(axis=1), 1.0)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=predict_many) for _ in range(3)]
    for thread in threads:
        thread.start()
    model.fit(X, y, epochs=2, batch_size=batch, seed=1, verbose=0)
    for thread in threads:
        thread.join()
    assert not errors, errors


@pytest.mark.review
def test_a_parameter_free_first_layer_does_not_move_the_model(bk):
    where = {"backend": bk.name, "device": bk.device_name, "dtype": "float64"}
    model = anyfc.Sequential([anyfc.Dropout(0.2), anyfc.Dense(8, 4, "relu", seed=0, **where),
                              anyfc.Dense(4, 3, "identity", seed=1, **where)])
    assert model.backend == bk.name and model.dtype == bk.xp.float64
    assert model.layers[0].backend == bk.name


@pytest.mark.review
def test_settings_changed_after_construction_are_checked_before_training(bk):
    model = _zoo_model(bk)
    model.layers[3].rate = 1.5
    with pytest.raises(ValueError, match=r"layer 3 \(Dropout\) has a bad setting.*rate"):
        model.fit(RNG.standard_normal((20, 6)), RNG.integers(0, 3, 20), verbose=0)


# ------------------------------------------------ hostile settings (issue #21, round three)

HUGE = 10**400  # no float holds it: every numeric setting refuses it with a ValueError


@pytest.mark.hostile
@pytest.mark.parametrize("make", [
    lambda v: anyfc.layers.Dropout(v),
    lambda v: anyfc.layers.BatchNorm(3, eps=v),
    lambda v: anyfc.layers.BatchNorm(3, momentum=v),
    lambda v: anyfc.layers.LayerNorm(3, eps=v),
    lambda v: anyfc.layers.LeakyReLU(alpha=v),
    lambda v: anyfc.layers.ELU(alpha=v),
    lambda v: optimizers.SGD(lr=v),
    lambda v: optimizers.SGD(momentum=v),
    lambda v: optimizers.Adam(beta1=v),
    lambda v: optimizers.Adam(eps=v),
    lambda v: optimizers.RMSProp(rho=v),
    lambda v: optimizers.Adam(clipnorm=v),
    lambda v: anyfc.schedules.StepDecay(lr=v, step_size=1),
    lambda v: anyfc.schedules.ExponentialDecay(lr=0.1, decay_rate=v),
    lambda v: anyfc.callbacks.EarlyStopping(min_delta=v),
    lambda v: anyfc.callbacks.ReduceLROnPlateau(factor=v),
])
@pytest.mark.parametrize("value", [HUGE, -HUGE, float("inf"), float("nan"), np.float64("inf")],
                         ids=["huge", "minus-huge", "inf", "nan", "np-inf"])
def test_every_numeric_setting_refuses_out_of_range_values_with_a_value_error(make, value):
    with pytest.raises(ValueError, match="finite number"):
        make(value)


def _with_settings(bk):
    return anyfc.Sequential([bk.dense(4, 6, "leaky_relu", seed=0), anyfc.layers.BatchNorm(
        6, backend=bk.name, device=bk.device_name), anyfc.layers.ELU(backend=bk.name,
                                                                   device=bk.device_name),
        bk.dense(6, 3, "identity", seed=1)], loss="softmax_cross_entropy")


@pytest.mark.hostile
@pytest.mark.parametrize("spoil,pattern", [
    (lambda m: setattr(m.layers[0].activation, "alpha", float("inf")), "layer 0 .*alpha"),
    (lambda m: setattr(m.layers[1], "eps", -1.0), "layer 1 .*eps"),
    (lambda m: setattr(m.layers[1], "eps", HUGE), "layer 1 .*eps"),
    (lambda m: setattr(m.layers[2].activation, "alpha", float("nan")), "layer 2 .*alpha"),
    (lambda m: setattr(m.loss, "reduction", "mean"), "loss SoftmaxCrossEntropy .*reduction"),
    (lambda m: setattr(m, "loss", anyfc.losses.MeanSquaredError(outputs="sum")) or setattr(
        m.loss, "half", 1), "loss MeanSquaredError .*half"),
], ids=["dense-alpha-inf", "bn-eps-negative", "bn-eps-huge", "elu-layer-alpha-nan",
        "loss-reduction", "loss-half-not-bool"])
def test_a_setting_spoilt_after_construction_is_refused_before_any_computation(
        bk, spoil, pattern):
    model = _with_settings(bk)
    spoil(model)
    before = _state(model)
    for call in (lambda: model.predict(X), lambda: model.evaluate(X, Y),
                 lambda: model.fit(X, Y, epochs=1, verbose=0), model.check_settings):
        with pytest.raises(ValueError, match=pattern):
            call()
    _assert_same(before, _state(model))


@pytest.mark.hostile
def test_an_optimizer_setting_spoilt_after_construction_is_refused_by_fit_and_save(
        bk, tmp_path):
    model = _trained(bk)
    model.optimizer.beta1 = HUGE
    before = _state(model)
    with pytest.raises(ValueError, match="optimizer Adam has a bad setting: beta1"):
        model.fit(X, Y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="optimizer Adam has a bad setting: beta1"):
        model.save(tmp_path / "m.anyfc")
    assert not (tmp_path / "m.anyfc").exists()
    _assert_same(before, _state(model))
    model.optimizer.beta1 = 0.9
    model.optimizer.lr = 0.0  # 0 is accepted by assignment (freezes training)
    model.optimizer.check_settings()


# ------------------------------------------------ hostile precision (issue #21, round three)


def _wide(bk):
    model = anyfc.Sequential([bk.dense(4, 6, "tanh", seed=0, dtype="float64"),
                              anyfc.layers.BatchNorm(6, backend=bk.name, device=bk.device_name,
                                                     dtype="float64"),
                              bk.dense(6, 3, "identity", seed=1, dtype="float64")],
                             loss="softmax_cross_entropy")
    model.fit(X, Y, epochs=1, batch_size=8, optimizer=optimizers.Adam(0.01), seed=0, verbose=0)
    return model


@pytest.mark.hostile
@pytest.mark.parametrize("entry, name", [
    ("layers.0.w", r"layers\.0\.w"), ("layers.1.running_var", r"layers\.1\.running_var")])
def test_to_float32_refuses_values_that_do_not_fit_and_changes_nothing(bk, entry, name):
    model = _wide(bk)
    state = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    state[entry] = state[entry].copy()
    state[entry].flat[0] = 1e39
    model.load_state_dict(state)
    before = _state(model)
    with pytest.raises(ValueError, match=name + ".*too large for float32"):
        model.to(bk.name, bk.device_name, "float32")
    _assert_same(before, _state(model))
    assert model.dtype == _backend.resolve_dtype(bk.xp, "float64")


@pytest.mark.hostile
def test_to_float32_refuses_optimizer_state_that_does_not_fit(bk):
    model = _wide(bk)
    key = next(iter(model.optimizer.state))
    slot = next(iter(model.optimizer.state[key]))
    big = anyfc.to_numpy(model.optimizer.state[key][slot]).copy()
    big.flat[0] = 1e39
    model.optimizer.state[key][slot] = anyfc.to_backend(big, bk.name, bk.device_name)
    before = _state(model)
    with pytest.raises(ValueError, match="optimizer state.*too large for float32"):
        model.to(bk.name, bk.device_name, "float32")
    _assert_same(before, _state(model))


@pytest.mark.hostile
def test_load_converts_to_the_dtype_asked_and_refuses_values_that_do_not_fit(bk, tmp_path):
    model = _wide(bk)
    model.save(tmp_path / "ok.anyfc")
    small = anyfc.load(tmp_path / "ok.anyfc", bk.name, bk.device_name, dtype="float32")
    assert small.dtype == _backend.resolve_dtype(bk.xp, "float32")
    np.testing.assert_allclose(anyfc.to_numpy(small.predict(X)),
                               anyfc.to_numpy(model.predict(X)), rtol=1e-4, atol=1e-5)
    state = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    state["layers.2.w"] = state["layers.2.w"] * 0 + 1e39
    model.load_state_dict(state)
    model.save(tmp_path / "big.anyfc")
    with pytest.raises(ValueError, match=r"layers\.2\.w.*too large for float32"):
        anyfc.Sequential.load(tmp_path / "big.anyfc", bk.name, bk.device_name, dtype="float32")


# ---- predict's cached plan (issue #23): the checks still see every change -------------

def _plan_model(bk):
    return anyfc.Sequential([bk.dense(4, 6, {"name": "leaky_relu", "alpha": 0.1}, seed=0),
                             anyfc.BatchNorm(6, backend=bk.name, device=bk.device_name,
                                             dtype="float64"),
                             bk.dense(6, 3, seed=1)])


def test_predict_checks_again_whatever_changed_since_the_last_call(bk):
    """After a first ``predict`` (which caches what does not change), a setting, an
    activation's setting, a parameter's shape, the layer list and the input are all
    checked again at the next call, with the same errors as on a fresh model."""
    X = bk.asarray(np.random.default_rng(0).standard_normal((5, 4)))
    model = _plan_model(bk)
    first = anyfc.to_numpy(model.predict(X))
    np.testing.assert_allclose(anyfc.to_numpy(model.predict(X)), first)
    model.layers[1].eps = -1.0
    with pytest.raises(ValueError, match=r"layer 1 \(BatchNorm\) has a bad setting"):
        model.predict(X)
    model.layers[1].eps = 1e-5
    model.predict(X)
    model.layers[0].activation.alpha = math.inf
    with pytest.raises(ValueError, match="alpha"):
        model.predict(X)
    model.layers[0].activation.alpha = 0.1
    w = model.layers[2].w
    model.layers[2].w = bk.asarray(np.zeros((6, 4)))
    with pytest.raises(ValueError, match=r"layers.2.w has shape \(6, 4\)"):
        model.predict(X)
    model.layers[2].w = w
    model.layers.append(bk.dense(2, 2))
    with pytest.raises(ValueError, match="do not chain"):
        model.predict(X)
    model.layers.pop()
    np.testing.assert_allclose(anyfc.to_numpy(model.predict(X)), first)
    bad = np.random.default_rng(0).standard_normal((5, 4))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(rows \[3\]"):
        model.predict(bk.asarray(bad))
    with pytest.raises(ValueError, match="features per row"):
        model.predict(bk.asarray(np.zeros((2, 5))))


def test_predict_takes_finite_values_whose_sum_overflows():
    """The one-reduction finiteness check of predict's lean path sends rows whose float32
    sum overflows to the exact check, which passes them."""
    model = anyfc.Sequential([anyfc.Dense(4, 3, seed=0)], "mse")
    X = np.full((3, 4), 3e38, dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(X.sum())
    assert anyfc.to_numpy(model.predict(X)).shape == (3, 3)


def test_predict_reads_an_in_place_change_of_a_parameters_shape():
    model = anyfc.Sequential([anyfc.Dense(4, 6, seed=0), anyfc.Dense(6, 3, seed=1)])
    X = np.ones((2, 4), dtype=np.float32)
    model.predict(X)
    model.layers[0].b.shape = (2, 3)  # NumPy reshapes in place: the same object
    with pytest.raises(ValueError, match=r"layers.0.b has shape \(2, 3\)"):
        model.predict(X)


def test_a_model_pickles_and_copies_after_predict():
    import copy
    import pickle

    model = anyfc.Sequential([anyfc.Dense(4, 3, seed=0)])
    X = np.ones((2, 4), dtype=np.float32)
    want = model.predict(X)
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model), copy.copy(model)):
        np.testing.assert_array_equal(twin.predict(X), want)
