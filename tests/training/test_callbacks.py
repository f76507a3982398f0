"""anyfc.training.callbacks: EarlyStopping, ModelCheckpoint, LearningRateScheduler,
ReduceLROnPlateau and CSVLogger through ``fit`` on every backend; bad callbacks refused
before anything changes.

Tests marked ``mutation`` were written for surviving mutants of
anyfc/training/callbacks.py: EarlyStopping's and ReduceLROnPlateau's rules and defaults
against Keras's (written below), driven epoch by epoch through the hooks;
LearningRateScheduler, CSVLogger and ModelCheckpoint through ``fit``; every setting's
check and message; what ``"auto"`` mode picks.
"""

from __future__ import annotations

import csv
import math
from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import optimizers, schedules
from anyfc.callbacks import (
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from anyfc.optimizers import SGD, Adam
from tests.helpers.training import X_VAL, Y_VAL, Recorder, X, Y, _assert_weights, _model, _weights
from tests.references import B0, T_OPT, W0, X_OPT, host


def test_early_stopping_stops_after_patience_epochs_without_improvement(bk):
    # min_delta so large that only the first epoch counts as an improvement
    stop = EarlyStopping("loss", patience=2, min_delta=1e9)
    history = _model(bk).fit(X, Y, epochs=10, callbacks=[stop], verbose=0, seed=0)
    assert history.epochs == 3 and history.epoch == [0, 1, 2]
    assert stop.stopped_epoch == 2 and stop.best_epoch == 0


def test_early_stopping_start_from_epoch_and_baseline(bk):
    stop = EarlyStopping("loss", patience=1, min_delta=1e9, start_from_epoch=2)
    assert _model(bk).fit(X, Y, epochs=10, callbacks=[stop], verbose=0).epochs == 4
    never = EarlyStopping("loss", patience=1, baseline=-1.0)  # a loss never beats -1
    assert _model(bk).fit(X, Y, epochs=10, callbacks=[never], verbose=0).epochs == 2
    assert never.best_epoch is None


def test_restore_best_weights_restores_exactly_the_best_epoch(bk):
    model, rec = _model(bk), Recorder()
    # mode="min" on the training accuracy: the "best" epoch is an early one, not the last
    stop = EarlyStopping("accuracy", patience=10, mode="min", restore_best_weights=True)
    history = model.fit(X, Y, epochs=5, optimizer=SGD(0.5), validation_data=(X_VAL, Y_VAL),
                        callbacks=[rec, stop], verbose=0, seed=1)
    best = int(np.argmin(history["accuracy"]))
    assert best == stop.best_epoch and best < 4
    _assert_weights(_weights(model), rec.weights[best], rtol=0, atol=0)
    # and the validation loss of the restored model is the best epoch's
    assert model.evaluate(X_VAL, Y_VAL)["loss"] == pytest.approx(history["val_loss"][best],
                                                                  rel=1e-6)


def test_model_checkpoint_keeps_the_best_epoch(bk, tmp_path):
    model, rec = _model(bk), Recorder()
    path = tmp_path / "best.npz"
    keep = ModelCheckpoint(path, monitor="accuracy", mode="min", save_best_only=True)
    history = model.fit(X, Y, epochs=4, optimizer=SGD(0.5), validation_data=(X_VAL, Y_VAL),
                        callbacks=[rec, keep], verbose=0, seed=2)
    best = int(np.argmin(history["accuracy"]))
    assert best < 3
    _assert_weights(_weights(anyfc.load(path, bk.name, bk.device_name)), rec.weights[best],
                    rtol=0, atol=0)


def test_model_checkpoint_formats_epoch_and_metrics_into_the_path(bk, tmp_path):
    keep = ModelCheckpoint(tmp_path / "m-{epoch:02d}-{loss:.2f}.npz")
    history = _model(bk).fit(X, Y, epochs=2, callbacks=[keep], verbose=0)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"m-{e + 1:02d}-{history['loss'][e]:.2f}.npz" for e in range(2)]
    assert keep.saved == [str(tmp_path / n) for n in names]


