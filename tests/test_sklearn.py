"""anyfc.sklearn: scikit-learn's own estimator checks on every selected CPU backend; the
same training trajectory as scikit-learn's MLP (float64, NumPy); every backend trains;
inputs of any library; outputs under array-API dispatch; pickling; GridSearchCV; dropout
and batch normalisation."""

from __future__ import annotations

import functools
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import clone, config_context  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.utils.estimator_checks import estimator_checks_generator  # noqa: E402

import anyfc  # noqa: E402
from anyfc import _backend  # noqa: E402
from anyfc.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from tests.conftest import CPU_IDS, SELECTED, SKIPPED  # noqa: E402

# ---------------------------------------------------------------- scikit-learn's check suite

# small and short, so the suite stays quick on every backend (each check fits up to a few
# times; ~190 fits in all), yet every check of the quality of the fit passes
CHECKED = dict(hidden_layer_sizes=(16,), max_iter=6, learning_rate_init=0.05)
# the same with dropout and batch normalisation (a fixed random_state: JAX compiles one
# training step per dropout seed, so seeds drawn afresh at every fit would compile each)
REGULARIZED = dict(CHECKED, dropout=0.2, batch_norm=True, random_state=0)
# the regularized estimators get the whole suite on NumPy and array_api_strict (their
# layers are the same code on every backend), and these checks elsewhere: there a fit
# costs more (JAX compiles the step for every new shape, Dask builds graphs, torch
# dispatches) and the whole suite would add 0.5-3 min per backend to CI's 2 cores
KEY_CHECKS_ONLY = ("torch", "jax", "dask")
KEY_CHECKS = ("check_fit_idempotent", "check_methods_subset_invariance",
              "check_methods_sample_order_invariance", "check_estimators_pickle",
              "check_fit2d_1sample")


def _selected_cpu_ids() -> list[tuple[str, str | None]]:
    """(backend, device) of every CPU backend id this session runs (ANYFC_TEST_BACKENDS
    picks them, as for every other test), array_api_strict's device1 included."""
    out = []
    for test_id in SELECTED:
        if test_id not in CPU_IDS or test_id in SKIPPED:
            continue
        name, _, device = test_id.partition(":")
        out.append((name, device or None))
    return out


def _checks() -> list:
    """(estimator, check) pairs, as ``parametrize_with_checks`` makes them: every check
    for both estimators on every selected CPU backend id; with dropout and batch_norm
    too, every check on NumPy and array_api_strict, ``KEY_CHECKS`` elsewhere."""
    out = []
    for name, device in _selected_cpu_ids():
        for cls in (MLPClassifier, MLPRegressor):
            out += estimator_checks_generator(cls(**CHECKED, backend=name, device=device))
            out += [(est, check) for est, check in estimator_checks_generator(
                cls(**REGULARIZED, backend=name, device=device))
                if name not in KEY_CHECKS_ONLY or check.func.__name__ in KEY_CHECKS]
    return out


def _check_id(obj: object) -> str:
    """scikit-learn's test ids: the check's name and keywords, the estimator's repr."""
    if isinstance(obj, functools.partial):
        kwargs = ",".join(f"{k}={v}" for k, v in obj.keywords.items())
        return f"{obj.func.__name__}({kwargs})" if kwargs else obj.func.__name__
    return re.sub(r"\s", "", str(obj))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, check", _checks(), ids=_check_id)
def test_scikit_learn_checks(estimator, check, monkeypatch):
    # scikit-learn runs its array-API check only where SciPy's array API is switched on;
    # our estimators do not use SciPy, so say it is
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


# ---------------------------------------------------------------- the same as scikit-learn


@pytest.fixture(scope="module")
def digits_small():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


def _assert_same_fit(ours, theirs, X, proba=True):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    assert ours.out_activation_ == theirs.out_activation_
    for mine, ref in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=1e-10)
    if proba:  # a classifier
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-12)
    else:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-12)


