"""Gradient clipping (``clipvalue``, ``clipnorm``): the updates match a NumPy reference
written from the equations on every backend, the norm is one norm over all parameters,
the layers' gradients are left alone, and it runs inside ``jax.jit`` with the rate
passed in as a traced scalar."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import optimizers


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
