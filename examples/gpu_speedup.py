"""Time the same MLP training on the CPU and on a GPU.
===================================================

The same MLP trains on NumPy (CPU) and on the GPU: CuPy, and torch-cuda when
present. Each epoch is timed after synchronising the device, so the numbers are real::

    python examples/gpu_speedup.py                 # cupy if it has a GPU
    python examples/gpu_speedup.py --backend torch --device cuda:0

On a machine without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits

import anyfc


def gpu_targets(backend: str | None, device: str | None) -> list[tuple[str, str | None]]:
    """The (backend, device) pairs with a GPU here, in the order asked for."""
    usable = anyfc.available_backends()
    targets = []
    if backend not in (None, "numpy"):
        if backend in usable:
            targets.append((backend, device))
        return targets
    if "cupy" in usable:
        targets.append(("cupy", device))
    if "torch" in usable:
        import torch

        if torch.cuda.is_available():
            targets.append(("torch", device or "cuda:0"))
    return targets


def time_training(backend: str, device: str | None, X: np.ndarray, y: np.ndarray,
                  hidden: int, epochs: int, batch_size: int) -> float:
    """Median seconds per epoch (the first epoch, which warms up, is not counted)."""
    model = anyfc.Sequential(
        [anyfc.Dense(64, hidden, "relu", seed=0), anyfc.Dense(hidden, hidden, "relu", seed=1),
         anyfc.Dense(hidden, 10, "identity", seed=2)], backend=backend, device=device)
    Xb = anyfc.to_backend(X, backend, device, "float32")
    yb = anyfc.to_backend(y, backend, device)
    opt = anyfc.optimizers.SGD(lr=0.01, momentum=0.9)
    times = []
    for _ in range(epochs + 1):
        anyfc.synchronize(model.layers[0].w)
        start = time.perf_counter()
        model.fit(Xb, yb, epochs=1, batch_size=batch_size, optimizer=opt, verbose=0, seed=0)
        anyfc.synchronize(model.layers[0].w)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default=None, help="GPU backend: cupy (default) or torch")
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=8,
                        help="tile the 1,797 digits this many times (more work per epoch)")
    args = parser.parse_args(argv)

    targets = gpu_targets(args.backend, args.device)
    if not targets:
        print("no GPU backend is usable here (cupy with a CUDA device, or torch with CUDA); "
              "nothing to compare. anyfc.info() shows what this machine has.")
        return {}
    X, y = load_digits(return_X_y=True)
    X, y = np.tile(X / 16.0, (args.repeat, 1)), np.tile(y, args.repeat)
    print(f"MLP 64-{args.hidden}-{args.hidden}-10, {len(X)} samples/epoch, "
          f"batch {args.batch_size}, float32, SGD with momentum")
    results = {"numpy": time_training("numpy", None, X, y, args.hidden, args.epochs,
                                      args.batch_size)}
    for backend, device in targets:
        name = backend if device is None else f"{backend}:{device}"
        results[name] = time_training(backend, device, X, y, args.hidden, args.epochs,
                                      args.batch_size)
    base = results["numpy"]
    for name, seconds in results.items():
        speedup = base / seconds
        print(f"{name:<16} {seconds * 1e3:9.1f} ms/epoch   speed-up vs numpy: {speedup:6.1f}x")
    return results


if __name__ == "__main__":
    main()