def test_learning_rate_scheduler_sets_each_epochs_rate(bk):
    opt = SGD(0.4)
    sched = LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    history = _model(bk).fit(X, Y, epochs=3, optimizer=opt, callbacks=[sched], verbose=0)
    assert history.lr == pytest.approx([0.2, 0.1, 0.05])
    assert opt.lr == pytest.approx(0.05)
    by_epoch = LearningRateScheduler(schedules.StepDecay(1.0, step_size=2, gamma=0.1))
    history = _model(bk).fit(X, Y, epochs=3, optimizer=SGD(0.4), callbacks=[by_epoch],
                             verbose=0)
    assert history.lr == pytest.approx([1.0, 1.0, 0.1])


def test_reduce_lr_on_plateau_follows_keras_rule_in_fit(bk):
    opt = SGD(0.8)
    plateau = ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=1e9, cooldown=2,
                                min_lr=0.15)
    history = _model(bk).fit(X, Y, epochs=7, optimizer=opt, callbacks=[plateau], verbose=0)
    # epoch 0 improves; 1 reduces (cooldown 2); 2 cools down; 3 reduces; 4 cools; 5 reduces
    # to the floor 0.15; 6 would reduce but lr is at min_lr
    assert history.lr == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.15])


def test_csv_logger_writes_what_history_holds(bk, tmp_path):
    path = tmp_path / "log.csv"
    history = _model(bk).fit(X, Y, epochs=3, validation_data=(X_VAL, Y_VAL),
                             callbacks=[CSVLogger(path)], verbose=0)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    for key in history:
        assert [float(r[key]) for r in rows] == pytest.approx(history[key])
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    _model(bk).fit(X, Y, epochs=1, callbacks=[CSVLogger(path, append=True)], verbose=0)
    with open(path) as f:
        assert len(list(csv.DictReader(f))) == 4  # appended, header kept once


@pytest.mark.parametrize("callbacks, message", [
    ([EarlyStopping("val_loss")], "val_loss.*val_ metrics need validation_data"),
    ([EarlyStopping("val_accuracy")], "does not report"),
    ([ModelCheckpoint("m-{nope}.npz")], "has a field this fit does not report"),
    ([ReduceLROnPlateau("loss")], "needs an optimizer with a constant learning rate"),
    ([object()], "callbacks must be a list of anyfc callbacks"),
    ("early", "callbacks must be a list"),
], ids=["missing-val", "missing-metric", "path-field", "plateau-schedule", "not-callback",
        "string"])
def test_bad_callbacks_are_refused_before_anything_changes(bk, callbacks, message):
    model = _model(bk)
    before = _weights(model)
    opt = Adam(schedules.CosineDecay(0.01, 10))
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(X, Y, epochs=2, optimizer=opt, callbacks=callbacks, verbose=0)
    _assert_weights(before, _weights(model), rtol=0, atol=0)
    assert model.optimizer is None and opt.t == 0


@pytest.mark.parametrize("make", [
    lambda: EarlyStopping(patience=-1), lambda: EarlyStopping(mode="up"),
    lambda: ReduceLROnPlateau(factor=1.0), lambda: ReduceLROnPlateau(factor=0),
    lambda: LearningRateScheduler(0.1), lambda: EarlyStopping(monitor=3),
])
def test_bad_callback_settings_are_refused(make):
    with pytest.raises((ValueError, TypeError)):
        make()


HUGE = 10**400  # beyond any float: a ValueError, never an OverflowError


