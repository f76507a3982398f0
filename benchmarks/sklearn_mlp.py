"""anyfc.sklearn.MLPClassifier against scikit-learn's MLPClassifier: the same data, the
same architecture, the same optimizer and the same random_state (so the same initial
weights and the same shuffling), float32 for both (scikit-learn trains in float32 when
X is float32).

    python benchmarks/sklearn_mlp.py                       # both cases, 3 processes each
    python benchmarks/sklearn_mlp.py --cases digits --procs 5
    python benchmarks/sklearn_mlp.py --contenders sklearn,anyfc:jax
    python benchmarks/sklearn_mlp.py --threads 1             # every library on one thread

Cases: scikit-learn's 8×8 digits (1,347 training rows, 450 held out) and
make_classification with 100,000 rows × 100 features (80,000 / 20,000), each standardised;
hidden layers (256, 128), ReLU, Adam (lr 0.001), batch 200, alpha 1e-4, 20 epochs with
early stopping off and tol=0 (n_iter_no_change=20 too, so every run does all 20 epochs).

Every contender runs in its own process (a fresh interpreter: JAX compiles there, torch
starts its threads there); the processes of one round run one after the other, rounds
repeat ``--procs`` times, and the table shows medians over the processes with ratios
against scikit-learn's median from the same run. Time is ``fit`` alone (wall clock, the
data already in memory as NumPy); accuracy is on the held-out rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

CONTENDERS = ("sklearn", "anyfc:numpy", "anyfc:torch", "anyfc:jax")
CASES = ("digits", "classification-100k")
PARAMS = dict(hidden_layer_sizes=(256, 128), activation="relu", solver="adam", alpha=1e-4,
              batch_size=200, learning_rate_init=0.001, max_iter=20, tol=0.0,
              n_iter_no_change=20, early_stopping=False, shuffle=True, random_state=0)


def load(case: str) -> tuple[np.ndarray, ...]:
    """(X_train, X_test, y_train, y_test), float32, standardised on the training rows."""
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if case == "digits":
        X, y = load_digits(return_X_y=True)
        split = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    else:
        X, y = make_classification(n_samples=100_000, n_features=100, n_informative=40,
                                   n_redundant=20, n_classes=2, flip_y=0.02,
                                   class_sep=0.8, random_state=0)
        split = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    X_train, X_test, y_train, y_test = split
    scaler = StandardScaler().fit(X_train)
    return (scaler.transform(X_train).astype(np.float32),
            scaler.transform(X_test).astype(np.float32), y_train, y_test)


def worker(contender: str, case: str) -> dict[str, float]:
    """Fit one contender once; its time, held-out accuracy and epochs."""
    X_train, X_test, y_train, y_test = load(case)
    if contender == "sklearn":
        from sklearn.neural_network import MLPClassifier as Sk

        est = Sk(**PARAMS)
    else:
        from anyfc.sklearn import MLPClassifier

        est = MLPClassifier(**PARAMS, backend=contender.split(":", 1)[1], dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ConvergenceWarning after 20 epochs
        start = time.perf_counter()
        est.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    accuracy = float(np.mean(np.asarray(est.predict(X_test)) == y_test))
    return {"seconds": seconds, "accuracy": accuracy, "epochs": int(est.n_iter_),
            "final_loss": float(est.loss_curve_[-1])}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = []
    for name in ("numpy", "sklearn", "torch", "jax"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, " + ", ".join(
        versions)


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[dict[str, float]]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--procs", type=int, default=3, help="processes per contender")
    parser.add_argument("--threads", type=int, default=None, help="threads for every "
                        "library in the worker processes (default: each library's own)")
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "CASE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return {}
    cases = [c for c in args.cases.split(",") if c]
    contenders = [c for c in args.contenders.split(",") if c]
    print(f"# {machine()}")
    print(f"# {' '.join(['python', 'benchmarks/sklearn_mlp.py'] + (argv or sys.argv[1:]))}")
    env = dict(os.environ)
    if args.threads:
        n = str(args.threads)
        env.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n,
                   XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen="
                   f"{'true' if args.threads > 1 else 'false'} "
                   f"intra_op_parallelism_threads={n}".strip())
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for case in cases:
        runs: dict[str, list[dict[str, float]]] = {c: [] for c in contenders}
        for round_ in range(args.procs):
            for contender in contenders:
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", contender, case],
                    capture_output=True, text=True, check=True, env=env)
                run = json.loads(out.stdout.strip().splitlines()[-1])
                runs[contender].append(run)
                print(f"  {case} round {round_ + 1}: {contender} {run['seconds']:.2f}s "
                      f"accuracy {run['accuracy']:.4f}", file=sys.stderr, flush=True)
        results[case] = runs
    print("\n| case | contender | fit (s), median | vs scikit-learn | held-out accuracy | "
          "Δ accuracy (points) | epochs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for case, runs in results.items():
        base = runs.get("sklearn")
        base_s = statistics.median(r["seconds"] for r in base) if base else None
        base_acc = statistics.median(r["accuracy"] for r in base) if base else None
        for contender, rs in runs.items():
            s = statistics.median(r["seconds"] for r in rs)
            acc = statistics.median(r["accuracy"] for r in rs)
            ratio = f"{s / base_s:.2f}x" if base_s else "–"
            delta = f"{100 * (acc - base_acc):+.2f}" if base_acc is not None else "–"
            epochs = "/".join(sorted({str(r["epochs"]) for r in rs}))
            print(f"| {case} | {contender} | {s:.2f} | {ratio} | {acc:.4f} | {delta} | "
                  f"{epochs} |")
    return results


if __name__ == "__main__":
    main()
