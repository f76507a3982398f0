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
from .. import metrics as metrics_module
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
    metrics: Sequence[Any] | None = None,
    merge_last: bool = False,
) -> History:
    """``Sequential.fit`` (see there; the defaults are its own): every argument is
    checked, and the data planned, before anything changes."""
    epochs = _validation.integer(epochs, "epochs", 0)
    batch_size = _validation.integer(batch_size, "batch_size")
    verbose = _validation.verbosity(verbose)
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
    measures = metrics_module.resolve(metrics, _metrics.kind(model.loss, model.n_out))
    if isinstance(optimizer, type):
        raise TypeError(f"optimizer is the class {optimizer.__name__}; pass an instance: "
                        f"optimizer={optimizer.__name__}() (or with settings, "
                        f"{optimizer.__name__}(lr=...))")
    opt = optimizers.get(optimizer if optimizer is not None else model.optimizer)
    opt.check_settings()
    opt_state = model.adopt(opt)
    model.check_settings()
    if not _finite(model, [*model.state(rng=False), *_state_arrays(opt_state)]):
        raise ValueError("the model's parameters, buffers or optimizer state hold NaN or "
                         "infinity before training; load or assign finite ones (see "
                         "model.load_state_dict)")
    model.check_values()

    val = None
    if split:  # class weights for the training rows only ("balanced" counts those alone);
        # the held-out rows keep their sample weights, as Keras does
        arrays, held_out = _split(with_weights(model, _data.prepare(model, X, y),
                                               sample_weight, None), split)
        if class_weight is not None:
            arrays = with_weights(model, arrays[:2], arrays[2] if len(arrays) == 3 else None,
                                  class_weight)
        val = _data.for_evaluation(model, held_out, 1024)
    else:
        arrays = with_weights(model, _data.prepare(model, X, y), sample_weight, class_weight)
    if validation_data is not None:
        val_x, val_y = _validation.pair(validation_data, "validation_data")
        val = _data.for_evaluation(
            model, _data.prepare(model, val_x, val_y, "validation X", "validation y"), 1024)
    merge = max(layer.min_batch for layer in model.layers) if merge_last else 0
    train = _data.for_training(model, arrays, batch_size, shuffle, strategy, merge)
    model.check_min_batch(train.last_batch(), train.why() + " {smallest}; choose another "
                          "batch_size" + (" or rechunk the data" if train.chunked else ""))
    names = ["loss", *(m.name for m in measures)]
    provided = [name for hook in hooks for name in hook.provides]
    run = Run(model, opt, epochs,
              names + (["val_" + k for k in names] if val else []) + provided)
    for hook in hooks:
        hook.run = run
        hook.check(run)
    for hook in hooks:
        hook.on_train_begin({})
    if epochs == 0:  # everything checked, nothing to train: the model keeps its optimizer
        # (and that optimizer its state), even when another one was passed
        for hook in hooks:
            hook.on_train_end({})
        return History({k: [] for k in run.metrics})

    previous = model.optimizer
    model.optimizer = opt
    opt.state = opt_state
    history = History({k: [] for k in run.metrics})
    # callbacks that write logs (``provides``) see an epoch's end first, so every other
    # callback (EarlyStopping, CSVLogger, ...) finds their values, whatever the order given
    ordered = ([h for h in hooks if h.provides] + [h for h in hooks if not h.provides])
    bar = Progress(verbose, epochs, train.n_batches)
    if rng is None:  # drawn only now: a refused fit takes nothing from set_seed's stream
        rng = _backend.host_rng(None)
    with _backend.quiet(model.xp):  # anyfc reports divergence itself
        history = _train(model, opt, train, val, rng, hooks, ordered, bar, measures, run,
                         history, epochs, previous)
    model.forget()
    return history


