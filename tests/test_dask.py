"""Data larger than memory (anyfc._dask): Dask arrays streamed to in-memory models,
data-parallel training over chunks (default scheduler and a 2-worker LocalCluster), lazy
predict, what data-parallel training refuses. These run under the ``dask`` backend id."""

import numpy as np
import pytest

import anyfc
from anyfc import _dask as dask_mechanics
from tests.helpers.zoo import RNG


def _model(dtype="float64", backend="numpy"):
    return anyfc.Sequential([anyfc.Dense(64, 32, "relu", seed=0, dtype=dtype, backend=backend),
                             anyfc.Dense(32, 10, "identity", seed=1, dtype=dtype,
                                         backend=backend)])


def _dask(a, chunks):
    import dask.array as da

    return da.from_array(a, chunks=chunks)


def test_streaming_fit_learns_the_digits(dask_bk, digits):
    X_train, X_test, y_train, y_test = digits
    model = _model("float32")
    history = model.fit(_dask(X_train, 200), _dask(y_train, 200), epochs=12, verbose=0, seed=0,
                        optimizer=anyfc.optimizers.Adam(0.01),
                        validation_data=(_dask(X_test, 150), _dask(y_test, 150)))
    assert history["val_accuracy"][-1] >= 0.95
    assert model.backend == "numpy"  # the data streamed to the model, not the reverse
    assert model.evaluate(X_test, y_test) == pytest.approx(
        model.evaluate(_dask(X_test, 100), _dask(y_test, 100)), rel=1e-6)


def test_stream_visits_every_row_once_a_chunk_at_a_time(dask_bk):
    X = np.arange(100, dtype=np.float64).reshape(-1, 1) * np.ones((1, 64))
    Xd, td = dask_mechanics.aligned(_dask(X, 20), _dask(np.zeros(100, dtype=np.int64), 20))
    model = _model()
    batches = list(dask_mechanics.stream((Xd, td), model, 8, True, np.random.default_rng(0)))
    rows = [anyfc.to_numpy(xb)[:, 0].astype(int) for xb, _ in batches]
    seen = np.concatenate(rows)
    assert sorted(seen.tolist()) == list(range(100))  # every row exactly once
    assert all(len(set(r // 20)) == 1 for r in rows)  # no batch mixes chunks
    assert seen.tolist() != list(range(100))  # shuffled...
    assert [r[0] // 20 for r in rows[::3]] != sorted(r[0] // 20 for r in rows[::3])  # ...chunks too


def _equal_training(strategy_kwargs, X, y):
    parallel, single = _model(), _model()
    parallel.fit(_dask(X, 50), _dask(y, 50), epochs=2, batch_size=200, shuffle=False,
                 optimizer=anyfc.optimizers.SGD(0.1, momentum=0.9), verbose=0, **strategy_kwargs)
    single.fit(X, y, epochs=2, batch_size=200, shuffle=False,
               optimizer=anyfc.optimizers.SGD(0.1, momentum=0.9), verbose=0)
    for a, b in zip(parallel.layers, single.layers):
        np.testing.assert_allclose(anyfc.to_numpy(a.w), anyfc.to_numpy(b.w), rtol=1e-10,
                                   atol=1e-12)
    return parallel


def test_data_parallel_equals_single_process_training(dask_bk, digits):
    X, _, y, _ = digits
    _equal_training({"strategy": "data_parallel"}, X[:1000], y[:1000])


def test_data_parallel_on_a_two_worker_cluster(dask_bk, digits):
    distributed = pytest.importorskip("distributed")
    X, X_test, y, _ = digits
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        model = _equal_training({"strategy": "data_parallel"}, X[:1000], y[:1000])
        assert len(client.scheduler_info()["workers"]) == 2
        lazy = model.predict(_dask(X_test, 100))
        np.testing.assert_allclose(lazy.compute(), anyfc.to_numpy(model.predict(X_test)),
                                   rtol=1e-12)


def test_predict_is_lazy_and_matches(dask_bk, digits):
    _, X_test, _, _ = digits
    model = _model()
    lazy = model.predict(_dask(X_test, 100))
    assert anyfc._backend.is_lazy(lazy) and lazy.shape == (len(X_test), 10)
    assert len(lazy.chunks[0]) == len(range(0, len(X_test), 100))
    np.testing.assert_allclose(lazy.compute(), anyfc.to_numpy(model.predict(X_test)),
                               rtol=1e-12)


def test_bad_dask_data_is_refused_before_training(dask_bk, digits):
    X, _, y, _ = digits
    model = _model()
    w = anyfc.to_numpy(model.layers[0].w)
    bad = X[:400].copy()
    bad[123, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(rows \[123\]"):
        model.fit(_dask(bad, 100), _dask(y[:400], 100), verbose=0)
    with pytest.raises(ValueError, match="class label 10"):
        model.fit(_dask(X[:400], 100), _dask(y[:400] + 1, 100), verbose=0)
    with pytest.raises(ValueError, match="data_parallel.*Dask array"):
        model.fit(X[:400], y[:400], strategy="data_parallel", verbose=0)
    with pytest.raises(ValueError, match="unknown strategy"):
        model.fit(X[:400], y[:400], strategy="horovod", verbose=0)
    np.testing.assert_array_equal(anyfc.to_numpy(model.layers[0].w), w)


def test_data_parallel_refuses_coupled_layers():
    da = pytest.importorskip("dask.array")
    model = anyfc.Sequential([anyfc.Dense(4, 4, "relu", seed=0), anyfc.BatchNorm(4),
                              anyfc.Dense(4, 3, "identity", seed=1)])
    X = da.from_array(RNG.standard_normal((20, 4)), chunks=10)
    with pytest.raises(ValueError, match=r"layers 1 \(BatchNorm\)"):
        model.fit(X, da.from_array(RNG.integers(0, 3, 20), chunks=10),
                  strategy="data_parallel", verbose=0)
    assert model.optimizer is None
