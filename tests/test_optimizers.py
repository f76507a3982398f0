"""anyfc.optimizers: each optimizer reduces the loss on every backend (mutable and
immutable arrays); each update and each option (momentum, Nesterov, weight decay, AdamW's
decoupled decay) against its equation, by ``step`` and inside ``fit``; gradient clipping
(``clipvalue``, ``clipnorm``: one norm over every parameter, the layers' gradients left
alone, inside ``jax.jit`` with the rate a traced scalar); the learning rate, epoch and
state bookkeeping (``lr``, ``state_dict``, ``load_state_dict``, ``to``, ``config``).

Tests marked ``reference`` check against ``RefOptimizer`` (tests/references.py); tests
marked ``mutation`` were written for surviving mutants of anyfc/optimizers.py: the default
settings, the range and name in each setting's error, a learning rate given as an array of
another dtype or device, ``Optimizer.to``, what ``load_state_dict`` accepts and refuses.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import optimizers
from anyfc.optimizers import SGD
from anyfc.schedules import Constant, StepDecay
from tests.helpers import hostile
from tests.helpers.training import X, _model, _weights
from tests.references import (
    ATOL,
    B0,
    GRADS,
    RTOL,
    STEPS,
    T_OPT,
    W0,
    X_OPT,
    RefOptimizer,
    _strict,
    assert_opt_state,
    host,
    host_opt_state,
    host_state,
    ref_train_linear,
)

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


def _small_classifier(bk, rng):
    X = rng.standard_normal((64, 5))
    y = (X @ rng.standard_normal(5) > 0).astype(np.int64)
    model = anyfc.Sequential(
        [bk.dense(5, 8, "relu", seed=0), bk.dense(8, 2, "identity", seed=1)], dtype="float64")
    return model, X, y


@pytest.mark.parametrize("name", list(ALL))
def test_every_optimizer_reduces_the_loss(bk, name, rng):
    model, X, y = _small_classifier(bk, rng)
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
    layer = bk.dense(3, 2, "relu", seed=0)
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
    layer = anyfc.Dense(2, 2, "relu")
    with pytest.raises(RuntimeError, match="backward"):
        optimizers.SGD().step([layer])


def test_get_by_name_and_default():
    assert isinstance(optimizers.get("rmsprop"), optimizers.RMSProp)
    assert isinstance(optimizers.get(None), optimizers.Adam)
    with pytest.raises(ValueError, match="adamw"):
        optimizers.get("lbfgs")


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


class _Params:
    """The least a layer needs for ``Optimizer.step``: parameters and their gradients."""

    param_names = ("w", "b")

    def __init__(self, w: Any, b: Any, grad_w: Any = None, grad_b: Any = None) -> None:
        self.w, self.b, self.grad_w, self.grad_b = w, b, grad_w, grad_b


def _clip_reference(grads: list[np.ndarray], clipnorm: float | None,
                    clipvalue: float | None) -> tuple[list[np.ndarray], float]:
    """``g ← clip(g, -c_v, c_v)``, then ``g ← g · c_n / max(‖g‖, c_n)`` with ``‖g‖`` over
    every gradient; also the norm that was compared with ``c_n``."""
    if clipvalue is not None:
        grads = [np.clip(g, -clipvalue, clipvalue) for g in grads]
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    if clipnorm is not None:
        grads = [g * (clipnorm / max(norm, clipnorm)) for g in grads]
    return grads, norm


def _reference(kind: str, params: list[np.ndarray], grad_steps: list[list[np.ndarray]],
               lr: float, clipnorm: float | None, clipvalue: float | None
               ) -> tuple[list[np.ndarray], list[float]]:
    """SGD with momentum 0.9, or Adam, on clipped gradients, in NumPy."""
    params = [p.copy() for p in params]
    v = [np.zeros_like(p) for p in params]
    m = [np.zeros_like(p) for p in params]
    norms = []
    for t, grads in enumerate(grad_steps, start=1):
        grads, norm = _clip_reference(grads, clipnorm, clipvalue)
        norms.append(norm)
        for i, g in enumerate(grads):
            if kind == "sgd":
                v[i] = 0.9 * v[i] + g
                params[i] = params[i] - lr * v[i]
            else:
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                m_hat, v_hat = m[i] / (1 - 0.9**t), v[i] / (1 - 0.999**t)
                params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return params, norms


def _make(kind: str, lr: float, clipnorm: float | None, clipvalue: float | None
          ) -> optimizers.Optimizer:
    if kind == "sgd":
        return optimizers.SGD(lr, momentum=0.9, clipnorm=clipnorm, clipvalue=clipvalue)
    return optimizers.Adam(lr, clipnorm=clipnorm, clipvalue=clipvalue)


def _problem(rng: np.random.Generator, steps: int = 4, scale: float = 1.0):
    """Two layers' worth of parameters, and their gradients for ``steps`` steps."""
    shapes = [(4, 3), (3,), (3, 2), (2,)]
    params = [rng.standard_normal(s) for s in shapes]
    grads = [[scale * rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    return params, grads


def _layers(bk, params: list[np.ndarray]) -> list[_Params]:
    """Two layers holding copies of ``params`` (NumPy would otherwise update them)."""
    w0, b0, w1, b1 = (bk.asarray(p.copy()) for p in params)
    return [_Params(w0, b0), _Params(w1, b1)]


CASES = {  # (clipnorm, clipvalue, gradient scale, the norm is above c_n at every step?)
    "norm-above": (0.5, None, 1.0, True),
    "norm-below": (50.0, None, 1.0, False),
    "value": (None, 0.3, 1.0, None),
    "value-then-norm": (0.7, 0.4, 1.0, True),
    "value-then-norm-below": (100.0, 0.4, 1.0, False),
    "large-gradients": (1.0, None, 1e3, True),
}


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("case", list(CASES))
def test_clipped_updates_match_the_equations(bk, rng, case, kind):
    clipnorm, clipvalue, scale, above = CASES[case]
    params, grad_steps = _problem(rng, scale=scale)
    expected, norms = _reference(kind, params, grad_steps, 0.1, clipnorm, clipvalue)
    if above is not None:  # the case is the one it says it is, at every step
        assert all((n > clipnorm) == above for n in norms), norms
    layers = _layers(bk, params)
    opt = _make(kind, 0.1, clipnorm, clipvalue)
    for grads in grad_steps:
        for j, layer in enumerate(layers):
            layer.grad_w, layer.grad_b = bk.asarray(grads[2 * j]), bk.asarray(grads[2 * j + 1])
        opt.step(layers)
        # the layers' own gradients are not clipped in place
        np.testing.assert_array_equal(anyfc.to_numpy(layers[1].grad_w), grads[2])
    got = [anyfc.to_numpy(getattr(layer, name)) for layer in layers for name in ("w", "b")]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    assert opt.t == len(grad_steps)


def test_the_norm_is_one_norm_over_every_parameter(bk):
    """Gradients of norms 3 and 4 (together 5), clipnorm 1: each is scaled by 1/5, not
    each to norm 1."""
    a, b = _Params(bk.asarray([0.0]), bk.asarray([0.0])), _Params(bk.asarray([0.0]),
                                                                   bk.asarray([0.0]))
    a.grad_w, a.grad_b = bk.asarray([3.0]), bk.asarray([0.0])
    b.grad_w, b.grad_b = bk.asarray([0.0]), bk.asarray([4.0])
    optimizers.SGD(1.0, clipnorm=1.0).step([a, b])
    assert anyfc.to_numpy(a.w).tolist() == pytest.approx([-0.6], rel=1e-14)
    assert anyfc.to_numpy(b.b).tolist() == pytest.approx([-0.8], rel=1e-14)


@pytest.mark.parametrize("clip", [{"clipnorm": 1e-3}, {"clipvalue": 1e-3},
                                  {"clipnorm": 1e-3, "clipvalue": 1e-4}])
def test_float32_parameters_stay_float32(bk, rng, clip):
    w = rng.standard_normal((3, 2)).astype(np.float32)
    layer = _Params(bk.asarray(w, "float32"), bk.asarray(np.zeros(2), "float32"),
                    bk.asarray(np.ones((3, 2)), "float32"), bk.asarray(np.ones(2), "float32"))
    opt = optimizers.SGD(0.1, **clip)
    opt.step([layer])
    opt.step([layer], lr=bk.asarray(0.1, "float64"))  # a float64 rate, too
    assert anyfc.to_numpy(layer.w).dtype == np.float32
    assert anyfc.to_numpy(layer.b).dtype == np.float32


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_the_rate_may_be_a_0d_array(bk, rng, kind):
    params, grad_steps = _problem(rng, steps=3)
    make = {"sgd": lambda: optimizers.SGD(1.0, momentum=0.9, clipnorm=0.5),
            "adam": lambda: optimizers.Adam(1.0, clipnorm=0.5),
            "adamw": lambda: optimizers.AdamW(1.0, weight_decay=0.1, clipnorm=0.5)}[kind]
    by_number, by_array = make(), make()
    runs = []
    for opt, lr in ((by_number, 0.05), (by_array, bk.asarray(0.05))):
        layers = _layers(bk, params)
        for grads in grad_steps:
            for j, layer in enumerate(layers):
                layer.grad_w = bk.asarray(grads[2 * j])
                layer.grad_b = bk.asarray(grads[2 * j + 1])
            opt.step(layers, lr=lr)
        runs.append([anyfc.to_numpy(getattr(la, n)) for la in layers for n in ("w", "b")])
    for a, b in zip(*runs):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    if kind == "sgd":
        expected, _ = _reference("sgd", params, grad_steps, 0.05, 0.5, None)
        for a, e in zip(runs[0], expected):
            np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12)


def test_clipping_inside_jax_jit():
    """The whole step — the global norm included — traced by ``jax.jit``, with the rate
    a traced argument: no host read of a traced value anywhere (it would raise)."""
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(0)
    params, grad_steps = _problem(rng, steps=3)

    def to_jax(a: np.ndarray) -> Any:
        return anyfc.to_backend(a, "jax", dtype="float64")

    for kind, clip in (("sgd", {"clipnorm": 0.5}), ("adam", {"clipnorm": 0.7, "clipvalue": 0.4}),
                       ("sgd", {"clipvalue": 0.3})):
        opt_template = _make(kind, 1.0, clip.get("clipnorm"), clip.get("clipvalue"))

        def step(ps: list[Any], gs: list[Any], state: dict[str, Any], t: Any, lr: Any,
                 template: optimizers.Optimizer = opt_template) -> tuple[Any, Any]:
            layers = [_Params(ps[0], ps[1], gs[0], gs[1]), _Params(ps[2], ps[3], gs[2], gs[3])]
            opt = type(template)(**template.config())
            opt.state, opt.t = {k: dict(v) for k, v in state.items()}, t
            opt.step(layers, lr=lr)
            return [getattr(la, n) for la in layers for n in ("w", "b")], opt.state

        compiled = jax.jit(step)
        ps, state = [to_jax(p) for p in params], {}
        for t, grads in enumerate(grad_steps):  # the step count and rate traced, too
            ps, state = compiled(ps, [to_jax(g) for g in grads], state, float(t), to_jax(0.1))
        expected, _ = _reference(kind, params, grad_steps, 0.1, clip.get("clipnorm"),
                                 clip.get("clipvalue"))
        for got, e in zip(ps, expected):
            assert anyfc.to_numpy(got).dtype == np.float64
            np.testing.assert_allclose(anyfc.to_numpy(got), e, rtol=1e-10, atol=1e-12)


def test_a_missing_gradient_stops_the_step_before_anything_changes(bk):
    first = _Params(bk.asarray([1.0]), bk.asarray([1.0]), bk.asarray([1.0]), bk.asarray([1.0]))
    second = _Params(bk.asarray([1.0]), bk.asarray([1.0]), bk.asarray([1.0]), None)
    opt = optimizers.SGD(0.1, clipnorm=1.0)
    with pytest.raises(RuntimeError, match="layer 1 has no grad_b"):
        opt.step([first, second])
    assert anyfc.to_numpy(first.w).tolist() == [1.0] and opt.t == 0 and not opt.state


@pytest.mark.parametrize("name", ["clipnorm", "clipvalue"])
@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, "1", True, [1.0]])
def test_bad_clip_settings_are_refused_by_name(name, value):
    for cls in optimizers.OPTIMIZERS.values():
        with pytest.raises(ValueError, match=name):
            cls(**{name: value})


