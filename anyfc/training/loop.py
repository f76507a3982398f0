"""The training loop and evaluation, working on the model object they are handed.

Per epoch: for each mini-batch of the data (``anyfc.training.data``) one training step
(``anyfc.training.step``), its metric sums added on the device; at the epoch's end one
read of the device — the metrics, and whether the parameters, buffers, optimizer state
and the last batch's loss under the updated model are all finite. An epoch is all or
nothing: one that raises (even Ctrl-C) or diverges is undone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _backend, _dask, _metrics, _validation, optimizers
from . import data as _data
from .callbacks import Callback, Run
from .history import History, Progress
from .protocol import Model


def fit(
    model: Model,
    X: Any,
    y: Any,
    *,
    epochs: int,
    batch_size: int,
    optimizer: optimizers.Optimizer | str | None,
    validation_data: tuple[Any, Any] | None,
    validation_split: float,
    shuffle: bool | str,
    seed: Any,
    verbose: int,
    strategy: str,
    callbacks: Sequence[Callback] | None,
    class_weight: dict[int, float] | str | None,
    sample_weight: Any,
    merge_last: bool = False,
) -> History:
    """``Sequential.fit`` (see there; the defaults are its own): every argument is
    checked, and the data planned, before anything changes."""
    epochs = _validation.integer(epochs, "epochs", 0)
    batch_size = _validation.integer(batch_size, "batch_size")
    verbose = int(verbose) if isinstance(verbose, bool) else _validation.integer(
        verbose, "verbose", 0)
    if strategy not in ("auto", "data_parallel"):
        raise ValueError(f"unknown strategy {strategy!r}; valid: 'auto', 'data_parallel'")
    if not isinstance(shuffle, bool) and shuffle != "cumulative":
        raise ValueError(f"shuffle must be True, False or 'cumulative', got {shuffle!r}")
    split = _validation.real("validation_split", validation_split, 0.0, 1.0)
    if split and validation_data is not None:
        raise ValueError("give validation_data or validation_split, not both")
    hooks = _callbacks(callbacks)
    rng = _seeded(seed)
    model.check()
    opt = optimizers.get(optimizer if optimizer is not None else model.optimizer)
    opt_state = model.adopt(opt)
    model.check_settings()
    if not _finite(model, [*model.state(rng=False), *_state_arrays(opt_state)]):
        raise ValueError("the model's parameters, buffers or optimizer state hold NaN or "
                         "infinity before training; load or assign finite ones (see "
                         "model.load_state_dict)")
    model.check_values()

    arrays = with_weights(model, _data.prepare(model, X, y), sample_weight, class_weight)
    val = None
    if split:
        arrays, held_out = _split(arrays, split)
        val = _data.for_evaluation(model, held_out, 1024)
    elif validation_data is not None:
        val_x, val_y = _validation.pair(validation_data, "validation_data")
        val = _data.for_evaluation(
            model, _data.prepare(model, val_x, val_y, "validation X", "validation y"), 1024)
    merge = max(layer.min_batch for layer in model.layers) if merge_last else 0
    train = _data.for_training(model, arrays, batch_size, shuffle, strategy, merge)
    model.check_min_batch(train.last_batch(), train.why() + " {smallest}; choose another "
                          "batch_size" + (" or rechunk the data" if train.chunked else ""))
    names = _metrics.names(model.loss)
    run = Run(model, opt, epochs, names + (["val_" + k for k in names] if val else []))
    for hook in hooks:
        hook.run = run
        hook.check(run)
    for hook in hooks:
        hook.on_train_begin({})

    previous = model.optimizer
    model.optimizer = opt
    opt.state = opt_state
    history = History({k: [] for k in run.metrics})
    bar = Progress(verbose, epochs, train.n_batches)
    logs: dict[str, Any] = {}
    for epoch in range(epochs):
        snapshot = model.state().copy(), opt.snapshot()
        try:
            for hook in hooks:
                hook.on_epoch_begin(epoch, {})
            lr = opt.learning_rate()
            bar.start(epoch + 1)
            sums, last = _epoch(model, opt, train, rng, hooks, bar)
            # the loss of each batch is taken before its update, so the epoch's last
            # update is checked apart: parameters, buffers, optimizer state and the loss
            # of the last batch under the updated model must all be finite
            finite = _finite(model, [sums["loss"], _probe(model, last),
                                     *model.state(rng=False), *_state_arrays(opt.state)])
        except BaseException:
            _undo(model, snapshot, epoch, previous)  # even when interrupted
            raise
        metrics = _metrics.result(sums, model.loss, model.n_out)
        if not finite:
            _undo(model, snapshot, epoch, previous)
            raise FloatingPointError(
                f"training diverged in epoch {epoch + 1}: its mean loss was "
                f"{metrics['loss']}, and after its last update the parameters, the optimizer "
                "state or the loss are no longer all finite; try a lower learning rate (the "
                f"optimizer has lr={opt.lr}). The model and its optimizer keep their state "
                f"from before epoch {epoch + 1}.")
        opt.end_epoch()
        if val is not None:
            metrics.update({"val_" + k: v for k, v in _evaluate(model, val).items()})
        for key, value in metrics.items():
            history[key].append(value)
        history.epoch.append(epoch)
        history.lr.append(lr)
        bar.end(metrics)
        logs = {**metrics, "lr": lr}
        for hook in hooks:
            hook.on_epoch_end(epoch, logs)
        if run.stop_training:
            break
    for hook in hooks:
        hook.on_train_end(logs)
    model.forget()
    return history


def _epoch(model: Model, opt: Any, train: Any, rng: Any, hooks: list[Callback],
           bar: Progress) -> tuple[_metrics.Sums, Any]:
    """One pass over ``train``: (the metric sums, the last batch)."""
    sums: _metrics.Sums | None = None
    last = None
    for i, batch in enumerate(train.batches(rng)):
        for hook in hooks:
            hook.on_train_batch_begin(i, {})
        sums = _metrics.materialize(_metrics.merge(sums, train.train(model, opt, batch)))
        last = batch
        for hook in hooks:
            hook.on_train_batch_end(i, {"size": batch[0].shape[0]})
        bar.batch()
    assert sums is not None  # every data has at least one row (checked when prepared)
    return sums, last


def evaluate(model: Model, X: Any, y: Any, *, batch_size: int | None,
             sample_weight: Any) -> dict[str, float]:
    """``Sequential.evaluate`` (see there): the arguments checked, then the metrics."""
    batch_size = _validation.batch_size(batch_size, allow_none=True)
    model.check()
    arrays = with_weights(model, _data.prepare(model, X, y), sample_weight, None)
    return _evaluate(model, _data.for_evaluation(model, arrays, batch_size))


def _evaluate(model: Model, data: _data.Data) -> dict[str, float]:
    """The metrics of ``model`` over ``data`` (inference: nothing kept on the model)."""
    sums: _metrics.Sums | None = None
    with _backend.precision_scope(model.xp, model.device):  # anyfc's, as in training
        for batch in data.batches(_backend.host_rng(0)):
            sums = _metrics.materialize(_metrics.merge(sums, data.evaluate(model, batch)))
    assert sums is not None
    return _metrics.result(sums, model.loss, model.n_out)


def _callbacks(callbacks: Any) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    hooks = list(callbacks) if isinstance(callbacks, (list, tuple)) else None
    if hooks is None or not all(isinstance(c, Callback) for c in hooks):
        raise TypeError("callbacks must be a list of anyfc callbacks (subclasses of "
                        f"anyfc.callbacks.Callback), got {callbacks!r:.100}")
    return hooks


def with_weights(model: Model, arrays: tuple[Any, ...], sample_weight: Any,
                  class_weight: Any) -> tuple[Any, ...]:
    """``(X, t)``, or ``(X, t, w)`` with each row's loss weight: ``sample_weight`` times
    the weight of the row's class (``class_weight``), on the data's backend and device."""
    if sample_weight is None and class_weight is None:
        return arrays
    X, t = arrays
    lazy = _data.streams(model, X)
    xp = _backend.namespace_of(X)
    device = _backend.device_of(X)
    w = None
    if sample_weight is not None:
        w = _validation.sample_weight(sample_weight, X.shape[0], xp, device, model.dtype)
    if class_weight is not None:
        if lazy:
            raise ValueError("class_weight needs the labels in memory; with Dask data pass "
                             "per-row weights as sample_weight (a Dask array)")
        per_row = _validation.class_weight(class_weight, t, model.loss, model.n_out)
        cw = _backend.to_backend(per_row, xp, device, model.dtype)
        w = cw if w is None else w * cw
    return _dask.aligned(X, t, w) if lazy else (X, t, w)


def _split(arrays: tuple[Any, ...], split: float) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(training rows, held-out rows): the last ``split`` of the rows, before any
    shuffling (as Keras)."""
    n = int(arrays[0].shape[0])
    k = int(math.floor(n * (1.0 - split)))
    if k < 1 or k >= n:
        raise ValueError(f"validation_split={split} of {n} rows leaves {k} for training and "
                         f"{n - k} for validation; both need at least one")
    return tuple(a[:k, ...] for a in arrays), tuple(a[k:, ...] for a in arrays)


