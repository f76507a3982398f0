"""anyfc.sklearn: scikit-learn's own estimator checks on every selected CPU backend; the
same training trajectory as scikit-learn's MLP (float64, NumPy), with sample weights,
learning-rate schedules, set_params between calls and L-BFGS; every backend trains;
refused calls change nothing; inputs of any library; outputs under array-API dispatch;
pickling; GridSearchCV; dropout and batch normalisation; ONNX export of every kind; and
the options of the main library the estimators are made of (Dense(l2=...), the losses'
scales, Adam's ε̂, SGD's velocity, cumulative shuffling, merge_last, NoImprovementStopping,
anyfc.lbfgs)."""

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


# scikit-learn runs its own MLP's sample-weight equivalence check with solver="lbfgs";
# ours pass it with a full batch too (CHECKED's data fit in one batch), but dropout masks
# and BatchNorm's batch statistics depend on which rows share a batch
REGULARIZED_FAILS = {"check_sample_weight_equivalence_on_dense_data":
                     "dropout masks and BatchNorm statistics depend on the rows of a batch"}
LBFGS = dict(hidden_layer_sizes=(16,), max_iter=50, solver="lbfgs")
LBFGS_CHECKS = KEY_CHECKS + ("check_sample_weight_equivalence_on_dense_data",
                             "check_sample_weights_invariance", "check_sample_weights_list")


def _name(check) -> str:
    return getattr(check, "func", check).__name__


def _checks() -> list:
    """(estimator, check) pairs, as ``parametrize_with_checks`` makes them: every check
    for both estimators on every selected CPU backend id; with dropout and batch_norm
    too, every check on NumPy and array_api_strict, ``KEY_CHECKS`` elsewhere; with
    L-BFGS the key and sample-weight checks."""
    out = []
    for name, device in _selected_cpu_ids():
        for cls in (MLPClassifier, MLPRegressor):
            out += estimator_checks_generator(cls(**CHECKED, backend=name, device=device))
            for item in estimator_checks_generator(
                    cls(**REGULARIZED, backend=name, device=device), mark="xfail",
                    expected_failed_checks=REGULARIZED_FAILS, xfail_strict=True):
                check = getattr(item, "values", item)[1]
                if name not in KEY_CHECKS_ONLY or _name(check) in KEY_CHECKS:
                    out.append(item)
            out += [(est, check) for est, check in estimator_checks_generator(
                cls(**LBFGS, backend=name, device=device)) if _name(check) in LBFGS_CHECKS]
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


def _assert_same_fit(ours, theirs, X, proba=True, loss_scale=1.0):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    if loss_scale is not None:  # None: not comparable (see the regressor's test)
        np.testing.assert_allclose(ours.loss_curve_,
                                   np.multiply(theirs.loss_curve_, loss_scale), rtol=1e-10)
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
    """The same coefficients for one and two outputs. scikit-learn descends the squared
    error summed over the outputs but reports its average over them: for ``k`` outputs
    anyfc's loss_curve_ (the function descended) is ``k`` times scikit-learn's on that
    term — exactly twice here, with alpha=0 — and equal for one output."""
    X, y = make_regression(200, 5, n_targets=2, random_state=0)
    y = y / 100
    kw = dict(hidden_layer_sizes=(16,), max_iter=30, random_state=1, activation="logistic",
              alpha=1e-3, batch_size=48)
    theirs = SkRegressor(**kw).fit(X, y)
    ours = MLPRegressor(**kw, backend="numpy", dtype="float64").fit(X, y)
    _assert_same_fit(ours, theirs, X, proba=False, loss_scale=None)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-10)
    kw0 = dict(kw, alpha=0.0)
    _assert_same_fit(MLPRegressor(**kw0).fit(X, y), SkRegressor(**kw0).fit(X, y), X,
                     proba=False, loss_scale=2.0)
    one = MLPRegressor(**kw, backend="numpy", dtype="float64").fit(X, y[:, 0])
    assert one.predict(X).shape == (200,)
    _assert_same_fit(one, SkRegressor(**kw).fit(X, y[:, 0]), X, proba=False)


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


@pytest.mark.parametrize("data, dtype, expected", [
    ("float64", None, "float64"), ("float32", None, "float32"), ("int64", None, "float64"),
    ("float64", "float32", "float32"), ("float32", "float64", "float64")])
