"""Sample-weighted losses (``E = (1/n) Σ_k w_k e_k``) against NumPy references and finite
differences, and the checks of ``_validation.sample_weight`` / ``_validation.class_weight``."""

import numpy as np
import pytest

import anyfc
from anyfc import _backend, _validation, losses
from anyfc.testing import numeric_grad, rel_error
from tests.references import _cases, _host, _target, _weights

CASES = list(_cases(np.random.default_rng(0)))


# ---------------------------------------------------------------- the weighted loss math


@pytest.mark.parametrize("case", CASES)
def test_weighted_value_matches_reference(bk, case, rng):
    z, t, reference = _cases(rng)[case]
    w = _weights(rng)
    loss = losses.get(case.split("/")[0])
    expected = reference(w)
    e_value = loss.value(bk.asarray(z), _target(bk, t), bk.asarray(w))
    e_forward = loss.forward(bk.asarray(z), _target(bk, t), bk.asarray(w))
    for e in (e_value, e_forward):
        assert e.ndim == 0
        np.testing.assert_allclose(float(_host(e)), expected, rtol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_weighted_gradient_matches_finite_differences(bk, case, rng):
    z, t, _ = _cases(rng)[case]
    w = _weights(rng)
    loss = losses.get(case.split("/")[0])
    t_b, w_b = _target(bk, t), bk.asarray(w)

    def energy(z_host):
        return float(_host(loss.value(bk.asarray(z_host), t_b, w_b)))

    loss.forward(bk.asarray(z), t_b, w_b)
    analytic = loss.backward()
    assert tuple(analytic.shape) == z.shape
    assert _backend.device_of(analytic) == bk.device
    assert rel_error(analytic, numeric_grad(energy, z)) < 1e-6


@pytest.mark.parametrize("case", CASES)
def test_unit_weights_equal_the_unweighted_loss(bk, case, rng):
    z, t, _ = _cases(rng)[case]
    loss = losses.get(case.split("/")[0])
    e0 = _host(loss.forward(bk.asarray(z), _target(bk, t)))
    g0 = _host(loss.backward())
    e1 = _host(loss.forward(bk.asarray(z), _target(bk, t), bk.asarray(np.ones(z.shape[0]))))
    g1 = _host(loss.backward())
    np.testing.assert_allclose(e1, e0, rtol=1e-13)
    np.testing.assert_allclose(g1, g0, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("case", CASES)
def test_zero_weight_removes_a_row(bk, case, rng):
    z, t, _ = _cases(rng)[case]
    w = _weights(rng)  # w[2] == 0
    loss = losses.get(case.split("/")[0])
    t_b, w_b = _target(bk, t), bk.asarray(w)
    e = _host(loss.forward(bk.asarray(z), t_b, w_b))
    g = _host(loss.backward())
    assert np.all(g[2] == 0.0)
    assert np.any(g[[0, 1, 3, 4, 5]] != 0.0)
    moved = z.copy()
    moved[2] += 5.0  # the row's logits no longer matter
    np.testing.assert_allclose(_host(loss.value(bk.asarray(moved), t_b, w_b)), e, rtol=1e-13)


@pytest.mark.parametrize("case", CASES)
def test_doubling_the_weights_doubles_loss_and_gradient(bk, case, rng):
    z, t, _ = _cases(rng)[case]
    w = _weights(rng)
    loss = losses.get(case.split("/")[0])
    t_b = _target(bk, t)
    e1 = _host(loss.forward(bk.asarray(z), t_b, bk.asarray(w)))
    g1 = _host(loss.backward())
    e2 = _host(loss.forward(bk.asarray(z), t_b, bk.asarray(2 * w)))
    g2 = _host(loss.backward())
    np.testing.assert_allclose(e2, 2 * e1, rtol=1e-13)
    np.testing.assert_allclose(g2, 2 * g1, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "binary_cross_entropy",
                                  "mean_squared_error"])
def test_unweighted_forward_after_a_weighted_one_forgets_the_weights(bk, name, rng):
    z, t, _ = _cases(rng)[name]
    loss, fresh = losses.get(name), losses.get(name)
    loss.forward(bk.asarray(z), _target(bk, t), bk.asarray(_weights(rng)))
    loss.backward()
    loss.forward(bk.asarray(z), _target(bk, t))
    fresh.forward(bk.asarray(z), _target(bk, t))
    assert loss.w is None
    np.testing.assert_array_equal(_host(loss.backward()), _host(fresh.backward()))


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "binary_cross_entropy",
                                  "mean_squared_error"])
def test_weights_of_another_float_dtype_are_cast_to_the_outputs(bk, name, rng):
    z, t, reference = _cases(rng)[name]
    w = np.array([0.5, 1.0, 0.0, 2.0, 1.5, 0.25])  # exact in float32
    loss = losses.get(name)
    e = loss.forward(bk.asarray(z), _target(bk, t), bk.asarray(w, "float32"))
    assert e.dtype == bk.xp.float64 and loss.backward().dtype == bk.xp.float64
    np.testing.assert_allclose(float(_host(e)), reference(w), rtol=1e-12)


@pytest.mark.parametrize("shape", [(5,), (6, 1), ()])
def test_weights_of_the_wrong_shape_are_refused_by_the_loss(bk, shape):
    loss = losses.get("mean_squared_error")
    z = bk.asarray(np.zeros((6, 2)))
    with pytest.raises(ValueError, match=r"sample weights w must have shape \(6,\)"):
        loss.forward(z, z, bk.asarray(np.ones(shape)))


def test_weighted_step_compiles_under_jax_jit(bk, rng):
    if bk.name != "jax":
        pytest.skip("jax.jit only")
    import jax

    z, t, reference = _cases(rng)["softmax_cross_entropy"]
    w = _weights(rng)
    loss = losses.get("softmax_cross_entropy")

    def step(y, labels, weights):
        return loss.forward(y, labels, weights), loss.backward()

    e, g = jax.jit(step)(bk.asarray(z), _target(bk, t), bk.asarray(w))
    np.testing.assert_allclose(float(_host(e)), reference(w), rtol=1e-12)
    loss.forward(bk.asarray(z), _target(bk, t), bk.asarray(w))
    np.testing.assert_allclose(_host(g), _host(loss.backward()), rtol=1e-12)


# ---------------------------------------------------------------- _validation.sample_weight


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


# ---------------------------------------------------------------- _validation.class_weight


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
