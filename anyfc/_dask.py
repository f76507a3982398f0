"""Dask mechanics for data larger than memory: Dask arrays streamed to an in-memory model,
data-parallel steps over row-chunks on a Dask cluster, and lazy prediction. (Which of
them a ``fit`` uses is chosen once, in ``anyfc.training.data``.)

The batch gradient is a sum over samples, ``∂E/∂W = Σ_k x_kᵀ δ_k``, so it splits over
row-chunks and adds up exactly. Every chunk runs the same layer code as everywhere else;
only the arrays it sees are smaller.

- Streaming (``fit`` with Dask ``X``/``y`` and a NumPy/CuPy/... model): chunks are
  computed one at a time in shuffled order, rows shuffled within each chunk, and the
  next chunk is computed in a background thread while the current one trains. Memory
  holds about two chunks, whatever the size of the data.
- Data-parallel (``fit(..., strategy="data_parallel")``): each mini-batch is a row range
  of the Dask arrays; each of its chunks computes its summed gradients where it lives
  (on a worker under ``dask.distributed``), the sums are added in a tree, and the model
  applies one optimizer step. Parameters stay concrete and are sent once per step.
- ``predict`` of a Dask array returns a Dask array, one task per chunk, with the
  parameters sent to each worker once.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import _backend
from . import _metrics as metrics
from .state import split_path
from .training.protocol import Model

Array = Any


def namespace() -> Any:
    """The Array API namespace of Dask arrays (checks and casts stay lazy in it)."""
    return _backend.get_namespace("dask")


def aligned(X: Array, *others: Array) -> tuple[Array, ...]:
    """``X`` with its columns in one chunk, and each other array (targets, weights)
    chunked by the same rows."""
    X = X.rechunk({1: -1}) if X.ndim == 2 else X
    out = [X]
    for a in others:
        chunks = {0: X.chunks[0]}
        if a.ndim == 2:
            chunks[1] = -1
        out.append(a.rechunk(chunks))
    return tuple(out)


def _blocks(a: Array) -> list[Any]:
    """One delayed object per row-chunk."""
    return list(a.to_delayed().ravel())


# ---------------------------------------------------------------- streaming


def stream(arrays: tuple[Array, ...], model: Model, batch_size: int | None, shuffle: bool,
           rng: np.random.Generator) -> Iterator[tuple[Array, ...]]:
    """Mini-batches of ``arrays`` (``(X, t)`` or ``(X, t, w)``, checked by
    ``_validation`` and ``aligned``) on the model's backend and device, a chunk at a time,
    the next chunk computed in the background while this one trains. Integer labels stay
    integers; everything else takes the model's dtype."""
    import dask

    dask_xp = namespace()
    as_int = [dask_xp.isdtype(a.dtype, "integral") for a in arrays]
    blocks = [_blocks(a) for a in arrays]
    order = rng.permutation(len(blocks[0])) if shuffle else np.arange(len(blocks[0]))

    def load(k: int) -> tuple[Any, ...]:
        return tuple(dask.compute(*(b[k] for b in blocks)))

    xp = model.xp
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, int(order[0]))
        for i in range(len(order)):
            hosts = pending.result()
            if i + 1 < len(order):
                pending = pool.submit(load, int(order[i + 1]))
            chunk = [_backend.to_backend(h, xp, model.device, None if integral else model.dtype)
                     for h, integral in zip(hosts, as_int)]
            n = chunk[0].shape[0]
            step = n if batch_size is None else batch_size
            if shuffle:
                idx = _backend.from_host(rng.permutation(n), xp, model.device, None)
                chunk = [xp.take(a, idx, axis=0) for a in chunk]
            for start in range(0, n, step):
                stop = min(start + step, n)
                yield tuple(a[start:stop, ...] for a in chunk)


# ---------------------------------------------------------------- data-parallel


def row_batches(arrays: tuple[Array, ...], batch_size: int, shuffle: bool,
                rng: np.random.Generator) -> Iterator[tuple[Array, ...]]:
    """Row ranges of the Dask arrays (still lazy), in order or in shuffled order."""
    n = arrays[0].shape[0]
    starts = np.arange(0, n, batch_size)
    if shuffle:
        starts = rng.permutation(starts)
    for start in starts:
        stop = min(int(start) + batch_size, n)
        yield tuple(a[int(start):stop] for a in arrays)


def _shipped(model: Model) -> tuple[Any, Any]:
    """The model for the workers: a skeleton (the model's own layer, activation and loss
    objects, copied without arrays or optimizer, so your own classes travel as they are,
    by pickle on a cluster) and its parameters and buffers on the host by path, as one
    delayed object, so each worker receives them once."""
    import dask

    skeleton = copy.copy(model)
    skeleton.layers = [copy.copy(layer) for layer in model.layers]
    for layer in skeleton.layers:
        layer.place(model.backend, model.device, model.dtype)
        for name in (*layer.param_names, *(f"grad_{p}" for p in layer.param_names),
                     *layer.buffer_names, *layer.cache_names):
            setattr(layer, name, None)
    skeleton.optimizer = None
    arrays = {key: _backend.to_numpy(value)
              for key, value in model.state(rng=False).arrays().items()}
    return skeleton, dask.delayed(arrays, traverse=False)


