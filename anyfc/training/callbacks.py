"""Callbacks: code that ``fit`` runs at the start and end of training, of each epoch and
of each batch, with the model and the epoch's metrics in hand — as in Keras::

    model.fit(X, y, epochs=100, validation_data=(Xv, yv), callbacks=[
        EarlyStopping("val_loss", patience=5, restore_best_weights=True),
        ModelCheckpoint("best.npz", save_best_only=True),
        ReduceLROnPlateau(factor=0.5, patience=2),
        CSVLogger("log.csv"),
    ])

A callback sees the fit through ``self.run`` (a ``Run``: the model, its optimizer, the
number of epochs, the metric names) and stops it with ``self.run.stop_training = True``.
Epochs and batches are numbered from 0. An epoch's ``logs`` hold its metrics (host
numbers: the loop reads the device once per epoch), its ``val_`` metrics and ``lr``, the
learning rate the epoch started with. A batch's logs hold only ``size``, its rows: the
loop does not read the device per batch.

Every callback checks its settings against the fit in ``check`` (a monitored metric
the fit does not report, say) before training changes anything.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
from collections.abc import Callable
from typing import Any

from .. import _validation, checkpoint

Logs = dict[str, Any]


class Run:
    """The fit a callback is part of: ``callback.run``.

    Parameters
    ----------
    model : Sequential
        The model being trained.
    optimizer : anyfc.optimizers.Optimizer
        Its optimizer (a callback may change its ``lr``).
    epochs : int
        The number of epochs asked for.
    metrics : list of str
        The keys of an epoch's logs (besides ``"lr"``): ``loss``, the metrics, their
        ``val_`` twins and what callbacks provide.

    Attributes
    ----------
    stop_training : bool
        Set it to ``True`` to stop the fit after the current epoch.
    """

    def __init__(self, model: Any, optimizer: Any, epochs: int, metrics: list[str]) -> None:
        self.model, self.optimizer, self.epochs = model, optimizer, epochs
        self.metrics = metrics  # the keys of an epoch's logs (besides "lr")
        self.stop_training = False


class Callback:
    """Base class of the callbacks: every hook does nothing; override those you need.

    The fit sets ``run`` (a ``Run``: the model, its optimizer, the number of epochs, the
    metric names) before it calls ``check``; a callback stops the fit with
    ``self.run.stop_training = True``.

    A callback that writes values into an epoch's ``logs`` (say ``logs["val_auc"]``)
    names them in ``provides``: they then appear in ``History``, the printed line and
    ``CSVLogger``'s file, and ``EarlyStopping``, ``ModelCheckpoint`` and
    ``ReduceLROnPlateau`` can monitor them (such callbacks see each epoch's end first).

    Examples
    --------
    >>> class Stop(Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         if logs["loss"] < 0.5:
    ...             self.run.stop_training = True
    """

    run: Run
    provides: tuple[str, ...] = ()  # the log entries this callback writes at an epoch's end

    @property
    def model(self) -> Any:
        """The model being trained (``self.run.model``)."""
        return self.run.model

    def check(self, run: Run) -> None:
        """Refuse settings that cannot work in ``run``, before the fit changes anything.

        Parameters
        ----------
        run : Run
            The fit about to start.

        Raises
        ------
        ValueError
            A setting that cannot work (a monitored metric the fit does not report).
        """

    def check_settings(self) -> None:
        """Check that settings reassigned since construction are ones the class accepts.

        Say ``stopper.patience = -1`` or ``10**400``: the constructor checks the current
        values on a throw-away copy. Called by ``fit`` before anything changes. A
        subclass whose constructor takes an argument it does not keep under the same
        name is not rebuilt (there is nothing to check it against).

        Raises
        ------
        ValueError
            A bad setting, naming the callback and the setting (``TypeError`` where the
            constructor raises one).
        """
        signature = inspect.signature(type(self).__init__)
        kwargs: dict[str, Any] = {}
        for name, parameter in list(signature.parameters.items())[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if name in vars(self):
                kwargs[name] = vars(self)[name]
            elif parameter.default is parameter.empty:
                return
        try:
            type(self)(**kwargs)
        except (TypeError, ValueError) as exc:  # the constructor's type of error
            raise type(exc)(f"the callback {type(self).__name__} has a bad setting: "
                            f"{exc}") from None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Run at the start of training, after ``check``.

        Parameters
        ----------
        logs : dict, optional
            Empty.
        """

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Run at the end of training, also after an early stop.

        Parameters
        ----------
        logs : dict, optional
            The last epoch's logs.
        """

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Run at the start of each epoch.

        Parameters
        ----------
        epoch : int
            The epoch's index, from 0.
        logs : dict, optional
            Empty.
        """

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Run at the end of each epoch, with its metrics.

        Parameters
        ----------
        epoch : int
            The epoch's index, from 0.
        logs : dict, optional
            The epoch's metrics (host numbers: ``loss``, the metrics, their ``val_``
            twins) and ``lr``, the rate the epoch started with. Write into it the
            entries named in ``provides``.
        """

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Run before each training batch.

        Parameters
        ----------
        batch : int
            The batch's index in the epoch, from 0.
        logs : dict, optional
            ``{"size": rows}``: the loop does not read the device per batch.
        """

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Run after each training batch (after the optimizer's step).

        Parameters
        ----------
        batch : int
            The batch's index in the epoch, from 0.
        logs : dict, optional
            ``{"size": rows}``: the loop does not read the device per batch.
        """


def _mode(mode: str, monitor: str) -> str:
    """"min" or "max": ``auto`` maximises accuracy and R², minimises everything else."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if monitor.endswith(
            ("accuracy", "r2", "precision", "recall", "f1", "auc")) else "min"
    return mode


class _Monitor(Callback):
    """A callback that watches one metric for improvement by more than ``min_delta``."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name (a str), got {monitor!r}")
        self.monitor = monitor
        self.mode = _mode(mode, monitor)
        self.min_delta = _validation.real("min_delta", min_delta)

    def check(self, run: Run) -> None:
        if self.monitor not in run.metrics:
            hint = (" (val_ metrics need validation_data or validation_split)"
                    if self.monitor.startswith("val_") else "")
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, which this "
                             f"fit does not report{hint}; it reports {', '.join(run.metrics)}")

    def _improved(self, current: float, best: float) -> bool:
        if math.isnan(current):
            return False
        if self.mode == "min":
            return current < best - self.min_delta
        return current > best + self.min_delta

    def _worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved for ``patience`` epochs, as Keras's.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The metric watched, a key of the epoch's logs.
    patience : int, default 0
        Epochs without improvement before stopping, counted from
        ``start_from_epoch``.
    min_delta : float, default 0
        An improvement is by more than this.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better; ``"auto"`` maximises accuracy, R², precision,
        recall, F1 and AUC, and minimises everything else.
    restore_best_weights : bool, default False
        End with the parameters and buffers of the best epoch: a copy on the model's
        device is taken whenever the metric improves (never a host round trip).
    start_from_epoch : int, default 0
        Epochs to train before watching.
    baseline : float, optional
        A value to beat for an epoch to count as an improvement.
    verbose : int, default 0
        Print when stopping and restoring.

    Attributes
    ----------
    best_epoch, best, stopped_epoch
        After the fit: the best epoch (from 0), its value, and the epoch it stopped at
        (``None`` if it ran to the end).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False,
                 start_from_epoch: int = 0, baseline: float | None = None,
                 verbose: int = 0) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = _validation.integer(patience, "patience", 0)
        self.start_from_epoch = _validation.integer(start_from_epoch, "start_from_epoch", 0)
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else _validation.real(
            "baseline", baseline, -math.inf)
        self.verbose = _validation.verbosity(verbose)
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait = 0
        self.best = self._worst() if self.baseline is None else self.baseline
        self.best_epoch = self.stopped_epoch = None
        self.best_weights: dict[str, Any] | None = None
        self.last_epoch = -1

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.last_epoch = epoch
        if epoch < self.start_from_epoch:
            return
        current = float((logs or {})[self.monitor])
        if self._improved(current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict(copy=True)
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.run.stop_training = True
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping ({self.monitor} best "
                      f"{self.best:.4f} at epoch {(self.best_epoch or 0) + 1})")

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.best_weights is not None and self.best_epoch != self.last_epoch:
            self.model.load_state_dict(self.best_weights)
            if self.verbose:
                print(f"Restored the weights of epoch {(self.best_epoch or 0) + 1}")
        self.best_weights = None  # do not keep a copy of the model alive


class NoImprovementStopping(Callback):
    """Stop as scikit-learn's MLP does, when ``monitor`` stops improving by ``tol``.

    scikit-learn's convergence rule: stop when ``monitor`` has not improved by at least
    ``tol`` for more than ``n_iter_no_change`` epochs in a row. After each epoch, with
    ``current`` the monitored value and ``mode="min"`` (``"max"`` mirrors it)::

        count ← count + 1  if current > best - tol,  else 0
        best  ← current    if current < best          (by any amount)
        count > n_iter_no_change:  stop — or with lr_factor, if the learning rate is
            above min_lr, multiply it by lr_factor, count ← 0 (scikit-learn's
            learning_rate="adaptive": lr_factor=0.2, min_lr=1e-6)

    A NaN never improves and resets the count (scikit-learn's comparisons).
    ``monitor`` is a metric of the fit's logs (``"loss"``, ``"val_accuracy"``, ...) or a
    function ``score(model) -> float`` called after each epoch (inference only: a
    validation score of your own, e.g. scikit-learn's on held-out rows); ``mode="auto"``
    minimises a metric's ``loss``/``mae`` and maximises everything else, a function
    included. ``best`` and ``count`` start where a previous fit left them when given
    (scikit-learn carries them over ``partial_fit`` and ``warm_start``). With
    ``restore_best_weights`` the model ends with the parameters and buffers of its best
    epoch, or those it started with when no epoch beat ``best`` (copies on the model's
    device). After the fit: ``best``, ``count``, ``scores`` (each epoch's value),
    ``stopped_epoch`` (``None`` if the fit ran to its end).

    Parameters
    ----------
    monitor : str or callable, default "loss"
        A metric of the fit's logs, or a function ``score(model) -> float``.
    tol : float, default 1e-4
        The improvement that counts.
    n_iter_no_change : int or inf, default 10
        Epochs in a row without improvement before stopping.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better.
    restore_best_weights : bool, default False
        End with the best epoch's parameters and buffers.
    best : float, optional
        The best value so far, from a previous fit.
    count : int, default 0
        The epochs without improvement so far, from a previous fit.
    lr_factor : float, optional
        Instead of stopping, multiply the learning rate by this, in (0, 1], while it is
        above ``min_lr``.
    min_lr : float, default 1e-6
        The rate below which ``lr_factor`` stops instead.
    verbose : int, default 0
        Print scikit-learn's messages.
    """

    def __init__(self, monitor: str | Callable[[Any], float] = "loss", *, tol: float = 1e-4,
                 n_iter_no_change: float = 10, mode: str = "auto",
                 restore_best_weights: bool = False, best: float | None = None,
                 count: int = 0, lr_factor: float | None = None, min_lr: float = 1e-6,
                 verbose: int = 0) -> None:
        if not (isinstance(monitor, str) or callable(monitor)):
            raise TypeError(f"monitor must be a metric name or a function score(model), "
                            f"got {monitor!r}")
        self.monitor = monitor
        self.mode = _mode(mode, monitor if isinstance(monitor, str) else "score")
        self.tol = _validation.real("tol", tol)
        if n_iter_no_change != math.inf:
            n_iter_no_change = _validation.integer(n_iter_no_change, "n_iter_no_change")
        self.n_iter_no_change = n_iter_no_change
        self.restore_best_weights = bool(restore_best_weights)
        self.best = self._worst() if best is None or best == self._worst() else (
            _validation.real("best", best, -math.inf))
        self.count = _validation.integer(count, "count", 0)
        self.lr_factor = None if lr_factor is None else _validation.real(
            "lr_factor", lr_factor, 0.0, 1.0, low_open=True)
        self.min_lr = _validation.real("min_lr", min_lr)
        self.verbose = _validation.verbosity(verbose)
        self.scores: list[float] = []
        self.stopped_epoch: int | None = None

    def _worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def check(self, run: Run) -> None:
        if isinstance(self.monitor, str) and self.monitor not in run.metrics:
            raise ValueError(f"NoImprovementStopping monitors {self.monitor!r}, which this "
                             f"fit does not report; it reports {', '.join(run.metrics)}")
        if self.lr_factor is not None and not isinstance(run.optimizer.lr, (int, float)):
            raise ValueError("NoImprovementStopping with lr_factor needs an optimizer with a "
                             f"constant learning rate, but its lr is {run.optimizer.lr!r}")

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.scores, self.stopped_epoch = [], None
        self.best_state = self.model.state().copy() if self.restore_best_weights else None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if callable(self.monitor):
            current = float(self.monitor(self.model))
        else:
            current = float((logs or {})[self.monitor])
        self.scores.append(current)
        sign = 1.0 if self.mode == "min" else -1.0  # max: the same rule on -current
        if sign * current > sign * self.best - self.tol:
            self.count += 1
        else:
            self.count = 0  # improved by tol (or NaN: scikit-learn's comparison)
        if sign * current < sign * self.best:
            self.best = current
            if self.restore_best_weights:
                self.best_state = self.model.state().copy()
        if self.count <= self.n_iter_no_change:
            return
        opt = self.run.optimizer
        if self.lr_factor is not None and float(opt.lr) > self.min_lr:
            opt.lr = float(opt.lr) * self.lr_factor
            self.count = 0
            if self.verbose:
                print(f"No improvement by tol={self.tol:f} for {self.n_iter_no_change} "
                      f"epochs: learning rate set to {opt.lr:f}")
            return
        self.stopped_epoch = epoch
        self.run.stop_training = True
        if self.verbose:
            print(f"No improvement by tol={self.tol:f} for {self.n_iter_no_change} "
                  "consecutive epochs. Stopping.")

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Put the best epoch's state back on the model, with ``restore_best_weights``.

        Also callable after an interrupted fit.

        Parameters
        ----------
        logs : dict, optional
            Unused.
        """
        state = getattr(self, "best_state", None)
        if state is not None:
            self.model.set_state(state)
        self.best_state = None  # do not keep a copy of the model alive


class ModelCheckpoint(_Monitor):
    """Save the model after every epoch, or only when ``monitor`` improved.

    ``model.save`` writes it: the same atomic, pickle-free file. The destination is
    checked before training starts.

    Parameters
    ----------
    path : str or os.PathLike
        The file; it may hold ``{epoch}`` (from 1) and metric fields, e.g.
        ``"model-{epoch:03d}-{val_loss:.3f}.npz"``.
    monitor : str, default "val_loss"
        The metric watched with ``save_best_only``.
    save_best_only : bool, default False
        Save only when ``monitor`` improved.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better.
    min_delta : float, default 0
        An improvement is by more than this.
    verbose : int, default 0
        Print each save.

    Attributes
    ----------
    saved : list of str
        The paths written.
    """

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "auto", min_delta: float = 0.0,
                 verbose: int = 0) -> None:
        super().__init__(monitor, mode, min_delta)
        self.path = os.fspath(path)
        self.save_best_only = bool(save_best_only)
        self.verbose = _validation.verbosity(verbose)
        self.saved: list[str] = []

    def check(self, run: Run) -> None:
        if self.save_best_only:
            super().check(run)
        try:
            first = self._path(0, dict.fromkeys(run.metrics, 0.0))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint path {self.path!r} has a field this fit does "
                             f"not report ({exc}); fields: epoch, {', '.join(run.metrics)}"
                             ) from None
        checkpoint.check_destination(first, "checkpoint")  # before training changes anything

    def _path(self, epoch: int, logs: Logs) -> str:
        return self.path.format(**{**logs, "epoch": epoch + 1})

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.best = self._worst()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self.save_best_only:
            current = float(logs[self.monitor])
            if not self._improved(current, self.best):
                return
            self.best = current
        path = self._path(epoch, logs)
        self.model.save(path)
        self.saved.append(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved the model to {path}")


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of every epoch, as Keras's.

    On JAX the rate is an argument of the compiled step: changing it never compiles the
    step again.

    Parameters
    ----------
    schedule : anyfc.schedules.Schedule or callable
        A schedule (called with the epoch), or a function ``(epoch, lr) -> new lr``.
    verbose : int, default 0
        Print each epoch's rate.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        if not callable(schedule):
            raise TypeError(f"schedule must be a schedule or a function (epoch, lr) -> lr, "
                            f"got {schedule!r}")
        self.schedule, self.verbose = schedule, _validation.verbosity(verbose)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        opt = self.run.optimizer
        if hasattr(self.schedule, "per"):  # an anyfc schedule: a function of the epoch
            lr = self.schedule(epoch)
        else:
            lr = self.schedule(epoch, opt.learning_rate())
        opt.lr = _validation.real("the learning rate from the schedule", lr, low_open=True)
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {opt.lr:.6g}")


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving.

    Keras's rule: when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs, the rate is multiplied by ``factor`` (not below ``min_lr``);
    then ``cooldown`` epochs pass before counting again. Needs a constant learning rate
    (a number, not a schedule).

    Parameters
    ----------
    monitor : str, default "val_loss"
        The metric watched.
    factor : float, default 0.1
        In (0, 1].
    patience : int, default 10
        Epochs without improvement before reducing.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better.
    min_delta : float, default 1e-4
        An improvement is by more than this.
    cooldown : int, default 0
        Epochs to wait after a reduction.
    min_lr : float, default 0
        The lowest rate.
    verbose : int, default 0
        Print each reduction.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0, verbose: int = 0) -> None:
        super().__init__(monitor, mode, min_delta)
        self.factor = _validation.real("factor", factor, 0.0, 1.0, low_open=True)
        self.patience = _validation.integer(patience, "patience", 0)
        self.cooldown = _validation.integer(cooldown, "cooldown", 0)
        self.min_lr = _validation.real("min_lr", min_lr)
        self.verbose = _validation.verbosity(verbose)

    def check(self, run: Run) -> None:
        super().check(run)
        if not isinstance(run.optimizer.lr, (int, float)):
            raise ValueError("ReduceLROnPlateau needs an optimizer with a constant learning "
                             f"rate, but its lr is {run.optimizer.lr!r}; use one or the other")

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.best, self.wait, self.cooldown_counter = self._worst(), 0, 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = float((logs or {})[self.monitor])
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.run.optimizer
                old = float(opt.lr)
                if old > self.min_lr:
                    opt.lr = max(old * self.factor, self.min_lr)
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: learning rate reduced to {opt.lr:.6g}")
                self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Append each epoch's logs (``epoch`` from 0, the metrics, ``lr``) to a CSV file.

    The header is written at the start of training unless ``append`` continues a file.
    The file is opened and closed at each write, so an interrupted fit leaves it whole;
    its destination is checked before training starts.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.
    separator : str, default ","
        The field separator.
    append : bool, default False
        Continue an existing file (no new header).
    """

    def __init__(self, path: str | os.PathLike[str], separator: str = ",",
                 append: bool = False) -> None:
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be one character, got {separator!r}")
        self.path, self.separator, self.append = os.fspath(path), separator, bool(append)

    def check(self, run: Run) -> None:
        checkpoint.check_destination(self.path, "CSV log")  # before training

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.columns = ["epoch", *self.run.metrics, "lr"]
        fresh = not self.append or not os.path.exists(self.path) or (
            os.path.getsize(self.path) == 0)
        if fresh:
            with open(self.path, "w", newline="") as f:
                csv.writer(f, delimiter=self.separator).writerow(self.columns)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        row = {**(logs or {}), "epoch": epoch}
        with open(self.path, "a", newline="") as f:
            csv.writer(f, delimiter=self.separator).writerow(
                [row.get(c, "") for c in self.columns])
