"""Moving models and checkpoints: a model trained on one backend is saved, loaded on any
other, and predicts the same; training resumes exactly; nothing in a file ever runs."""

import os
import pickle

import numpy as np
import pytest

import anyfc
from anyfc import _backend, checkpoint
from tests.helpers.checkpoints import _trained, anyfc_numpy


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


def test_model_to_moves_parameters_and_optimizer_state(bk, rng):
    model, X, _ = _trained(anyfc_numpy())
    expected = anyfc.to_numpy(model.predict(X))
    model.to(bk.name, bk.device_name)
    assert model.backend == bk.name and model.device == bk.device
    for state in model.optimizer.state.values():
        for value in state.values():
            assert _backend.namespace_of(value) is bk.xp
            assert _backend.device_of(value) == bk.device
    np.testing.assert_allclose(anyfc.to_numpy(model.predict(X)), expected, rtol=1e-12)
    model.fit(X, np.zeros(40, dtype=np.int64), epochs=1, verbose=0)  # trains where it now is


def test_dense_to_changes_dtype(bk):
    layer = bk.dense(3, 2, seed=0).to(bk.name, bk.device_name, "float32")
    assert layer.w.dtype == bk.xp.float32 and layer.b.dtype == bk.xp.float32


def test_state_dict_round_trip_and_mismatch_leaves_model_unchanged(rng):
    model, X, _ = _trained(anyfc_numpy())
    sd = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    other, _, _ = _trained(anyfc_numpy(), seed=1)
    other.load_state_dict(sd)
    np.testing.assert_allclose(anyfc.to_numpy(other.predict(X)), anyfc.to_numpy(model.predict(X)))
    sd["layers.0.w"][0, 0] = 123.0  # the loaded model does not alias the caller's arrays
    assert anyfc.to_numpy(other.layers[0].w)[0, 0] != 123.0
    before = anyfc.to_numpy(other.layers[1].w)
    bad = dict(sd, **{"layers.1.w": np.zeros((8, 4))})
    with pytest.raises(ValueError, match=r"layers.1.w has shape \(8, 4\)"):
        other.load_state_dict(bad)
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"layers.0.w": sd["layers.0.w"]})
    np.testing.assert_array_equal(anyfc.to_numpy(other.layers[1].w), before)


class _Boom:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    raw = tmp_path / "evil.npz"
    raw.write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(ValueError, match="pickle"):
        anyfc.load(raw)
    inner = tmp_path / "evil_inner.npz"
    np.savez(inner, __anyfc__=np.array([_Boom(str(marker))], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        anyfc.load(inner)
    assert not marker.exists()


def test_missing_foreign_and_corrupt_files(tmp_path, rng):
    with pytest.raises(FileNotFoundError):
        anyfc.load(tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an anyfc checkpoint"):
        anyfc.load(tmp_path / "text.npz")
    np.savez(tmp_path / "foreign.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="__anyfc__"):
        anyfc.load(tmp_path / "foreign.npz")
    model, _, _ = _trained(anyfc_numpy())
    model.save(tmp_path / "ok.npz")
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not an anyfc checkpoint"):
        anyfc.load(tmp_path / "truncated.npz")


def test_interrupted_save_keeps_the_old_checkpoint(tmp_path, rng, monkeypatch):
    model, X, _ = _trained(anyfc_numpy())
    path = tmp_path / "model.npz"
    model.save(path)
    old = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


def test_info_lists_every_backend(capsys):
    text = anyfc.info()
    for name in anyfc.BACKENDS:
        assert name in text
    assert "numpy             usable: yes" in capsys.readouterr().out