@pytest.mark.hostile
@pytest.mark.parametrize("make, name, value, match", [
    (lambda p: EarlyStopping("loss"), "patience", HUGE, "patience must be at most"),
    (lambda p: EarlyStopping("loss"), "patience", -1, "patience must be a non-negative"),
    (lambda p: EarlyStopping("loss"), "min_delta", float("nan"), "min_delta must be"),
    (lambda p: EarlyStopping("loss"), "baseline", HUGE, "baseline must be"),
    (lambda p: EarlyStopping("loss"), "start_from_epoch", 2.5, "start_from_epoch must be"),
    (lambda p: ReduceLROnPlateau("loss"), "factor", 2.0, "factor must be"),
    (lambda p: ReduceLROnPlateau("loss"), "cooldown", HUGE, "cooldown must be at most"),
    (lambda p: ReduceLROnPlateau("loss"), "min_lr", float("inf"), "min_lr must be"),
    (lambda p: anyfc.callbacks.NoImprovementStopping(), "tol", -1.0, "tol must be"),
    (lambda p: anyfc.callbacks.NoImprovementStopping(), "best", HUGE, "best must be"),
    (lambda p: anyfc.callbacks.NoImprovementStopping(), "count", HUGE, "count must be"),
    (lambda p: anyfc.callbacks.NoImprovementStopping(), "n_iter_no_change", 0,
     "n_iter_no_change must be"),
    (lambda p: ModelCheckpoint(p / "m.npz", "loss"), "mode", "sideways", "mode must be"),
    (lambda p: ModelCheckpoint(p / "m.npz", "loss"), "verbose", -2, "verbose must be"),
    (lambda p: LearningRateScheduler(lambda e, lr: lr), "schedule", 3, "schedule must be"),
    (lambda p: CSVLogger(p / "log.csv"), "separator", ";;", "separator must be one"),
])
def test_a_callback_setting_reassigned_after_construction_is_refused_by_fit(
        bk, tmp_path, make, name, value, match):
    """Every setting is checked where it can enter: the constructor refuses the
    value, and a value assigned afterwards is refused by the next ``fit``, naming the
    callback and the setting, before anything changes (no file written either)."""
    with pytest.raises((ValueError, TypeError), match=match):
        type(make(tmp_path))(**{**_settings_of(make(tmp_path)), name: value})
    callback = make(tmp_path)
    setattr(callback, name, value)
    model = _model(bk)
    before = _weights(model)
    said = f"callback {type(callback).__name__} has a bad setting: {match}"
    with pytest.raises((ValueError, TypeError), match=said):
        model.fit(X, Y, epochs=2, optimizer=SGD(0.1), callbacks=[callback], verbose=0)
    _assert_weights(before, _weights(model), rtol=0, atol=0)
    assert model.optimizer is None and list(tmp_path.iterdir()) == []


def _settings_of(callback: anyfc.callbacks.Callback) -> dict[str, Any]:
    """The constructor arguments a callback keeps under their own names."""
    import inspect
    names = list(inspect.signature(type(callback).__init__).parameters)[1:]
    return {n: vars(callback)[n] for n in names if n in vars(callback)}


@pytest.mark.hostile
@pytest.mark.parametrize("make", [
    lambda: EarlyStopping(patience=HUGE), lambda: ReduceLROnPlateau(cooldown=HUGE),
    lambda: anyfc.callbacks.NoImprovementStopping(best=HUGE),
    lambda: anyfc.schedules.StepDecay(0.1, step_size=HUGE),
    lambda: anyfc.schedules.CosineDecay(0.1, decay_steps=HUGE),
])
def test_integer_settings_too_large_for_an_int64_are_value_errors(make):
    with pytest.raises(ValueError, match="must be"):
        make()


def _ref_plateau(values: list[float], lr: float, factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 mode: str = "min") -> tuple[list[float], list[int]]:
    """Keras's ReduceLROnPlateau (its defaults): the rate after each epoch, and the
    epochs (from 0) where it was reduced."""
    best, wait, counter, rates, reduced = (math.inf if mode == "min" else -math.inf), 0, 0, [], []
    for epoch, v in enumerate(values):
        if counter > 0:
            counter, wait = counter - 1, 0
        better = v < best - min_delta if mode == "min" else v > best + min_delta
        if better:  # never for NaN
            best, wait = v, 0
        elif counter == 0:
            wait += 1
            if wait >= patience and lr > min_lr:
                lr, counter, wait = max(lr * factor, min_lr), cooldown, 0
                reduced.append(epoch)
        rates.append(lr)
    return rates, reduced


