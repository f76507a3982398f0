"""The rows the refused-input table (tests/test_validation.py) feeds a model of each loss,
and a snapshot of what a refused call must not change."""

import numpy as np

import anyfc

RNG = np.random.default_rng(7)
X_OK = RNG.standard_normal((10, 4))
Y_OK = RNG.integers(0, 3, 10)


LOSSES = {"ce": "softmax_cross_entropy", "bce": "binary_cross_entropy",
          "mse": "mean_squared_error"}


def _model(bk, loss):
    model = anyfc.Sequential([bk.dense(4, 5, "relu", seed=0), bk.dense(5, 3, "identity", seed=1)],
                             loss=LOSSES[loss])
    y = {"ce": Y_OK, "bce": np.eye(3)[Y_OK], "mse": np.zeros((10, 3))}[loss]
    model.fit(X_OK, y, epochs=1, batch_size=4, optimizer=anyfc.optimizers.Adam(0.01), verbose=0)
    return model


def _state(model):
    params = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    opt = {f"{s}.{k}": anyfc.to_numpy(v) for s, d in model.optimizer.state.items()
           for k, v in d.items()}
    return params, opt, model.optimizer.t, type(model.optimizer)
