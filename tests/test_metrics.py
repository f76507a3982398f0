"""anyfc._metrics: the numbers ``evaluate`` and ``fit`` report — loss, accuracy (binary: the
probability thresholded at one half; one-hot targets read by their argmax), MAE and R² —
against NumPy on the same weights, over any batching; weighted losses; float32 sums read
in float64; R² of constant columns as scikit-learn's ``r2_score``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import anyfc
from tests.helpers import hostile, training
from tests.references import (
    CASES,
    RTOL,
    Z4,
    X,
    _assert_discriminates_thresholds,
    _mlp,
    _mlp_params,
    _sigmoid,
    _strict,
    host,
    ref_loss,
    ref_metrics,
    ref_output,
)


def test_weighted_loss_in_history_and_evaluate(bk):
    w = np.linspace(0.0, 2.0, 40)
    model = training._model(bk)
    model.fit(training.X, training.Y, epochs=1, verbose=0)
    out = model.evaluate(training.X, training.Y, sample_weight=w, batch_size=7)
    p = anyfc.to_numpy(model.predict(training.X))
    expected = np.mean(w * -np.log(p[np.arange(40), training.Y]))
    assert out["loss"] == pytest.approx(expected, rel=1e-9)


def test_regression_evaluate_reports_mae_and_r2_as_defined(bk):
    model = training._model(bk, n_out=2, loss="mse")
    T = np.stack([training.X[:, 0] * 3 + 100.0, training.X[:, 1] - training.X[:, 2]],
                 axis=1)  # a large mean
    history = model.fit(training.X, T, epochs=2, verbose=0)
    assert set(history) == {"loss", "mae", "r2"}
    out = model.evaluate(training.X, T, batch_size=7)  # partial last batch
    P = anyfc.to_numpy(model.predict(training.X))
    r2 = np.mean(1 - ((P - T) ** 2).sum(0) / ((T - T.mean(0)) ** 2).sum(0))
    assert out["loss"] == pytest.approx(np.mean((P - T) ** 2), rel=1e-9)
    assert out["mae"] == pytest.approx(np.mean(np.abs(P - T)), rel=1e-9)
    assert out["r2"] == pytest.approx(r2, rel=1e-9)


@pytest.mark.reference
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


@pytest.mark.reference
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


@pytest.mark.mutation
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


@pytest.mark.mutation
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


@pytest.mark.mutation
def test_metrics_of_float32_sums_are_computed_in_float64():
    """``result`` reads the sums once and computes in float64: R² = mean over columns of
    1 - SS_res/SS_tot, from float32 sums whose float32 quotient would round."""
    from anyfc import _metrics, metrics

    f32 = np.float32
    errors = {"n": 3.0, "abs": np.array([0.5, 0.8], f32), "sq": np.array([0.1, 0.7], f32),
              "mean": np.array([0.0, 0.0], f32), "m2": np.array([0.3, 0.9], f32)}
    sums = {"n": 3, "loss": f32(0.7), "metrics": {"mae": errors, "r2": errors}}
    got = _metrics.result(sums, [metrics.MAE(), metrics.R2()], np)
    sq, m2 = errors["sq"].astype(np.float64), errors["m2"].astype(np.float64)
    assert got == {"loss": float(f32(0.7)) / 3,
                   "mae": float(np.mean(errors["abs"].astype(np.float64) / 3)),
                   "r2": float(np.mean(1.0 - sq / m2))}
    assert got["r2"] != float(np.mean(f32(1.0) - errors["sq"] / errors["m2"]))


@pytest.mark.mutation
def test_r2_of_overflowing_sums_is_nan_without_a_warning():
    from anyfc import _metrics, metrics

    errors = {"n": 2.0, "abs": np.array([np.inf, 0.0]), "sq": np.array([np.inf, 1.0]),
              "mean": np.zeros(2), "m2": np.array([np.inf, 0.0])}
    sums = {"n": 2, "loss": np.float64(np.inf), "metrics": {"r2": errors}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _metrics.result(sums, [metrics.R2()], np)
    assert np.isnan(got["r2"])  # column 0: inf/inf; column 1 (constant, missed): 0


@pytest.mark.mutation
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


@pytest.mark.hostile
def test_evaluate_matches_itself_for_any_batch_size(bk):
    model = hostile._trained(bk)
    whole = model.evaluate(hostile.X, hostile.Y, batch_size=None)
    for batch_size in (1, 5, 24, 100):
        split = model.evaluate(hostile.X, hostile.Y, batch_size=batch_size)
        assert split["accuracy"] == whole["accuracy"]
        assert split["loss"] == pytest.approx(whole["loss"], rel=1e-9)


# ---- metrics= (anyfc.metrics), each against scikit-learn's, over uneven batches ----------

def _metric_model(bk, n_out, loss):
    return anyfc.Sequential(
        [bk.dense(5, 8, "tanh", seed=0), bk.dense(8, n_out, "identity", seed=1)], loss)


def _data(kind):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((103, 5))
    if kind == "binary":
        return X, (X[:, 0] + rng.standard_normal(103) > 0).astype(np.int64)
    if kind == "multiclass":
        return X, rng.integers(0, 4, 103)
    return X, np.stack([X[:, 0] - X[:, 1], 2 * X[:, 2]], axis=1) + rng.standard_normal((103, 2))


def _reference(kind, y, p):
    from sklearn import metrics as skm

    if kind == "binary":
        p1, hard = p[:, 0], (p[:, 0] > 0.5).astype(int)
        return {"accuracy": skm.accuracy_score(y, hard), "precision": skm.precision_score(y, hard),
                "recall": skm.recall_score(y, hard), "f1": skm.f1_score(y, hard),
                "roc_auc": skm.roc_auc_score(y, p1)}
    if kind == "multiclass":
        hard = p.argmax(axis=1)
        macro = {"average": "macro", "zero_division": 0}
        return {"accuracy": skm.accuracy_score(y, hard),
                "top_2_accuracy": skm.top_k_accuracy_score(y, p, k=2, labels=range(4)),
                "precision": skm.precision_score(y, hard, **macro),
                "recall": skm.recall_score(y, hard, **macro), "f1": skm.f1_score(y, hard, **macro)}
    return {"mae": skm.mean_absolute_error(y, p), "mse": skm.mean_squared_error(y, p),
            "rmse": skm.root_mean_squared_error(y, p), "r2": skm.r2_score(y, p)}


KINDS = {"binary": (1, "binary_cross_entropy"), "multiclass": (4, "softmax_cross_entropy"),
         "regression": (2, "mean_squared_error")}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_metric_equals_scikit_learns_over_uneven_batches(cpu_bk, kind):
    n_out, loss = KINDS[kind]
    model = _metric_model(cpu_bk, n_out, loss)
    X, y = _data(kind)
    model.fit(X, y, epochs=2, batch_size=16, seed=0, verbose=0)
    expected = _reference(kind, y, host(model.predict(X)))
    for batch_size in (17, None):  # 103 rows: six batches of 17 and one of 1, or all
        got = model.evaluate(X, y, batch_size=batch_size, metrics=list(expected))
        assert list(got) == ["loss", *expected]
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, batch_size)


def test_your_metric_function_sees_every_row_once(cpu_bk):
    """Exact, not an average of batch values: a median over all rows."""
    def median_error(y_true, y_pred):
        import array_api_compat

        xp = array_api_compat.array_namespace(y_pred)
        err = xp.sort(xp.reshape(xp.abs(y_pred - y_true), (-1,)))
        return err[err.shape[0] // 2]

    model = _metric_model(cpu_bk, 2, "mean_squared_error")
    X, y = _data("regression")
    got = model.evaluate(X, y, batch_size=10, metrics=[median_error])["median_error"]
    err = np.sort(np.abs(host(model.predict(X)) - y).ravel())
    assert got == pytest.approx(err[err.size // 2], rel=1e-12)


def test_metrics_over_dask_chunks_equal_in_memory(dask_bk):
    import dask.array as da

    model = _metric_model(anyfc_numpy(), 1, "binary_cross_entropy")
    X, y = _data("binary")
    names = ["accuracy", "precision", "recall", "f1", "roc_auc"]
    in_memory = model.evaluate(X, y, metrics=names)
    chunked = model.evaluate(da.from_array(X, chunks=(23, 5)), da.from_array(y, chunks=23),
                             metrics=names)
    for name in names:
        assert chunked[name] == pytest.approx(in_memory[name], rel=1e-12), name
    frozen = anyfc.optimizers.SGD(0.1)
    frozen.lr = 0.0  # 0 by assignment: the parameters do not move
    fitted = model.fit(da.from_array(X, chunks=(23, 5)), da.from_array(y, chunks=23),
                       epochs=1, batch_size=8, shuffle=False, verbose=0, metrics=names,
                       strategy="data_parallel", optimizer=frozen)
    for name in names:  # so the epoch's metrics, summed over chunks, are these
        assert fitted[name][0] == pytest.approx(in_memory[name], rel=1e-9), name


def anyfc_numpy():
    from tests.conftest import Backend

    return Backend("numpy", "numpy", None)


@pytest.mark.parametrize("metrics, error, pattern", [
    (["accuracy"], ValueError, "metric 'accuracy' does not suit this model's loss"),
    (["nonsense"], ValueError, "unknown metric 'nonsense'.*top_<k>_accuracy"),
    (["mae", "mae"], ValueError, "distinct and not 'loss'"),
    ([3], TypeError, "a metric must be a name or a function"),
])
def test_a_metric_that_cannot_work_is_refused_before_training(metrics, error, pattern):
    model = _metric_model(anyfc_numpy(), 2, "mean_squared_error")
    before = host(model.layers[0].w)
    X, y = _data("regression")
    with pytest.raises(error, match=pattern):
        model.fit(X, y, metrics=metrics, verbose=0)
    np.testing.assert_array_equal(host(model.layers[0].w), before)
