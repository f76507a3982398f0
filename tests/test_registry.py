"""One identity for everything that is rebuilt (``anyfc.registry``): a user's subclass of a
built-in is never written, exported or cached as the built-in whose ``name`` it inherits;
registered, it survives ``save``/``load`` exactly; checking a file's config never builds
what the file declares; old (format-2) files still load."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import activations, checkpoint, losses, optimizers, registry, schedules
from anyfc.training import step

DATA = Path(__file__).parent / "data"
RNG = np.random.default_rng(7)
X = RNG.standard_normal((24, 4))
Y = RNG.integers(0, 2, 24)
T = RNG.standard_normal((24, 2))


@pytest.fixture
def register():
    """``anyfc.register`` for one test: the registry is process-wide, so what a test
    registers is forgotten after it (the tables are restored in place)."""
    tables = {name: dict(kind.classes) for name, kind in registry._KINDS.items()}
    names, replaced = dict(registry._NAMES), dict(registry._REPLACED)
    yield anyfc.register
    for name, kind in registry._KINDS.items():
        kind.classes.clear()
        kind.classes.update(tables[name])
    registry._NAMES.clear()
    registry._NAMES.update(names)
    registry._REPLACED.clear()
    registry._REPLACED.update(replaced)


# ---------------------------------------------------------------- a user's classes


class Shifted(activations.ReLU):
    """``f(u) = max(u, 0) + shift``: a subclass of ReLU, so it inherits ``name = "relu"``."""

    def __init__(self, shift: float = 0.5) -> None:
        self.shift = float(shift)

    def forward(self, xp, u):
        return xp.maximum(u, 0.0) + self.shift

    def backward(self, xp, y, grad_y, u=None):
        return grad_y * xp.astype(y > self.shift, grad_y.dtype)


class Plain(activations.ReLU):
    """``f(u) = 2·max(u, 0)``, without settings: its config() is exactly ReLU's."""

    def forward(self, xp, u):
        return 2.0 * xp.maximum(u, 0.0)

    def backward(self, xp, y, grad_y, u=None):
        return grad_y * 2.0 * xp.astype(y > 0, grad_y.dtype)


class ShiftedWithForm(Shifted):
    def onnx_nodes(self, builder):
        shift = builder.add_initializer("shift", np.asarray(self.shift))
        builder.current = builder.add_node(
            "Add", [builder.add_node("Relu", [builder.current]), shift])


class ShiftedTwice(ShiftedWithForm):
    """Computes something else, inherits ShiftedWithForm's onnx_nodes."""

    def forward(self, xp, u):
        return xp.maximum(u, 0.0) + 2.0 * self.shift


class ScaledMSE(losses.MeanSquaredError):
    """``scale ×`` the mean squared error (and its gradient): inherits ``name``."""

    def __init__(self, scale: float = 3.0) -> None:
        self.scale = float(scale)

    def value(self, y, t, w=None):
        return self.scale * super().value(y, t, w)

    def forward(self, y, t, w=None):
        return self.scale * super().forward(y, t, w)

    def backward(self):
        return self.scale * super().backward()


class Nesterov(optimizers.SGD):
    """SGD with Nesterov momentum by default."""

    def __init__(self, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.0, *,
                 clipnorm=None, clipvalue=None):
        super().__init__(lr, momentum, nesterov, weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue)


class Halving(schedules.Schedule):
    """``lr / 2^count``."""

    name = "halving"
    arguments = ("lr",)
    per = "epoch"

    def __init__(self, lr: float) -> None:
        self.lr = float(lr)

    def rate(self, count):
        return self.lr / 2**count


class Scale(anyfc.Layer):
    """``y = x ⊙ s``, ``s`` learned, one per feature; its shapes() reads only ``n``."""

    param_names = ("s",)
    cache_names = ("x",)
    built = 0  # how many times __init__ ran

    def __init__(self, n, *, backend=None, device=None, dtype="float32"):
        type(self).built += 1
        self.n = self.n_in = self.n_out = int(n)
        xp, dev, dt = self._place(backend, device, dtype)
        self.s = xp.ones((self.n,), dtype=dt, device=dev)
        self.grad_s = self.x = None

    def shapes(self):
        return {"s": (self.n,)}

    def config(self):
        return {"n": self.n}

    def forward(self, x, training=True):
        self._check_input(x, "forward")
        if training:
            self.x = x
        return x * self.s

    def backward(self, grad_y, need_grad_x=True):
        self._check_backward(grad_y, self.x)
        self.grad_s = self.xp.sum(grad_y * self.x, axis=0)
        return grad_y * self.s