def _train(model: Model, opt: Any, train: Any, val: Any, rng: Any, hooks: list[Callback],
           ordered: list[Callback], bar: Progress, measures: list[Any], run: Run,
           history: History, epochs: int, previous: Any) -> History:
    """The epochs of a checked fit, each all or nothing."""
    logs: dict[str, Any] = {}
    for epoch in range(epochs):
        snapshot = model.state().copy(), opt.snapshot()
        try:
            for hook in hooks:
                hook.on_epoch_begin(epoch, {})
            lr = opt.learning_rate()
            bar.start(epoch + 1)
            sums, last = _epoch(model, opt, train, rng, hooks, bar, measures)
            # the loss of each batch is taken before its update, so the epoch's last
            # update is checked apart: parameters, buffers, optimizer state and the loss
            # of the last batch under the updated model must all be finite
            finite = _finite(model, [sums["loss"], _probe(model, last),
                                     *model.state(rng=False), *_state_arrays(opt.state)])
            logs = _metrics.result(sums, measures, model.xp)
        except BaseException:
            _undo(model, snapshot, epoch, previous)  # even when interrupted
            raise
        if not finite:
            _undo(model, snapshot, epoch, previous)
            raise FloatingPointError(
                f"training diverged in epoch {epoch + 1}: its mean loss was "
                f"{logs['loss']}, and after its last update the parameters, the optimizer "
                "state or the loss are no longer all finite; try a lower learning rate (the "
                f"optimizer has lr={opt.lr}). The model and its optimizer keep their state "
                f"from before epoch {epoch + 1}.")
        opt.end_epoch()
        if val is not None:
            logs.update({"val_" + k: v for k, v in _evaluate(model, val, measures).items()})
        logs["lr"] = lr
        for hook in ordered:
            hook.on_epoch_end(epoch, logs)
        for key, value in logs.items():  # with what the callbacks wrote
            if key != "lr":
                history.setdefault(key, []).append(value)
        history.epoch.append(epoch)
        history.lr.append(lr)
        bar.end({k: v for k, v in logs.items() if k != "lr"})
        if run.stop_training:
            break
    for hook in hooks:
        hook.on_train_end(logs)
    return history


def _epoch(model: Model, opt: Any, train: Any, rng: Any, hooks: list[Callback],
           bar: Progress, measures: list[Any]) -> tuple[_metrics.Sums, Any]:
    """One pass over ``train``: (the metric sums, the last batch)."""
    sums: _metrics.Sums | None = None
    last = None
    for i, batch in enumerate(train.batches(rng)):
        for hook in hooks:
            hook.on_train_batch_begin(i, {})
        sums = _metrics.materialize(_metrics.merge(
            sums, train.train(model, opt, batch, measures), measures))
        last = batch
        for hook in hooks:
            hook.on_train_batch_end(i, {"size": batch[0].shape[0]})
        bar.batch(sums)
    assert sums is not None  # every data has at least one row (checked when prepared)
    return sums, last


def evaluate(model: Model, X: Any, y: Any, *, batch_size: int | None,
             sample_weight: Any, metrics: Sequence[Any] | None = None) -> dict[str, float]:
    """``Sequential.evaluate`` (see there): the arguments checked, then the metrics."""
    batch_size = _validation.batch_size(batch_size, allow_none=True)
    model.check()
    model.check_settings()
    measures = metrics_module.resolve(metrics, _metrics.kind(model.loss, model.n_out))
    arrays = with_weights(model, _data.prepare(model, X, y), sample_weight, None)
    return _evaluate(model, _data.for_evaluation(model, arrays, batch_size), measures)


def _evaluate(model: Model, data: _data.Data, measures: list[Any]) -> dict[str, float]:
    """The metrics of ``model`` over ``data`` (inference: nothing kept on the model)."""
    sums: _metrics.Sums | None = None
    with _backend.precision_scope(model.xp, model.device):  # anyfc's, as in training
        for batch in data.batches(_backend.host_rng(0)):
            sums = _metrics.materialize(_metrics.merge(
                sums, data.evaluate(model, batch, measures), measures))
    assert sums is not None
    return _metrics.result(sums, measures, model.xp)


def _callbacks(callbacks: Any) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    hooks = list(callbacks) if isinstance(callbacks, (list, tuple)) else None
    if hooks is None or not all(isinstance(c, Callback) for c in hooks):
        raise TypeError("callbacks must be a list of anyfc callbacks (subclasses of "
                        f"anyfc.callbacks.Callback), got {callbacks!r:.100}")
    for hook in hooks:  # settings reassigned since construction, before anything changes
        hook.check_settings()
    return hooks


def with_weights(model: Model, arrays: tuple[Any, ...], sample_weight: Any,
                  class_weight: Any) -> tuple[Any, ...]:
    """``(X, t)``, or ``(X, t, w)`` with each row's loss weight: ``sample_weight`` times
    the weight of the row's class (``class_weight``), on the data's backend and device.
    The product is checked as it will be used, in the model's dtype: finite (a product
    too large for float32 is a ValueError naming the weights), non-negative, not all 0."""
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
        with _backend.quiet(xp), _backend.quiet(_backend.get_namespace("numpy")):
            # an overflow is reported below, naming the weights
            cw = _backend.to_backend(per_row, xp, device, model.dtype)
            w = _validation.row_weights(cw if w is None else w * cw, xp, model.dtype)
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
    """The host generator for shuffling (``None`` when no seed is given: the caller
    draws a fresh one once the fit has been checked; a NumPy ``RandomState``,
    scikit-learn's kind, is used as it is), or a ValueError for a bad seed."""
    if seed is None:
        return None
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
