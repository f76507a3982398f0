"""anyfc.training.loop (``Sequential.fit``): the whole training path on every backend —
history and placement, the same training on every backend, the digits, the history and
weights of ``fit`` against NumPy training, every callback hook with its arguments,
schedules step by step, ``validation_split``, every argument checked before anything
changes, divergence and interruptions undone with the optimizer's state (and the dropout
masks), too-small last batches refused, weights in a float32 model on another device.

Tests marked ``reference`` check against tests/references.py; tests marked ``mutation``
were written for surviving mutants of anyfc/training/loop.py (every hook and its
arguments, ``validation_split`` at its ends, BatchNorm statistics moved once per batch, the
error messages, zero epochs).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import anyfc
import anyfc.training.step as step_module
from anyfc import _backend, optimizers, schedules
from anyfc.callbacks import Callback, LearningRateScheduler
from anyfc.optimizers import SGD
from tests import references
from tests.helpers import errors, hostile, zoo
from tests.helpers.model import _net
from tests.helpers.training import X_VAL, Y_VAL, Recorder, X, Y, _assert_weights, _model, _weights
from tests.references import (
    ATOL,
    B0,
    CASES,
    RNG,
    RTOL,
    T_DIV,
    T_OPT,
    W0,
    X_DIV,
    X_OPT,
    RefOptimizer,
    _assert_discriminates_thresholds,
    _ref_weighted,
    _strict,
    assert_opt_state,
    assert_same_state,
    host_opt_state,
    host_state,
    ref_loss,
    ref_train_linear,
)


def test_fit_returns_history_and_keeps_model_where_it_was(bk, rng):
    model = _net(bk)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    history = model.fit(X, y, epochs=3, batch_size=8, validation_data=(X[:10], y[:10]),
                        verbose=0, seed=0)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epochs == 3 and all(len(v) == 3 for v in history.values())
    assert all(0.0 <= a <= 1.0 for a in history["accuracy"])
    for layer in model.layers:
        assert _backend.namespace_of(layer.w) is bk.xp
        assert _backend.device_of(layer.w) == bk.device
        assert layer.w.dtype == bk.xp.float64


def test_same_seed_same_training_on_every_backend(bk, rng):
    X, y = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    ref = _net(_NumpyBackend)
    ref.fit(X, y, epochs=2, batch_size=8, seed=3, verbose=0)
    model = _net(bk)
    model.fit(X, y, epochs=2, batch_size=8, seed=3, verbose=0)
    for a, b in zip(model.layers, ref.layers):
        np.testing.assert_allclose(anyfc.to_numpy(a.w), anyfc.to_numpy(b.w), rtol=1e-9)


class _NumpyBackend:
    @staticmethod
    def dense(*args, **kwargs):
        return anyfc.Dense(*args, backend="numpy", dtype="float64", **kwargs)


def test_digits_reach_95_percent(cpu_bk, digits):
    X_train, X_test, y_train, y_test = digits
    model = anyfc.Sequential(
        [anyfc.Dense(64, 64, "relu", seed=0), anyfc.Dense(64, 10, "identity", seed=1)],
        backend=cpu_bk.name, device=cpu_bk.device_name)
    model.fit(X_train, y_train, epochs=15, batch_size=32, verbose=0, seed=0,
              optimizer=anyfc.optimizers.Adam(lr=0.01))
    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    assert accuracy >= 0.95, f"{cpu_bk}: held-out accuracy {accuracy:.3f}"


def test_hooks_run_in_order_with_batch_sizes(bk):
    rec = Recorder()
    anyfc.Sequential([bk.dense(3, 2, "identity", seed=0)]).fit(
        X, Y, epochs=2, batch_size=16, callbacks=[rec], verbose=0, seed=0)
    epoch = ["batch_begin", "batch_end 16", "batch_begin", "batch_end 16", "batch_begin",
             "batch_end 8"]
    assert rec.calls == ["train_begin", "epoch_begin 0", *epoch, "epoch_end 0",
                         "epoch_begin 1", *epoch, "epoch_end 1", "train_end"]
    assert set(rec.logs) == {"loss", "accuracy", "lr"}


def test_a_callback_stops_training(bk):
    class StopAtOne(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.run.stop_training = True

    assert _model(bk).fit(X, Y, epochs=9, callbacks=[StopAtOne()], verbose=0).epochs == 2


def test_an_epoch_undone_restores_the_learning_rate_a_callback_set(bk):
    model = _model(bk)
    opt = SGD(0.3)

    class FailLate(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.run.optimizer.t == 4:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        model.fit(X, Y, epochs=3, batch_size=20, optimizer=opt, verbose=0, callbacks=[
            LearningRateScheduler(lambda e, lr: lr / 2), FailLate()])
    # epoch 0 (2 steps at 0.15) was kept; epoch 1 (lr 0.075) was undone
    assert opt.t == 2 and opt.epoch == 1 and opt.lr == pytest.approx(0.15)


def test_a_per_step_schedule_sets_the_rate_of_each_step(bk):
    # one step per epoch, linear model, MSE: w_{k+1} = w_k - η_k ∂E/∂w, η_k = schedule(k)
    sched = schedules.ExponentialDecay(0.1, decay_rate=0.5)
    model = _model(bk, n_out=1, loss="mse", hidden=False)
    t = X @ np.array([[1.0], [-2.0], [0.5]])
    w = anyfc.to_numpy(model.layers[0].w).copy()
    b = anyfc.to_numpy(model.layers[0].b).copy()
    history = model.fit(X, t, epochs=4, batch_size=40, optimizer=SGD(sched), shuffle=False,
                        verbose=0)
    for k in range(4):
        d = 2 * (X @ w + b - t) / X.shape[0]
        w, b = w - sched(k) * X.T @ d, b - sched(k) * d.sum(axis=0)
    assert history.lr == pytest.approx([sched(k) for k in range(4)])
    np.testing.assert_allclose(anyfc.to_numpy(model.layers[0].w), w, rtol=1e-10)


def test_validation_split_holds_out_the_last_rows_before_shuffling(bk):
    a, b = _model(bk), _model(bk)
    ha = a.fit(X, Y, epochs=2, batch_size=8, validation_split=0.25, verbose=0, seed=3)
    hb = b.fit(X[:30], Y[:30], epochs=2, batch_size=8, validation_data=(X[30:], Y[30:]),
               verbose=0, seed=3)
    _assert_weights(_weights(a), _weights(b), rtol=0, atol=0)
    assert ha.keys() == hb.keys()
    for key in ha:
        assert ha[key] == pytest.approx(hb[key], rel=1e-12), key
    assert ha["val_loss"][-1] == pytest.approx(a.evaluate(X[30:], Y[30:])["loss"], rel=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    ({"validation_split": 1.0}, "validation_split must be"),
    ({"validation_split": 0.99}, "leaves 0 for training and 40 for validation"),
    ({"validation_split": 0.2, "validation_data": (X_VAL, Y_VAL)}, "not both"),
    ({"sample_weight": np.ones(39)}, "sample_weight"),
    ({"class_weight": {5: 1.0}}, "class"),
])
def test_bad_data_controls_are_refused(bk, kwargs, message):
    model = _model(bk)
    before = _weights(model)
    with pytest.raises(ValueError, match=message):
        model.fit(X, Y, epochs=1, verbose=0, **kwargs)
    _assert_weights(before, _weights(model), rtol=0, atol=0)


def test_an_undone_epoch_draws_the_same_dropout_masks_again(bk):
    def model():
        return anyfc.Sequential([
            bk.dense(3, 8, "tanh", seed=0),
            anyfc.Dropout(0.5, seed=3, backend=bk.name, device=bk.device_name, dtype="float64"),
            bk.dense(8, 2, "identity", seed=1)])

    class FailOnce(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise RuntimeError("interrupted")

    a, b = model(), model()
    a.fit(X, Y, epochs=1, batch_size=8, verbose=0, seed=0)
    with pytest.raises(RuntimeError):
        a.fit(X, Y, epochs=1, batch_size=8, verbose=0, seed=1, callbacks=[FailOnce()])
    a.fit(X, Y, epochs=1, batch_size=8, verbose=0, seed=1)
    b.fit(X, Y, epochs=1, batch_size=8, verbose=0, seed=0)
    b.fit(X, Y, epochs=1, batch_size=8, verbose=0, seed=1)
    _assert_weights(_weights(a), _weights(b), rtol=0, atol=0)


@pytest.mark.reference
@pytest.mark.parametrize("case", list(CASES))
def test_fit_history_equals_numpy_training(bk, case):
    """loss, accuracy, val_loss, val_accuracy of every epoch, and the final weights, equal
    NumPy's training of the same linear model (23 rows in batches of 5: the last batch
    holds 3; validation over 1100 rows: two evaluation batches)."""
    loss, k, y, y_val = CASES[case]
    model = anyfc.Sequential([bk.dense(4, k, "identity", seed=3)], loss=loss)
    start = host_state(model)
    history = model.fit(references.X, y, epochs=3, batch_size=5, shuffle=False, verbose=0,
                        optimizer=optimizers.SGD(0.3), validation_data=(references.X_VAL, y_val))
    expected, w, b = ref_train_linear(loss, start["layers.0.w"], start["layers.0.b"],
                                      references.X, y, 5, 3, RefOptimizer("SGD", lr=0.3),
                                      (references.X_VAL, y_val))
    assert set(history) == set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(history[key], values, rtol=RTOL, err_msg=key)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(end["layers.0.b"], b, rtol=RTOL, atol=ATOL)
    if loss == "binary_cross_entropy":
        _assert_discriminates_thresholds(references.X_VAL @ w + b)


def _div_model(bk):
    model = anyfc.Sequential([bk.dense(3, 1, "identity")], loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": np.full((3, 1), 0.1), "layers.0.b": np.zeros(1)})
    return model


def _diverging_fit(model, opt, epochs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return model.fit(X_DIV, T_DIV, epochs=epochs, batch_size=8, shuffle=False,
                         optimizer=opt, verbose=0)


def _exploding_sgd() -> optimizers.SGD:
    """Momentum SGD whose weights grow ~1e40-fold a step: the loss overflows a few epochs
    in (not in the first), while the momentum holds state."""
    return optimizers.SGD(1e40, momentum=0.9)


@pytest.mark.reference
def test_divergence_in_a_later_epoch_rolls_back_parameters_and_optimizer_state(bk):
    """An epoch that diverges is undone whole: the parameters AND the optimizer's state
    (its velocity and step count) are those after the previous epoch, as a run that
    stopped there has them."""
    first_bad = None
    for epochs in range(1, 8):  # the first epoch that diverges, from a clean start
        try:
            _diverging_fit(_div_model(bk), _exploding_sgd(), epochs)
        except FloatingPointError:
            first_bad = epochs
            break
    assert first_bad is not None and first_bad >= 3, f"diverges at epoch {first_bad}"

    stopped, stopped_opt = _div_model(bk), _exploding_sgd()
    _diverging_fit(stopped, stopped_opt, first_bad - 1)
    expected_params, expected_opt = host_state(stopped), host_opt_state(stopped_opt)
    assert expected_opt["t"] == first_bad - 1
    assert sorted(k for k in expected_opt if k.startswith("state.")) == [
        "state.0.b.v", "state.0.w.v"]

    # diverging in a later epoch of one call
    model, opt = _div_model(bk), _exploding_sgd()
    with pytest.raises(FloatingPointError, match=f"diverged in epoch {first_bad}"):
        _diverging_fit(model, opt, first_bad + 2)
    assert model.optimizer is opt
    assert_same_state(host_state(model), expected_params)
    assert_same_state(host_opt_state(opt), expected_opt)

    # diverging in the first epoch of a later call, the optimizer carried over
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        _diverging_fit(model, None, 3)
    assert model.optimizer is opt
    assert_same_state(host_state(model), expected_params)
    assert_same_state(host_opt_state(opt), expected_opt)


@pytest.mark.reference
@pytest.mark.parametrize("kind", ["AdaGrad", "RMSProp", "Adam", "AdamW"])
def test_divergence_rolls_back_the_adaptive_optimizers_state(bk, kind):
    """The adaptive optimizers' steps are bounded by lr, so they diverge at once only: a
    state trained with a sane lr, loaded into the same optimizer with lr=1e200, must be
    exactly as loaded after the epoch that diverged."""
    model = _div_model(bk)
    trained = getattr(optimizers, kind)(lr=0.01)
    _diverging_fit(model, trained, 2)
    params, state = host_state(model), host_opt_state(trained)
    assert state["t"] == 2 and any(k.startswith("state.") for k in state)
    exploding = getattr(optimizers, kind)(lr=1e200)
    exploding.load_state_dict(trained.state_dict(), bk.name, bk.device_name, "float64")
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        _diverging_fit(model, exploding, 2)
    assert model.optimizer is trained  # a first epoch that failed keeps the old optimizer
    assert_same_state(host_state(model), params)
    assert_same_state(host_opt_state(exploding), state)
    assert_same_state(host_opt_state(trained), state)


@pytest.mark.reference
def test_fit_adopts_optimizer_state_loaded_on_another_backend(bk):
    """``optimizer.load_state_dict(sd)`` keeps the arrays on the default backend; ``fit``
    moves ("adopts") them to the model, checks the moved state, and training continues
    exactly as with the optimizer the state came from."""
    model = _div_model(bk)
    trained = optimizers.Adam(0.01)
    _diverging_fit(model, trained, 2)
    start = {k: v for k, v in host_state(model).items()}
    resumed = optimizers.Adam(0.01)
    resumed.load_state_dict(trained.state_dict())  # onto NumPy
    _diverging_fit(model, resumed, 1)
    via_numpy = host_state(model)
    model.load_state_dict(start)
    _diverging_fit(model, trained, 1)
    assert_same_state(host_state(model), via_numpy, exact=False)
    assert_opt_state(host_opt_state(resumed), host_opt_state(trained))


@pytest.mark.mutation
def test_validation_split_may_leave_one_row_on_either_side():
    """n = 4: a split of 0.75 trains on row 0 and validates on rows 1-3 (k = ⌊n(1-s)⌋ = 1);
    a split so small that 1 - s rounds to 1 leaves nothing to validate on."""
    Xs, ys = X_OPT[:4], T_OPT[:4]
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    history = model.fit(Xs, ys, epochs=1, batch_size=4, validation_split=0.75, verbose=0,
                        optimizer=optimizers.SGD(0.1))
    _, grad_z, _, _ = ref_loss("mean_squared_error", Xs[:1] @ W0 + B0, ys[:1])
    w, b = W0 - 0.1 * Xs[:1].T @ grad_z, B0 - 0.1 * grad_z.sum(axis=0)
    assert history["val_loss"][0] == pytest.approx(
        ref_loss("mean_squared_error", Xs[1:] @ w + b, ys[1:])[0], rel=RTOL)
    with pytest.raises(ValueError, match=r"^validation_split=1e-17 of 4 rows leaves 4 for "
                                         r"training and 0 for validation; both need at least "
                                         r"one$"):
        model.fit(Xs, ys, validation_split=1e-17, verbose=0)
    with pytest.raises(ValueError, match=r"^validation_split=0\.8 of 4 rows leaves 0 for "
                                         r"training and 4 for validation; "):
        model.fit(Xs, ys, validation_split=0.8, verbose=0)


class _Recorder(anyfc.callbacks.Callback):
    """Every hook call, with copies of its arguments; stops the fit after ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.stop_at = stop_at

    def check(self, run):
        self.calls.append(("check", run))

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", logs))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", dict(logs)))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch, logs))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))
        if epoch == self.stop_at:
            self.run.stop_training = True

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch, logs))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, dict(logs)))


