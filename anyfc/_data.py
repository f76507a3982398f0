"""Data larger than memory: Dask arrays streamed to an in-memory model, data-parallel
steps over row-chunks on a Dask cluster, and lazy prediction.

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

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _backend

if TYPE_CHECKING:
    from .model import Sequential

Array = Any


def namespace() -> Any:
    """The Array API namespace of Dask arrays (checks and casts stay lazy in it)."""
    return _backend.get_namespace("dask")


def aligned(X: Array, t: Array) -> tuple[Array, Array]:
    """``X`` with its columns in one chunk and ``t`` chunked by the same rows."""
    X = X.rechunk({1: -1}) if X.ndim == 2 else X
    chunks = {0: X.chunks[0]}
    if t.ndim == 2:
        chunks[1] = -1
    return X, t.rechunk(chunks)


def _blocks(a: Array) -> list[Any]:
    """One delayed object per row-chunk."""
    return list(a.to_delayed().ravel())


# ---------------------------------------------------------------- streaming


def stream(X: Array, t: Array, model: Sequential, batch_size: int | None, shuffle: bool,
           rng: np.random.Generator) -> Iterator[tuple[Array, Array]]:
    """Mini-batches of ``(X, t)`` (checked by ``_validation``) on the model's backend and
    device, a chunk at a time, the next chunk computed in the background while this one
    trains. Integer labels stay integers; other targets take the model's dtype."""
    import dask

    labels_as_int = namespace().isdtype(t.dtype, "integral")
    x_blocks, t_blocks = _blocks(X), _blocks(t)
    order = rng.permutation(len(x_blocks)) if shuffle else np.arange(len(x_blocks))

    def load(k: int) -> tuple[Any, Any]:
        return dask.compute(x_blocks[k], t_blocks[k])

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, int(order[0]))
        for i in range(len(order)):
            x_host, t_host = pending.result()
            if i + 1 < len(order):
                pending = pool.submit(load, int(order[i + 1]))
            xc = _backend.to_backend(x_host, model.xp, model.device, model.dtype)
            tc = _backend.to_backend(t_host, model.xp, model.device,
                                     None if labels_as_int else model.dtype)
            n = xc.shape[0]
            step = n if batch_size is None else batch_size
            if shuffle:
                idx = _backend.from_host(rng.permutation(n), model.xp, model.device, None)
                xc, tc = model.xp.take(xc, idx, axis=0), model.xp.take(tc, idx, axis=0)
            for start in range(0, n, step):
                stop = min(start + step, n)
                yield xc[start:stop, ...], tc[start:stop, ...]


# ---------------------------------------------------------------- data-parallel


def row_batches(X: Array, t: Array, batch_size: int, shuffle: bool,
                rng: np.random.Generator) -> Iterator[tuple[Array, Array]]:
    """Row ranges of the Dask arrays (still lazy), in order or in shuffled order."""
    n = X.shape[0]
    starts = np.arange(0, n, batch_size)
    if shuffle:
        starts = rng.permutation(starts)
    for start in starts:
        stop = min(int(start) + batch_size, n)
        yield X[int(start):stop], t[int(start):stop]


def _shipped(model: Sequential) -> tuple[dict[str, Any], Any]:
    """The model as plain data for the workers: its architecture, and its parameters on
    the host as one delayed object, so each worker receives them once."""
    import dask

    params = [_backend.to_numpy(p) for p in model._arrays()]
    return model.architecture(), dask.delayed(params, traverse=False)


def _model_for(arch: dict[str, Any], params: list[np.ndarray], x: Array) -> Sequential:
    """On a worker: the model rebuilt on the chunk's own library and device (a GPU for
    a CuPy chunk)."""
    from .model import Sequential

    return Sequential.from_architecture(arch, params, _backend.namespace_of(x),
                                        _backend.device_of(x))


def _chunk_sums(arch: dict[str, Any], params: list[np.ndarray], x: Array,
                t: Array) -> dict[str, Any]:
    """On a worker: the same layer code on one chunk. Returns summed (not averaged)
    gradients, loss and hits, so chunks add up to the batch's."""
    model = _model_for(arch, params, x)
    xp, n = model.xp, x.shape[0]
    kind = _backend.check_numeric(t, "y")
    target = t if kind != "real floating" else xp.astype(t, model.dtype)
    y = model.forward(xp.astype(x, model.dtype))
    loss = model.loss.forward(y, target)
    model.backward(model.loss.backward())
    grads = [getattr(layer, "grad_" + name) * n for layer in model.layers
             for name in layer.param_names]
    hits = _backend.to_float(model.loss.n_correct(xp, y, target)[0]) if (
        model.loss.classification) else 0.0
    return {"grads": grads, "loss": _backend.to_float(loss) * n, "hits": hits, "n": n}


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"grads": [g + h for g, h in zip(a["grads"], b["grads"])],
            "loss": a["loss"] + b["loss"], "hits": a["hits"] + b["hits"], "n": a["n"] + b["n"]}


def check_parallel(model: Sequential) -> None:
    """Refuse (before anything changes) a model that chunks computed apart cannot train
    exactly: layers with running statistics or random masks."""
    coupled = [f"{i} ({type(layer).__name__})" for i, layer in enumerate(model.layers)
               if layer.buffer_names or hasattr(layer, "_generator")]
    if coupled:
        raise ValueError(
            f"strategy='data_parallel' needs layers whose batch gradient is a sum over rows; "
            f"layers {', '.join(coupled)} keep running statistics or draw random masks, which "
            "chunks computed apart would not share; stream the data instead (the default)")


def parallel_step(model: Sequential, optimizer: Any, xb: Array, tb: Array) -> tuple[float, float]:
    """One data-parallel step on the row range ``(xb, tb)``: per-chunk gradient sums,
    a tree reduction, one optimizer step. Returns (summed loss, hits) of the batch."""
    import dask

    arch, params = _shipped(model)
    parts = [dask.delayed(_chunk_sums)(arch, params, xc, tc)
             for xc, tc in zip(_blocks(xb), _blocks(tb))]
    while len(parts) > 1:  # a tree, so no single task adds every chunk's gradients
        parts = [dask.delayed(_add)(parts[i], parts[i + 1]) if i + 1 < len(parts)
                 else parts[i] for i in range(0, len(parts), 2)]
    (total,) = dask.compute(parts[0])
    grads = iter(total["grads"])
    for layer in model.layers:
        for name in layer.param_names:
            g = _backend.to_backend(next(grads) / total["n"], model.xp, model.device,
                                    model.dtype)
            setattr(layer, "grad_" + name, g)
    optimizer.step(model.layers)
    return total["loss"], total["hits"]


# ---------------------------------------------------------------- inference


def _predict_chunk(arch: dict[str, Any], params: list[np.ndarray], x: Array) -> Array:
    model = _model_for(arch, params, x)
    return model.loss.output(model.xp, model.forward(model.xp.astype(x, model.dtype), False))


def predict_lazy(model: Sequential, X: Array) -> Array:
    """``model.predict`` over a Dask array, as a Dask array: one task per row-chunk."""
    import dask
    import dask.array as da

    X = X.rechunk({1: -1})
    arch, params = _shipped(model)
    dtype = np.dtype(_backend.dtype_name(model.dtype))
    parts = [da.from_delayed(dask.delayed(_predict_chunk)(arch, params, block),
                             shape=(rows, model.n_out), dtype=dtype)
             for block, rows in zip(_blocks(X), X.chunks[0])]
    return da.concatenate(parts, axis=0)
