"""Metrics of an epoch or an evaluation, summed on the device batch by batch and read once.

Each batch gives its *sums* (``batch_sums``); sums of batches (or of Dask chunks) are
``merge``d; ``result`` turns them into the numbers a user reads. Over ``n`` samples with
outputs ``y`` and targets ``t``:

    loss      = (1/n) Σ_batches E_b · n_b         (E_b: the batch's mean loss, weighted if given)
    accuracy  = correct predictions / predictions  (classification losses)
    mae       = (1/(n·c)) Σ |y - t|                (regression, c outputs)
    r2        = (1/c) Σ_j (1 - SS_res_j / SS_tot_j),  SS_res_j = Σ_k (y_kj - t_kj)²,
                SS_tot_j = Σ_k (t_kj - mean_j t)²   (scikit-learn's ``r2_score``: 1 for a
                perfect fit of a constant column, 0 for an imperfect one)

``SS_tot`` is accumulated with Chan et al.'s pairwise update of (count, mean, M2), never
as ``Σt² - (Σt)²/n``, which loses every digit in float32 when the mean is large.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import _backend, losses

Array = Any
Sums = dict[str, Any]


def batch_sums(loss: Any, xp: ModuleType, y: Array, t: Array, loss_sum: Array) -> Sums:
    """The sums of one batch: network output ``y``, targets ``t`` as given to the loss,
    ``loss_sum`` = the batch's mean loss times its rows. Device arrays, no host read."""
    sums: Sums = {"n": int(y.shape[0]), "loss": loss_sum}
    if loss.classification:
        sums["hits"] = loss.n_correct(xp, y, t)[0]
        return sums
    t = loss.targets(xp, t, y.shape[1], y.dtype)
    d = y - t
    mean = xp.mean(t, axis=0)
    c = t - mean
    sums.update({"abs": xp.sum(xp.abs(d)), "sq": xp.sum(d * d, axis=0), "mean": mean,
                 "m2": xp.sum(c * c, axis=0)})
    return sums


def merge(a: Sums | None, b: Sums) -> Sums:
    """The sums of ``a``'s rows and ``b``'s together (works on device and host arrays)."""
    if a is None:
        return b
    n = a["n"] + b["n"]
    out: Sums = {"n": n, "loss": a["loss"] + b["loss"]}
    for key in ("hits", "abs", "sq"):
        if key in a:
            out[key] = a[key] + b[key]
    if "mean" in a:
        delta = b["mean"] - a["mean"]
        out["mean"] = a["mean"] + delta * (b["n"] / n)
        out["m2"] = a["m2"] + b["m2"] + delta * delta * (a["n"] * b["n"] / n)
    return out


def materialize(sums: Sums) -> Sums:
    """Lazy (Dask) sums computed now, so an epoch's graph does not grow batch by batch."""
    keys = [k for k in sums if k != "n"]
    values = _backend.materialize([sums[k] for k in keys])
    return {"n": sums["n"], **dict(zip(keys, values))}


def to_host(sums: Sums) -> Sums:
    """The sums as NumPy float64 values (a Dask worker sends these back)."""
    return {k: v if k == "n" else np.asarray(_backend.to_numpy(v), dtype=np.float64)
            if _backend.is_array(v) else np.float64(v) for k, v in sums.items()}


def names(loss: Any) -> list[str]:
    """The metrics ``result`` reports for ``loss``, in order."""
    return ["loss", "accuracy"] if loss.classification else ["loss", "mae", "r2"]


def result(sums: Sums, loss: Any, n_out: int) -> dict[str, float]:
    """The metrics (``names(loss)``) from the sums of all batches: the one host read."""
    host = to_host(sums)
    n = host["n"]
    out = {"loss": float(host["loss"]) / n}
    if loss.classification:
        per_row = n_out if isinstance(loss, losses.BinaryCrossEntropy) else 1
        out["accuracy"] = float(host["hits"]) / (n * per_row)
        return out
    sq, m2 = np.atleast_1d(host["sq"]), np.atleast_1d(host["m2"])
    out["mae"] = float(host["abs"]) / (n * sq.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(m2 > 0, 1.0 - sq / np.where(m2 > 0, m2, 1.0),
                      np.where(sq == 0, 1.0, 0.0))
    out["r2"] = float(np.mean(r2))
    return out
