"""Learning-rate schedules: each value against its equation, per-step and per-epoch
schedules driving an optimizer, and configurations that round-trip (and refuse what no
schedule takes). The optimizer's own ``lr``/``epoch`` bookkeeping: tests/test_optimizers.py."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import optimizers, schedules
from anyfc.schedules import Constant, CosineDecay, ExponentialDecay, StepDecay

# ---------------------------------------------------------------- values


def test_constant():
    sched = Constant(0.3)
    assert [sched(c) for c in (0, 1, 10**6)] == [0.3, 0.3, 0.3]
    assert sched.per == "step"


def test_step_decay_is_lr_times_gamma_to_the_floor():
    sched = StepDecay(0.1, step_size=10, gamma=0.5)
    for count in (0, 9, 10, 19, 20, 25, 99):
        assert sched(count) == pytest.approx(0.1 * 0.5 ** math.floor(count / 10), rel=1e-15)
    assert sched(9) == 0.1 and sched(10) == 0.05 and sched(25) == 0.025
    assert sched.per == "epoch"


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay_as_keras(staircase):
    sched = ExponentialDecay(0.2, decay_rate=0.9, decay_steps=4, staircase=staircase)
    for count in (0, 1, 3, 4, 7, 8, 13):
        exponent = count // 4 if staircase else count / 4
        assert sched(count) == pytest.approx(0.2 * 0.9**exponent, rel=1e-15)
    assert sched(0) == 0.2
    assert (sched(3) == 0.2) == staircase


def test_cosine_decay_with_warm_up():
    lr, W, D, start, final = 0.4, 10, 100, 0.04, 0.01
    sched = CosineDecay(lr, decay_steps=D, warmup_steps=W, warmup_start=start, final_lr=final)

    def expected(c: int) -> float:
        if c < W:
            return start + (lr - start) * c / W
        if c < W + D:
            return final + (lr - final) * 0.5 * (1 + math.cos(math.pi * (c - W) / D))
        return final

    assert sched(0) == start  # warm-up start
    assert sched(5) == pytest.approx((start + lr) / 2, rel=1e-15)  # half-way up
    assert sched(W) == pytest.approx(lr, rel=1e-15)  # warm-up end: the peak
    assert sched(W + D // 2) == pytest.approx((lr + final) / 2, rel=1e-14)  # cosine midpoint
    assert sched(W + D // 4) == pytest.approx(
        final + (lr - final) * (1 + math.sqrt(0.5)) / 2, rel=1e-14)
    assert sched(W + D) == final and sched(W + D + 1000) == final  # after the decay
    for c in range(0, W + D + 5):
        assert sched(c) == pytest.approx(expected(c), rel=1e-14, abs=1e-17)
    # the rate only falls after the warm-up
    values = [sched(c) for c in range(W, W + D + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_cosine_decay_without_warm_up_starts_at_lr():
    sched = CosineDecay(0.1, decay_steps=4)
    assert sched(0) == 0.1
    assert sched(2) == pytest.approx(0.05, rel=1e-15)
    assert sched(4) == 0.0 and sched(5) == 0.0


def test_schedule_values_are_python_floats():
    for sched in (Constant(1), StepDecay(1, 2), ExponentialDecay(1, 0.5),
                  CosineDecay(1, 10, warmup_steps=3)):
        assert all(type(sched(c)) is float for c in (0, 1, 2, 5, 50))


@pytest.mark.parametrize("count", [-1, 1.5, "3", None, True])
def test_a_count_is_a_non_negative_integer(count):
    with pytest.raises(ValueError, match="count"):
        StepDecay(0.1, 2)(count)


def test_numpy_integers_are_counts():
    assert StepDecay(0.1, 2, gamma=0.5)(np.int64(4)) == 0.025


# ---------------------------------------------------------------- bad arguments

BAD = [
    (Constant, {"lr": 0}, "lr"), (Constant, {"lr": -1.0}, "lr"),
    (Constant, {"lr": math.nan}, "lr"), (Constant, {"lr": math.inf}, "lr"),
    (Constant, {"lr": "0.1"}, "lr"), (Constant, {"lr": True}, "lr"),
    (StepDecay, {"lr": 0.1, "step_size": 0}, "step_size"),
    (StepDecay, {"lr": 0.1, "step_size": 2.5}, "step_size"),
    (StepDecay, {"lr": 0.1, "step_size": True}, "step_size"),
    (StepDecay, {"lr": 0.1, "step_size": 2, "gamma": 0.0}, "gamma"),
    (StepDecay, {"lr": 0.1, "step_size": 2, "gamma": 1.5}, "gamma"),
    (StepDecay, {"lr": 0.1, "step_size": 2, "per": "batch"}, "per"),
    (StepDecay, {"lr": 0.1, "step_size": 2, "per": None}, "per"),
    (ExponentialDecay, {"lr": 0.1, "decay_rate": 0.0}, "decay_rate"),
    (ExponentialDecay, {"lr": 0.1, "decay_rate": 1.01}, "decay_rate"),
    (ExponentialDecay, {"lr": 0.1, "decay_rate": 0.5, "decay_steps": 0}, "decay_steps"),
    (ExponentialDecay, {"lr": 0.1, "decay_rate": 0.5, "staircase": 1}, "staircase"),
    (ExponentialDecay, {"lr": -0.1, "decay_rate": 0.5}, "lr"),
    (CosineDecay, {"lr": 0.1, "decay_steps": 0}, "decay_steps"),
    (CosineDecay, {"lr": 0.1, "decay_steps": 10, "warmup_steps": -1}, "warmup_steps"),
    (CosineDecay, {"lr": 0.1, "decay_steps": 10, "warmup_steps": 1.0}, "warmup_steps"),
    (CosineDecay, {"lr": 0.1, "decay_steps": 10, "warmup_start": -0.1}, "warmup_start"),
    (CosineDecay, {"lr": 0.1, "decay_steps": 10, "warmup_start": 0.2}, "warmup_start"),
    (CosineDecay, {"lr": 0.1, "decay_steps": 10, "final_lr": 0.5}, "final_lr"),
    (CosineDecay, {"lr": 0.1, "decay_steps": 10, "final_lr": math.nan}, "final_lr"),
    (CosineDecay, {"lr": 0.1, "decay_steps": 10, "per": "Epoch"}, "per"),
]


@pytest.mark.parametrize("cls,kwargs,match", BAD,
                         ids=[f"{c.__name__}-{m}-{i}" for i, (c, _, m) in enumerate(BAD)])
def test_bad_arguments_are_refused_by_name(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# ---------------------------------------------------------------- configurations

ALL = [Constant(0.5), StepDecay(0.1, 3, gamma=0.5), StepDecay(0.1, 3, per="step"),
       ExponentialDecay(0.01, 0.96, decay_steps=100, staircase=True, per="epoch"),
       CosineDecay(0.1, 50, warmup_steps=5, warmup_start=0.01, final_lr=0.001)]


@pytest.mark.parametrize("sched", ALL, ids=repr)
def test_config_round_trips_through_json(sched):
    config = sched.config()
    assert config["name"] in schedules.SCHEDULES
    again = schedules.get(json.loads(json.dumps(config)))
    assert again == sched and type(again) is type(sched) and again is not sched
    assert hash(again) == hash(sched)
    assert again.config() == config
    assert [again(c) for c in range(60)] == [sched(c) for c in range(60)]
    assert eval(repr(sched), vars(schedules)) == sched  # noqa: S307 (our own repr)


def test_config_holds_every_constructor_argument():
    import inspect

    for name, cls in schedules.SCHEDULES.items():
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        assert list(cls.arguments) == params
        sched = next(s for s in ALL if type(s) is cls)
        assert list(sched.config()) == ["name", *params] and sched.config()["name"] == name


def test_equality_is_by_config():
    assert StepDecay(0.1, 3) == StepDecay(0.1, 3, gamma=0.1, per="epoch")
    assert StepDecay(0.1, 3) != StepDecay(0.1, 3, per="step")
    assert Constant(0.1) != StepDecay(0.1, 3)
    assert Constant(0.1) != 0.1


def test_get_returns_a_schedule_as_it_is():
    sched = Constant(0.1)
    assert schedules.get(sched) is sched


@pytest.mark.parametrize("spec,error,match", [
    ({"name": "cyclic", "lr": 0.1}, ValueError, "unknown learning-rate schedule"),
    ({"lr": 0.1}, ValueError, "unknown learning-rate schedule"),
    ({"name": ["constant"], "lr": 0.1}, ValueError, "unknown"),
    ({"name": "__init__", "lr": 0.1}, ValueError, "unknown"),
    ({"name": "constant", "lr": 0.1, "per": "epoch"}, ValueError, "unexpected argument.*'per'"),
    ({"name": "step_decay", "lr": 0.1, "step_size": 2, "__class__": "os.system"}, ValueError,
     "unexpected argument"),
    ({"name": "step_decay", "lr": 0.1}, ValueError, "step_size"),
    ({"name": "step_decay", "lr": 0.1, "step_size": "2"}, ValueError, "step_size"),
    ({"name": "cosine_decay", "lr": {"x": 1}, "decay_steps": 2}, ValueError, "lr"),
    ("constant", TypeError, "Schedule or its config dict"),
    (0.1, TypeError, "Schedule or its config dict"),
])
def test_get_refuses_what_no_schedule_takes(spec, error, match):
    with pytest.raises(error, match=match):
        schedules.get(spec)


# ---------------------------------------------------------------- through an optimizer


class _Params:
    """The least a layer needs for ``Optimizer.step``: parameters and their gradients."""

    param_names = ("w",)

    def __init__(self, w: Any, grad_w: Any) -> None:
        self.w, self.grad_w = w, grad_w


def _steps(opt, bk, rng, epochs: int, steps_per_epoch: int):
    """Run SGD over ``epochs × steps_per_epoch`` steps; the rates it used and the
    parameter it made, next to the same updates in NumPy at the schedule's rates."""
    w0 = rng.standard_normal((3, 2))
    obj = _Params(bk.asarray(w0.copy()), None)  # NumPy would update w0 itself
    expected, rates = w0.copy(), []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            g = rng.standard_normal((3, 2))
            obj.grad_w = bk.asarray(g)
            rate = opt.learning_rate()
            opt.step([obj])
            assert opt.lr_t == rate
            rates.append(rate)
            expected = expected - rate * g
        opt.end_epoch()
    np.testing.assert_allclose(anyfc.to_numpy(obj.w), expected, rtol=1e-12, atol=1e-14)
    return rates


