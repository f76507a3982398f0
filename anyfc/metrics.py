"""Metrics for ``fit(metrics=...)`` and ``evaluate(metrics=...)``, written once against the
Array API and computed on the device, batch by batch, then read once.

A metric turns one batch's predictions ``p`` (what ``predict`` returns: probabilities for
the classification losses, the output for regression) and targets ``t`` into *sums*
(``batch``), which add up over batches and Dask chunks exactly (``merge``), and turns the
total into its value (``result``, on the host after the epoch's one read: its ``xp`` is
then the host's namespace). Over ``n`` rows::

    accuracy        = Σ [argmax p_k = t_k] / n         (binary: Σ_kj [p_kj > ½] = t_kj / (n·c))
    top_k_accuracy  = Σ [t_k among the k largest p_k] / n
    precision       = TP / (TP + FP),  recall = TP / (TP + FN),  f1 = 2·TP / (2·TP + FP + FN)
                      (one output: of class 1; several: each class or label, then their mean,
                      scikit-learn's ``average="macro"``; 0 where undefined)
    roc_auc         = P(score of a positive > score of a negative), ties counting ½
                      (one binary output; the scores are kept, exact over all batches)
    mae = Σ|p - t| / (n·c),  mse = Σ(p - t)² / (n·c),  rmse = (1/c) Σ_j √(Σ_k (p_kj - t_kj)² / n)
    r2              = (1/c) Σ_j (1 - SS_res_j / SS_tot_j)   (scikit-learn's ``r2_score``)

Your own metric is a function ``f(y_true, y_pred) -> 0-d array`` written against the
arrays' namespace (``y_true``: labels for softmax cross-entropy, targets otherwise;
``y_pred``: ``predict``'s output); anyfc keeps the epoch's rows and calls it once, so it
is exact, not an average of batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

Array = Any
Sums = dict[str, Any]


class Metric:
    """Base class of the metrics: ``batch`` gives additive sums, ``result`` the value.

    A subclass sets ``name`` (its key in the logs), ``higher_is_better`` (what
    ``mode="auto"`` of the callbacks follows) and ``kinds`` (the losses it suits:
    ``"classification"``, ``"multiclass"``, ``"binary"``, ``"regression"``).
    """

    name = "metric"
    higher_is_better = True
    kinds: tuple[str, ...] = ("classification", "regression")

    def batch(self, xp: ModuleType, p: Array, t: Array, binary: bool) -> Sums:
        """Compute one batch's sums, on the device.

        Parameters
        ----------
        xp : module
            The Array API namespace of the arrays.
        p : array
            The batch's predictions, what ``predict`` returns (probabilities for the
            classification losses, the output for regression).
        t : array
            The batch's targets (labels or one-hot rows for softmax cross-entropy).
        binary : bool
            Whether the outputs are sigmoids (binary or multi-label), not a softmax.

        Returns
        -------
        dict
            Sums (device arrays, or numbers) that ``merge`` adds up exactly.
        """
        raise NotImplementedError

    def merge(self, a: Sums, b: Sums) -> Sums:
        """Add up two batches' sums (or Dask chunks').

        Parameters
        ----------
        a, b : dict
            What ``batch`` (or ``merge``) returned.

        Returns
        -------
        dict
            The sums of both.
        """
        return {k: a[k] + b[k] for k in a}

    def result(self, xp: ModuleType, s: Sums) -> float:
        """Turn the epoch's total into the metric's value.

        Parameters
        ----------
        xp : module
            The namespace of the sums: the host's, after the epoch's one read.
        s : dict
            The merged sums of the epoch.

        Returns
        -------
        float
            The value.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _labels(xp: ModuleType, t: Array) -> Array:
    """Class labels from labels or one-hot rows."""
    return t if t.ndim == 1 else xp.argmax(t, axis=1)


def _as_float(xp: ModuleType, mask: Array, like: Array) -> Array:
    return xp.astype(mask, like.dtype)


def _column(xp: ModuleType, t: Array, p: Array) -> Array:
    """Targets shaped like ``p`` (a single output's (h,) targets as (h, 1))."""
    t = xp.reshape(t, (-1, 1)) if t.ndim == 1 and p.ndim == 2 else t
    return xp.astype(t, p.dtype) if t.dtype != p.dtype else t


