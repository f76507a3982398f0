"""Independent references: every number anyfc reports, and every update it makes, against
NumPy written here from the definitions, on the same weights.

Each check below guards against a kind of bug that once survived the suite (issue #15):
a metric is compared with a value computed apart (never "the loss went down"), every
optimizer option with its equation over several steps, the training loop with the rows it
must visit, divergence rollback with the optimizer's state, checkpoints with every
non-default setting, and ``Sequential.to`` with the optimizer's arrays.

Only the public API is used (``Sequential``, the layers, ``anyfc.optimizers``, ``fit``,
``evaluate``, ``predict``, ``state_dict``/``load_state_dict``, ``save``/``load``, ``to``,
``anyfc.to_numpy``). Everything is float64, so the references agree to ~1e-12.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any

import array_api_compat
import numpy as np
import pytest

import anyfc
from anyfc import optimizers
from tests.references import (
    ATOL,
    B0,
    CASES,
    GRADS,
    LOSS_TARGETS,
    RNG,
    RTOL,
    STEPS,
    T_DIV,
    T_OPT,
    W0,
    X_DIV,
    X_OPT,
    X_VAL,
    Z4,
    RefOptimizer,
    X,
    _assert_discriminates_thresholds,
    _mlp,
    _mlp_params,
    _ref_weighted,
    _sigmoid,
    _strict,
    assert_opt_state,
    assert_same_state,
    host,
    host_opt_state,
    host_state,
    ref_loss,
    ref_metrics,
    ref_output,
    ref_probabilities,
    ref_train_linear,
)

# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize("case", list(CASES))
def test_fit_history_equals_numpy_training(bk, case):
    """loss, accuracy, val_loss, val_accuracy of every epoch, and the final weights, equal
    NumPy's training of the same linear model (23 rows in batches of 5: the last batch
    holds 3; validation over 1100 rows: two evaluation batches)."""
    loss, k, y, y_val = CASES[case]
    model = anyfc.Sequential([bk.dense(4, k, "identity", seed=3)], loss=loss)
    start = host_state(model)
    history = model.fit(X, y, epochs=3, batch_size=5, shuffle=False, verbose=0,
                        optimizer=optimizers.SGD(0.3), validation_data=(X_VAL, y_val))
    expected, w, b = ref_train_linear(loss, start["layers.0.w"], start["layers.0.b"], X, y,
                                      5, 3, RefOptimizer("SGD", lr=0.3), (X_VAL, y_val))
    assert set(history) == set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(history[key], values, rtol=RTOL, err_msg=key)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(end["layers.0.b"], b, rtol=RTOL, atol=ATOL)
    if loss == "binary_cross_entropy":
        _assert_discriminates_thresholds(X_VAL @ w + b)


@pytest.mark.parametrize("batch_size", [1, 5, 23, None])
@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_equals_numpy_on_the_same_weights(bk, case, batch_size):
    """evaluate's loss and accuracy over any batching (partial last batches included)
    are the whole data's mean loss and accuracy; binary accuracy counts every label."""
    loss, k, y, _ = CASES[case]
    model = _mlp(bk, loss, k)
    got = model.evaluate(X, y, batch_size=batch_size)
    z = ref_output(_mlp_params(model), X)
    expected = ref_metrics(loss, z, y)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=RTOL), key
    if loss == "binary_cross_entropy":
        _assert_discriminates_thresholds(z)


@pytest.mark.parametrize("case", list(CASES))
def test_predict_equals_the_reference_softmax_sigmoid_or_output(bk, case):
    loss, k, _, _ = CASES[case]
    model = _mlp(bk, loss, k)
    expected = ref_probabilities(loss, ref_output(_mlp_params(model), X))
    for batch_size in (4, None):
        got = host(model.predict(X, batch_size=batch_size))
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_binary_accuracy_thresholds_the_probability_at_one_half(bk):
    """Hand-made logits around 0 and ½: only ``σ(z) > ½`` (i.e. ``z > 0``) gives 4/6."""
    model = anyfc.Sequential([bk.dense(1, 1, "identity")], loss="binary_cross_entropy")
    model.load_state_dict({"layers.0.w": np.ones((1, 1)), "layers.0.b": np.zeros(1)})
    z = np.array([[-1.0], [-0.25], [0.25], [0.4], [0.75], [2.0]])
    t = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    # predicted (z > 0):    0 0 1 1 1 1  -> hits 1 0 0 1 1 1 = 4/6
    result = model.evaluate(z, t, batch_size=4)
    assert result["accuracy"] == pytest.approx(4 / 6, rel=1e-12)
    np.testing.assert_allclose(host(model.predict(z)), _sigmoid(z), rtol=RTOL)


# ---------------------------------------------------------------- optimizers

