"""Inverted dropout: in training each input is kept with probability ``1 - p`` and scaled
by ``1 / (1 - p)``, so inference is the identity and needs no rescaling.

    training:   m_ij = [r_ij ≥ p] / (1 - p),  r_ij ~ U[0, 1)   (drawn on x's device)
                y = x ⊙ m,        ∂E/∂x = ∂E/∂y ⊙ m
    inference:  y = x
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._backend import random
from .base import Layer, real

Array = Any


class Dropout(Layer):
    """Dropout of rate ``p`` (the probability of dropping an input), for any width.

    The mask is drawn on the array's own device with the library's generator (see
    ``anyfc/_backend/random.py``)::

        training:   m_ij = [r_ij ≥ p] / (1 - p),  r_ij ~ U[0, 1)
                    y = x ⊙ m,        ∂E/∂x = ∂E/∂y ⊙ m
        inference:  y = x

    Parameters
    ----------
    rate : float
        ``p``, the probability of dropping each input, ``0 <= rate < 1``.
    seed : int, optional
        Makes a run reproducible on a given backend and device, an integer in
        ``[0, 2**31)`` (default: a stream of its own, from ``anyfc.set_seed``'s).
    backend, device, dtype : optional
        Where the layer computes (default: the default backend, its default device,
        float32).

    Examples
    --------
    >>> import numpy as np
    >>> Dropout(0.5, backend="numpy").forward(np.ones((1, 3), np.float32), training=False)
    array([[1., 1., 1.]], dtype=float32)
    """

    cache_names = ("mask",)

    def __init__(self, rate: float, seed: int | None = None, *,
                 backend: str | ModuleType | None = None, device: Any = None,
                 dtype: Any = "float32") -> None:
        self.rate, self.seed = self._settings(rate, seed)
        # without a seed, a stream of its own, drawn once (reset_random restarts it)
        self._stream = random.fresh_seed() if seed is None else self.seed
        self.place(backend, device, dtype)
        self.rng: random.DeviceRandom | None = None
        self.mask: Array | None = None

    @staticmethod
    def _settings(rate: Any, seed: Any) -> tuple[float, int | None]:
        """``(rate, seed)`` checked: 0 <= rate < 1, an integer seed in [0, 2**31) or
        ``None``."""
        rate = real("Dropout", "rate", rate, 0.0, 1.0, high_open=True)
        if seed is not None and (isinstance(seed, bool) or not hasattr(seed, "__index__")
                                 or not 0 <= int(seed) < 2**31):
            raise ValueError(f"Dropout needs an integer seed in [0, 2**31) or None, got "
                             f"{seed!r}")
        return rate, None if seed is None else int(seed)

    @classmethod
    def array_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        unknown = set(config) - {"rate", "seed"}
        if unknown:
            raise TypeError(f"Dropout takes no setting {sorted(map(str, unknown))[0]!r}")
        if "rate" not in config:
            raise TypeError("Dropout needs its setting 'rate'")
        cls._settings(config["rate"], config.get("seed"))
        return {}

    def generator(self) -> random.DeviceRandom:
        """Return the mask's generator on the layer's device.

        Made on first use, and again after a move: at the old generator's position where
        both are of one kind (NumPy's PCG64 behind numpy, array_api_strict and Dask), else
        from the seed.

        Returns
        -------
        DeviceRandom
            The generator (``anyfc._backend.random``).
        """
        if self.rng is None or not self.rng.matches(self.xp, self.device):
            new = random.DeviceRandom(self.xp, self.device, self._stream)
            position = None if self.rng is None else self.rng.position()
            if position is not None:
                new.set_position(position)  # False (nothing done) across kinds
            self.rng = new
        return self.rng

    def set_generator(self, generator: Any) -> None:
        self.rng = generator

    def reset_random(self) -> None:
        self.rng = None

    def forward(self, x: Array, training: bool = True) -> Array:
        """Compute ``x ⊙ m`` in training (keeping ``m``), ``x`` in inference.

        Parameters
        ----------
        x : array
            A batch, of the layer's library, device and dtype.
        training : bool, default True
            Drop (and keep the mask for ``backward``), or pass ``x`` through.

        Returns
        -------
        array
            ``y``, of ``x``'s shape.
        """
        self._check_input(x, "forward")
        if not training:
            return x
        xp = self.xp
        keep = self.generator().uniform(tuple(x.shape), x.dtype) >= self.rate
        self.mask = xp.astype(keep, x.dtype) / (1.0 - self.rate)
        return x * self.mask

    def backward(self, grad_y: Array, need_grad_x: bool = True) -> Array | None:
        """Compute ``∂E/∂x = ∂E/∂y ⊙ m``.

        Parameters
        ----------
        grad_y : array
            ``∂E/∂y`` for the last training ``forward``'s output.
        need_grad_x : bool, default True
            Unused: the layer has no parameters, and its only work is ``∂E/∂x``.

        Returns
        -------
        array
            ``∂E/∂x``.
        """
        self._check_backward(grad_y, self.mask)
        return grad_y * self.mask

    def config(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed}