class Derived(Scale):
    """Like Scale, but its shapes() reads the array __init__ made: no bare instance can
    answer it, and it has no array_shapes of its own."""

    built = 0

    def shapes(self):
        return {"s": tuple(self.s.shape)}


def _model(bk, activation: Any = "relu", loss: Any = "mse", *layers) -> anyfc.Sequential:
    where = {"backend": bk.name, "device": bk.device_name, "dtype": "float64"}
    return anyfc.Sequential([anyfc.Dense(4, 6, activation, seed=0, **where), *layers,
                             anyfc.Dense(6, 2, "identity", seed=1, **where)], loss)


def _fit(model, optimizer=None, epochs=1):
    """``model`` trained on (X, T) or (X, Y), with ``optimizer`` (default: on with the one
    it has, or SGD with momentum)."""
    target = T if not model.loss.classification else Y
    if optimizer is None and model.optimizer is None:
        optimizer = optimizers.SGD(0.05, momentum=0.9)
    model.fit(X, target, epochs=epochs, batch_size=8, shuffle=False, verbose=0,
              optimizer=optimizer)
    return model


def _predict(model):
    return anyfc.to_numpy(model.predict(X))


def _meta(path) -> dict[str, Any]:
    with np.load(path) as archive:
        return json.loads(archive["__anyfc__"].tobytes())


def _rewrite(path, out, change) -> Path:
    """``path``'s checkpoint with its metadata changed by ``change(meta)``, at ``out``."""
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays.pop("__anyfc__").tobytes())
    change(meta)
    raw = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(out, __anyfc__=raw, **arrays)
    return Path(out)


# ---------------------------------------------------------------- the registry itself


def test_every_built_in_is_registered_under_its_class_name():
    for kind, classes in [
            ("activation", set(activations.ACTIVATIONS.values())),
            ("loss", set(losses.LOSSES.values())),
            ("optimizer", set(optimizers.OPTIMIZERS.values())),
            ("schedule", set(schedules.SCHEDULES.values()))]:
        for cls in classes:
            assert registry.classes(kind)[cls.__name__] is cls
            assert registry.name_of(cls) == cls.__name__
    for name, cls in anyfc.layers.LAYERS.items():
        assert cls.__name__ == name and registry.classes("layer")[name] is cls
    assert anyfc.register is registry.register


def test_register_bare_or_named_infers_the_kind_and_keeps_one_class_per_name(register):
    assert register(Shifted) is Shifted
    assert registry.classes("activation")["Shifted"] is Shifted
    named = register(name="scaled_mse")(ScaledMSE)
    assert named is ScaledMSE and registry.classes("loss")["scaled_mse"] is ScaledMSE
    register(Scale)
    assert anyfc.layers.LAYERS["Scale"] is Scale  # the read-only view follows
    with pytest.raises(TypeError):
        anyfc.layers.LAYERS["Other"] = Scale  # type: ignore[index]
    assert register(Shifted) is Shifted  # again: nothing changes

    class Other(activations.ReLU):
        pass

    with pytest.raises(ValueError, match=r"an activation type named 'Shifted' is registered "
                       r"already \((tests\.)?test_registry\.Shifted\)"):
        register(name="Shifted")(Other)
    with pytest.raises(ValueError, match=r"is registered already, as 'Shifted': one class has "
                       "one name"):
        register(name="shifted2")(Shifted)
    with pytest.raises(TypeError, match=r"register needs a subclass of one of anyfc\.Layer, "
                       r"activations\.Activation, losses\.Loss, optimizers\.Optimizer, "
                       r"schedules\.Schedule"):
        register(dict)
    with pytest.raises(TypeError, match="register needs a class"):
        register(Shifted())
    with pytest.raises(TypeError, match=r"register needs a subclass of anyfc\.Layer"):
        anyfc.layers.register(Shifted)
    assert anyfc.layers.register(Derived) is Derived
    assert registry.classes("layer")["Derived"] is Derived


def _define(shift):
    class Again(activations.ReLU):  # the same module and qualified name each time
        def forward(self, xp, u):
            return xp.maximum(u, 0.0) + shift

    return Again


def test_a_class_defined_again_replaces_itself_and_its_old_objects_lose_the_name(register):
    first, second = _define(1.0), _define(2.0)
    register(first)
    old = first()
    assert registry.spec(old) == {"type": "Again", "config": {}}
    register(second)
    assert registry.classes("activation")["Again"] is second
    assert type(registry.build("activation", {"type": "Again"})) is second
    with pytest.raises(registry.UnregisteredError, match=r"older definition of the activation "
                       r"class registered as 'Again'"):
        registry.spec(old)


