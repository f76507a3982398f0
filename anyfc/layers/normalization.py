"""Normalisation layers with learnable scale ``γ`` and shift ``β``.

BatchNorm normalises each feature over the batch (axis 0), LayerNorm each row over its
features (axis 1). With ``h`` the number of values averaged over,

    μ = mean(x),   σ² = mean((x - μ)²),   x̂ = (x - μ) / √(σ² + ε),   y = γ ⊙ x̂ + β

and, given ``g = ∂E/∂y``,

    ∂E/∂γ = Σ_rows g ⊙ x̂,      ∂E/∂β = Σ_rows g,      ĝ = g ⊙ γ
    ∂E/∂x = (1/h) · (1/√(σ² + ε)) ⊙ (h·ĝ - Σ ĝ - x̂ ⊙ Σ (ĝ ⊙ x̂))     (sums over the same axis)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .. import _backend
from .base import Layer, real, size

Array = Any


class _Norm(Layer):
    """γ and β of ``n`` features, and the backward pass shared by both normalisations."""

    param_names = ("gamma", "beta")
    cache_names = ("x_hat", "inv_std")
    axis = 0

    _config_keys: tuple[str, ...] = ("n", "eps")  # config()'s; array_shapes checks each

    def __init__(self, n: int, eps: float, backend: Any, device: Any, dtype: Any) -> None:
        name = type(self).__name__
        self.n = self.n_in = self.n_out = size(name, "n", n)
        self.eps = self._eps(eps)
        xp, dev, dt = self.place(backend, device, dtype)
        self.gamma: Array = xp.ones((self.n,), dtype=dt, device=dev)
        self.beta: Array = xp.zeros((self.n,), dtype=dt, device=dev)
        self.grad_gamma: Array | None = None
        self.grad_beta: Array | None = None
        self.x_hat: Array | None = None
        self.inv_std: Array | None = None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: (self.n,) for name in self.param_names + self.buffer_names}

    @classmethod
    def _eps(cls, eps: Any) -> float:
        return real(cls.__name__, "eps", eps, 0.0, float("inf"), low_open=True,
                    high_open=True)

    @classmethod
    def _momentum(cls, momentum: Any) -> float:
        return real(cls.__name__, "momentum", momentum, 0.0, 1.0)

    @classmethod
    def array_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        unknown = set(config) - set(cls._config_keys)
        if unknown:
            raise TypeError(f"{cls.__name__} takes no setting {sorted(map(str, unknown))[0]!r}")
        n = size(cls.__name__, "n", config.get("n"))
        if "eps" in config:
            cls._eps(config["eps"])
        if "momentum" in config:
            cls._momentum(config["momentum"])
        return {name: (n,) for name in cls.param_names + cls.buffer_names}

    def _normalize(self, x: Array) -> tuple[Array, Array, Array, Array]:
        """(x̂, 1/√(σ² + ε), μ, σ²) over ``self.axis``."""
        xp = self.xp
        mu = xp.mean(x, axis=self.axis, keepdims=True)
        centered = x - mu
        var = xp.mean(centered * centered, axis=self.axis, keepdims=True)
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        return centered * inv_std, inv_std, mu, var

    def backward(self, grad_y: Array, need_grad_x: bool = True) -> Array | None:
        self._check_backward(grad_y, self.x_hat)
        xp, axis = self.xp, self.axis
        x_hat: Any = self.x_hat
        self.grad_gamma = xp.sum(grad_y * x_hat, axis=0)
        self.grad_beta = xp.sum(grad_y, axis=0)
        if not need_grad_x:
            return None
        g = grad_y * self.gamma
        h = x_hat.shape[axis]
        return (self.inv_std / h) * (h * g - xp.sum(g, axis=axis, keepdims=True)
                                     - x_hat * xp.sum(g * x_hat, axis=axis, keepdims=True))


class BatchNorm(_Norm):
    """Batch normalisation over the batch axis (``torch.nn.BatchNorm1d``'s conventions).

    Training uses the batch's mean and biased variance and updates the running
    statistics, inference uses those (and keeps nothing on the layer)::

        running_mean ← (1 - momentum)·running_mean + momentum·μ
        running_var  ← (1 - momentum)·running_var  + momentum·σ²·h/(h - 1)   (unbiased)

    A training batch needs at least 2 rows. Over the batch of ``h`` rows, per feature::

        μ = mean(x),   σ² = mean((x - μ)²),   x̂ = (x - μ) / √(σ² + ε),   y = γ ⊙ x̂ + β
        ∂E/∂γ = Σ_rows g ⊙ x̂,   ∂E/∂β = Σ_rows g,   ĝ = g ⊙ γ      (g = ∂E/∂y)
        ∂E/∂x = (1/h) · (1/√(σ² + ε)) ⊙ (h·ĝ - Σ ĝ - x̂ ⊙ Σ (ĝ ⊙ x̂))

    Parameters
    ----------
    n : int
        The number of features.
    momentum : float, default 0.1
        The weight of the *new* batch in the running statistics, in [0, 1] (torch's
        convention; Keras' ``momentum`` is ``1 -`` this).
    eps : float, default 1e-5
        ``ε > 0``, added to the variance.
    backend, device, dtype : optional
        Where the parameters live (default: the default backend, its default device,
        float32).
    """

    buffer_names = ("running_mean", "running_var")
    _config_keys = ("n", "momentum", "eps")
    min_batch = 2  # rows of a training batch: one row has no variance

    def __init__(self, n: int, momentum: float = 0.1, eps: float = 1e-5, *,
                 backend: str | ModuleType | None = None, device: Any = None,
                 dtype: Any = "float32") -> None:
        super().__init__(n, eps, backend, device, dtype)
        self.momentum = self._momentum(momentum)
        xp, dev, dt = self._placement()
        self.running_mean: Array = xp.zeros((self.n,), dtype=dt, device=dev)
        self.running_var: Array = xp.ones((self.n,), dtype=dt, device=dev)

    def check_values(self, arrays: dict[str, Array]) -> str | None:
        var = arrays.get("running_var")
        if var is not None and not bool(_backend.to_float(self.xp.all(var >= 0))):
            return "running_var holds negative variances"
        return None

    def forward(self, x: Array, training: bool = True) -> Array:
        """Compute ``γ ⊙ x̂ + β``.

        Parameters
        ----------
        x : array
            A batch of ``n`` features per row, of the layer's library, device and dtype.
        training : bool, default True
            Normalise with the batch's statistics, update the running ones and keep
            what ``backward`` needs; or, with ``False``, normalise with the running
            statistics and keep nothing.

        Returns
        -------
        array
            ``y``, of ``x``'s shape.

        Raises
        ------
        ValueError
            A training batch of fewer than 2 rows.
        """
        self._check_input(x, "forward")
        xp = self.xp
        if not training:
            x_hat = (x - self.running_mean) / xp.sqrt(self.running_var + self.eps)
            return self.gamma * x_hat + self.beta
        h = x.shape[0]
        if h < 2:
            raise ValueError(f"BatchNorm needs at least 2 rows per training batch, got {h} "
                             "(the variance of one row is 0); choose a batch_size that leaves "
                             "no last batch of 1 row")
        x_hat, inv_std, mu, var = self._normalize(x)
        m = self.momentum
        self.running_mean = _backend.scale_add_(self.running_mean, 1.0 - m,
                                                xp.reshape(mu, (-1,)), m)
        self.running_var = _backend.scale_add_(self.running_var, 1.0 - m,
                                               xp.reshape(var, (-1,)) * (h / (h - 1)), m)
        self.x_hat, self.inv_std = x_hat, inv_std
        return self.gamma * x_hat + self.beta

    def config(self) -> dict[str, Any]:
        return {"n": self.n, "momentum": self.momentum, "eps": self.eps}


class LayerNorm(_Norm):
    """Layer normalisation: each row over its ``n`` features.

    The same in training and inference (no running statistics). Over each row's ``h``
    features (``g = ∂E/∂y``, sums over the row)::

        μ = mean(x),   σ² = mean((x - μ)²),   x̂ = (x - μ) / √(σ² + ε),   y = γ ⊙ x̂ + β
        ∂E/∂γ = Σ_rows g ⊙ x̂,   ∂E/∂β = Σ_rows g,   ĝ = g ⊙ γ
        ∂E/∂x = (1/h) · (1/√(σ² + ε)) ⊙ (h·ĝ - Σ ĝ - x̂ ⊙ Σ (ĝ ⊙ x̂))

    Parameters
    ----------
    n : int
        The number of features.
    eps : float, default 1e-5
        ``ε > 0``, added to the variance.
    backend, device, dtype : optional
        Where the parameters live (default: the default backend, its default device,
        float32).
    """

    axis = 1

    def __init__(self, n: int, eps: float = 1e-5, *, backend: str | ModuleType | None = None,
                 device: Any = None, dtype: Any = "float32") -> None:
        super().__init__(n, eps, backend, device, dtype)

    def forward(self, x: Array, training: bool = True) -> Array:
        """Compute ``γ ⊙ x̂ + β`` with each row's own statistics.

        Parameters
        ----------
        x : array
            A batch of ``n`` features per row, of the layer's library, device and dtype.
        training : bool, default True
            Keep what ``backward`` needs.

        Returns
        -------
        array
            ``y``, of ``x``'s shape.
        """
        self._check_input(x, "forward")
        x_hat, inv_std, _, _ = self._normalize(x)
        if training:
            self.x_hat, self.inv_std = x_hat, inv_std
        return self.gamma * x_hat + self.beta

    def config(self) -> dict[str, Any]:
        return {"n": self.n, "eps": self.eps}
