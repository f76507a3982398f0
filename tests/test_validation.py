"""anyfc._validation: bad input is refused at the door with a message that names the
problem, and leaves the model exactly as it was (X, y, class labels, one-hot rows, dtypes,
values too large, batch sizes, a loss that disagrees with the targets); integers, booleans
and NumPy scalars are taken; ``sample_weight`` and ``class_weight`` (``"balanced"`` as
scikit-learn defines it) are checked and land on the model's backend and device."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import anyfc
from anyfc import _backend, _validation, losses
from tests.helpers import hostile, training, zoo
from tests.helpers.errors import X_OK, Y_OK, _model, _state
from tests.references import _cases, _host, _target, _weights


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


@pytest.mark.hostile
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


@pytest.mark.hostile
@pytest.mark.parametrize("make,error,pattern", [
    (lambda: anyfc.Dense(2, 2, "softmaxx"), ValueError, "unknown activation 'softmaxx'.*relu"),
    (lambda: anyfc.Dense(2, 2, "relu", init="lecun"), ValueError,
     "unknown initializer 'lecun'.*he"),
    (lambda: anyfc.Dense(2, 2, "relu", dtype="float8"), ValueError, "unsupported dtype 'float8'"),
    (lambda: anyfc.Dense(2, 2, "relu", backend="mxnet"), ValueError, "unknown backend 'mxnet'"),
    (lambda: anyfc.Dense(0, 2, "relu"), ValueError, "positive integer n_in, got 0"),
    (lambda: anyfc.Dense(2, -1, "relu"), ValueError, "positive integer n_out, got -1"),
    (lambda: anyfc.Sequential([anyfc.Dense(2, 2, "relu")], loss="hinge"), ValueError,
     "unknown loss"),
    (lambda: anyfc.Sequential([]), ValueError, "at least one layer"),
    (lambda: anyfc.Sequential([anyfc.Dense(2, 3, "relu"), anyfc.Dense(4, 1, "relu")]), ValueError,
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


@pytest.mark.hostile
def test_integer_and_boolean_inputs_are_cast(bk):
    model = _model(bk, "ce")
    p_int = model.predict(np.arange(8).reshape(2, 4))
    p_bool = model.predict(np.arange(8).reshape(2, 4) % 2 == 0)
    for p in (p_int, p_bool):
        assert p.dtype == model.dtype
    model.fit(np.arange(40).reshape(10, 4) % 3, Y_OK.astype(np.int32), verbose=0)


def _sample_weight(bk, w, n=4, dtype="float64"):
    return _validation.sample_weight(w, n, bk.xp, bk.device,
                                     _backend.resolve_dtype(bk.xp, dtype))


@pytest.mark.parametrize("form", ["list", "numpy", "int numpy", "backend"])
def test_sample_weight_lands_on_the_models_backend(bk, form):
    host = np.array([1.0, 0.0, 2.5, 3.0])
    w = {"list": host.tolist(), "numpy": host, "int numpy": np.array([1, 0, 2, 3]),
         "backend": bk.asarray(host)}[form]
    out = _sample_weight(bk, w)
    assert _backend.namespace_of(out) is bk.xp
    assert _backend.device_of(out) == bk.device
    assert out.dtype == bk.xp.float64
    np.testing.assert_array_equal(_host(out), host if form != "int numpy" else [1, 0, 2, 3])


def test_sample_weight_none_is_unweighted(bk):
    assert _sample_weight(bk, None) is None


def test_sample_weight_from_another_library(rng):
    pytest.importorskip("array_api_strict")
    xp = _backend.get_namespace("numpy")
    w = anyfc.to_backend(np.array([1.0, 2.0, 3.0, 4.0]), "array_api_strict", "device1")
    out = _validation.sample_weight(w, 4, xp, "cpu", xp.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [1, 2, 3, 4])


@pytest.mark.parametrize("w, error, message", [
    (np.ones((4, 1)), ValueError, r"sample_weight must be 1-D .*flatten it"),
    (np.ones((2, 2)), ValueError, r"sample_weight must be 1-D .*\(2, 2\)"),
    (np.float64(1.0), ValueError, r"sample_weight must be 1-D"),
    (np.ones(3), ValueError, r"X has 4 rows but sample_weight has 3 weights"),
    (["a", "b", "c", "d"], TypeError, r"sample_weight .*real numbers"),
    (np.ones(4, dtype=complex), TypeError, r"sample_weight .*real numbers"),
    (np.array([True, False, True, True]), TypeError, r"sample_weight has boolean values"),
    (np.array([1.0, np.nan, 1.0, 1.0]), ValueError, r"sample_weight contains NaN or infinity"),
    (np.array([1.0, 1.0, np.inf, 1.0]), ValueError, r"sample_weight contains NaN or infinity"),
    (np.array([1.0, -0.5, 1.0, 1.0]), ValueError, r"sample_weight holds negative weights .*1"),
    (np.zeros(4), ValueError, r"sample_weight is all zeros"),
])
def test_sample_weight_refuses_bad_weights(bk, w, error, message):
    with pytest.raises(error, match=message):
        _sample_weight(bk, w)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_sample_weight_too_large_for_float32(bk):
    with pytest.raises(ValueError, match=r"sample_weight holds values too large for float32"):
        _sample_weight(bk, np.array([1.0, 1e300, 1.0, 1.0]), dtype="float32")


def test_sample_weight_errors_name_the_argument(bk):
    with pytest.raises(ValueError, match=r"^val_weight is all zeros"):
        _validation.sample_weight(np.zeros(4), 4, bk.xp, bk.device,
                                  _backend.resolve_dtype(bk.xp, "float64"), what="val_weight")


def _balanced(labels, n_classes):
    """scikit-learn's definition: n_samples / (n_classes_present · bincount), per row."""
    classes = np.unique(labels)
    per_class = {c: len(labels) / (len(classes) * np.sum(labels == c)) for c in classes}
    return np.array([per_class[c] for c in labels])