def test_spec_names_the_exact_class_and_build_gives_it_back(register):
    register(Shifted)
    for obj, expected in [
            (activations.LeakyReLU(0.2), {"type": "LeakyReLU", "config": {"alpha": 0.2}}),
            (Shifted(0.25), {"type": "Shifted", "config": {"shift": 0.25}}),
            (losses.SoftmaxCrossEntropy(), {"type": "SoftmaxCrossEntropy", "config": {}}),
            (schedules.StepDecay(0.1, 3), {"type": "StepDecay", "config": {
                "lr": 0.1, "step_size": 3, "gamma": 0.1, "per": "epoch"}})]:
        spec = registry.spec(obj)
        assert spec == expected
        again = registry.build(registry._kinds_of_class(type(obj))[0].name,
                               json.loads(json.dumps(spec)))
        assert type(again) is type(obj) and registry.spec(again) == spec
    opt = optimizers.Adam(schedules.CosineDecay(0.1, 10))
    spec = registry.spec(opt)
    assert spec["type"] == "Adam" and spec["config"]["lr"] == {
        "name": "cosine_decay", "lr": 0.1, "decay_steps": 10, "warmup_steps": 0,
        "warmup_start": 0.0, "final_lr": 0.0, "per": "step"}
    assert registry.build("optimizer", spec).config() == opt.config()
    # a layer: its activation inside its config, anyfc's by its short config, yours by spec
    dense = anyfc.Dense(3, 2, Shifted(0.25), backend="numpy")
    assert registry.spec(dense)["config"]["activation"] == {"type": "Shifted",
                                                            "config": {"shift": 0.25}}
    assert registry.spec(anyfc.Dense(3, 2, "elu", backend="numpy"))["config"][
        "activation"] == {"name": "elu", "alpha": 1.0}
    layer = registry.build("layer", registry.spec(dense), backend="numpy", dtype="float64")
    assert type(layer.activation) is Shifted and layer.activation.shift == 0.25
    assert layer.dtype == np.float64


def test_an_unregistered_subclass_has_no_spec_and_the_error_says_how_to_register():
    for obj, parent in [(Shifted(), "ReLU"), (ScaledMSE(), "MeanSquaredError"),
                        (Nesterov(), "SGD"), (Halving(0.1), None)]:
        with pytest.raises(registry.UnregisteredError) as info:
            registry.spec(obj)
        message = str(info.value)
        assert isinstance(info.value, TypeError) and info.value.cls is type(obj)
        assert f"test_registry.{type(obj).__name__} is not registered" in message
        assert "decorate the class with @anyfc.register" in message
        assert f"config() return the settings with which {type(obj).__name__}(**config) " \
               "rebuilds it" in message
        if parent:
            assert f"it would come back as a {parent}" in message
    with pytest.raises(registry.UnregisteredError, match=r"Shifted is not registered"):
        registry.spec(anyfc.Dense(3, 2, Shifted(), backend="numpy"))  # nested
    with pytest.raises(TypeError, match="spec needs a layer, activation"):
        registry.spec(3.0)


@pytest.mark.parametrize("kind, spec, pattern", [
    ("widget", {"type": "ReLU"}, r"unknown kind 'widget'; the kinds are layer, activation"),
    ("activation", {"type": "Swishy"}, r"unknown activation type 'Swishy'; the registered "
     r"activation types are Activation, Identity, ReLU.*register your own class with "
     r"@anyfc\.register"),
    ("layer", {"type": "ReLU", "config": {}, "extra": 1}, r"a layer spec is an object"),
    ("layer", ["Dense"], r"a layer spec is an object"),
    ("activation", {"type": 5}, r"unknown activation type 5"),
    ("activation", {"type": "LeakyReLU", "config": [0.1]}, r"must be an object of settings"),
    ("activation", {"type": "LeakyReLU", "config": {"alpha": "x"}},
     r"activation 'LeakyReLU' cannot be built from this config: ValueError: leaky_relu"),
    ("activation", {"type": "ReLU", "config": {"name": "relu"}},
     r"cannot be built from this config: TypeError"),
    ("optimizer", {"type": "Adam", "config": {"nope": 1}}, r"TypeError"),
    ("optimizer", {"type": "SGD", "config": {"lr": -1}}, r"lr must be"),
    ("loss", {"type": "MeanSquaredError", "config": {"scale": 2}}, r"TypeError"),
    ("schedule", {"type": "StepDecay", "config": {"lr": 0.1}}, r"step_size"),
    ("layer", {"type": "Dense", "config": {"n_in": 3, "n_out": 2, "colour": 1}},
     r"TypeError"),
    ("layer", {"type": "Dense", "config": {"n_in": -3, "n_out": 2}}, r"positive integer"),
])
def test_build_and_check_turn_every_bad_spec_into_a_value_error(kind, spec, pattern):
    for call in (registry.build, registry.check):
        with pytest.raises(ValueError, match=pattern):
            call(kind, spec)


