"""Optimizers: each reduces the loss on every backend (mutable and immutable arrays),
and each update matches its equation computed in NumPy."""

import math

import numpy as np
import pytest

import anyfc
from anyfc import optimizers

ALL = {
    "sgd": lambda: optimizers.SGD(lr=0.1),
    "sgd_momentum": lambda: optimizers.SGD(lr=0.05, momentum=0.9),
    "sgd_nesterov": lambda: optimizers.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "sgd_decay": lambda: optimizers.SGD(lr=0.1, weight_decay=1e-3),
    "adagrad": lambda: optimizers.AdaGrad(lr=0.1),
    "rmsprop": lambda: optimizers.RMSProp(lr=0.01),
    "adam": lambda: optimizers.Adam(lr=0.01),
    "adamw": lambda: optimizers.AdamW(lr=0.01),
}


def _problem(bk, rng):
    X = rng.standard_normal((64, 5))
    y = (X @ rng.standard_normal(5) > 0).astype(np.int64)
    model = anyfc.Sequential(
        [bk.dense(5, 8, seed=0), bk.dense(8, 2, "identity", seed=1)], dtype="float64")
    return model, X, y


@pytest.mark.parametrize("name", list(ALL))
def test_every_optimizer_reduces_the_loss(bk, name, rng):
    model, X, y = _problem(bk, rng)
    before = model.evaluate(X, y)["loss"]
    history = model.fit(X, y, epochs=5, batch_size=16, optimizer=ALL[name](), verbose=0, seed=0)
    assert history["loss"][-1] < history["loss"][0]
    assert model.evaluate(X, y)["loss"] < 0.8 * before


def _reference_steps(name, p, grads, hp):
    """The same updates, in NumPy, straight from each optimizer's equations."""
    state = {"v": np.zeros_like(p), "h": np.zeros_like(p), "m": np.zeros_like(p)}
    for t, g in enumerate(grads, start=1):
        if name == "SGD":
            g = g + hp["weight_decay"] * p
            state["v"] = hp["momentum"] * state["v"] + g
            p = p - hp["lr"] * state["v"]
        elif name == "AdaGrad":
            state["h"] = state["h"] + g * g
            p = p - hp["lr"] * g / (np.sqrt(state["h"]) + hp["eps"])
        elif name == "RMSProp":
            state["h"] = hp["rho"] * state["h"] + (1 - hp["rho"]) * g * g
            p = p - hp["lr"] * g / (np.sqrt(state["h"]) + hp["eps"])
        else:
            if name == "AdamW":
                p = p - hp["lr"] * hp["weight_decay"] * p
            b1, b2 = hp["beta1"], hp["beta2"]
            state["m"] = b1 * state["m"] + (1 - b1) * g
            state["v"] = b2 * state["v"] + (1 - b2) * g * g
            m_hat, v_hat = state["m"] / (1 - b1**t), state["v"] / (1 - b2**t)
            p = p - hp["lr"] * m_hat / (np.sqrt(v_hat) + hp["eps"])
    return p


@pytest.mark.parametrize("opt", [
    optimizers.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), optimizers.AdaGrad(lr=0.1),
    optimizers.RMSProp(lr=0.1), optimizers.Adam(lr=0.1), optimizers.AdamW(lr=0.1)],
    ids=lambda o: type(o).__name__)
def test_update_matches_its_equation(bk, opt, rng):
    layer = bk.dense(3, 2, seed=0)
    p0 = anyfc.to_numpy(layer.w)
    grads = [rng.standard_normal((3, 2)) for _ in range(3)]
    opt = type(opt)(**opt.config())  # fresh state for each backend
    for g in grads:
        layer.grad_w, layer.grad_b = bk.asarray(g), bk.asarray(np.zeros(2))
        opt.step([layer])
    expected = _reference_steps(type(opt).__name__, p0, grads, opt.config())
    np.testing.assert_allclose(anyfc.to_numpy(layer.w), expected, rtol=1e-10, atol=1e-12)
    assert opt.t == 3


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": -1}, "lr"), ({"lr": 0}, "lr"), ({"lr": math.nan}, "lr"), ({"lr": math.inf}, "lr"),
    ({"momentum": 1.5}, "momentum"), ({"weight_decay": -0.1}, "weight_decay"),
    ({"momentum": 0.0, "nesterov": True}, "nesterov")])
def test_bad_hyper_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.SGD(**kwargs)


def test_step_before_backward_is_an_error():
    layer = anyfc.Dense(2, 2)
    with pytest.raises(RuntimeError, match="backward"):
        optimizers.SGD().step([layer])


def test_get_by_name_and_default():
    assert isinstance(optimizers.get("rmsprop"), optimizers.RMSProp)
    assert isinstance(optimizers.get(None), optimizers.Adam)
    with pytest.raises(ValueError, match="adamw"):
        optimizers.get("lbfgs")


def test_large_parameter_update_matches_its_equation(bk, rng):
    """Above 2**18 elements the update runs in row blocks (NumPy) or fused (torch), so
    no parameter-sized temporary is made; the result must not change."""
    layer = bk.dense(700, 400, seed=0, dtype="float32")  # 280,000 weights
    w0 = anyfc.to_numpy(layer.w)
    g = rng.standard_normal((700, 400)).astype(np.float32)
    layer.grad_w, layer.grad_b = bk.asarray(g, "float32"), bk.asarray(np.ones(400), "float32")
    optimizers.SGD(lr=0.5).step([layer])
    np.testing.assert_allclose(anyfc.to_numpy(layer.w), w0 - np.float32(0.5) * g, rtol=1e-6)
    np.testing.assert_allclose(anyfc.to_numpy(layer.b), -0.5 * np.ones(400), rtol=1e-6)


def test_gradient_buffer_is_reused_and_correct(bk, rng):
    layer = bk.dense(5, 3, seed=0)
    for _ in range(2):
        x, r = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
        layer.forward(bk.asarray(x))
        layer.backward(bk.asarray(r))
        y = anyfc.to_numpy(layer.y)
        delta = r * (y > 0)
        np.testing.assert_allclose(anyfc.to_numpy(layer.grad_w), x.T @ delta, rtol=1e-10)


def test_changing_a_hyper_parameter_between_steps_takes_effect(bk, rng):
    """A learning-rate schedule that edits opt.lr must work, compiled (JAX) or not."""
    model = anyfc.Sequential([bk.dense(3, 2, "identity", seed=0)], loss="mean_squared_error")
    X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    opt = optimizers.SGD(lr=0.1)
    model.fit(X, y, epochs=1, batch_size=8, optimizer=opt, verbose=0)
    opt.lr = 0.0
    before = anyfc.to_numpy(model.layers[0].w)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(anyfc.to_numpy(model.layers[0].w), before)
    opt.lr = 0.1
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert not np.array_equal(anyfc.to_numpy(model.layers[0].w), before)