def test_dtype_follows_the_data(cpu_bk, digits_small, data, dtype, expected):
    """As scikit-learn: float32 data trains in float32, other data in float64, unless
    ``dtype`` says otherwise; a warm start keeps the network's dtype."""
    X, y = digits_small
    X = (X * 16).astype(data)
    est = MLPClassifier((8,), max_iter=2, backend=cpu_bk.name, device=cpu_bk.device_name,
                        dtype=dtype)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    assert _backend.dtype_name(est.model_.dtype) == expected
    assert est.predict_proba(X).dtype == np.dtype(expected)
    assert est.coefs_[0].dtype == np.dtype(expected)
    est.partial_fit(X.astype("float64" if expected == "float32" else "float32"), y)
    assert _backend.dtype_name(est.model_.dtype) == expected


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
    with pytest.raises(ValueError, match="(expecting|takes) 64"):
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
    for bad, match in [(dict(solver="lbfgs", dropout=0.1), "stochastic solver .adam, sgd"),
                       (dict(solver="newton"), "solver.*among"),
                       (dict(learning_rate="cosine"), "learning_rate.*among"),
                       (dict(activation="softmax"), "activation"),
                       (dict(hidden_layer_sizes=(4, 0)), "hidden_layer_sizes"),
                       (dict(alpha=-1.0), "alpha"), (dict(batch_size=0), "batch_size"),
                       (dict(dtype="float16"), "dtype"), (dict(max_iter=0), "max_iter"),
                       (dict(validation_fraction=1.0), "validation_fraction")]:
        with pytest.raises(ValueError, match=match):
            MLPClassifier(**bad).fit(X, y)
    with pytest.raises(ValueError, match="unknown backend"):
        MLPClassifier(backend="nope").fit(X, y)
    with pytest.raises(ValueError, match="loss='poisson' is not supported.*'squared_error'"):
        MLPRegressor(loss="poisson").fit(X, y)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")  # scikit-learn's rule
    with pytest.raises(AttributeError, match="has no attribute .partial_fit"):
        MLPRegressor(solver="lbfgs").partial_fit(X, y)
    sparse = pytest.importorskip("scipy.sparse")
    for est in (MLPClassifier(max_iter=2), MLPRegressor(max_iter=2)):
        with pytest.raises(TypeError, match=r"sparse.*X.toarray\(\)"):
            est.fit(sparse.csr_matrix(X), y)
        assert not hasattr(est, "model_")


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


# ---------------------------------------------------------------- all or nothing


def _snapshot(est):
    """Everything a call may change, as host copies."""
    opt = est.__dict__.get("_optimizer")
    return {
        "classes": None if not hasattr(est, "classes_") else np.array(est.classes_),
        "params": [_backend.to_numpy(a).copy() for a in est.model_.state_dict().values()],
        "layers": [(type(layer), repr(layer.config())) for layer in est.model_.layers],
        "placement": (est.model_.backend, str(est.model_.device),
                      _backend.dtype_name(est.model_.dtype)),
        "counts": (est.n_iter_, est.t_, list(est.loss_curve_), est.n_features_in_,
                   est._no_improvement_count, est.best_loss_),
        "opt": None if opt is None else (id(opt), opt.t, opt.epoch, repr(opt.config()), {
            k: {s: _backend.to_numpy(v).copy() for s, v in d.items()}
            for k, d in opt.state.items()}),
    }


def _assert_same_snapshot(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if key == "params":
            for x, y in zip(a[key], b[key]):
                np.testing.assert_array_equal(x, y)
        elif key == "opt" and a[key] is not None:
            assert a[key][:4] == b[key][:4]
            for k in a[key][4]:
                for s in a[key][4][k]:
                    np.testing.assert_array_equal(a[key][4][k][s], b[key][4][k][s])
        elif key == "classes":
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key], key


def test_a_refused_call_changes_nothing(cpu_bk, digits_small):
    """Bad parameters, data, classes, weights, a network that cannot follow, and a
    diverging fit: each raises, and the fitted estimator — classes, network, counts,
    loss curve, optimizer and its state — is exactly as it was."""
    X, y = digits_small
    X, y = X[:120], y[:120]
    est = MLPClassifier((8,), max_iter=2, random_state=0, solver="sgd",
                        learning_rate="adaptive", backend=cpu_bk.name,
                        device=cpu_bk.device_name)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    est.partial_fit(X, y)
    before = _snapshot(est)
    bad_X = np.array(X)
    bad_X[5, 5] = np.nan
    calls = [
        ("fit", dict(alpha=-1.0), (X, y), {}, ValueError),
        ("partial_fit", dict(solver="rmsprop", momentum=2.0), (X, y), {}, ValueError),
        ("partial_fit", {}, (bad_X, y), {}, ValueError),
        ("partial_fit", {}, (X[:, :10], y), {}, ValueError),
        ("partial_fit", {}, (X, np.where(y == 3, 11, y)), {}, ValueError),
        ("partial_fit", {}, (X, y), dict(sample_weight=-np.ones(len(y))), ValueError),
        ("partial_fit", {}, (X, y), dict(sample_weight=np.ones(3)), ValueError),
        ("partial_fit", dict(hidden_layer_sizes=(9,)), (X, y), {}, ValueError),
        ("partial_fit", dict(batch_norm=True), (X, y), {}, ValueError),
        ("partial_fit", dict(early_stopping=True), (X, y), {}, ValueError),
        ("fit", dict(warm_start=True, activation="tanh", dropout=0.3), (X, y), {},
         ValueError),
        ("fit", dict(warm_start=True, learning_rate_init=1e300, momentum=0.0,
                     learning_rate="constant", max_iter=3), (X * 1e6, y), {}, ValueError),
    ]
    for method, params, args, kwargs, error in calls:
        trial = clone(est)  # the parameters only: set them on the fitted estimator
        est.set_params(**{**trial.get_params(), **params})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with pytest.raises(error):
                getattr(est, method)(*args, **kwargs)
        est.set_params(**trial.get_params())
        _assert_same_snapshot(_snapshot(est), before)
    # and then it continues as if nothing had happened
    est.partial_fit(X, y)
    assert est.t_ == before["counts"][1] + len(y)


