"""Hostile use of models: no silent wrong answer, no half-changed model, errors in the
user's language. Each test runs on every backend of the matrix unless it says otherwise.

Companions: tests/test_transfers.py (arrays entering anyfc never crash or alias) and
tests/test_checkpoint_untrusted.py (files read as untrusted input).
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyfc
from anyfc import _backend
from tests.helpers.hostile import RNG, X, Y, _assert_same, _model, _state, _trained

# ---------------------------------------------------------------- structure


def test_one_layer_object_may_appear_once(bk):
    layer = bk.dense(4, 4, seed=0)
    with pytest.raises(ValueError, match="layer 1 is the same object as layer 0"):
        anyfc.Sequential([layer, layer, bk.dense(4, 3, "identity", seed=1)])
    model = _trained(bk)
    before = _state(model)
    model.layers.append(model.layers[0])  # a repeat slipped in after construction
    for call in (lambda: model.fit(X, Y, verbose=0), lambda: model.predict(X),
                 lambda: model.evaluate(X, Y)):
        with pytest.raises(ValueError, match="same object as layer 0"):
            call()
    model.layers.pop()
    _assert_same(before, _state(model))


def test_reshaped_parameters_are_refused_where_used(bk, tmp_path):
    model = _trained(bk)
    path = tmp_path / "good.npz"
    model.save(path)
    good = path.read_bytes()
    model.layers[0].w = bk.asarray(np.zeros((5, 6)))
    for call in (lambda: model.fit(X, Y, verbose=0), lambda: model.predict(X),
                 lambda: model.save(path)):
        with pytest.raises(ValueError, match=r"layers.0.w has shape \(5, 6\).*needs \(4, 6\)"):
            call()
    assert path.read_bytes() == good  # the good checkpoint was not touched


def test_parameters_of_another_placement_are_refused(bk):
    model = _trained(bk)
    model.layers[1].b = np.zeros(3, dtype=np.float32)
    if bk.name == "numpy":  # same library: only the dtype differs
        match = "float32.*the model is numpy float64"
    else:
        match = "numpy.ndarray.*the model is"
    with pytest.raises(TypeError, match=match):
        model.predict(X)


@pytest.mark.parametrize("change", ["activation", "layer", "loss_free_alpha"])
def test_changing_the_model_between_fits_trains_the_new_model(bk, change):
    """On JAX the training step is compiled: it must be rebuilt when what it closed over
    changes, never keep training the old network."""
    opt = anyfc.optimizers.SGD(0.1)
    model = _model(bk, activation="tanh")
    model.fit(X, Y, epochs=1, batch_size=8, optimizer=opt, shuffle=False, verbose=0)
    if change == "activation":
        model.layers[0].activation = anyfc.activations.get("relu")
    elif change == "layer":
        model.layers[1] = bk.dense(6, 3, "identity", seed=5)
    else:
        model.layers[0].activation = anyfc.activations.LeakyReLU(0.2)
        model.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        model.layers[0].activation.alpha = 0.5  # a setting changed in place
    reference = anyfc.Sequential(
        [anyfc.Dense.from_params(*(anyfc.to_backend(getattr(model.layers[i], n), "numpy")
                                   for n in "wb"), model.layers[i].activation)
         for i in range(2)])
    model.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    reference.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0,
                  optimizer=anyfc.optimizers.SGD(0.1))
    for a, b in zip(model.layers, reference.layers):
        np.testing.assert_allclose(anyfc.to_numpy(a.w), b.w, rtol=1e-9, atol=1e-12)


def test_softmax_with_one_output_is_refused_with_the_loss_to_use(bk):
    with pytest.raises(ValueError, match="at least 2 outputs.*binary_cross_entropy"):
        anyfc.Sequential([bk.dense(4, 1, "identity", seed=0)])


# ---------------------------------------------------------------- all or nothing


def test_fit_checks_every_argument_before_changing_anything(bk):
    model = _trained(bk)
    before = _state(model)
    new_opt = anyfc.optimizers.SGD(0.5)
    for kwargs, pattern in [
        ({"seed": "abc"}, "seed must be"),
        ({"seed": -1}, "seed must be"),
        ({"validation_data": (X,)}, r"validation_data must be a pair \(X, y\), got a tuple of "
                                    "length 1"),
        ({"validation_data": X}, "validation_data must be a pair"),
        ({"validation_data": (X, Y[:3])}, "validation y has 3 rows"),
        ({"epochs": 1.5}, "epochs must be a non-negative integer"),
        ({"batch_size": np.float64(8)}, "batch_size must be a positive integer"),
        ({"verbose": "loud"}, "verbose"),
        ({"strategy": "magic"}, "unknown strategy"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            model.fit(X, Y, optimizer=new_opt, **{"verbose": 0, **kwargs})
        _assert_same(before, _state(model))
        assert model.optimizer is not new_opt


def test_an_optimizer_used_with_another_model_is_refused(bk):
    other = anyfc.Sequential([bk.dense(4, 9, seed=0), bk.dense(9, 3, "identity", seed=1)])
    opt = anyfc.optimizers.Adam(0.01)
    other.fit(X, Y, epochs=1, optimizer=opt, verbose=0)
    model = _trained(bk)
    before = _state(model)
    with pytest.raises(ValueError, match="was used with another model"):
        model.fit(X, Y, optimizer=opt, verbose=0)
    _assert_same(before, _state(model))


def test_an_interrupted_epoch_is_undone(bk, monkeypatch):
    model = _trained(bk)
    before = _state(model)
    calls = {"n": 0}
    real_step = model._train_step

    def failing_step(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(model, "_train_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    _assert_same(before, _state(model))


def test_a_failed_move_changes_nothing(bk, monkeypatch):
    model = _trained(bk)
    before = _state(model)
    real = _backend.to_backend
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("transfer failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(_backend, "to_backend", flaky)
    target = "numpy" if bk.name != "numpy" else "array_api_strict"
    with pytest.raises(RuntimeError, match="transfer failed"):
        model.to(target)
    monkeypatch.undo()
    _assert_same(before, _state(model))


def test_a_model_trained_on_any_backend_moves_anywhere(bk):
    model = _trained(bk)
    expected = anyfc.to_numpy(model.predict(X))
    model.to("numpy")
    np.testing.assert_allclose(anyfc.to_numpy(model.predict(X)), expected, rtol=1e-10)
    model.fit(X, Y, epochs=1, verbose=0)
    model.to(bk.name, bk.device_name)
    model.fit(X, Y, epochs=1, verbose=0)


def test_load_state_dict_is_all_or_nothing_and_owns_its_arrays(bk):
    model = _trained(bk)
    before = _state(model)
    good = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    for key, value, error, pattern in [
        ("layers.1.b", np.array([0.0, np.nan, 0.0]), ValueError, "layers.1.b holds NaN"),
        ("layers.1.b", np.zeros(4), ValueError, r"layers.1.b has shape \(4,\)"),
        ("layers.1.w", np.full((6, 3), "a"), TypeError, "layers.1.w has dtype"),
    ]:
        bad = {k: v + 1.0 for k, v in good.items()}
        bad[key] = value
        with pytest.raises(error, match=pattern):
            model.load_state_dict(bad)
        _assert_same(before, _state(model))
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([("layers.0.w", good["layers.0.w"])])
    mine = {k: v.copy() for k, v in good.items()}
    for v in mine.values():
        v.flags.writeable = False  # read-only, as a memory-mapped file would be
    model.load_state_dict(mine)
    model.fit(X, Y, epochs=1, verbose=0)
    for key, value in mine.items():
        np.testing.assert_array_equal(value, good[key])  # never written into


def test_state_dict_copies_survive_training(bk):
    model = _trained(bk)
    live, copies = model.state_dict(), model.state_dict(copy=True)
    kept = {k: anyfc.to_numpy(v) for k, v in copies.items()}
    model.fit(X, Y, epochs=2, verbose=0)
    for key, value in copies.items():
        np.testing.assert_array_equal(anyfc.to_numpy(value), kept[key])
        anyfc.to_numpy(live[key])  # the live arrays are still readable (no donation)


def test_from_params_owns_copies(bk):
    w, b = np.ones((4, 3)), np.zeros(3)
    w.flags.writeable = b.flags.writeable = False
    layer = anyfc.Dense.from_params(bk.asarray(w), bk.asarray(b), "identity")
    model = anyfc.Sequential([layer])
    model.fit(X, Y, epochs=1, verbose=0)
    np.testing.assert_array_equal(w, np.ones((4, 3)))
    with pytest.raises(TypeError, match="same library, device and dtype"):
        anyfc.Dense.from_params(bk.asarray(w), bk.asarray(b, "float32"))


# ---------------------------------------------------------------- divergence


def test_divergence_in_the_last_step_is_caught_and_undone(bk):
    """One batch per epoch: the loss before the only update is finite, the model after it
    is not usable. fit must see it and give back the model from before the epoch."""
    model = _model(bk, activation="relu", dtype="float32")
    model.fit(X, Y, epochs=1, batch_size=24, optimizer=anyfc.optimizers.SGD(0.01), verbose=0)
    before = _state(model)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
            model.fit(X, Y, epochs=1, batch_size=24, optimizer=anyfc.optimizers.Adam(lr=1e30),
                      verbose=0)
    after = _state(model)
    assert after[0].keys() == before[0].keys()
    for key, value in before[0].items():
        np.testing.assert_array_equal(after[0][key], value)
        assert np.all(np.isfinite(after[0][key]))
    assert np.all(np.isfinite(anyfc.to_numpy(model.predict(X))))


def test_divergence_restores_the_optimizer_state_too(bk):
    model = _model(bk, activation="relu", loss="mean_squared_error", n_out=1)
    y = RNG.standard_normal(24) * 100
    opt = anyfc.optimizers.SGD(1e-6, momentum=0.9)
    model.fit(X * 100, y, epochs=1, batch_size=4, optimizer=opt, seed=0, verbose=0)
    before = _state(model)
    opt.lr = 1e30
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError, match="diverged"):
            model.fit(X * 100, y, epochs=2, batch_size=4, seed=0, verbose=0)
    opt.lr = 1e-6
    after = _state(model)
    _assert_same(before[:2] + (None, before[3]), after[:2] + (None, after[3]))
    assert model.optimizer.t == before[2][1]


def test_nan_parameters_are_refused_before_training(bk):
    model = _trained(bk)
    w = anyfc.to_numpy(model.layers[0].w)
    w[0, 0] = np.nan
    model.layers[0].w = bk.asarray(w)
    with pytest.raises(ValueError, match="parameters, buffers or optimizer state hold NaN"):
        model.fit(X, Y, verbose=0)


# ---------------------------------------------------------------- errors in the user's words


def test_numpy_scalars_are_accepted_wherever_numbers_are(bk):
    n_classes = np.int64(Y.max() + 1)
    model = anyfc.Sequential([bk.dense(np.int64(4), np.int32(5), seed=np.int64(0)),
                              bk.dense(np.int64(5), n_classes, "identity", seed=1)])
    opt = anyfc.optimizers.SGD(lr=np.float32(0.1), momentum=np.float64(0.5))
    model.fit(X, Y, epochs=np.int64(1), batch_size=np.int64(8), optimizer=opt,
              seed=np.int64(0), verbose=0)
    assert tuple(model.predict(X, batch_size=np.int64(5)).shape) == (24, 3)
    anyfc.activations.LeakyReLU(np.float32(0.1))


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, "8", True])
def test_evaluate_and_predict_refuse_bad_batch_sizes(bk, batch_size):
    model = _trained(bk)
    for call in (model.evaluate, lambda X, y, **k: model.predict(X, **k)):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            call(X, Y, batch_size=batch_size)


def test_evaluate_matches_itself_for_any_batch_size(bk):
    model = _trained(bk)
    whole = model.evaluate(X, Y, batch_size=None)
    for batch_size in (1, 5, 24, 100):
        split = model.evaluate(X, Y, batch_size=batch_size)
        assert split["accuracy"] == whole["accuracy"]
        assert split["loss"] == pytest.approx(whole["loss"], rel=1e-9)


def test_class_labels_beyond_int32_are_refused_not_wrapped(bk):
    model = _trained(bk)
    before = _state(model)
    y = Y.copy().astype(np.int64)
    y[5] = 2**32 + 1  # wraps to 1 in int32: a silently wrong label
    with pytest.raises(ValueError, match="class label 4294967297, outside 0..2"):
        model.fit(X, y, verbose=0)
    _assert_same(before, _state(model))


def test_large_integer_regression_targets_keep_their_value(bk):
    model = _model(bk, loss="mean_squared_error", n_out=1)
    y = np.full(24, 2**31 + 2**20, dtype=np.int64)  # exact in float64, wraps in int32
    loss = model.evaluate(X, y)["loss"]
    pred = anyfc.to_numpy(model.predict(X))[:, 0]
    np.testing.assert_allclose(loss, np.mean((pred - y.astype(np.float64)) ** 2), rtol=1e-6)


def test_integer_labels_give_no_warning(bk):
    model = _model(bk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, Y.astype(np.int64), epochs=1, batch_size=8, verbose=0, seed=0)
        model.fit(X, Y.astype(np.int32), epochs=1, batch_size=8, verbose=0, seed=0)
        model.evaluate(X, Y)
        model.predict(X)


def test_values_too_large_for_the_dtype_are_named_as_such(bk):
    model = _trained(bk, dtype="float32")
    X_big = X.copy()
    X_big[3, 1] = 1e39  # finite in float64, infinite in float32
    with pytest.raises(ValueError, match=r"too large for float32.*rows \[3\].*float64"):
        model.predict(X_big)
    X_big[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(X_big)


def test_low_level_dense_refuses_another_dtype(bk):
    layer = bk.dense(4, 3, seed=0, dtype="float64")
    with pytest.raises(TypeError, match="dtype float32.*float64"):
        layer.forward(bk.asarray(X[:2], "float32"))
    layer.forward(bk.asarray(X[:2], "float64"))
    with pytest.raises(TypeError, match="dtype float32"):
        layer.backward(bk.asarray(np.ones((2, 3)), "float32"))


@pytest.mark.parametrize("loss,y,pattern", [
    ("softmax_cross_entropy", RNG.standard_normal(24), "loss='mean_squared_error'"),
    ("softmax_cross_entropy", RNG.standard_normal((24, 3)), "loss='mean_squared_error'"),
    ("mean_squared_error", Y, "loss='softmax_cross_entropy'"),
    ("binary_cross_entropy", RNG.standard_normal((24, 3)) * 5, "loss='mean_squared_error'"),
], ids=["regression-labels", "regression-rows", "labels-to-mse", "regression-to-bce"])
def test_a_loss_that_disagrees_with_the_targets_names_the_one_to_use(bk, loss, y, pattern):
    model = _model(bk, loss=loss)
    with pytest.raises(ValueError, match=pattern):
        model.fit(X, y, verbose=0)


def test_softmax_as_an_activation_points_to_the_loss():
    with pytest.raises(ValueError, match="part of the loss 'softmax_cross_entropy'"):
        anyfc.Dense(4, 3, "softmax")


# ---------------------------------------------------------------- inference is stateless


def test_inference_keeps_nothing_on_the_layers(bk):
    model = _trained(bk)
    model.predict(X)
    model.evaluate(X, Y)
    assert all(layer.x is None and layer.y is None for layer in model.layers)


# ---------------------------------------------------------------- any refused call


BAD_CALLS = [
    lambda m: m.fit(X[:, :3], Y, verbose=0),
    lambda m: m.fit(X, Y[:5], verbose=0),
    lambda m: m.fit(X, Y + 3, verbose=0),
    lambda m: m.fit(X, Y, batch_size=0, verbose=0),
    lambda m: m.fit(X, Y, seed=1.5, verbose=0),
    lambda m: m.fit(X, Y, validation_data=(X, Y, Y), verbose=0),
    lambda m: m.fit(X, Y, optimizer="nope", verbose=0),
    lambda m: m.fit(np.where(X > 1, np.nan, X), Y, verbose=0),
    lambda m: m.predict(X[:, :2]),
    lambda m: m.evaluate(X, Y, batch_size=-3),
    lambda m: m.load_state_dict({"layers.0.w": X}),
    lambda m: m.to("numpy", device="gpu:7"),
    lambda m: m.to(dtype="float16"),
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(BAD_CALLS) - 1), rows=st.integers(1, 24),
       backend=st.sampled_from([("numpy", None), ("array_api_strict", "device1")]))
def test_any_refused_call_leaves_the_model_unchanged(index, rows, backend):
    name, device = backend
    model = anyfc.Sequential([anyfc.Dense(4, 6, backend=name, device=device, seed=0),
                              anyfc.Dense(6, 3, "identity", backend=name, device=device,
                                          seed=1)])
    model.fit(X[:rows], Y[:rows], epochs=1, optimizer=anyfc.optimizers.Adam(0.01), verbose=0)
    before = _state(model)
    with pytest.raises((ValueError, TypeError)):
        BAD_CALLS[index](model)
    _assert_same(before, _state(model))


def test_optimizer_state_loaded_from_arrays_never_writes_into_them(bk):
    model = _trained(bk)
    model.optimizer = anyfc.optimizers.SGD(0.1, momentum=0.9)
    model.fit(X, Y, epochs=1, verbose=0)
    mine = {k: anyfc.to_numpy(v) if k not in ("t", "epoch") else v
            for k, v in model.optimizer.state_dict().items()}
    kept = {k: np.copy(v) for k, v in mine.items()}
    model.optimizer.load_state_dict(mine, bk.name, bk.device_name, "float64")
    model.fit(X, Y, epochs=1, verbose=0)
    for key, value in mine.items():
        np.testing.assert_array_equal(value, kept[key], err_msg=key)


def test_models_alike_share_one_compiled_step_and_others_do_not():
    pytest.importorskip("jax")

    def model(activation="tanh"):
        return anyfc.Sequential([anyfc.Dense(4, 6, activation, backend="jax", seed=0),
                                 anyfc.Dense(6, 3, "identity", backend="jax", seed=1)])

    a, b, c = model(), model(), model("relu")
    sgd = anyfc.optimizers.SGD(0.1)
    assert a._compiled_step(sgd) is b._compiled_step(anyfc.optimizers.SGD(0.1))
    assert a._compiled_step(sgd) is not c._compiled_step(sgd)
    # the learning rate is an argument of the step (schedules never recompile it); other
    # settings are constants of it
    assert a._compiled_step(sgd) is a._compiled_step(anyfc.optimizers.SGD(0.2))
    assert a._compiled_step(sgd) is not a._compiled_step(anyfc.optimizers.SGD(0.1, 0.9))

    class Mine(anyfc.Activation):  # not anyfc's: keyed by identity, never shared
        pass

    d = anyfc.Sequential([anyfc.Dense(4, 6, backend="jax"), Mine("tanh", backend="jax"),
                          anyfc.Dense(6, 3, "identity", backend="jax")])
    e = anyfc.Sequential([anyfc.Dense(4, 6, backend="jax"), Mine("tanh", backend="jax"),
                          anyfc.Dense(6, 3, "identity", backend="jax")])
    assert d._compiled_step(sgd) is not e._compiled_step(sgd)
    b.fit(X, Y, epochs=1, optimizer=sgd, seed=0, verbose=0)  # the shared step trains b
    a.fit(X, Y, epochs=1, optimizer=anyfc.optimizers.SGD(0.1), seed=0, verbose=0)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(anyfc.to_numpy(la.w), anyfc.to_numpy(lb.w))
