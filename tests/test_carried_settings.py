"""Every setting, at a value other than its default, through every path that carries a
model: a checkpoint file, pickle and deepcopy, ``to()`` (another dtype, another library),
Dask shipping (data-parallel steps on the workers) and ONNX export (issue #21, item 7).

A default value cannot tell "carried" from "forgotten": a path that dropped ``eps`` or
``beta1`` and rebuilt the class with its default would pass any test that used the
default. So each model below sets every setting away from its default, and each path is
checked twice: the registry specs (the settings as data) are equal, and the model does
the same thing — the same predictions, and the same weights after the same epoch (which
the optimizer's, the loss's and the L2 settings all change).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import anyfc
from anyfc import registry, schedules
from anyfc.losses import SoftmaxCrossEntropy
from anyfc.optimizers import Adam

N_IN, N_OUT = 5, 3
RNG = np.random.default_rng(21)
X = RNG.standard_normal((24, N_IN))
Y = RNG.integers(0, N_OUT, 24)
W = RNG.uniform(0.5, 2.0, 24)  # sample weights: reduction="mean_with_sample_weight" shows


def _odd(bk, *, coupled: bool = True, dtype: str = "float64") -> anyfc.Sequential:
    """A model whose every setting is off its default (``coupled``: with BatchNorm and
    Dropout, which data-parallel steps refuse), with an optimizer that has taken a step."""
    where = {"backend": bk.name, "device": bk.device_name, "dtype": dtype}
    layers = [anyfc.Dense(N_IN, 8, {"name": "leaky_relu", "alpha": 0.3}, l2=0.05, seed=0,
                          init="xavier_normal", **where)]
    if coupled:
        layers += [anyfc.BatchNorm(8, momentum=0.3, eps=0.02, **where),
                   anyfc.layers.ELU(alpha=0.4, **where), anyfc.Dropout(0.25, seed=7, **where)]
    else:
        layers += [anyfc.layers.ELU(alpha=0.4, **where)]
    layers += [anyfc.Dense(8, 6, {"name": "elu", "alpha": 0.7}, l2=0.02, seed=1, **where),
               anyfc.LayerNorm(6, eps=0.03, **where),
               anyfc.layers.LeakyReLU(alpha=0.2, **where),
               anyfc.Dense(6, N_OUT, "identity", seed=2, **where)]
    model = anyfc.Sequential(layers, SoftmaxCrossEntropy("mean_with_sample_weight"))
    opt = Adam(schedules.StepDecay(0.05, step_size=1, gamma=0.5, per="step"), beta1=0.7,
               beta2=0.95, eps=1e-4, weight_decay=0.01, clipnorm=3.0, clipvalue=2.0, eps_hat=True)
    model.fit(X, Y, sample_weight=W, epochs=1, batch_size=12, optimizer=opt, seed=0,
              shuffle=False, verbose=0)
    return model


def _specs(model: anyfc.Sequential) -> list:
    return ([registry.spec(layer) for layer in model.layers] + [registry.spec(model.loss)]
            + [registry.spec(model.optimizer)])


def _every_setting_is_off_its_default(model: anyfc.Sequential) -> None:
    """The premise: for each class in the model, every setting its default-built spec
    holds (sizes and seeds aside) is off its default in at least one of its objects."""
    defaults = [anyfc.Dense(1, 1), anyfc.BatchNorm(1), anyfc.layers.ELU(), anyfc.Dropout(0.5),
                anyfc.LayerNorm(1), anyfc.layers.LeakyReLU(), SoftmaxCrossEntropy(), Adam()]
    sizes = ("n_in", "n_out", "n", "seed", "name", "type")
    for default in defaults:
        settings = _flat(registry.spec(default))
        keys, changed = set(settings), set[str]()
        for obj in [*model.layers, model.loss, model.optimizer]:
            if type(obj) is type(default):  # a setting written only when on counts too
                ours = _flat(registry.spec(obj))
                keys |= set(ours)
                changed |= {k for k in ours if settings.get(k, object()) != ours[k]}
                changed |= {k for k in settings if k not in ours}  # a number → a schedule
        left = sorted(k for k in keys if k not in changed and k.split(".")[-1] not in sizes)
        assert not left, f"{type(default).__name__}: {left} only at their defaults"


def _flat(spec: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _same_behaviour(a: anyfc.Sequential, b: anyfc.Sequential, rtol: float = 1e-12) -> None:
    """The same settings, predictions, and weights after one more epoch each."""
    assert _specs(a) == _specs(b)
    np.testing.assert_allclose(anyfc.to_numpy(b.predict(X)), anyfc.to_numpy(a.predict(X)),
                               rtol=rtol, atol=rtol)
    for m in (a, b):
        m.fit(X, Y, sample_weight=W, epochs=1, batch_size=12, seed=3, shuffle=False,
              verbose=0)
    for (k, u), (k2, v) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2
        np.testing.assert_allclose(anyfc.to_numpy(v), anyfc.to_numpy(u), rtol=rtol,
                                   atol=rtol, err_msg=k)


def test_the_model_sets_every_setting_off_its_default(cpu_bk):
    _every_setting_is_off_its_default(_odd(cpu_bk))


@pytest.mark.parametrize("path", ["checkpoint", "pickle", "deepcopy", "state_dict"])
def test_settings_travel_through_copies_and_files(bk, path, tmp_path):
    model = _odd(bk)
    if path == "checkpoint":
        model.save(tmp_path / "odd.anyfc")
        other = anyfc.load(tmp_path / "odd.anyfc", backend=bk.name, device=bk.device_name)
    elif path == "pickle":
        other = pickle.loads(pickle.dumps(model))
    elif path == "deepcopy":
        other = copy.deepcopy(model)
    else:  # the weights alone: settings come from the code that builds the model
        other = _odd(bk)
        other.load_state_dict(model.state_dict())
        other.optimizer.load_state_dict(model.optimizer.state_dict())
    _same_behaviour(model, other)


def test_settings_travel_through_a_move_to_numpy_and_back(bk):
    """Settings always travel; a dropout generator's position travels between generators
    of one kind (NumPy's PCG64 behind numpy, array_api_strict and Dask), else the moved
    layer starts again from its seed — so across kinds the same training is compared on a
    model whose dropout draws nothing (rate 0 is off its default too)."""
    model = _odd(bk)
    same_kind = bk.name in ("numpy", "array_api_strict", "dask")
    if not same_kind:
        model.layers[3].rate = 0.0
    moved = copy.deepcopy(model).to("numpy")
    _same_behaviour(model, moved, rtol=1e-10)
    back = copy.deepcopy(moved).to(bk.name, bk.device_name)
    _same_behaviour(moved, back, rtol=1e-10)


def test_settings_travel_through_a_change_of_dtype(cpu_bk):
    model = _odd(cpu_bk)
    single = copy.deepcopy(model).to(dtype="float32")
    assert _specs(single) == _specs(model)
    np.testing.assert_allclose(anyfc.to_numpy(single.predict(X.astype("float32"))),
                               anyfc.to_numpy(model.predict(X)), rtol=1e-4, atol=1e-5)


def test_settings_travel_through_dask_shipping(dask_bk):
    """Data-parallel steps run each chunk's forward and backward on a worker, from a
    copy of the model shipped there: every setting must arrive (one chunk per batch, so
    the result equals one process's to rounding)."""
    da = pytest.importorskip("dask.array")
    numpy_bk = type(dask_bk)("numpy", "numpy", None)  # the model stays on NumPy: its
    # copies on the workers do the arithmetic of each chunk
    single, parallel = _odd(numpy_bk, coupled=False), _odd(numpy_bk, coupled=False)
    single.fit(X, Y, sample_weight=W, epochs=1, batch_size=12, seed=3, shuffle=False,
               verbose=0)
    chunked = [da.from_array(a, chunks=6) for a in (X, Y, W)]
    parallel.fit(chunked[0], chunked[1], sample_weight=chunked[2], epochs=1, batch_size=12,
                 seed=3, shuffle=False, verbose=0, strategy="data_parallel")
    assert _specs(parallel) == _specs(single)
    for (k, u), v in zip(single.state_dict().items(), parallel.state_dict().values()):
        np.testing.assert_allclose(anyfc.to_numpy(v), anyfc.to_numpy(u), rtol=1e-10,
                                   err_msg=k)


def test_settings_travel_through_onnx_export(cpu_bk, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import anyfc.onnx

    model = _odd(cpu_bk)
    anyfc.onnx.export(model, tmp_path / "odd.onnx")
    session = ort.InferenceSession(str(tmp_path / "odd.onnx"),
                                   providers=["CPUExecutionProvider"])
    got, = session.run(None, {"input": X})
    np.testing.assert_allclose(got, anyfc.to_numpy(model.predict(X)), rtol=1e-9, atol=1e-12)