def test_per_epoch_schedule_changes_the_rate_once_an_epoch(bk, rng):
    opt = optimizers.SGD(StepDecay(0.1, step_size=1, gamma=0.5, per="epoch"))
    rates = _steps(opt, bk, rng, epochs=3, steps_per_epoch=2)
    assert rates == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    assert (opt.t, opt.epoch) == (6, 3)


def test_per_step_schedule_changes_the_rate_every_step(bk, rng):
    opt = optimizers.SGD(StepDecay(0.1, step_size=1, gamma=0.5, per="step"))
    rates = _steps(opt, bk, rng, epochs=3, steps_per_epoch=2)
    assert rates == [0.1 * 0.5**k for k in range(6)]


def test_warm_up_then_cosine_through_adam(bk, rng):
    sched = CosineDecay(0.1, decay_steps=4, warmup_steps=2)
    opt = optimizers.Adam(sched)
    obj = _Params(bk.asarray(rng.standard_normal(4)), bk.asarray(rng.standard_normal(4)))
    seen = []
    for _ in range(8):
        seen.append(opt.learning_rate())
        opt.step([obj])
    assert seen == [sched(c) for c in range(8)]
    assert seen[0] == 0.0 and seen[2] == 0.1 and seen[6:] == [0.0, 0.0]