SAME_AS_SKLEARN = {
    "adam, L2, a short last batch": dict(hidden_layer_sizes=(32, 16), alpha=1e-2,
                                         batch_size=64, max_iter=6),
    "sgd nesterov": dict(solver="sgd", learning_rate_init=0.1, max_iter=5),
    "sgd momentum": dict(solver="sgd", nesterovs_momentum=False, learning_rate_init=0.05,
                         activation="tanh", max_iter=5),
    "sgd plain, no shuffle": dict(solver="sgd", momentum=0.0, shuffle=False,
                                  learning_rate_init=0.2, activation="logistic", max_iter=4),
    "converges early": dict(hidden_layer_sizes=(8,), tol=0.5, n_iter_no_change=2,
                            max_iter=50, activation="identity"),
}


@pytest.mark.parametrize("case", list(SAME_AS_SKLEARN))
def test_classifier_follows_scikit_learn(digits_small, case):
    X, y = digits_small
    kw = dict(random_state=3, **SAME_AS_SKLEARN[case])
    with warnings.catch_warnings(record=True) as theirs_warned:
        warnings.simplefilter("always")
        theirs = SkClassifier(**kw).fit(X, y)
    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter("always")
        ours = MLPClassifier(**kw, backend="numpy", dtype="float64").fit(X, y)
    _assert_same_fit(ours, theirs, X)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-10)

    def converged(w):
        return not any(issubclass(x.category, ConvergenceWarning) for x in w)

    assert converged(ours_warned) == converged(theirs_warned)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_follows_scikit_learn():
    X, y = make_classification(300, 8, random_state=0)
    kw = dict(hidden_layer_sizes=(16,), max_iter=60, random_state=1, early_stopping=True,
              activation="tanh", n_iter_no_change=5)
    theirs = SkClassifier(**kw).fit(X, y)
    ours = MLPClassifier(**kw, backend="numpy", dtype="float64").fit(X, y)
    assert ours.n_iter_ < 60  # it stopped, and restored the best weights, as sklearn does
    _assert_same_fit(ours, theirs, X)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    assert ours.best_validation_score_ == theirs.best_validation_score_
    assert ours.best_loss_ is None and theirs.best_loss_ is None


def test_multiclass_early_stopping_split_is_stratified(digits_small):
    X, y = digits_small
    est = MLPClassifier((8,), early_stopping=True, validation_fraction=0.2, max_iter=2,
                        random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    assert len(est.validation_scores_) == 2 and est.best_loss_ is None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_regressor_follows_scikit_learn():
    X, y = make_regression(200, 5, n_targets=2, random_state=0)
    y = y / 100
    kw = dict(hidden_layer_sizes=(16,), max_iter=30, random_state=1, activation="logistic",
              alpha=1e-3, batch_size=48)
    theirs = SkRegressor(**kw).fit(X, y)
    ours = MLPRegressor(**kw, backend="numpy", dtype="float64").fit(X, y)
    _assert_same_fit(ours, theirs, X, proba=False)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-10)
    one = MLPRegressor(**kw, backend="numpy", dtype="float64").fit(X, y[:, 0])
    assert one.predict(X).shape == (200,)
    np.testing.assert_allclose(one.predict(X), SkRegressor(**kw).fit(X, y[:, 0]).predict(X),
                               rtol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_multilabel_follows_scikit_learn():
    X, y = make_classification(300, 8, random_state=0)
    Y = np.c_[y, 1 - y, X[:, 0] > 0].astype(int)
    kw = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=1)
    theirs = SkClassifier(**kw).fit(X, Y)
    ours = MLPClassifier(**kw, backend="numpy", dtype="float64").fit(X, Y)
    _assert_same_fit(ours, theirs, X)
    assert ours.predict(X).shape == (300, 3) and ours.predict_proba(X).shape == (300, 3)