def test_a_refused_first_fit_leaves_no_fitted_state(digits_small):
    X, y = digits_small
    for est, args in ((MLPClassifier(max_iter=2), (X, np.where(y == 1, np.nan, y))),
                      (MLPClassifier(max_iter=2), (X, y[:-1])),
                      (MLPClassifier(max_iter=2, batch_norm=True), (X[:1], y[:1])),
                      (MLPRegressor(max_iter=2, early_stopping=True,
                                    validation_fraction=0.001), (X[:50], y[:50]))):
        with pytest.raises(ValueError):
            est.fit(*args)
        assert not [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_an_interrupted_fit_keeps_its_finished_epochs(digits_small, monkeypatch):
    """Ctrl-C in epoch 3: the loop undoes that epoch; the estimator keeps epochs 1-2 and
    warns, as scikit-learn's does."""
    from anyfc import sklearn as face

    X, y = digits_small
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0, shuffle=False)
    two = MLPClassifier(**kw).fit(X, y)
    def interrupt(self, epoch, logs=None):  # inside epoch 3, before its first batch
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(face._Epochs, "on_epoch_begin", interrupt)
    with pytest.warns(UserWarning, match="interrupted by user"):
        est = MLPClassifier(**dict(kw, max_iter=5)).fit(X, y)
    assert est.n_iter_ == 2 and est.t_ == 2 * len(y)
    np.testing.assert_array_equal(est.loss_curve_, two.loss_curve_)
    for a, b in zip(est.coefs_, two.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-12)


# ---------------------------------------------------------------- scikit-learn's parameters


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_set_params_between_calls_follows_scikit_learn(digits_small, solver):
    """alpha and learning_rate_init changed between partial_fit calls and warm-start
    fits, and activation between warm-start fits: the same coefficients as scikit-learn's
    (which reads alpha and activation at every call, and learning_rate_init when it makes
    an optimizer: every fit, not partial_fit)."""
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), random_state=0, batch_size=100, solver=solver,
              learning_rate_init=0.01)
    theirs, ours = SkClassifier(**kw), MLPClassifier(**kw, backend="numpy")
    for est in (theirs, ours):
        est.partial_fit(X, y, classes=np.arange(10))
        est.set_params(alpha=0.5).partial_fit(X, y)
        est.set_params(learning_rate_init=0.1).partial_fit(X, y)
        est.set_params(alpha=1e-3, warm_start=True, max_iter=2).fit(X, y)
        est.set_params(learning_rate_init=0.003, activation="tanh").fit(X, y)
        est.set_params(alpha=2.0, activation="logistic").fit(X, y)
    _assert_same_fit(ours, theirs, X)
    assert len(ours.loss_curve_) == 9


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("case", ["adam, weights", "sgd invscaling, weights",
                                  "sgd adaptive", "early stopping, weights",
                                  "partial_fit invscaling"])
