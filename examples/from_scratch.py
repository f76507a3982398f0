"""The article's way: write the training loop yourself with Dense.forward/backward/update.
=======================================================================================

::

    python examples/from_scratch.py                    # NumPy
    python examples/from_scratch.py --backend cupy     # the same loop on a GPU

Nothing here knows which array library runs it: the batches are moved to the layers'
backend once, and every step is ``forward``, the loss gradient, ``backward``, ``update``.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import anyfc


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--eta", type=float, default=0.1, help="learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=0, stratify=y)

    # Three layers, as in the article: two middle layers (ReLU, He init) and an output
    # layer giving logits; softmax + cross-entropy gives the output layer's δ = (p - t)/h.
    kw = {"backend": args.backend, "device": args.device}
    layers = [anyfc.Dense(64, 64, "relu", seed=0, **kw),
              anyfc.Dense(64, 32, "relu", seed=1, **kw),
              anyfc.Dense(32, 10, "identity", seed=2, **kw)]
    backend, device = layers[0].backend, layers[0].device
    loss = anyfc.losses.get("softmax_cross_entropy")

    x_train = anyfc.to_backend(X_train, backend, device, "float32")
    t_train = anyfc.to_backend(y_train, backend, device)
    x_test = anyfc.to_backend(X_test, backend, device, "float32")
    rng = np.random.default_rng(0)
    n = len(X_train)
    print(f"training on {backend} ({device})")
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, args.batch_size):
            idx = anyfc.to_backend(order[start:start + args.batch_size], backend, device)
            x = layers[0].xp.take(x_train, idx, axis=0)
            t = layers[0].xp.take(t_train, idx, axis=0)
            for layer in layers:                       # forward
                x = layer.forward(x)
            total = total + loss.forward(x, t) * len(order[start:start + args.batch_size])
            grad = loss.backward()                     # ∂E/∂y of the output layer
            for layer in reversed(layers):             # backward
                grad = layer.backward(grad)
            for layer in layers:                       # w -= η ∂E/∂w, b -= η ∂E/∂b
                layer.update(args.eta)
        if epoch % 10 == 0 or epoch == args.epochs:
            print(f"epoch {epoch:3d}  mean loss {float(anyfc.to_numpy(total)) / n:.4f}")

    out = x_test
    for layer in layers:
        out = layer.forward(out)
    accuracy = float(np.mean(anyfc.to_numpy(out).argmax(axis=1) == y_test))
    print(f"held-out accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