def test_an_explicit_rate_overrides_the_schedule_for_one_step(bk, rng):
    opt = optimizers.SGD(Constant(0.1))
    w0, g = rng.standard_normal(3), rng.standard_normal(3)
    obj = _Params(bk.asarray(w0.copy()), bk.asarray(g))
    opt.step([obj], lr=0.5)
    assert opt.lr_t == 0.5 and opt.t == 1 and opt.lr == Constant(0.1)
    np.testing.assert_allclose(anyfc.to_numpy(obj.w), w0 - 0.5 * g, rtol=1e-12)
    with pytest.raises(ValueError, match="lr"):
        opt.step([obj], lr=-1.0)
    assert opt.t == 1


@pytest.mark.parametrize("cls", list(optimizers.OPTIMIZERS.values()), ids=lambda c: c.__name__)
def test_every_optimizer_takes_a_schedule_or_its_config(cls):
    sched = ExponentialDecay(0.05, 0.5, per="epoch")
    for lr in (sched, sched.config()):
        opt = cls(lr)
        assert opt.lr == sched
        assert opt.learning_rate() == 0.05
        opt.end_epoch()
        assert opt.learning_rate() == 0.025
        config = opt.config()
        assert config["lr"] == sched.config()
        again = cls(**json.loads(json.dumps(config)))
        assert again.config() == config and again.lr == sched
        assert repr(opt).startswith(f"{cls.__name__}(lr=ExponentialDecay(lr=0.05")


# ---------------------------------------------------------------- mutants of schedules.py


