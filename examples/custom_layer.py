"""Write your own layer once, check it, and train it on any backend.
=================================================================

PReLU is a ReLU whose negative slope is learned, one slope per feature::

    y = max(x, 0) + α ⊙ min(x, 0)
    ∂E/∂x = ∂E/∂y ⊙ (1 if x > 0 else α)
    ∂E/∂α = Σ_rows ∂E/∂y ⊙ min(x, 0)

It is not built into anyfc. Below it is written against the Array API namespace ``xp``
only, checked with ``anyfc.testing.check_layer`` (its forward against NumPy, its
backward against finite differences, on every backend here), then trained on digits in
``Dense → BatchNorm → PReLU → Dropout → Dense``::

    python examples/custom_layer.py                    # every CPU backend installed
    python examples/custom_layer.py --backend torch
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import anyfc
from anyfc.layers import Layer


@anyfc.register  # checkpoints may then rebuild it by its name
class PReLU(Layer):
    """``y = max(x, 0) + α ⊙ min(x, 0)`` with a learned slope ``α`` per feature."""

    param_names = ("alpha",)
    cache_names = ("x",)

    def __init__(self, n: int, init: float = 0.25, *, backend: Any = None, device: Any = None,
                 dtype: Any = "float32") -> None:
        self.n_in = self.n_out = self.n = int(n)
        self.init = float(init)
        xp, dev, dt = self._place(backend, device, dtype)
        self.alpha = xp.full((self.n,), self.init, dtype=dt, device=dev)
        self.grad_alpha = None
        self.x = None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"alpha": (self.n,)}

    def config(self) -> dict[str, Any]:
        return {"n": self.n, "init": self.init}

    def forward(self, x: Any, training: bool = True) -> Any:
        self._check_input(x, "forward")
        if training:
            self.x = x
        xp = self.xp
        return xp.maximum(x, 0.0) + self.alpha * xp.minimum(x, 0.0)

    def backward(self, grad_y: Any, need_grad_x: bool = True) -> Any:
        self._check_backward(grad_y, self.x)
        xp, x = self.xp, self.x
        self.grad_alpha = xp.sum(grad_y * xp.minimum(x, 0.0), axis=0)
        positive = xp.astype(x > 0, x.dtype)
        return grad_y * (positive + (1.0 - positive) * self.alpha)


def prelu_reference(x: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.maximum(x, 0) + arrays["alpha"] * np.minimum(x, 0)


def train(backend: str, device: str | None, epochs: int, seed: int = 0) -> float:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    where = {"backend": backend, "device": device}
    model = anyfc.Sequential([
        anyfc.Dense(64, 128, None, seed=seed, **where), anyfc.BatchNorm(128, **where),
        PReLU(128, **where), anyfc.Dropout(0.2, seed=seed, **where),
        anyfc.Dense(128, 10, "identity", seed=seed + 1, **where)])
    model.fit(X_train, y_train, epochs=epochs, batch_size=32, seed=seed, verbose=0,
              optimizer=anyfc.optimizers.Adam(3e-3))
    return model.evaluate(X_test, y_test)["accuracy"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default=None, help="one backend (default: every CPU one)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    backends = [args.backend] if args.backend else [
        b for b in anyfc.available_backends() if b not in ("dask", "cupy")]
    names = [b + (f":{args.device}" if args.device else "") for b in backends]
    report = anyfc.testing.check_layer(lambda **w: PReLU(6, init=0.3, **w), backends=names,
                                       reference=prelu_reference)
    for where, errors in report.items():
        print(f"check_layer on {where}: forward error {errors['forward']:.1e}, backward "
              f"error {errors['backward']:.1e}, loss {errors['loss_before']:.3f} → "
              f"{errors['loss_after']:.3f}")
    accuracies = {}
    for backend in backends:
        accuracies[backend] = train(backend, args.device, args.epochs)
        print(f"{backend}: held-out accuracy {accuracies[backend]:.4f}")
    return accuracies


if __name__ == "__main__":
    main()