def test_check_gives_a_layers_shapes_without_building_it(register, monkeypatch):
    register(Scale)

    def refuse(*args, **kwargs):
        raise AssertionError("built")

    for cls in (anyfc.Dense, anyfc.BatchNorm, anyfc.LayerNorm, anyfc.Dropout,
                anyfc.Activation, anyfc.ReLU, anyfc.LeakyReLU, Scale):
        monkeypatch.setattr(cls, "__init__", refuse)
    huge = 2**40
    assert registry.check("layer", {"type": "Dense", "config": {
        "n_in": huge, "n_out": 3, "activation": {"name": "leaky_relu", "alpha": 0.2}}}) == {
        "w": (huge, 3), "b": (3,)}
    assert registry.check("layer", {"type": "BatchNorm", "config": {
        "n": huge, "momentum": 0.2, "eps": 1e-3}}) == {
        name: (huge,) for name in ("gamma", "beta", "running_mean", "running_var")}
    assert registry.check("layer", {"type": "LayerNorm", "config": {"n": huge}}) == {
        "gamma": (huge,), "beta": (huge,)}
    assert registry.check("layer", {"type": "Dropout", "config": {"rate": 0.5, "seed": 3}}) \
        == {}
    assert registry.check("layer", {"type": "Activation", "config": {
        "activation": {"type": "ELU", "config": {"alpha": 2.0}}}}) == {}
    assert registry.check("layer", {"type": "LeakyReLU", "config": {"alpha": 0.3}}) == {}
    assert registry.check("layer", {"type": "Scale", "config": {"n": huge}}) == {"s": (huge,)}
    for spec, pattern in [
            ({"type": "BatchNorm", "config": {"n": 3, "momentum": 2.0}}, "momentum"),
            ({"type": "BatchNorm", "config": {"n": 3, "eps": 0}}, "eps"),
            ({"type": "LayerNorm", "config": {"n": 3, "momentum": 0.1}}, "no setting"),
            ({"type": "Dropout", "config": {"rate": 1.0}}, "rate"),
            ({"type": "Dropout", "config": {"rate": 0.1, "seed": -1}}, "seed"),
            ({"type": "Dropout", "config": {}}, "rate"),
            ({"type": "ReLU", "config": {"alpha": 0.1}}, "alpha"),
            ({"type": "ReLU", "config": {"type": "ELU"}}, "no setting 'type'"),
            ({"type": "Activation", "config": {"activation": "swishy"}}, "swishy"),
            ({"type": "Scale", "config": {"n": -2}}, "non-negative integers"),
            ({"type": "Scale", "config": {"n": 2.5}}, "non-negative integers"),
            ({"type": "Scale", "config": {"m": 2}}, "cannot be worked out"),
            ({"type": "Scale", "config": {"n": 2, "_where": 1}}, "no setting '_where'")]:
        with pytest.raises(ValueError, match=pattern):
            registry.check("layer", spec)


def test_key_is_the_exact_class_and_the_settings():
    key = registry.key
    assert key(activations.ReLU()) == key(activations.ReLU())
    assert key(activations.ReLU()) != key(Plain())  # same name, same config: other class
    assert key(activations.LeakyReLU(0.1)) != key(activations.LeakyReLU(0.2))
    assert key(Shifted(0.5)) == key(Shifted(0.5)) != key(Shifted(1.0))
    dense = {name: anyfc.Dense(3, 2, act, seed=0, backend="numpy")
             for name, act in (("relu", "relu"), ("plain", Plain()), ("plain2", Plain()))}
    assert key(dense["relu"]) != key(dense["plain"]) == key(dense["plain2"])
    assert key(optimizers.SGD(0.1), ignore=("lr",)) == key(optimizers.SGD(0.2), ignore=("lr",))
    assert key(optimizers.SGD(0.1)) != key(optimizers.SGD(0.2))
    assert key(optimizers.SGD(0.1)) != key(Nesterov(0.1, momentum=0.0, nesterov=False))
    assert key(losses.MeanSquaredError()) != key(ScaledMSE(1.0))
    hash(key(anyfc.Dropout(0.5, seed=1)))


