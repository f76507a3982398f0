"""A model trained for two epochs (to save, reload, move), on any backend or on NumPy."""

import numpy as np

import anyfc


def _trained(bk, optimizer=None, seed=0):
    rng = np.random.default_rng(seed)
    model = anyfc.Sequential(
        [bk.dense(6, 8, "leaky_relu", seed=0), bk.dense(8, 3, "identity", seed=1)],
        dtype="float64")
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    model.fit(X, y, epochs=2, batch_size=8, optimizer=optimizer or anyfc.optimizers.Adam(0.01),
              shuffle=False, verbose=0)
    return model, X, y


def anyfc_numpy():
    class _B:
        @staticmethod
        def dense(*a, **k):
            return anyfc.Dense(*a, backend="numpy", dtype="float64", **k)
    return _B