class Accuracy(Metric):
    """The share of correct predictions: ``Σ [argmax p_k = t_k] / n``.

    For sigmoid outputs, the share of entries on the right side of ½,
    ``Σ_kj [p_kj > ½] = t_kj / (n·c)``.
    """

    name = "accuracy"
    kinds = ("classification",)

    def batch(self, xp: ModuleType, p: Array, t: Array, binary: bool) -> Sums:
        if binary:
            t = _column(xp, t, p)
            hits = (p > 0.5) == (t > 0.5)
            return {"hits": xp.sum(_as_float(xp, hits, p)),
                    "count": float(p.shape[0] * p.shape[1])}
        hits = xp.argmax(p, axis=1) == _labels(xp, t)
        return {"hits": xp.sum(_as_float(xp, hits, p)),
                "count": float(p.shape[0])}

    def result(self, xp: ModuleType, s: Sums) -> float:
        return float(s["hits"] / s["count"])


class TopKAccuracy(Metric):
    """The share of rows whose true class is among the ``k`` most probable.

    For softmax cross-entropy.

    Parameters
    ----------
    k : int, default 5
        How many of the most probable classes count (``"top_3_accuracy"`` for 3).
    """

    kinds = ("multiclass",)

    def __init__(self, k: int = 5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"top_k_accuracy needs a positive integer k, got {k!r}")
        self.k = k
        self.name = "top_k_accuracy" if k == 5 else f"top_{k}_accuracy"

    def batch(self, xp: ModuleType, p: Array, t: Array, binary: bool) -> Sums:
        labels = xp.reshape(_labels(xp, t), (-1, 1))
        classes = xp.reshape(xp.arange(p.shape[1], device=_device(p)), (1, -1))
        true_p = xp.sum(p * _as_float(xp, classes == labels, p), axis=1, keepdims=True)
        above = xp.sum(_as_float(xp, p > true_p, p), axis=1)  # classes ranked above it
        return {"hits": xp.sum(_as_float(xp, above < self.k, p)),
                "count": float(p.shape[0])}

    def result(self, xp: ModuleType, s: Sums) -> float:
        return float(s["hits"] / s["count"])

    def __repr__(self) -> str:
        return f"TopKAccuracy(k={self.k})"


def _device(a: Array) -> Any:
    return getattr(a, "device", None)


class _Counts(Metric):
    """True and false positives and false negatives per class (or per output)."""

    kinds = ("classification",)

    def batch(self, xp: ModuleType, p: Array, t: Array, binary: bool) -> Sums:
        if binary:
            predicted, actual = p > 0.5, _column(xp, t, p) > 0.5
        else:
            classes = xp.reshape(xp.arange(p.shape[1], device=_device(p)), (1, -1))
            predicted = xp.reshape(xp.argmax(p, axis=1), (-1, 1)) == classes
            actual = xp.reshape(_labels(xp, t), (-1, 1)) == classes
        one = _as_float(xp, predicted & actual, p)
        return {"tp": xp.sum(one, axis=0),
                "fp": xp.sum(_as_float(xp, predicted & ~actual, p), axis=0),
                "fn": xp.sum(_as_float(xp, ~predicted & actual, p), axis=0)}

    @staticmethod
    def _ratio(xp: ModuleType, num: Array, den: Array) -> float:
        """The mean over classes of num/den, 0 where den is 0 (scikit-learn's
        ``zero_division=0``)."""
        return float(xp.mean(xp.where(den > 0, num / xp.where(den > 0, den, 1.0), 0.0)))


class Precision(_Counts):
    """``TP / (TP + FP)``: one output, of class 1; several, the mean over classes."""

    name = "precision"

    def result(self, xp: ModuleType, s: Sums) -> float:
        return self._ratio(xp, s["tp"], s["tp"] + s["fp"])


class Recall(_Counts):
    """``TP / (TP + FN)``: one output, of class 1; several, the mean over classes."""

    name = "recall"

    def result(self, xp: ModuleType, s: Sums) -> float:
        return self._ratio(xp, s["tp"], s["tp"] + s["fn"])


class F1(_Counts):
    """``2·TP / (2·TP + FP + FN)``: one output, of class 1; several, the mean over classes."""

    name = "f1"

    def result(self, xp: ModuleType, s: Sums) -> float:
        return self._ratio(xp, 2 * s["tp"], 2 * s["tp"] + s["fp"] + s["fn"])


class _Kept(Metric):
    """Keeps the epoch's predictions and targets (on the device) for one exact result."""

    def batch(self, xp: ModuleType, p: Array, t: Array, binary: bool) -> Sums:
        return {"p": [p], "t": [t]}

    def merge(self, a: Sums, b: Sums) -> Sums:
        return {"p": a["p"] + b["p"], "t": a["t"] + b["t"]}