@pytest.mark.parametrize("cls", list(optimizers.OPTIMIZERS.values()), ids=lambda c: c.__name__)
def test_clip_settings_are_in_the_config(cls):
    opt = cls(clipnorm=2, clipvalue=np.float32(0.5))
    config = opt.config()
    assert config["clipnorm"] == 2.0 and config["clipvalue"] == 0.5
    assert type(config["clipnorm"]) is float and type(config["clipvalue"]) is float
    again = cls(**json.loads(json.dumps(config)))
    assert again.config() == config
    assert "clipnorm=2.0, clipvalue=0.5" in repr(opt)
    assert cls().config()["clipnorm"] is None and cls().config()["clipvalue"] is None


def test_lr_can_be_set_later_and_is_checked():
    opt = optimizers.SGD(0.1)
    opt.lr = 0.01
    assert opt.lr == 0.01 and opt.learning_rate() == 0.01
    opt.lr = {"name": "constant", "lr": 0.2}
    assert opt.lr == Constant(0.2) and opt.learning_rate() == 0.2
    opt.lr = np.float32(0.5)
    assert type(opt.lr) is float and opt.lr == 0.5
    for bad, error in ((-1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
                       ("0.1", ValueError), (None, ValueError), ({"name": "nope"}, ValueError),
                       ({"name": "constant", "lr": 0}, ValueError)):
        with pytest.raises(error, match="lr|schedule"):
            opt.lr = bad
        assert opt.lr == 0.5  # unchanged
    opt.lr = 0  # a rate of 0 freezes training (the constructor wants a positive one)
    assert opt.lr == 0.0 and opt.learning_rate() == 0.0


def test_state_dict_carries_the_epoch():
    opt = optimizers.SGD(StepDecay(0.1, 1, per="epoch"))
    opt.end_epoch()
    opt.end_epoch()
    assert opt.state_dict() == {"t": 0, "epoch": 2}
    fresh = optimizers.SGD(StepDecay(0.1, 1, per="epoch"))
    fresh.load_state_dict(opt.state_dict())
    assert fresh.epoch == 2 and fresh.learning_rate() == pytest.approx(0.001, rel=1e-15)
    fresh.load_state_dict({"t": 3})  # older state dicts have no epoch
    assert (fresh.t, fresh.epoch) == (3, 0)


@pytest.mark.parametrize("epoch", [-1, 1.0, True, "2", None, 2**53 + 1])
def test_load_state_dict_refuses_a_bad_epoch_and_changes_nothing(epoch):
    opt = optimizers.SGD(0.1)
    opt.t, opt.epoch = 5, 4
    with pytest.raises(ValueError, match="epoch"):
        opt.load_state_dict({"t": 1, "epoch": epoch})
    assert (opt.t, opt.epoch) == (5, 4)


def test_config_leaves_out_what_training_changes():
    opt = optimizers.Adam(0.01)
    opt.t, opt.epoch = 3, 2
    assert set(opt.config()) == {"lr", "weight_decay", "clipnorm", "clipvalue", "beta1",
                                 "beta2", "eps"}


def test_clipnorm_bounds_each_full_batch_step_through_fit(bk):
    model = _model(bk, n_out=1, loss="mse", hidden=False)
    t = 100.0 * X[:, :1]  # large errors: the gradient norm is far above 0.01
    before = _weights(model)
    model.fit(X, t, epochs=1, batch_size=40, optimizer=SGD(1.0, clipnorm=0.01),
              verbose=0)
    after = _weights(model)
    change = np.sqrt(sum(np.sum((after[k] - before[k]) ** 2) for k in before))
    assert change == pytest.approx(0.01, rel=1e-6)


# case -> (optimizer class, settings, the same without the option under test)
OPTIONS: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]] = {
    "sgd": ("SGD", {"lr": 0.1}, None),
    "sgd_momentum": ("SGD", {"lr": 0.1, "momentum": 0.9}, {"lr": 0.1}),
    "sgd_nesterov": ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
                     {"lr": 0.1, "momentum": 0.9}),
    "sgd_weight_decay": ("SGD", {"lr": 0.1, "weight_decay": 0.3}, {"lr": 0.1}),
    "sgd_all": ("SGD", {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.3},
                {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    "adagrad": ("AdaGrad", {"lr": 0.1}, None),
    "adagrad_weight_decay": ("AdaGrad", {"lr": 0.1, "weight_decay": 0.3}, {"lr": 0.1}),
    "rmsprop": ("RMSProp", {"lr": 0.05, "rho": 0.8}, None),
    "rmsprop_weight_decay": ("RMSProp", {"lr": 0.05, "rho": 0.8, "weight_decay": 0.3},
                             {"lr": 0.05, "rho": 0.8}),
    "adam": ("Adam", {"lr": 0.05, "beta1": 0.8, "beta2": 0.95}, None),
    "adam_weight_decay": ("Adam", {"lr": 0.05, "weight_decay": 5.0}, {"lr": 0.05}),
    "adamw": ("AdamW", {"lr": 0.05, "weight_decay": 0.3}, {"lr": 0.05, "weight_decay": 0.0}),
}


PARAM_KEYS = {"w": "0.w", "b": "0.b"}


def _ref_optimizer_run(kind: str, settings: dict[str, Any]
                       ) -> tuple[dict[str, list[float]], np.ndarray, np.ndarray, dict]:
    ref = RefOptimizer(kind, **settings)
    history, w, b = ref_train_linear("mean_squared_error", W0, B0, X_OPT, T_OPT, 10, STEPS, ref)
    return history, w, b, ref.state_dict(PARAM_KEYS)


@pytest.mark.reference
def test_every_option_changes_the_reference():
    """The cases below are only worth something if each option, on this problem, moves the
    weights: an implementation that ignored it would then fail."""
    for case, (kind, settings, without) in OPTIONS.items():
        if without is None:
            continue
        kind_without = "Adam" if kind == "AdamW" else kind
        _, w1, _, _ = _ref_optimizer_run(kind, settings)
        _, w0, _, _ = _ref_optimizer_run(kind_without, without)
        # the tests compare to ~1e-10; Adam's steps hardly depend on the gradient's size,
        # so its L2 term moves the weights least (~5e-4 here)
        assert np.max(np.abs(w1 - w0)) > 1e-4, case
    # decoupled decay is not the L2 penalty
    _, w_adamw, _, _ = _ref_optimizer_run("AdamW", {"lr": 0.05, "weight_decay": 0.3})
    _, w_l2, _, _ = _ref_optimizer_run("Adam", {"lr": 0.05, "weight_decay": 0.3})
    assert np.max(np.abs(w_adamw - w_l2)) > 1e-4


@pytest.mark.reference
@pytest.mark.parametrize("case", list(OPTIONS))
def test_optimizer_in_fit_follows_its_equation(bk, case):
    """One full batch per epoch, so each epoch is one optimizer step: four steps of the
    optimizer inside ``fit`` (compiled where the backend compiles) against the equation:
    the loss before each step, the weights and the optimizer's state after the last."""
    kind, settings, _ = OPTIONS[case]
    model = anyfc.Sequential([bk.dense(3, 2, "identity")], loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    opt = getattr(optimizers, kind)(**settings)
    history = model.fit(X_OPT, T_OPT, epochs=STEPS, batch_size=10, shuffle=False, verbose=0,
                        optimizer=opt)
    expected, w, b, state = _ref_optimizer_run(kind, settings)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=RTOL)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(end["layers.0.b"], b, rtol=RTOL, atol=ATOL)
    assert_opt_state(host_opt_state(opt), state)


@pytest.mark.reference
@pytest.mark.parametrize("case", list(OPTIONS))
def test_optimizer_step_follows_its_equation(bk, case):
    """``optimizer.step(layers)`` on gradients set by hand, four steps."""
    kind, settings, _ = OPTIONS[case]
    layer = bk.dense(3, 2, "identity")
    layer.w, layer.b = bk.asarray(W0), bk.asarray(B0)
    opt = getattr(optimizers, kind)(**settings)
    ref = RefOptimizer(kind, **settings)
    params = {"w": W0.copy(), "b": B0.copy()}
    for gw, gb in GRADS:
        layer.grad_w, layer.grad_b = bk.asarray(gw), bk.asarray(gb)
        opt.step([layer])
        ref.step(params, {"w": gw, "b": gb})
    np.testing.assert_allclose(host(layer.w), params["w"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(host(layer.b), params["b"], rtol=RTOL, atol=ATOL)
    assert_opt_state(host_opt_state(opt), ref.state_dict(PARAM_KEYS))


@pytest.mark.mutation
@pytest.mark.parametrize("kind", ["SGD", "AdaGrad", "RMSProp", "Adam", "AdamW"])
def test_each_optimizer_by_default_follows_its_equation_with_the_documented_settings(kind):
    """``Optimizer()`` and ``optimizers.get(name)`` take RefOptimizer's defaults (the
    signatures' documented ones)."""
    for opt in (getattr(optimizers, kind)(), optimizers.get(kind.lower())):
        layer = anyfc.Dense(3, 2, "identity", dtype="float64")
        layer.w, layer.b = W0.copy(), B0.copy()
        ref, params = RefOptimizer(kind), {"w": W0.copy(), "b": B0.copy()}
        for gw, gb in GRADS:
            layer.grad_w, layer.grad_b = gw.copy(), gb.copy()
            opt.step([layer])
            ref.step(params, {"w": gw, "b": gb})
        np.testing.assert_allclose(layer.w, params["w"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(layer.b, params["b"], rtol=RTOL, atol=ATOL)
        assert opt.config().items() >= {k: v for k, v in ref.hp.items()}.items()


# (optimizer, the setting, a value out of its range, the range as the error writes it)
OUT_OF_RANGE = [
    ("SGD", "momentum", 1.0, r"[0.0, 1.0)"),
    ("RMSProp", "rho", 1.0, r"[0.0, 1.0)"),
    ("RMSProp", "rho", -0.1, r"[0.0, 1.0)"),
    ("Adam", "beta1", 1.0, r"[0.0, 1.0)"),
    ("Adam", "beta2", 1.0, r"[0.0, 1.0)"),
    ("AdamW", "beta2", 1.5, r"[0.0, 1.0)"),
    ("AdaGrad", "eps", 0.0, r"(0.0, inf)"),
    ("RMSProp", "eps", 0.0, r"(0.0, inf)"),
    ("Adam", "eps", 0.0, r"(0.0, inf)"),
    ("AdamW", "eps", -1e-8, r"(0.0, inf)"),
    ("SGD", "weight_decay", -0.1, r"[0.0, inf)"),
    ("Adam", "clipnorm", 0.0, r"(0.0, inf)"),
    ("AdaGrad", "clipvalue", 0.0, r"(0.0, inf)"),
]


@pytest.mark.mutation
@pytest.mark.parametrize("kind, name, value, interval", OUT_OF_RANGE)
def test_each_optimizer_setting_is_range_checked_by_name(kind, name, value, interval):
    import re

    with pytest.raises(ValueError, match="^" + re.escape(
            f"{name} must be a finite number in {interval}, got {value!r}") + "$"):
        getattr(optimizers, kind)(**{name: value})


@pytest.mark.mutation
@pytest.mark.parametrize("kind, name, value", [
    ("SGD", "momentum", 0.0), ("RMSProp", "rho", 0.0), ("RMSProp", "rho", 0.999),
    ("Adam", "beta1", 0.0), ("Adam", "beta2", 0.9999), ("AdaGrad", "eps", 1e-300),
    ("AdamW", "weight_decay", 0.0)])
def test_each_optimizer_setting_takes_the_ends_of_its_range(kind, name, value):
    assert getattr(getattr(optimizers, kind)(**{name: value}), name) == value


@pytest.mark.mutation
def test_nesterov_without_momentum_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"^nesterov=True needs momentum > 0$"):
        optimizers.SGD(0.1, nesterov=True)


@pytest.mark.mutation
@pytest.mark.parametrize("lr_dtype, lr_device", [
    ("float64", None), ("float64", "device1"), ("float32", None)])
def test_an_array_learning_rate_of_another_dtype_or_device_is_moved_to_each_parameter(
        lr_dtype, lr_device):
    """``step(layers, lr=a)`` with ``a`` a 0-d array of another dtype, or on another
    device, or both: the update is made with ``a`` in each parameter's dtype (float32) and
    on its device, so the parameters keep both (array_api_strict raises on mixed
    devices)."""
    xp, device = _strict()
    lr = anyfc.to_backend(np.asarray(0.1), "array_api_strict", lr_device, lr_dtype)
    for opt in (optimizers.SGD(), optimizers.Adam(), optimizers.SGD(clipnorm=0.5)):
        layer = anyfc.Dense(3, 2, "identity", backend="array_api_strict", device="device1",
                            dtype="float32")
        layer.w = anyfc.to_backend(W0, "array_api_strict", "device1", "float32")
        layer.b = anyfc.to_backend(B0, "array_api_strict", "device1", "float32")
        ref, params = RefOptimizer(type(opt).__name__, lr=0.1), {"w": W0.copy(),
                                                                 "b": B0.copy()}
        for gw, gb in GRADS[:2]:
            layer.grad_w = anyfc.to_backend(gw, "array_api_strict", "device1", "float32")
            layer.grad_b = anyfc.to_backend(gb, "array_api_strict", "device1", "float32")
            opt.step([layer], lr=lr)
            if opt.clipnorm is not None:  # the reference does not clip: scale here
                norm = np.sqrt(np.sum(gw * gw) + np.sum(gb * gb))
                gw, gb = gw * (0.5 / max(norm, 0.5)), gb * (0.5 / max(norm, 0.5))
            ref.step(params, {"w": gw, "b": gb})
        for name in ("w", "b"):
            p = getattr(layer, name)
            assert p.dtype == xp.float32 and p.device == device, name
            np.testing.assert_allclose(np.asarray(anyfc.to_numpy(p)), params[name],
                                       rtol=1e-5, atol=1e-6, err_msg=name)
        assert opt.lr_t.dtype == xp.float32 and opt.lr_t.device == device


def _adam_with_state() -> optimizers.Adam:
    layer = anyfc.Dense(3, 2, "identity", dtype="float64")
    layer.w, layer.b = W0.copy(), B0.copy()
    opt = optimizers.Adam(0.01)
    for gw, gb in GRADS[:2]:
        layer.grad_w, layer.grad_b = gw.copy(), gb.copy()
        opt.step([layer])
    return opt


@pytest.mark.mutation
def test_optimizer_to_moves_every_state_array_to_the_backend_device_and_dtype():
    xp, device = _strict()
    opt = _adam_with_state()
    before = host_opt_state(opt)
    assert opt.to("array_api_strict", "device1", "float32") is opt
    state = opt.state_dict()
    assert state.keys() == before.keys() and state["t"] == 2
    for key in (k for k in state if k.startswith("state.")):
        value = state[key]
        assert type(value) is type(xp.asarray(0.0)), key
        assert value.dtype == xp.float32 and value.device == device, key
        np.testing.assert_allclose(host(value), before[key], rtol=1e-6, err_msg=key)


@pytest.mark.mutation
def test_load_state_dict_puts_the_arrays_on_the_backend_device_and_dtype():
    xp, device = _strict()
    saved = _adam_with_state().state_dict()
    opt = optimizers.Adam(0.01)
    opt.load_state_dict(saved, "array_api_strict", "device1", "float32")
    state = opt.state_dict()
    assert state.keys() == saved.keys() and (state["t"], state["epoch"]) == (2, 0)
    for key in (k for k in state if k.startswith("state.")):
        assert state[key].dtype == xp.float32 and state[key].device == device, key
        np.testing.assert_allclose(host(state[key]), saved[key], rtol=1e-6, err_msg=key)


@pytest.mark.mutation
def test_load_state_dict_counts_default_to_zero_and_reach_2_to_the_53():
    saved = {k: v for k, v in _adam_with_state().state_dict().items() if k.startswith("state.")}
    opt = optimizers.Adam()
    opt.t, opt.epoch = 7, 3
    opt.load_state_dict(saved)  # neither count given: both 0
    assert (opt.t, opt.epoch) == (0, 0)
    opt.load_state_dict({"epoch": 4})
    assert (opt.t, opt.epoch, opt.state) == (0, 4, {})
    opt.load_state_dict({"t": 2**53, "epoch": 2**53})
    assert (opt.t, opt.epoch) == (2**53, 2**53)


@pytest.mark.mutation
@pytest.mark.parametrize("entry, match", [
    ({"t": -1}, r"^optimizer state has an invalid step count t=-1; expected an integer "
                r"in \[0, 2\*\*53\]$"),
    ({"t": 2**53 + 1}, r"invalid step count t=9007199254740993;"),
    ({"epoch": 1.5}, r"^optimizer state has an invalid epoch count epoch=1\.5; "),
    ({"epoch": True}, r"invalid epoch count epoch=True;"),
    ({"state.0.w.v.x": np.zeros(2)}, r"^unexpected optimizer state entry 'state\.0\.w\.v\.x'; "
                                     r"SGD keeps state\.<layer>\.<parameter>\.<slot> with "
                                     r"slot in \('v',\)$"),
    ({"other.0.w.v": np.zeros(2)}, r"unexpected optimizer state entry 'other\.0\.w\.v'"),
    ({"state.0.w.m": np.zeros(2)}, r"unexpected optimizer state entry 'state\.0\.w\.m'"),
])
def test_load_state_dict_refuses_bad_entries_naming_them(entry, match):
    opt = optimizers.SGD(momentum=0.5)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(entry)
    assert (opt.t, opt.epoch, opt.state) == (0, 0, {})


@pytest.mark.mutation
def test_load_state_dict_refuses_state_that_is_no_array_of_real_numbers():
    opt = optimizers.SGD(momentum=0.5)
    with pytest.raises(TypeError, match=r"^optimizer state entry 'state\.0\.w\.v' is a list, "
                                        r"not an array$"):
        opt.load_state_dict({"state.0.w.v": [0.0, 1.0]})
    with pytest.raises(TypeError, match=r"^optimizer state entry 'state\.0\.w\.v' has dtype "
                                        r"complex128"):
        opt.load_state_dict({"state.0.w.v": np.zeros(2, dtype=complex)})
    assert opt.state == {}


@pytest.mark.mutation
def test_clipnorm_of_a_layer_with_a_single_parameter():
    """The global norm over one gradient (a custom layer with one parameter): the only
    gradient is both the first and the last."""

    class Scale(anyfc.Layer):
        param_names = ("w",)

    layer = Scale()
    layer.w, layer.grad_w = W0.copy(), GRADS[0][0].copy()
    optimizers.SGD(0.1, clipnorm=0.5).step([layer])
    g = GRADS[0][0]
    np.testing.assert_allclose(layer.w, W0 - 0.1 * g * 0.5 / np.sqrt(np.sum(g * g)),
                               rtol=RTOL)


@pytest.mark.mutation
def test_an_unknown_optimizer_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^unknown optimizer 'lbfgs'; valid optimizers are "
                                         r"sgd, adagrad, rmsprop, adam, adamw$"):
        optimizers.get("lbfgs")
    with pytest.raises(ValueError, match=r"^unknown optimizer 3; "):
        optimizers.get(3)


@pytest.mark.mutation
def test_a_learning_rate_given_to_step_is_checked_by_name():
    layer = anyfc.Dense(3, 2, "identity", dtype="float64")
    layer.grad_w, layer.grad_b = GRADS[0][0].copy(), GRADS[0][1].copy()
    with pytest.raises(ValueError, match=r"^lr must be a finite number in \[0\.0, inf\), "
                                         r"got -0\.1$"):
        optimizers.SGD().step([layer], lr=-0.1)


@pytest.mark.mutation
def test_a_custom_optimizer_gets_the_base_class_defaults():
    """``Optimizer.__init__(lr)``: no weight decay, no clipping (a user's subclass)."""

    class Plain(optimizers.Optimizer):
        def update(self, xp, p, g, state):
            return p - self.lr_t * g

    opt = Plain(0.1)
    assert (opt.weight_decay, opt.clipnorm, opt.clipvalue) == (0.0, None, None)
    layer = anyfc.Dense(3, 2, "identity", dtype="float64")
    layer.w, layer.b = W0.copy(), B0.copy()
    layer.grad_w, layer.grad_b = GRADS[0][0].copy(), GRADS[0][1].copy()
    opt.step([layer])
    np.testing.assert_allclose(layer.w, W0 - 0.1 * GRADS[0][0], rtol=RTOL)


@pytest.mark.mutation
def test_a_step_over_layers_without_parameters_only_counts_the_step():
    opt = optimizers.SGD(0.1, momentum=0.5)
    opt.step([anyfc.ReLU(), anyfc.Dropout(0.5)])
    assert (opt.t, opt.state) == (1, {})


@pytest.mark.mutation
def test_a_fresh_optimizer_updates_at_its_learning_rate():
    """``lr_t``, the rate ``update`` uses, is the first step's rate before any step: a
    subclass's ``update`` called directly works."""
    opt = optimizers.SGD(anyfc.schedules.StepDecay(0.1, step_size=1, gamma=0.5, per="step"))
    assert opt.lr_t == opt.learning_rate() == 0.1
    np.testing.assert_allclose(opt.update(np, W0.copy(), GRADS[0][0], {}),
                               W0 - 0.1 * GRADS[0][0], rtol=RTOL)


@pytest.mark.hostile
def test_optimizer_state_loaded_from_arrays_never_writes_into_them(bk):
    model = hostile._trained(bk)
    model.optimizer = anyfc.optimizers.SGD(0.1, momentum=0.9)
    model.fit(hostile.X, hostile.Y, epochs=1, verbose=0)
    mine = {k: anyfc.to_numpy(v) if k not in ("t", "epoch") else v
            for k, v in model.optimizer.state_dict().items()}
    kept = {k: np.copy(v) for k, v in mine.items()}
    model.optimizer.load_state_dict(mine, bk.name, bk.device_name, "float64")
    model.fit(hostile.X, hostile.Y, epochs=1, verbose=0)
    for key, value in mine.items():
        np.testing.assert_array_equal(value, kept[key], err_msg=key)


@pytest.mark.review
def test_optimizer_state_entries_are_checked():
    opt = anyfc.optimizers.Adam()
    for state, error, pattern in [
        ({"t": 1, "state.0.w.zz": np.zeros(2)}, ValueError, "unexpected optimizer state"),
        ({"t": 1, "state.0.w.m": "abc"}, TypeError, "not an array"),
        ({"t": -1}, ValueError, "step count"),
    ]:
        with pytest.raises(error, match=pattern):
            opt.load_state_dict(state)
    opt.load_state_dict({"t": np.int64(5), "state.0.w.m": np.zeros(2)})
    assert opt.t == 5


FUSED = {
    **ALL,
    "sgd_nesterov_decay": lambda: optimizers.SGD(lr=0.05, momentum=0.9, nesterov=True,
                                                 weight_decay=1e-2),
    "sgd_lr_in_velocity": lambda: optimizers.SGD(lr=0.05, momentum=0.9, nesterov=True,
                                                 lr_in_velocity=True),
    "adam_decay_eps_hat": lambda: optimizers.Adam(lr=0.01, weight_decay=0.1, eps_hat=True),
    "adamw_clipnorm": lambda: optimizers.AdamW(lr=0.01, weight_decay=0.1, clipnorm=0.5),
    "adam_schedule": lambda: optimizers.Adam(lr=StepDecay(0.01, 2, 0.5, per="step")),
}


@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_torch_updates_equal_the_reference_code_in_float64(name):
    """torch's multi-tensor (``_foreach_*``) updates give the parameters and the
    optimizer state (same slots, same order) that the optimizers' own Array API code
    gives, in float64, over three epochs of ``fit``."""
    pytest.importorskip("torch")
    from anyfc import _backend

    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 5))
    y = rng.integers(0, 3, 50)

    def trained(fused: bool) -> tuple[dict[str, np.ndarray], Any]:
        _backend.set_fused(fused)
        try:
            model = anyfc.Sequential([anyfc.Dense(5, 8, "relu", seed=0, dtype="float64"),
                                      anyfc.Dense(8, 3, seed=1, dtype="float64")],
                                     backend="torch")
            model.fit(X, y, epochs=3, batch_size=16, optimizer=FUSED[name](), seed=0,
                      verbose=0)
        finally:
            _backend.set_fused(True)
        return {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}, model.optimizer

    fused, opt_fused = trained(True)
    plain, opt_plain = trained(False)
    for key in plain:
        np.testing.assert_allclose(fused[key], plain[key], rtol=1e-12, atol=1e-14,
                                   err_msg=key)
    assert opt_fused.t == opt_plain.t
    assert {k: list(v) for k, v in opt_fused.state.items()} == {
        k: list(v) for k, v in opt_plain.state.items()}
    for key, slots in opt_plain.state.items():
        for slot, value in slots.items():
            np.testing.assert_allclose(anyfc.to_numpy(opt_fused.state[key][slot]),
                                       anyfc.to_numpy(value), rtol=1e-12, atol=1e-14)


def test_a_subclass_with_its_own_update_never_takes_the_fused_form():
    """An ``Adam`` subclass that rewrites ``update`` runs its own code, on torch too."""
    torch = pytest.importorskip("torch")
    calls = []

    class Counting(optimizers.Adam):
        def update(self, xp, p, g, state):
            calls.append(1)
            return super().update(xp, p, g, state)

    layer = anyfc.Dense(3, 2, seed=0, backend="torch", dtype="float64")
    layer.forward(torch.ones((4, 3), dtype=torch.float64))
    layer.backward(torch.ones((4, 2), dtype=torch.float64))
    Counting(lr=0.1).step([layer])
    assert len(calls) == 2
