"""Bad input is refused at the door with a message that names the problem, and leaves
the model exactly as it was; training that diverges stops and keeps finite weights."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anyfc
from tests.helpers.errors import RNG, X_OK, Y_OK, _model, _state


def _with(a, index, value, dtype=None):
    a = np.array(a, dtype=dtype or np.asarray(a).dtype)
    a[index] = value
    return a


# (id, loss, call(model) that must fail, exception type, pattern the message must match)
CASES = [
    ("X 1-D", "ce", lambda m: m.fit(X_OK[0], Y_OK[:1], verbose=0), ValueError, "2-D"),
    ("X 3-D", "ce", lambda m: m.predict(X_OK[None]), ValueError, r"2-D.*\(1, 10, 4\)"),
    ("features", "ce", lambda m: m.fit(np.ones((10, 5)), Y_OK, verbose=0), ValueError,
     "5 features per row but the first layer takes 4"),
    ("rows", "ce", lambda m: m.fit(X_OK, Y_OK[:9], verbose=0), ValueError,
     "10 rows but y has 9 rows"),
    ("empty", "ce", lambda m: m.fit(np.ones((0, 4)), Y_OK[:0], verbose=0), ValueError, "empty"),
    ("NaN in X", "ce", lambda m: m.fit(_with(X_OK, (2, 1), np.nan), Y_OK, verbose=0),
     ValueError, r"X contains NaN or infinity \(rows \[2\]"),
    ("inf in X predict", "ce", lambda m: m.predict(_with(X_OK, (4, 0), np.inf)), ValueError,
     r"rows \[4\]"),
    ("NaN in y", "mse", lambda m: m.fit(X_OK, _with(np.zeros((10, 3)), (6, 2), np.nan),
                                         verbose=0), ValueError, r"y contains NaN.*rows \[6\]"),
    ("label too big", "ce", lambda m: m.fit(X_OK, _with(Y_OK, 3, 3), verbose=0), ValueError,
     r"class label 3, outside 0..2"),
    ("negative label", "ce", lambda m: m.fit(X_OK, _with(Y_OK, 0, -1), verbose=0), ValueError,
     "class label -1"),
    ("labels from 1", "ce", lambda m: m.fit(X_OK, np.arange(10) % 3 + 1, verbose=0),
     ValueError, "start at 1: subtract 1"),
    ("non-integer label", "ce", lambda m: m.fit(X_OK, _with(Y_OK, 5, 1.5, float), verbose=0),
     ValueError, r"non-integer class labels \(rows \[5\]\)"),
    ("not one-hot", "ce", lambda m: m.fit(X_OK, _with(np.eye(3)[Y_OK], (8, 0), 0.5), verbose=0),
     ValueError, r"rows \[8\] of y are not one-hot"),
    ("one-hot columns", "ce", lambda m: m.fit(X_OK, np.eye(4)[Y_OK], verbose=0), ValueError,
     "4 columns but the last layer gives 3"),
    ("BCE target 2", "bce", lambda m: m.fit(X_OK, _with(np.zeros((10, 3)), (1, 1), 2.0),
                                            verbose=0), ValueError, r"0/1.*rows \[1\]"),
    ("MSE shape", "mse", lambda m: m.fit(X_OK, np.zeros((10, 2)), verbose=0), ValueError,
     r"shape \(10, 2\)"),
    ("complex X", "ce", lambda m: m.fit(X_OK + 1j, Y_OK, verbose=0), TypeError, "complex"),
    ("string X", "ce", lambda m: m.predict(np.array([["a", "b", "c", "d"]])), TypeError,
     "needs real numbers"),
    ("object X", "ce", lambda m: m.predict([[{}, 1, 2, 3]]), TypeError, "object"),
    ("ragged X", "ce", lambda m: m.predict([[1, 2, 3, 4], [1]]), TypeError, "rectangular"),
    ("string y", "ce", lambda m: m.fit(X_OK, np.array(["cat"] * 10), verbose=0), TypeError,
     "y has dtype"),
    ("batch size 0", "ce", lambda m: m.fit(X_OK, Y_OK, batch_size=0, verbose=0), ValueError,
     "batch_size must be a positive integer, got 0"),
    ("epochs -1", "ce", lambda m: m.fit(X_OK, Y_OK, epochs=-1, verbose=0), ValueError,
     "epochs must be a non-negative integer, got -1"),
    ("optimizer name", "ce", lambda m: m.fit(X_OK, Y_OK, optimizer="lbfgs", verbose=0),
     ValueError, "unknown optimizer 'lbfgs'.*adam"),
    ("validation X", "ce", lambda m: m.fit(X_OK, Y_OK, validation_data=(X_OK[:, :3], Y_OK),
                                           verbose=0), ValueError, "validation X has 3 features"),
    ("predict batch", "ce", lambda m: m.predict(X_OK, batch_size=0), ValueError, "batch_size"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(bk, case):
    _, loss, call, error, pattern = case
    model = _model(bk, loss)
    before = _state(model)
    with pytest.raises(error, match=pattern):
        call(model)
    after = _state(model)
    assert after[2:] == before[2:]
    for a, b in zip(before[:2], after[:2]):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("make,error,pattern", [
    (lambda: anyfc.Dense(2, 2, "softmaxx"), ValueError, "unknown activation 'softmaxx'.*relu"),
    (lambda: anyfc.Dense(2, 2, init="lecun"), ValueError, "unknown initializer 'lecun'.*he"),
    (lambda: anyfc.Dense(2, 2, dtype="float8"), ValueError, "unsupported dtype 'float8'"),
    (lambda: anyfc.Dense(2, 2, backend="mxnet"), ValueError, "unknown backend 'mxnet'"),
    (lambda: anyfc.Dense(0, 2), ValueError, "positive integer n_in, got 0"),
    (lambda: anyfc.Dense(2, -1), ValueError, "positive integer n_out, got -1"),
    (lambda: anyfc.Sequential([anyfc.Dense(2, 2)], loss="hinge"), ValueError, "unknown loss"),
    (lambda: anyfc.Sequential([]), ValueError, "at least one layer"),
    (lambda: anyfc.Sequential([anyfc.Dense(2, 3), anyfc.Dense(4, 1)]), ValueError,
     "layer 0 gives 3 outputs but layer 1 takes 4"),
    (lambda: anyfc.Sequential(["dense"]), TypeError, "layer 0 is a str"),
    (lambda: anyfc.optimizers.Adam(lr=-0.1), ValueError, "lr must be"),
    (lambda: anyfc.optimizers.Adam(beta1=1.0), ValueError, "beta1"),
    (lambda: anyfc.optimizers.RMSProp(eps=0), ValueError, "eps"),
    (lambda: anyfc.optimizers.SGD(lr=math.inf), ValueError, "lr must be a finite"),
], ids=lambda v: "" if callable(v) or isinstance(v, type) else v[:30])
def test_bad_arguments_name_the_problem(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_integer_and_boolean_inputs_are_cast(bk):
    model = _model(bk, "ce")
    p_int = model.predict(np.arange(8).reshape(2, 4))
    p_bool = model.predict(np.arange(8).reshape(2, 4) % 2 == 0)
    for p in (p_int, p_bool):
        assert p.dtype == model.dtype
    model.fit(np.arange(40).reshape(10, 4) % 3, Y_OK.astype(np.int32), verbose=0)


def test_divergence_stops_and_keeps_finite_weights(bk):
    model = anyfc.Sequential([bk.dense(4, 8, seed=0), bk.dense(8, 1, "identity", seed=1)],
                             loss="mean_squared_error")
    X, y = X_OK * 100, RNG.standard_normal(10) * 100
    model.fit(X, y, epochs=1, optimizer=anyfc.optimizers.SGD(1e-6), seed=0, verbose=0)
    before = _state(model)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        with pytest.raises(FloatingPointError, match="diverged in epoch 1.*lower learning rate"):
            model.fit(X, y, epochs=3, batch_size=2, optimizer=anyfc.optimizers.SGD(1e4),
                      seed=0, verbose=0)
    after = _state(model)
    for key, value in before[0].items():
        np.testing.assert_array_equal(after[0][key], value)
        assert np.all(np.isfinite(after[0][key]))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), n_in=st.integers(1, 5), n_out=st.integers(1, 4),
       activation=st.sampled_from(["relu", "leaky_relu", "sigmoid", "tanh", "identity"]),
       scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_random_valid_shapes_never_crash_and_gradients_stay_finite(n, n_in, n_out, activation,
                                                                   scale, seed):
    rng = np.random.default_rng(seed)
    for backend, device in (("numpy", None), ("array_api_strict", "device1")):
        layer = anyfc.Dense(n_in, n_out, activation, backend=backend, device=device, seed=seed)
        x = anyfc.to_backend(rng.standard_normal((n, n_in)) * scale, backend, device, "float32")
        y = layer.forward(x)
        assert tuple(y.shape) == (n, n_out)
        grad_x = layer.backward(anyfc.to_backend(np.ones((n, n_out)), backend, device,
                                                 "float32"))
        for g in (grad_x, layer.grad_w, layer.grad_b):
            assert np.all(np.isfinite(anyfc.to_numpy(g)))


@settings(max_examples=25, deadline=None)
@given(logits=st.lists(st.floats(-1e4, 1e4), min_size=3, max_size=3), label=st.integers(0, 2))
def test_losses_stay_finite_for_any_logits(logits, label):
    z = np.array([logits])
    for name, t in (("softmax_cross_entropy", np.array([label])),
                    ("binary_cross_entropy", np.eye(3)[[label]])):
        loss = anyfc.losses.get(name)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            e = anyfc.to_numpy(loss.forward(z, t))
            g = anyfc.to_numpy(loss.backward())
        assert np.isfinite(e) and np.all(np.isfinite(g))