def _probe(model: Model, batch: Any) -> Any:
    """The loss of one training batch under the current parameters (0.0 for batches that
    are not on the model's backend: data-parallel row ranges)."""
    if _data.streams(model, batch[0]):
        return 0.0
    return model.loss.value(model.forward(batch[0], training=False), batch[1])


def _undo(model: Model, snapshot: Any, epoch: int, previous: Any) -> None:
    """Back to the start of ``epoch``: the model's state (generators included), its
    optimizer's state and counters (the optimizer itself too when nothing trained)."""
    state, opt_state = snapshot
    model.set_state(state)
    if model.optimizer is not None:
        model.optimizer.restore(opt_state)
    model.forget()
    if epoch == 0:  # nothing trained: the model keeps its optimizer, too
        model.optimizer = previous


def _seeded(seed: Any) -> Any:
    """The host generator for shuffling (a NumPy ``RandomState``, scikit-learn's kind,
    is used as it is), or a ValueError for a bad seed."""
    if isinstance(seed, np.random.RandomState):
        return seed
    try:
        return _backend.host_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"seed must be None, a non-negative integer, a numpy Generator or "
                         f"a numpy RandomState, got {seed!r}") from exc


def _finite(model: Model, values: list[Any]) -> bool:
    return _backend.all_finite(model.xp, model.device, values)


def _state_arrays(state: dict[str, dict[str, Any]]) -> list[Any]:
    """Every array of an optimizer's state (``opt.state``, or state about to be set)."""
    return [value for values in state.values() for value in values.values()]