def test_balanced_class_weight_follows_the_formula(bk):
    labels = np.array([0, 0, 0, 2, 2, 0])  # class 1 absent: 2 classes present out of 3
    loss = losses.get("softmax_cross_entropy")
    out = _validation.class_weight("balanced", bk.asarray(labels, None), loss, 3)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (6,)
    np.testing.assert_allclose(out, _balanced(labels, 3), rtol=1e-15)
    # each class present gets the same total weight: n_samples / n_classes
    np.testing.assert_allclose([out[labels == c].sum() for c in (0, 2)], [3.0, 3.0])


def test_balanced_class_weight_from_one_hot_rows(bk):
    labels = np.array([1, 0, 1, 1, 2, 1, 0])
    onehot = np.eye(3)[labels]
    out = _validation.class_weight("balanced", bk.asarray(onehot), losses.get("cross_entropy"),
                                   3)
    np.testing.assert_allclose(out, _balanced(labels, 3), rtol=1e-15)


@pytest.mark.parametrize("shape", [(8,), (8, 1)])
def test_balanced_class_weight_for_binary_targets(bk, shape):
    bits = np.array([1, 0, 0, 0, 0, 0, 1, 0], dtype=np.float64)
    out = _validation.class_weight("balanced", bk.asarray(bits.reshape(shape)),
                                   losses.get("binary_cross_entropy"), 1)
    np.testing.assert_allclose(out, _balanced(bits.astype(int), 2), rtol=1e-15)


def test_dict_class_weight_and_missing_classes_weigh_one(bk):
    labels = np.array([0, 1, 2, 1])
    out = _validation.class_weight({1: 3.0, np.int64(2): 0.5}, bk.asarray(labels, None),
                                   losses.get("softmax_cross_entropy"), 3)
    np.testing.assert_array_equal(out, [1.0, 3.0, 0.5, 3.0])
    bits = np.array([0.0, 1.0, 1.0])
    out = _validation.class_weight({1: 4}, bits, losses.get("binary_cross_entropy"), 1)
    np.testing.assert_array_equal(out, [1.0, 4.0, 4.0])
    assert _validation.class_weight(None, labels, losses.get("cross_entropy"), 3) is None


def test_class_weight_times_sample_weight_is_the_row_weight(bk, rng):
    z, t, reference = _cases(rng)["softmax_cross_entropy"]
    sw = _weights(rng)
    cw = _validation.class_weight({0: 2.0, 3: 0.5}, t, losses.get("cross_entropy"), 4)
    w = _sample_weight(bk, cw * sw, n=6)
    e = losses.get("cross_entropy").value(bk.asarray(z), _target(bk, t), w)
    np.testing.assert_allclose(float(_host(e)), reference(cw * sw), rtol=1e-12)