@pytest.mark.mutation
@pytest.mark.parametrize("stop_at", [None, 1])
def test_callbacks_see_every_hook_with_its_arguments(stop_at):
    """10 rows in batches of 4 (4, 4, 2), 3 epochs (or stopped after the second), a
    per-epoch schedule: each hook's arguments follow from the definitions in
    ``anyfc.training.callbacks``, and the epoch logs are the history's numbers plus the
    epoch's starting lr."""
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    opt = optimizers.SGD(anyfc.schedules.StepDecay(0.1, step_size=1, gamma=0.5))
    rec = _Recorder(stop_at)
    history = model.fit(X_OPT, T_OPT, epochs=3, batch_size=4, shuffle=False, verbose=0,
                        optimizer=opt, validation_data=(X_OPT[:3], T_OPT[:3]),
                        callbacks=rec)
    epochs = 3 if stop_at is None else stop_at + 1
    assert history.epoch == list(range(epochs))
    assert history.lr == [0.1 * 0.5**e for e in range(epochs)]
    assert all(len(v) == epochs for v in history.values())
    logs = [{**{k: v[e] for k, v in history.items()}, "lr": history.lr[e]}
            for e in range(epochs)]
    metrics = ["loss", "mae", "r2"]
    run = rec.calls[0][1]
    assert (run.model, run.optimizer, run.epochs) == (model, opt, 3)
    assert run.metrics == metrics + ["val_" + k for k in metrics] and rec.run is run
    expected: list[tuple[Any, ...]] = [("check", run), ("train_begin", {})]
    for e in range(epochs):
        expected.append(("epoch_begin", e, {}))
        for i, size in enumerate([4, 4, 2]):
            expected += [("batch_begin", i, {}), ("batch_end", i, {"size": size})]
        expected.append(("epoch_end", e, logs[e]))
    expected.append(("train_end", logs[-1]))
    assert rec.calls == expected
    assert set(logs[0]) == {*run.metrics, "lr"}
    assert run.stop_training is (stop_at is not None)


