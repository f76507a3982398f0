"""Compiled training steps against the eager reference, the step-compiler interface, and
the precision policy.

Each backend's compiled step (JAX: ``jax.jit``; torch: ``torch.compile``, off by default)
must give the eager step's losses, parameters, BatchNorm running statistics, optimizer
state and dropout streams on the same model, batches and seeds (float64, so the only
differences are rounding). ``torch.compile`` needs a C++ compiler and takes seconds per
graph on a CPU: its test compiles three graphs (the first step, whose optimizer state is
still empty, the next, and a shorter last batch).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import anyfc
from anyfc import _backend, _precision
from anyfc.training import step as step_module

# the compiler each backend is tested with (torch's is off by default: turned on here)
COMPILERS = {"jax": "jit", "torch": "compile"}

X = np.random.default_rng(0).standard_normal((25, 6))
Y = np.arange(25) % 3


def _compiler_for(bk) -> str:
    mode = COMPILERS.get(bk.name)
    if mode is None:
        pytest.skip(f"{bk.name} has no step compiler")
    if bk.name == "torch" and shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile needs a C++ compiler on the CPU")
    return mode


def _model(bk, width: int = 6) -> anyfc.Sequential:
    """Dense → BatchNorm → Dropout → Dense(tanh) → Dropout → Dense, float64, seeded."""
    kw = {"backend": bk.name, "device": bk.device_name, "dtype": "float64"}
    return anyfc.Sequential([
        anyfc.Dense(width, 8, seed=0, **kw), anyfc.BatchNorm(8, **kw),
        anyfc.Dropout(0.25, seed=3, **kw), anyfc.Dense(8, 8, "tanh", seed=1, **kw),
        anyfc.Dropout(0.5, seed=4, **kw), anyfc.Dense(8, 3, "identity", seed=2, **kw)],
        backend=bk.name, device=bk.device_name, dtype="float64")


def _train(bk, mode: str, traces: bool = True) -> dict[str, list[np.ndarray]]:
    """A few steps by hand, then a fit epoch with a shorter last batch and a schedule;
    everything the training changed, on the host."""
    _backend.set_step_compiler(bk.name, mode)
    model = _model(bk)
    opt = anyfc.optimizers.Adam(anyfc.schedules.ExponentialDecay(0.05, 0.9))
    losses = []
    for i in range(3):
        x = bk.asarray(X[i * 5:i * 5 + 10])
        t = anyfc.to_backend(Y[i * 5:i * 5 + 10], bk.name, bk.device_name)
        losses.append(float(anyfc.to_numpy(model.train_step(x, t, opt))))
    traced = step_module.TRACES[bk.name]
    history = model.fit(X, Y, epochs=2, batch_size=10, optimizer=opt, seed=0, verbose=0)
    if mode != "eager" and traces:  # the 5-row last batch is a new shape: one more trace, not two
        assert step_module.TRACES[bk.name] == traced + 1, "the schedule recompiled the step"
    generators = model._generators()
    return {
        "losses": [np.array(losses + list(history["loss"]))],
        "arrays": [anyfc.to_numpy(a) for a in model._arrays()],
        "state": [anyfc.to_numpy(opt.state[k][slot]) for k in sorted(opt.state)
                  for slot in sorted(opt.state[k])],
        # the dropout streams went on alike: the next numbers each would draw
        "streams": [anyfc.to_numpy(g.uniform((2, 3), model.dtype)) for g in generators],
    }


def test_compiled_step_equals_the_eager_step(bk, restore_settings):
    """Same initial weights, batches and seeds: BatchNorm's running statistics, dropout's
    masks, Adam's state and a learning-rate schedule inside the compiled step."""
    mode = _compiler_for(bk)
    eager = _train(bk, "eager")
    compiled = _train(bk, mode)
    for key, values in eager.items():
        assert len(values) == len(compiled[key]) > 0, key
        for i, (a, b) in enumerate(zip(values, compiled[key])):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=f"{key}[{i}]")
    assert len(eager["state"]) == 16  # Adam's m and v of 8 parameters


def test_the_default_step_compilers(monkeypatch, restore_settings):
    monkeypatch.delenv("ANYFC_STEP_COMPILER", raising=False)
    _backend._step_compiler.clear()
    assert _backend.step_compilers("torch") == ("eager", "compile")
    assert _backend.step_compilers("numpy") == ("eager",)
    assert _backend.get_step_compiler("numpy") == "eager"
    assert _backend.get_step_compiler("torch") == "eager"  # torch.compile only on request
    assert _backend.get_step_compiler("jax") == "jit"
    assert not _backend.compiles(_backend.get_namespace("numpy"))


def test_choosing_a_step_compiler(monkeypatch, restore_settings):
    with pytest.raises(ValueError, match="no step compiler 'jit'.*valid: eager, compile"):
        _backend.set_step_compiler("torch", "jit")
    with pytest.raises(ValueError, match="unknown backend"):
        _backend.set_step_compiler("tensorflow", "eager")
    monkeypatch.setenv("ANYFC_STEP_COMPILER", "torch=compile, jax=eager")
    assert _backend.get_step_compiler("torch") == "compile"
    assert _backend.get_step_compiler("jax") == "eager"
    _backend.set_step_compiler("torch", "eager")  # a choice made in code wins
    assert _backend.get_step_compiler("torch") == "eager"
    _backend.set_step_compiler("torch", None)  # back to the environment's
    assert _backend.get_step_compiler("torch") == "compile"
    monkeypatch.setenv("ANYFC_STEP_COMPILER", "torch=fast")
    with pytest.raises(ValueError, match="ANYFC_STEP_COMPILER.*'fast'"):
        _backend.get_step_compiler("torch")


