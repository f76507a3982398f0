"""Losses: values against NumPy references, gradients against finite differences."""

import numpy as np
import pytest

import anyfc
from anyfc import losses
from anyfc.testing import numeric_grad, rel_error


def _softmax_ce(z, labels):
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return -np.mean(np.log(p[np.arange(len(labels)), labels]))


def _bce(z, t):
    p = 1 / (1 + np.exp(-z))
    return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))


def _cases(rng):
    z = rng.standard_normal((6, 4)) * 2
    labels = rng.integers(0, 4, size=6)
    onehot = np.eye(4)[labels]
    bits = rng.integers(0, 2, size=(6, 4)).astype(np.float64)
    target = rng.standard_normal((6, 4))
    return {
        "softmax_cross_entropy": (z, labels, _softmax_ce(z, labels)),
        "softmax_cross_entropy/onehot": (z, onehot, _softmax_ce(z, labels)),
        "binary_cross_entropy": (z, bits, _bce(z, bits)),
        "binary_cross_entropy/1d": (z[:, :1], bits[:, 0], _bce(z[:, :1], bits[:, :1])),
        "mean_squared_error": (z, target, np.mean((z - target) ** 2)),
    }


CASES = list(_cases(np.random.default_rng(0)))


def _target(bk, t):
    return bk.asarray(t, None if t.dtype.kind == "i" else "float64")


@pytest.mark.parametrize("case", CASES)
def test_value_matches_reference(bk, case, rng):
    z, t, expected = _cases(rng)[case]
    loss = losses.get(case.split("/")[0])
    e = loss.forward(bk.asarray(z), _target(bk, t))
    assert e.ndim == 0
    np.testing.assert_allclose(float(anyfc.to_numpy(e)), expected, rtol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_finite_differences(bk, case, rng):
    z, t, _ = _cases(rng)[case]
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
