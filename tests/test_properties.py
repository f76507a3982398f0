"""Properties of whole networks, over small random ones (hypothesis, derandomized: the
same examples on every run, so a failure reproduces and nothing flakes).

- the gradients ``Sequential.backward`` sets equal central finite differences of
  ``loss(forward(x))`` in float64, for random depths, widths, activations, normalisation
  and dropout layers and every loss;
- ``predict`` treats rows independently: permuting the rows permutes the predictions;
- ``evaluate`` gives the same numbers for any batch size;
- the batch gradient is the row-weighted mean of its parts' gradients, and one ``fit``
  epoch of one full batch under SGD is exactly ``p - lr · that mean``.

They run on NumPy and on array_api_strict's ``device1`` (it behaves like a GPU) only:
each session of the backend matrix that selects one of those runs them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyfc
from anyfc.testing import numeric_grad

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