def test_a_config_cannot_choose_where_a_layer_lives():
    spec = {"type": "Dense", "config": {"n_in": 3, "n_out": 2, "backend": "torch"}}
    with pytest.raises(ValueError, match="multiple values for keyword argument 'backend'"):
        registry.build("layer", spec, backend="numpy")


def test_a_subclass_never_shares_the_built_ins_compiled_step():
    """The compiled-step cache is keyed by the exact class of each activation: a subclass
    with ReLU's name and config would otherwise reuse ReLU's traced step."""
    opt = optimizers.SGD(0.1)

    def model(act):
        return anyfc.Sequential([anyfc.Dense(4, 3, act, seed=0, backend="numpy"),
                                 anyfc.Dense(3, 2, "identity", seed=1, backend="numpy")])

    assert step.signature(model("relu"), opt) == step.signature(model("relu"), opt)
    assert step.signature(model("relu"), opt) != step.signature(model(Plain()), opt)
    relu_layer = anyfc.Sequential([anyfc.Dense(4, 3, "identity", backend="numpy"),
                                   anyfc.Activation(Plain(), backend="numpy")])
    built_in = anyfc.Sequential([anyfc.Dense(4, 3, "identity", backend="numpy"),
                                 anyfc.Activation("relu", backend="numpy")])
    assert step.signature(relu_layer, opt) != step.signature(built_in, opt)


def test_a_subclass_trains_as_itself_after_the_built_in_was_compiled(cpu_bk):
    """On JAX the first model compiles its step; the second, alike but for its activation's
    class, must trace its own (the answer is checked against NumPy's eager step)."""
    def trained(bk, act):
        return _predict(_fit(_model(bk, act), optimizers.SGD(0.1)))

    trained(cpu_bk, "relu")
    np.testing.assert_allclose(trained(cpu_bk, Plain()), trained(_numpy(), Plain()),
                               rtol=1e-10, atol=1e-12)


def test_the_ways_to_name_an_object_to_get(register):
    register(Shifted)
    register(ScaledMSE)
    register(Nesterov)
    assert type(activations.get("relu")) is activations.ReLU
    assert type(activations.get("Shifted")) is Shifted
    assert type(activations.get({"type": "Shifted", "config": {"shift": 2}})) is Shifted
    assert activations.get({"name": "leaky_relu", "alpha": 0.3}).alpha == 0.3  # format 2
    assert type(losses.get("mse")) is losses.MeanSquaredError
    assert type(losses.get("ScaledMSE")) is ScaledMSE
    assert losses.get({"type": "ScaledMSE", "config": {"scale": 2}}).scale == 2.0
    assert type(optimizers.get("Nesterov")) is Nesterov
    assert optimizers.get({"type": "SGD", "config": {"lr": 0.3}}).lr == 0.3
    assert type(schedules.get({"type": "Constant", "config": {"lr": 0.3}})) is \
        schedules.Constant
    with pytest.raises(ValueError, match="unknown activation 'shifted'"):
        activations.get("shifted")  # registered names are exact


# ---------------------------------------------------------------- checkpoints


def test_an_unregistered_activation_or_loss_subclass_is_refused_by_save(cpu_bk, tmp_path):
    path = tmp_path / "m.npz"
    for model in (_model(cpu_bk, Shifted()), _model(cpu_bk, "relu", ScaledMSE()),
                  _model(cpu_bk, "identity", "mse",
                         anyfc.Activation(Shifted(), backend=cpu_bk.name,
                                          device=cpu_bk.device_name, dtype="float64"))):
        with pytest.raises(registry.UnregisteredError, match=r"test_registry\.(Shifted|"
                           r"ScaledMSE) is not registered, so no checkpoint can name it; "
                           r"written under its parent's name it would come back as a "
                           r"(ReLU|MeanSquaredError).*@anyfc\.register"):
            model.save(path)
        assert not path.exists()


def test_a_registered_activation_and_loss_subclass_survive_save_and_load(
        cpu_bk, tmp_path, register):
    register(Shifted)
    register(ScaledMSE)
    where = {"backend": cpu_bk.name, "device": cpu_bk.device_name, "dtype": "float64"}
    model = _fit(_model(cpu_bk, Shifted(0.25), ScaledMSE(2.0),
                        anyfc.Activation(Shifted(-0.5), **where)))
    path = tmp_path / "m.npz"
    model.save(path)
    meta = _meta(path)
    assert meta["format_version"] == 3
    assert meta["loss"] == {"type": "ScaledMSE", "config": {"scale": 2.0}}
    assert meta["layers"][0]["config"]["activation"] == {"type": "Shifted",
                                                         "config": {"shift": 0.25}}
    assert meta["layers"][1] == {"type": "Activation", "config": {
        "activation": {"type": "Shifted", "config": {"shift": -0.5}}}}
    loaded = anyfc.load(path, backend=cpu_bk.name, device=cpu_bk.device_name)
    assert type(loaded.layers[0].activation) is Shifted
    assert type(loaded.layers[1].activation) is Shifted
    assert type(loaded.loss) is ScaledMSE and loaded.loss.scale == 2.0
    np.testing.assert_allclose(_predict(loaded), _predict(model), rtol=1e-12)
    # the loss's identity shows in training: both go on alike (a plain MSE would not)
    _fit(model)
    _fit(loaded)
    np.testing.assert_allclose(_predict(loaded), _predict(model), rtol=1e-10)