@pytest.mark.mutation
@pytest.mark.parametrize("make, message", [
    (lambda: Constant(0.0), r"^lr must be a finite number in \(0.0, inf\), got 0.0$"),
    (lambda: StepDecay(0.0, 1), r"^lr must be a finite number in \(0.0, inf\)"),
    (lambda: StepDecay(0.1, 0), r"^step_size must be a positive integer, got 0$"),
    (lambda: StepDecay(0.1, 1, gamma=0.0), r"^gamma must be a finite number in \(0.0, 1.0\]"),
    (lambda: ExponentialDecay(0.0, 0.5), r"^lr must be a finite number in \(0.0, inf\)"),
    (lambda: ExponentialDecay(0.1, 0.0), r"^decay_rate must be a finite number in \(0.0, 1.0\]"),
    (lambda: ExponentialDecay(0.1, 0.5, 0), r"^decay_steps must be a positive integer"),
    (lambda: ExponentialDecay(0.1, 0.5, staircase=1), r"^staircase must be True or False"),
    (lambda: CosineDecay(0.0, 5), r"^lr must be a finite number in \(0.0, inf\)"),
    (lambda: CosineDecay(0.1, 0), r"^decay_steps must be a positive integer"),
    (lambda: CosineDecay(0.1, 5, warmup_steps=-1), r"^warmup_steps must be a non-negative"),
    (lambda: CosineDecay(0.1, 5, warmup_start=0.2),
     r"^warmup_start must be a finite number in \[0.0, 0.1\]"),
    (lambda: CosineDecay(0.1, 5, final_lr=0.2), r"^final_lr must be a finite number in "
                                                r"\[0.0, 0.1\]"),
    (lambda: StepDecay(0.1, 1)(-1), r"^count must be a non-negative integer, got -1$"),
])
def test_every_setting_is_refused_by_name_with_its_exact_range(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.mutation
def test_closed_ends_of_the_ranges_are_accepted():
    """γ = 1 and decay_rate = 1 (no decay), warm-up from and decay to the rate itself."""
    assert StepDecay(0.1, 1, gamma=1.0)(5) == 0.1
    assert ExponentialDecay(0.1, 1.0)(5) == 0.1
    flat = CosineDecay(0.1, 4, warmup_steps=2, warmup_start=0.1, final_lr=0.1)
    assert [flat(c) for c in range(8)] == [0.1] * 8


@pytest.mark.mutation
def test_exponential_decay_is_smooth_unless_asked_for_a_staircase():
    smooth = ExponentialDecay(1.0, 0.5, decay_steps=2)
    assert smooth.staircase is False and smooth(1) == pytest.approx(0.5 ** 0.5)
    assert ExponentialDecay(1.0, 0.5, decay_steps=2, staircase=True)(1) == 1.0


@anyfc.register(name="test_halving")
class Halving(schedules.Schedule):
    """A schedule of your own: not in SCHEDULES, named by the registry."""

    name = "halving"
    arguments = ("lr",)

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def rate(self, count: int) -> float:
        return self.lr / 2 ** count


@pytest.mark.mutation
def test_a_registered_schedule_of_your_own_travels_as_its_spec():
    sched = Halving(0.8)
    config = schedules.to_config(sched)
    assert config == {"type": "test_halving", "config": {"lr": 0.8}}
    back = schedules.get(json.loads(json.dumps(config)))
    assert type(back) is Halving and back(2) == 0.2
    spec = json.loads(json.dumps(anyfc.registry.spec(optimizers.SGD(sched))))
    opt = anyfc.registry.build("optimizer", spec)
    assert type(opt.lr) is Halving and opt.learning_rate() == 0.8


@pytest.mark.mutation
def test_unexpected_arguments_are_listed_with_the_schedules_own():
    with pytest.raises(ValueError, match=r"^unexpected argument\(s\) 'gamma', 'x' for schedule "
                                         r"'constant'; its arguments are lr$"):
        schedules.get({"name": "constant", "lr": 0.1, "gamma": 0.5, "x": 1})
    with pytest.raises(ValueError, match=r"^unexpected argument\(s\) 'x' for schedule "
                                         r"'step_decay'; its arguments are lr, step_size, "
                                         r"gamma, per$"):
        schedules.get({"name": "step_decay", "lr": 0.1, "step_size": 2, "x": 1})
    with pytest.raises(ValueError, match=r"valid schedules are constant, step_decay, "
                                         r"exponential_decay, cosine_decay$"):
        schedules.get({"name": "nope"})
    with pytest.raises(TypeError, match="got list"):
        schedules.get([1])