@pytest.mark.mutation
def test_batch_norm_running_statistics_move_once_per_training_batch():
    """Each training batch moves BatchNorm's running statistics once (torch's rule, in the
    layer's docstring); the end-of-epoch checks and validation, which run in inference,
    never do."""
    m = 0.3
    model = anyfc.Sequential([anyfc.BatchNorm(3, momentum=m, dtype="float64"),
                              anyfc.Dense(3, 2, "identity", dtype="float64", seed=0)],
                             loss="mean_squared_error")
    model.fit(X_OPT, T_OPT, epochs=2, batch_size=6, shuffle=False, verbose=0,
              optimizer=optimizers.SGD(0.1), validation_data=(X_OPT[:3], T_OPT[:3]))
    mean, var = np.zeros(3), np.ones(3)
    for _ in range(2):
        for xb in (X_OPT[:6], X_OPT[6:]):
            mean = (1 - m) * mean + m * xb.mean(axis=0)
            var = (1 - m) * var + m * xb.var(axis=0, ddof=1)
    state = host_state(model)
    np.testing.assert_allclose(state["layers.0.running_mean"], mean, rtol=RTOL)
    np.testing.assert_allclose(state["layers.0.running_var"], var, rtol=RTOL)


@pytest.mark.mutation
def test_fit_checks_its_settings_by_name():
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    cases = [
        ({"verbose": -1}, ValueError, r"^verbose must be a non-negative integer, got -1$"),
        ({"strategy": "data_parallel"}, ValueError,
         r"^strategy='data_parallel' needs X as a Dask array"),
        ({"strategy": "pipeline"}, ValueError,
         r"^unknown strategy 'pipeline'; valid: 'auto', 'data_parallel'$"),
        ({"validation_split": 0.2, "validation_data": (X_OPT, T_OPT)}, ValueError,
         r"^give validation_data or validation_split, not both$"),
        ({"callbacks": iter([anyfc.callbacks.EarlyStopping("loss")])}, TypeError,
         r"^callbacks must be a list of anyfc callbacks \(subclasses of "
         r"anyfc\.callbacks\.Callback\), got <list_iterator object"),
        ({"callbacks": [print]}, TypeError, r"^callbacks must be a list of anyfc callbacks"),
    ]
    for settings, error, match in cases:
        with pytest.raises(error, match=match):
            model.fit(X_OPT, T_OPT, **settings)
    model.layers[0].w = np.full((3, 2), np.nan)  # assigned: load_state_dict refuses it
    with pytest.raises(ValueError, match=r"^the model's parameters, buffers or optimizer "
                                         r"state hold NaN or infinity before training; load "
                                         r"or assign finite ones \(see "
                                         r"model\.load_state_dict\)$"):
        model.fit(X_OPT, T_OPT, verbose=0)


