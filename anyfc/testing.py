"""``check_layer``: the check anyfc's own suite runs on every layer, for yours.

>>> import anyfc
>>> report = anyfc.testing.check_layer(lambda **where: anyfc.LayerNorm(4, **where),
...                                    backends=["numpy"])
>>> report["numpy"]["backward"] < 1e-6
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _backend
from .layers import Dense, Layer
from .model import Sequential
from .optimizers import SGD

Array = Any
Factory = Callable[..., Layer]


def _places(backends: Sequence[str] | None) -> list[tuple[str, Any]]:
    """(backend, device) pairs: each available backend on its default device, plus
    array_api_strict's ``device1`` (it behaves like a GPU)."""
    names = list(backends) if backends is not None else [
        b for b in _backend.available_backends() if b != "dask"]
    places: list[tuple[str, Any]] = []
    for name in names:
        backend, _, device = name.partition(":")
        places.append((backend, device or None))
        if backends is None and backend == "array_api_strict":
            places.append((backend, "device1"))
    return places


def numeric_grad(f: Callable[[np.ndarray], float], x: np.ndarray,
                  eps: float = 1e-6) -> np.ndarray:
    """Compute the gradient of a scalar function by central differences.

    ``(f(x + ε e_i) - f(x - ε e_i)) / 2ε`` for each entry ``i``.

    Parameters
    ----------
    f : callable
        A scalar function of a NumPy array.
    x : numpy.ndarray
        Where to differentiate (converted to float64; not changed).
    eps : float, default 1e-6
        ``ε``.

    Returns
    -------
    numpy.ndarray
        The gradient, of ``x``'s shape.

    Examples
    --------
    >>> import numpy as np
    >>> numeric_grad(lambda v: float((v ** 2).sum()), np.array([1.0, 2.0])).round(6)
    array([2., 4.])
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def rel_error(a: Any, b: Any) -> float:
    """Return the relative error ``‖a - b‖ / (‖a‖ + ‖b‖)`` of two arrays (0 for two zeros).

    Parameters
    ----------
    a, b : array
        Arrays of any library (read to the host, as float64).

    Returns
    -------
    float
        The relative error.
    """
    a, b = _backend.to_numpy(a).astype(np.float64), _backend.to_numpy(b).astype(np.float64)
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if den == 0 else float(np.linalg.norm(a - b) / den)


def check_layer(factory: Factory, *, n_in: int | None = None, rows: int = 5,
                reference: Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray] | None
                = None, backends: Sequence[str] | None = None, tol: float = 1e-6,
                train: bool = True, seed: int = 0) -> dict[str, dict[str, float]]:
    """Check a layer against the layer protocol on every backend and device here.

    The layer ``factory(backend=..., device=..., dtype=...)`` builds is checked in
    float64:

    - inference (``training=False``) against ``reference(x, arrays)`` — NumPy code of
      the layer's equations, given the input and the layer's arrays by name — when one is
      given, and keeping nothing on the layer;
    - the backward pass against central finite differences of ``E = Σ y ⊙ R`` (random
      ``R``), for ``∂E/∂x`` and every parameter's gradient (random layers restart their
      stream before every forward, so each sees the same mask);
    - the output keeps the input's library, device and dtype;
    - with ``train``, a few SGD steps of ``[layer, Dense(·, 3)]`` lower a squared error.

    Parameters
    ----------
    factory : callable
        ``factory(backend=..., device=..., dtype=...)`` builds the layer.
    n_in : int, optional
        The input width, for layers of any width (``n_in = None``).
    rows : int, default 5
        The rows of the test batch.
    reference : callable, optional
        ``reference(x, arrays) -> y``: NumPy code of the layer's equations, given the
        input and the layer's arrays by name.
    backends : sequence of str, optional
        Names like ``"torch"`` or ``"array_api_strict:device1"`` (default: every
        available backend but Dask, on its default device, and array_api_strict's
        ``device1``).
    tol : float, default 1e-6
        The relative error allowed.
    train : bool, default True
        Also check that a few optimizer steps lower a loss.
    seed : int, default 0
        The seed of the test data.

    Returns
    -------
    dict
        The measured errors per backend (``"numpy"``, ``"array_api_strict:device1"``):
        ``{"forward": ..., "backward": ..., ...}``.

    Raises
    ------
    AssertionError
        A check failed, naming the backend and the check.
    """
    if isinstance(backends, str):
        backends = [backends]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"check_layer needs rows >= 1, got {rows!r}")
    report: dict[str, dict[str, float]] = {}
    rng = np.random.default_rng(seed)
    for backend, device in _places(backends):
        where = backend + (f":{device}" if device else "")
        report[where] = _check_place(factory, backend, device, where, n_in, rows, reference,
                                     tol, train, rng)
    return report


def _check_place(factory: Factory, backend: str, device: Any, where: str, n_in: int | None,
                 rows: int, reference: Any, tol: float, train: bool,
                 rng: np.random.Generator) -> dict[str, float]:
    """``check_layer`` on one backend and device."""
    xp = _backend.get_namespace(backend)
    layer = factory(backend=backend, device=device, dtype="float64")
    width = layer.n_in if layer.n_in is not None else n_in
    if width is None:
        raise ValueError("the layer keeps any width: pass n_in=")
    x_host = rng.standard_normal((rows, width))
    x = _backend.to_backend(x_host, xp, layer.device, "float64")
    result: dict[str, float] = {}

    layer.reset_random()
    y = layer.forward(x, training=False)
    assert _backend.namespace_of(y) is xp, f"{where}: output of another library"
    assert _backend.device_of(y) == layer.device, f"{where}: output on another device"
    assert y.dtype == layer.dtype, f"{where}: output dtype {y.dtype}"
    kept = [n for n in layer.cache_names if getattr(layer, n, None) is not None]
    assert not kept, f"{where}: inference kept {kept} on the layer"
    if reference is not None:
        host = {k: _backend.to_numpy(v) for k, v in layer.arrays().items()}
        result["forward"] = rel_error(y, reference(x_host, host))
        assert result["forward"] < tol, f"{where}: forward off by {result['forward']:.2e}"

    r = rng.standard_normal(tuple(y.shape))

    def energy(x_value: np.ndarray) -> float:
        layer.reset_random()
        out = layer.forward(_backend.to_backend(x_value, xp, layer.device, "float64"))
        return float(np.sum(_backend.to_numpy(out) * r))

    def energy_of(name: str) -> Callable[[np.ndarray], float]:
        def f(value: np.ndarray) -> float:
            setattr(layer, name, _backend.to_backend(value, xp, layer.device, "float64"))
            return energy(x_host)
        return f

    numeric = {"x": numeric_grad(energy, x_host)}
    for name in layer.param_names:
        start = _backend.to_numpy(getattr(layer, name))
        numeric[name] = numeric_grad(energy_of(name), start)
        setattr(layer, name, _backend.to_backend(start, xp, layer.device, "float64"))
    buffers = {k: _backend.to_numpy(getattr(layer, k)) for k in layer.buffer_names}
    layer.reset_random()
    layer.forward(x)
    grad_x = layer.backward(_backend.to_backend(r, xp, layer.device, "float64"))
    for k, v in buffers.items():  # the forwards above moved running statistics
        setattr(layer, k, _backend.to_backend(v, xp, layer.device, "float64"))
    errors = {"x": rel_error(grad_x, numeric["x"])}
    errors.update({name: rel_error(getattr(layer, "grad_" + name), numeric[name])
                   for name in layer.param_names})
    result["backward"] = max(errors.values())
    worst = max(errors, key=lambda k: errors[k])
    assert result["backward"] < tol, (
        f"{where}: gradient of {worst} off by {errors[worst]:.2e} from finite differences")

    if train:
        result.update(_trains(factory, backend, device, width, rng))
    return result


def _trains(factory: Factory, backend: str, device: Any, width: int,
            rng: np.random.Generator) -> dict[str, float]:
    """A few SGD steps of ``[layer, Dense(·, 3)]`` lower a squared error."""
    layer = factory(backend=backend, device=device, dtype="float64")
    out = layer.n_out if layer.n_out is not None else width
    model = Sequential([layer, Dense(out, 3, "identity", backend=backend, device=device,
                                     dtype="float64", seed=1)], loss="mean_squared_error")
    X = rng.standard_normal((64, width))
    y = X[:, :3] @ rng.standard_normal((3, 3)) if width >= 3 else rng.standard_normal((64, 3))
    before = model.evaluate(X, y)["loss"]
    model.fit(X, y, epochs=15, batch_size=16, optimizer=SGD(0.05), seed=0, verbose=0)
    after = model.evaluate(X, y)["loss"]
    where = backend + (f":{device}" if device else "")
    assert after < before, f"{where}: training did not lower the loss ({before} → {after})"
    return {"loss_before": before, "loss_after": after}