def _drive(callback: anyfc.callbacks.Callback, monitor: str, values: list[float],
           lr: float) -> list[float]:
    """The optimizer's rate after each epoch's ``on_epoch_end`` (logs hold ``monitor``)."""
    opt = optimizers.SGD(lr)
    run = anyfc.callbacks.Run(None, opt, len(values), ["loss", monitor])
    callback.run = run
    callback.check(run)
    callback.on_train_begin({})
    rates = []
    for epoch, v in enumerate(values):
        callback.on_epoch_begin(epoch, {})
        callback.on_epoch_end(epoch, {"loss": 0.0, monitor: v, "lr": opt.lr})
        rates.append(opt.lr)
    return rates


# 40 epochs: 5 clear improvements, then a plateau within 1e-4 of its best
PLATEAU = [1.0 - 0.01 * i for i in range(5)] + [0.96 - 9e-5 * (i % 2) for i in range(35)]


@pytest.mark.mutation
def test_reduce_lr_on_plateau_defaults_are_keras_rule(capsys):
    rates = _drive(anyfc.callbacks.ReduceLROnPlateau(), "val_loss", PLATEAU, 0.1)
    expected, reduced = _ref_plateau(PLATEAU, 0.1)
    assert len(reduced) == 3
    np.testing.assert_allclose(rates, expected, rtol=1e-15)
    assert capsys.readouterr().out == ""


@pytest.mark.mutation
@pytest.mark.parametrize("settings, monitor, values", [
    ({"patience": 2, "cooldown": 1, "factor": 0.5, "min_lr": 0.02, "min_delta": 0.0},
     "val_loss", [1.0, 1.0, 1.0, 0.9, float("nan"), 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95,
                  0.95, 0.95, 0.95, 0.95]),
    ({"patience": 1, "cooldown": 2, "factor": 0.3, "min_delta": 0.05},
     "val_accuracy", [0.5, 0.52, 0.6, 0.6, 0.61, 0.7, 0.7, 0.7, 0.7, 0.7, 0.9, 0.9]),
    ({"patience": 0, "factor": 0.5, "mode": "max", "min_lr": 0.025},
     "loss", [3.0, 2.0, 4.0, 4.0, 4.0, 5.0]),
    ({"patience": 2, "factor": 0.5}, "val_r2", [float("nan"), float("nan"), 0.5, 0.6, 0.6,
                                                 0.6, 0.7]),
])
def test_reduce_lr_on_plateau_follows_keras_rule(settings, monitor, values, capsys):
    rates = _drive(anyfc.callbacks.ReduceLROnPlateau(monitor, verbose=1, **settings),
                   monitor, values, 0.1)
    mode = settings.get("mode", "max" if monitor.endswith(("accuracy", "r2")) else "min")
    keras = {k: v for k, v in settings.items() if k != "mode"}
    expected, reduced = _ref_plateau(values, 0.1, mode=mode, **keras)
    assert reduced, "the case reduces nothing"
    np.testing.assert_allclose(rates, expected, rtol=1e-15)
    assert capsys.readouterr().out.splitlines() == [
        f"Epoch {e + 1}: learning rate reduced to {expected[e]:.6g}" for e in reduced]


def _fit_small(callbacks: list[Any], epochs: int = 3, lr: float = 0.1) -> Any:
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    return model.fit(X_OPT, T_OPT, epochs=epochs, batch_size=10, shuffle=False, verbose=0,
                     optimizer=optimizers.SGD(lr), validation_data=(X_OPT[:3], T_OPT[:3]),
                     callbacks=callbacks)


@pytest.mark.mutation
def test_learning_rate_scheduler_calls_a_function_with_the_epoch_and_the_current_rate(capsys):
    seen = []

    def halve(epoch, lr):
        seen.append((epoch, lr))
        return lr / 2

    history = _fit_small([anyfc.callbacks.LearningRateScheduler(halve, verbose=1)])
    assert seen == [(0, 0.1), (1, 0.05), (2, 0.025)]
    assert history.lr == [0.05, 0.025, 0.0125]
    assert capsys.readouterr().out.splitlines() == [
        f"Epoch {e + 1}: learning rate {lr:.6g}" for e, lr in enumerate(history.lr)]


