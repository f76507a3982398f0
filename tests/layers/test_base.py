"""anyfc.layers.base (Layer): moving a layer to another dtype; a layer whose ``__init__``
never placed it is named."""

import pytest

import anyfc


def test_dense_to_changes_dtype(bk):
    layer = bk.dense(3, 2, "relu", seed=0).to(bk.name, bk.device_name, "float32")
    assert layer.w.dtype == bk.xp.float32 and layer.b.dtype == bk.xp.float32


@pytest.mark.review
def test_a_layer_that_never_placed_itself_is_named():
    class Bare(anyfc.Layer):
        pass

    with pytest.raises(TypeError, match="Bare was never placed.*place"):
        anyfc.Sequential([anyfc.Dense(3, 3, "relu"), Bare()])
