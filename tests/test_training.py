"""Training control on every backend: callbacks, schedules through fit (and no JAX
recompilation under them), clipping through fit, validation_split, class and sample
weights, regression metrics, History, summary, and the three data implementations."""

from __future__ import annotations

import csv
import io as text_io
import math

import numpy as np
import pytest

import anyfc
from anyfc import schedules
from anyfc.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from anyfc.optimizers import SGD, Adam
from tests.helpers.training import X_VAL, Y_VAL, Recorder, X, Y, _assert_weights, _model, _weights

# ---------------------------------------------------------------- callbacks


def test_hooks_run_in_order_with_batch_sizes(bk):
    rec = Recorder()
    anyfc.Sequential([bk.dense(3, 2, "identity", seed=0)]).fit(
        X, Y, epochs=2, batch_size=16, callbacks=[rec], verbose=0, seed=0)
    epoch = ["batch_begin", "batch_end 16", "batch_begin", "batch_end 16", "batch_begin",
             "batch_end 8"]
    assert rec.calls == ["train_begin", "epoch_begin 0", *epoch, "epoch_end 0",
                         "epoch_begin 1", *epoch, "epoch_end 1", "train_end"]
    assert set(rec.logs) == {"loss", "accuracy", "lr"}


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


def test_reduce_lr_on_plateau_follows_keras_rule(bk):
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