def test_the_built_in_would_have_come_back(cpu_bk, tmp_path):
    """What format 2 did with a subclass (written under its inherited name): loaded as the
    built-in, it predicts something else. Format 3 refuses to write it (above)."""
    model = _fit(_model(cpu_bk, Shifted(1.0)))
    arch = model.architecture  # format 2 wrote the activation's inherited name
    with pytest.raises(registry.UnregisteredError):
        arch()
    dense = model.layers[0]
    as_format_2 = {"n_in": 4, "n_out": 6, "activation": {"name": dense.activation.name}}
    rebuilt = anyfc.Dense(**as_format_2, backend=cpu_bk.name, device=cpu_bk.device_name,
                          dtype="float64")
    assert type(rebuilt.activation) is activations.ReLU  # not Shifted: the old bug


def test_an_unregistered_optimizer_or_schedule_is_refused_by_save(cpu_bk, tmp_path):
    path = tmp_path / "m.npz"
    for opt, pattern in [
            (Nesterov(), r"optimizer is a Nesterov, which load cannot rebuild: "
                         r".*Nesterov is not registered.*@anyfc\.register"),
            (optimizers.Adam(Halving(0.01)), r"optimizer is a Adam, whose learning-rate "
             r"schedule is a Halving, which load cannot rebuild: .*Halving is not registered"
             r".*@anyfc\.register")]:
        model = _fit(_model(cpu_bk), opt)
        with pytest.raises(checkpoint.CheckpointError, match=pattern):
            model.save(path)
        assert not path.exists()


def test_a_registered_optimizer_and_schedule_survive_save_and_load(cpu_bk, tmp_path, register):
    register(Nesterov)
    register(Halving)
    path = tmp_path / "m.npz"
    for opt in (Nesterov(0.02), optimizers.SGD(Halving(0.05), momentum=0.5),
                Nesterov(schedules.StepDecay(0.05, 1))):
        model = _fit(_model(cpu_bk), opt, epochs=2)
        model.save(path)
        loaded = anyfc.load(path, backend=cpu_bk.name, device=cpu_bk.device_name)
        assert type(loaded.optimizer) is type(opt)
        assert type(loaded.optimizer.lr) is type(opt.lr)
        assert loaded.optimizer.config() == opt.config()
        assert loaded.optimizer.learning_rate() == opt.learning_rate()
        _fit(model)  # both continue alike: the optimizer and its schedule came back whole
        _fit(loaded)
        np.testing.assert_allclose(_predict(loaded), _predict(model), rtol=1e-10)
    assert _meta(path)["optimizer"]["config"]["lr"]["name"] == "step_decay"
    model = _fit(_model(cpu_bk), optimizers.SGD(Halving(0.05)))
    model.save(path)
    assert _meta(path)["optimizer"]["type"] == "SGD"
    assert _meta(path)["optimizer"]["config"]["lr"] == {"type": "Halving",
                                                        "config": {"lr": 0.05}}


def test_a_registered_layer_survives_save_and_load(cpu_bk, tmp_path, register):
    register(Scale)
    where = {"backend": cpu_bk.name, "device": cpu_bk.device_name, "dtype": "float64"}
    model = _fit(_model(cpu_bk, "tanh", "mse", Scale(6, **where)))
    model.save(tmp_path / "m.npz")
    loaded = anyfc.load(tmp_path / "m.npz", backend=cpu_bk.name, device=cpu_bk.device_name)
    assert type(loaded.layers[1]) is Scale
    np.testing.assert_allclose(_predict(loaded), _predict(model), rtol=1e-12)