@pytest.mark.parametrize("cw, y, loss, n_out, error, message", [
    ("balanced", np.zeros((4, 2)), "mean_squared_error", 2, ValueError,
     r"class_weight needs a classification loss .*not mean_squared_error"),
    ("balanced", np.zeros((4, 3)), "binary_cross_entropy", 3, ValueError,
     r"single-output binary_cross_entropy .*3 outputs \(multi-label\)"),
    ({3: 1.0}, np.array([0, 1, 2]), "softmax_cross_entropy", 3, ValueError,
     r"class_weight has the key 3, which is not a class: .*0..2"),
    ({-1: 1.0}, np.array([0, 1, 2]), "softmax_cross_entropy", 3, ValueError,
     r"class_weight has the key -1, which is not a class"),
    ({2: 1.0}, np.array([0.0, 1.0]), "binary_cross_entropy", 1, ValueError,
     r"class_weight has the key 2, which is not a class: .*0..1"),
    ({"1": 1.0}, np.array([0, 1, 2]), "softmax_cross_entropy", 3, TypeError,
     r"class_weight has the key '1'; keys must be integer class indices"),
    ({True: 1.0}, np.array([0, 1, 2]), "softmax_cross_entropy", 3, TypeError,
     r"keys must be integer class indices"),
    ({1: -2.0}, np.array([0, 1, 2]), "softmax_cross_entropy", 3, ValueError,
     r"class_weight\[1\] must be a finite number in \[0.0, inf\)"),
    ({1: float("nan")}, np.array([0, 1, 2]), "softmax_cross_entropy", 3, ValueError,
     r"class_weight\[1\] must be a finite number"),
    ({1: "heavy"}, np.array([0, 1, 2]), "softmax_cross_entropy", 3, ValueError,
     r"class_weight\[1\] must be a finite number"),
    ([1.0, 2.0], np.array([0, 1]), "softmax_cross_entropy", 2, TypeError,
     r"class_weight must be a dict \{class: weight\} or 'balanced', got list"),
    ("auto", np.array([0, 1]), "softmax_cross_entropy", 2, ValueError,
     r"class_weight must be a dict \{class: weight\} or 'balanced', got 'auto'"),
    ({0: 0.0, 1: 0.0}, np.array([0, 1]), "softmax_cross_entropy", 2, ValueError,
     r"class_weight gives every row of y a weight of 0"),
    ("balanced", np.array([0.0, 0.5, 1.0]), "binary_cross_entropy", 1, ValueError,
     r"class_weight needs 0/1 targets .*rows \[1\]"),
    ("balanced", np.array([0, 1, 5]), "softmax_cross_entropy", 3, ValueError,
     r"y has class label 5, outside 0..2"),
    ("balanced", np.array([0.0, 1.5]), "softmax_cross_entropy", 3, ValueError,
     r"y holds non-integer class labels \(rows \[1\]\)"),
    ("balanced", np.array(["a", "b"]), "softmax_cross_entropy", 3, TypeError,
     r"y has dtype .*real numbers"),
])
def test_class_weight_refuses_clearly(cw, y, loss, n_out, error, message):
    with pytest.raises(error, match=message):
        _validation.class_weight(cw, y, losses.get(loss), n_out)


def test_fit_rejects_mismatched_rows_and_features(rng):
    model = anyfc.Sequential([anyfc.Dense(4, 3, "identity")])
    with pytest.raises(ValueError, match="5 features per row but the first layer takes 4"):
        model.fit(rng.standard_normal((10, 5)), rng.integers(0, 3, 10), verbose=0)
    with pytest.raises(ValueError, match="10 rows but y has 9"):
        model.fit(rng.standard_normal((10, 4)), rng.integers(0, 3, 9), verbose=0)


def test_class_weight_equals_the_same_sample_weight(bk):
    a, b = training._model(bk), training._model(bk)
    a.fit(training.X, training.Y, epochs=2, batch_size=8, class_weight={0: 0.5, 1: 3.0},
          verbose=0, seed=4)
    b.fit(training.X, training.Y, epochs=2, batch_size=8,
          sample_weight=np.where(training.Y == 1, 3.0, 0.5), verbose=0, seed=4)
    training._assert_weights(training._weights(a), training._weights(b), rtol=1e-12, atol=0)
    balanced = training._model(bk)
    counts = np.bincount(training.Y)
    c = training._model(bk)
    balanced.fit(training.X, training.Y, epochs=1, batch_size=8, class_weight="balanced",
                 verbose=0, seed=4)
    c.fit(training.X, training.Y, epochs=1, batch_size=8,
          sample_weight=(len(training.Y) / (2 * counts))[training.Y], verbose=0, seed=4)
    training._assert_weights(training._weights(balanced), training._weights(c), rtol=1e-12, atol=0)


