"""The model's state as one value (``anyfc.state``): groups and paths, all-or-nothing
assignment, snapshots, optimizer state by the same paths, deep copies and pickles, and
moves that never share memory with arrays a caller holds."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import anyfc
from anyfc import _backend
from anyfc.state import ModelState

RNG = np.random.default_rng(7)
X = RNG.standard_normal((24, 5))
Y = RNG.integers(0, 3, 24)


def _model(bk, rate=0.25):
    layers = [bk.dense(5, 8, "relu", seed=0),
              anyfc.BatchNorm(8, backend=bk.name, device=bk.device_name, dtype="float64"),
              anyfc.ReLU(backend=bk.name, device=bk.device_name, dtype="float64"),
              anyfc.Dropout(rate, seed=3, backend=bk.name, device=bk.device_name,
                            dtype="float64"),
              bk.dense(8, 3, "identity", seed=1)]
    return anyfc.Sequential(layers)


def _host(state):
    return {k: anyfc.to_numpy(v) for k, v in state.items()}


def test_the_state_has_its_groups_keyed_by_path(bk):
    state = _model(bk).state()
    assert list(state.params) == ["layers.0.w", "layers.0.b", "layers.1.gamma",
                                  "layers.1.beta", "layers.4.w", "layers.4.b"]
    assert list(state.buffers) == ["layers.1.running_mean", "layers.1.running_var"]
    assert list(state.rng) == ["layers.3"]
    assert list(state.arrays()) == ["layers.0.w", "layers.0.b", "layers.1.gamma",
                                    "layers.1.beta", "layers.1.running_mean",
                                    "layers.1.running_var", "layers.4.w", "layers.4.b"]


def test_set_state_is_all_or_nothing(bk):
    model = _model(bk)
    before = _host(model.state_dict())
    good = model.state(rng=False).copy()
    params = {k: v * 2 for k, v in good.params.items()}
    bad = dict(params, **{"layers.4.b": bk.asarray(np.zeros(4))})
    with pytest.raises(ValueError, match=r"layers\.4\.b has shape \(4,\)"):
        model.set_state(ModelState(bad, good.buffers))
    missing = {k: v for k, v in params.items() if k != "layers.0.w"}
    with pytest.raises(ValueError, match=r"missing \['layers\.0\.w'\]"):
        model.set_state(ModelState(missing, good.buffers))
    with pytest.raises(TypeError, match="ModelState"):
        model.set_state(model.state_dict())  # type: ignore[arg-type]
    after = _host(model.state_dict())
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    model.set_state(ModelState(params, good.buffers))
    np.testing.assert_array_equal(anyfc.to_numpy(model.layers[0].w), 2 * before["layers.0.w"])


def test_a_copied_state_rolls_training_back_generators_included(bk):
    model = _model(bk)
    model.fit(X, Y, epochs=1, batch_size=8, seed=0, verbose=0)
    saved = model.state().copy()
    opt_saved = model.optimizer.snapshot()
    first = model.fit(X, Y, epochs=1, batch_size=8, seed=1, verbose=0).history["loss"]
    moved = _host(model.state_dict())
    model.set_state(saved)
    model.optimizer.restore(opt_saved)
    assert not np.array_equal(moved["layers.0.w"], anyfc.to_numpy(model.layers[0].w))
    again = model.fit(X, Y, epochs=1, batch_size=8, seed=1, verbose=0).history["loss"]
    assert again == first  # the same dropout masks, moments and weights: the same run
    for key, value in _host(model.state_dict()).items():
        np.testing.assert_allclose(value, moved[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_optimizer_state_is_keyed_by_the_parameter_paths(bk):
    model = _model(bk)
    model.fit(X, Y, epochs=1, batch_size=8, seed=0, verbose=0,
              optimizer=anyfc.optimizers.Adam(0.01))
    assert set(model.optimizer.state) == set(model.state().params)
    for key, value in model.state().params.items():
        assert tuple(model.optimizer.state[key]["m"].shape) == tuple(value.shape)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_trained_model_copies_with_its_optimizer_and_shares_nothing(bk, how):
    model = _model(bk)
    model.fit(X, Y, epochs=2, batch_size=8, seed=0, verbose=0,
              optimizer=anyfc.optimizers.Adam(0.01))
    twin = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    assert (twin.backend, twin.device, twin.dtype) == (model.backend, model.device, model.dtype)
    for layer in twin.layers:
        assert (layer.xp, layer.device, layer.dtype) == (model.xp, model.device, model.dtype)
    np.testing.assert_array_equal(anyfc.to_numpy(twin.predict(X)),
                                  anyfc.to_numpy(model.predict(X)))
    assert twin.optimizer is not model.optimizer and twin.optimizer.t == model.optimizer.t
    assert set(twin.optimizer.state) == set(model.optimizer.state)
    for key, slots in model.optimizer.state.items():
        for slot, value in slots.items():
            mine = twin.optimizer.state[key][slot]
            assert _backend.namespace_of(mine) is model.xp
            np.testing.assert_array_equal(anyfc.to_numpy(mine), anyfc.to_numpy(value))
    # training on goes alike (moments, step count, dropout streams carried) ...
    before = _host(model.state_dict())
    h_twin = twin.fit(X, Y, epochs=1, batch_size=8, seed=5, verbose=0).history["loss"]
    # ... and never shows through in the original
    for key, value in _host(model.state_dict()).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    h_model = model.fit(X, Y, epochs=1, batch_size=8, seed=5, verbose=0).history["loss"]
    assert h_twin == pytest.approx(h_model, rel=1e-12)


def test_an_unpickled_layer_on_a_missing_device_is_a_clear_error():
    layer = anyfc.Dense(3, 2, "relu", backend="numpy", seed=0)
    state = layer.__getstate__()
    state["_where"] = ("numpy", "cuda:7", "float32")
    with pytest.raises(ValueError, match="cuda:7"):
        anyfc.Dense.__new__(anyfc.Dense).__setstate__(state)


SOURCES = ["numpy", "torch", "jax", "array_api_strict"]


@pytest.mark.cross
@pytest.mark.hostile
@pytest.mark.parametrize("source", SOURCES)
def test_a_moved_model_never_writes_into_arrays_the_caller_holds(cpu_bk, source):
    """A JAX model moved to torch used to train in place in memory the JAX arrays still
    held (DLPack), and one moved to array_api_strict could not train (read-only)."""
    if source not in anyfc.available_backends():
        pytest.skip(f"{source} is not installed in this session")
    if cpu_bk.name == source and cpu_bk.device_name is None:
        pytest.skip("the same library and device: nothing moves")
    model = anyfc.Sequential([anyfc.Dense(5, 8, "tanh", backend=source, dtype="float64",
                                          seed=0),
                              anyfc.Dense(8, 3, "identity", backend=source, dtype="float64",
                                          seed=1)])
    model.fit(X, Y, epochs=1, batch_size=8, seed=0, verbose=0,
              optimizer=anyfc.optimizers.Adam(0.01))
    held = model.state_dict()  # the live arrays, which the caller keeps
    held_state = {k: dict(v) for k, v in model.optimizer.state.items()}
    values = _host(held)
    model.to(cpu_bk.name, cpu_bk.device_name)
    model.fit(X, Y, epochs=2, batch_size=8, seed=0, verbose=0)
    for key, value in held.items():
        np.testing.assert_array_equal(anyfc.to_numpy(value), values[key], err_msg=key)
    for key, slots in held_state.items():
        for slot, value in slots.items():
            assert not np.array_equal(anyfc.to_numpy(value),
                                      anyfc.to_numpy(model.optimizer.state[key][slot]))
    assert not np.array_equal(anyfc.to_numpy(model.layers[0].w), values["layers.0.w"])