class RocAuc(_Kept):
    """Area under the ROC curve of a single binary output (Mann–Whitney, ties ½)."""

    name = "roc_auc"
    kinds = ("binary",)

    def result(self, xp: ModuleType, s: Sums) -> float:
        scores = xp.concat([xp.reshape(p, (-1,)) for p in s["p"]])
        positive = xp.concat([xp.reshape(t, (-1,)) for t in s["t"]]) > 0.5
        n_pos = int(xp.sum(xp.astype(positive, xp.int64)))
        n_neg = int(scores.shape[0]) - n_pos
        if n_pos == 0 or n_neg == 0:
            return math.nan  # undefined with one class only (scikit-learn raises)
        order = xp.argsort(scores, stable=True)
        ranked = [float(v) for v in xp.take(scores, order)]
        ranks = [0.0] * len(ranked)  # ties share the mean of their ranks (1-based)
        start = 0
        for end in range(1, len(ranked) + 1):
            if end == len(ranked) or ranked[end] != ranked[start]:
                for i in range(start, end):
                    ranks[i] = (start + end + 1) / 2.0
                start = end
        rank_of = xp.asarray(ranks, dtype=xp.float64)
        is_pos = xp.astype(xp.take(positive, order), xp.float64)
        u = float(xp.sum(rank_of * is_pos)) - n_pos * (n_pos + 1) / 2
        return u / (n_pos * n_neg)


class _Errors(Metric):
    """Sums of absolute and squared errors per output, and Chan's (mean, M2) of targets."""

    kinds = ("regression",)
    higher_is_better = False

    def batch(self, xp: ModuleType, p: Array, t: Array, binary: bool) -> Sums:
        t = _column(xp, t, p)
        d = p - t
        mean = xp.mean(t, axis=0)
        c = t - mean
        return {"n": float(p.shape[0]),
                "abs": xp.sum(xp.abs(d), axis=0), "sq": xp.sum(d * d, axis=0),
                "mean": mean, "m2": xp.sum(c * c, axis=0)}

    def merge(self, a: Sums, b: Sums) -> Sums:
        n = a["n"] + b["n"]
        delta = b["mean"] - a["mean"]
        return {"n": n, "abs": a["abs"] + b["abs"], "sq": a["sq"] + b["sq"],
                "mean": a["mean"] + delta * (b["n"] / n),
                "m2": a["m2"] + b["m2"] + delta * delta * (a["n"] * b["n"] / n)}


class MAE(_Errors):
    """The mean absolute error, ``Σ|p - t| / (n·c)``."""

    name = "mae"

    def result(self, xp: ModuleType, s: Sums) -> float:
        return float(xp.mean(s["abs"] / s["n"]))


class MSE(_Errors):
    """The mean squared error, ``Σ(p - t)² / (n·c)``."""

    name = "mse"

    def result(self, xp: ModuleType, s: Sums) -> float:
        return float(xp.mean(s["sq"] / s["n"]))


class RMSE(_Errors):
    """The root mean squared error per output, averaged: ``(1/c) Σ_j √(Σ_k (p_kj - t_kj)² / n)``."""

    name = "rmse"

    def result(self, xp: ModuleType, s: Sums) -> float:
        return float(xp.mean(xp.sqrt(s["sq"] / s["n"])))


class R2(_Errors):
    """R² per output, averaged: ``(1/c) Σ_j (1 - SS_res_j / SS_tot_j)``, as ``r2_score``.

    A constant target column counts 1 when fitted exactly, else 0 (scikit-learn's
    rule).
    """

    name = "r2"
    higher_is_better = True

    def result(self, xp: ModuleType, s: Sums) -> float:
        sq, m2 = s["sq"], s["m2"]  # 1 for a perfect fit of a constant column, else 0
        r2 = xp.where(m2 > 0, 1.0 - sq / xp.where(m2 > 0, m2, 1.0),
                      xp.where(sq == 0, 1.0, 0.0))
        return float(xp.mean(r2))


