"""anyfc.losses: values against NumPy references, gradients against finite differences,
finite for huge logits; the sample-weighted losses (``E = (1/n) Σ_k w_k e_k``) against
NumPy references and finite differences, inside ``jax.jit`` too.

Tests marked ``mutation`` were written for mutants of anyfc/losses.py that survived: the
dtype of every result when targets and weights come in other dtypes, targets of shape
``(h,)``, softmax far from 0, binary accuracy at exactly ``z = 0`` and ``t = ½``, the
messages.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anyfc
from anyfc import _backend, losses
from anyfc.optimizers import SGD
from anyfc.testing import numeric_grad, rel_error
from tests.helpers import training
from tests.references import (
    LOSS_TARGETS,
    RTOL,
    Z4,
    _cases,
    _host,
    _ref_weighted,
    _strict,
    _target,
    _weights,
    loss_case_data,
    ref_loss,
    ref_probabilities,
)


def _softmax_ce(z, labels):
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return -np.mean(np.log(p[np.arange(len(labels)), labels]))


def _bce(z, t):
    p = 1 / (1 + np.exp(-z))
    return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))


def _unweighted_cases(rng):
    z, labels, onehot, bits, target = loss_case_data(rng)
    return {
        "softmax_cross_entropy": (z, labels, _softmax_ce(z, labels)),
        "softmax_cross_entropy/onehot": (z, onehot, _softmax_ce(z, labels)),
        "binary_cross_entropy": (z, bits, _bce(z, bits)),
        "binary_cross_entropy/1d": (z[:, :1], bits[:, 0], _bce(z[:, :1], bits[:, :1])),
        "mean_squared_error": (z, target, np.mean((z - target) ** 2)),
    }


CASES = list(_unweighted_cases(np.random.default_rng(0)))


@pytest.mark.parametrize("case", CASES)
def test_value_matches_reference(bk, case, rng):
    z, t, expected = _unweighted_cases(rng)[case]
    loss = losses.get(case.split("/")[0])
    e = loss.forward(bk.asarray(z), _target(bk, t))
    assert e.ndim == 0
    np.testing.assert_allclose(float(anyfc.to_numpy(e)), expected, rtol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_finite_differences(bk, case, rng):
    z, t, _ = _unweighted_cases(rng)[case]
    loss = losses.get(case.split("/")[0])
    t_b = _target(bk, t)

    def energy(z_host):
        return float(anyfc.to_numpy(loss.forward(bk.asarray(z_host), t_b)))

    loss.forward(bk.asarray(z), t_b)
    analytic = loss.backward()
    assert tuple(analytic.shape) == z.shape
    assert rel_error(analytic, numeric_grad(energy, z)) < 1e-6


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "binary_cross_entropy"])
def test_huge_logits_stay_finite(bk, name):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    t = np.array([1, 0]) if name.startswith("softmax") else np.array([[0.0, 0, 1], [0, 1, 0]])
    loss = losses.get(name)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        e = anyfc.to_numpy(loss.forward(bk.asarray(z), _target(bk, t)))
        g = anyfc.to_numpy(loss.backward())
    assert np.isfinite(e) and np.all(np.isfinite(g))
    assert e > 1000  # one confident wrong answer (logit 1e4 off) dominates the mean


def test_softmax_output_is_a_distribution(bk, rng):
    p = losses.get("softmax_cross_entropy").output(bk.xp, bk.asarray(rng.standard_normal((5, 3))))
    np.testing.assert_allclose(anyfc.to_numpy(p).sum(axis=1), 1.0, rtol=1e-12)


def test_unknown_loss_lists_the_valid_ones():
    with pytest.raises(ValueError, match="mean_squared_error"):
        losses.get("hinge")


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


def test_doubling_every_weight_is_doubling_the_sgd_rate(bk):
    a, b = training._model(bk), training._model(bk)
    a.fit(training.X, training.Y, epochs=2, batch_size=8, optimizer=SGD(0.1),
          sample_weight=np.full(40, 2.0), verbose=0, seed=5)
    b.fit(training.X, training.Y, epochs=2, batch_size=8, optimizer=SGD(0.2), verbose=0, seed=5)
    training._assert_weights(training._weights(a), training._weights(b), rtol=1e-10, atol=1e-12)


W4 = np.array([0.5, 2.0, 1.0, 0.25])


@pytest.mark.mutation
@pytest.mark.parametrize("name", list(LOSS_TARGETS))
def test_losses_keep_the_outputs_dtype_whatever_the_targets_and_weights_dtype(name):
    """On array_api_strict (no implicit casts to another kind): float32 outputs with
    int64 labels or float64 targets and float64 weights give float32 losses, gradients
    and hit counts, equal to the float64 references."""
    xp, _ = _strict(None)
    loss = anyfc.losses.get(name)
    t_host = LOSS_TARGETS[name]
    y = xp.asarray(Z4, dtype=xp.float32)
    t = xp.asarray(t_host)  # int64 labels or float64 targets
    w = xp.asarray(W4, dtype=xp.float64)
    e, grad, hits, _ = ref_loss(name, Z4, t_host)
    got = loss.value(y, t)
    assert got.dtype == xp.float32
    assert float(got) == pytest.approx(e, rel=1e-5)
    e_w, grad_w = _ref_weighted(name, Z4, t_host, W4)
    for got in (loss.value(y, t, w), loss.forward(y, t, w)):
        assert got.dtype == xp.float32
        assert float(got) == pytest.approx(e_w, rel=1e-5)
    g = loss.backward()
    assert g.dtype == xp.float32 and g.shape == y.shape
    np.testing.assert_allclose(np.asarray(anyfc.to_numpy(g)), grad_w, rtol=1e-5, atol=1e-7)
    got = loss.forward(y, t)
    assert got.dtype == xp.float32 and float(got) == pytest.approx(e, rel=1e-5)
    np.testing.assert_allclose(np.asarray(anyfc.to_numpy(loss.backward())), grad, rtol=1e-5,
                               atol=1e-7)
    if loss.classification:
        count, total = loss.n_correct(xp, y, t)
        assert float(count) == hits and total == (4 if name == "softmax_cross_entropy" else 12)


@pytest.mark.mutation
@pytest.mark.parametrize("name", ["binary_cross_entropy", "mean_squared_error"])
def test_a_single_output_takes_targets_of_shape_h(name):
    """``t`` of shape (h,) against ``y`` of shape (h, 1): one target per row, never the
    (h, h) table broadcasting would give."""
    z = Z4[:, :1]
    t = np.array([1.0, 0.0, 0.0, 1.0])
    loss = anyfc.losses.get(name)
    e, grad, _, _ = ref_loss(name, z, t)
    e_w, grad_w = _ref_weighted(name, z, t.reshape(-1, 1), W4)
    assert float(loss.value(z, t)) == pytest.approx(e, rel=RTOL)
    assert float(loss.forward(z, t)) == pytest.approx(e, rel=RTOL)
    np.testing.assert_allclose(loss.backward(), grad, rtol=RTOL)
    assert float(loss.value(z, t, W4)) == pytest.approx(e_w, rel=RTOL)
    assert float(loss.forward(z, t, W4)) == pytest.approx(e_w, rel=RTOL)
    np.testing.assert_allclose(loss.backward(), grad_w, rtol=RTOL)


@pytest.mark.mutation
def test_softmax_output_of_logits_far_from_zero():
    """Each row shifted by its own maximum: rows near +1000 and -1000 in one batch."""
    z = np.array([[1000.0, 999.0, 997.0], [-1000.0, -1001.0, -1003.0], [0.0, -1.0, -3.0]])
    expected = ref_probabilities("softmax_cross_entropy", np.array([[0.0, -1.0, -3.0]]))
    loss = anyfc.losses.get("softmax_cross_entropy")
    np.testing.assert_allclose(loss.output(np, z), np.repeat(expected, 3, axis=0), rtol=1e-14)
    t = np.array([1, 2, 0])
    e, grad, _, _ = ref_loss("softmax_cross_entropy", z - z.max(axis=1, keepdims=True), t)
    assert float(loss.value(z, t)) == pytest.approx(e, rel=1e-14)
    assert float(loss.forward(z, t)) == pytest.approx(e, rel=1e-14)
    np.testing.assert_allclose(loss.backward(), grad, rtol=1e-14)


@pytest.mark.mutation
def test_binary_accuracy_at_a_logit_of_zero_and_a_target_of_one_half():
    """σ(0) = ½ is not above one half: predicted 0; a soft target of ½ is class 0 too
    (ref_loss's ``s > ½`` and ``t > ½``)."""
    loss = anyfc.losses.get("binary_cross_entropy")
    z = np.array([[0.0], [-1.0], [1.0]])
    t = np.array([[0.0], [0.5], [1.0]])
    count, total = loss.n_correct(np, z, t)
    _, _, hits, n = ref_loss("binary_cross_entropy", z, t)
    assert (float(count), total) == (hits, n) == (3.0, 3)


@pytest.mark.mutation
def test_loss_names_reprs_and_errors():
    for name, cls in [("mse", "MeanSquaredError"), ("cross_entropy", "SoftmaxCrossEntropy"),
                      ("Binary_Cross_Entropy", "BinaryCrossEntropy")]:
        assert repr(anyfc.losses.get(name)) == f"{cls}()"
    with pytest.raises(TypeError, match=r"^mean_squared_error is not a classification loss$"):
        anyfc.losses.get("mse").n_correct(np, Z4, Z4)
    with pytest.raises(ValueError, match=r"^unknown loss 'hinge'; valid losses are "
                                         r"softmax_cross_entropy, cross_entropy, "
                                         r"binary_cross_entropy, mean_squared_error, mse$"):
        anyfc.losses.get("hinge")


@pytest.mark.mutation
@pytest.mark.parametrize("w, shape", [(np.ones((4, 1)), r"\(4, 1\)"), (np.ones(3), r"\(3,\)"),
                                      ([1.0] * 4, "list"), (2.0, "float")])
def test_sample_weights_of_another_shape_are_refused_naming_it(w, shape):
    for name, t in LOSS_TARGETS.items():
        loss = anyfc.losses.get(name)
        for call in (loss.value, loss.forward):
            with pytest.raises(ValueError, match=r"^the sample weights w must have shape "
                                                 rf"\(4,\), one per row of y, got {shape}$"):
                call(Z4, t, w)


@pytest.mark.hostile
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
