"""anyfc._backend.precision, the precision policy: it round-trips and refuses
unknown values; its scopes leave JAX and torch as they were."""

from __future__ import annotations

import pytest

from anyfc import _backend
from anyfc._backend import precision as precision_policy


def test_precision_policy_round_trips_and_rejects_unknown_values(restore_settings):
    assert _backend.get_precision() == "highest"  # full float32 products by default
    _backend.set_precision("high")
    assert _backend.get_precision() == "high"
    _backend.set_precision("HIGHEST")
    assert _backend.get_precision() == "highest"
    for bad in ("medium", "tf32", None, 3):
        with pytest.raises(ValueError, match="valid precisions are 'highest', 'high'"):
            _backend.set_precision(bad)
    assert _backend.get_precision() == "highest"
    with precision_policy.precision("high"):
        assert _backend.get_precision() == "high"
    assert _backend.get_precision() == "highest"


def test_precision_scopes_leave_the_libraries_as_they_were(restore_settings):
    np_xp = _backend.get_namespace("numpy")
    with _backend.precision_scope(np_xp):  # nothing to set on the host
        pass
    try:
        import jax
    except ImportError:
        jax = None
    if jax is not None:
        before = jax.config.jax_default_matmul_precision
        for value, name in (("highest", "highest"), ("high", "tensorfloat32")):
            _backend.set_precision(value)
            with _backend.precision_scope(_backend.get_namespace("jax")):
                assert jax.config.jax_default_matmul_precision == name
            assert jax.config.jax_default_matmul_precision == before
    try:
        import torch
    except ImportError:
        return
    # the CUDA knob, set and restored (on a CPU build only the flag moves); torch on the
    # CPU has nothing to set and is left alone
    matmul = torch.backends.cuda.matmul
    attr = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    before = getattr(matmul, attr)
    _backend.set_precision("high")
    with _backend.precision_scope(_backend.get_namespace("torch"), "cpu"):
        assert getattr(matmul, attr) == before
    with _backend.precision_scope(_backend.get_namespace("torch"), "cuda:0"):
        assert getattr(matmul, attr) in ("tf32", True)
    assert getattr(matmul, attr) == before
    _backend.set_precision("highest")
    with _backend.precision_scope(_backend.get_namespace("torch"), "cuda:0"):
        assert getattr(matmul, attr) in ("ieee", False)
    assert getattr(matmul, attr) == before
