"""Where training data comes from: one small interface, one implementation per kind of
input, chosen once per ``fit`` (as Keras 3's data adapters).

A ``Data`` knows its number of ``rows``, its ``n_batches`` per epoch, the size of its
smallest batch (``last_batch()``, and ``why()`` it is that small; ``chunked``: whether
rechunking the data would change it), yields its ``batches(rng)`` — tuples ``(x, t)`` or
``(x, t, w)``, ``w`` the rows' loss weights — and runs a training step on one of them
(``train``) or an evaluation (``evaluate``), returning the batch's metric sums
(``anyfc._metrics``).

- ``InMemory``: arrays on the model's backend and device; batches are slices (or
  ``take`` of a shuffled order on the device). With ``shuffle="cumulative"`` each
  epoch's order is the previous epoch's permuted (``order[rng.permutation(n)]``, from
  ``arange(n)`` at the start of the fit): scikit-learn's MLP orders its epochs so, and
  with its ``numpy.random.RandomState`` as ``rng`` the orders are its own. With
  ``merge_below=k`` a last batch of fewer than ``k`` rows joins the batch before it
  (``fit(merge_last=True)``: ``k`` is what the layers need, BatchNorm's 2).
- ``Streamed``: Dask arrays, computed a chunk at a time and sent to the model's device
  (the next chunk computed in the background while this one trains).
- ``DataParallel``: Dask arrays whose chunks compute their gradient sums where they live;
  the model adds them up and takes one optimizer step.

Every row is visited once per epoch, the last partial batch included.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from .. import _backend, _dask, _metrics, _validation
from ..metrics import Metric
from . import step
from .protocol import Model

Array = Any
Batch = tuple[Array, ...]


class Data(Protocol):
    """The interface the training loop and ``evaluate`` use."""

    rows: int
    n_batches: int
    chunked: bool

    def last_batch(self) -> int: ...

    def why(self) -> str: ...

    def batches(self, rng: np.random.Generator) -> Iterator[Batch]: ...

    def train(self, model: Model, optimizer: Any, batch: Batch,
              metrics: Sequence[Metric]) -> _metrics.Sums: ...

    def evaluate(self, model: Model, batch: Batch,
                 metrics: Sequence[Metric]) -> _metrics.Sums: ...


def _weights(batch: Batch) -> Array | None:
    return batch[2] if len(batch) > 2 else None


def _train_local(model: Model, optimizer: Any, batch: Batch,
                 metrics: Sequence[Metric]) -> _metrics.Sums:
    """A step on a batch that is on the model's device; its metric sums (device)."""
    x, t = batch[0], batch[1]
    e, y = step.train_step(model, x, t, _weights(batch), optimizer)
    return _metrics.batch_sums(model.loss, model.xp, y, t, e * x.shape[0], metrics)


def _evaluate_local(model: Model, batch: Batch, metrics: Sequence[Metric]) -> _metrics.Sums:
    """Inference on a batch (nothing kept on the model); its metric sums (device)."""
    x, t, w = batch[0], batch[1], _weights(batch)
    y = model.forward(x, training=False)
    e = model.loss.value(y, t) if w is None else model.loss.value(y, t, w)
    return _metrics.batch_sums(model.loss, model.xp, y, t, e * x.shape[0], metrics)


class InMemory:
    """Arrays already on the model's backend and device (checked by the caller)."""

    chunked = False

    def __init__(self, model: Model, arrays: Batch, batch_size: int | None,
                 shuffle: bool | str, merge_below: int = 0) -> None:
        self.model, self.arrays, self.shuffle = model, arrays, shuffle
        self.rows = n = int(arrays[0].shape[0])
        self.batch_size = size = n if batch_size is None else batch_size
        self.starts = list(range(0, n, size))
        if len(self.starts) > 1 and n - self.starts[-1] < merge_below:
            self.starts.pop()  # the last rows join the batch before them
        self.n_batches = len(self.starts)
        self.order = np.arange(n)  # the last epoch's ("cumulative")

    def last_batch(self) -> int:
        """Rows in the smallest batch of an epoch."""
        return min(self.batch_size, self.rows - self.starts[-1])

    def why(self) -> str:
        """Where the smallest batch comes from, for an error message."""
        return f"{self.rows} rows in batches of {self.batch_size} leave a last batch of"

    def batches(self, rng: np.random.Generator) -> Iterator[Batch]:
        xp, n = self.model.xp, self.rows
        order = None
        if self.shuffle == "cumulative":
            self.order = self.order[rng.permutation(n)]
            order = _backend.from_host(self.order, xp, self.model.device, None)
        elif self.shuffle:
            order = _backend.from_host(rng.permutation(n), xp, self.model.device, None)
        for start, stop in zip(self.starts, [*self.starts[1:], n]):
            if order is None:
                yield tuple(a[start:stop, ...] for a in self.arrays)
            else:
                idx = order[start:stop]
                yield tuple(_backend.take_rows(a, idx) for a in self.arrays)

    train = staticmethod(_train_local)
    evaluate = staticmethod(_evaluate_local)