class Function(_Kept):
    """Your function ``f(y_true, y_pred) -> 0-d array``, called once on the epoch's rows.

    Parameters
    ----------
    fn : callable
        ``fn(y_true, y_pred) -> 0-d array``, written against the arrays' namespace
        (``y_true``: labels for softmax cross-entropy, targets otherwise; ``y_pred``:
        ``predict``'s output).
    name : str, optional
        Its name in the logs (default: the function's ``__name__``); a name ending in
        ``error`` or ``loss`` is minimised by the callbacks' ``mode="auto"``.
    """

    def __init__(self, fn: Callable[[Array, Array], Any], name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"a metric must be a name or a function (y_true, y_pred), got "
                            f"{fn!r}")
        self.fn = fn
        self.name = str(name or getattr(fn, "__name__", "metric"))
        self.higher_is_better = not self.name.endswith(("error", "loss"))

    def finish(self, xp: ModuleType, s: Sums) -> Any:
        """Call the function on all rows, on the device (before the epoch's one host read).

        Parameters
        ----------
        xp : module
            The Array API namespace of the kept rows.
        s : dict
            The merged sums: the epoch's predictions and targets.

        Returns
        -------
        array
            The function's result, a 0-d array.
        """
        t = xp.concat(s["t"], axis=0) if len(s["t"]) > 1 else s["t"][0]
        p = xp.concat(s["p"], axis=0) if len(s["p"]) > 1 else s["p"][0]
        return self.fn(t, p)

    def __repr__(self) -> str:
        return f"Function({self.name})"


#: anyfc's metrics by name: the names ``fit(metrics=...)`` and ``get`` take (and
#: ``"top_<k>_accuracy"``).
BUILT_IN: dict[str, Callable[[], Metric]] = {
    "accuracy": Accuracy, "acc": Accuracy, "top_k_accuracy": TopKAccuracy,
    "precision": Precision, "recall": Recall, "f1": F1, "roc_auc": RocAuc, "auc": RocAuc,
    "mae": MAE, "mean_absolute_error": MAE, "mse": MSE, "mean_squared_error": MSE,
    "rmse": RMSE, "r2": R2,
}


def get(metric: str | Metric | Callable[[Array, Array], Any]) -> Metric:
    """Build a metric from a name, itself, or a function of ``(y_true, y_pred)``.

    Parameters
    ----------
    metric : str, Metric or callable
        A name in ``BUILT_IN`` or ``"top_<k>_accuracy"``, a metric, or a function
        ``f(y_true, y_pred) -> 0-d array``.

    Returns
    -------
    Metric
        The metric (a ``Function`` for a function).

    Raises
    ------
    ValueError
        An unknown name, listing the valid ones.

    Examples
    --------
    >>> get("top_3_accuracy")
    TopKAccuracy(k=3)
    """
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        found = BUILT_IN.get(metric.lower())
        if found is None and metric.lower().startswith("top_") and metric.endswith("_accuracy"):
            k = metric[4:-9]
            if k.isdigit():
                return TopKAccuracy(int(k))
        if found is None:
            raise ValueError(f"unknown metric {metric!r}; valid metrics are "
                             f"{', '.join(BUILT_IN)}, 'top_<k>_accuracy', or a function "
                             "(y_true, y_pred) -> 0-d array")
        return found()
    return Function(metric)


def default(classification: bool) -> list[Metric]:
    """Return what ``fit`` and ``evaluate`` report when not told.

    Parameters
    ----------
    classification : bool
        Whether the loss is a classification loss.

    Returns
    -------
    list of Metric
        Accuracy, or MAE and R².
    """
    return [Accuracy()] if classification else [MAE(), R2()]


def resolve(metrics: Sequence[Any] | None, kind: str) -> list[Metric]:
    """Return the metric objects for ``metrics``, each checked to suit the loss.

    Parameters
    ----------
    metrics : sequence, str, Metric, callable or None
        What ``fit(metrics=...)`` was given (``None``: the defaults).
    kind : str
        The loss's kind: ``"multiclass"``, ``"binary"`` for one sigmoid output,
        ``"multilabel"``, ``"regression"``.

    Returns
    -------
    list of Metric
        The metrics, with distinct names.

    Raises
    ------
    ValueError
        A metric that does not suit the loss, names twice or ``"loss"``.
    TypeError
        Not a list of names or functions.
    """
    if metrics is None:
        return default(kind != "regression")
    if isinstance(metrics, (str, Metric)) or callable(metrics):
        metrics = [metrics]
    if not isinstance(metrics, (list, tuple)):
        raise TypeError(f"metrics must be a list of names or functions, got {metrics!r:.80}")
    out = [get(m) for m in metrics]
    family = "regression" if kind == "regression" else "classification"
    for m in out:
        if m.kinds and not ({kind, family} & set(m.kinds)):
            raise ValueError(f"metric {m.name!r} does not suit this model's loss ({kind}); "
                             f"it is for {' or '.join(m.kinds)} models")
    names = [m.name for m in out]
    twice = sorted({n for n in names if names.count(n) > 1} | ({"loss"} & set(names)))
    if twice:
        raise ValueError(f"metric names must be distinct and not 'loss': {twice}")
    return out
