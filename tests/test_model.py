"""Sequential: whole-network gradients, training, prediction, data from any library."""

import numpy as np
import pytest

import anyfc
from anyfc import _backend
from anyfc.testing import numeric_grad, rel_error
from tests.helpers.model import _net


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "binary_cross_entropy",
                                  "mean_squared_error"])
def test_whole_network_gradient_matches_finite_differences(bk, loss, rng):
    model = _net(bk, loss)
    x = bk.asarray(rng.standard_normal((6, 4)))
    t_host = {"softmax_cross_entropy": rng.integers(0, 3, 6),
              "binary_cross_entropy": rng.integers(0, 2, (6, 3)).astype(float),
              "mean_squared_error": rng.standard_normal((6, 3))}[loss]
    t = bk.asarray(t_host, None if t_host.dtype.kind == "i" else "float64")

    for i, layer in enumerate(model.layers):
        for name in ("w", "b"):
            p0 = anyfc.to_numpy(getattr(layer, name))

            def energy(p_host, layer=layer, name=name):
                setattr(layer, name, bk.asarray(p_host))
                return float(anyfc.to_numpy(model.loss.forward(model.forward(x), t)))

            numeric = numeric_grad(energy, p0)
            setattr(layer, name, bk.asarray(p0))
            model.loss.forward(model.forward(x), t)
            model.backward(model.loss.backward())
            err = rel_error(getattr(layer, "grad_" + name), numeric)
            assert err < 1e-6, f"layer {i} grad_{name}: relative error {err:.2e}"


def test_fit_returns_history_and_keeps_model_where_it_was(bk, rng):
    model = _net(bk)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    history = model.fit(X, y, epochs=3, batch_size=8, validation_data=(X[:10], y[:10]),
                        verbose=0, seed=0)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epochs == 3 and all(len(v) == 3 for v in history.values())
    assert all(0.0 <= a <= 1.0 for a in history["accuracy"])
    for layer in model.layers:
        assert _backend.namespace_of(layer.w) is bk.xp
        assert _backend.device_of(layer.w) == bk.device
        assert layer.w.dtype == bk.xp.float64


def test_predict_gives_probabilities_on_the_model_device(bk, rng):
    model = _net(bk)
    p = model.predict(rng.standard_normal((7, 4)), batch_size=3)
    assert tuple(p.shape) == (7, 3)
    assert _backend.namespace_of(p) is bk.xp and _backend.device_of(p) == bk.device
    assert p.dtype == bk.xp.float64
    np.testing.assert_allclose(anyfc.to_numpy(p).sum(axis=1), 1.0, rtol=1e-12)


def test_predict_in_batches_equals_one_batch(bk, rng):
    model = _net(bk, "mean_squared_error")
    X = rng.standard_normal((10, 4))
    whole = anyfc.to_numpy(model.predict(X, batch_size=None))
    np.testing.assert_allclose(anyfc.to_numpy(model.predict(X, batch_size=4)), whole)


@pytest.mark.parametrize("source", ["list", "numpy", "array_api_strict", "torch", "jax"])
def test_inputs_from_other_libraries_are_moved_once(bk, source, rng):
    model = _net(bk)
    X, y = rng.standard_normal((12, 4)), rng.integers(0, 3, 12)
    expected = anyfc.to_numpy(model.predict(X))
    if source == "list":
        Xo, yo = X.tolist(), y.tolist()
    else:
        pytest.importorskip(source)
        Xo, yo = anyfc.to_backend(X, source, dtype="float64"), anyfc.to_backend(y, source)
    got = model.predict(Xo)
    assert _backend.namespace_of(got) is bk.xp and _backend.device_of(got) == bk.device
    np.testing.assert_allclose(anyfc.to_numpy(got), expected, rtol=1e-12)
    assert model.evaluate(Xo, yo) == pytest.approx(model.evaluate(X, y), rel=1e-12)


def test_same_seed_same_training_on_every_backend(bk, rng):
    X, y = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    ref = _net(_NumpyBackend)
    ref.fit(X, y, epochs=2, batch_size=8, seed=3, verbose=0)
    model = _net(bk)
    model.fit(X, y, epochs=2, batch_size=8, seed=3, verbose=0)
    for a, b in zip(model.layers, ref.layers):
        np.testing.assert_allclose(anyfc.to_numpy(a.w), anyfc.to_numpy(b.w), rtol=1e-9)


class _NumpyBackend:
    @staticmethod
    def dense(*args, **kwargs):
        return anyfc.Dense(*args, backend="numpy", dtype="float64", **kwargs)


def test_digits_reach_95_percent(cpu_bk, digits):
    X_train, X_test, y_train, y_test = digits
    model = anyfc.Sequential(
        [anyfc.Dense(64, 64, seed=0), anyfc.Dense(64, 10, "identity", seed=1)],
        backend=cpu_bk.name, device=cpu_bk.device_name)
    model.fit(X_train, y_train, epochs=15, batch_size=32, verbose=0, seed=0,
              optimizer=anyfc.optimizers.Adam(lr=0.01))
    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    assert accuracy >= 0.95, f"{cpu_bk}: held-out accuracy {accuracy:.3f}"


def test_dask_parameters_stay_concrete():
    pytest.importorskip("dask")
    model = anyfc.Sequential([anyfc.Dense(3, 4, backend="dask", seed=0),
                              anyfc.Dense(4, 2, "identity", backend="dask", seed=1)])
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 3)), rng.integers(0, 2, 64)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    sizes = [len(layer.w.__dask_graph__()) for layer in model.layers]
    model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    assert [len(layer.w.__dask_graph__()) for layer in model.layers] == sizes
    assert max(sizes) <= 2  # one persisted chunk, not a graph of every past step


def test_layer_sizes_must_chain():
    with pytest.raises(ValueError, match="layer 1 gives 5 outputs but layer 2 takes 6"):
        anyfc.Sequential([anyfc.Dense(2, 3), anyfc.Dense(3, 5), anyfc.Dense(6, 1)])


def test_layers_are_moved_to_the_model_backend_and_dtype():
    model = anyfc.Sequential([anyfc.Dense(2, 3, seed=0), anyfc.Dense(3, 1, seed=1)],
                             loss="mean_squared_error", backend="array_api_strict",
                             device="device1", dtype="float64")
    import array_api_strict as strict

    for layer in model.layers:
        assert layer.backend == "array_api_strict" and layer.dtype == strict.float64
        assert layer.device == strict.Device("device1")


def test_fit_rejects_mismatched_rows_and_features(rng):
    model = anyfc.Sequential([anyfc.Dense(4, 3, "identity")])
    with pytest.raises(ValueError, match="5 features per row but the first layer takes 4"):
        model.fit(rng.standard_normal((10, 5)), rng.integers(0, 3, 10), verbose=0)
    with pytest.raises(ValueError, match="10 rows but y has 9"):
        model.fit(rng.standard_normal((10, 4)), rng.integers(0, 3, 9), verbose=0)