def test_a_callback_stops_training(bk):
    class StopAtOne(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.run.stop_training = True

    assert _model(bk).fit(X, Y, epochs=9, callbacks=[StopAtOne()], verbose=0).epochs == 2


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


# ---------------------------------------------------------------- schedules


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


def test_schedules_and_rate_changes_never_recompile_the_jax_step(bk):
    if bk.name != "jax":
        pytest.skip("the compiled step is JAX's")
    from anyfc.training import step

    model = _model(bk)
    opt = Adam(schedules.CosineDecay(0.05, 20, warmup_steps=3))
    model.fit(X, Y, epochs=1, batch_size=8, optimizer=opt, verbose=0)  # traces (state fills)
    traced = step.TRACES["jax"]
    history = model.fit(X, Y, epochs=4, batch_size=8, verbose=0)  # the schedule moves on
    assert step.TRACES["jax"] == traced, "a schedule recompiled the step"
    assert len(set(history.lr)) == 4  # the rate did change
    opt2 = SGD(0.1, momentum=0.9)
    model.fit(X, Y, epochs=1, batch_size=8, optimizer=opt2, verbose=0)
    traced = step.TRACES["jax"]
    model.fit(X, Y, epochs=3, batch_size=8, verbose=0, callbacks=[
        LearningRateScheduler(lambda e, lr: lr * 0.5),
        ReduceLROnPlateau("loss", min_delta=1e9, patience=1)])
    assert step.TRACES["jax"] == traced, "a rate set by a callback recompiled the step"
    assert opt2.lr < 0.1 * 0.5**3


# ---------------------------------------------------------------- clipping through fit


def test_clipnorm_bounds_each_full_batch_step_through_fit(bk):
    model = _model(bk, n_out=1, loss="mse", hidden=False)
    t = 100.0 * X[:, :1]  # large errors: the gradient norm is far above 0.01
    before = _weights(model)
    model.fit(X, t, epochs=1, batch_size=40, optimizer=SGD(1.0, clipnorm=0.01),
              verbose=0)
    after = _weights(model)
    change = np.sqrt(sum(np.sum((after[k] - before[k]) ** 2) for k in before))
    assert change == pytest.approx(0.01, rel=1e-6)


# ---------------------------------------------------------------- data controls


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


def test_class_weight_equals_the_same_sample_weight(bk):
    a, b = _model(bk), _model(bk)
    a.fit(X, Y, epochs=2, batch_size=8, class_weight={0: 0.5, 1: 3.0}, verbose=0, seed=4)
    b.fit(X, Y, epochs=2, batch_size=8, sample_weight=np.where(Y == 1, 3.0, 0.5),
          verbose=0, seed=4)
    _assert_weights(_weights(a), _weights(b), rtol=1e-12, atol=0)
    balanced = _model(bk)
    counts = np.bincount(Y)
    c = _model(bk)
    balanced.fit(X, Y, epochs=1, batch_size=8, class_weight="balanced", verbose=0, seed=4)
    c.fit(X, Y, epochs=1, batch_size=8, sample_weight=(len(Y) / (2 * counts))[Y], verbose=0,
          seed=4)
    _assert_weights(_weights(balanced), _weights(c), rtol=1e-12, atol=0)


def test_doubling_every_weight_is_doubling_the_sgd_rate(bk):
    a, b = _model(bk), _model(bk)
    a.fit(X, Y, epochs=2, batch_size=8, optimizer=SGD(0.1), sample_weight=np.full(40, 2.0),
          verbose=0, seed=5)
    b.fit(X, Y, epochs=2, batch_size=8, optimizer=SGD(0.2), verbose=0, seed=5)
    _assert_weights(_weights(a), _weights(b), rtol=1e-10, atol=1e-12)


def test_weighted_loss_in_history_and_evaluate(bk):
    w = np.linspace(0.0, 2.0, 40)
    model = _model(bk)
    model.fit(X, Y, epochs=1, verbose=0)
    out = model.evaluate(X, Y, sample_weight=w, batch_size=7)
    p = anyfc.to_numpy(model.predict(X))
    expected = np.mean(w * -np.log(p[np.arange(40), Y]))
    assert out["loss"] == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- reading results


def test_regression_evaluate_reports_mae_and_r2_as_defined(bk):
    model = _model(bk, n_out=2, loss="mse")
    T = np.stack([X[:, 0] * 3 + 100.0, X[:, 1] - X[:, 2]], axis=1)  # a large mean
    history = model.fit(X, T, epochs=2, verbose=0)
    assert set(history) == {"loss", "mae", "r2"}
    out = model.evaluate(X, T, batch_size=7)  # partial last batch
    P = anyfc.to_numpy(model.predict(X))
    r2 = np.mean(1 - ((P - T) ** 2).sum(0) / ((T - T.mean(0)) ** 2).sum(0))
    assert out["loss"] == pytest.approx(np.mean((P - T) ** 2), rel=1e-9)
    assert out["mae"] == pytest.approx(np.mean(np.abs(P - T)), rel=1e-9)
    assert out["r2"] == pytest.approx(r2, rel=1e-9)


def test_history_reads_like_keras_and_plots():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", seed=0)])
    history = model.fit(X, Y, epochs=3, validation_split=0.25, verbose=0)
    assert history.history == dict(history) and history.history is not history
    assert history.epoch == [0, 1, 2] and history.epochs == 3
    fig = history.plot()
    assert len(fig.axes) == 2
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [3, 3]
    with pytest.raises(ValueError, match="no metric 'mae'"):
        history.plot(["mae"])


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
    model = _model(bk)
    snap = model.state_dict(copy=True)
    kept = {k: anyfc.to_numpy(v).copy() for k, v in snap.items()}
    model.fit(X, Y, epochs=2, verbose=0)
    for key, value in snap.items():
        np.testing.assert_array_equal(anyfc.to_numpy(value), kept[key])


# ---------------------------------------------------------------- the data interface


def _rows_seen(data, rng):
    return np.concatenate([anyfc.to_numpy(batch[0])[:, 0] for batch in data.batches(rng)])


def test_each_data_implementation_yields_every_row_once(dask_bk):
    import dask.array as da

    from anyfc.training import data

    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64", seed=0)])
    Xr = np.arange(41.0).reshape(-1, 1) * np.ones((1, 3))
    t = np.arange(41) % 2
    rng = np.random.default_rng(0)
    memory = data.for_training(model, data.prepare(model, Xr, t), 8, True, "auto")
    lazy = data.prepare(model, da.from_array(Xr, chunks=10), da.from_array(t, chunks=10))
    streamed = data.for_training(model, lazy, 8, True, "auto")
    parallel = data.for_training(model, lazy, 8, True, "data_parallel")
    assert [type(d).__name__ for d in (memory, streamed, parallel)] == [
        "InMemory", "Streamed", "DataParallel"]
    for d in (memory, streamed, parallel):
        seen = _rows_seen(d, rng)
        assert sorted(seen.tolist()) == list(range(41)), type(d).__name__
        assert d.rows == 41
        assert d.n_batches == len(list(d.batches(rng)))


def test_weighted_training_is_the_same_on_every_data_path(dask_bk):
    import dask.array as da

    w = np.linspace(0.1, 2.0, 40)

    def trained(Xd, yd, wd, **kw):
        model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64", seed=0)])
        model.fit(Xd, yd, epochs=2, batch_size=10, optimizer=SGD(0.3), shuffle=False,
                  sample_weight=wd, verbose=0, **kw)
        return _weights(model)

    memory = trained(X, Y, w)
    chunked = (da.from_array(X, chunks=10), da.from_array(Y, chunks=10),
               da.from_array(w, chunks=10))
    _assert_weights(memory, trained(*chunked), rtol=1e-12)
    _assert_weights(memory, trained(*chunked, strategy="data_parallel"), rtol=1e-12)


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
