"""anyfc.initializers: each initializer's variance, and the default a Dense layer picks for
its activation."""

import numpy as np
import pytest

import anyfc
from anyfc import initializers


@pytest.mark.parametrize("name,variance", [
    ("he", lambda i, o: 2 / i), ("he_uniform", lambda i, o: 2 / i),
    ("xavier", lambda i, o: 2 / (i + o)), ("xavier_uniform", lambda i, o: 2 / (i + o))])
def test_initializer_variance(name, variance):
    w = initializers.get(name)(np.random.default_rng(0), 400, 300)
    assert w.shape == (400, 300)
    np.testing.assert_allclose(w.var(), variance(400, 300), rtol=0.03)
    assert abs(w.mean()) < 0.01


def test_default_initializer_follows_activation():
    assert anyfc.Dense(2, 2, "relu").init == "he"
    assert anyfc.Dense(2, 2, "tanh").init == "xavier"
