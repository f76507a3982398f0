"""anyfc.layers.dropout: the rate kept and scaled, identity in inference, the device of the
mask, seeds that reproduce and are range-checked."""

import numpy as np
import pytest

import anyfc
from anyfc import _backend


def test_dropout_keeps_the_rate_scales_and_is_identity_in_inference(bk):
    layer = anyfc.Dropout(0.3, seed=1, backend=bk.name, device=bk.device_name, dtype="float64")
    x = bk.asarray(np.ones((400, 50)))
    y = layer.forward(x)
    assert _backend.device_of(layer.mask) == bk.device
    host = anyfc.to_numpy(y)
    kept = host != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(host[kept], 1 / 0.7)
    np.testing.assert_array_equal(anyfc.to_numpy(layer.forward(x, training=False)), 1.0)
    again = anyfc.Dropout(0.3, seed=1, backend=bk.name, device=bk.device_name,
                          dtype="float64").forward(x)
    np.testing.assert_array_equal(anyfc.to_numpy(again), host)  # a seed reproduces
    other = anyfc.to_numpy(layer.forward(x))
    assert (other != host).any()  # and the stream moves on


@pytest.mark.review
@pytest.mark.parametrize("seed", [-1, 2**31, 2**64, 1.5, True])
def test_dropout_seeds_are_range_checked(seed):
    with pytest.raises(ValueError, match="seed in"):
        anyfc.Dropout(0.5, seed=seed)