@pytest.mark.mutation
def test_a_too_small_last_batch_is_refused_before_training():
    model = anyfc.Sequential([anyfc.Dense(4, 3, "tanh", dtype="float64", seed=0),
                              anyfc.BatchNorm(3, dtype="float64")], loss="mean_squared_error")
    before = host_state(model)
    with pytest.raises(ValueError, match=r"^layer 1 \(BatchNorm\) needs at least 2 rows per "
                                         r"training batch, but 11 rows in batches of 5 leave "
                                         r"a last batch of 1; choose another batch_size$"):
        model.fit(references.X[:11], RNG.standard_normal((11, 3)), batch_size=5, verbose=0)
    assert_same_state(host_state(model), before)


@pytest.mark.mutation
def test_divergence_is_reported_with_the_epoch_the_rate_and_what_is_kept():
    model = anyfc.Sequential([anyfc.Dense(3, 1, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": np.full((3, 1), 0.1), "layers.0.b": np.zeros(1)})
    opt = optimizers.Adam(1e200)
    with pytest.raises(FloatingPointError, match=r"^training diverged in epoch 1: its mean "
                                                 r"loss was [^,]+, and after its last update "
                                                 r"the parameters, the optimizer state or the "
                                                 r"loss are no longer all finite; try a lower "
                                                 r"learning rate \(the optimizer has "
                                                 r"lr=1e\+200\)\. The model and its optimizer "
                                                 r"keep their state from before epoch 1\.$"):
        _diverging_fit(model, opt, 2)


@pytest.mark.mutation
def test_zero_epochs_change_nothing_and_end_with_empty_logs():
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    before = host_state(model)
    rec = _Recorder()
    history = model.fit(X_OPT, T_OPT, epochs=0, verbose=0, callbacks=[rec])
    assert [c[0] for c in rec.calls] == ["check", "train_begin", "train_end"]
    assert rec.calls[-1] == ("train_end", {}) and dict(history) == {"loss": [], "mae": [],
                                                                    "r2": []}
    assert_same_state(host_state(model), before)


@pytest.mark.mutation
@pytest.mark.parametrize("loss", ["mean_squared_error", "softmax_cross_entropy"])
def test_weighted_training_of_a_float32_model_on_another_device(loss):
    """sample_weight (a host list) and class_weight become row weights on the model's
    device, in its dtype: one full-batch SGD step equals the weighted reference."""
    _strict()
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1])
    t = T_OPT if loss == "mean_squared_error" else labels
    sw = [1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.0, 1.0, 2.0, 1.5]
    cw = {0: 2.0, 1: 0.5} if loss == "softmax_cross_entropy" else None
    rows = np.array(sw) * (np.array([cw[k] for k in labels]) if cw else 1.0)
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", backend="array_api_strict",
                                          device="device1", dtype="float32")], loss=loss)
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    history = model.fit(X_OPT, t, epochs=1, batch_size=10, shuffle=False, verbose=0,
                        optimizer=optimizers.SGD(0.1), sample_weight=sw, class_weight=cw)
    e, grad = _ref_weighted(loss, X_OPT @ W0 + B0, t, rows)
    assert history["loss"][0] == pytest.approx(e, rel=1e-5)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], W0 - 0.1 * X_OPT.T @ grad, rtol=1e-5)
    np.testing.assert_allclose(end["layers.0.b"], B0 - 0.1 * grad.sum(axis=0), rtol=1e-5)


