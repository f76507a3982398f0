"""A small classifier (4 inputs, 6 hidden, 3 outputs), trained or not, on 24 rows, and
everything a refused call must leave as it was: parameters, optimizer state and identity,
placement (``_state``), compared by ``_assert_same``."""

import numpy as np

import anyfc

RNG = np.random.default_rng(11)
X = RNG.standard_normal((24, 4))
Y = RNG.integers(0, 3, 24)


def _model(bk, activation="tanh", loss="softmax_cross_entropy", n_out=3, dtype="float64"):
    return anyfc.Sequential([bk.dense(4, 6, activation, seed=0, dtype=dtype),
                             bk.dense(6, n_out, "identity", seed=1, dtype=dtype)], loss=loss)


def _trained(bk, **kwargs):
    model = _model(bk, **kwargs)
    model.fit(X, Y, epochs=1, batch_size=8, optimizer=anyfc.optimizers.Adam(0.01), seed=0,
              verbose=0)
    return model


def _state(model):
    """Everything a refused call must leave as it was, on the host."""
    params = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    opt = model.optimizer
    state = {} if opt is None else {f"{s}.{k}": anyfc.to_numpy(v)
                                    for s, d in opt.state.items() for k, v in d.items()}
    placement = [(layer.backend, str(layer.device), str(layer.dtype)) for layer in model.layers]
    return params, state, None if opt is None else (id(opt), opt.t, opt.config()), placement


def _assert_same(before, after):
    assert after[2:] == before[2:]
    for a, b in zip(before[:2], after[:2]):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
