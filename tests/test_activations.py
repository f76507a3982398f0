"""Activations: forward against NumPy written from the equations, backward against
central finite differences in float64, on every backend."""

import numpy as np
import pytest

import anyfc
from anyfc import activations
from anyfc.testing import numeric_grad, rel_error

REFERENCE = {
    "identity": lambda u: u,
    "relu": lambda u: np.maximum(u, 0),
    "leaky_relu": lambda u: np.where(u > 0, u, 0.01 * u),
    "sigmoid": lambda u: 1 / (1 + np.exp(-u)),
    "tanh": np.tanh,
}
NAMES = list(REFERENCE)


def _inputs(rng):
    # keep away from the kink at 0, where relu's derivative is undefined
    u = rng.uniform(0.1, 3.0, size=(5, 4)) * rng.choice([-1.0, 1.0], size=(5, 4))
    return u


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_reference(bk, name, rng):
    u = _inputs(rng)
    y = activations.get(name).forward(bk.xp, bk.asarray(u))
    np.testing.assert_allclose(anyfc.to_numpy(y), REFERENCE[name](u), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_finite_differences(bk, name, rng):
    act = activations.get(name)
    u, r = _inputs(rng), rng.standard_normal((5, 4))

    def energy(u_host):  # E = Σ r ⊙ f(u), so ∂E/∂u = r ⊙ f'(u)
        return float(np.sum(r * anyfc.to_numpy(act.forward(bk.xp, bk.asarray(u_host)))))

    y = act.forward(bk.xp, bk.asarray(u))
    analytic = act.backward(bk.xp, y, bk.asarray(r))
    assert rel_error(analytic, numeric_grad(energy, u)) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_keeps_dtype_and_device(bk, name, rng):
    u = bk.asarray(_inputs(rng), "float32")
    act = activations.get(name)
    y = act.forward(bk.xp, u)
    d = act.backward(bk.xp, y, y)
    for out in (y, d):
        assert out.dtype == bk.xp.float32
        assert anyfc._backend.device_of(out) == bk.device


def test_sigmoid_is_finite_for_huge_logits(bk):
    u = bk.asarray([[-1e4, -50.0, 0.0, 50.0, 1e4]])
    with np.errstate(over="raise"):
        y = anyfc.to_numpy(activations.get("sigmoid").forward(bk.xp, u))
    np.testing.assert_allclose(y, [[0.0, 1 / (1 + np.exp(50)), 0.5, 1 / (1 + np.exp(-50)), 1.0]])


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="relu.*sigmoid"):
        activations.get("softmaxx")


def test_leaky_relu_rejects_negative_slope():
    with pytest.raises(ValueError, match="alpha"):
        activations.LeakyReLU(-0.1)
