"""anyfc.training.step: compiled training steps against the eager reference, and when a
step is compiled again.

Each backend's compiled step (JAX: ``jax.jit``; torch: ``torch.compile``, off by default)
must give the eager step's losses, parameters, BatchNorm running statistics, optimizer
state and dropout streams on the same model, batches and seeds (float64, so the only
differences are rounding). ``torch.compile`` needs a C++ compiler and takes seconds per
graph on a CPU: its test compiles three graphs (the first step, whose optimizer state is
still empty, the next, and a shorter last batch). A step is rebuilt when what it closed
over changes, shared by models alike, never rebuilt for a new learning rate, a schedule
or a dropout seed; JAX's asks for full float32 products; it deletes nothing a caller
holds.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import anyfc
from anyfc import _backend, schedules
from anyfc.callbacks import LearningRateScheduler, ReduceLROnPlateau
from anyfc.optimizers import SGD, Adam
from anyfc.training import compilers
from anyfc.training import step as step_module
from tests.helpers import hostile, training
from tests.helpers.transfers import AVAILABLE
from tests.helpers.zoo import RNG

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
        anyfc.Dense(width, 8, "relu", seed=0, **kw), anyfc.BatchNorm(8, **kw),
        anyfc.Dropout(0.25, seed=3, **kw), anyfc.Dense(8, 8, "tanh", seed=1, **kw),
        anyfc.Dropout(0.5, seed=4, **kw), anyfc.Dense(8, 3, "identity", seed=2, **kw)],
        backend=bk.name, device=bk.device_name, dtype="float64")


def _train(bk, mode: str, traces: bool = True) -> dict[str, list[np.ndarray]]:
    """A few steps by hand, then a fit epoch with a shorter last batch and a schedule;
    everything the training changed, on the host."""
    compilers.set_step_compiler(bk.name, mode)
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
    generators = list(model.generators().values())
    return {
        "losses": [np.array(losses + list(history["loss"]))],
        "arrays": [anyfc.to_numpy(a) for a in model.state(rng=False)],
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


class _Plain(compilers.StepCompiler):
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
    compilers.register_step_compiler("numpy", compiler)
    try:
        assert compilers.step_compilers("numpy") == ("eager", "plain")
        eager = _train(Bk, "eager")
        plain = _train(Bk, "plain", traces=False)
        assert compiler.compiled == 1  # one compiled step for the model and optimizer
        model = _model(Bk)
        assert step_module.compiled(model, anyfc.optimizers.SGD()).random == "drawn"
    finally:
        del compilers.REGISTERED["numpy"]
    for key, values in eager.items():
        for a, b in zip(values, plain[key]):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14, err_msg=key)
    with pytest.raises(ValueError, match="StepCompiler"):
        compilers.register_step_compiler("numpy", compilers.StepCompiler())


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
    compilers.register_step_compiler("numpy", _Plain("state"))
    try:
        compilers.set_step_compiler("numpy", "plain")
        others.append(sig())
    finally:
        del compilers.REGISTERED["numpy"]
        compilers.set_step_compiler("numpy", None)
    assert len({base, *others}) == len(others) + 1


def _lowered(model, opt, x, t):
    step = step_module.compiled(model, opt)
    state = model.state(rng=False)
    keys = {k: g.state for k, g in model.generators().items()}
    return step.fn.lower(state.params, state.buffers, keys,
                         opt.state, 1.0, 0.1, x, t, None).as_text()


def test_jax_compiled_step_asks_for_full_float32_products(restore_settings):
    """JAX's own default on NVIDIA GPUs is TF32: anyfc's compiled step records HIGHEST on
    every matrix product (float32, the default policy), and TF32 only when asked for."""
    pytest.importorskip("jax")
    model = anyfc.Sequential([anyfc.Dense(4, 5, "relu", backend="jax"),
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
    assert step_module.compiled(model(1), sgd) is step_module.compiled(model(2), sgd)
    assert step_module.compiled(model(1), sgd) is step_module.compiled(model(None), sgd)
    assert step.signature(model(1), sgd) == step.signature(model(2), sgd)


def test_schedules_and_rate_changes_never_recompile_the_jax_step(bk):
    if bk.name != "jax":
        pytest.skip("the compiled step is JAX's")
    from anyfc.training import step

    model = training._model(bk)
    opt = Adam(schedules.CosineDecay(0.05, 20, warmup_steps=3))
    model.fit(training.X, training.Y, epochs=1, batch_size=8, optimizer=opt,
              verbose=0)  # traces (state fills)
    traced = step.TRACES["jax"]
    history = model.fit(training.X, training.Y, epochs=4, batch_size=8,
                        verbose=0)  # the schedule moves on
    assert step.TRACES["jax"] == traced, "a schedule recompiled the step"
    assert len(set(history.lr)) == 4  # the rate did change
    opt2 = SGD(0.1, momentum=0.9)
    model.fit(training.X, training.Y, epochs=1, batch_size=8, optimizer=opt2, verbose=0)
    traced = step.TRACES["jax"]
    model.fit(training.X, training.Y, epochs=3, batch_size=8, verbose=0, callbacks=[
        LearningRateScheduler(lambda e, lr: lr * 0.5),
        ReduceLROnPlateau("loss", min_delta=1e9, patience=1)])
    assert step.TRACES["jax"] == traced, "a rate set by a callback recompiled the step"
    assert opt2.lr < 0.1 * 0.5**3


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.skipif("jax" not in AVAILABLE, reason="jax not available here")
def test_training_on_jax_leaves_earlier_state_dicts_alive() -> None:
    model = anyfc.Sequential([anyfc.Dense(4, 8, "relu"), anyfc.Dense(8, 3, "identity")],
                             loss="softmax_cross_entropy", backend="jax")
    earlier = model.state_dict()
    X = np.random.default_rng(3).random((16, 4)).astype(np.float32)
    y = np.arange(16) % 3
    x, t = anyfc.to_backend(X, "jax", dtype="float32"), anyfc.to_backend(y, "jax")
    opt = anyfc.optimizers.SGD(0.1)
    for _ in range(3):
        model.train_step(x, t, opt)
    for value in earlier.values():
        anyfc.to_numpy(value)  # raises if the compiled step deleted it
    np.testing.assert_array_equal(anyfc.to_numpy(x), X)


@pytest.mark.hostile
@pytest.mark.parametrize("change", ["activation", "layer", "loss_free_alpha"])
def test_changing_the_model_between_fits_trains_the_new_model(bk, change):
    """On JAX the training step is compiled: it must be rebuilt when what it closed over
    changes, never keep training the old network."""
    opt = anyfc.optimizers.SGD(0.1)
    model = hostile._model(bk, activation="tanh")
    model.fit(hostile.X, hostile.Y, epochs=1, batch_size=8, optimizer=opt, shuffle=False, verbose=0)
    if change == "activation":
        model.layers[0].activation = anyfc.activations.get("relu")
    elif change == "layer":
        model.layers[1] = bk.dense(6, 3, "identity", seed=5)
    else:
        model.layers[0].activation = anyfc.activations.LeakyReLU(0.2)
        model.fit(hostile.X, hostile.Y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        model.layers[0].activation.alpha = 0.5  # a setting changed in place
    reference = anyfc.Sequential(
        [anyfc.Dense.from_params(*(anyfc.to_backend(getattr(model.layers[i], n), "numpy")
                                   for n in "wb"), model.layers[i].activation)
         for i in range(2)])
    model.fit(hostile.X, hostile.Y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    reference.fit(hostile.X, hostile.Y, epochs=1, batch_size=8, shuffle=False, verbose=0,
                  optimizer=anyfc.optimizers.SGD(0.1))
    for a, b in zip(model.layers, reference.layers):
        np.testing.assert_allclose(anyfc.to_numpy(a.w), b.w, rtol=1e-9, atol=1e-12)


@pytest.mark.hostile
def test_models_alike_share_one_compiled_step_and_others_do_not():
    pytest.importorskip("jax")

    def model(activation="tanh"):
        return anyfc.Sequential([anyfc.Dense(4, 6, activation, backend="jax", seed=0),
                                 anyfc.Dense(6, 3, "identity", backend="jax", seed=1)])

    a, b, c = model(), model(), model("relu")
    sgd = anyfc.optimizers.SGD(0.1)
    assert step_module.compiled(a, sgd) is step_module.compiled(b, anyfc.optimizers.SGD(0.1))
    assert step_module.compiled(a, sgd) is not step_module.compiled(c, sgd)
    # the learning rate is an argument of the step (schedules never recompile it); other
    # settings are constants of it
    assert step_module.compiled(a, sgd) is step_module.compiled(a, anyfc.optimizers.SGD(0.2))
    assert step_module.compiled(a, sgd) is not step_module.compiled(
        a, anyfc.optimizers.SGD(0.1, 0.9))

    class Mine(anyfc.Activation):  # not anyfc's: keyed by identity, never shared
        pass

    d = anyfc.Sequential([anyfc.Dense(4, 6, "relu", backend="jax"), Mine("tanh", backend="jax"),
                          anyfc.Dense(6, 3, "identity", backend="jax")])
    e = anyfc.Sequential([anyfc.Dense(4, 6, "relu", backend="jax"), Mine("tanh", backend="jax"),
                          anyfc.Dense(6, 3, "identity", backend="jax")])
    assert step_module.compiled(d, sgd) is not step_module.compiled(e, sgd)
    b.fit(hostile.X, hostile.Y, epochs=1, optimizer=sgd, seed=0,
          verbose=0)  # the shared step trains b
    a.fit(hostile.X, hostile.Y, epochs=1, optimizer=anyfc.optimizers.SGD(0.1), seed=0, verbose=0)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(anyfc.to_numpy(la.w), anyfc.to_numpy(lb.w))


@pytest.mark.review
def test_jax_trains_past_two_to_the_31_steps():
    pytest.importorskip("jax")
    model = anyfc.Sequential([anyfc.Dense(4, 3, "identity", backend="jax", seed=0)])
    opt = anyfc.optimizers.Adam(0.01)
    opt.t = 2**31 + 5
    model.fit(RNG.standard_normal((8, 4)), RNG.integers(0, 3, 8), optimizer=opt, verbose=0)
    assert opt.t == 2**31 + 6


@pytest.mark.parametrize("make", [
    lambda: Adam(0.01), lambda: anyfc.optimizers.AdamW(0.01), lambda: SGD(0.1),
    lambda: SGD(0.1, momentum=0.9), lambda: anyfc.optimizers.RMSProp(0.01),
    lambda: anyfc.optimizers.AdaGrad(0.1)], ids=["adam", "adamw", "sgd", "momentum",
                                                 "rmsprop", "adagrad"])
def test_a_fresh_optimizer_compiles_the_jax_step_once(bk, make, restore_settings):
    """The first step starts from the state it would create (``initial_state``), so it
    and the next share one input structure: one trace, not two (issue #23); and the
    state is the eager step's, slot for slot."""
    if bk.name != "jax":
        pytest.skip("the compiled step is JAX's")
    step_module.STEPS.clear()  # nothing compiled yet in this process
    model, opt = training._model(bk), make()
    before = step_module.TRACES["jax"]
    model.fit(training.X, training.Y, epochs=1, batch_size=8, optimizer=opt, seed=0,
              verbose=0)  # 40 rows: five batches of one shape
    assert step_module.TRACES["jax"] == before + 1
    compilers.set_step_compiler("jax", "eager")
    eager_model, eager_opt = training._model(bk), make()
    eager_model.fit(training.X, training.Y, epochs=1, batch_size=8, optimizer=eager_opt,
                    seed=0, verbose=0)
    assert {k: list(v) for k, v in opt.state.items()} == {
        k: list(v) for k, v in eager_opt.state.items()}
    for key, slots in eager_opt.state.items():
        for name, value in slots.items():
            np.testing.assert_allclose(anyfc.to_numpy(opt.state[key][name]),
                                       anyfc.to_numpy(value), rtol=1e-9, atol=1e-12)