def test_sample_weight_and_learning_rates_follow_scikit_learn(digits_small, case):
    X, y = digits_small
    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 3.0, len(y))
    kw = dict(hidden_layer_sizes=(16,), random_state=2, batch_size=64, max_iter=8)
    fit = dict(sample_weight=w)
    if case.startswith("sgd invscaling"):
        kw.update(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5,
                  power_t=0.3)
    elif case == "sgd adaptive":
        kw.update(solver="sgd", learning_rate="adaptive", learning_rate_init=0.2, tol=0.5,
                  n_iter_no_change=1, max_iter=12)
        fit = {}
    elif case.startswith("early stopping"):  # binary: scikit-learn stratifies only those
        kw.update(early_stopping=True, n_iter_no_change=2, max_iter=30)
        y = y % 2
    theirs, ours = SkClassifier(**kw), MLPClassifier(**kw, backend="numpy")
    for est in (theirs, ours):
        if case.startswith("partial_fit"):
            est.set_params(solver="sgd", learning_rate="invscaling", learning_rate_init=0.3)
            est.partial_fit(X, y, classes=np.arange(10), sample_weight=w)
            for _ in range(3):
                est.partial_fit(X, y, w)
        else:
            est.fit(X, y, **fit)
    _assert_same_fit(ours, theirs, X)
    if case == "sgd adaptive":
        assert ours._optimizer.lr < 0.2 and ours._optimizer.lr == pytest.approx(
            theirs._optimizer.learning_rate, rel=1e-12)
    if case.startswith("early stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_,
                                   rtol=1e-12)
    assert ours.score(X, y, sample_weight=w) == pytest.approx(
        theirs.score(X, y, sample_weight=w), rel=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_regressor_sample_weight_follows_scikit_learn():
    X, y = make_regression(150, 5, random_state=0)
    w = np.random.default_rng(1).integers(0, 4, len(y)).astype(float)
    kw = dict(hidden_layer_sizes=(8,), random_state=0, max_iter=10, batch_size=40)
    ours = MLPRegressor(**kw).fit(X, y / 100, sample_weight=w)
    _assert_same_fit(ours, SkRegressor(**kw).fit(X, y / 100, sample_weight=w), X,
                     proba=False)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["lbfgs", "sgd, one batch"])