class _Plain(_backend.StepCompiler):
    """A compiler that compiles nothing: the pure step runs as it is, each call."""

    name = "plain"

    def __init__(self, random: str) -> None:
        self.random = random
        self.compiled = 0

    def compile(self, fn, device=None):
        self.compiled += 1
        return fn


@pytest.mark.parametrize("random", ["state", "drawn"])
def test_a_registered_step_compiler_runs_the_pure_step(random, restore_settings):
    """The interface on NumPy: the pure step gives the eager step's training exactly.
    NumPy's generators are stateful objects with no state to thread, so dropout's numbers
    are drawn before the step whatever the compiler prefers."""
    class Bk:
        name, device_name = "numpy", None

        @staticmethod
        def asarray(a):
            return np.asarray(a, dtype=np.float64)

    compiler = _Plain(random)
    _backend.register_step_compiler("numpy", compiler)
    try:
        assert _backend.step_compilers("numpy") == ("eager", "plain")
        eager = _train(Bk, "eager")
        plain = _train(Bk, "plain", traces=False)
        assert compiler.compiled == 1  # one compiled step for the model and optimizer
        model = _model(Bk)
        assert step_module.compiled(model, anyfc.optimizers.SGD()).random == "drawn"
    finally:
        del _backend._STEP_COMPILERS["numpy"]
    for key, values in eager.items():
        for a, b in zip(values, plain[key]):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14, err_msg=key)
    with pytest.raises(ValueError, match="StepCompiler"):
        _backend.register_step_compiler("numpy", _backend.StepCompiler())


def test_the_signature_holds_everything_the_step_closes_over(restore_settings):
    """Each of these compiles a step of its own; the learning rate does not."""
    def sig(layers=None, opt=None, dtype="float64", loss="softmax_cross_entropy"):
        layers = layers or [anyfc.Dense(4, 5, "tanh", backend="numpy", dtype=dtype),
                            anyfc.Dense(5, 3, "identity", backend="numpy", dtype=dtype)]
        model = anyfc.Sequential(layers, loss=loss, backend="numpy", dtype=dtype)
        return step_module.signature(model, opt or anyfc.optimizers.SGD(0.1))

    def dense(n_out=5, act="tanh"):
        return [anyfc.Dense(4, n_out, act, backend="numpy", dtype="float64"),
                anyfc.Dense(n_out, 3, "identity", backend="numpy", dtype="float64")]

    base = sig()
    assert sig(opt=anyfc.optimizers.SGD(0.5)) == base  # the rate is an argument
    others = [
        sig(layers=dense(6)), sig(layers=dense(act="relu")),
        sig(layers=[*dense()[:1], anyfc.Dropout(0.2, backend="numpy", dtype="float64"),
                    *dense()[1:]]),
        sig(opt=anyfc.optimizers.SGD(0.1, momentum=0.9)), sig(opt=anyfc.optimizers.Adam(0.1)),
        sig(dtype="float32"), sig(loss="mean_squared_error"),
    ]
    _backend.set_precision("high")
    others.append(sig())
    _backend.set_precision("highest")
    _backend.register_step_compiler("numpy", _Plain("state"))
    try:
        _backend.set_step_compiler("numpy", "plain")
        others.append(sig())
    finally:
        del _backend._STEP_COMPILERS["numpy"]
        _backend.set_step_compiler("numpy", None)
    assert len({base, *others}) == len(others) + 1


# ---------------------------------------------------------------- precision


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
    with _precision.precision("high"):
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


def _lowered(model, opt, x, t):
    step = step_module.compiled(model, opt)
    gens = model._generators()
    return step.fn.lower(model._params(), model._buffers(), [g.state for g in gens],
                         opt.state, 1.0, 0.1, x, t, None).as_text()


def test_jax_compiled_step_asks_for_full_float32_products(restore_settings):
    """JAX's own default on NVIDIA GPUs is TF32: anyfc's compiled step records HIGHEST on
    every matrix product (float32, the default policy), and TF32 only when asked for."""
    pytest.importorskip("jax")
    model = anyfc.Sequential([anyfc.Dense(4, 5, backend="jax"),
                              anyfc.Dense(5, 3, "identity", backend="jax")], backend="jax")
    opt = anyfc.optimizers.SGD(0.1)
    x = anyfc.to_backend(X[:8, :4], "jax", dtype="float32")
    t = anyfc.to_backend(Y[:8], "jax")
    text = _lowered(model, opt, x, t)
    products = text.count("stablehlo.dot_general")
    assert products == 5  # forward 2, weight gradients 2, one input gradient
    assert text.count("precision = [HIGHEST, HIGHEST]") == products
    _backend.set_precision("high")
    text = _lowered(model, opt, x, t)
    assert text.count("precision = [HIGH, HIGH]") == products
    assert "HIGHEST" not in text


def test_dropout_seeds_do_not_compile_the_step_again():
    pytest.importorskip("jax")
    from anyfc.training import step

    def model(seed):
        return anyfc.Sequential([
            anyfc.Dense(4, 6, "tanh", backend="jax", seed=0),
            anyfc.Dropout(0.3, seed=seed, backend="jax"),
            anyfc.Dense(6, 3, "identity", backend="jax", seed=1)])

    sgd = anyfc.optimizers.SGD(0.1)
    assert model(1)._compiled_step(sgd) is model(2)._compiled_step(sgd)
    assert model(1)._compiled_step(sgd) is model(None)._compiled_step(sgd)
    assert step.signature(model(1), sgd) == step.signature(model(2), sgd)