@pytest.mark.mutation
@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_learning_rate_scheduler_refuses_a_rate_that_is_not_positive(bad):
    with pytest.raises(ValueError, match=r"^the learning rate from the schedule must be a "
                                         rf"finite number in \(0\.0, inf\), got {bad!r}$"):
        _fit_small([anyfc.callbacks.LearningRateScheduler(lambda epoch, lr: bad)])


def _read_csv(path: Any, separator: str) -> list[list[str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


@pytest.mark.mutation
def test_csv_logger_writes_the_history_with_its_separator(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("an old log\n")
    history = _fit_small([anyfc.callbacks.CSVLogger(path, separator=";")])
    rows = _read_csv(path, ";")
    metrics = ["loss", "mae", "r2", "val_loss", "val_mae", "val_r2"]
    assert rows[0] == ["epoch", *metrics, "lr"]  # the old file replaced (append=False)
    assert len(rows) == 4
    for e, row in enumerate(rows[1:]):
        assert int(row[0]) == e and float(row[-1]) == history.lr[e]
        assert [float(v) for v in row[1:-1]] == [history[k][e] for k in metrics]


@pytest.mark.mutation
def test_csv_logger_appends_with_a_header_only_to_a_new_or_empty_file(tmp_path):
    header = ["epoch", "loss", "mae", "r2", "val_loss", "val_mae", "val_r2", "lr"]
    for existing in (None, ""):
        path = tmp_path / f"log{existing is None}.csv"
        if existing is not None:
            path.write_text(existing)
        _fit_small([anyfc.callbacks.CSVLogger(path, append=True)], epochs=1)
        rows = _read_csv(path, ",")
        assert rows[0] == header and len(rows) == 2
        _fit_small([anyfc.callbacks.CSVLogger(path, append=True)], epochs=2)
        rows = _read_csv(path, ",")
        assert rows[0] == header and [r[0] for r in rows[1:]] == ["0", "0", "1"]


@pytest.mark.mutation
def test_csv_logger_leaves_a_value_missing_from_the_logs_empty(tmp_path):
    path = tmp_path / "log.csv"
    logger = anyfc.callbacks.CSVLogger(path)
    logger.run = anyfc.callbacks.Run(None, optimizers.SGD(0.1), 1, ["loss", "val_loss"])
    logger.on_train_begin({})
    logger.on_epoch_end(0, {"loss": 0.5})
    assert _read_csv(path, ",") == [["epoch", "loss", "val_loss", "lr"], ["0", "0.5", "", ""]]


def _ref_early_stopping(values: list[float], patience: int = 0, min_delta: float = 0.0,
                        mode: str = "min", start_from_epoch: int = 0,
                        baseline: float | None = None) -> tuple[int | None, int | None]:
    """Keras's EarlyStopping rule: (the epoch it stops after, or None; the best epoch)."""
    best = baseline if baseline is not None else (math.inf if mode == "min" else -math.inf)
    best_epoch, wait = None, 0
    for epoch, v in enumerate(values):
        if epoch < start_from_epoch:
            continue
        if (v < best - min_delta) if mode == "min" else (v > best + min_delta):
            best, best_epoch, wait = v, epoch, 0
            continue
        wait += 1
        if wait >= patience and epoch > 0:
            return epoch, best_epoch
    return None, best_epoch


def _drive_to_the_end(callback: Any, monitor: str, values: list[float]
                      ) -> tuple[anyfc.Sequential, int]:
    """Epoch by epoch through the hooks, the model's bias set to the epoch's number before
    its ``on_epoch_end``, until the callback stops the run: (the model, epochs run)."""
    model = anyfc.Sequential([anyfc.Dense(1, 1, "identity", dtype="float64")],
                             loss="mean_squared_error")
    run = anyfc.callbacks.Run(model, optimizers.SGD(0.1), len(values), ["loss", monitor])
    callback.run = run
    callback.check(run)
    callback.on_train_begin({})
    logs: dict[str, float] = {}
    epochs = 0
    for epoch, v in enumerate(values):
        model.load_state_dict({"layers.0.w": np.zeros((1, 1)), "layers.0.b": np.full(1, epoch)})
        callback.on_epoch_begin(epoch, {})
        logs = {"loss": 0.0, monitor: v, "lr": 0.1}
        callback.on_epoch_end(epoch, logs)
        epochs += 1
        if run.stop_training:
            break
    callback.on_train_end(logs)
    return model, epochs


# (settings, monitor, values); every case stops
EARLY = [
    ({}, "val_loss", [1.0, 0.9, 0.9, 0.8]),
    ({}, "val_loss", [1.0, 1.1, 0.5]),
    ({"patience": 2, "min_delta": 0.05}, "val_loss", [1.0, 0.97, 0.9, 0.88, 0.86, 0.5]),
    ({"patience": 1}, "val_loss", [1.0, float("nan"), 0.5]),
    ({"patience": 3, "baseline": 0.5}, "val_loss", [0.8, 0.7, 0.6, 0.6, 0.1]),
    ({"patience": 1, "start_from_epoch": 2}, "val_loss", [1.0, 2.0, 3.0, 3.0, 4.0]),
    ({}, "val_accuracy", [0.5, 0.6, 0.6, 0.7]),
    ({}, "r2", [0.1, 0.2, 0.1, 0.7]),
    ({"min_delta": 0.1}, "val_accuracy", [0.5, 0.55, 0.9]),
    ({"mode": "max"}, "loss", [1.0, 2.0, 1.5]),
    ({"patience": 2, "mode": "min"}, "val_r2", [0.1, 0.2, 0.3, 0.0]),
]


@pytest.mark.mutation
@pytest.mark.parametrize("settings, monitor, values", EARLY)
@pytest.mark.parametrize("restore", [False, True])
def test_early_stopping_follows_keras_rule(settings, monitor, values, restore, capsys):
    mode = settings.get("mode", "max" if monitor.endswith(("accuracy", "r2")) else "min")
    keras = {k: v for k, v in settings.items() if k != "mode"}
    stop, best_epoch = _ref_early_stopping(values, mode=mode, **keras)
    assert stop is not None, "the case never stops"
    extra = {"monitor": monitor, "restore_best_weights": True, "verbose": 1} if restore else (
        {"monitor": monitor} if monitor != "val_loss" else {})
    callback = anyfc.callbacks.EarlyStopping(**extra, **settings)
    assert (callback.best_epoch, callback.stopped_epoch) == (None, None)
    model, epochs = _drive_to_the_end(callback, monitor, values)
    assert epochs == stop + 1
    assert (callback.stopped_epoch, callback.best_epoch) == (stop, best_epoch)
    best = settings.get("baseline") if best_epoch is None else values[best_epoch]
    best = best if best is not None else (math.inf if mode == "min" else -math.inf)
    assert callback.best == best
    restored = restore and best_epoch is not None and best_epoch != stop
    bias = float(host(model.state_dict()["layers.0.b"])[0])
    assert bias == (best_epoch if restored else stop)
    expected = [] if not restore else [
        f"Epoch {stop + 1}: early stopping ({monitor} best {best:.4f} at epoch "
        f"{(best_epoch if best_epoch is not None else 0) + 1})"]
    if restored:
        expected.append(f"Restored the weights of epoch {best_epoch + 1}")
    assert capsys.readouterr().out.splitlines() == expected


@pytest.mark.mutation
def test_early_stopping_keeps_the_last_weights_when_they_are_the_best(capsys):
    callback = anyfc.callbacks.EarlyStopping(restore_best_weights=True, verbose=1)
    model, epochs = _drive_to_the_end(callback, "val_loss", [1.0, 0.9, 0.8])
    assert epochs == 3 and callback.stopped_epoch is None and callback.best_epoch == 2
    assert float(host(model.state_dict()["layers.0.b"])[0]) == 2.0
    assert capsys.readouterr().out == ""


@pytest.mark.mutation
@pytest.mark.parametrize("settings, match", [
    ({"patience": -1}, r"^patience must be a non-negative integer, got -1$"),
    ({"start_from_epoch": -1}, r"^start_from_epoch must be a non-negative integer, got -1$"),
    ({"baseline": float("nan")}, r"^baseline must be a finite number in \[-inf, inf\), "
                                 r"got nan$"),
    ({"min_delta": -0.1}, r"^min_delta must be a finite number in \[0\.0, inf\), got -0\.1$"),
    ({"mode": "up"}, r"^mode must be 'auto', 'min' or 'max', got 'up'$"),
])
def test_early_stopping_settings_are_checked_by_name(settings, match):
    with pytest.raises(ValueError, match=match):
        anyfc.callbacks.EarlyStopping(**settings)
    assert anyfc.callbacks.EarlyStopping(patience=0, start_from_epoch=0).patience == 0


@pytest.mark.mutation
def test_a_monitor_the_fit_does_not_report_is_refused_with_the_metrics_it_does():
    with pytest.raises(ValueError, match=r"^EarlyStopping monitors 'val_loss', which this fit "
                                         r"does not report \(val_ metrics need "
                                         r"validation_data or validation_split\); it reports "
                                         r"loss, mae, r2$"):
        anyfc.Sequential([anyfc.Dense(3, 2, "identity")], loss="mse").fit(
            X_OPT, T_OPT, verbose=0, callbacks=[anyfc.callbacks.EarlyStopping()])
    with pytest.raises(ValueError, match=r"^ModelCheckpoint monitors 'accuracy', which this "
                                         r"fit does not report; it reports loss, mae, r2, "
                                         r"val_loss, val_mae, val_r2$"):
        _fit_small([anyfc.callbacks.ModelCheckpoint("m.npz", "accuracy", save_best_only=True)])
    with pytest.raises(ValueError, match=r"^ModelCheckpoint path '\{accuracy\}\.npz' has a "
                                         r"field this fit does not report \('accuracy'\); "
                                         r"fields: epoch, loss, mae, r2, val_loss, val_mae, "
                                         r"val_r2$"):
        _fit_small([anyfc.callbacks.ModelCheckpoint("{accuracy}.npz")])


@pytest.mark.mutation
def test_model_checkpoint_by_default_keeps_the_best_val_loss_silently(tmp_path, capsys):
    values = [1.0, 0.5, 0.5, 0.9, 0.2]
    callback = anyfc.callbacks.ModelCheckpoint(tmp_path / "m{epoch}.npz", save_best_only=True)
    _drive_to_the_end(callback, "val_loss", values)
    assert callback.saved == [str(tmp_path / f"m{e}.npz") for e in (1, 2, 5)]
    assert capsys.readouterr().out == ""
    callback = anyfc.callbacks.ModelCheckpoint(tmp_path / "all{epoch}.npz", verbose=1)
    _drive_to_the_end(callback, "val_loss", values[:2])
    assert capsys.readouterr().out.splitlines() == [
        f"Epoch {e}: saved the model to {tmp_path / f'all{e}.npz'}" for e in (1, 2)]


@pytest.mark.mutation
@pytest.mark.parametrize("make, error, match", [
    (lambda: anyfc.callbacks.EarlyStopping(3), TypeError,
     r"^monitor must be a metric name \(a str\), got 3$"),
    (lambda: anyfc.callbacks.ReduceLROnPlateau(factor=1.0), ValueError,
     r"^factor must be a finite number in \(0\.0, 1\.0\), got 1\.0$"),
    (lambda: anyfc.callbacks.ReduceLROnPlateau(patience=-1), ValueError,
     r"^patience must be a non-negative integer, got -1$"),
    (lambda: anyfc.callbacks.ReduceLROnPlateau(cooldown=-1), ValueError,
     r"^cooldown must be a non-negative integer, got -1$"),
    (lambda: anyfc.callbacks.ReduceLROnPlateau(min_lr=-1.0), ValueError,
     r"^min_lr must be a finite number in \[0\.0, inf\), got -1\.0$"),
    (lambda: anyfc.callbacks.LearningRateScheduler(0.1), TypeError,
     r"^schedule must be a schedule or a function \(epoch, lr\) -> lr, got 0\.1$"),
])
def test_callback_settings_are_checked_by_name(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.mutation
def test_callbacks_take_their_smallest_settings():
    plateau = anyfc.callbacks.ReduceLROnPlateau(patience=0, cooldown=0, min_lr=0.0)
    assert (plateau.patience, plateau.cooldown, plateau.min_lr) == (0, 0, 0.0)


@pytest.mark.mutation
def test_reduce_lr_on_plateau_refuses_a_scheduled_rate_naming_itself():
    with pytest.raises(ValueError, match=r"^ReduceLROnPlateau needs an optimizer with a "
                                         r"constant learning rate, but its lr is "):
        model = anyfc.Sequential([anyfc.Dense(3, 2, "identity")], loss="mse")
        model.fit(X_OPT, T_OPT, verbose=0, validation_data=(X_OPT, T_OPT),
                  optimizer=optimizers.SGD(anyfc.schedules.Constant(0.1)),
                  callbacks=[anyfc.callbacks.ReduceLROnPlateau()])


@pytest.mark.mutation
def test_learning_rate_scheduler_is_silent_by_default(capsys):
    history = _fit_small([anyfc.callbacks.LearningRateScheduler(
        anyfc.schedules.StepDecay(0.2, step_size=1, gamma=0.5))], epochs=2)
    assert history.lr == [0.2, 0.1]
    assert capsys.readouterr().out == ""


@pytest.mark.mutation
@pytest.mark.parametrize("monitor, mode", [
    ("val_accuracy", "max"), ("accuracy", "max"), ("val_r2", "max"), ("r2", "max"),
    ("val_loss", "min"), ("mae", "min")])
def test_auto_mode_maximises_accuracy_and_r2_and_minimises_the_rest(monitor, mode):
    for cls in (anyfc.callbacks.EarlyStopping, anyfc.callbacks.ReduceLROnPlateau):
        assert cls(monitor).mode == mode
        assert cls(monitor, mode="min").mode == "min" and cls(monitor, mode="max").mode == "max"


class _ValAuc(anyfc.callbacks.Callback):
    """Writes ``val_auc`` (a stand-in value that falls, then rises) into the epoch's logs."""

    provides = ("val_auc",)

    def __init__(self, values):
        self.values = list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs["val_auc"] = self.values[epoch]


def test_a_value_a_callback_writes_is_kept_printed_logged_and_monitored(bk, tmp_path, capsys):
    """Keras's routine pattern: a callback computes ``val_auc``; EarlyStopping (given
    before it in the list) monitors it, History, the printed line and CSVLogger keep it."""
    values = [0.70, 0.80, 0.79, 0.78, 0.95, 0.96]
    model = anyfc.Sequential([bk.dense(4, 5, "relu", seed=0), bk.dense(5, 3, seed=1)])
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    stop = anyfc.EarlyStopping("val_auc", patience=2)
    log = tmp_path / "log.csv"
    history = model.fit(X, y, epochs=6, batch_size=10, verbose=2, seed=0,
                        callbacks=[stop, anyfc.CSVLogger(log), _ValAuc(values)])
    assert stop.mode == "max" and stop.best_epoch == 1 and stop.stopped_epoch == 3
    assert history["val_auc"] == values[:4]
    printed = capsys.readouterr().out.splitlines()
    assert [line.endswith(f"val_auc: {v:.4f}") for line, v in zip(printed, values)] == [True] * 4
    rows = log.read_text().splitlines()
    assert rows[0].split(",") == ["epoch", "loss", "accuracy", "val_auc", "lr"]
    assert [float(r.split(",")[3]) for r in rows[1:]] == values[:4]


def test_a_monitored_value_nobody_writes_is_still_refused(bk):
    model = anyfc.Sequential([bk.dense(4, 3, seed=0)])
    with pytest.raises(ValueError, match="monitors 'val_auc', which this fit does not report"):
        model.fit(np.ones((4, 4)), [0, 1, 2, 0], callbacks=[anyfc.EarlyStopping("val_auc")],
                  verbose=0)