@pytest.mark.hostile
def test_fit_checks_every_argument_before_changing_anything(bk):
    model = hostile._trained(bk)
    before = hostile._state(model)
    new_opt = anyfc.optimizers.SGD(0.5)
    for kwargs, pattern in [
        ({"seed": "abc"}, "seed must be"),
        ({"seed": -1}, "seed must be"),
        ({"validation_data": (hostile.X,)}, r"validation_data must be a pair \(X, y\), got a tuple "
                                            "of length 1"),
        ({"validation_data": hostile.X}, "validation_data must be a pair"),
        ({"validation_data": (hostile.X, hostile.Y[:3])}, "validation y has 3 rows"),
        ({"epochs": 1.5}, "epochs must be a non-negative integer"),
        ({"batch_size": np.float64(8)}, "batch_size must be a positive integer"),
        ({"verbose": "loud"}, "verbose"),
        ({"strategy": "magic"}, "unknown strategy"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            model.fit(hostile.X, hostile.Y, optimizer=new_opt, **{"verbose": 0, **kwargs})
        hostile._assert_same(before, hostile._state(model))
        assert model.optimizer is not new_opt


@pytest.mark.hostile
def test_an_optimizer_used_with_another_model_is_refused(bk):
    other = anyfc.Sequential([bk.dense(4, 9, "relu", seed=0), bk.dense(9, 3, "identity", seed=1)])
    opt = anyfc.optimizers.Adam(0.01)
    other.fit(hostile.X, hostile.Y, epochs=1, optimizer=opt, verbose=0)
    model = hostile._trained(bk)
    before = hostile._state(model)
    with pytest.raises(ValueError, match="was used with another model"):
        model.fit(hostile.X, hostile.Y, optimizer=opt, verbose=0)
    hostile._assert_same(before, hostile._state(model))


@pytest.mark.hostile
def test_an_interrupted_epoch_is_undone(bk, monkeypatch):
    model = hostile._trained(bk)
    before = hostile._state(model)
    calls = {"n": 0}
    real_step = step_module.train_step

    def failing_step(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(step_module, "train_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        model.fit(hostile.X, hostile.Y, epochs=1, batch_size=8, verbose=0)
    hostile._assert_same(before, hostile._state(model))


@pytest.mark.hostile
def test_divergence_in_the_last_step_is_caught_and_undone(bk):
    """One batch per epoch: the loss before the only update is finite, the model after it
    is not usable. fit must see it and give back the model from before the epoch."""
    model = hostile._model(bk, activation="relu", dtype="float32")
    model.fit(hostile.X, hostile.Y, epochs=1, batch_size=24,
              optimizer=anyfc.optimizers.SGD(0.01), verbose=0)
    before = hostile._state(model)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
            model.fit(hostile.X, hostile.Y, epochs=1, batch_size=24,
                      optimizer=anyfc.optimizers.Adam(lr=1e30), verbose=0)
    after = hostile._state(model)
    assert after[0].keys() == before[0].keys()
    for key, value in before[0].items():
        np.testing.assert_array_equal(after[0][key], value)
        assert np.all(np.isfinite(after[0][key]))
    assert np.all(np.isfinite(anyfc.to_numpy(model.predict(hostile.X))))


@pytest.mark.hostile
def test_divergence_restores_the_optimizer_state_too(bk):
    model = hostile._model(bk, activation="relu", loss="mean_squared_error", n_out=1)
    y = hostile.RNG.standard_normal(24) * 100
    opt = anyfc.optimizers.SGD(1e-6, momentum=0.9)
    model.fit(hostile.X * 100, y, epochs=1, batch_size=4, optimizer=opt, seed=0, verbose=0)
    before = hostile._state(model)
    opt.lr = 1e30
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError, match="diverged"):
            model.fit(hostile.X * 100, y, epochs=2, batch_size=4, seed=0, verbose=0)
    opt.lr = 1e-6
    after = hostile._state(model)
    hostile._assert_same(before[:2] + (None, before[3]), after[:2] + (None, after[3]))
    assert model.optimizer.t == before[2][1]


@pytest.mark.hostile
def test_nan_parameters_are_refused_before_training(bk):
    model = hostile._trained(bk)
    w = anyfc.to_numpy(model.layers[0].w)
    w[0, 0] = np.nan
    model.layers[0].w = bk.asarray(w)
    with pytest.raises(ValueError, match="parameters, buffers or optimizer state hold NaN"):
        model.fit(hostile.X, hostile.Y, verbose=0)


@pytest.mark.hostile
def test_divergence_stops_and_keeps_finite_weights(bk):
    model = anyfc.Sequential([bk.dense(4, 8, "relu", seed=0), bk.dense(8, 1, "identity", seed=1)],
                             loss="mean_squared_error")
    X, y = errors.X_OK * 100, errors.RNG.standard_normal(10) * 100
    model.fit(X, y, epochs=1, optimizer=anyfc.optimizers.SGD(1e-6), seed=0, verbose=0)
    before = errors._state(model)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        with pytest.raises(FloatingPointError, match="diverged in epoch 1.*lower learning rate"):
            model.fit(X, y, epochs=3, batch_size=2, optimizer=anyfc.optimizers.SGD(1e4),
                      seed=0, verbose=0)
    after = errors._state(model)
    for key, value in before[0].items():
        np.testing.assert_array_equal(after[0][key], value)
        assert np.all(np.isfinite(after[0][key]))


def test_batchnorm_refuses_a_last_batch_of_one_row_before_training(bk):
    model = zoo._zoo_model(bk)
    before = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="layer 1 .BatchNorm. needs at least 2 rows.*batch of 1"):
        model.fit(zoo.RNG.standard_normal((21, 6)), zoo.RNG.integers(0, 3, 21), batch_size=10,
                  verbose=0)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(anyfc.to_numpy(v), before[k])


@pytest.mark.review
def test_streamed_chunks_of_one_row_are_refused_before_training():
    da = pytest.importorskip("dask.array")
    model = zoo._zoo_model(type("B", (), {"name": "numpy", "device_name": None})())
    X = da.from_array(zoo.RNG.standard_normal((41, 6)), chunks=10)
    y = da.from_array(zoo.RNG.integers(0, 3, 41), chunks=10)
    with pytest.raises(ValueError, match=r"needs at least 2 rows.*batch of 1; .*rechunk"):
        model.fit(X, y, batch_size=5, verbose=0)
    assert model.optimizer is None


@pytest.mark.review
def test_a_failed_first_epoch_keeps_the_previous_optimizer(bk, monkeypatch):
    model = zoo._zoo_model(bk)
    X, y = zoo.RNG.standard_normal((20, 6)), zoo.RNG.integers(0, 3, 20)
    model.fit(X, y, epochs=1, batch_size=5, optimizer=anyfc.optimizers.SGD(0.01), verbose=0)
    old = model.optimizer
    monkeypatch.setattr(step_module, "train_step",
                        lambda *a: (_ for _ in ()).throw(RuntimeError))
    with pytest.raises(RuntimeError):
        model.fit(X, y, optimizer=anyfc.optimizers.Adam(), batch_size=5, verbose=0)
    assert model.optimizer is old


# ------------------------------------------------ hostile weights (issue #21, round three)


@pytest.mark.hostile
@pytest.mark.parametrize("class_weight", [{0: 5.0}, "balanced"], ids=["dict", "balanced"])
def test_class_weights_apply_to_the_training_rows_only_with_validation_split(bk, class_weight):
    a, b = _model(bk), _model(bk)
    ha = a.fit(X, Y, epochs=2, batch_size=8, validation_split=0.25, verbose=0, seed=3,
               class_weight=class_weight)
    hb = b.fit(X[:30], Y[:30], epochs=2, batch_size=8, validation_data=(X[30:], Y[30:]),
               verbose=0, seed=3, class_weight=class_weight)
    _assert_weights(_weights(a), _weights(b), rtol=1e-12, atol=0)
    for key in ha:
        assert ha[key] == pytest.approx(hb[key], rel=1e-9), key
    assert ha["val_loss"][-1] == pytest.approx(a.evaluate(X[30:], Y[30:])["loss"], rel=1e-9)


@pytest.mark.hostile
@pytest.mark.parametrize("sample_weight, class_weight", [
    (np.full(40, 1e30), {0: 1e30, 1: 1e30}),  # each fits float32, the product does not
    (None, {0: 1e39}),  # the class weight itself is beyond float32
], ids=["product", "class-weight"])
def test_row_weights_that_overflow_the_models_dtype_are_refused(bk, sample_weight,
                                                                 class_weight):
    model = anyfc.Sequential([bk.dense(3, 2, "identity", seed=0, dtype="float32")],
                             "softmax_cross_entropy")
    before = _weights(model)
    with pytest.raises(ValueError, match=r"row weights \(class_weight × sample_weight\) "
                                         r"overflow float32"):
        model.fit(X, Y, epochs=1, verbose=0, sample_weight=sample_weight,
                  class_weight=class_weight)
    _assert_weights(before, _weights(model), rtol=0, atol=0)


@pytest.mark.hostile
def test_zero_epochs_with_another_optimizer_keep_the_trained_optimizer_and_its_state(bk):
    model = hostile._trained(bk)
    opt = model.optimizer
    before = hostile._state(model)
    history = model.fit(hostile.X, hostile.Y, epochs=0, verbose=0,
                        optimizer=optimizers.SGD(0.5))
    assert model.optimizer is opt and dict(history)["loss"] == []
    hostile._assert_same(before, hostile._state(model))