def test_partial_fit_and_warm_start_follow_scikit_learn(digits_small):
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), random_state=0, batch_size=100)
    theirs, ours = SkClassifier(**kw), MLPClassifier(**kw, backend="numpy", dtype="float64")
    for est in (theirs, ours):
        est.partial_fit(X[:200], y[:200], classes=np.arange(10))
        est.partial_fit(X[200:], y[200:])
        est.partial_fit(X, y)
    _assert_same_fit(ours, theirs, X)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        ours.partial_fit(X[:5], np.array([11, 0, 1, 2, 3]))
    with pytest.raises(ValueError, match="does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.arange(10))

    kw = dict(hidden_layer_sizes=(16,), random_state=0, max_iter=3)
    theirs, ours = SkClassifier(**kw), MLPClassifier(**kw, backend="numpy", dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (theirs, ours):
            est.fit(X, y)
            est.set_params(warm_start=True, max_iter=2).fit(X, y)
    _assert_same_fit(ours, theirs, X)
    assert len(ours.loss_curve_) == 5


def test_regressor_partial_fit():
    X, y = make_regression(100, 4, random_state=0)
    kw = dict(hidden_layer_sizes=(8,), random_state=0)
    theirs, ours = SkRegressor(**kw), MLPRegressor(**kw, backend="numpy", dtype="float64")
    for est in (theirs, ours):
        for _ in range(3):
            est.partial_fit(X, y / 100)
    _assert_same_fit(ours, theirs, X, proba=False)


# ---------------------------------------------------------------- every backend


def test_trains_on_every_backend(cpu_bk, digits_small):
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, alpha=1e-3)
    theirs = SkClassifier(**kw)
    ours = MLPClassifier(**kw, backend=cpu_bk.name, device=cpu_bk.device_name, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y)
        ours.fit(X, y)
    assert ours.model_.backend == cpu_bk.name and ours.model_.device == cpu_bk.device
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for mine, ref in zip(ours.coefs_, theirs.coefs_):
        assert isinstance(mine, np.ndarray)
        np.testing.assert_allclose(mine, ref, rtol=1e-7, atol=1e-10)
    predicted = ours.predict(X)
    assert isinstance(predicted, np.ndarray)
    np.testing.assert_array_equal(predicted, theirs.predict(X))
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y))


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_dtype(cpu_bk, digits_small, dtype):
    """float64 by default (the check suite needs it), float32 on request."""
    X, y = digits_small
    kw = {} if dtype is None else {"dtype": dtype}
    est = MLPClassifier((8,), max_iter=2, backend=cpu_bk.name, device=cpu_bk.device_name, **kw)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    expected = dtype or "float64"
    assert _backend.dtype_name(est.model_.dtype) == expected
    assert est.predict_proba(X).dtype == np.dtype(expected)
    assert est.coefs_[0].dtype == np.dtype(expected)


def test_inputs_of_any_library(cpu_bk, digits_small):
    """X and y as arrays of the backend's library, on its device, for a model on NumPy,
    and NumPy data for a model on the backend: the same fit either way."""
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = MLPClassifier(**kw, backend="numpy").fit(X, y)
        on_numpy = MLPClassifier(**kw, backend="numpy").fit(
            cpu_bk.asarray(X), cpu_bk.asarray(y, dtype=None))
        there = MLPRegressor(**kw, backend=cpu_bk.name, device=cpu_bk.device_name).fit(
            cpu_bk.asarray(X), cpu_bk.asarray(y, dtype="float64"))
    np.testing.assert_allclose(on_numpy.loss_curve_, reference.loss_curve_, rtol=1e-12)
    assert on_numpy.n_features_in_ == 64 and not hasattr(on_numpy, "feature_names_in_")
    np.testing.assert_array_equal(on_numpy.predict(cpu_bk.asarray(X)), reference.predict(X))
    assert isinstance(there.predict(cpu_bk.asarray(X)), np.ndarray)
    with pytest.raises(ValueError, match="expecting 64 features"):
        on_numpy.predict(cpu_bk.asarray(X[:, :10]))
    if not cpu_bk.is_lazy:
        bad = np.array(X)
        bad[3, 3] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            on_numpy.predict(cpu_bk.asarray(bad))