class Streamed:
    """Dask arrays (aligned by rows) streamed a chunk at a time to the model's device."""

    chunked = True  # a batch never straddles two chunks

    def __init__(self, model: Model, arrays: Batch, batch_size: int | None,
                 shuffle: bool | str) -> None:
        self.model, self.arrays, self.shuffle = model, arrays, shuffle
        self.batch_size = batch_size
        self.rows = int(arrays[0].shape[0])
        chunks = [c for c in arrays[0].chunks[0] if c]
        size = batch_size or max(chunks, default=1)
        self.n_batches = sum(math.ceil(c / size) for c in chunks)
        self.smallest = min((c % size or min(size, c) for c in chunks), default=0)

    def last_batch(self) -> int:
        return self.smallest

    def why(self) -> str:
        return (f"the Dask chunks {tuple(self.arrays[0].chunks[0])} in batches of "
                f"{self.batch_size} leave a batch of")

    def batches(self, rng: np.random.Generator) -> Iterator[Batch]:
        return _dask.stream(self.arrays, self.model, self.batch_size, bool(self.shuffle), rng)

    train = staticmethod(_train_local)
    evaluate = staticmethod(_evaluate_local)


class DataParallel:
    """Dask arrays whose chunks compute gradient sums where they live (see ``_dask``)."""

    chunked = False

    def __init__(self, model: Model, arrays: Batch, batch_size: int,
                 shuffle: bool | str) -> None:
        _dask.check_parallel(model)
        self.arrays, self.batch_size, self.shuffle = arrays, batch_size, shuffle
        self.rows = int(arrays[0].shape[0])
        self.n_batches = math.ceil(self.rows / batch_size)

    def last_batch(self) -> int:
        return self.rows % self.batch_size or min(self.batch_size, self.rows)

    def why(self) -> str:
        return f"{self.rows} rows in batches of {self.batch_size} leave a last batch of"

    def batches(self, rng: np.random.Generator) -> Iterator[Batch]:
        return _dask.row_batches(self.arrays, self.batch_size, bool(self.shuffle), rng)

    @staticmethod
    def train(model: Model, optimizer: Any, batch: Batch,
              metrics: Sequence[Metric]) -> _metrics.Sums:
        return _dask.parallel_step(model, optimizer, batch, metrics)

    @staticmethod
    def evaluate(model: Model, batch: Batch, metrics: Sequence[Metric]) -> _metrics.Sums:
        raise NotImplementedError("evaluation streams its data (Streamed)")


def streams(model: Model, X: Any) -> bool:
    """Whether ``X`` is a Dask array to stream to a model that is not on Dask."""
    return _backend.is_lazy(X) and model.backend != "dask"


def prepare(model: Model, X: Any, y: Any, what_x: str = "X", what_y: str = "y") -> Batch:
    """``(X, t)`` checked and converted once: moved to the model's backend, device and
    dtype (targets as the loss takes them), or — for Dask data and a model on another
    backend — checked lazily in one pass, cast, and chunked alike along rows."""
    if streams(model, X):
        dask_xp = _dask.namespace()
        X = _validation.inputs(X, dask_xp, "cpu", model.dtype, model.n_in, what_x)
        t = _validation.targets(y, model.loss, dask_xp, "cpu", model.dtype, X.shape[0],
                                model.n_out, what_y)
        return _dask.aligned(X, t)
    X = _validation.inputs(X, model.xp, model.device, model.dtype, model.n_in, what_x)
    t = _validation.targets(y, model.loss, model.xp, model.device, model.dtype, X.shape[0],
                            model.n_out, what_y)
    return X, t


def for_training(model: Model, arrays: Batch, batch_size: int, shuffle: bool | str,
                 strategy: str, merge_below: int = 0) -> InMemory | Streamed | DataParallel:
    """The ``Data`` for ``prepare``'s arrays (plus weights), chosen once."""
    lazy = streams(model, arrays[0])
    if shuffle == "cumulative" and lazy:
        raise ValueError("shuffle='cumulative' orders the rows of data in memory; Dask data "
                         "is shuffled a chunk at a time: use shuffle=True")
    if strategy == "data_parallel":
        if not lazy:
            raise ValueError("strategy='data_parallel' needs X as a Dask array (e.g. "
                             "dask.array.from_array(X, chunks=...)) and a model that is not "
                             f"on the dask backend; got {type(arrays[0]).__name__} and "
                             f"backend {model.backend!r}")
        return DataParallel(model, arrays, batch_size, shuffle)
    if lazy:
        return Streamed(model, arrays, batch_size, shuffle)
    return InMemory(model, arrays, batch_size, shuffle, merge_below)


def for_evaluation(model: Model, arrays: Batch, batch_size: int | None) -> InMemory | Streamed:
    """The ``Data`` for evaluating ``prepare``'s arrays, in order."""
    return (Streamed if streams(model, arrays[0]) else InMemory)(model, arrays, batch_size,
                                                                  False)