def test_integer_sample_weight_equals_repeated_rows(cpu_bk, digits_small, kind):
    """Weights in {0, 1, 2, 3} train the same network as each row repeated that many
    times (a whole batch: mini-batches of repeated rows are other batches)."""
    X, y = digits_small
    X, y = X[:150], y[:150]
    w = np.random.default_rng(0).integers(0, 4, len(y))
    kw = dict(hidden_layer_sizes=(8,), random_state=0, alpha=1e-2, backend=cpu_bk.name,
              device=cpu_bk.device_name)
    kw.update(dict(solver="lbfgs", max_iter=30) if kind == "lbfgs" else dict(
        solver="sgd", batch_size=1000, shuffle=False, max_iter=5, learning_rate_init=0.1))
    weighted = MLPClassifier(**kw).fit(X, y, sample_weight=w.astype(float))
    repeated = MLPClassifier(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    for a, b in zip(weighted.coefs_ + weighted.intercepts_,
                    repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


@pytest.fixture(scope="module")
def lbfgs_data():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    out = {}
    for name, load in (("breast cancer", load_breast_cancer), ("digits", load_digits)):
        X, y = load(return_X_y=True)
        out[name] = StandardScaler().fit_transform(X), y
    return out


@pytest.mark.parametrize("name", ["breast cancer", "digits"])
def test_lbfgs_reaches_scikit_learns_loss(cpu_bk, lbfgs_data, name):
    """solver='lbfgs' (anyfc.lbfgs, on every backend) stops where scikit-learn's (SciPy's
    L-BFGS-B) does: the same iterations and the loss within 1e-6 relative."""
    X, y = lbfgs_data[name]
    kw = dict(hidden_layer_sizes=(16,), solver="lbfgs", random_state=0, alpha=1e-3)
    theirs = SkClassifier(**kw).fit(X, y)
    ours = MLPClassifier(**kw, backend=cpu_bk.name, device=cpu_bk.device_name).fit(X, y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    assert ours.n_iter_ == theirs.n_iter_
    assert not hasattr(ours, "loss_curve_") and not hasattr(theirs, "loss_curve_")
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_lbfgs_limits_warm_start_and_regression():
    X, y = make_regression(120, 4, n_targets=1, random_state=0)
    kw = dict(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0)
    for limit in (dict(max_iter=3), dict(max_fun=4)):
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
            ours = MLPRegressor(**kw, **limit).fit(X, y / 100)
        with pytest.warns(ConvergenceWarning):
            theirs = SkRegressor(**kw, **limit).fit(X, y / 100)
        assert ours.n_iter_ == theirs.n_iter_
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    ours.set_params(warm_start=True, max_fun=15000, max_iter=5)
    theirs.set_params(warm_start=True, max_fun=15000, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y / 100)
        theirs.fit(X, y / 100)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)


# ---------------------------------------------------------------- ONNX


ONNX_KINDS = {
    "binary": (MLPClassifier, dict(), lambda y: y % 2),
    "multi-class": (MLPClassifier, dict(), lambda y: y),
    "multi-label": (MLPClassifier, dict(), lambda y: np.c_[y % 2, y > 4, y == 3]),
    "regression": (MLPRegressor, dict(), lambda y: y / 10.0),
    "two outputs": (MLPRegressor, dict(), lambda y: np.c_[y / 10.0, (y % 3) / 3.0]),
    "dropout and batch_norm": (MLPClassifier, dict(dropout=0.2, batch_norm=True),
                               lambda y: y),
    "lbfgs": (MLPRegressor, dict(solver="lbfgs", max_iter=20), lambda y: y / 10.0),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", list(ONNX_KINDS))
def test_every_estimator_kind_exports_to_onnx(cpu_bk, digits_small, kind, tmp_path):
    """anyfc.onnx.export(est.model_) for every kind of estimator, on every backend:
    onnxruntime gives predict_proba (classifiers) or predict (regressors) to 1e-5."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import anyfc.onnx

    X, y = digits_small
    cls, kw, target = ONNX_KINDS[kind]
    est = cls((12,), **{"max_iter": 3, **kw}, random_state=0, backend=cpu_bk.name,
              device=cpu_bk.device_name, dtype="float32").fit(X, target(y))
    path = tmp_path / "est.onnx"
    anyfc.onnx.export(est.model_, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": X.astype(np.float32)})
    if cls is MLPClassifier:
        expected = est.predict_proba(X)
        if expected.shape[1] == 2 and kind == "binary":
            expected = expected[:, 1:]
    else:
        expected = est.predict(X).reshape(len(X), -1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the main library's options
# What the estimators are made of, public options any Sequential user has: checked here
# against their definitions (float64, NumPy references written from the formulas).


def _numeric_gradient(f, w, eps=1e-6):
    g = np.zeros_like(w)
    for idx in np.ndindex(*w.shape):
        old = w[idx]
        w[idx] = old + eps
        up = f()
        w[idx] = old - eps
        down = f()
        w[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


LOSS_SETTINGS = [
    ("softmax_cross_entropy", {"reduction": "mean_with_sample_weight"}),
    ("binary_cross_entropy", {"reduction": "mean_with_sample_weight", "outputs": "sum"}),
    ("binary_cross_entropy", {"outputs": "sum"}),
    ("mean_squared_error", {"reduction": "mean_with_sample_weight", "outputs": "sum",
                            "half": True}),
    ("mean_squared_error", {"half": True}),
]


def _reference_loss(name, settings, z, t, w):
    """E and ∂E/∂z from the definitions: E = (1/N) Σ_k w_k e_k, N = h or Σ w."""
    h, c = z.shape
    w1 = np.ones(h) if w is None else w
    n = w1.sum() if settings.get("reduction") == "mean_with_sample_weight" else h
    if name == "softmax_cross_entropy":
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        e, g = -(t * np.log(p)).sum(1), p - t
    elif name == "binary_cross_entropy":
        s = 1 / (1 + np.exp(-z))
        e, g = -(t * np.log(s) + (1 - t) * np.log(1 - s)), s - t
    else:
        e, g = (z - t) ** 2, 2 * (z - t)
    if name != "softmax_cross_entropy":
        per = 1 if settings.get("outputs") == "sum" else c
        e, g = e.sum(1) / per, g / per
    half = 0.5 if settings.get("half") else 1.0
    return half * (w1 * e).sum() / n, half * g * w1[:, None] / n


@pytest.mark.parametrize("name, settings", LOSS_SETTINGS,
                         ids=[f"{n}-{'-'.join(map(str, s.values()))}" for n, s in LOSS_SETTINGS])
def test_loss_settings_follow_their_definitions(cpu_bk, name, settings):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 3))
    t = np.eye(3)[rng.integers(0, 3, 6)] if name == "softmax_cross_entropy" else (
        rng.integers(0, 2, (6, 3)).astype(float) if name == "binary_cross_entropy" else
        rng.standard_normal((6, 3)))
    loss = anyfc.losses.get({"name": name, **settings})
    assert loss.config() == settings  # the type is named by the registry spec
    assert anyfc.losses.get({"name": name, **settings}).config() == loss.config()
    assert anyfc.registry.build("loss", anyfc.registry.spec(loss)).config() == loss.config()
    for w in (None, rng.integers(0, 4, 6).astype(float)):
        e, g = loss.value_and_gradient(cpu_bk.asarray(z), cpu_bk.asarray(t),
                                       None if w is None else cpu_bk.asarray(w))
        ref_e, ref_g = _reference_loss(name, settings, z, t, w)
        assert float(anyfc.to_numpy(e)) == pytest.approx(ref_e, rel=1e-12)
        np.testing.assert_allclose(anyfc.to_numpy(g), ref_g, rtol=1e-10, atol=1e-14)
    # integer weights = repeated rows, where the reduction divides by Σ w
    w = np.array([0, 1, 2, 3, 1, 2])
    if settings.get("reduction") == "mean_with_sample_weight":
        e_w = loss.value(z, t, w.astype(float))
        assert float(e_w) == pytest.approx(float(loss.value(np.repeat(z, w, 0),
                                                            np.repeat(t, w, 0))), rel=1e-12)
    with pytest.raises(ValueError, match="reduction must be one of"):
        type(loss)(reduction="mean")


def test_dense_l2_penalty_value_and_gradient(cpu_bk):
    """E gains l2/(2N)·‖W‖² per Dense (never the bias), N the loss's normalizer; ∂E/∂W
    gains (l2/N)·W: checked by finite differences (NumPy) and on every backend."""
    from anyfc.training import step

    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((7, 4)), rng.standard_normal((7, 2))
    w = rng.uniform(0.5, 2.0, 7)

    def model_on(bk):
        layers = [anyfc.Dense(4, 5, "tanh", seed=0, l2=0.3, dtype="float64"),
                  anyfc.Dense(5, 2, "identity", seed=1, l2=1.5, dtype="float64")]
        loss = anyfc.losses.MeanSquaredError("mean_with_sample_weight", half=True)
        return anyfc.Sequential(layers, loss, backend=bk.name, device=bk.device_name)

    model = model_on(cpu_bk)
    e, _ = step.gradients(model, cpu_bk.asarray(X), cpu_bk.asarray(y), cpu_bk.asarray(w))
    penalty = sum(d.l2 / (2 * w.sum()) * np.sum(anyfc.to_numpy(d.w) ** 2)
                  for d in model.layers)
    data = float(anyfc.to_numpy(model.loss.value(model.forward(cpu_bk.asarray(X), False),
                                                 cpu_bk.asarray(y), cpu_bk.asarray(w))))
    assert float(anyfc.to_numpy(e)) == pytest.approx(data + penalty, rel=1e-12)
    ref = model_on(conftest_numpy())
    for layer in ref.layers:  # the numeric gradient of the whole E, on NumPy

        def energy(ref=ref):
            value, _ = step.gradients(ref, X, y, w)
            return float(value)

        numeric = _numeric_gradient(energy, layer.w)
        step.gradients(ref, X, y, w)
        np.testing.assert_allclose(layer.grad_w, numeric, rtol=1e-6, atol=1e-9)
    for mine, theirs in zip(model.layers, ref.layers):
        np.testing.assert_allclose(anyfc.to_numpy(mine.grad_w), theirs.grad_w, rtol=1e-10)
    assert model.layers[0].config()["l2"] == 0.3 and "l2" not in anyfc.Dense(2, 2).config()
    with pytest.raises(ValueError, match="l2"):
        anyfc.Dense(2, 2, l2=-1.0)


def conftest_numpy():
    from tests.conftest import Backend

    return Backend("numpy", "numpy", None)


def test_settings_travel_through_checkpoints(tmp_path):
    """A loss with settings, Dense(l2=...) and the optimizers' options save and load."""
    model = anyfc.Sequential([anyfc.Dense(3, 4, seed=0, l2=0.5), anyfc.Dense(4, 2, "identity",
                                                                           seed=1)],
                             anyfc.losses.BinaryCrossEntropy("mean_with_sample_weight",
                                                             outputs="sum"))
    X = np.random.default_rng(0).standard_normal((10, 3))
    y = (X[:, :2] > 0).astype(float)
    for opt in (anyfc.optimizers.Adam(eps_hat=True), anyfc.optimizers.SGD(
            0.1, momentum=0.9, lr_in_velocity=True)):
        model.fit(X, y, optimizer=opt, verbose=0)
        model.save(tmp_path / "m.npz")
        back = anyfc.load(tmp_path / "m.npz")
        assert back.architecture() == model.architecture()
        assert back.architecture()["loss"] == {
            "type": "BinaryCrossEntropy",
            "config": {"outputs": "sum", "reduction": "mean_with_sample_weight"}}
        assert back.optimizer.config() == opt.config()
        assert back.layers[0].l2 == 0.5


def test_optimizer_options_are_scikit_learns_updates():
    """Adam(eps_hat=True) and SGD(lr_in_velocity=True, nesterov or not) against
    scikit-learn's own optimizers, with a rate that changes between steps (where the
    velocity's form matters)."""
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]
    rates = [0.1, 0.05, 0.2, 0.01]
    cases = [(anyfc.optimizers.Adam(0.1, eps_hat=True, eps=1e-3),
              AdamOptimizer([p0.copy()], 0.1, epsilon=1e-3)),
             (anyfc.optimizers.SGD(0.1, momentum=0.9, nesterov=True, lr_in_velocity=True),
              SGDOptimizer([p0.copy()], 0.1, momentum=0.9, nesterov=True)),
             (anyfc.optimizers.SGD(0.1, momentum=0.7, lr_in_velocity=True),
              SGDOptimizer([p0.copy()], 0.1, momentum=0.7, nesterov=False))]
    for ours, theirs in cases:
        layer = anyfc.Dense.from_params(p0.copy(), np.zeros(2), "identity")
        ref = [p0.copy()]
        for g, lr in zip(grads, rates):
            if isinstance(ours, anyfc.optimizers.SGD):  # Adam's rate is its own
                ours.lr, theirs.learning_rate = lr, lr
            layer.grad_w, layer.grad_b = g, np.zeros(2)
            ours.step([layer])
            theirs.update_params(ref, [g])
        np.testing.assert_allclose(layer.w, ref[0], rtol=1e-12)


def test_cumulative_shuffling_is_scikit_learns_order():
    """shuffle='cumulative' with a RandomState: each epoch's order is scikit-learn's
    utils.shuffle of the previous one."""
    from sklearn.utils import shuffle

    from anyfc.training import data

    model = anyfc.Sequential([anyfc.Dense(1, 1, "identity", seed=0)], "mse")
    rows = np.arange(10.0).reshape(-1, 1)
    source = data.InMemory(model, (rows, rows), 4, "cumulative")
    rng, ref_rng, order = np.random.RandomState(3), np.random.RandomState(3), np.arange(10)
    for _ in range(3):
        got = np.concatenate([b[0][:, 0] for b in source.batches(rng)])
        order = shuffle(order, random_state=ref_rng)
        np.testing.assert_array_equal(got, order)
    with pytest.raises(ValueError, match="shuffle must be True, False or 'cumulative'"):
        model.fit(rows, rows, shuffle="sometimes", verbose=0)


def test_merge_last_joins_a_too_small_last_batch():
    model = anyfc.Sequential([anyfc.Dense(4, 3, "identity", seed=0), anyfc.BatchNorm(3)],
                             "mse")
    X = np.random.default_rng(0).standard_normal((11, 4))

    class Sizes(anyfc.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs["size"])

    seen: list[int] = []
    with pytest.raises(ValueError, match="needs at least 2 rows"):
        model.fit(X, X[:, :3], batch_size=5, verbose=0)
    model.fit(X, X[:, :3], batch_size=5, verbose=0, merge_last=True, callbacks=[Sizes()])
    assert seen == [5, 6]


def test_no_improvement_stopping_is_scikit_learns_rule():
    """count +1 when not better than best − tol, else 0; best follows any improvement;
    stop when count > n_iter_no_change; with lr_factor the rate is cut instead until it
    reaches min_lr; restore_best_weights ends on the best epoch's state."""
    scores = iter([5.0, 4.95, 4.0, 3.99, 3.985, 3.984, 1.0, 2.0, 2.0, 2.0])
    model = anyfc.Sequential([anyfc.Dense(2, 1, "identity", seed=0)], "mse")
    X = np.random.default_rng(0).standard_normal((8, 2))
    weights = []

    class Record(anyfc.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights.append(anyfc.to_numpy(self.model.layers[0].w).copy())

    stop = anyfc.NoImprovementStopping(lambda m: next(scores), tol=0.1, n_iter_no_change=2,
                                       mode="min", restore_best_weights=True)
    model.fit(X, X[:, :1], epochs=10, verbose=0, callbacks=[Record(), stop])
    # counts: 0 (5 < inf-0.1), 1 (4.95), 0 (4.0), 1, 2, 3 → stop after the 6th epoch
    assert stop.scores == [5.0, 4.95, 4.0, 3.99, 3.985, 3.984]
    assert (stop.stopped_epoch, stop.count, stop.best) == (5, 3, 3.984)
    np.testing.assert_array_equal(anyfc.to_numpy(model.layers[0].w), weights[5])
    opt = anyfc.optimizers.SGD(0.01)
    slow = anyfc.NoImprovementStopping("loss", tol=1e9, n_iter_no_change=1, lr_factor=0.2,
                                       min_lr=1e-4, best=0.0, count=1)
    model.fit(X, X[:, :1], epochs=10, verbose=0, optimizer=opt, callbacks=[slow])
    # every epoch fails to improve by tol: count 2 > 1 → cut (0.002), then every second
    # epoch (0.0004, 0.00008 ≤ min_lr), then stop
    assert opt.lr == pytest.approx(0.01 * 0.2**3) and slow.stopped_epoch == 6
    with pytest.raises(ValueError, match="does not report"):
        model.fit(X, X[:, :1], verbose=0,
                  callbacks=[anyfc.NoImprovementStopping("val_loss")])


def test_lbfgs_minimize_is_scipys_l_bfgs_b():
    """On the Rosenbrock function: SciPy's iterations, evaluations and point."""
    from scipy.optimize import minimize, rosen, rosen_der

    from anyfc import lbfgs

    x0 = np.array([-1.2, 1.0, -0.5, 0.8, 1.3])
    theirs = minimize(lambda x: (rosen(x), rosen_der(x)), x0, jac=True, method="L-BFGS-B")
    x, ours = lbfgs.minimize(lambda v: (float(rosen(v[0])), [rosen_der(v[0])]), [x0.copy()])
    assert (ours.n_iter, ours.n_fun, ours.converged) == (theirs.nit, theirs.nfev, True)
    np.testing.assert_allclose(x[0], theirs.x, rtol=1e-8)
    assert ours.loss == pytest.approx(theirs.fun, rel=1e-6, abs=1e-14)
    model = anyfc.Sequential([anyfc.Dense(2, 2, seed=0), anyfc.Dropout(0.5),
                              anyfc.Dense(2, 2, "identity", seed=1)])
    with pytest.raises(ValueError, match="random masks"):
        lbfgs.fit(model, np.ones((4, 2)), np.array([0, 1, 0, 1]))


def test_data_parallel_steps_keep_weighted_reductions_and_penalties(dask_bk):
    """Chunks computed apart add up to the batch: a loss divided by Σ w and Dense(l2)
    give the single-process result (float64, no shuffling)."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    X, y, w = rng.standard_normal((60, 4)), rng.standard_normal((60, 2)), rng.uniform(
        0.5, 2, 60)

    def trained(data):
        model = anyfc.Sequential(
            [anyfc.Dense(4, 6, seed=0, l2=0.4, dtype="float64"),
             anyfc.Dense(6, 2, "identity", seed=1, l2=0.4, dtype="float64")],
            anyfc.losses.MeanSquaredError("mean_with_sample_weight", "sum", half=True))
        history = model.fit(*data[:2], sample_weight=data[2], epochs=2, batch_size=20,
                            shuffle=False, verbose=0, optimizer=anyfc.optimizers.SGD(0.05),
                            strategy="data_parallel" if len(data) > 3 else "auto")
        return model, history

    single, h1 = trained((X, y, w))
    chunked = [da.from_array(a, chunks=7) for a in (X, y, w)]
    parallel, h2 = trained((*chunked, "parallel"))
    np.testing.assert_allclose(h2["loss"], h1["loss"], rtol=1e-10)
    for a, b in zip(parallel.state_dict().values(), single.state_dict().values()):
        np.testing.assert_allclose(anyfc.to_numpy(a), anyfc.to_numpy(b), rtol=1e-10)


@pytest.mark.mutation
def test_partial_fit_with_classes_absent_from_the_first_batch_follows_scikit_learn(
        cpu_bk, digits_small):
    """classes= names labels the first batch lacks (here 5-9, and, for string labels,
    the last ones in sorted order): the network has an output for each from the start,
    in classes' order, and later batches holding them train those outputs — on NumPy in
    float64 exactly as scikit-learn does."""
    X, y = digits_small
    first, rest = y < 5, y >= 5
    kw = dict(hidden_layer_sizes=(16,), random_state=0, batch_size=50)
    ours = MLPClassifier(**kw, backend=cpu_bk.name, device=cpu_bk.device_name,
                         dtype="float64")
    ours.partial_fit(X[first], y[first], classes=np.arange(10))
    assert list(ours.classes_) == list(range(10)) and ours.predict_proba(X[:3]).shape == (3, 10)
    ours.partial_fit(X[rest], y[rest])
    assert set(ours.predict(X[rest])) & set(range(5, 10))
    if cpu_bk.name == "numpy":
        theirs = SkClassifier(**kw)
        theirs.partial_fit(X[first], y[first], classes=np.arange(10))
        theirs.partial_fit(X[rest], y[rest])
        _assert_same_fit(ours, theirs, X)
    labels = np.array(list("abcdefghij"))[y]  # strings: the absent ones sort last
    text = MLPClassifier(**kw, backend=cpu_bk.name, device=cpu_bk.device_name,
                         dtype="float64")
    text.partial_fit(X[first], labels[first], classes=np.array(list("jihgfedcba")))
    text.partial_fit(X[rest], labels[rest])
    assert list(text.classes_) == list("abcdefghij")
    np.testing.assert_allclose(text.predict_proba(X), ours.predict_proba(X), rtol=1e-10)
