"""Regression with mean squared error on scikit-learn's diabetes data.
===================================================================

442 patients, 10 features; target: disease progression after one year::

    python examples/regression.py [--backend torch]

Prints the held-out mean absolute error and R², next to two baselines: predicting the
training mean, and ordinary least squares.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

import anyfc


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args(argv)

    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    mu, sigma = X_train.mean(axis=0), X_train.std(axis=0)
    y_mu, y_sigma = y_train.mean(), y_train.std()
    Xs_train, Xs_test = (X_train - mu) / sigma, (X_test - mu) / sigma

    model = anyfc.Sequential(
        [anyfc.Dense(10, 32, "tanh", seed=0), anyfc.Dense(32, 1, "identity", seed=1)],
        loss="mean_squared_error", backend=args.backend, device=args.device)
    model.fit(Xs_train, (y_train - y_mu) / y_sigma, epochs=args.epochs, batch_size=32,
              optimizer=anyfc.optimizers.Adam(lr=1e-3, weight_decay=1e-3), seed=0, verbose=0)
    pred = anyfc.to_numpy(model.predict(Xs_test))[:, 0].astype(np.float64) * y_sigma + y_mu

    A = np.c_[Xs_train, np.ones(len(Xs_train))]
    coef = np.linalg.lstsq(A, y_train, rcond=None)[0]
    ols = np.c_[Xs_test, np.ones(len(Xs_test))] @ coef

    print(f"{model.backend} ({model.device}), {len(X_train)} training / {len(X_test)} held-out")
    print(f"{'model':<22}{'MAE':>8}{'R²':>8}")
    for name, p in (("predict the mean", np.full_like(y_test, y_mu)), ("least squares", ols),
                    ("anyfc MLP (10-32-1)", pred)):
        print(f"{name:<22}{np.mean(np.abs(y_test - p)):8.1f}{r2(y_test, p):8.3f}")
    score = r2(y_test, pred)
    print(f"held-out R²: {score:.3f}")
    return score


if __name__ == "__main__":
    main()
