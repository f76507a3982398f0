"""anyfc.layers.dense (Dense): forward against NumPy from the equations, backward against
finite differences, initialisation identical on every backend, dtype/device kept, the
gradient buffer reused, ``from_params`` owning copies, sizes and inputs refused; random
valid shapes never crash and give finite gradients (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anyfc
from anyfc import _backend
from anyfc.testing import numeric_grad, rel_error
from tests.helpers.hostile import X, Y


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "identity"])
def test_forward_matches_the_equations(bk, activation, rng):
    layer = bk.dense(5, 3, activation, seed=0)
    x = rng.standard_normal((4, 5))
    w, b = anyfc.to_numpy(layer.w), anyfc.to_numpy(layer.b)
    u = x @ w + b  # U = X·W + B
    f = {"relu": lambda u: np.maximum(u, 0), "tanh": np.tanh,
         "sigmoid": lambda u: 1 / (1 + np.exp(-u)),
         "leaky_relu": lambda u: np.where(u > 0, u, 0.01 * u), "identity": lambda u: u}
    y = layer.forward(bk.asarray(x))
    np.testing.assert_allclose(anyfc.to_numpy(y), f[activation](u), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "identity"])
def test_backward_matches_finite_differences(bk, activation, rng):
    layer = bk.dense(5, 3, activation, seed=1)
    x, r = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    w0, b0 = anyfc.to_numpy(layer.w), anyfc.to_numpy(layer.b)

    def energy(x_host=x, w_host=w0, b_host=b0):  # E = Σ r ⊙ y
        layer.w, layer.b = bk.asarray(w_host), bk.asarray(b_host)
        return float(np.sum(r * anyfc.to_numpy(layer.forward(bk.asarray(x_host)))))

    num_x = numeric_grad(lambda v: energy(x_host=v), x)
    num_w = numeric_grad(lambda v: energy(w_host=v), w0)
    num_b = numeric_grad(lambda v: energy(b_host=v), b0)
    energy()
    grad_x = layer.backward(bk.asarray(r))
    assert rel_error(layer.grad_w, num_w) < 1e-6  # ∂E/∂W = Xᵀ·Δ
    assert rel_error(layer.grad_b, num_b) < 1e-6  # ∂E/∂b = Σ_rows Δ
    assert rel_error(grad_x, num_x) < 1e-6  # ∂E/∂X = Δ·Wᵀ


def test_first_layer_can_skip_grad_x(bk, rng):
    layer = bk.dense(4, 2, "relu", seed=0)
    layer.forward(bk.asarray(rng.standard_normal((3, 4))))
    assert layer.backward(bk.asarray(np.ones((3, 2))), need_grad_x=False) is None
    assert layer.grad_w is not None and layer.grad_b is not None


def test_same_seed_same_weights_on_every_backend(bk):
    reference = anyfc.Dense(7, 5, "relu", seed=42, backend="numpy", dtype="float64")
    layer = bk.dense(7, 5, "relu", seed=42)
    np.testing.assert_array_equal(anyfc.to_numpy(layer.w), anyfc.to_numpy(reference.w))
    np.testing.assert_array_equal(anyfc.to_numpy(layer.b), np.zeros(5))
    other = bk.dense(7, 5, "relu", seed=43)
    assert not np.array_equal(anyfc.to_numpy(other.w), anyfc.to_numpy(layer.w))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_keep_dtype_backend_and_device(bk, dtype, rng):
    layer = bk.dense(3, 2, "relu", dtype=dtype, seed=0)
    x = bk.asarray(rng.standard_normal((4, 3)), dtype)
    y = layer.forward(x)
    gx = layer.backward(y)
    for a in (layer.w, layer.b, y, gx, layer.grad_w, layer.grad_b):
        assert _backend.namespace_of(a) is bk.xp
        assert a.dtype == getattr(bk.xp, dtype)
        assert _backend.device_of(a) == bk.device
    layer.update(0.1)
    assert layer.w.dtype == getattr(bk.xp, dtype) and _backend.device_of(layer.w) == bk.device


def test_update_is_plain_gradient_descent(bk, rng):
    layer = bk.dense(3, 2, "relu", seed=0)
    layer.forward(bk.asarray(rng.standard_normal((4, 3))))
    layer.backward(bk.asarray(rng.standard_normal((4, 2))))
    w, gw = anyfc.to_numpy(layer.w), anyfc.to_numpy(layer.grad_w)
    b, gb = anyfc.to_numpy(layer.b), anyfc.to_numpy(layer.grad_b)
    layer.update(0.5)
    np.testing.assert_allclose(anyfc.to_numpy(layer.w), w - 0.5 * gw)
    np.testing.assert_allclose(anyfc.to_numpy(layer.b), b - 0.5 * gb)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_sizes_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match="n_in"):
        anyfc.Dense(bad, 3, "relu")


def test_forward_rejects_wrong_feature_count(bk):
    layer = bk.dense(4, 2, "relu", seed=0)
    with pytest.raises(ValueError, match="4 features.*shape \\(3, 5\\)"):
        layer.forward(bk.asarray(np.ones((3, 5))))


def test_forward_rejects_another_library():
    import array_api_strict as strict

    layer = anyfc.Dense(2, 2, "relu", backend="numpy")
    with pytest.raises(TypeError, match="array_api_strict.*numpy arrays"):
        layer.forward(strict.ones((1, 2)))


def test_forward_rejects_another_device():
    import array_api_strict as strict

    layer = anyfc.Dense(2, 2, "relu", backend="array_api_strict", device="device1")
    with pytest.raises(TypeError, match="device"):
        layer.forward(strict.ones((1, 2), dtype=strict.float32))


def test_reassigned_parameters_are_used(bk):
    layer = bk.dense(2, 1, "identity", seed=0)
    layer.w = bk.asarray([[2.0], [3.0]])
    layer.b = bk.asarray([1.0])
    y = layer.forward(bk.asarray([[1.0, 1.0]]))
    np.testing.assert_allclose(anyfc.to_numpy(y), [[6.0]])


def test_gradient_buffer_is_reused_and_correct(bk, rng):
    layer = bk.dense(5, 3, "relu", seed=0)
    for _ in range(2):
        x, r = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
        layer.forward(bk.asarray(x))
        layer.backward(bk.asarray(r))
        y = anyfc.to_numpy(layer.y)
        delta = r * (y > 0)
        np.testing.assert_allclose(anyfc.to_numpy(layer.grad_w), x.T @ delta, rtol=1e-10)


@pytest.mark.hostile
def test_from_params_owns_copies(bk):
    w, b = np.ones((4, 3)), np.zeros(3)
    w.flags.writeable = b.flags.writeable = False
    layer = anyfc.Dense.from_params(bk.asarray(w), bk.asarray(b), "identity")
    model = anyfc.Sequential([layer])
    model.fit(X, Y, epochs=1, verbose=0)
    np.testing.assert_array_equal(w, np.ones((4, 3)))
    with pytest.raises(TypeError, match="same library, device and dtype"):
        anyfc.Dense.from_params(bk.asarray(w), bk.asarray(b, "float32"), "relu")


@pytest.mark.hostile
def test_low_level_dense_refuses_another_dtype(bk):
    layer = bk.dense(4, 3, "relu", seed=0, dtype="float64")
    with pytest.raises(TypeError, match="dtype float32.*float64"):
        layer.forward(bk.asarray(X[:2], "float32"))
    layer.forward(bk.asarray(X[:2], "float64"))
    with pytest.raises(TypeError, match="dtype float32"):
        layer.backward(bk.asarray(np.ones((2, 3)), "float32"))


@pytest.mark.hostile
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


def test_dense_is_linear_unless_told(bk):
    """As Keras's Dense and torch's Linear: y = x·W + b (0.1 used ReLU)."""
    layer = bk.dense(3, 2, seed=0)
    assert isinstance(layer.activation, anyfc.activations.Identity)
    x = np.array([[-1.0, 2.0, -3.0]])
    expected = x @ anyfc.to_numpy(layer.w) + anyfc.to_numpy(layer.b)
    np.testing.assert_allclose(anyfc.to_numpy(layer.forward(bk.asarray(x), training=False)),
                               expected, rtol=1e-12)
    assert (expected < 0).any()  # a ReLU would have cut these


def test_an_activation_before_a_logits_loss_is_warned_about():
    with pytest.warns(UserWarning, match=r"applies 'relu' before softmax_cross_entropy.*"
                                         r"activation='identity'"):
        anyfc.Sequential([anyfc.Dense(4, 8, "relu"), anyfc.Dense(8, 3, "relu")])
    with pytest.warns(UserWarning, match="'sigmoid' before binary_cross_entropy"):
        anyfc.Sequential([anyfc.Dense(4, 1, "sigmoid")], loss="binary_cross_entropy")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        anyfc.Sequential([anyfc.Dense(4, 8, "relu"), anyfc.Dense(8, 3)])
        anyfc.Sequential([anyfc.Dense(4, 2, "relu")], loss="mean_squared_error")
