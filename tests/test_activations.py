"""anyfc.activations: forward against NumPy written from the equations, backward against
central finite differences in float64, on every backend; dtype and device kept; the
sigmoid finite for huge logits; names, settings and messages.

Tests marked ``mutation`` were written for mutants of anyfc/activations.py that survived
(tests/README.md): the derivative exactly at a kink, the settings' ranges, the error
messages and reprs (values away from the kinks are checked against finite differences).
"""

from __future__ import annotations

import numpy as np
import pytest

import anyfc
from anyfc import activations
from anyfc.testing import numeric_grad, rel_error
from tests.references import host

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


@pytest.mark.mutation
@pytest.mark.parametrize("spec, slopes", [
    ("relu", [0.0, 0.0, 1.0, 0.0]),
    ({"name": "leaky_relu", "alpha": 0.2}, [0.2, 0.2, 1.0, 0.2]),
    ({"name": "elu", "alpha": 0.5}, [0.5, 0.5, 1.0, 0.5 * np.exp(-1.0)]),
], ids=["relu", "leaky_relu", "elu"])
def test_the_derivative_at_a_kink_is_the_documented_one(bk, spec, slopes):
    """At u = 0 (and -0) exactly, f'(u) is the left derivative: the docstrings' "1 if
    u > 0 else ..." (PyTorch's convention too), at u = 1 and u = -1 the usual one."""
    layer = anyfc.Activation(spec, backend=bk.name, device=bk.device_name, dtype="float64")
    layer.forward(bk.asarray([[0.0, -0.0, 1.0, -1.0]]))
    grad = layer.backward(bk.asarray(np.ones((1, 4))))
    np.testing.assert_allclose(host(grad), [slopes], rtol=1e-15)


@pytest.mark.mutation
def test_the_sigmoid_is_one_half_at_zero(bk):
    layer = anyfc.Sigmoid(backend=bk.name, device=bk.device_name, dtype="float64")
    np.testing.assert_array_equal(host(layer.forward(bk.asarray([[0.0, -0.0]]))), [[0.5, 0.5]])


@pytest.mark.mutation
@pytest.mark.parametrize("alpha", [0, 0.0, 0.3, 1, 1.0, np.float32(0.5)])
def test_leaky_relu_takes_slopes_from_0_to_1(alpha):
    assert anyfc.activations.get({"name": "leaky_relu", "alpha": alpha}).alpha == float(alpha)
    assert anyfc.LeakyReLU(alpha=alpha).config() == {"alpha": float(alpha)}


@pytest.mark.mutation
@pytest.mark.parametrize("alpha", [True, False, -0.1, 1.5, 2.0, float("nan"), "0.1", None])
def test_leaky_relu_refuses_other_slopes(alpha):
    with pytest.raises(ValueError, match=r"leaky_relu needs a finite number 0 <= alpha <= 1, got"):
        anyfc.activations.LeakyReLU(alpha)


@pytest.mark.mutation
@pytest.mark.parametrize("alpha", [1e-9, 0.5, 1, 3.5])
def test_elu_takes_positive_alphas(alpha):
    assert anyfc.ELU(alpha=alpha).config() == {"alpha": float(alpha)}


@pytest.mark.mutation
@pytest.mark.parametrize("alpha", [True, 0, 0.0, -1.0, float("nan"), "1", None])
def test_elu_refuses_other_alphas(alpha):
    with pytest.raises(ValueError, match=r"elu needs a finite number alpha > 0, got"):
        anyfc.activations.ELU(alpha)


@pytest.mark.mutation
def test_activation_names_and_settings_are_checked_with_helpful_messages():
    get = anyfc.activations.get
    listing = r"valid activations are identity, linear, relu, leaky_relu, sigmoid, tanh"
    with pytest.raises(ValueError, match=rf"unknown activation 'nope'; {listing}"):
        get("nope")
    with pytest.raises(ValueError, match=rf"unknown activation {{'name': 'nope'}}; {listing}"):
        get({"name": "nope"})
    with pytest.raises(ValueError, match=rf"unknown activation {{'alpha': 0.1}}; {listing}"):
        get({"alpha": 0.1})  # a config without a name
    with pytest.raises(ValueError, match=r"bad settings for activation \{'name': 'relu', "
                                         r"'alpha': 0.1\}: "):
        get({"name": "relu", "alpha": 0.1})
    with pytest.raises(ValueError, match=r"takes the logits of an 'identity' last layer "
                                         r"\(Dense\(n, classes, 'identity'\)\); predict\(\) "
                                         r"applies the softmax for you$"):
        get("softmax")


@pytest.mark.mutation
def test_activations_repr_their_settings():
    get = anyfc.activations.get
    assert repr(get("relu")) == "ReLU()"
    assert repr(get(None)) == "Identity()"
    assert repr(get({"name": "leaky_relu", "alpha": 0.2})) == "LeakyReLU(alpha=0.2)"
    assert repr(get({"name": "ELU", "alpha": 2})) == "ELU(alpha=2.0)"
    assert get({"name": "elu", "alpha": 2}).config() == {"name": "elu", "alpha": 2.0}


@pytest.mark.mutation
def test_a_custom_activation_reprs_all_its_settings():
    class Scaled(anyfc.activations.Activation):  # the base class is public: users extend it
        name = "scaled"

        def __init__(self, a: float = 1.0, b: float = 2.0) -> None:
            self.a, self.b = a, b

    assert repr(Scaled(0.5, 3.0)) == "Scaled(a=0.5, b=3.0)"
    assert Scaled().config() == {"name": "scaled", "a": 1.0, "b": 2.0}


@pytest.mark.hostile
def test_softmax_as_an_activation_points_to_the_loss():
    with pytest.raises(ValueError, match="part of the loss 'softmax_cross_entropy'"):
        anyfc.Dense(4, 3, "softmax")


# ------------------------------------------------ hostile settings (issue #21, round three)

HUGE = 10**400  # a Python int no float holds: out of range, never an OverflowError


@pytest.mark.hostile
@pytest.mark.parametrize("spec", [
    {"name": "leaky_relu", "alpha": float("inf")},
    {"name": "leaky_relu", "alpha": HUGE},
    {"name": "elu", "alpha": float("inf")},
    {"name": "elu", "alpha": HUGE},
    {"name": "elu", "alpha": float("nan")},
    {"name": "elu", "alpha": np.float64("inf")},
], ids=["leaky-inf", "leaky-huge", "elu-inf", "elu-huge", "elu-nan", "elu-np-inf"])
def test_activation_config_with_a_bad_setting_is_a_value_error(spec):
    with pytest.raises(ValueError, match="needs a finite number"):
        activations.get(spec)
    with pytest.raises(ValueError, match="needs a finite number"):
        anyfc.Dense(2, 2, activation=spec)


@pytest.mark.hostile
def test_activation_settings_are_rechecked_after_assignment():
    act = activations.get({"name": "elu", "alpha": 0.5})
    act.check_settings()  # fine as built
    act.alpha = float("inf")
    with pytest.raises(ValueError, match="elu has a bad setting.*alpha > 0"):
        act.check_settings()
    act.alpha = HUGE
    with pytest.raises(ValueError, match="elu has a bad setting"):
        act.check_settings()
    activations.ReLU().check_settings()  # nothing to check
