"""Train a digits classifier with anyfc, export it to ONNX, and serve it with onnxruntime.
=======================================================================================

::

    python examples/export_onnx.py                        # train on NumPy
    python examples/export_onnx.py --backend torch        # train anywhere: the file is the same

Trains on scikit-learn's 8×8 digits, writes ``digits.onnx`` into the folder given by
``--out`` (default: a fresh temporary folder, printed; never the current directory), and
then serves predictions from onnxruntime alone (``OnnxDigits`` below needs only numpy
and onnxruntime: copy it, and the file, to a machine without anyfc). Prints both
held-out accuracies and the time of one prediction call on anyfc and on onnxruntime, for
a batch of 1 and of 1024 (median over repeats). Needs ``pip install 'anyfc[examples,onnx]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import anyfc
import anyfc.onnx


class OnnxDigits:
    """The exported model, served by onnxruntime: nothing of anyfc is needed here."""

    def __init__(self, path: str, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (the cores)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        tensor = self.session.get_inputs()[0]
        self.input, self.output = tensor.name, self.session.get_outputs()[0].name
        self.dtype = np.float64 if tensor.type == "tensor(double)" else np.float32
        self.metadata = self.session.get_modelmeta().custom_metadata_map

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities for rows of 64 pixels scaled to [0, 1]."""
        x = np.ascontiguousarray(pixels, dtype=self.dtype)
        return self.session.run([self.output], {self.input: x})[0]

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        return self.probabilities(pixels).argmax(axis=1)


def median_seconds(call: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``call()`` over ``repeats`` runs, after one warm-up run."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default=None, help="numpy (default), cupy, torch, jax, "
                        "dask or array_api_strict")
    parser.add_argument("--device", default=None, help="e.g. cuda:0, cpu, device1")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="the folder to write digits.onnx into "
                        "(default: a fresh temporary folder)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime's threads (0: "
                        "its default; for anyfc on NumPy set OPENBLAS_NUM_THREADS)")
    parser.add_argument("--repeats", type=int, default=200,
                        help="timed calls per case (the batch of 1024 runs a fifth as many)")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=args.seed, stratify=y)

    model = anyfc.Sequential(
        [anyfc.Dense(64, 128, "relu", seed=args.seed, dtype=args.dtype),
         anyfc.Dense(128, 64, "relu", seed=args.seed + 1, dtype=args.dtype),
         anyfc.Dense(64, 10, "identity", seed=args.seed + 2, dtype=args.dtype)],
        loss="softmax_cross_entropy", backend=args.backend, device=args.device)
    print(f"anyfc {anyfc.__version__} on {model.backend} ({model.device}), {args.dtype}: "
          f"training on {len(X_train)} digits for {args.epochs} epochs")
    model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              optimizer=anyfc.optimizers.Adam(lr=args.lr), seed=args.seed, verbose=0)

    # 1. export: one call, from whatever backend the model lives on
    folder = args.out or tempfile.mkdtemp(prefix="anyfc-export_onnx-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "digits.onnx")
    anyfc.onnx.export(model, path)
    print(f"exported to {path}")

    # 2. serve from onnxruntime alone
    served = OnnxDigits(path, args.threads)
    architecture = json.loads(served.metadata["anyfc.architecture"])
    print(f"onnxruntime serves {served.input!r} -> {served.output!r}; the file says: "
          f"{len(architecture['layers'])} layers, loss {architecture['loss']}, "
          f"anyfc {served.metadata['anyfc.version']}")

    p_anyfc = anyfc.to_numpy(model.predict(X_test))
    p_onnx = served.probabilities(X_test)
    acc_anyfc = float(np.mean(p_anyfc.argmax(axis=1) == y_test))
    acc_onnx = float(np.mean(p_onnx.argmax(axis=1) == y_test))
    agree = int(np.sum(p_anyfc.argmax(axis=1) == p_onnx.argmax(axis=1)))
    worst = float(np.max(np.abs(p_anyfc - p_onnx)))
    print(f"held-out accuracy: anyfc {acc_anyfc:.4f}, onnxruntime {acc_onnx:.4f} "
          f"(same class for {agree}/{len(y_test)} digits; probabilities differ by at most "
          f"{worst:.1e})")

    # 3. speed of one prediction call, the result on the host
    timings: dict[str, dict[int, float]] = {"anyfc": {}, "onnxruntime": {}}
    print(f"one predict call, median (anyfc on {model.backend}: model.predict + to_numpy):")
    for batch in (1, 1024):
        rows = np.resize(X_test, (batch, X_test.shape[1]))  # the held-out digits, repeated
        repeats = max(1, args.repeats if batch == 1 else args.repeats // 5)
        timings["anyfc"][batch] = median_seconds(
            lambda rows=rows: anyfc.to_numpy(model.predict(rows)), repeats)
        rows_onnx = np.ascontiguousarray(rows, dtype=served.dtype)
        timings["onnxruntime"][batch] = median_seconds(
            lambda rows=rows_onnx: served.probabilities(rows), repeats)
        a, o = timings["anyfc"][batch], timings["onnxruntime"][batch]
        print(f"  batch {batch:>4}: anyfc {a * 1e3:8.3f} ms ({batch / a:>10,.0f} digits/s)   "
              f"onnxruntime {o * 1e3:8.3f} ms ({batch / o:>10,.0f} digits/s)   "
              f"onnxruntime is {a / o:.1f}x as fast ({repeats} calls)")
    return {"accuracy_anyfc": acc_anyfc, "accuracy_onnx": acc_onnx, "agree": agree,
            "max_difference": worst, "seconds": timings, "path": path}


if __name__ == "__main__":
    main()
