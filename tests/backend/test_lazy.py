"""anyfc._backend, lazy arrays: a model on the dask backend keeps concrete parameters and
BatchNorm buffers, not a graph of every step before."""

import numpy as np
import pytest

import anyfc
from tests.helpers.zoo import RNG


def test_dask_parameters_stay_concrete():
    pytest.importorskip("dask")
    model = anyfc.Sequential([anyfc.Dense(3, 4, "relu", backend="dask", seed=0),
                              anyfc.Dense(4, 2, "identity", backend="dask", seed=1)])
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 3)), rng.integers(0, 2, 64)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    sizes = [len(layer.w.__dask_graph__()) for layer in model.layers]
    model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    assert [len(layer.w.__dask_graph__()) for layer in model.layers] == sizes
    assert max(sizes) <= 2  # one persisted chunk, not a graph of every past step


@pytest.mark.review
def test_batchnorm_buffers_stay_concrete_on_the_dask_backend():
    pytest.importorskip("dask.array")
    model = anyfc.Sequential([anyfc.Dense(5, 8, "relu", backend="dask", seed=0),
                              anyfc.BatchNorm(8, backend="dask"),
                              anyfc.Dense(8, 3, "identity", backend="dask", seed=1)])
    model.fit(RNG.standard_normal((40, 5)), RNG.integers(0, 3, 40), epochs=1, batch_size=4,
              verbose=0)
    for name in ("running_mean", "running_var"):
        graph = getattr(model.layers[1], name).__dask_graph__()
        assert len(graph) <= 2, f"{name} carries a graph of {len(graph)} tasks"
