"""Full-batch L-BFGS: the quasi-Newton solver scikit-learn's MLP calls through SciPy
(``solver="lbfgs"``), written against the arrays' namespace ``xp``, so it runs where the
model lives, on every backend.

The parameters are a list of arrays ``x`` (the model's, by path); vectors never leave
the device, and each iteration reads a few numbers on the host (the loss, ``g·d``, a
norm). For an unconstrained problem this is SciPy's L-BFGS-B (Byrd, Lu, Nocedal & Zhu),
step for step:

- the direction ``d = -H·g``: the two-loop recursion over the last ``m`` pairs
  ``s = x_{k+1} - x_k``, ``y = g_{k+1} - g_k`` with ``H₀ = (sᵀy / yᵀy)·I`` (``d = -g``
  with no pair yet); a pair with ``sᵀy ≤ ε·(-gᵀd)·stp`` is skipped;
- the step ``x ← x + stp·d`` from Moré & Thuente's line search (MINPACK-2's ``dcsrch``:
  sufficient decrease ``ftol=1e-3``, curvature ``gtol=0.9``, ``xtol=0.1``), starting
  at ``stp = 1/‖d‖`` on the first iteration and 1 after; at most ``max_ls`` evaluations;
  a line search that fails restarts from ``d = -g`` (or stops, when that was one);
- it stops after ``max_iter`` iterations, or past ``max_fun`` evaluations, or when
  ``max|g| ≤ gtol``, or when the loss fell by at most ``ftol·max(|f_k|, |f_{k+1}|, 1)``.

``fit(model, X, y)`` minimises a ``Sequential``'s training loss over all of ``(X, y)``
as one batch — the loss with its weights and the layers' penalties (``Dense(l2=...)``),
exactly what a training step computes (``anyfc.training.step.gradients``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _backend, _validation
from .state import ModelState, split_path
from .training import data as _data
from .training import loop, step
from .training.protocol import Model

Array = Any
Vector = list[Array]
EPS = 2.220446049250313e-16  # float64's machine epsilon, as L-BFGS-B's tests use it

__all__ = ["Result", "fit", "minimize"]


@dataclass
class Result:
    """What a minimisation did.

    Parameters
    ----------
    loss : float
        The final loss.
    n_iter : int
        Iterations run.
    n_fun : int
        Loss evaluations.
    converged : bool
        Whether it converged (else it hit a limit or the line search failed).
    message : str
        SciPy's message for why it stopped.
    """

    loss: float
    n_iter: int
    n_fun: int
    converged: bool
    message: str


def _dot(a: Vector, b: Vector) -> Array:
    total = None
    for u, v in zip(a, b):
        term = _backend.namespace_of(u).sum(u * v)
        total = term if total is None else total + term
    return total


def _axpy(alpha: Any, x: Vector, y: Vector) -> Vector:
    """``y + alpha·x``, new arrays (materialized where arrays are lazy)."""
    return _backend.materialize([v + alpha * u for u, v in zip(x, y)])


def minimize(fun: Callable[[Vector], tuple[float, Vector]], x0: Vector, *, m: int = 10,
             max_iter: int = 15000, max_fun: int = 15000, gtol: float = 1e-5,
             ftol: float = 2.220446049250313e-09, max_ls: int = 20,
             verbose: int = 0) -> tuple[Vector, Result]:
    """Minimise ``fun`` from ``x0`` with L-BFGS (the module docstring gives the method).

    The defaults are SciPy's ``minimize(method="L-BFGS-B")``'s.

    Parameters
    ----------
    fun : callable
        ``x -> (f, ∇f)``: the loss (a float) and its gradient (a list of arrays shaped
        like ``x``), ``x`` a list of arrays.
    x0 : list of array
        The starting point.
    m : int, default 10
        The pairs ``(s, y)`` kept.
    max_iter : int, default 15000
        Iterations at most.
    max_fun : int, default 15000
        Evaluations at most.
    gtol : float, default 1e-5
        Stop when the gradient's largest entry is at most this.
    ftol : float, default 2.220446049250313e-09
        Stop when the loss fell by at most ``ftol·max(|f_k|, |f_{k+1}|, 1)``.
    max_ls : int, default 20
        Evaluations per line search at most.
    verbose : int, default 0
        Print each iteration's loss.

    Returns
    -------
    tuple
        ``(x, Result)``: the best point found, and what happened.
    """
    x = list(x0)
    f, g = fun(x)
    n_fun, n_iter = 1, 0
    pairs: list[tuple[Vector, Vector, float]] = []  # (s, y, 1/sᵀy), oldest first
    gamma = 1.0  # H₀ = γ·I, γ = sᵀy / yᵀy of the newest pair
    if _max_abs(g) <= gtol:
        return x, Result(f, 0, n_fun, True, "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL")
    while True:
        d = _direction(g, pairs, gamma)
        gd = _backend.to_float(_dot(g, d))
        if not gd < 0:  # not a descent direction: forget the pairs, or stop
            if pairs:
                pairs, gamma = [], 1.0
                continue
            return x, Result(f, n_iter, n_fun, False, "ABNORMAL_TERMINATION_IN_LNSRCH")
        norm = math.sqrt(_backend.to_float(_dot(d, d)))
        stp = min(1.0 / norm, 1e10) if n_iter == 0 else 1.0
        search = _LineSearch(f, gd, stpmax=1e10)
        task, evals = search.start(stp), 0
        f_new, g_new, gd_new, x_new = f, g, gd, x
        while task == "FG" and evals < max_ls:
            x_new = _axpy(search.stp, d, x)
            f_new, g_new = fun(x_new)
            n_fun, evals = n_fun + 1, evals + 1
            gd_new = _backend.to_float(_dot(g_new, d))
            if not (math.isfinite(f_new) and math.isfinite(gd_new)):
                task = "FAILED"
                break
            task = search.step(f_new, gd_new)
        if task not in ("CONVERGENCE", "WARNING"):  # no step found: x stays
            if pairs:
                pairs, gamma = [], 1.0
                continue
            return x, Result(f, n_iter, n_fun, False, "ABNORMAL_TERMINATION_IN_LNSRCH")
        stp, f_old, gd_old = search.stp, f, gd
        x, f, g_old, g = x_new, f_new, g, g_new
        n_iter += 1
        if verbose:
            print(f"Iteration {n_iter}, loss = {f:.8f}")
        if n_iter >= max_iter:
            return x, Result(f, n_iter, n_fun, False,
                             "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT")
        if n_fun > max_fun:
            return x, Result(f, n_iter, n_fun, False,
                             "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT")
        if _max_abs(g) <= gtol:
            return x, Result(f, n_iter, n_fun, True,
                             "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL")
        if f_old - f <= ftol * max(abs(f_old), abs(f), 1.0):
            return x, Result(f, n_iter, n_fun, True,
                             "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH")
        y = [b - a for a, b in zip(g_old, g)]
        sy = (gd_new - gd_old) * stp  # sᵀy, as L-BFGS-B computes it
        if sy > EPS * (-gd_old * stp):
            s = [stp * u for u in d]
            pairs = [*pairs[-(m - 1):], (s, y, 1.0 / sy)] if m > 1 else [(s, y, 1.0 / sy)]
            gamma = sy / _backend.to_float(_dot(y, y))


def _max_abs(g: Vector) -> float:
    xp = _backend.namespace_of(g[0])
    return max(_backend.to_float(xp.max(xp.abs(v))) for v in g)


def _direction(g: Vector, pairs: list[tuple[Vector, Vector, float]], gamma: float) -> Vector:
    """``-H·g`` by the two-loop recursion (on the device: no host read)."""
    q = list(g)
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * _dot(s, q)
        alphas.append(a)
        q = [v - a * u for u, v in zip(y, q)]
    r = [gamma * v for v in q]
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * _dot(y, r)
        r = [v + (a - b) * u for u, v in zip(s, r)]
    return _backend.materialize([-v for v in r])


class _LineSearch:
    """Moré & Thuente's line search (MINPACK-2 ``dcsrch``, as L-BFGS-B calls it) on
    ``φ(stp) = f(x + stp·d)``: ``start(stp)``, then ``step(φ, φ')`` for each trial,
    until it answers ``"CONVERGENCE"`` or ``"WARNING"`` (accept ``stp``), not ``"FG"``
    (evaluate at ``stp``)."""

    ftol, gtol, xtol = 1e-3, 0.9, 0.1

    def __init__(self, f0: float, g0: float, stpmax: float) -> None:
        self.finit, self.ginit, self.stpmin, self.stpmax = f0, g0, 0.0, stpmax
        self.gtest = self.ftol * g0
        self.width = stpmax
        self.width1 = 2.0 * stpmax
        self.brackt, self.stage = False, 1
        self.stx = self.sty = 0.0
        self.fx = self.fy = f0
        self.gx = self.gy = g0

    def start(self, stp: float) -> str:
        self.stp, self.stmin, self.stmax = stp, 0.0, stp + 4.0 * stp
        return "FG"

    def step(self, f: float, g: float) -> str:
        stp = self.stp
        ftest = self.finit + stp * self.gtest
        if self.stage == 1 and f <= ftest and g >= 0:
            self.stage = 2
        task = "FG"
        if self.brackt and (stp <= self.stmin or stp >= self.stmax or
                            self.stmax - self.stmin <= self.xtol * self.stmax):
            task = "WARNING"  # rounding errors prevent progress, or xtol
        if (stp == self.stpmax and f <= ftest and g <= self.gtest) or (
                stp == self.stpmin and (f > ftest or g >= self.gtest)):
            task = "WARNING"
        if f <= ftest and abs(g) <= self.gtol * -self.ginit:
            task = "CONVERGENCE"
        if task != "FG":
            return task
        if self.stage == 1 and self.fx >= f > ftest:  # the modified function ψ
            gt = self.gtest
            stx, fx, gx, sty, fy, gy, stp = _dcstep(
                self.stx, self.fx - self.stx * gt, self.gx - gt, self.sty,
                self.fy - self.sty * gt, self.gy - gt, stp, f - stp * gt, g - gt, self)
            self.fx, self.fy = fx + stx * gt, fy + sty * gt
            self.gx, self.gy = gx + gt, gy + gt
        else:
            stx, self.fx, self.gx, sty, self.fy, self.gy, stp = _dcstep(
                self.stx, self.fx, self.gx, self.sty, self.fy, self.gy, stp, f, g, self)
        self.stx, self.sty = stx, sty
        if self.brackt:
            if abs(sty - stx) >= 0.66 * self.width1:
                stp = stx + 0.5 * (sty - stx)
            self.width1, self.width = self.width, abs(sty - stx)
            self.stmin, self.stmax = min(stx, sty), max(stx, sty)
        else:
            self.stmin, self.stmax = stp + 1.1 * (stp - stx), stp + 4.0 * (stp - stx)
        stp = min(max(stp, self.stpmin), self.stpmax)
        if self.brackt and (stp <= self.stmin or stp >= self.stmax or
                            self.stmax - self.stmin <= self.xtol * self.stmax):
            stp = self.stx
        self.stp = stp
        return "FG"


def _dcstep(stx: float, fx: float, dx: float, sty: float, fy: float, dy: float,
            stp: float, fp: float, dp: float, search: _LineSearch) -> tuple[float, ...]:
    """MINPACK-2's ``dcstep``: the next trial step from cubic and quadratic fits, and the
    new interval of uncertainty ``[stx, sty]`` (sets ``search.brackt``)."""
    sgnd = math.copysign(1.0, dp) * math.copysign(1.0, dx) if dp and dx else 0.0

    def cubic(a: float, fa: float, da: float, b: float, fb: float,
              db: float) -> tuple[float, float]:
        """θ and γ of the cubic through (a, fa, da) and (b, fb, db), γ's sign b - a's."""
        theta = 3.0 * (fa - fb) / (b - a) + da + db
        s = max(abs(theta), abs(da), abs(db))
        gamma = s * math.sqrt(max(0.0, (theta / s) ** 2 - (da / s) * (db / s)))
        return theta, (gamma if b > a else -gamma)

    if fp > fx:  # a higher value: the minimum is bracketed
        theta, gamma = cubic(stx, fx, dx, stp, fp, dp)
        r = ((gamma - dx) + theta) / (((gamma - dx) + gamma) + dp)
        stpc = stx + r * (stp - stx)
        stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
        stpf = stpc if abs(stpc - stx) <= abs(stpq - stx) else stpc + (stpq - stpc) / 2.0
        search.brackt = True
    elif sgnd < 0.0:  # derivatives of opposite sign: bracketed
        theta, gamma = cubic(stx, fx, dx, stp, fp, dp)
        gamma = -gamma
        r = ((gamma - dp) + theta) / (((gamma - dp) + gamma) + dx)
        stpc = stp + r * (stx - stp)
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
        search.brackt = True
    elif abs(dp) < abs(dx):  # the derivative decreases in magnitude
        theta, gamma = cubic(stx, fx, dx, stp, fp, dp)
        gamma = -gamma
        r = ((gamma - dp) + theta) / ((gamma + (dx - dp)) + gamma)
        if r < 0 and gamma != 0:
            stpc = stp + r * (stx - stp)
        else:
            stpc = search.stpmax if stp > stx else search.stpmin
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if search.brackt:
            stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
            edge = stp + 0.66 * (sty - stp)
            stpf = min(edge, stpf) if stp > stx else max(edge, stpf)
        else:
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            stpf = min(max(stpf, search.stpmin), search.stpmax)
    elif search.brackt:  # the derivative does not decrease: fit at the other end
        theta, gamma = cubic(sty, fy, dy, stp, fp, dp)
        gamma = -gamma
        r = ((gamma - dp) + theta) / (((gamma - dp) + gamma) + dy)
        stpf = stp + r * (sty - stp)
    else:
        stpf = search.stpmax if stp > stx else search.stpmin
    if fp > fx:
        sty, fy, dy = stp, fp, dp
    else:
        if sgnd < 0.0:
            sty, fy, dy = stx, fx, dx
        stx, fx, dx = stp, fp, dp
    return stx, fx, dx, sty, fy, dy, stpf


# ---------------------------------------------------------------- a model


def fit(model: Model, X: Any, y: Any, *, sample_weight: Any = None,
        class_weight: Any = None, max_iter: int = 15000, max_fun: int = 15000,
        tol: float = 1e-5, m: int = 10, verbose: int = 0) -> Result:
    """Minimise a model's training loss over all of ``(X, y)`` with L-BFGS.

    The loss of one batch of every row, weighted as in ``fit``, plus the layers'
    penalties. The model ends with the best parameters found; the optimizer it may hold
    is left alone.

    Checked before anything changes: the data, as ``Sequential.fit`` checks it, and the
    layers — BatchNorm's running statistics and Dropout's masks change the loss from one
    evaluation to the next, which a line search cannot work with. All or nothing: an
    exception (even Ctrl-C) leaves the parameters as they were.

    Parameters
    ----------
    model : Sequential
        The model.
    X, y : array-like
        The data, as for ``Sequential.fit`` (in memory: not a Dask array).
    sample_weight, class_weight : optional
        As for ``Sequential.fit``.
    max_iter : int, default 15000
        Iterations at most.
    max_fun : int, default 15000
        Loss evaluations at most.
    tol : float, default 1e-5
        The gradient's largest entry at which it stops (SciPy's ``gtol``).
    m : int, default 10
        The pairs kept.
    verbose : int, default 0
        Print each iteration's loss.

    Returns
    -------
    Result
        What happened.

    Raises
    ------
    ValueError
        Layers with running statistics or random masks, a Dask array, bad data.
    """
    max_iter = _validation.integer(max_iter, "max_iter")
    max_fun = _validation.integer(max_fun, "max_fun")
    m = _validation.integer(m, "m")
    tol = _validation.real("tol", tol)
    model.check()
    coupled = [f"{i} ({type(layer).__name__})" for i, layer in enumerate(model.layers)
               if layer.buffer_names or layer.generator() is not None]
    if coupled:
        raise ValueError(f"L-BFGS needs a loss that is the same at every evaluation; layers "
                         f"{', '.join(coupled)} keep running statistics or draw random masks; "
                         "train them with a stochastic optimizer (Sequential.fit)")
    model.check_settings()
    batch = loop.with_weights(model, _data.prepare(model, X, y), sample_weight, class_weight)
    if _data.streams(model, batch[0]):
        raise ValueError("L-BFGS takes the whole data as one batch: compute a Dask array "
                         "into memory first (X.compute()), or train with Sequential.fit")
    x_arr, t = batch[0], batch[1]
    w = batch[2] if len(batch) > 2 else None
    start = model.state(rng=False)
    keys = list(start.params)

    def fun(x: Vector) -> tuple[float, Vector]:
        model.set_state(ModelState(dict(zip(keys, x)), start.buffers))
        with _backend.precision_scope(model.xp, model.device):
            e, _ = step.gradients(model, x_arr, t, w)
        grads = []
        for key in keys:  # the gradients, taken off the layers (their buffers are reused)
            position, name = split_path(key)
            layer = model.layers[position]
            grads.append(getattr(layer, "grad_" + name))
            setattr(layer, "grad_" + name, None)
        return _backend.to_float(e), _backend.materialize(grads)

    x0 = [model.xp.asarray(v, copy=True) for v in start.params.values()]
    try:
        x, result = minimize(fun, x0, m=m, max_iter=max_iter, max_fun=max_fun, gtol=tol,
                             verbose=verbose)
        model.set_state(ModelState(dict(zip(keys, x)), start.buffers))
    except BaseException:
        model.set_state(ModelState(dict(zip(keys, x0)), start.buffers))
        raise
    finally:
        model.forget()
    return result