@pytest.mark.hostile
def test_numpy_scalars_are_accepted_wherever_numbers_are(bk):
    n_classes = np.int64(hostile.Y.max() + 1)
    model = anyfc.Sequential([bk.dense(np.int64(4), np.int32(5), "relu", seed=np.int64(0)),
                              bk.dense(np.int64(5), n_classes, "identity", seed=1)])
    opt = anyfc.optimizers.SGD(lr=np.float32(0.1), momentum=np.float64(0.5))
    model.fit(hostile.X, hostile.Y, epochs=np.int64(1), batch_size=np.int64(8), optimizer=opt,
              seed=np.int64(0), verbose=0)
    assert tuple(model.predict(hostile.X, batch_size=np.int64(5)).shape) == (24, 3)
    anyfc.activations.LeakyReLU(np.float32(0.1))


@pytest.mark.hostile
@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, "8", True])
def test_evaluate_and_predict_refuse_bad_batch_sizes(bk, batch_size):
    model = hostile._trained(bk)
    for call in (model.evaluate, lambda X, y, **k: model.predict(X, **k)):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            call(hostile.X, hostile.Y, batch_size=batch_size)


@pytest.mark.hostile
def test_class_labels_beyond_int32_are_refused_not_wrapped(bk):
    model = hostile._trained(bk)
    before = hostile._state(model)
    y = hostile.Y.copy().astype(np.int64)
    y[5] = 2**32 + 1  # wraps to 1 in int32: a silently wrong label
    with pytest.raises(ValueError, match="class label 4294967297, outside 0..2"):
        model.fit(hostile.X, y, verbose=0)
    hostile._assert_same(before, hostile._state(model))


@pytest.mark.hostile
def test_large_integer_regression_targets_keep_their_value(bk):
    model = hostile._model(bk, loss="mean_squared_error", n_out=1)
    y = np.full(24, 2**31 + 2**20, dtype=np.int64)  # exact in float64, wraps in int32
    loss = model.evaluate(hostile.X, y)["loss"]
    pred = anyfc.to_numpy(model.predict(hostile.X))[:, 0]
    np.testing.assert_allclose(loss, np.mean((pred - y.astype(np.float64)) ** 2), rtol=1e-6)