def test_files_written_in_format_2_still_load(cpu_bk, tmp_path):
    """tests/data/format2.npz was written by the format-2 writer (make_format2.py)."""
    path = DATA / "format2.npz"
    assert _meta(path)["format_version"] == 2
    with np.load(DATA / "format2_expected.npz") as expected:
        X2, predictions = expected["X"], expected["predictions"]
    loaded = anyfc.load(path, backend=cpu_bk.name, device=cpu_bk.device_name)
    assert [type(layer) for layer in loaded.layers] == [
        anyfc.Dense, anyfc.BatchNorm, anyfc.ReLU, anyfc.Dropout, anyfc.Dense, anyfc.LayerNorm,
        anyfc.Activation, anyfc.Dense]
    assert type(loaded.layers[0].activation) is activations.LeakyReLU
    assert loaded.layers[0].activation.alpha == 0.2
    assert type(loaded.layers[6].activation) is activations.GELU
    assert type(loaded.loss) is losses.SoftmaxCrossEntropy
    opt = loaded.optimizer
    assert type(opt) is optimizers.AdamW and (opt.t, opt.epoch) == (6, 2)
    assert opt.lr == schedules.CosineDecay(0.02, 10, warmup_steps=2)
    np.testing.assert_allclose(anyfc.to_numpy(loaded.predict(X2)), predictions, rtol=1e-12)
    # saved again, in format 3, it loads back the same
    loaded.save(tmp_path / "again.npz")
    assert _meta(tmp_path / "again.npz")["format_version"] == 3
    again = anyfc.load(tmp_path / "again.npz", backend=cpu_bk.name, device=cpu_bk.device_name)
    assert again.architecture() == loaded.architecture()
    np.testing.assert_allclose(anyfc.to_numpy(again.predict(X2)), predictions, rtol=1e-12)


def test_format_3_metadata_is_checked_entry_by_entry(tmp_path, register):
    register(Shifted)
    model = _fit(_model(_numpy(), Shifted(0.1)), optimizers.Adam(0.01))
    model.save(tmp_path / "m.npz")
    cases = [
        (lambda m: m.__setitem__("loss", "mse"), r"__anyfc__\.loss is 'mse'; a loss spec is"),
        (lambda m: m.__setitem__("loss", {"type": "Hinge", "config": {}}),
         r"__anyfc__\.loss .*unknown loss type 'Hinge'"),
        (lambda m: m["loss"].__setitem__("config", {"scale": 2}),
         r"__anyfc__\.loss .*cannot be built"),
        (lambda m: m["layers"][0].__setitem__("type", "Conv2d"),
         r"__anyfc__\.layers\[0\]\.type is 'Conv2d'; expected a layer type"),
        (lambda m: m["layers"][0]["config"].__setitem__("activation", {"type": "Nope"}),
         r"__anyfc__\.layers\[0\]\.config does not build a Dense: unknown activation type "
         r"'Nope'"),
        (lambda m: m["layers"][0]["config"]["activation"]["config"].__setitem__("shift", "x"),
         r"__anyfc__\.layers\[0\]\.config does not build a Dense: activation 'Shifted' "
         r"cannot be built"),
        (lambda m: m["optimizer"].__setitem__("type", "Lion"),
         r"__anyfc__\.optimizer\.type is 'Lion'; expected a registered optimizer type"),
        (lambda m: m["optimizer"].__setitem__("type", "adam"),
         r"__anyfc__\.optimizer\.type is 'adam'"),
        (lambda m: m["optimizer"]["config"].__setitem__("lr", {"type": "Nope", "config": {}}),
         r"__anyfc__\.optimizer\.config\.lr is not a learning-rate schedule"),
        (lambda m: m["optimizer"]["config"].__setitem__("amsgrad", True),
         r"__anyfc__\.optimizer\.config\.amsgrad is not a parameter of Adam"),
        (lambda m: m["optimizer"].__setitem__("t", -1), r"__anyfc__\.optimizer\.t is -1"),
    ]
    for change, pattern in cases:
        path = _rewrite(tmp_path / "m.npz", tmp_path / "bad.npz", change)
        with pytest.raises(checkpoint.CheckpointError, match=pattern):
            anyfc.load(path)


def _numpy():
    class _B:
        name, device_name = "numpy", None

    return _B


# ---------------------------------------------------------------- untrusted sizes


def _enormous_checkpoint(tmp_path, register, n: int, kind: str = "Scale") -> Path:
    register(Scale)
    model = anyfc.Sequential([Scale(4, backend="numpy"),
                              anyfc.Dense(4, 2, "relu", backend="numpy")])
    model.save(tmp_path / "small.npz")

    def enlarge(meta):
        meta["layers"][0] = {"type": kind, "config": {"n": n}}
    return _rewrite(tmp_path / "small.npz", tmp_path / "enormous.npz", enlarge)


