"""anyfc.layers.normalization: BatchNorm's training step against its equations and against
torch.nn.BatchNorm1d (values, gradients, running statistics); a negative running variance
is refused where it enters."""

import numpy as np
import pytest

import anyfc
from tests.helpers.zoo import RNG, _zoo_model


def test_batchnorm_training_matches_its_equations(bk):
    layer = anyfc.BatchNorm(3, momentum=0.2, backend=bk.name, device=bk.device_name,
                            dtype="float64")
    x = RNG.standard_normal((8, 3)) * 3 + 1
    y = anyfc.to_numpy(layer.forward(bk.asarray(x)))
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(anyfc.to_numpy(layer.running_mean), 0.2 * x.mean(0),
                               rtol=1e-12)
    np.testing.assert_allclose(anyfc.to_numpy(layer.running_var),
                               0.8 + 0.2 * x.var(0, ddof=1), rtol=1e-12)


def test_batchnorm_matches_torch_batchnorm1d():
    torch = pytest.importorskip("torch")
    ours = anyfc.BatchNorm(5, momentum=0.1, eps=1e-5, backend="numpy", dtype="float64")
    theirs = torch.nn.BatchNorm1d(5, momentum=0.1, eps=1e-5, dtype=torch.float64)
    for _ in range(3):
        x = RNG.standard_normal((16, 5)) * 2 + 0.5
        g = RNG.standard_normal((16, 5))
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        yt.backward(torch.tensor(g))
        y = ours.forward(x)
        grad_x = ours.backward(g)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.grad_gamma, theirs.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(ours.grad_beta, theirs.bias.grad.numpy(), rtol=1e-10)
        theirs.weight.grad = theirs.bias.grad = None
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
    theirs.eval()
    x = RNG.standard_normal((4, 5))
    np.testing.assert_allclose(ours.forward(x, training=False),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10)


@pytest.mark.review
def test_negative_running_variance_is_refused_where_it_enters(bk, tmp_path):
    model = _zoo_model(bk)
    state = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    state["layers.1.running_var"] = -np.ones(16)
    with pytest.raises(ValueError, match="layers.1: running_var holds negative variances"):
        model.load_state_dict(state)
    model.layers[1].running_var = bk.asarray(-np.ones(16))
    with pytest.raises(ValueError, match="layers.1: running_var holds negative"):
        model.fit(RNG.standard_normal((20, 6)), RNG.integers(0, 3, 20), verbose=0)