@pytest.mark.hostile
def test_integer_labels_give_no_warning(bk):
    model = hostile._model(bk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(hostile.X, hostile.Y.astype(np.int64), epochs=1, batch_size=8, verbose=0, seed=0)
        model.fit(hostile.X, hostile.Y.astype(np.int32), epochs=1, batch_size=8, verbose=0, seed=0)
        model.evaluate(hostile.X, hostile.Y)
        model.predict(hostile.X)


@pytest.mark.hostile
def test_values_too_large_for_the_dtype_are_named_as_such(bk):
    model = hostile._trained(bk, dtype="float32")
    X_big = hostile.X.copy()
    X_big[3, 1] = 1e39  # finite in float64, infinite in float32
    with pytest.raises(ValueError, match=r"too large for float32.*rows \[3\].*float64"):
        model.predict(X_big)
    X_big[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(X_big)


@pytest.mark.hostile
@pytest.mark.parametrize("loss,y,pattern", [
    ("softmax_cross_entropy", hostile.RNG.standard_normal(24), "loss='mean_squared_error'"),
    ("softmax_cross_entropy", hostile.RNG.standard_normal((24, 3)), "loss='mean_squared_error'"),
    ("mean_squared_error", hostile.Y, "loss='softmax_cross_entropy'"),
    ("binary_cross_entropy", hostile.RNG.standard_normal((24, 3)) * 5, "loss='mean_squared_error'"),
], ids=["regression-labels", "regression-rows", "labels-to-mse", "regression-to-bce"])
def test_a_loss_that_disagrees_with_the_targets_names_the_one_to_use(bk, loss, y, pattern):
    model = hostile._model(bk, loss=loss)
    with pytest.raises(ValueError, match=pattern):
        model.fit(hostile.X, y, verbose=0)


@pytest.mark.review
def test_a_huge_unsigned_label_is_reported_exactly():
    model = anyfc.Sequential([anyfc.Dense(4, 3, "identity")])
    y = np.zeros(8, dtype=np.uint64)
    y[2] = 2**64 - 1
    with pytest.raises(ValueError, match="class label 18446744073709551615"):
        model.fit(zoo.RNG.standard_normal((8, 4)), y, verbose=0)


def test_messages_name_the_fix():
    model = anyfc.Sequential([anyfc.Dense(2, 3)])
    with pytest.raises(TypeError, match="LabelEncoder.*anyfc.sklearn.MLPClassifier"):
        model.fit([[0.0, 1.0], [1.0, 0.0]], np.array(["cat", "dog"]), verbose=0)
    with pytest.raises(TypeError, match=r"optimizer is the class Adam; pass an instance: "
                                        r"optimizer=Adam\(\)"):
        model.fit([[0.0, 1.0], [1.0, 0.0]], [0, 1], optimizer=anyfc.optimizers.Adam, verbose=0)
    with pytest.raises(ValueError, match="contains NaN or infinity.*impute those values first"):
        model.predict([[np.nan, 1.0]])


def test_a_diverged_fit_raises_anyfcs_error_and_no_numpy_warning():
    import warnings

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)) * 1e3
    y = X @ np.array([[1.0], [2.0], [3.0]])
    model = anyfc.Sequential([anyfc.Dense(3, 16, "relu", seed=0), anyfc.Dense(16, 1, seed=1)],
                             loss="mean_squared_error")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(FloatingPointError, match="training diverged"):
            model.fit(X, y, epochs=5, optimizer=anyfc.optimizers.SGD(10.0), verbose=0)

# ------------------------------------------------ hostile inputs (issue #21, round three)


@pytest.mark.hostile
@pytest.mark.parametrize("call", [
    lambda m, X, y: m.fit(np.ma.masked_array(X, mask=X > 1), y, epochs=1, verbose=0),
    lambda m, X, y: m.fit(X, np.ma.masked_array(y), epochs=1, verbose=0),
    lambda m, X, y: m.predict(np.ma.masked_array(X)),
    lambda m, X, y: m.evaluate(np.ma.masked_array(X), y),
    lambda m, X, y: m.fit(X, y, epochs=1, verbose=0, sample_weight=np.ma.ones(len(y))),
], ids=["fit-X", "fit-y", "predict", "evaluate", "sample_weight"])
def test_masked_arrays_are_refused_naming_filled(bk, call):
    model = hostile._model(bk)
    before = hostile._state(model)
    with pytest.raises(TypeError, match=r"masked array.*np\.ma\.filled\(.*\.filled\("):
        call(model, hostile.X, hostile.Y)
    hostile._assert_same(before, hostile._state(model))


@pytest.mark.hostile
def test_object_arrays_are_refused(bk):
    model = hostile._model(bk)
    before = hostile._state(model)
    with pytest.raises(TypeError, match="dtype object"):
        model.fit(hostile.X.astype(object), hostile.Y, epochs=1, verbose=0)
    with pytest.raises(TypeError, match="dtype object"):
        model.predict(hostile.X.astype(object))
    hostile._assert_same(before, hostile._state(model))


@pytest.mark.hostile
def test_dask_arrays_with_unknown_chunk_sizes_are_refused_naming_compute_chunk_sizes(bk):
    da = pytest.importorskip("dask.array")
    model = hostile._model(bk)
    before = hostile._state(model)
    X = da.from_array(hostile.X, chunks=8)
    keep = X[:, 0] > -100  # every row, but Dask cannot know how many
    y = da.from_array(hostile.Y, chunks=8)
    for call in (lambda: model.fit(X[keep], y[keep], epochs=1, verbose=0),
                 lambda: model.predict(X[keep]), lambda: model.evaluate(X[keep], y[keep]),
                 lambda: model.fit(hostile.X, y[keep], epochs=1, verbose=0)):
        with pytest.raises(ValueError, match=r"unknown chunk sizes.*compute_chunk_sizes\(\)"):
            call()
    hostile._assert_same(before, hostile._state(model))
