"""anyfc inside scikit-learn: a pipeline tuned by a grid search.
=============================================================

A Pipeline(StandardScaler, anyfc.sklearn.MLPClassifier) tuned
by GridSearchCV on scikit-learn's breast-cancer data (sizes and L2 term, and anyfc's
dropout on the larger network), then the best network moved to another backend, where it
predicts the same::

    python examples/sklearn_pipeline.py                          # NumPy, then another backend
    python examples/sklearn_pipeline.py --backend torch --to jax
    python examples/sklearn_pipeline.py --backend cupy --to numpy --n-jobs 1

Needs scikit-learn (``pip install 'anyfc[sklearn]'``).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import anyfc
from anyfc.sklearn import MLPClassifier


def other_backend(current: str) -> str:
    """A CPU backend other than ``current`` that works here (``current`` if none)."""
    for name in ("numpy", "torch", "jax", "array_api_strict"):
        if name != current and name in anyfc.available_backends():
            return name
    return current


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default=None, help="numpy (default), cupy, torch, jax, "
                        "dask or array_api_strict")
    parser.add_argument("--device", default=None, help="e.g. cuda:0, cpu, device1")
    parser.add_argument("--to", default=None, help="the backend to move the best model to "
                        "(default: another one installed here)")
    parser.add_argument("--to-device", default=None)
    parser.add_argument("--max-iter", type=int, default=100, help="epochs per fit at most")
    parser.add_argument("--cv", type=int, default=3, help="cross-validation folds")
    parser.add_argument("--n-jobs", type=int, default=1, help="GridSearchCV processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=args.seed, stratify=y)
    pipe = Pipeline([
        ("scale", StandardScaler()),
        ("mlp", MLPClassifier(max_iter=args.max_iter, learning_rate_init=0.01,
                              random_state=args.seed, backend=args.backend,
                              device=args.device)),
    ])
    # a list of grids: every size with both L2 terms, and one candidate more with dropout
    # (anyfc's, after each hidden layer; prediction never drops) where it has most to do
    grid = GridSearchCV(pipe, [{"mlp__hidden_layer_sizes": [(16,), (64, 32)],
                                "mlp__alpha": [1e-4, 1e-1]},
                               {"mlp__hidden_layer_sizes": [(64, 32)], "mlp__alpha": [1e-4],
                                "mlp__dropout": [0.2]}], cv=args.cv, n_jobs=args.n_jobs)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # short runs stop at max_iter
        grid.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    best = grid.best_estimator_
    mlp = best.named_steps["mlp"]
    print(f"anyfc {anyfc.__version__}: {len(grid.cv_results_['params'])} candidates x "
          f"{args.cv} folds on {mlp.model_.backend} ({mlp.model_.device}) in {seconds:.1f}s")
    print(f"best parameters: {grid.best_params_} (cross-validated accuracy "
          f"{grid.best_score_:.4f})")
    accuracy = float(best.score(X_test, y_test))
    print(f"held-out accuracy: {accuracy:.4f}")

    before = best.predict_proba(X_test)
    source = mlp.model_.backend
    target = args.to or other_backend(source)
    mlp.to(target, device=args.to_device)  # the fitted network and its optimizer state
    after = best.predict_proba(X_test)
    same = bool(np.array_equal(before.argmax(axis=1), after.argmax(axis=1)))
    diff = float(np.max(np.abs(before - after)))
    print(f"moved the best model from {source} to {mlp.model_.backend} "
          f"({mlp.model_.device}): same predicted classes: {same}, largest probability "
          f"difference {diff:.2g}")
    return {"accuracy": accuracy, "same": float(same), "max_difference": diff}


if __name__ == "__main__":
    main()
