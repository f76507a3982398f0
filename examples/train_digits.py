"""Train a digits classifier (scikit-learn's 8×8 handwritten digits) with anyfc.
=============================================================================

::

    python examples/train_digits.py                       # NumPy on the CPU
    python examples/train_digits.py --backend cupy        # the same code on a GPU
    python examples/train_digits.py --backend torch --device cuda:0

Prints the model's summary, trains with a cosine learning-rate schedule (after a short
linear warm-up) and early stopping on a validation split (the best epoch's weights are
restored), then prints the accuracy on held-out digits the training never saw and a
confusion matrix, and saves the training curve (``History.plot``) as ``digits_curve.png``
in the folder given by ``--out`` (default: a fresh temporary folder, printed) when
matplotlib is installed (``pip install 'anyfc[examples]'``). Nothing is written anywhere
else: not into the current directory, not into the repository.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import anyfc


def build_model(backend: str | None, device: str | None, seed: int) -> anyfc.Sequential:
    """64 pixels → 128 → 64 → 10 logits; softmax is fused into the loss."""
    return anyfc.Sequential(
        [
            anyfc.Dense(64, 128, "relu", seed=seed),
            anyfc.Dense(128, 64, "relu", seed=seed + 1),
            anyfc.Dense(64, 10, "identity", seed=seed + 2),
        ],
        loss="softmax_cross_entropy",
        backend=backend,
        device=device,
    )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = 10) -> np.ndarray:
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def print_confusion(matrix: np.ndarray) -> None:
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("     " + " ".join(f"{j:>3}" for j in range(matrix.shape[1])))
    for i, row in enumerate(matrix):
        print(f"{i:>3}: " + " ".join(f"{v:>3}" if v else "  ." for v in row))


def output_folder(out: str | None) -> str:
    """``out`` (created if missing), or a fresh temporary folder; printed either way."""
    folder = out or tempfile.mkdtemp(prefix="anyfc-train_digits-")
    os.makedirs(folder, exist_ok=True)
    print(f"outputs go to {folder}")
    return folder


def save_curve(history: anyfc.History, out: str | None) -> str | None:
    """The loss and accuracy by epoch (training and validation), as ``digits_curve.png``
    in ``out`` (see ``output_folder``); the file's path, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = os.path.join(output_folder(out), "digits_curve.png")
    fig = history.plot()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default=None, help="numpy (default), cupy, torch, jax, "
                        "dask or array_api_strict")
    parser.add_argument("--device", default=None, help="e.g. cuda:0, cpu, device1")
    parser.add_argument("--epochs", type=int, default=60, help="at most this many: early "
                        "stopping ends training when the validation loss stops improving")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.003, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="the folder for the training curve "
                        "(default: a fresh temporary folder)")
    parser.add_argument("--no-plot", action="store_true", help="save no training curve")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=args.seed, stratify=y)

    model = build_model(args.backend, args.device, args.seed)
    print(f"anyfc {anyfc.__version__}: {len(X_train)} training digits (15 % of them for "
          f"validation), {len(X_test)} held out")
    if not args.quiet:
        model.summary()
    steps = args.epochs * -(-int(len(X_train) * 0.85) // args.batch_size)
    schedule = anyfc.schedules.CosineDecay(args.lr, decay_steps=steps, warmup_steps=steps // 20,
                                           warmup_start=args.lr / 10)
    stop = anyfc.EarlyStopping("val_loss", patience=8, restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer=anyfc.optimizers.Adam(lr=schedule), validation_split=0.15,
                        callbacks=[stop], seed=args.seed, verbose=0 if args.quiet else 2)
    seconds = time.perf_counter() - start

    probabilities = anyfc.to_numpy(model.predict(X_test))
    predicted = probabilities.argmax(axis=1)
    accuracy = float(np.mean(predicted == y_test))
    print_confusion(confusion_matrix(y_test, predicted))
    best = "" if stop.best_epoch is None else (
        f"; kept the weights of epoch {stop.best_epoch + 1} (best validation loss "
        f"{stop.best:.4f})")
    print(f"trained {history.epochs} epochs in {seconds:.1f}s{best}")
    print(f"held-out accuracy: {accuracy:.4f}")
    curve = None if args.no_plot else save_curve(history, args.out)
    if curve is not None:
        print(f"training curve saved to {curve}")
    return accuracy


if __name__ == "__main__":
    main()
