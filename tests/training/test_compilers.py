"""anyfc.training.compilers, the step compilers: the defaults, choosing one (in code or through
``ANYFC_STEP_COMPILER``), and a compiled JAX step that deletes nothing the caller holds
(no donated buffers)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import _backend
from anyfc.training import compilers
from tests.helpers.transfers import AVAILABLE


def test_the_default_step_compilers(monkeypatch, restore_settings):
    monkeypatch.delenv("ANYFC_STEP_COMPILER", raising=False)
    compilers.CHOSEN.clear()
    assert compilers.step_compilers("torch") == ("eager", "compile")
    assert compilers.step_compilers("numpy") == ("eager",)
    assert compilers.get_step_compiler("numpy") == "eager"
    assert compilers.get_step_compiler("torch") == "eager"  # torch.compile only on request
    assert compilers.get_step_compiler("jax") == "jit"
    assert not compilers.compiles(_backend.get_namespace("numpy"))
    # the choice is public API
    assert anyfc.set_step_compiler is compilers.set_step_compiler
    assert anyfc.get_step_compiler is compilers.get_step_compiler


def test_choosing_a_step_compiler(monkeypatch, restore_settings):
    with pytest.raises(ValueError, match="no step compiler 'jit'.*valid: eager, compile"):
        compilers.set_step_compiler("torch", "jit")
    with pytest.raises(ValueError, match="unknown backend"):
        compilers.set_step_compiler("tensorflow", "eager")
    monkeypatch.setenv("ANYFC_STEP_COMPILER", "torch=compile, jax=eager")
    assert compilers.get_step_compiler("torch") == "compile"
    assert compilers.get_step_compiler("jax") == "eager"
    compilers.set_step_compiler("torch", "eager")  # a choice made in code wins
    assert compilers.get_step_compiler("torch") == "eager"
    compilers.set_step_compiler("torch", None)  # back to the environment's
    assert compilers.get_step_compiler("torch") == "compile"
    monkeypatch.setenv("ANYFC_STEP_COMPILER", "torch=fast")
    with pytest.raises(ValueError, match="ANYFC_STEP_COMPILER.*'fast'"):
        compilers.get_step_compiler("torch")


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.skipif("jax" not in AVAILABLE, reason="jax not available here")
def test_a_compiled_step_deletes_nothing_the_caller_holds() -> None:
    xp = _backend.get_namespace("jax")

    def pure(params: list[Any], state: dict[str, Any], x: Any) -> tuple[Any, ...]:
        return [p - 0.5 * x[0] for p in params], {k: v + 1 for k, v in state.items()}, xp.sum(x)

    step = compilers.compile_step(xp, pure)
    params = [xp.ones((3, 3)), xp.zeros(3)]
    state = {"v": xp.zeros(3)}
    x = xp.ones(3)
    for _ in range(2):  # the second call would be the one to reuse donated buffers
        new_params, new_state, _ = step(params, state, x)
    for old in [*params, *state.values(), x]:
        assert not old.is_deleted()
        np.asarray(old)  # "Array has been deleted" if donated
    assert float(params[0][0, 0]) == 1.0 and float(new_params[0][0, 0]) == 0.5
    assert float(new_state["v"][0]) == 1.0


def test_the_compilation_cache_is_opt_in_and_its_folder_checked(tmp_path):
    """``set_compilation_cache``: a folder that does not exist is refused by name (anyfc
    creates no folders); an existing one is kept, ``None`` turns it off."""
    import anyfc

    assert anyfc.compilation_cache() is None  # off unless asked for
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=r"'.*nope' does not exist; create it first"):
        anyfc.set_compilation_cache(missing)
    assert anyfc.compilation_cache() is None
    try:
        anyfc.set_compilation_cache(tmp_path)
        assert anyfc.compilation_cache() == os.path.realpath(tmp_path)
    finally:
        anyfc.set_compilation_cache(None)
    assert anyfc.compilation_cache() is None
