"""anyfc._backend, parameter updates: above 2**18 elements the update runs in row blocks
(NumPy) or fused (torch), with the same result."""

import numpy as np

import anyfc
from anyfc import optimizers


def test_large_parameter_update_matches_its_equation(bk, rng):
    """Above 2**18 elements the update runs in row blocks (NumPy) or fused (torch), so
    no parameter-sized temporary is made; the result must not change."""
    layer = bk.dense(700, 400, "relu", seed=0, dtype="float32")  # 280,000 weights
    w0 = anyfc.to_numpy(layer.w)
    g = rng.standard_normal((700, 400)).astype(np.float32)
    layer.grad_w, layer.grad_b = bk.asarray(g, "float32"), bk.asarray(np.ones(400), "float32")
    optimizers.SGD(lr=0.5).step([layer])
    np.testing.assert_allclose(anyfc.to_numpy(layer.w), w0 - np.float32(0.5) * g, rtol=1e-6)
    np.testing.assert_allclose(anyfc.to_numpy(layer.b), -0.5 * np.ones(400), rtol=1e-6)