def _model_for(skeleton: Model, arrays: dict[str, np.ndarray], x: Array) -> Model:
    """On a worker: the skeleton's own copy (tasks may share the object) on the chunk's
    library and device (a GPU for a CuPy chunk), holding the shipped arrays."""
    xp, device = _backend.namespace_of(x), _backend.device_of(x)
    dtype = _backend.dtype_name(skeleton.layers[0].dtype)
    model = copy.copy(skeleton)
    model.layers = [copy.copy(layer) for layer in skeleton.layers]
    for layer in model.layers:
        layer.place(xp, device, dtype)
    for key, value in arrays.items():
        position, name = split_path(key)
        setattr(model.layers[position], name,
                _backend.to_backend(value, xp, device, dtype, copy=True))
    return model


def _chunk_sums(skeleton: Model, arrays: dict[str, np.ndarray], measures: Any, x: Array,
                t: Array, w: Array | None = None) -> dict[str, Any]:
    """On a worker: the same layer code on one chunk. Returns summed (not averaged)
    gradients and the chunk's metric sums (``metrics.batch_sums``, on the host), so
    chunks add up to the batch's."""
    model = _model_for(skeleton, arrays, x)
    xp, n = model.xp, x.shape[0]
    kind = _backend.check_numeric(t, "y")
    target = t if kind != "real floating" else xp.astype(t, model.dtype)
    weight = None if w is None else xp.astype(w, model.dtype)
    y = model.forward(xp.astype(x, model.dtype))
    loss, grad_y = model.loss.value_and_gradient(y, target, weight)
    model.backward(grad_y)
    # the loss divides by its normalizer N (the rows, or their weights' sum): summed
    # gradients and loss are the chunk's times its N, and the batch's N is the chunks'
    norm = model.loss.normalizer(y, weight)
    grads = [getattr(layer, "grad_" + name) * norm for layer in model.layers
             for name in layer.param_names]
    sums = metrics.batch_sums(model.loss, xp, y, target, loss * n, measures)
    return {"grads": grads, "sums": metrics.to_host(sums),
            "weighted": metrics.to_host({"loss": loss * norm, "norm": norm})}


def _add(a: dict[str, Any], b: dict[str, Any], measures: Any) -> dict[str, Any]:
    return {"grads": [g + h for g, h in zip(a["grads"], b["grads"])],
            "sums": metrics.merge(a["sums"], b["sums"], measures),
            "weighted": {k: a["weighted"][k] + b["weighted"][k] for k in a["weighted"]}}


def check_parallel(model: Model) -> None:
    """Refuse (before anything changes) a model that chunks computed apart cannot train
    exactly: layers with running statistics or random masks."""
    coupled = [f"{i} ({type(layer).__name__})" for i, layer in enumerate(model.layers)
               if layer.buffer_names or layer.generator() is not None]
    if coupled:
        raise ValueError(
            f"strategy='data_parallel' needs layers whose batch gradient is a sum over rows; "
            f"layers {', '.join(coupled)} keep running statistics or draw random masks, which "
            "chunks computed apart would not share; stream the data instead (the default)")


def parallel_step(model: Model, optimizer: Any, batch: tuple[Array, ...],
                  measures: Any) -> dict[str, Any]:
    """One data-parallel step on the row range ``batch`` (``(x, t)`` or ``(x, t, w)``):
    per-chunk gradient sums, a tree reduction, one optimizer step. Returns the batch's
    metric sums (on the host)."""
    import dask

    skeleton, arrays = _shipped(model)
    parts = [dask.delayed(_chunk_sums)(skeleton, arrays, measures, *chunk)
             for chunk in zip(*(_blocks(a) for a in batch))]
    while len(parts) > 1:  # a tree, so no single task adds every chunk's gradients
        parts = [dask.delayed(_add)(parts[i], parts[i + 1], measures) if i + 1 < len(parts)
                 else parts[i] for i in range(0, len(parts), 2)]
    (total,) = dask.compute(parts[0])
    sums = dict(total["sums"])
    n, norm = sums["n"], float(total["weighted"]["norm"])
    grads = iter(total["grads"])
    for layer in model.layers:
        for name in layer.param_names:
            g = _backend.to_backend(next(grads) / norm, model.xp, model.device, model.dtype)
            setattr(layer, "grad_" + name, g)
    # the batch's loss over its N (the chunks' losses times their N); the layers'
    # penalties (Dense l2) on the summed gradients, with the weights before the update
    e = float(total["weighted"]["loss"]) / norm
    for layer in model.layers:
        term = layer.penalty(1.0 / norm)
        if term is not None:
            e += _backend.to_float(term)
    sums["loss"] = e * n
    optimizer.step(model.layers)
    return sums


# ---------------------------------------------------------------- inference


def _predict_chunk(skeleton: Model, arrays: dict[str, np.ndarray], x: Array) -> Array:
    model = _model_for(skeleton, arrays, x)
    return model.loss.output(model.xp, model.forward(model.xp.astype(x, model.dtype), False))


def predict_lazy(model: Model, X: Array) -> Array:
    """``model.predict`` over a Dask array, as a Dask array: one task per row-chunk."""
    import dask
    import dask.array as da

    X = X.rechunk({1: -1})
    skeleton, arrays = _shipped(model)
    dtype = np.dtype(_backend.dtype_name(model.dtype))
    parts = [da.from_delayed(dask.delayed(_predict_chunk)(skeleton, arrays, block),
                             shape=(rows, model.n_out), dtype=dtype)
             for block, rows in zip(_blocks(X), X.chunks[0])]
    return da.concatenate(parts, axis=0)
