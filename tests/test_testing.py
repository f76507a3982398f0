"""anyfc.testing.check_layer: it catches a wrong gradient, runs without a seed, and
refuses misuse (every layer through it: tests/layers/test_every_layer.py)."""

import pytest

import anyfc
from anyfc.testing import check_layer


def test_check_layer_catches_a_wrong_gradient():
    class Broken(anyfc.Activation):
        def backward(self, grad_y, need_grad_x=True):
            return 1.1 * super().backward(grad_y, need_grad_x)

    with pytest.raises(AssertionError, match="gradient of x off by"):
        check_layer(lambda **w: Broken("tanh", **w), n_in=3, backends=["numpy"], train=False)


@pytest.mark.review
def test_check_layer_without_a_seed_and_misuse():
    report = check_layer(lambda **w: anyfc.Dropout(0.5, **w), n_in=3, backends="numpy",
                         train=False)
    assert report["numpy"]["backward"] < 1e-6
    with pytest.raises(ValueError, match="rows >= 1"):
        check_layer(lambda **w: anyfc.LayerNorm(3, **w), rows=0, backends=["numpy"])