# case -> (optimizer class, settings, the same without the option under test)
OPTIONS: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]] = {
    "sgd": ("SGD", {"lr": 0.1}, None),
    "sgd_momentum": ("SGD", {"lr": 0.1, "momentum": 0.9}, {"lr": 0.1}),
    "sgd_nesterov": ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
                     {"lr": 0.1, "momentum": 0.9}),
    "sgd_weight_decay": ("SGD", {"lr": 0.1, "weight_decay": 0.3}, {"lr": 0.1}),
    "sgd_all": ("SGD", {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.3},
                {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    "adagrad": ("AdaGrad", {"lr": 0.1}, None),
    "adagrad_weight_decay": ("AdaGrad", {"lr": 0.1, "weight_decay": 0.3}, {"lr": 0.1}),
    "rmsprop": ("RMSProp", {"lr": 0.05, "rho": 0.8}, None),
    "rmsprop_weight_decay": ("RMSProp", {"lr": 0.05, "rho": 0.8, "weight_decay": 0.3},
                             {"lr": 0.05, "rho": 0.8}),
    "adam": ("Adam", {"lr": 0.05, "beta1": 0.8, "beta2": 0.95}, None),
    "adam_weight_decay": ("Adam", {"lr": 0.05, "weight_decay": 5.0}, {"lr": 0.05}),
    "adamw": ("AdamW", {"lr": 0.05, "weight_decay": 0.3}, {"lr": 0.05, "weight_decay": 0.0}),
}


PARAM_KEYS = {"w": "0.w", "b": "0.b"}


def _ref_optimizer_run(kind: str, settings: dict[str, Any]
                       ) -> tuple[dict[str, list[float]], np.ndarray, np.ndarray, dict]:
    ref = RefOptimizer(kind, **settings)
    history, w, b = ref_train_linear("mean_squared_error", W0, B0, X_OPT, T_OPT, 10, STEPS, ref)
    return history, w, b, ref.state_dict(PARAM_KEYS)


def test_every_option_changes_the_reference():
    """The cases below are only worth something if each option, on this problem, moves the
    weights: an implementation that ignored it would then fail."""
    for case, (kind, settings, without) in OPTIONS.items():
        if without is None:
            continue
        kind_without = "Adam" if kind == "AdamW" else kind
        _, w1, _, _ = _ref_optimizer_run(kind, settings)
        _, w0, _, _ = _ref_optimizer_run(kind_without, without)
        # the tests compare to ~1e-10; Adam's steps hardly depend on the gradient's size,
        # so its L2 term moves the weights least (~5e-4 here)
        assert np.max(np.abs(w1 - w0)) > 1e-4, case
    # decoupled decay is not the L2 penalty
    _, w_adamw, _, _ = _ref_optimizer_run("AdamW", {"lr": 0.05, "weight_decay": 0.3})
    _, w_l2, _, _ = _ref_optimizer_run("Adam", {"lr": 0.05, "weight_decay": 0.3})
    assert np.max(np.abs(w_adamw - w_l2)) > 1e-4


@pytest.mark.parametrize("case", list(OPTIONS))
def test_optimizer_in_fit_follows_its_equation(bk, case):
    """One full batch per epoch, so each epoch is one optimizer step: four steps of the
    optimizer inside ``fit`` (compiled where the backend compiles) against the equation:
    the loss before each step, the weights and the optimizer's state after the last."""
    kind, settings, _ = OPTIONS[case]
    model = anyfc.Sequential([bk.dense(3, 2, "identity")], loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    opt = getattr(optimizers, kind)(**settings)
    history = model.fit(X_OPT, T_OPT, epochs=STEPS, batch_size=10, shuffle=False, verbose=0,
                        optimizer=opt)
    expected, w, b, state = _ref_optimizer_run(kind, settings)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=RTOL)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(end["layers.0.b"], b, rtol=RTOL, atol=ATOL)
    assert_opt_state(host_opt_state(opt), state)


@pytest.mark.parametrize("case", list(OPTIONS))
def test_optimizer_step_follows_its_equation(bk, case):
    """``optimizer.step(layers)`` on gradients set by hand, four steps."""
    kind, settings, _ = OPTIONS[case]
    layer = bk.dense(3, 2, "identity")
    layer.w, layer.b = bk.asarray(W0), bk.asarray(B0)
    opt = getattr(optimizers, kind)(**settings)
    ref = RefOptimizer(kind, **settings)
    params = {"w": W0.copy(), "b": B0.copy()}
    for gw, gb in GRADS:
        layer.grad_w, layer.grad_b = bk.asarray(gw), bk.asarray(gb)
        opt.step([layer])
        ref.step(params, {"w": gw, "b": gb})
    np.testing.assert_allclose(host(layer.w), params["w"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(host(layer.b), params["b"], rtol=RTOL, atol=ATOL)
    assert_opt_state(host_opt_state(opt), ref.state_dict(PARAM_KEYS))


# ---------------------------------------------------------------- every row, once an epoch

# one-hot rows: row i of the data moves only row i of w, by -lr·(2/|B|)·(b - t_i) from
# w = 0, b = 0; so each row's move tells which batch size it was trained in, and whether
# it was trained at all. b moves by O(lr) per batch, hence the tolerance.
N_ROWS = 11
ONE_HOT = np.eye(N_ROWS)
TARGETS = 1.0 + 0.1 * np.arange(N_ROWS)
LR = 1e-6


def _one_hot_model(backend: str, device: Any) -> anyfc.Sequential:
    model = anyfc.Sequential([anyfc.Dense(N_ROWS, 1, "identity", backend=backend,
                                          device=device, dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": np.zeros((N_ROWS, 1)), "layers.0.b": np.zeros(1)})
    return model


def _batch_size_of_each_row(model: anyfc.Sequential) -> np.ndarray:
    """The size of the batch each row was trained in, from how far it moved its weight."""
    moved = host(model.state_dict()["layers.0.w"])[:, 0]
    share = moved / (2 * LR * TARGETS)  # 1/|B| for a row trained once, 0 if never
    assert np.all(share > 0), f"rows never trained: {np.flatnonzero(share <= 0).tolist()}"
    sizes = 1.0 / share
    np.testing.assert_allclose(sizes, np.round(sizes), rtol=1e-4,
                               err_msg="a row trained more than once, or in no whole batch")
    return np.round(sizes).astype(int)


def _expected_sizes(chunks: list[int], batch_size: int) -> Counter:
    """Rows per batch size: batches of ``batch_size`` within each chunk, the last partial."""
    sizes: Counter = Counter()
    for c in chunks:
        sizes[batch_size] += batch_size * (c // batch_size)
        if c % batch_size:
            sizes[c % batch_size] += c % batch_size
    return sizes


def _check_epoch_history(model: anyfc.Sequential, fit: Any) -> None:
    """Two more epochs: each epoch's loss is the mean over all rows (lr is tiny, so the
    model barely moves)."""
    before = ref_loss("mean_squared_error", ref_output(
        [(host(model.state_dict()["layers.0.w"]), host(model.state_dict()["layers.0.b"]),
          "identity")], ONE_HOT), TARGETS)[0]
    history = fit(epochs=2)
    np.testing.assert_allclose(history["loss"], [before, before], rtol=1e-4)


@pytest.mark.parametrize("shuffle", [False, True], ids=["in_order", "shuffled"])
def test_fit_in_memory_trains_every_row_once_per_epoch(bk, shuffle):
    model = _one_hot_model(bk.name, bk.device_name)

    def fit(epochs: int) -> Any:
        return model.fit(ONE_HOT, TARGETS, epochs=epochs, batch_size=4, shuffle=shuffle,
                         seed=5, verbose=0, optimizer=optimizers.SGD(LR))

    fit(1)
    sizes = _batch_size_of_each_row(model)
    assert Counter(sizes.tolist()) == _expected_sizes([N_ROWS], 4)  # 4, 4, then 3
    if not shuffle:
        assert sizes.tolist() == [4] * 8 + [3] * 3
    _check_epoch_history(model, fit)


@pytest.mark.parametrize("shuffle", [False, True], ids=["in_order", "shuffled"])
@pytest.mark.parametrize("strategy", ["auto", "data_parallel"])
def test_fit_on_dask_data_trains_every_row_once_per_epoch(dask_bk, strategy, shuffle):
    """Streaming (batches within each chunk of 6 and 5 rows) and data-parallel training
    (row ranges of the whole array, across chunks), of a NumPy model."""
    da = pytest.importorskip("dask.array")
    model = _one_hot_model("numpy", None)
    Xd = da.from_array(ONE_HOT, chunks=(6, N_ROWS))
    yd = da.from_array(TARGETS, chunks=6)

    def fit(epochs: int) -> Any:
        return model.fit(Xd, yd, epochs=epochs, batch_size=4, shuffle=shuffle, seed=5,
                         verbose=0, strategy=strategy, optimizer=optimizers.SGD(LR))

    fit(1)
    sizes = _batch_size_of_each_row(model)
    chunks = [6, 5] if strategy == "auto" else [N_ROWS]
    assert Counter(sizes.tolist()) == _expected_sizes(chunks, 4)
    if not shuffle:
        assert sizes.tolist() == ([4] * 4 + [2] * 2 + [4] * 4 + [1] if strategy == "auto"
                                  else [4] * 8 + [3] * 3)
    _check_epoch_history(model, fit)


def test_one_epoch_of_one_batch_is_one_full_batch_gradient_step(bk):
    """batch_size ≥ rows: one step with the mean gradient over every row."""
    model = anyfc.Sequential([bk.dense(3, 2, "identity")], loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    model.fit(X_OPT, T_OPT, epochs=1, batch_size=64, verbose=0, seed=1,
              optimizer=optimizers.SGD(0.1))
    _, grad_z, _, _ = ref_loss("mean_squared_error", X_OPT @ W0 + B0, T_OPT)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], W0 - 0.1 * X_OPT.T @ grad_z, rtol=RTOL)
    np.testing.assert_allclose(end["layers.0.b"], B0 - 0.1 * grad_z.sum(axis=0), rtol=RTOL)


def _div_model(bk):
    model = anyfc.Sequential([bk.dense(3, 1, "identity")], loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": np.full((3, 1), 0.1), "layers.0.b": np.zeros(1)})
    return model


def _diverging_fit(model, opt, epochs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return model.fit(X_DIV, T_DIV, epochs=epochs, batch_size=8, shuffle=False,
                         optimizer=opt, verbose=0)


def _exploding_sgd() -> optimizers.SGD:
    """Momentum SGD whose weights grow ~1e40-fold a step: the loss overflows a few epochs
    in (not in the first), while the momentum holds state."""
    return optimizers.SGD(1e40, momentum=0.9)


def test_divergence_in_a_later_epoch_rolls_back_parameters_and_optimizer_state(bk):
    """An epoch that diverges is undone whole: the parameters AND the optimizer's state
    (its velocity and step count) are those after the previous epoch, as a run that
    stopped there has them."""
    first_bad = None
    for epochs in range(1, 8):  # the first epoch that diverges, from a clean start
        try:
            _diverging_fit(_div_model(bk), _exploding_sgd(), epochs)
        except FloatingPointError:
            first_bad = epochs
            break
    assert first_bad is not None and first_bad >= 3, f"diverges at epoch {first_bad}"

    stopped, stopped_opt = _div_model(bk), _exploding_sgd()
    _diverging_fit(stopped, stopped_opt, first_bad - 1)
    expected_params, expected_opt = host_state(stopped), host_opt_state(stopped_opt)
    assert expected_opt["t"] == first_bad - 1
    assert sorted(k for k in expected_opt if k.startswith("state.")) == [
        "state.0.b.v", "state.0.w.v"]

    # diverging in a later epoch of one call
    model, opt = _div_model(bk), _exploding_sgd()
    with pytest.raises(FloatingPointError, match=f"diverged in epoch {first_bad}"):
        _diverging_fit(model, opt, first_bad + 2)
    assert model.optimizer is opt
    assert_same_state(host_state(model), expected_params)
    assert_same_state(host_opt_state(opt), expected_opt)

    # diverging in the first epoch of a later call, the optimizer carried over
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        _diverging_fit(model, None, 3)
    assert model.optimizer is opt
    assert_same_state(host_state(model), expected_params)
    assert_same_state(host_opt_state(opt), expected_opt)


@pytest.mark.parametrize("kind", ["AdaGrad", "RMSProp", "Adam", "AdamW"])
def test_divergence_rolls_back_the_adaptive_optimizers_state(bk, kind):
    """The adaptive optimizers' steps are bounded by lr, so they diverge at once only: a
    state trained with a sane lr, loaded into the same optimizer with lr=1e200, must be
    exactly as loaded after the epoch that diverged."""
    model = _div_model(bk)
    trained = getattr(optimizers, kind)(lr=0.01)
    _diverging_fit(model, trained, 2)
    params, state = host_state(model), host_opt_state(trained)
    assert state["t"] == 2 and any(k.startswith("state.") for k in state)
    exploding = getattr(optimizers, kind)(lr=1e200)
    exploding.load_state_dict(trained.state_dict(), bk.name, bk.device_name, "float64")
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        _diverging_fit(model, exploding, 2)
    assert model.optimizer is trained  # a first epoch that failed keeps the old optimizer
    assert_same_state(host_state(model), params)
    assert_same_state(host_opt_state(exploding), state)
    assert_same_state(host_opt_state(trained), state)


def test_fit_adopts_optimizer_state_loaded_on_another_backend(bk):
    """``optimizer.load_state_dict(sd)`` keeps the arrays on the default backend; ``fit``
    moves ("adopts") them to the model, checks the moved state, and training continues
    exactly as with the optimizer the state came from."""
    model = _div_model(bk)
    trained = optimizers.Adam(0.01)
    _diverging_fit(model, trained, 2)
    start = {k: v for k, v in host_state(model).items()}
    resumed = optimizers.Adam(0.01)
    resumed.load_state_dict(trained.state_dict())  # onto NumPy
    _diverging_fit(model, resumed, 1)
    via_numpy = host_state(model)
    model.load_state_dict(start)
    _diverging_fit(model, trained, 1)
    assert_same_state(host_state(model), via_numpy, exact=False)
    assert_opt_state(host_opt_state(resumed), host_opt_state(trained))


# ---------------------------------------------------------------- checkpoints


def _every_layer(bk) -> list[tuple[anyfc.Layer, dict[str, Any]]]:
    """Every layer type, each with settings other than its defaults, and the settings
    its ``config()`` must report (written out here, not read back from the layer)."""
    where = {"backend": bk.name, "device": bk.device_name, "dtype": "float64"}
    leaky = {"name": "leaky_relu", "alpha": 0.2}
    elu = {"name": "elu", "alpha": 0.5}
    return [
        (anyfc.Dense(5, 8, leaky, init="xavier_uniform", seed=0, **where),
         {"n_in": 5, "n_out": 8, "activation": leaky, "init": "xavier_uniform"}),
        (anyfc.BatchNorm(8, momentum=0.3, eps=1e-3, **where),
         {"n": 8, "momentum": 0.3, "eps": 1e-3}),
        (anyfc.Dropout(0.25, seed=7, **where), {"rate": 0.25, "seed": 7}),
        (anyfc.LeakyReLU(alpha=0.3, **where), {"alpha": 0.3}),
        (anyfc.Dense(8, 8, elu, init="he_uniform", seed=1, **where),
         {"n_in": 8, "n_out": 8, "activation": elu, "init": "he_uniform"}),
        (anyfc.LayerNorm(8, eps=1e-3, **where), {"n": 8, "eps": 1e-3}),
        (anyfc.ELU(alpha=0.7, **where), {"alpha": 0.7}),
        (anyfc.Activation({"name": "leaky_relu", "alpha": 0.05}, **where),
         {"activation": {"name": "leaky_relu", "alpha": 0.05}}),
        (anyfc.Dense(8, 6, "gelu", init="glorot_uniform", seed=2, **where),
         {"n_in": 8, "n_out": 6, "activation": {"name": "gelu"}, "init": "glorot_uniform"}),
        (anyfc.GELU(**where), {}),
        (anyfc.SiLU(**where), {}),
        (anyfc.Softplus(**where), {}),
        (anyfc.Dense(6, 6, "softsign", init="he_normal", seed=3, **where),
         {"n_in": 6, "n_out": 6, "activation": {"name": "softsign"}, "init": "he_normal"}),
        (anyfc.Softsign(**where), {}),
        (anyfc.Sigmoid(**where), {}),
        (anyfc.Tanh(**where), {}),
        (anyfc.ReLU(**where), {}),
        (anyfc.Activation("silu", **where), {"activation": {"name": "silu"}}),
        (anyfc.Dense(6, 3, "identity", init="xavier_normal", seed=4, **where),
         {"n_in": 6, "n_out": 3, "activation": {"name": "identity"}, "init": "xavier_normal"}),
    ]


def _assert_settings(model: anyfc.Sequential, expected: list[tuple[type, dict[str, Any]]]
                     ) -> None:
    assert [type(layer) for layer in model.layers] == [cls for cls, _ in expected]
    for i, (layer, (_, settings)) in enumerate(zip(model.layers, expected)):
        config = layer.config()
        for key, value in settings.items():
            assert config.get(key) == value, f"layer {i} ({type(layer).__name__}) {key}"


def test_every_layer_setting_survives_save_and_load(bk, tmp_path):
    built = _every_layer(bk)
    expected = [(type(layer), settings) for layer, settings in built]
    model = anyfc.Sequential([layer for layer, _ in built])
    _assert_settings(model, expected)
    opt = optimizers.AdamW(lr=0.02, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.05)
    X6, y6 = RNG.standard_normal((30, 5)), RNG.integers(0, 3, 30)
    model.fit(X6, y6, epochs=1, batch_size=10, shuffle=False, optimizer=opt, verbose=0)
    model.save(tmp_path / "every.npz")
    loaded = anyfc.load(tmp_path / "every.npz", backend=bk.name, device=bk.device_name)
    _assert_settings(loaded, expected)
    assert [layer.config() for layer in loaded.layers] == [
        layer.config() for layer in model.layers]
    assert loaded.architecture() == model.architecture()
    assert type(loaded.optimizer) is optimizers.AdamW
    settings = {"lr": 0.02, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.05}
    assert loaded.optimizer.config().items() >= settings.items()
    assert loaded.optimizer.config() == opt.config()
    assert_same_state(host_state(loaded), host_state(model))
    assert_same_state(host_opt_state(loaded.optimizer), host_opt_state(opt))
    np.testing.assert_allclose(host(loaded.predict(X6)), host(model.predict(X6)),
                               rtol=RTOL, atol=ATOL)


def test_a_loaded_model_trains_as_the_saved_one(bk, tmp_path):
    """Settings are used, not only kept: the loaded model (dropout seed, BatchNorm
    momentum, ...) trains on exactly as the one saved."""
    model = anyfc.Sequential([layer for layer, _ in _every_layer(bk)])
    model.save(tmp_path / "fresh.npz")
    loaded = anyfc.load(tmp_path / "fresh.npz", backend=bk.name, device=bk.device_name)
    X6, y6 = RNG.standard_normal((30, 5)), RNG.integers(0, 3, 30)
    for m in (model, loaded):
        m.fit(X6, y6, epochs=2, batch_size=10, shuffle=False, verbose=0,
              optimizer=optimizers.SGD(0.05, momentum=0.5))
    assert_same_state(host_state(loaded), host_state(model), exact=False)


# ---------------------------------------------------------------- moving


def _placement(a: Any) -> tuple[type, Any, Any]:
    return type(a), array_api_compat.device(a), a.dtype


def _trained_with_adam(backend: str, device: Any) -> anyfc.Sequential:
    model = anyfc.Sequential([
        anyfc.Dense(4, 6, "tanh", backend=backend, device=device, dtype="float64", seed=0),
        anyfc.Dense(6, 3, "identity", backend=backend, device=device, dtype="float64",
                    seed=1)])
    model.fit(X, CASES["softmax"][2], epochs=2, batch_size=8, shuffle=False, verbose=0,
              optimizer=optimizers.Adam(0.01))
    return model


def _assert_moved(model: anyfc.Sequential, before: dict[str, Any], reference: Any,
                  rtol: float) -> None:
    """Every parameter and every optimizer state array lives where ``reference`` does,
    and holds the values it held before the move."""
    want = _placement(reference)
    for key, value in model.state_dict().items():
        assert _placement(value) == want, key
    state = model.optimizer.state_dict()
    arrays = [k for k in state if k.startswith("state.")]
    assert state.keys() == before.keys() and arrays and state["t"] == before["t"]
    for key in arrays:
        value = state[key]
        assert _placement(value) == want, f"optimizer {key} left at {_placement(value)}"
        np.testing.assert_allclose(host(value), before[key], rtol=rtol, err_msg=key)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_to_moves_the_optimizer_state(bk, dtype):
    """From NumPy to the backend under test, and back; float32 on the way there."""
    model = _trained_with_adam("numpy", None)
    before = host_opt_state(model.optimizer)
    model.to(bk.name, bk.device_name, dtype)
    _assert_moved(model, before, bk.asarray([0.0], dtype), 1e-6 if dtype == "float32" else 0)
    model.fit(X, CASES["softmax"][2], epochs=1, batch_size=8, verbose=0)  # trains on there
    before = host_opt_state(model.optimizer)
    model.to("numpy", None, "float64")
    _assert_moved(model, before, np.zeros(1), 0)


CPU_BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "dask"]


@pytest.mark.parametrize("target", CPU_BACKENDS)
def test_cross_library_to_moves_the_optimizer_state(bk, target):
    """From the backend under test to each other installed library (the ``cross`` nox
    session installs them all together)."""
    if target == bk.id:
        pytest.skip("the same library and device: test_to_moves_the_optimizer_state")
    if target not in anyfc.available_backends():
        pytest.skip(f"{target} is not installed here (nox -s cross runs this)")
    model = _trained_with_adam(bk.name, bk.device_name)
    before = host_opt_state(model.optimizer)
    expected = host(model.predict(X))
    model.to(target)
    reference = anyfc.to_backend(np.zeros(1), target, dtype="float64")
    _assert_moved(model, before, reference, 0)
    np.testing.assert_allclose(host(model.predict(X)), expected, rtol=RTOL, atol=ATOL)



# ---------------------------------------------------------------- activations: the edges
# Mutation testing of anyfc/activations.py (tests/README.md) left these unchecked: the
# derivative exactly at a kink, the range checks of the settings, the error messages and
# repr. Values away from the kinks are checked against finite differences elsewhere.


@pytest.mark.parametrize("spec, slopes", [
    ("relu", [0.0, 0.0, 1.0, 0.0]),
    ({"name": "leaky_relu", "alpha": 0.2}, [0.2, 0.2, 1.0, 0.2]),
    ({"name": "elu", "alpha": 0.5}, [0.5, 0.5, 1.0, 0.5 * np.exp(-1.0)]),
], ids=["relu", "leaky_relu", "elu"])
def test_the_derivative_at_a_kink_is_the_documented_one(bk, spec, slopes):
    """At u = 0 (and -0) exactly, f'(u) is the left derivative: the docstrings' "1 if
    u > 0 else ..." (PyTorch's convention too), at u = 1 and u = -1 the usual one."""
    layer = anyfc.Activation(spec, backend=bk.name, device=bk.device_name, dtype="float64")
    layer.forward(bk.asarray([[0.0, -0.0, 1.0, -1.0]]))
    grad = layer.backward(bk.asarray(np.ones((1, 4))))
    np.testing.assert_allclose(host(grad), [slopes], rtol=1e-15)


def test_the_sigmoid_is_one_half_at_zero(bk):
    layer = anyfc.Sigmoid(backend=bk.name, device=bk.device_name, dtype="float64")
    np.testing.assert_array_equal(host(layer.forward(bk.asarray([[0.0, -0.0]]))), [[0.5, 0.5]])


@pytest.mark.parametrize("alpha", [0, 0.0, 0.3, 1, 1.0, np.float32(0.5)])
def test_leaky_relu_takes_slopes_from_0_to_1(alpha):
    assert anyfc.activations.get({"name": "leaky_relu", "alpha": alpha}).alpha == float(alpha)
    assert anyfc.LeakyReLU(alpha=alpha).config() == {"alpha": float(alpha)}


@pytest.mark.parametrize("alpha", [True, False, -0.1, 1.5, 2.0, float("nan"), "0.1", None])
def test_leaky_relu_refuses_other_slopes(alpha):
    with pytest.raises(ValueError, match=r"leaky_relu needs a number 0 <= alpha <= 1, got"):
        anyfc.activations.LeakyReLU(alpha)


@pytest.mark.parametrize("alpha", [1e-9, 0.5, 1, 3.5])
def test_elu_takes_positive_alphas(alpha):
    assert anyfc.ELU(alpha=alpha).config() == {"alpha": float(alpha)}


@pytest.mark.parametrize("alpha", [True, 0, 0.0, -1.0, float("nan"), "1", None])
def test_elu_refuses_other_alphas(alpha):
    with pytest.raises(ValueError, match=r"elu needs a number alpha > 0, got"):
        anyfc.activations.ELU(alpha)


def test_activation_names_and_settings_are_checked_with_helpful_messages():
    get = anyfc.activations.get
    listing = r"valid activations are identity, linear, relu, leaky_relu, sigmoid, tanh"
    with pytest.raises(ValueError, match=rf"unknown activation 'nope'; {listing}"):
        get("nope")
    with pytest.raises(ValueError, match=rf"unknown activation {{'name': 'nope'}}; {listing}"):
        get({"name": "nope"})
    with pytest.raises(ValueError, match=rf"unknown activation {{'alpha': 0.1}}; {listing}"):
        get({"alpha": 0.1})  # a config without a name
    with pytest.raises(ValueError, match=r"bad settings for activation \{'name': 'relu', "
                                         r"'alpha': 0.1\}: "):
        get({"name": "relu", "alpha": 0.1})
    with pytest.raises(ValueError, match=r"takes the logits of an 'identity' last layer "
                                         r"\(Dense\(n, classes, 'identity'\)\); predict\(\) "
                                         r"applies the softmax for you$"):
        get("softmax")


def test_activations_repr_their_settings():
    get = anyfc.activations.get
    assert repr(get("relu")) == "ReLU()"
    assert repr(get(None)) == "Identity()"
    assert repr(get({"name": "leaky_relu", "alpha": 0.2})) == "LeakyReLU(alpha=0.2)"
    assert repr(get({"name": "ELU", "alpha": 2})) == "ELU(alpha=2.0)"
    assert get({"name": "elu", "alpha": 2}).config() == {"name": "elu", "alpha": 2.0}


def test_a_custom_activation_reprs_all_its_settings():
    class Scaled(anyfc.activations.Activation):  # the base class is public: users extend it
        name = "scaled"

        def __init__(self, a: float = 1.0, b: float = 2.0) -> None:
            self.a, self.b = a, b

    assert repr(Scaled(0.5, 3.0)) == "Scaled(a=0.5, b=3.0)"
    assert Scaled().config() == {"name": "scaled", "a": 1.0, "b": 2.0}


@pytest.mark.parametrize("kind", ["SGD", "AdaGrad", "RMSProp", "Adam", "AdamW"])
def test_each_optimizer_by_default_follows_its_equation_with_the_documented_settings(kind):
    """``Optimizer()`` and ``optimizers.get(name)`` take RefOptimizer's defaults (the
    signatures' documented ones)."""
    for opt in (getattr(optimizers, kind)(), optimizers.get(kind.lower())):
        layer = anyfc.Dense(3, 2, "identity", dtype="float64")
        layer.w, layer.b = W0.copy(), B0.copy()
        ref, params = RefOptimizer(kind), {"w": W0.copy(), "b": B0.copy()}
        for gw, gb in GRADS:
            layer.grad_w, layer.grad_b = gw.copy(), gb.copy()
            opt.step([layer])
            ref.step(params, {"w": gw, "b": gb})
        np.testing.assert_allclose(layer.w, params["w"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(layer.b, params["b"], rtol=RTOL, atol=ATOL)
        assert opt.config().items() >= {k: v for k, v in ref.hp.items()}.items()


# (optimizer, the setting, a value out of its range, the range as the error writes it)
OUT_OF_RANGE = [
    ("SGD", "momentum", 1.0, r"[0.0, 1.0)"),
    ("RMSProp", "rho", 1.0, r"[0.0, 1.0)"),
    ("RMSProp", "rho", -0.1, r"[0.0, 1.0)"),
    ("Adam", "beta1", 1.0, r"[0.0, 1.0)"),
    ("Adam", "beta2", 1.0, r"[0.0, 1.0)"),
    ("AdamW", "beta2", 1.5, r"[0.0, 1.0)"),
    ("AdaGrad", "eps", 0.0, r"(0.0, inf)"),
    ("RMSProp", "eps", 0.0, r"(0.0, inf)"),
    ("Adam", "eps", 0.0, r"(0.0, inf)"),
    ("AdamW", "eps", -1e-8, r"(0.0, inf)"),
    ("SGD", "weight_decay", -0.1, r"[0.0, inf)"),
    ("Adam", "clipnorm", 0.0, r"(0.0, inf)"),
    ("AdaGrad", "clipvalue", 0.0, r"(0.0, inf)"),
]


@pytest.mark.parametrize("kind, name, value, interval", OUT_OF_RANGE)
def test_each_optimizer_setting_is_range_checked_by_name(kind, name, value, interval):
    import re

    with pytest.raises(ValueError, match="^" + re.escape(
            f"{name} must be a finite number in {interval}, got {value!r}") + "$"):
        getattr(optimizers, kind)(**{name: value})


@pytest.mark.parametrize("kind, name, value", [
    ("SGD", "momentum", 0.0), ("RMSProp", "rho", 0.0), ("RMSProp", "rho", 0.999),
    ("Adam", "beta1", 0.0), ("Adam", "beta2", 0.9999), ("AdaGrad", "eps", 1e-300),
    ("AdamW", "weight_decay", 0.0)])
def test_each_optimizer_setting_takes_the_ends_of_its_range(kind, name, value):
    assert getattr(getattr(optimizers, kind)(**{name: value}), name) == value


def test_nesterov_without_momentum_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"^nesterov=True needs momentum > 0$"):
        optimizers.SGD(0.1, nesterov=True)


@pytest.mark.parametrize("lr_dtype, lr_device", [
    ("float64", None), ("float64", "device1"), ("float32", None)])
def test_an_array_learning_rate_of_another_dtype_or_device_is_moved_to_each_parameter(
        lr_dtype, lr_device):
    """``step(layers, lr=a)`` with ``a`` a 0-d array of another dtype, or on another
    device, or both: the update is made with ``a`` in each parameter's dtype (float32) and
    on its device, so the parameters keep both (array_api_strict raises on mixed
    devices)."""
    xp, device = _strict()
    lr = anyfc.to_backend(np.asarray(0.1), "array_api_strict", lr_device, lr_dtype)
    for opt in (optimizers.SGD(), optimizers.Adam(), optimizers.SGD(clipnorm=0.5)):
        layer = anyfc.Dense(3, 2, "identity", backend="array_api_strict", device="device1",
                            dtype="float32")
        layer.w = anyfc.to_backend(W0, "array_api_strict", "device1", "float32")
        layer.b = anyfc.to_backend(B0, "array_api_strict", "device1", "float32")
        ref, params = RefOptimizer(type(opt).__name__, lr=0.1), {"w": W0.copy(),
                                                                 "b": B0.copy()}
        for gw, gb in GRADS[:2]:
            layer.grad_w = anyfc.to_backend(gw, "array_api_strict", "device1", "float32")
            layer.grad_b = anyfc.to_backend(gb, "array_api_strict", "device1", "float32")
            opt.step([layer], lr=lr)
            if opt.clipnorm is not None:  # the reference does not clip: scale here
                norm = np.sqrt(np.sum(gw * gw) + np.sum(gb * gb))
                gw, gb = gw * (0.5 / max(norm, 0.5)), gb * (0.5 / max(norm, 0.5))
            ref.step(params, {"w": gw, "b": gb})
        for name in ("w", "b"):
            p = getattr(layer, name)
            assert p.dtype == xp.float32 and p.device == device, name
            np.testing.assert_allclose(np.asarray(anyfc.to_numpy(p)), params[name],
                                       rtol=1e-5, atol=1e-6, err_msg=name)
        assert opt.lr_t.dtype == xp.float32 and opt.lr_t.device == device


def _adam_with_state() -> optimizers.Adam:
    layer = anyfc.Dense(3, 2, "identity", dtype="float64")
    layer.w, layer.b = W0.copy(), B0.copy()
    opt = optimizers.Adam(0.01)
    for gw, gb in GRADS[:2]:
        layer.grad_w, layer.grad_b = gw.copy(), gb.copy()
        opt.step([layer])
    return opt


def test_optimizer_to_moves_every_state_array_to_the_backend_device_and_dtype():
    xp, device = _strict()
    opt = _adam_with_state()
    before = host_opt_state(opt)
    assert opt.to("array_api_strict", "device1", "float32") is opt
    state = opt.state_dict()
    assert state.keys() == before.keys() and state["t"] == 2
    for key in (k for k in state if k.startswith("state.")):
        value = state[key]
        assert type(value) is type(xp.asarray(0.0)), key
        assert value.dtype == xp.float32 and value.device == device, key
        np.testing.assert_allclose(host(value), before[key], rtol=1e-6, err_msg=key)


def test_load_state_dict_puts_the_arrays_on_the_backend_device_and_dtype():
    xp, device = _strict()
    saved = _adam_with_state().state_dict()
    opt = optimizers.Adam(0.01)
    opt.load_state_dict(saved, "array_api_strict", "device1", "float32")
    state = opt.state_dict()
    assert state.keys() == saved.keys() and (state["t"], state["epoch"]) == (2, 0)
    for key in (k for k in state if k.startswith("state.")):
        assert state[key].dtype == xp.float32 and state[key].device == device, key
        np.testing.assert_allclose(host(state[key]), saved[key], rtol=1e-6, err_msg=key)


def test_load_state_dict_counts_default_to_zero_and_reach_2_to_the_53():
    saved = {k: v for k, v in _adam_with_state().state_dict().items() if k.startswith("state.")}
    opt = optimizers.Adam()
    opt.t, opt.epoch = 7, 3
    opt.load_state_dict(saved)  # neither count given: both 0
    assert (opt.t, opt.epoch) == (0, 0)
    opt.load_state_dict({"epoch": 4})
    assert (opt.t, opt.epoch, opt.state) == (0, 4, {})
    opt.load_state_dict({"t": 2**53, "epoch": 2**53})
    assert (opt.t, opt.epoch) == (2**53, 2**53)


@pytest.mark.parametrize("entry, match", [
    ({"t": -1}, r"^optimizer state has an invalid step count t=-1; expected an integer "
                r"in \[0, 2\*\*53\]$"),
    ({"t": 2**53 + 1}, r"invalid step count t=9007199254740993;"),
    ({"epoch": 1.5}, r"^optimizer state has an invalid epoch count epoch=1\.5; "),
    ({"epoch": True}, r"invalid epoch count epoch=True;"),
    ({"state.0.w.v.x": np.zeros(2)}, r"^unexpected optimizer state entry 'state\.0\.w\.v\.x'; "
                                     r"SGD keeps state\.<layer>\.<parameter>\.<slot> with "
                                     r"slot in \('v',\)$"),
    ({"other.0.w.v": np.zeros(2)}, r"unexpected optimizer state entry 'other\.0\.w\.v'"),
    ({"state.0.w.m": np.zeros(2)}, r"unexpected optimizer state entry 'state\.0\.w\.m'"),
])
def test_load_state_dict_refuses_bad_entries_naming_them(entry, match):
    opt = optimizers.SGD(momentum=0.5)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(entry)
    assert (opt.t, opt.epoch, opt.state) == (0, 0, {})


def test_load_state_dict_refuses_state_that_is_no_array_of_real_numbers():
    opt = optimizers.SGD(momentum=0.5)
    with pytest.raises(TypeError, match=r"^optimizer state entry 'state\.0\.w\.v' is a list, "
                                        r"not an array$"):
        opt.load_state_dict({"state.0.w.v": [0.0, 1.0]})
    with pytest.raises(TypeError, match=r"^optimizer state entry 'state\.0\.w\.v' has dtype "
                                        r"complex128"):
        opt.load_state_dict({"state.0.w.v": np.zeros(2, dtype=complex)})
    assert opt.state == {}


def test_clipnorm_of_a_layer_with_a_single_parameter():
    """The global norm over one gradient (a custom layer with one parameter): the only
    gradient is both the first and the last."""

    class Scale(anyfc.Layer):
        param_names = ("w",)

    layer = Scale()
    layer.w, layer.grad_w = W0.copy(), GRADS[0][0].copy()
    optimizers.SGD(0.1, clipnorm=0.5).step([layer])
    g = GRADS[0][0]
    np.testing.assert_allclose(layer.w, W0 - 0.1 * g * 0.5 / np.sqrt(np.sum(g * g)),
                               rtol=RTOL)


def test_an_unknown_optimizer_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^unknown optimizer 'lbfgs'; valid optimizers are "
                                         r"sgd, adagrad, rmsprop, adam, adamw$"):
        optimizers.get("lbfgs")
    with pytest.raises(ValueError, match=r"^unknown optimizer 3; "):
        optimizers.get(3)


def test_a_learning_rate_given_to_step_is_checked_by_name():
    layer = anyfc.Dense(3, 2, "identity", dtype="float64")
    layer.grad_w, layer.grad_b = GRADS[0][0].copy(), GRADS[0][1].copy()
    with pytest.raises(ValueError, match=r"^lr must be a finite number in \[0\.0, inf\), "
                                         r"got -0\.1$"):
        optimizers.SGD().step([layer], lr=-0.1)


def test_a_custom_optimizer_gets_the_base_class_defaults():
    """``Optimizer.__init__(lr)``: no weight decay, no clipping (a user's subclass)."""

    class Plain(optimizers.Optimizer):
        def update(self, xp, p, g, state):
            return p - self.lr_t * g

    opt = Plain(0.1)
    assert (opt.weight_decay, opt.clipnorm, opt.clipvalue) == (0.0, None, None)
    layer = anyfc.Dense(3, 2, "identity", dtype="float64")
    layer.w, layer.b = W0.copy(), B0.copy()
    layer.grad_w, layer.grad_b = GRADS[0][0].copy(), GRADS[0][1].copy()
    opt.step([layer])
    np.testing.assert_allclose(layer.w, W0 - 0.1 * GRADS[0][0], rtol=RTOL)


def test_a_step_over_layers_without_parameters_only_counts_the_step():
    opt = optimizers.SGD(0.1, momentum=0.5)
    opt.step([anyfc.ReLU(), anyfc.Dropout(0.5)])
    assert (opt.t, opt.state) == (1, {})


def test_a_fresh_optimizer_updates_at_its_learning_rate():
    """``lr_t``, the rate ``update`` uses, is the first step's rate before any step: a
    subclass's ``update`` called directly works."""
    opt = optimizers.SGD(anyfc.schedules.StepDecay(0.1, step_size=1, gamma=0.5, per="step"))
    assert opt.lr_t == opt.learning_rate() == 0.1
    np.testing.assert_allclose(opt.update(np, W0.copy(), GRADS[0][0], {}),
                               W0 - 0.1 * GRADS[0][0], rtol=RTOL)


W4 = np.array([0.5, 2.0, 1.0, 0.25])


@pytest.mark.parametrize("name", list(LOSS_TARGETS))
def test_losses_keep_the_outputs_dtype_whatever_the_targets_and_weights_dtype(name):
    """On array_api_strict (no implicit casts to another kind): float32 outputs with
    int64 labels or float64 targets and float64 weights give float32 losses, gradients
    and hit counts, equal to the float64 references."""
    xp, _ = _strict(None)
    loss = anyfc.losses.get(name)
    t_host = LOSS_TARGETS[name]
    y = xp.asarray(Z4, dtype=xp.float32)
    t = xp.asarray(t_host)  # int64 labels or float64 targets
    w = xp.asarray(W4, dtype=xp.float64)
    e, grad, hits, _ = ref_loss(name, Z4, t_host)
    got = loss.value(y, t)
    assert got.dtype == xp.float32
    assert float(got) == pytest.approx(e, rel=1e-5)
    e_w, grad_w = _ref_weighted(name, Z4, t_host, W4)
    for got in (loss.value(y, t, w), loss.forward(y, t, w)):
        assert got.dtype == xp.float32
        assert float(got) == pytest.approx(e_w, rel=1e-5)
    g = loss.backward()
    assert g.dtype == xp.float32 and g.shape == y.shape
    np.testing.assert_allclose(np.asarray(anyfc.to_numpy(g)), grad_w, rtol=1e-5, atol=1e-7)
    got = loss.forward(y, t)
    assert got.dtype == xp.float32 and float(got) == pytest.approx(e, rel=1e-5)
    np.testing.assert_allclose(np.asarray(anyfc.to_numpy(loss.backward())), grad, rtol=1e-5,
                               atol=1e-7)
    if loss.classification:
        count, total = loss.n_correct(xp, y, t)
        assert float(count) == hits and total == (4 if name == "softmax_cross_entropy" else 12)


@pytest.mark.parametrize("name", ["binary_cross_entropy", "mean_squared_error"])
def test_a_single_output_takes_targets_of_shape_h(name):
    """``t`` of shape (h,) against ``y`` of shape (h, 1): one target per row, never the
    (h, h) table broadcasting would give."""
    z = Z4[:, :1]
    t = np.array([1.0, 0.0, 0.0, 1.0])
    loss = anyfc.losses.get(name)
    e, grad, _, _ = ref_loss(name, z, t)
    e_w, grad_w = _ref_weighted(name, z, t.reshape(-1, 1), W4)
    assert float(loss.value(z, t)) == pytest.approx(e, rel=RTOL)
    assert float(loss.forward(z, t)) == pytest.approx(e, rel=RTOL)
    np.testing.assert_allclose(loss.backward(), grad, rtol=RTOL)
    assert float(loss.value(z, t, W4)) == pytest.approx(e_w, rel=RTOL)
    assert float(loss.forward(z, t, W4)) == pytest.approx(e_w, rel=RTOL)
    np.testing.assert_allclose(loss.backward(), grad_w, rtol=RTOL)


def test_softmax_output_of_logits_far_from_zero():
    """Each row shifted by its own maximum: rows near +1000 and -1000 in one batch."""
    z = np.array([[1000.0, 999.0, 997.0], [-1000.0, -1001.0, -1003.0], [0.0, -1.0, -3.0]])
    expected = ref_probabilities("softmax_cross_entropy", np.array([[0.0, -1.0, -3.0]]))
    loss = anyfc.losses.get("softmax_cross_entropy")
    np.testing.assert_allclose(loss.output(np, z), np.repeat(expected, 3, axis=0), rtol=1e-14)
    t = np.array([1, 2, 0])
    e, grad, _, _ = ref_loss("softmax_cross_entropy", z - z.max(axis=1, keepdims=True), t)
    assert float(loss.value(z, t)) == pytest.approx(e, rel=1e-14)
    assert float(loss.forward(z, t)) == pytest.approx(e, rel=1e-14)
    np.testing.assert_allclose(loss.backward(), grad, rtol=1e-14)


def test_binary_accuracy_at_a_logit_of_zero_and_a_target_of_one_half():
    """σ(0) = ½ is not above one half: predicted 0; a soft target of ½ is class 0 too
    (ref_loss's ``s > ½`` and ``t > ½``)."""
    loss = anyfc.losses.get("binary_cross_entropy")
    z = np.array([[0.0], [-1.0], [1.0]])
    t = np.array([[0.0], [0.5], [1.0]])
    count, total = loss.n_correct(np, z, t)
    _, _, hits, n = ref_loss("binary_cross_entropy", z, t)
    assert (float(count), total) == (hits, n) == (3.0, 3)


def test_loss_names_reprs_and_errors():
    for name, cls in [("mse", "MeanSquaredError"), ("cross_entropy", "SoftmaxCrossEntropy"),
                      ("Binary_Cross_Entropy", "BinaryCrossEntropy")]:
        assert repr(anyfc.losses.get(name)) == f"{cls}()"
    with pytest.raises(TypeError, match=r"^mean_squared_error is not a classification loss$"):
        anyfc.losses.get("mse").n_correct(np, Z4, Z4)
    with pytest.raises(ValueError, match=r"^unknown loss 'hinge'; valid losses are "
                                         r"softmax_cross_entropy, cross_entropy, "
                                         r"binary_cross_entropy, mean_squared_error, mse$"):
        anyfc.losses.get("hinge")


@pytest.mark.parametrize("w, shape", [(np.ones((4, 1)), r"\(4, 1\)"), (np.ones(3), r"\(3,\)"),
                                      ([1.0] * 4, "list"), (2.0, "float")])
def test_sample_weights_of_another_shape_are_refused_naming_it(w, shape):
    for name, t in LOSS_TARGETS.items():
        loss = anyfc.losses.get(name)
        for call in (loss.value, loss.forward):
            with pytest.raises(ValueError, match=r"^the sample weights w must have shape "
                                                 rf"\(4,\), one per row of y, got {shape}$"):
                call(Z4, t, w)


def test_softmax_accuracy_of_one_hot_targets_equals_that_of_their_labels(bk):
    """One-hot rows (h, c) are read by their argmax, never as labels or flattened."""
    loss, k, y, _ = CASES["softmax"]
    model = _mlp(bk, loss, k)
    expected = ref_metrics(loss, ref_output(_mlp_params(model), X), y)
    one_hot = np.eye(k)[y]
    for batch_size in (5, None):
        got = model.evaluate(X, one_hot, batch_size=batch_size)
        assert got["accuracy"] == pytest.approx(expected["accuracy"], rel=RTOL)
        assert got["loss"] == pytest.approx(expected["loss"], rel=RTOL)
    count, total = anyfc.losses.get(loss).n_correct(np, Z4, np.eye(3)[[0, 2, 1, 2]])
    assert (float(count), total) == ref_loss(loss, Z4, np.array([0, 2, 1, 2]))[2:]


# ---------------------------------------------------------------- the training loop: the edges
# Mutation testing of anyfc/training/loop.py: validation_split at the ends of what it
# allows, every callback hook with its arguments (and with zero epochs), BatchNorm's
# statistics moved by training batches only, verbose output, the error messages, and
# weights made on a model on another device in float32.


def test_validation_split_may_leave_one_row_on_either_side():
    """n = 4: a split of 0.75 trains on row 0 and validates on rows 1-3 (k = ⌊n(1-s)⌋ = 1);
    a split so small that 1 - s rounds to 1 leaves nothing to validate on."""
    Xs, ys = X_OPT[:4], T_OPT[:4]
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    history = model.fit(Xs, ys, epochs=1, batch_size=4, validation_split=0.75, verbose=0,
                        optimizer=optimizers.SGD(0.1))
    _, grad_z, _, _ = ref_loss("mean_squared_error", Xs[:1] @ W0 + B0, ys[:1])
    w, b = W0 - 0.1 * Xs[:1].T @ grad_z, B0 - 0.1 * grad_z.sum(axis=0)
    assert history["val_loss"][0] == pytest.approx(
        ref_loss("mean_squared_error", Xs[1:] @ w + b, ys[1:])[0], rel=RTOL)
    with pytest.raises(ValueError, match=r"^validation_split=1e-17 of 4 rows leaves 4 for "
                                         r"training and 0 for validation; both need at least "
                                         r"one$"):
        model.fit(Xs, ys, validation_split=1e-17, verbose=0)
    with pytest.raises(ValueError, match=r"^validation_split=0\.8 of 4 rows leaves 0 for "
                                         r"training and 4 for validation; "):
        model.fit(Xs, ys, validation_split=0.8, verbose=0)


class _Recorder(anyfc.callbacks.Callback):
    """Every hook call, with copies of its arguments; stops the fit after ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.stop_at = stop_at

    def check(self, run):
        self.calls.append(("check", run))

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", logs))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", dict(logs)))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch, logs))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))
        if epoch == self.stop_at:
            self.run.stop_training = True

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch, logs))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, dict(logs)))


@pytest.mark.parametrize("stop_at", [None, 1])
def test_callbacks_see_every_hook_with_its_arguments(stop_at):
    """10 rows in batches of 4 (4, 4, 2), 3 epochs (or stopped after the second), a
    per-epoch schedule: each hook's arguments follow from the definitions in
    ``anyfc.training.callbacks``, and the epoch logs are the history's numbers plus the
    epoch's starting lr."""
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    opt = optimizers.SGD(anyfc.schedules.StepDecay(0.1, step_size=1, gamma=0.5))
    rec = _Recorder(stop_at)
    history = model.fit(X_OPT, T_OPT, epochs=3, batch_size=4, shuffle=False, verbose=0,
                        optimizer=opt, validation_data=(X_OPT[:3], T_OPT[:3]),
                        callbacks=rec)
    epochs = 3 if stop_at is None else stop_at + 1
    assert history.epoch == list(range(epochs))
    assert history.lr == [0.1 * 0.5**e for e in range(epochs)]
    assert all(len(v) == epochs for v in history.values())
    logs = [{**{k: v[e] for k, v in history.items()}, "lr": history.lr[e]}
            for e in range(epochs)]
    metrics = ["loss", "mae", "r2"]
    run = rec.calls[0][1]
    assert (run.model, run.optimizer, run.epochs) == (model, opt, 3)
    assert run.metrics == metrics + ["val_" + k for k in metrics] and rec.run is run
    expected: list[tuple[Any, ...]] = [("check", run), ("train_begin", {})]
    for e in range(epochs):
        expected.append(("epoch_begin", e, {}))
        for i, size in enumerate([4, 4, 2]):
            expected += [("batch_begin", i, {}), ("batch_end", i, {"size": size})]
        expected.append(("epoch_end", e, logs[e]))
    expected.append(("train_end", logs[-1]))
    assert rec.calls == expected
    assert set(logs[0]) == {*run.metrics, "lr"}
    assert run.stop_training is (stop_at is not None)


def test_batch_norm_running_statistics_move_once_per_training_batch():
    """Each training batch moves BatchNorm's running statistics once (torch's rule, in the
    layer's docstring); the end-of-epoch checks and validation, which run in inference,
    never do."""
    m = 0.3
    model = anyfc.Sequential([anyfc.BatchNorm(3, momentum=m, dtype="float64"),
                              anyfc.Dense(3, 2, "identity", dtype="float64", seed=0)],
                             loss="mean_squared_error")
    model.fit(X_OPT, T_OPT, epochs=2, batch_size=6, shuffle=False, verbose=0,
              optimizer=optimizers.SGD(0.1), validation_data=(X_OPT[:3], T_OPT[:3]))
    mean, var = np.zeros(3), np.ones(3)
    for _ in range(2):
        for xb in (X_OPT[:6], X_OPT[6:]):
            mean = (1 - m) * mean + m * xb.mean(axis=0)
            var = (1 - m) * var + m * xb.var(axis=0, ddof=1)
    state = host_state(model)
    np.testing.assert_allclose(state["layers.0.running_mean"], mean, rtol=RTOL)
    np.testing.assert_allclose(state["layers.0.running_var"], var, rtol=RTOL)


def test_fit_checks_its_settings_by_name():
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    cases = [
        ({"verbose": -1}, ValueError, r"^verbose must be a non-negative integer, got -1$"),
        ({"strategy": "data_parallel"}, ValueError,
         r"^strategy='data_parallel' needs X as a Dask array"),
        ({"strategy": "pipeline"}, ValueError,
         r"^unknown strategy 'pipeline'; valid: 'auto', 'data_parallel'$"),
        ({"validation_split": 0.2, "validation_data": (X_OPT, T_OPT)}, ValueError,
         r"^give validation_data or validation_split, not both$"),
        ({"callbacks": iter([anyfc.callbacks.EarlyStopping("loss")])}, TypeError,
         r"^callbacks must be a list of anyfc callbacks \(subclasses of "
         r"anyfc\.callbacks\.Callback\), got <list_iterator object"),
        ({"callbacks": [print]}, TypeError, r"^callbacks must be a list of anyfc callbacks"),
    ]
    for settings, error, match in cases:
        with pytest.raises(error, match=match):
            model.fit(X_OPT, T_OPT, **settings)
    model.layers[0].w = np.full((3, 2), np.nan)  # assigned: load_state_dict refuses it
    with pytest.raises(ValueError, match=r"^the model's parameters, buffers or optimizer "
                                         r"state hold NaN or infinity before training; load "
                                         r"or assign finite ones \(see "
                                         r"model\.load_state_dict\)$"):
        model.fit(X_OPT, T_OPT, verbose=0)


def _progress_lines(history: Any, epochs: int) -> list[str]:
    """verbose's line per epoch: ``Epoch e/E - <seconds>s - key: value - ...`` (regexes)."""
    import re

    return [rf"Epoch {e + 1}/{epochs} - \d+\.\d\ds - " + re.escape(" - ".join(
        f"{k}: {v[e]:.4f}" for k, v in history.items())) + " {10}" for e in range(epochs)]


@pytest.mark.parametrize("verbose", [False, True, 0, 2])
def test_fit_takes_verbose_as_a_bool_or_a_level(verbose, capsys):
    """Off for 0 and False; one line per epoch for 2, and for 1 or True when the output is
    no terminal (as under pytest)."""
    import re

    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    capsys.readouterr()
    history = model.fit(X_OPT, T_OPT, epochs=2, batch_size=10, shuffle=False,
                        verbose=verbose, optimizer=optimizers.SGD(0.1),
                        validation_data=(X_OPT[:3], T_OPT[:3]))
    lines = capsys.readouterr().out.splitlines()
    expected = _progress_lines(history, 2) if verbose else []
    assert len(lines) == len(expected)
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_verbose_1_on_a_terminal_draws_a_bar_per_epoch(capsys, monkeypatch):
    """10 rows in batches of 4: 3 batches an epoch, the bar redrawn in place ("\\r")."""
    import re
    import sys

    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    capsys.readouterr()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    history = model.fit(X_OPT, T_OPT, epochs=2, batch_size=4, shuffle=False, verbose=1)
    out = capsys.readouterr().out
    bars = re.findall(r"\rEpoch (\d)/(\d) \[([=.]{30})\] (\d)/(\d)", out)
    assert bars and {(e, n) for e, n, *_ in bars} == {("1", "2"), ("2", "2")}
    for _, _, bar, done, total in bars:
        filled = 30 * int(done) // 3
        assert total == "3" and bar == "=" * filled + "." * (30 - filled)
    assert {(e, d) for e, _, _, d, _ in bars} >= {("1", "3"), ("2", "3")}  # each epoch's end
    ends = [line.split("\r")[-1].rstrip() for line in out.split("\n") if line]
    for line, pattern in zip(ends, _progress_lines(history, 2)):
        assert re.fullmatch(pattern.removesuffix(" {10}"), line), (line, pattern)
    assert len(ends) == 2


def test_a_too_small_last_batch_is_refused_before_training():
    model = anyfc.Sequential([anyfc.Dense(4, 3, "tanh", dtype="float64", seed=0),
                              anyfc.BatchNorm(3, dtype="float64")], loss="mean_squared_error")
    before = host_state(model)
    with pytest.raises(ValueError, match=r"^layer 1 \(BatchNorm\) needs at least 2 rows per "
                                         r"training batch, but 11 rows in batches of 5 leave "
                                         r"a last batch of 1; choose another batch_size$"):
        model.fit(X[:11], RNG.standard_normal((11, 3)), batch_size=5, verbose=0)
    assert_same_state(host_state(model), before)


def test_divergence_is_reported_with_the_epoch_the_rate_and_what_is_kept():
    model = anyfc.Sequential([anyfc.Dense(3, 1, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": np.full((3, 1), 0.1), "layers.0.b": np.zeros(1)})
    opt = optimizers.Adam(1e200)
    with pytest.raises(FloatingPointError, match=r"^training diverged in epoch 1: its mean "
                                                 r"loss was [^,]+, and after its last update "
                                                 r"the parameters, the optimizer state or the "
                                                 r"loss are no longer all finite; try a lower "
                                                 r"learning rate \(the optimizer has "
                                                 r"lr=1e\+200\)\. The model and its optimizer "
                                                 r"keep their state from before epoch 1\.$"):
        _diverging_fit(model, opt, 2)


def test_zero_epochs_change_nothing_and_end_with_empty_logs():
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    before = host_state(model)
    rec = _Recorder()
    history = model.fit(X_OPT, T_OPT, epochs=0, verbose=0, callbacks=[rec])
    assert [c[0] for c in rec.calls] == ["check", "train_begin", "train_end"]
    assert rec.calls[-1] == ("train_end", {}) and dict(history) == {"loss": [], "mae": [],
                                                                    "r2": []}
    assert_same_state(host_state(model), before)


@pytest.mark.parametrize("loss", ["mean_squared_error", "softmax_cross_entropy"])
def test_weighted_training_of_a_float32_model_on_another_device(loss):
    """sample_weight (a host list) and class_weight become row weights on the model's
    device, in its dtype: one full-batch SGD step equals the weighted reference."""
    _strict()
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1])
    t = T_OPT if loss == "mean_squared_error" else labels
    sw = [1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.0, 1.0, 2.0, 1.5]
    cw = {0: 2.0, 1: 0.5} if loss == "softmax_cross_entropy" else None
    rows = np.array(sw) * (np.array([cw[k] for k in labels]) if cw else 1.0)
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", backend="array_api_strict",
                                          device="device1", dtype="float32")], loss=loss)
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    history = model.fit(X_OPT, t, epochs=1, batch_size=10, shuffle=False, verbose=0,
                        optimizer=optimizers.SGD(0.1), sample_weight=sw, class_weight=cw)
    e, grad = _ref_weighted(loss, X_OPT @ W0 + B0, t, rows)
    assert history["loss"][0] == pytest.approx(e, rel=1e-5)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], W0 - 0.1 * X_OPT.T @ grad, rtol=1e-5)
    np.testing.assert_allclose(end["layers.0.b"], B0 - 0.1 * grad.sum(axis=0), rtol=1e-5)


# ---------------------------------------------------------------- callbacks: the edges
# Mutation testing of anyfc/training/callbacks.py: EarlyStopping's and
# ReduceLROnPlateau's rules and defaults against Keras's (written below), driven epoch by
# epoch through the hooks; LearningRateScheduler, CSVLogger and ModelCheckpoint through
# fit; every setting's check and message; what "auto" mode picks.


def _ref_plateau(values: list[float], lr: float, factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 mode: str = "min") -> tuple[list[float], list[int]]:
    """Keras's ReduceLROnPlateau (its defaults): the rate after each epoch, and the
    epochs (from 0) where it was reduced."""
    best, wait, counter, rates, reduced = (math.inf if mode == "min" else -math.inf), 0, 0, [], []
    for epoch, v in enumerate(values):
        if counter > 0:
            counter, wait = counter - 1, 0
        better = v < best - min_delta if mode == "min" else v > best + min_delta
        if better:  # never for NaN
            best, wait = v, 0
        elif counter == 0:
            wait += 1
            if wait >= patience and lr > min_lr:
                lr, counter, wait = max(lr * factor, min_lr), cooldown, 0
                reduced.append(epoch)
        rates.append(lr)
    return rates, reduced


def _drive(callback: anyfc.callbacks.Callback, monitor: str, values: list[float],
           lr: float) -> list[float]:
    """The optimizer's rate after each epoch's ``on_epoch_end`` (logs hold ``monitor``)."""
    opt = optimizers.SGD(lr)
    run = anyfc.callbacks.Run(None, opt, len(values), ["loss", monitor])
    callback.run = run
    callback.check(run)
    callback.on_train_begin({})
    rates = []
    for epoch, v in enumerate(values):
        callback.on_epoch_begin(epoch, {})
        callback.on_epoch_end(epoch, {"loss": 0.0, monitor: v, "lr": opt.lr})
        rates.append(opt.lr)
    return rates


# 40 epochs: 5 clear improvements, then a plateau within 1e-4 of its best
PLATEAU = [1.0 - 0.01 * i for i in range(5)] + [0.96 - 9e-5 * (i % 2) for i in range(35)]


def test_reduce_lr_on_plateau_defaults_are_keras_rule(capsys):
    rates = _drive(anyfc.callbacks.ReduceLROnPlateau(), "val_loss", PLATEAU, 0.1)
    expected, reduced = _ref_plateau(PLATEAU, 0.1)
    assert len(reduced) == 3
    np.testing.assert_allclose(rates, expected, rtol=1e-15)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("settings, monitor, values", [
    ({"patience": 2, "cooldown": 1, "factor": 0.5, "min_lr": 0.02, "min_delta": 0.0},
     "val_loss", [1.0, 1.0, 1.0, 0.9, float("nan"), 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95,
                  0.95, 0.95, 0.95, 0.95]),
    ({"patience": 1, "cooldown": 2, "factor": 0.3, "min_delta": 0.05},
     "val_accuracy", [0.5, 0.52, 0.6, 0.6, 0.61, 0.7, 0.7, 0.7, 0.7, 0.7, 0.9, 0.9]),
    ({"patience": 0, "factor": 0.5, "mode": "max", "min_lr": 0.025},
     "loss", [3.0, 2.0, 4.0, 4.0, 4.0, 5.0]),
    ({"patience": 2, "factor": 0.5}, "val_r2", [float("nan"), float("nan"), 0.5, 0.6, 0.6,
                                                 0.6, 0.7]),
])
def test_reduce_lr_on_plateau_follows_keras_rule(settings, monitor, values, capsys):
    rates = _drive(anyfc.callbacks.ReduceLROnPlateau(monitor, verbose=1, **settings),
                   monitor, values, 0.1)
    mode = settings.get("mode", "max" if monitor.endswith(("accuracy", "r2")) else "min")
    keras = {k: v for k, v in settings.items() if k != "mode"}
    expected, reduced = _ref_plateau(values, 0.1, mode=mode, **keras)
    assert reduced, "the case reduces nothing"
    np.testing.assert_allclose(rates, expected, rtol=1e-15)
    assert capsys.readouterr().out.splitlines() == [
        f"Epoch {e + 1}: learning rate reduced to {expected[e]:.6g}" for e in reduced]


def _fit_small(callbacks: list[Any], epochs: int = 3, lr: float = 0.1) -> Any:
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    return model.fit(X_OPT, T_OPT, epochs=epochs, batch_size=10, shuffle=False, verbose=0,
                     optimizer=optimizers.SGD(lr), validation_data=(X_OPT[:3], T_OPT[:3]),
                     callbacks=callbacks)


def test_learning_rate_scheduler_calls_a_function_with_the_epoch_and_the_current_rate(capsys):
    seen = []

    def halve(epoch, lr):
        seen.append((epoch, lr))
        return lr / 2

    history = _fit_small([anyfc.callbacks.LearningRateScheduler(halve, verbose=1)])
    assert seen == [(0, 0.1), (1, 0.05), (2, 0.025)]
    assert history.lr == [0.05, 0.025, 0.0125]
    assert capsys.readouterr().out.splitlines() == [
        f"Epoch {e + 1}: learning rate {lr:.6g}" for e, lr in enumerate(history.lr)]


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_learning_rate_scheduler_refuses_a_rate_that_is_not_positive(bad):
    with pytest.raises(ValueError, match=r"^the learning rate from the schedule must be a "
                                         rf"finite number in \(0\.0, inf\), got {bad!r}$"):
        _fit_small([anyfc.callbacks.LearningRateScheduler(lambda epoch, lr: bad)])


def _read_csv(path: Any, separator: str) -> list[list[str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_writes_the_history_with_its_separator(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("an old log\n")
    history = _fit_small([anyfc.callbacks.CSVLogger(path, separator=";")])
    rows = _read_csv(path, ";")
    metrics = ["loss", "mae", "r2", "val_loss", "val_mae", "val_r2"]
    assert rows[0] == ["epoch", *metrics, "lr"]  # the old file replaced (append=False)
    assert len(rows) == 4
    for e, row in enumerate(rows[1:]):
        assert int(row[0]) == e and float(row[-1]) == history.lr[e]
        assert [float(v) for v in row[1:-1]] == [history[k][e] for k in metrics]


def test_csv_logger_appends_with_a_header_only_to_a_new_or_empty_file(tmp_path):
    header = ["epoch", "loss", "mae", "r2", "val_loss", "val_mae", "val_r2", "lr"]
    for existing in (None, ""):
        path = tmp_path / f"log{existing is None}.csv"
        if existing is not None:
            path.write_text(existing)
        _fit_small([anyfc.callbacks.CSVLogger(path, append=True)], epochs=1)
        rows = _read_csv(path, ",")
        assert rows[0] == header and len(rows) == 2
        _fit_small([anyfc.callbacks.CSVLogger(path, append=True)], epochs=2)
        rows = _read_csv(path, ",")
        assert rows[0] == header and [r[0] for r in rows[1:]] == ["0", "0", "1"]


def test_csv_logger_leaves_a_value_missing_from_the_logs_empty(tmp_path):
    path = tmp_path / "log.csv"
    logger = anyfc.callbacks.CSVLogger(path)
    logger.run = anyfc.callbacks.Run(None, optimizers.SGD(0.1), 1, ["loss", "val_loss"])
    logger.on_train_begin({})
    logger.on_epoch_end(0, {"loss": 0.5})
    assert _read_csv(path, ",") == [["epoch", "loss", "val_loss", "lr"], ["0", "0.5", "", ""]]


def _ref_early_stopping(values: list[float], patience: int = 0, min_delta: float = 0.0,
                        mode: str = "min", start_from_epoch: int = 0,
                        baseline: float | None = None) -> tuple[int | None, int | None]:
    """Keras's EarlyStopping rule: (the epoch it stops after, or None; the best epoch)."""
    best = baseline if baseline is not None else (math.inf if mode == "min" else -math.inf)
    best_epoch, wait = None, 0
    for epoch, v in enumerate(values):
        if epoch < start_from_epoch:
            continue
        if (v < best - min_delta) if mode == "min" else (v > best + min_delta):
            best, best_epoch, wait = v, epoch, 0
            continue
        wait += 1
        if wait >= patience and epoch > 0:
            return epoch, best_epoch
    return None, best_epoch


def _drive_to_the_end(callback: Any, monitor: str, values: list[float]
                      ) -> tuple[anyfc.Sequential, int]:
    """Epoch by epoch through the hooks, the model's bias set to the epoch's number before
    its ``on_epoch_end``, until the callback stops the run: (the model, epochs run)."""
    model = anyfc.Sequential([anyfc.Dense(1, 1, "identity", dtype="float64")],
                             loss="mean_squared_error")
    run = anyfc.callbacks.Run(model, optimizers.SGD(0.1), len(values), ["loss", monitor])
    callback.run = run
    callback.check(run)
    callback.on_train_begin({})
    logs: dict[str, float] = {}
    epochs = 0
    for epoch, v in enumerate(values):
        model.load_state_dict({"layers.0.w": np.zeros((1, 1)), "layers.0.b": np.full(1, epoch)})
        callback.on_epoch_begin(epoch, {})
        logs = {"loss": 0.0, monitor: v, "lr": 0.1}
        callback.on_epoch_end(epoch, logs)
        epochs += 1
        if run.stop_training:
            break
    callback.on_train_end(logs)
    return model, epochs


# (settings, monitor, values); every case stops
EARLY = [
    ({}, "val_loss", [1.0, 0.9, 0.9, 0.8]),
    ({}, "val_loss", [1.0, 1.1, 0.5]),
    ({"patience": 2, "min_delta": 0.05}, "val_loss", [1.0, 0.97, 0.9, 0.88, 0.86, 0.5]),
    ({"patience": 1}, "val_loss", [1.0, float("nan"), 0.5]),
    ({"patience": 3, "baseline": 0.5}, "val_loss", [0.8, 0.7, 0.6, 0.6, 0.1]),
    ({"patience": 1, "start_from_epoch": 2}, "val_loss", [1.0, 2.0, 3.0, 3.0, 4.0]),
    ({}, "val_accuracy", [0.5, 0.6, 0.6, 0.7]),
    ({}, "r2", [0.1, 0.2, 0.1, 0.7]),
    ({"min_delta": 0.1}, "val_accuracy", [0.5, 0.55, 0.9]),
    ({"mode": "max"}, "loss", [1.0, 2.0, 1.5]),
    ({"patience": 2, "mode": "min"}, "val_r2", [0.1, 0.2, 0.3, 0.0]),
]


@pytest.mark.parametrize("settings, monitor, values", EARLY)
@pytest.mark.parametrize("restore", [False, True])
def test_early_stopping_follows_keras_rule(settings, monitor, values, restore, capsys):
    mode = settings.get("mode", "max" if monitor.endswith(("accuracy", "r2")) else "min")
    keras = {k: v for k, v in settings.items() if k != "mode"}
    stop, best_epoch = _ref_early_stopping(values, mode=mode, **keras)
    assert stop is not None, "the case never stops"
    extra = {"monitor": monitor, "restore_best_weights": True, "verbose": 1} if restore else (
        {"monitor": monitor} if monitor != "val_loss" else {})
    callback = anyfc.callbacks.EarlyStopping(**extra, **settings)
    assert (callback.best_epoch, callback.stopped_epoch) == (None, None)
    model, epochs = _drive_to_the_end(callback, monitor, values)
    assert epochs == stop + 1
    assert (callback.stopped_epoch, callback.best_epoch) == (stop, best_epoch)
    best = settings.get("baseline") if best_epoch is None else values[best_epoch]
    best = best if best is not None else (math.inf if mode == "min" else -math.inf)
    assert callback.best == best
    restored = restore and best_epoch is not None and best_epoch != stop
    bias = float(host(model.state_dict()["layers.0.b"])[0])
    assert bias == (best_epoch if restored else stop)
    expected = [] if not restore else [
        f"Epoch {stop + 1}: early stopping ({monitor} best {best:.4f} at epoch "
        f"{(best_epoch if best_epoch is not None else 0) + 1})"]
    if restored:
        expected.append(f"Restored the weights of epoch {best_epoch + 1}")
    assert capsys.readouterr().out.splitlines() == expected


def test_early_stopping_keeps_the_last_weights_when_they_are_the_best(capsys):
    callback = anyfc.callbacks.EarlyStopping(restore_best_weights=True, verbose=1)
    model, epochs = _drive_to_the_end(callback, "val_loss", [1.0, 0.9, 0.8])
    assert epochs == 3 and callback.stopped_epoch is None and callback.best_epoch == 2
    assert float(host(model.state_dict()["layers.0.b"])[0]) == 2.0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("settings, match", [
    ({"patience": -1}, r"^patience must be a non-negative integer, got -1$"),
    ({"start_from_epoch": -1}, r"^start_from_epoch must be a non-negative integer, got -1$"),
    ({"baseline": float("nan")}, r"^baseline must be a finite number in \[-inf, inf\), "
                                 r"got nan$"),
    ({"min_delta": -0.1}, r"^min_delta must be a finite number in \[0\.0, inf\), got -0\.1$"),
    ({"mode": "up"}, r"^mode must be 'auto', 'min' or 'max', got 'up'$"),
])
def test_early_stopping_settings_are_checked_by_name(settings, match):
    with pytest.raises(ValueError, match=match):
        anyfc.callbacks.EarlyStopping(**settings)
    assert anyfc.callbacks.EarlyStopping(patience=0, start_from_epoch=0).patience == 0


def test_a_monitor_the_fit_does_not_report_is_refused_with_the_metrics_it_does():
    with pytest.raises(ValueError, match=r"^EarlyStopping monitors 'val_loss', which this fit "
                                         r"does not report \(val_ metrics need "
                                         r"validation_data or validation_split\); it reports "
                                         r"loss, mae, r2$"):
        anyfc.Sequential([anyfc.Dense(3, 2, "identity")], loss="mse").fit(
            X_OPT, T_OPT, verbose=0, callbacks=[anyfc.callbacks.EarlyStopping()])
    with pytest.raises(ValueError, match=r"^ModelCheckpoint monitors 'accuracy', which this "
                                         r"fit does not report; it reports loss, mae, r2, "
                                         r"val_loss, val_mae, val_r2$"):
        _fit_small([anyfc.callbacks.ModelCheckpoint("m.npz", "accuracy", save_best_only=True)])
    with pytest.raises(ValueError, match=r"^ModelCheckpoint path '\{accuracy\}\.npz' has a "
                                         r"field this fit does not report \('accuracy'\); "
                                         r"fields: epoch, loss, mae, r2, val_loss, val_mae, "
                                         r"val_r2$"):
        _fit_small([anyfc.callbacks.ModelCheckpoint("{accuracy}.npz")])


def test_model_checkpoint_by_default_keeps_the_best_val_loss_silently(tmp_path, capsys):
    values = [1.0, 0.5, 0.5, 0.9, 0.2]
    callback = anyfc.callbacks.ModelCheckpoint(tmp_path / "m{epoch}.npz", save_best_only=True)
    _drive_to_the_end(callback, "val_loss", values)
    assert callback.saved == [str(tmp_path / f"m{e}.npz") for e in (1, 2, 5)]
    assert capsys.readouterr().out == ""
    callback = anyfc.callbacks.ModelCheckpoint(tmp_path / "all{epoch}.npz", verbose=1)
    _drive_to_the_end(callback, "val_loss", values[:2])
    assert capsys.readouterr().out.splitlines() == [
        f"Epoch {e}: saved the model to {tmp_path / f'all{e}.npz'}" for e in (1, 2)]


@pytest.mark.parametrize("make, error, match", [
    (lambda: anyfc.callbacks.EarlyStopping(3), TypeError,
     r"^monitor must be a metric name \(a str\), got 3$"),
    (lambda: anyfc.callbacks.ReduceLROnPlateau(factor=1.0), ValueError,
     r"^factor must be a finite number in \(0\.0, 1\.0\), got 1\.0$"),
    (lambda: anyfc.callbacks.ReduceLROnPlateau(patience=-1), ValueError,
     r"^patience must be a non-negative integer, got -1$"),
    (lambda: anyfc.callbacks.ReduceLROnPlateau(cooldown=-1), ValueError,
     r"^cooldown must be a non-negative integer, got -1$"),
    (lambda: anyfc.callbacks.ReduceLROnPlateau(min_lr=-1.0), ValueError,
     r"^min_lr must be a finite number in \[0\.0, inf\), got -1\.0$"),
    (lambda: anyfc.callbacks.LearningRateScheduler(0.1), TypeError,
     r"^schedule must be a schedule or a function \(epoch, lr\) -> lr, got 0\.1$"),
])
def test_callback_settings_are_checked_by_name(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_callbacks_take_their_smallest_settings():
    plateau = anyfc.callbacks.ReduceLROnPlateau(patience=0, cooldown=0, min_lr=0.0)
    assert (plateau.patience, plateau.cooldown, plateau.min_lr) == (0, 0, 0.0)


def test_reduce_lr_on_plateau_refuses_a_scheduled_rate_naming_itself():
    with pytest.raises(ValueError, match=r"^ReduceLROnPlateau needs an optimizer with a "
                                         r"constant learning rate, but its lr is "):
        model = anyfc.Sequential([anyfc.Dense(3, 2, "identity")], loss="mse")
        model.fit(X_OPT, T_OPT, verbose=0, validation_data=(X_OPT, T_OPT),
                  optimizer=optimizers.SGD(anyfc.schedules.Constant(0.1)),
                  callbacks=[anyfc.callbacks.ReduceLROnPlateau()])


def test_learning_rate_scheduler_is_silent_by_default(capsys):
    history = _fit_small([anyfc.callbacks.LearningRateScheduler(
        anyfc.schedules.StepDecay(0.2, step_size=1, gamma=0.5))], epochs=2)
    assert history.lr == [0.2, 0.1]
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("monitor, mode", [
    ("val_accuracy", "max"), ("accuracy", "max"), ("val_r2", "max"), ("r2", "max"),
    ("val_loss", "min"), ("mae", "min")])
def test_auto_mode_maximises_accuracy_and_r2_and_minimises_the_rest(monitor, mode):
    for cls in (anyfc.callbacks.EarlyStopping, anyfc.callbacks.ReduceLROnPlateau):
        assert cls(monitor).mode == mode
        assert cls(monitor, mode="min").mode == "min" and cls(monitor, mode="max").mode == "max"


# ---------------------------------------------------------------- metrics: the edges
# Mutation testing of anyfc/_metrics.py: sums that live on a device the host cannot read
# directly (array_api_strict's device1), float32 sums turned into the reported numbers in
# float64, and R² of overflowing sums.


def test_regression_metrics_of_a_float32_model_on_another_device():
    _strict()
    _, _, y, _ = CASES["mse"]
    model = anyfc.Sequential([anyfc.Dense(4, 2, "tanh", backend="array_api_strict",
                                          device="device1", dtype="float32", seed=0),
                              anyfc.Dense(2, 2, "identity", backend="array_api_strict",
                                          device="device1", dtype="float32", seed=1)],
                             loss="mean_squared_error")
    z = host(model.predict(X))
    expected = ref_metrics("mean_squared_error", z, y.astype(np.float32).astype(np.float64))
    for batch_size in (5, None):
        got = model.evaluate(X, y, batch_size=batch_size)
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key], rel=1e-5), key


def test_metrics_of_float32_sums_are_computed_in_float64():
    """``result`` reads the sums once and computes in float64: R² = mean over columns of
    1 - SS_res/SS_tot, from float32 sums whose float32 quotient would round."""
    from anyfc import _metrics

    f32 = np.float32
    sums = {"n": 3, "loss": f32(0.7), "abs": f32(1.3), "sq": np.array([0.1, 0.7], f32),
            "mean": np.array([0.0, 0.0], f32), "m2": np.array([0.3, 0.9], f32)}
    got = _metrics.result(sums, anyfc.losses.get("mse"), 2)
    sq, m2 = sums["sq"].astype(np.float64), sums["m2"].astype(np.float64)
    assert got == {"loss": float(f32(0.7)) / 3, "mae": float(f32(1.3)) / 6,
                   "r2": float(np.mean(1.0 - sq / m2))}
    assert got["r2"] != float(np.mean(f32(1.0) - sums["sq"] / sums["m2"]))


def test_r2_of_overflowing_sums_is_nan_without_a_warning():
    from anyfc import _metrics

    sums = {"n": 2, "loss": np.float64(np.inf), "abs": np.float64(np.inf),
            "sq": np.array([np.inf, 1.0]), "mean": np.zeros(2), "m2": np.array([np.inf, 0.0])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _metrics.result(sums, anyfc.losses.get("mse"), 2)
    assert np.isnan(got["r2"])  # column 0: inf/inf; column 1 (constant, missed): 0


@pytest.mark.parametrize("b0", [0.5, 0.75], ids=["perfect", "missed"])
def test_r2_of_constant_and_low_variance_columns_is_scikit_learns(b0):
    """A constant target column counts 1 when fitted exactly and 0 otherwise
    (scikit-learn's ``r2_score``), a column of variance below 1 by its ratio, over any
    batching."""
    from sklearn.metrics import r2_score

    t = np.array([[0.5, 0.1], [0.5, 0.2], [0.5, 0.3], [0.5, 0.25], [0.5, 0.4]])
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    model = anyfc.Sequential([anyfc.Dense(1, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": np.array([[0.0, 0.05]]),
                           "layers.0.b": np.array([b0, 0.12])})
    z = x @ np.array([[0.0, 0.05]]) + np.array([b0, 0.12])
    for batch_size in (2, None):
        got = model.evaluate(x, t, batch_size=batch_size)["r2"]
        assert got == pytest.approx(r2_score(t, z), rel=RTOL, abs=1e-15)
