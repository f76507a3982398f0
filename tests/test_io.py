"""anyfc.io (``save``, ``load``): a model trained on one backend is saved, loaded on any
other, and predicts the same; training resumes exactly; every layer setting survives and
is used (checked against the settings written in the test, not the model's own config)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import optimizers
from tests.helpers.checkpoints import _trained
from tests.references import ATOL, RNG, RTOL, assert_same_state, host, host_opt_state, host_state


@pytest.mark.cross
def test_save_on_each_backend_load_on_every_other(cpu_bk, tmp_path, rng):
    model, X, _ = _trained(cpu_bk)
    path = tmp_path / "model.npz"
    model.save(path)
    expected = anyfc.to_numpy(model.predict(X))
    for target in ("numpy", "array_api_strict", "torch", "jax"):
        if target not in anyfc.available_backends():
            continue
        loaded = anyfc.load(path, backend=target)
        assert loaded.backend == target and loaded.dtype == loaded.xp.float64
        assert isinstance(loaded.layers[0].activation, anyfc.activations.LeakyReLU)
        np.testing.assert_allclose(anyfc.to_numpy(loaded.predict(X)), expected, rtol=1e-12)


def test_save_load_fit_equals_uninterrupted_training(bk, tmp_path, rng):
    for opt in (anyfc.optimizers.Adam(0.01), anyfc.optimizers.SGD(0.05, momentum=0.9)):
        straight, X, y = _trained(bk, type(opt)(**opt.config()))
        straight.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)

        resumed, _, _ = _trained(bk, type(opt)(**opt.config()))
        resumed.save(tmp_path / "ckpt.npz")
        resumed = anyfc.load(tmp_path / "ckpt.npz", backend=bk.name, device=bk.device_name)
        assert type(resumed.optimizer) is type(opt) and resumed.optimizer.t == 10
        resumed.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)  # no optimizer=
        for a, b in zip(straight.layers, resumed.layers):
            np.testing.assert_allclose(anyfc.to_numpy(a.w), anyfc.to_numpy(b.w), rtol=1e-12)


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


@pytest.mark.reference
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


@pytest.mark.reference
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
