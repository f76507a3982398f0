"""Train on one backend, save a checkpoint, load it on another, and compare predictions.
=====================================================================================

::

    python examples/portable_checkpoint.py --backend cupy --to numpy   # GPU → CPU
    python examples/portable_checkpoint.py                             # numpy → the others

The checkpoint is an .npz archive read without pickle: loading it never runs code. It is
written as ``digits.npz`` into the folder given by ``--out`` (default: a fresh temporary
folder, printed; never the current directory), where it stays for you to load.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import anyfc


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default=None, help="where to train (default numpy)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--to", default=None, help="comma list of backends to load on "
                        "(default: every other usable one)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=None, help="the folder to write digits.npz into "
                        "(default: a fresh temporary folder)")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    model = anyfc.Sequential([anyfc.Dense(64, 64, "relu", seed=0),
                              anyfc.Dense(64, 10, "identity", seed=1)],
                             backend=args.backend, device=args.device)
    model.fit(X_train, y_train, epochs=args.epochs, optimizer=anyfc.optimizers.Adam(3e-3),
              verbose=0, seed=0)
    reference = anyfc.to_numpy(model.predict(X_test))
    print(f"trained on {model.backend} ({model.device}): held-out accuracy "
          f"{np.mean(reference.argmax(axis=1) == y_test):.4f}")

    folder = args.out or tempfile.mkdtemp(prefix="anyfc-portable_checkpoint-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "digits.npz")
    model.save(path)
    print(f"saved {path} ({os.path.getsize(path)} bytes)")

    targets = args.to.split(",") if args.to else [
        b for b in anyfc.available_backends() if b != model.backend]
    worst = 0.0
    for backend in targets:
        loaded = anyfc.load(path, backend=backend)
        p = anyfc.to_numpy(loaded.predict(X_test))
        diff = float(np.max(np.abs(p - reference)))
        same = np.array_equal(p.argmax(axis=1), reference.argmax(axis=1))
        worst = max(worst, diff)
        print(f"loaded on {backend:<17} max |Δp| = {diff:.2e}   same classes: {same}   "
              f"optimizer: {type(loaded.optimizer).__name__} after {loaded.optimizer.t} steps")
    return worst


if __name__ == "__main__":
    main()
