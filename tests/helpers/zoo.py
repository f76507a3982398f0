"""A model of every layer type (Dense, BatchNorm, ReLU, Dropout, LayerNorm), and the
generator its tests draw their data from."""

import numpy as np

import anyfc

RNG = np.random.default_rng(5)


def _zoo_model(bk, dtype="float64"):
    where = {"backend": bk.name, "device": bk.device_name, "dtype": dtype}
    return anyfc.Sequential([
        anyfc.Dense(6, 16, None, seed=0, **where), anyfc.BatchNorm(16, **where),
        anyfc.ReLU(**where), anyfc.Dropout(0.2, seed=4, **where),
        anyfc.Dense(16, 8, "gelu", seed=1, **where), anyfc.LayerNorm(8, **where),
        anyfc.Dense(8, 3, "identity", seed=2, **where)])