def test_a_small_file_declaring_an_enormous_user_layer_allocates_nothing(tmp_path, register):
    """2**30 features in a 2-KB file: refused by comparing the shape the config implies with
    the member's header, before the layer is built or its data read (the old default
    built the layer to ask its shapes: 4 GiB)."""
    path = _enormous_checkpoint(tmp_path, register, 2**30)
    assert path.stat().st_size < 4096
    Scale.built = 0
    tracemalloc.start()
    try:
        with pytest.raises(checkpoint.CheckpointError) as info:
            anyfc.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith(f"{os.fspath(path)!r} is not a valid anyfc checkpoint: "
                                      "layers.0.s has shape (4,), but the architecture says "
                                      "(1073741824,)")
    assert Scale.built == 0
    assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MiB"
    # past the parameter bound, the metadata alone is refused
    path = _enormous_checkpoint(tmp_path, register, 2**40)
    Scale.built = 0
    with pytest.raises(checkpoint.CheckpointError, match=r"__anyfc__\.layers hold more than "
                       r"17179869184 parameters"):
        anyfc.load(path)
    assert Scale.built == 0


def test_a_layer_whose_shapes_need_a_build_trains_but_no_file_builds_it(tmp_path, register):
    register(Derived)
    model = anyfc.Sequential([Derived(4, backend="numpy"),
                              anyfc.Dense(4, 2, "relu", backend="numpy")])
    model.fit(X, Y, epochs=1, verbose=0)  # a live layer's settings may be checked by building
    with pytest.raises(checkpoint.CheckpointError, match=r"layers\[0\]\.config does not build "
                       r"a Derived: the array shapes of a Derived cannot be worked out from its "
                       r"config without building it .*classmethod array_shapes\(config\)"):
        model.save(tmp_path / "derived.npz")
    assert not (tmp_path / "derived.npz").exists()
    path = _enormous_checkpoint(tmp_path, register, 2**30, kind="Derived")
    Derived.built = 0
    with pytest.raises(checkpoint.CheckpointError, match=r"layers\[0\]\.config does not build "
                       "a Derived: the array shapes"):
        anyfc.load(path)
    assert Derived.built == 0


# ---------------------------------------------------------------- ONNX


def _onnx_check(model, path):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path))
    got, = session.run(None, {"input": X.astype(np.float32)})
    np.testing.assert_allclose(got, _predict(model), rtol=1e-5, atol=1e-6)


def _f32(activation, loss="mse"):
    return anyfc.Sequential([anyfc.Dense(4, 6, activation, seed=0, backend="numpy"),
                             anyfc.Dense(6, 2, "identity", seed=1, backend="numpy")], loss)


def test_onnx_exports_by_class_identity_never_by_name(tmp_path, register):
    onnx = pytest.importorskip("onnx")
    import anyfc.onnx

    path = tmp_path / "m.onnx"
    with pytest.raises(TypeError, match=r"has activation Shifted, which has no ONNX form; .*"
                       r"a subclass of ReLU may compute something else, so it is not exported "
                       r"as one.*Shifted is not registered either: decorate it with "
                       r"@anyfc\.register"):
        anyfc.onnx.export(_f32(Shifted()), path)
    with pytest.raises(TypeError, match=r"has activation ShiftedTwice, which has no ONNX form"
                       r".*ShiftedTwice inherits onnx_nodes from ShiftedWithForm but is not "
                       r"registered, so it is not exported as a ShiftedWithForm.*decorate "
                       r"ShiftedTwice with @anyfc\.register"):
        anyfc.onnx.export(_f32(ShiftedTwice()), path)
    assert not path.exists()

    # its own onnx_nodes, unregistered: exported, but no architecture can name it
    model = _fit(_f32(ShiftedWithForm(0.3)))
    anyfc.onnx.export(model, path)
    _onnx_check(model, path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "anyfc.architecture" not in props and props["anyfc.loss"] == "mean_squared_error"

    register(ShiftedWithForm)  # registered: exported with the architecture that rebuilds it
    anyfc.onnx.export(model, path)
    _onnx_check(model, path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    arch = json.loads(props["anyfc.architecture"])
    assert arch == model.architecture()
    assert arch["layers"][0]["config"]["activation"] == {"type": "ShiftedWithForm",
                                                         "config": {"shift": 0.3}}
    arrays = list(model.state(rng=False).arrays().values())
    rebuilt = anyfc.Sequential.from_architecture(arch, arrays)
    assert type(rebuilt.layers[0].activation) is ShiftedWithForm

    register(ShiftedTwice)  # registered, it is its author's word that the inherited form fits
    twice = _f32(ShiftedTwice(0.0))
    anyfc.onnx.export(twice, path)
    _onnx_check(twice, path)
