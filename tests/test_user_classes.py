"""Your own subclass of an activation or a loss, inheriting a built-in's ``name``, is
carried as itself wherever a model is rebuilt in-process — Dask lazy predict, data-parallel
fit, the compiled step's key — never replaced by the built-in of the same name. (Files
and ONNX, which cannot carry code, refuse it unless it is registered:
``tests/test_registry.py``.)"""

from __future__ import annotations

import numpy as np
import pytest

import anyfc
from anyfc.activations import ReLU
from anyfc.losses import SoftmaxCrossEntropy
from anyfc.training import step as step_module

RNG = np.random.default_rng(11)
X = RNG.standard_normal((40, 4))
Y = RNG.integers(0, 3, 40)


class Doubled(ReLU):
    """``y = 2·max(u, 0)``: a ReLU subclass keeping the built-in's name "relu"."""

    def forward(self, xp, u):
        return 2.0 * xp.maximum(u, 0.0)

    def backward(self, xp, y, grad_y, u=None):
        return grad_y * xp.astype(y > 0, grad_y.dtype) * 2.0


class Halved(SoftmaxCrossEntropy):
    """Half the cross-entropy, named "softmax_cross_entropy" like its parent."""

    def value_and_gradient(self, y, t, w=None):
        e, g = super().value_and_gradient(y, t, w)
        return e / 2, g / 2

    def value(self, y, t, w=None):
        return super().value(y, t, w) / 2


def _model(backend, activation="relu", loss="softmax_cross_entropy", device=None):
    return anyfc.Sequential(
        [anyfc.Dense(4, 6, activation, backend=backend, device=device, dtype="float64",
                     seed=0),
         anyfc.Dense(6, 3, "identity", backend=backend, device=device, dtype="float64",
                     seed=1)], loss)


def _np(a):
    return np.asarray(anyfc.to_numpy(a))


def test_dask_lazy_predict_runs_your_activation(dask_bk):
    import dask.array as da

    mine, plain = _model("numpy", Doubled()), _model("numpy")
    lazy = mine.predict(da.from_array(X, chunks=(15, 4)))
    np.testing.assert_allclose(_np(lazy.compute()), _np(mine.predict(X)), rtol=1e-12)
    assert not np.allclose(_np(lazy.compute()), _np(plain.predict(X)))


def test_data_parallel_fit_trains_your_loss(dask_bk):
    import dask.array as da

    def trained(loss, parallel):
        model = _model("numpy", Doubled(), loss)
        data = (da.from_array(X, chunks=(10, 4)), da.from_array(Y, chunks=10)) if parallel \
            else (X, Y)
        model.fit(*data, epochs=2, batch_size=20, shuffle=False, verbose=0,
                  strategy="data_parallel" if parallel else "auto",
                  optimizer=anyfc.optimizers.SGD(0.5))
        return _np(model.layers[0].w)

    mine = trained(Halved(), True)
    np.testing.assert_allclose(mine, trained(Halved(), False), rtol=1e-10, atol=1e-12)
    assert not np.allclose(mine, trained("softmax_cross_entropy", False))


def test_compiled_step_is_keyed_on_your_classes_not_their_names(cpu_bk):
    sgd = anyfc.optimizers.SGD(0.1)
    plain = _model(cpu_bk.name, device=cpu_bk.device_name)
    mine = _model(cpu_bk.name, Doubled(), Halved(), device=cpu_bk.device_name)
    assert step_module.signature(plain, sgd) != step_module.signature(mine, sgd)
    assert step_module.signature(_model(cpu_bk.name, Doubled(), device=cpu_bk.device_name),
                                 sgd) != step_module.signature(plain, sgd)
    if step_module.compiled(plain, sgd) is not None:  # a backend that compiles (JAX)
        assert step_module.compiled(plain, sgd) is not step_module.compiled(mine, sgd)


@pytest.mark.parametrize("order", ["plain first", "yours first"])
def test_training_with_your_classes_equals_the_reference_on_every_backend(cpu_bk, order):
    """After a model of built-ins of the same structure trained (and, on JAX, compiled
    its step), yours trains as itself: equal to NumPy's eager run of the same classes."""
    def run(backend, device, activation, loss):
        model = _model(backend, activation, loss, device)
        model.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                  optimizer=anyfc.optimizers.SGD(0.2))
        return _np(model.layers[0].w)

    if order == "plain first":
        run(cpu_bk.name, cpu_bk.device_name, "relu", "softmax_cross_entropy")
    got = run(cpu_bk.name, cpu_bk.device_name, Doubled(), Halved())
    reference = run("numpy", None, Doubled(), Halved())
    np.testing.assert_allclose(got, reference, rtol=1e-9, atol=1e-12)
    builtin = run("numpy", None, "relu", "softmax_cross_entropy")
    assert not np.allclose(got, builtin)


class Legacy(SoftmaxCrossEntropy):
    """A loss written for anyfc 0.1: ``forward`` keeps its batch, ``backward()`` reads
    it. It still trains, and one object serves two models without mixing batches."""

    def forward(self, y, t, w=None):
        self.kept = (y, t)
        return super().value(y, t, w)

    def backward(self):
        y, t = self.kept
        return super().gradient(y, t)


def test_a_loss_written_for_anyfc_0_1_trains_and_keeps_nothing(cpu_bk):
    loss = Legacy()
    a = _model(cpu_bk.name, loss=loss, device=cpu_bk.device_name)
    b = _model("numpy")
    a.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0,
          optimizer=anyfc.optimizers.SGD(0.2))
    b.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0,
          optimizer=anyfc.optimizers.SGD(0.2))
    np.testing.assert_allclose(_np(a.layers[0].w), _np(b.layers[0].w), rtol=1e-9, atol=1e-12)
    assert "kept" not in vars(loss)
