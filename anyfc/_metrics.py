"""The metrics of an epoch or an evaluation, summed on the device batch by batch and read
once (the metrics themselves: ``anyfc.metrics``).

Each batch gives its *sums* (``batch_sums``): its row count ``n``, its summed loss
``E_b·n_b`` and each metric's own sums; sums of batches (or of Dask chunks) are
``merge``d; ``result`` reads them from the device once and turns them into the numbers a
user reads:

    loss = (1/n) Σ_batches E_b · n_b         (E_b: the batch's mean loss, weighted if given)

and each metric's ``result``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import array_api_compat.numpy as host_xp
import numpy as np

from . import _backend, losses
from .metrics import Function, Metric

Array = Any
Sums = dict[str, Any]


def kind(loss: Any, n_out: int) -> str:
    """What the loss's targets are, for the metrics that suit them: ``"multiclass"``
    (softmax cross-entropy), ``"binary"`` (one sigmoid output), ``"multilabel"`` (several)
    or ``"regression"``."""
    if not loss.classification:
        return "regression"
    if isinstance(loss, losses.BinaryCrossEntropy):
        return "binary" if n_out == 1 else "multilabel"
    return "multiclass"


def batch_sums(loss: Any, xp: ModuleType, y: Array, t: Array, loss_sum: Array,
               metrics: Sequence[Metric]) -> Sums:
    """The sums of one batch: network output ``y``, targets ``t`` as given to the loss,
    ``loss_sum`` = the batch's mean loss times its rows. Device arrays, no host read."""
    p = loss.output(xp, y)
    binary = isinstance(loss, losses.BinaryCrossEntropy)
    return {"n": int(y.shape[0]), "loss": loss_sum,
            "metrics": {m.name: m.batch(xp, p, t, binary) for m in metrics}}


def merge(a: Sums | None, b: Sums, metrics: Sequence[Metric]) -> Sums:
    """The sums of ``a``'s rows and ``b``'s together (works on device and host arrays)."""
    if a is None:
        return b
    return {"n": a["n"] + b["n"], "loss": a["loss"] + b["loss"],
            "metrics": {m.name: m.merge(a["metrics"][m.name], b["metrics"][m.name])
                        for m in metrics}}


def _leaves(tree: Any, out: list[Any]) -> None:
    if isinstance(tree, dict):
        for value in tree.values():
            _leaves(value, out)
    elif isinstance(tree, list):
        for value in tree:
            _leaves(value, out)
    elif _backend.is_array(tree):
        out.append(tree)


def _replace(tree: Any, values: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _replace(v, values) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_replace(v, values) for v in tree]
    return next(values) if _backend.is_array(tree) else tree


def materialize(sums: Sums) -> Sums:
    """Lazy (Dask) sums computed now, so an epoch's graph does not grow batch by batch
    (eager sums come back as they are)."""
    if not _backend.is_lazy(sums["loss"]):  # lazy sums are lazy all through (Dask)
        return sums
    leaves: list[Any] = []
    _leaves(sums, leaves)
    settled = _backend.materialize(leaves)
    if not leaves or settled[0] is leaves[0]:
        return sums
    return _replace(sums, iter(settled))


def to_host(sums: Sums) -> Sums:
    """The sums as NumPy float64 arrays (a Dask worker sends these back)."""
    leaves: list[Any] = []
    _leaves(sums, leaves)
    host = iter([np.asarray(_backend.to_numpy(v), dtype=np.float64) for v in leaves])
    out = _replace(sums, host)
    if "n" in sums:  # the row count stays a Python int
        out["n"] = sums["n"]
    return out


def result(sums: Sums, metrics: Sequence[Metric], xp: ModuleType) -> dict[str, float]:
    """``loss`` and each metric from the sums of all batches: your functions run on the
    device (``xp``), then the one host read."""
    sums = dict(sums, metrics=dict(sums["metrics"]))
    for m in metrics:
        if isinstance(m, Function):
            kept = sums["metrics"][m.name]
            sums["metrics"][m.name] = {"value": m.finish(_namespace(kept, xp), kept)}
    host = to_host(sums)
    out = {"loss": float(host["loss"]) / host["n"]}
    with np.errstate(all="ignore"):  # inf/inf is a NaN metric, not a warning
        for m in metrics:
            s = host["metrics"][m.name]
            out[m.name] = (float(s["value"]) if isinstance(m, Function)
                           else m.result(host_xp, s))
    return out


def _namespace(kept: Sums, xp: ModuleType) -> ModuleType:
    """The namespace of kept rows: the model's, or NumPy's for rows a Dask worker sent."""
    first = kept["p"][0]
    return _backend.namespace_of(first) if _backend.is_array(first) else xp
