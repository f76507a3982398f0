"""A 40-row, 3-feature binary problem with 12 validation rows, its model, host copies of
its weights, and a callback that records every hook (training control on every backend)."""

from __future__ import annotations

import numpy as np

import anyfc
from anyfc.callbacks import Callback

RNG = np.random.default_rng(7)
X = RNG.standard_normal((40, 3))
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
X_VAL = RNG.standard_normal((12, 3))
Y_VAL = (X_VAL[:, 0] > 0).astype(np.int64)


def _model(bk, n_out=2, loss="softmax_cross_entropy", hidden=True):
    layers = ([bk.dense(3, 5, "tanh", seed=0), bk.dense(5, n_out, "identity", seed=1)]
              if hidden else [bk.dense(3, n_out, "identity", seed=0)])
    return anyfc.Sequential(layers, loss)


def _weights(model):
    return {k: anyfc.to_numpy(v).copy() for k, v in model.state_dict().items()}


def _assert_weights(a, b, **tol):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], err_msg=key, **tol)


class Recorder(Callback):
    """Every hook call, and the weights after each epoch (host copies, for the tests)."""

    def __init__(self):
        self.calls, self.weights = [], []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch}")
        self.weights.append(_weights(self.model))
        self.logs = logs

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append("batch_begin")

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(f"batch_end {logs['size']}")