def test_array_api_dispatch_keeps_outputs_where_the_input_is(cpu_bk, digits_small,
                                                             monkeypatch):
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")  # scikit-learn asks for it with dispatch
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                       "eight", "nine"])[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        numeric = MLPClassifier(**kw).fit(X, y)  # on NumPy; the input decides the output
        strings = MLPClassifier(**kw).fit(X, labels)
    Xb = cpu_bk.asarray(X, dtype="float32")
    with config_context(array_api_dispatch=True):
        proba = numeric.predict_proba(Xb)
        log_proba = numeric.predict_log_proba(Xb)
        predicted = numeric.predict(Xb)
        string_proba = strings.predict_proba(Xb)
        string_labels = strings.predict(Xb)
        from_numpy = numeric.predict_proba(X)
    for out in (proba, log_proba, predicted, string_proba):
        assert _backend.namespace_of(out) is cpu_bk.xp
        assert _backend.device_of(out) == cpu_bk.device
    np.testing.assert_allclose(anyfc.to_numpy(proba), numeric.predict_proba(X), rtol=1e-6)
    np.testing.assert_array_equal(anyfc.to_numpy(predicted), numeric.predict(X))
    # no array library holds strings: those labels come back as NumPy
    assert isinstance(string_labels, np.ndarray)
    np.testing.assert_array_equal(string_labels, strings.predict(X))
    assert isinstance(from_numpy, np.ndarray)


def test_pickle_and_move(cpu_bk, digits_small):
    X, y = digits_small
    est = MLPClassifier((8,), max_iter=2, random_state=0, backend=cpu_bk.name,
                        device=cpu_bk.device_name, dtype="float64")
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    blob = pickle.dumps(est)
    back = pickle.loads(blob)
    assert back.model_.backend == cpu_bk.name and back.model_.device == cpu_bk.device
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    # the optimizer's state came along: partial_fit continues identically
    back.partial_fit(X, y)
    est.partial_fit(X, y)
    np.testing.assert_allclose(back.predict_proba(X), est.predict_proba(X), rtol=1e-12)
    # moved to NumPy and back: the same predictions, the parameters say where it is
    expected = est.predict_proba(X)
    est.to("numpy")
    assert (est.backend, est.model_.backend) == ("numpy", "numpy")
    np.testing.assert_allclose(est.predict_proba(X), expected, rtol=1e-12)
    est.to(cpu_bk.name, device=cpu_bk.device_name)
    assert est.model_.backend == cpu_bk.name and est.model_.device == cpu_bk.device
    np.testing.assert_allclose(est.predict_proba(X), expected, rtol=1e-12)


def test_pickle_holds_only_numpy():
    X, y = make_classification(60, 4, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    state = est.__getstate__()
    assert "model_" not in state
    assert all(isinstance(p, np.ndarray) for p in state["_host_model"]["params"])


def test_unpickled_where_the_backend_is_missing_lands_on_numpy():
    if "cupy" in anyfc.available_backends():
        pytest.skip("cupy works here")
    X, y = make_classification(60, 4, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    est.backend = "cupy"  # as if pickled on a GPU machine
    with pytest.warns(UserWarning, match="loaded on numpy"):
        back = pickle.loads(pickle.dumps(est))
    assert back.backend == "numpy" and back.model_.backend == "numpy"
    np.testing.assert_array_equal(back.predict(X), est.predict(X))


def test_grid_search_in_two_processes():
    X, y = make_classification(120, 6, random_state=0)
    grid = GridSearchCV(MLPClassifier((8,), max_iter=20, learning_rate_init=0.01,
                                      random_state=0),
                        {"alpha": [1e-4, 1e-1], "activation": ["relu", "tanh"]},
                        cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 4
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    assert grid.best_estimator_.score(X, y) > 0.5


# ---------------------------------------------------------------- data, parameters


def test_pandas_strings_and_lists():
    pd = pytest.importorskip("pandas")
    X, y = make_classification(80, 3, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    labels = np.where(y == 1, "yes", "no")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier((4,), max_iter=3, random_state=0).fit(frame, labels)
        from_lists = MLPClassifier((4,), max_iter=3, random_state=0).fit(X.tolist(),
                                                                          labels.tolist())
    assert list(est.feature_names_in_) == ["a", "b", "c"]
    assert list(est.classes_) == ["no", "yes"]
    assert set(est.predict(frame)) <= {"no", "yes"}
    assert est.predict_proba(frame).shape == (80, 2)
    np.testing.assert_allclose(from_lists.predict_proba(X), est.predict_proba(frame))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        est.predict(X)


def test_parameters_are_checked():
    X, y = make_classification(40, 3, n_informative=3, n_redundant=0, random_state=0)
    for bad, match in [(dict(solver="lbfgs"), "lbfgs"), (dict(activation="softmax"),
                                                          "activation"),
                       (dict(hidden_layer_sizes=(4, 0)), "hidden_layer_sizes"),
                       (dict(alpha=-1.0), "alpha"), (dict(batch_size=0), "batch_size"),
                       (dict(dtype="float16"), "dtype"), (dict(max_iter=0), "max_iter"),
                       (dict(validation_fraction=1.0), "validation_fraction")]:
        with pytest.raises(ValueError, match=match):
            MLPClassifier(**bad).fit(X, y)
    with pytest.raises(ValueError, match="unknown backend"):
        MLPClassifier(backend="nope").fit(X, y)


def test_other_solvers_train(digits_small):
    X, y = digits_small
    for solver, lr in (("adamw", 0.01), ("rmsprop", 0.01), ("adagrad", 0.1)):
        est = MLPClassifier((16,), solver=solver, learning_rate_init=lr, max_iter=15,
                            random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        assert est.score(X, y) > 0.8, solver


def test_importing_anyfc_does_not_import_sklearn():
    code = "import sys, anyfc; sys.exit(1 if 'sklearn' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- dropout, batch_norm

LAYOUTS = {
    "plain": (dict(), ["Dense", "Dense", "Dense"]),
    "dropout": (dict(dropout=0.2), ["Dense", "Dropout", "Dense", "Dropout", "Dense"]),
    "batch_norm": (dict(batch_norm=True),
                   ["Dense", "BatchNorm", "ReLU", "Dense", "BatchNorm", "ReLU", "Dense"]),
    "both, tanh": (dict(dropout=0.5, batch_norm=True, activation="tanh"),
                   ["Dense", "BatchNorm", "Tanh", "Dropout", "Dense", "BatchNorm", "Tanh",
                    "Dropout", "Dense"]),
    "both, logistic": (dict(dropout=0.1, batch_norm=True, activation="logistic"),
                       ["Dense", "BatchNorm", "Sigmoid", "Dropout", "Dense", "BatchNorm",
                        "Sigmoid", "Dropout", "Dense"]),
    "batch_norm, identity": (dict(batch_norm=True, activation="identity"),
                             ["Dense", "BatchNorm", "Dense", "BatchNorm", "Dense"]),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("case", list(LAYOUTS))
def test_dropout_and_batch_norm_layers(digits_small, case):
    X, y = digits_small
    kw, expected = LAYOUTS[case]
    est = MLPClassifier((12, 6), max_iter=2, random_state=0, **kw).fit(X, y)
    layers = est.model_.layers
    assert [type(layer).__name__ for layer in layers] == expected
    assert [c.shape for c in est.coefs_] == [(64, 12), (12, 6), (6, 10)]
    assert [b.shape for b in est.intercepts_] == [(12,), (6,), (10,)]
    dense = [layer for layer in layers if isinstance(layer, anyfc.Dense)]
    hidden = "identity" if kw.get("batch_norm") else {
        "relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": "identity"}[
        kw.get("activation", "relu")]
    assert [d.activation.name for d in dense] == [hidden, hidden, "identity"]
    norms = [layer for layer in layers if isinstance(layer, anyfc.BatchNorm)]
    assert [n.n for n in norms] == ([12, 6] if kw.get("batch_norm") else [])
    drops = [layer for layer in layers if isinstance(layer, anyfc.Dropout)]
    rate = kw.get("dropout", 0.0)
    assert [d.rate for d in drops] == ([rate, rate] if rate else [])
    assert all(isinstance(d.seed, int) for d in drops)
    assert len({d.seed for d in drops}) == len(drops)  # a stream of its own each
    proba = est.predict_proba(X)
    np.testing.assert_array_equal(proba, est.predict_proba(X))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_dropout_does_not_change_the_initial_weights(digits_small):
    """Dropout seeds are drawn after every weight: a rate of (nearly) zero keeps every
    mask at one, and training follows the run without dropout."""
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), max_iter=2, random_state=0, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = MLPClassifier(**kw).fit(X, y)
        tiny = MLPClassifier(**kw, dropout=1e-300).fit(X, y)
    assert [type(layer).__name__ for layer in tiny.model_.layers] == ["Dense", "Dropout",
                                                                      "Dense"]
    np.testing.assert_allclose(tiny.loss_curve_, plain.loss_curve_, rtol=1e-12)
    for a, b in zip(tiny.coefs_, plain.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_dropout_training_is_random_state_reproducible(cpu_bk, digits_small):
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), max_iter=2, dropout=0.3, alpha=0.0,
              backend=cpu_bk.name, device=cpu_bk.device_name)
    first = MLPClassifier(**kw, random_state=0).fit(X, y)
    again = MLPClassifier(**kw, random_state=0).fit(X, y)
    other = MLPClassifier(**kw, random_state=1).fit(X, y)
    np.testing.assert_array_equal(first.loss_curve_, again.loss_curve_)
    np.testing.assert_array_equal(first.predict_proba(X), again.predict_proba(X))
    assert not np.allclose(first.loss_curve_, other.loss_curve_)
    # prediction is inference: no dropout, the same on every call
    proba = first.predict_proba(X)
    np.testing.assert_array_equal(proba, first.predict_proba(X))
    np.testing.assert_array_equal(first.predict(X), first.predict(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_dropout_masks_follow_random_state(digits_small):
    """The same initial weights (the same random_state), dropout on or off, or dropout
    seeds of another random_state: other trajectories; BatchNorm's predictions are each
    row's own (running statistics, not the batch's)."""
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), max_iter=2, shuffle=False, batch_norm=True)
    first = MLPClassifier(**kw, dropout=0.3, random_state=0).fit(X, y)
    no_drop = MLPClassifier(**kw, random_state=0).fit(X, y)
    assert not np.allclose(first.loss_curve_, no_drop.loss_curve_)
    proba = first.predict_proba(X)
    np.testing.assert_allclose(first.predict_proba(X[:1]), proba[:1], rtol=1e-12)
    np.testing.assert_allclose(first.predict_proba(X[5:9]), proba[5:9], rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_prediction_and_scoring_run_in_inference_mode(digits_small):
    X, y = digits_small
    for est in (MLPClassifier((8,), max_iter=2, dropout=0.5, batch_norm=True,
                              early_stopping=True, random_state=0),
                MLPRegressor((8,), max_iter=2, dropout=0.5, batch_norm=True,
                             early_stopping=True, random_state=0)):
        target = y if isinstance(est, MLPClassifier) else y / 10.0
        model = est.fit(X, target).model_
        seen = []
        forward = model.forward

        def spy(x, training=True, forward=forward, seen=seen):
            seen.append(training)
            return forward(x, training)

        model.forward = spy
        before = [_backend.to_numpy(a) for a in model.state_dict().values()]
        est.predict(X)
        est.score(X, target)
        if isinstance(est, MLPClassifier):
            est.predict_proba(X)
            est.predict_log_proba(X)
        assert seen and not any(seen)
        # inference leaves BatchNorm's running statistics alone
        for a, b in zip(before, model.state_dict().values()):
            np.testing.assert_array_equal(a, _backend.to_numpy(b))


def test_l2_penalty_applies_to_dense_weights_only(digits_small):
    """One full batch of plain SGD, with and without ``alpha``: BatchNorm's γ and β take
    the same step; each weight matrix differs by exactly ``lr·alpha·W₀/n``; the loss by
    ``½·alpha·Σ‖W₀‖²/n`` over the Dense weights alone."""
    X, y = digits_small
    n, lr, alpha = X.shape[0], 0.1, 2.0
    kw = dict(hidden_layer_sizes=(12, 6), solver="sgd", momentum=0.0, learning_rate_init=lr,
              batch_size=n, shuffle=False, max_iter=1, random_state=0, batch_norm=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        free = MLPClassifier(**kw, alpha=0.0).fit(X, y)
        penalised = MLPClassifier(**kw, alpha=alpha).fit(X, y)
    for a, b in zip(free.model_.layers, penalised.model_.layers):
        if isinstance(a, anyfc.BatchNorm):
            for name in ("gamma", "beta", "running_mean", "running_var"):
                np.testing.assert_allclose(_backend.to_numpy(getattr(a, name)),
                                           _backend.to_numpy(getattr(b, name)), rtol=1e-12)
    w0 = [(f - p) * n / (lr * alpha) for f, p in zip(free.coefs_, penalised.coefs_)]
    for f, p in zip(free.intercepts_, penalised.intercepts_):
        np.testing.assert_allclose(f, p, rtol=1e-12)
    assert all(np.abs(w).max() > 0.05 for w in w0)  # Glorot-uniform draws, recovered
    expected = 0.5 * alpha * sum(float(np.sum(w * w)) for w in w0) / n
    assert penalised.loss_curve_[0] - free.loss_curve_[0] == pytest.approx(expected,
                                                                           rel=1e-8)


def test_batch_norm_pickles_with_running_statistics(cpu_bk, digits_small):
    X, y = digits_small
    est = MLPClassifier((8,), max_iter=2, random_state=0, batch_norm=True, dropout=0.25,
                        backend=cpu_bk.name, device=cpu_bk.device_name)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    norm = next(layer for layer in est.model_.layers if isinstance(layer, anyfc.BatchNorm))
    assert not np.allclose(_backend.to_numpy(norm.running_mean), 0.0)  # it trained
    state = est.__getstate__()
    assert all(isinstance(p, np.ndarray) for p in state["_host_model"]["params"])
    back = pickle.loads(pickle.dumps(est))
    assert back.model_.backend == cpu_bk.name and back.model_.device == cpu_bk.device
    assert [type(a) for a in back.model_.layers] == [type(b) for b in est.model_.layers]
    for key, value in est.model_.state_dict().items():
        np.testing.assert_array_equal(_backend.to_numpy(back.model_.state_dict()[key]),
                                      _backend.to_numpy(value))
    drops = [(d.rate, d.seed) for d in est.model_.layers if isinstance(d, anyfc.Dropout)]
    assert drops and drops == [(d.rate, d.seed) for d in back.model_.layers
                               if isinstance(d, anyfc.Dropout)]
    assert (back.dropout, back.batch_norm) == (0.25, True)
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    # without dropout, training continues identically (optimizer state, statistics)
    plain = MLPClassifier((8,), max_iter=2, random_state=0, batch_norm=True,
                          backend=cpu_bk.name, device=cpu_bk.device_name)
    with pytest.warns(ConvergenceWarning):
        plain.fit(X, y)
    copy = pickle.loads(pickle.dumps(plain))
    plain.partial_fit(X, y)
    copy.partial_fit(X, y)
    np.testing.assert_allclose(copy.predict_proba(X), plain.predict_proba(X), rtol=1e-12)


def test_clone_and_grid_search_over_dropout():
    X, y = make_classification(120, 6, random_state=0)
    est = MLPClassifier((8,), max_iter=10, learning_rate_init=0.01, random_state=0,
                        batch_norm=True, dropout=0.1)
    twin = clone(est)
    assert twin.get_params()["dropout"] == 0.1 and twin.get_params()["batch_norm"] is True
    grid = GridSearchCV(est, {"dropout": [0.0, 0.3]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    best = grid.best_estimator_
    has_dropout = any(isinstance(layer, anyfc.Dropout) for layer in best.model_.layers)
    assert has_dropout == (best.dropout > 0)
    assert not hasattr(est, "model_")  # the search fitted clones


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_batch_norm_batches_of_one_row(digits_small):
    X, y = digits_small
    # 401 rows in batches of 200 leave one row: it trains with the batch before it
    est = MLPRegressor((8,), max_iter=2, batch_norm=True, random_state=0)
    est.fit(X[:201], y[:201] / 10.0)
    assert est.t_ == 2 * 201
    est.partial_fit(X[:3], y[:3] / 10.0)
    with pytest.raises(ValueError, match="1 sample"):
        MLPRegressor((8,), batch_norm=True).fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="1 sample"):
        est.partial_fit(X[:1], y[:1] / 10.0)
    with pytest.raises(ValueError, match="batch_size"):
        MLPRegressor((8,), batch_norm=True, batch_size=1).fit(X, y)
    MLPRegressor((8,), batch_size=1, max_iter=1).fit(X[:20], y[:20])  # fine without


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_keeps_the_layers(digits_small):
    X, y = digits_small
    est = MLPClassifier((8,), max_iter=2, random_state=0, batch_norm=True, dropout=0.2)
    est.fit(X, y)
    est.set_params(warm_start=True, dropout=0.4).fit(X, y)
    assert len(est.loss_curve_) == 4
    assert [d.rate for d in est.model_.layers if isinstance(d, anyfc.Dropout)] == [0.4]
    with pytest.raises(ValueError, match="batch_norm"):
        clone(est).set_params(batch_norm=False).fit(X, y).set_params(batch_norm=True).fit(
            X, y)
    with pytest.raises(ValueError, match="batch_norm"):
        est.set_params(batch_norm=False).fit(X, y)
    est.set_params(batch_norm=True)
    with pytest.raises(ValueError, match="dropout"):
        est.set_params(dropout=0.0).fit(X, y)
    with pytest.raises(ValueError, match="dropout"):
        est.set_params(dropout=0.0).partial_fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        est.set_params(dropout=0.4, hidden_layer_sizes=(9,)).fit(X, y)
    assert len(est.loss_curve_) == 4  # nothing trained


@pytest.mark.parametrize("bad, match", [
    (dict(dropout=1.0), "dropout"), (dict(dropout=-0.1), "dropout"),
    (dict(dropout="x"), "dropout"), (dict(dropout=float("nan")), "dropout"),
    (dict(dropout=True), "dropout"), (dict(batch_norm="yes"), "batch_norm"),
    (dict(batch_norm=1), "batch_norm")])
def test_dropout_and_batch_norm_are_checked(bad, match):
    X, y = make_classification(40, 3, n_informative=3, n_redundant=0, random_state=0)
    for cls in (MLPClassifier, MLPRegressor):
        est = cls(**bad)  # scikit-learn's rule: checked at fit, not in __init__
        with pytest.raises(ValueError, match=match):
            est.fit(X, y)
        assert not hasattr(est, "model_")
