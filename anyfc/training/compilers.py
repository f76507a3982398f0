"""Compiled training steps: one interface for every way a backend can run a whole
training step as one compiled program, the compilers anyfc has, and which one each
backend uses.

The eager step (``anyfc.training.step.eager_step``) is the fallback and the reference: a
compiled step is the same Python code, traced into a pure function of (parameters,
buffers, random state, optimizer state, step count, learning rate, x, t, w), and must
give the eager step's parameters on the same inputs.

- ``StepCompiler``: the interface; ``register_step_compiler`` adds one.
- ``JaxJit`` (``jax.jit``, the default for JAX) and ``TorchCompile`` (``torch.compile``,
  off by default); the other backends run the eager step.
- ``set_step_compiler``/``get_step_compiler`` (also ``anyfc.set_step_compiler``): the
  choice per backend, in code or from ``$ANYFC_STEP_COMPILER`` (e.g.
  ``torch=compile,jax=eager``); ``step_compiler``/``compile_step``: what the step uses.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from .. import _backend

Device = Any  # a device object of any Array API library, or a string naming one


class StepCompiler:
    """How one backend compiles a training step.

    Subclass it and ``register_step_compiler`` to add one (CuPy fused kernels, CUDA
    graphs, ...).

    ``compile(fn, device)`` returns a callable with ``fn``'s arguments and results (nested
    lists, dicts and tuples of arrays, Python floats, ``None``). The caller guarantees
    that ``fn`` is pure apart from in-place updates of its input arrays, and that Python
    floats among its arguments are values to pass in (the step count, the learning rate),
    never constants to bake in.

    ``random``: how dropout's random numbers enter the step — ``"state"``: the
    generators' state (JAX keys) goes in and the next state comes out, the draws happen
    inside; ``"drawn"``: the step's uniform numbers are drawn eagerly from each layer's
    own generator, in the eager step's order, and go in as arrays (for compilers that
    cannot take a generator as an input: the masks are then the eager step's exactly).

    ``devices``: the device kinds it serves (``None``: all); on the others the step runs
    eagerly. A compiler that anyfc's tests do not run is never a default.

    Not written (the interface hosts them): CUDA-graph capture of a whole torch step, and
    CuPy fused kernels — both GPU-only, and there was no GPU to test them on.
    """

    name = "eager"
    random = "state"
    devices: tuple[str, ...] | None = None

    def compile(self, fn: Any, device: Device = None) -> Any:
        """Compile a training step.

        Parameters
        ----------
        fn : callable
            The step, a pure function (apart from in-place updates of its input arrays)
            of nested lists, dicts and tuples of arrays, Python floats and ``None``.
        device : device object, optional
            The device the step runs on.

        Returns
        -------
        callable
            A callable with ``fn``'s arguments and results.
        """
        raise NotImplementedError

    def serves(self, device: Device) -> bool:
        """Say whether the compiler serves a device (on the others the step runs eagerly).

        Parameters
        ----------
        device : device object or str
            The device.

        Returns
        -------
        bool
            Whether its kind is in ``devices`` (always, when ``devices`` is ``None``).
        """
        if self.devices is None:
            return True
        kind = getattr(device, "type", None) or getattr(device, "platform", None)
        kind = kind or str(device).partition(":")[0]
        return kind in self.devices

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


_cache: dict[str, Any] = {"folder": None, "env": None}


def set_compilation_cache(folder: str | os.PathLike[str] | None) -> None:
    """Keep JAX's compiled programs on disk, so later processes load them.

    JAX's persistent compilation cache, opt-in: anyfc's steps, ``predict`` and
    ``evaluate``, and JAX's own per-operation programs are kept in ``folder`` instead of
    compiled again in each process. Also ``$ANYFC_COMPILATION_CACHE=folder``, read when
    anyfc first compiles a JAX step. JAX writes there and trusts what it finds: use a
    folder only you write. (TorchInductor, behind ``set_step_compiler("torch",
    "compile")``, keeps its own cache on disk already.)

    Parameters
    ----------
    folder : str or os.PathLike or None
        An existing, writable folder (anyfc creates no folders); ``None`` turns the
        cache off again.

    Raises
    ------
    ValueError
        A folder that does not exist, is not a folder or is not writable (nothing
        changes).

    Examples
    --------
    >>> set_compilation_cache(None); compilation_cache() is None
    True
    """
    if folder is not None:
        path = os.path.realpath(os.fspath(folder))
        if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
            state = ("is not writable" if os.path.isdir(path) else "is not a folder"
                     if os.path.exists(path) else "does not exist")
            raise ValueError(f"the compilation cache folder {os.fspath(folder)!r} {state}; "
                             "create it first (os.makedirs(folder, exist_ok=True))")
        folder = path
    _cache["folder"] = folder
    _apply_cache()


def compilation_cache() -> str | None:
    """Return the folder of JAX's persistent compilation cache that anyfc set.

    Returns
    -------
    str or None
        The folder (``set_compilation_cache``), or ``None`` when the cache is off.
    """
    return _cache["folder"]


def _apply_cache() -> None:
    import sys

    jax = sys.modules.get("jax")
    if jax is None:  # applied when anyfc first compiles a JAX step
        return
    folder = _cache["folder"]
    if folder is None:
        if _cache.get("set"):
            jax.config.update("jax_compilation_cache_dir", None)
            _cache["set"] = False
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    # every program, however small and quick to compile: a fit compiles dozens of them
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _cache["set"] = True


def _env_cache() -> None:
    """``$ANYFC_COMPILATION_CACHE``, applied once per value."""
    text = os.environ.get("ANYFC_COMPILATION_CACHE", "")
    if text == _cache["env"]:
        return
    _cache["env"] = text
    if text and _cache["folder"] is None:
        set_compilation_cache(text)


class JaxJit(StepCompiler):
    """``jax.jit``: JAX's arrays are immutable, and XLA fuses the element-wise work into
    few kernels. The default for JAX.

    No argument is donated: XLA writes each step's new parameters and optimizer state
    into fresh buffers instead of reusing the old ones, so arrays a caller can still
    reach — earlier ``state_dict()`` values, arrays given to ``Dense.from_params``, a
    concurrent ``predict`` — are never deleted under it."""

    name = "jit"

    def compile(self, fn: Any, device: Device = None) -> Any:
        import jax

        _env_cache()
        _apply_cache()
        return jax.jit(fn)


class TorchCompile(StepCompiler):
    """``torch.compile`` of the whole step (TorchInductor), off by default: turn it on
    with ``set_step_compiler("torch", "compile")``.

    The step is traced like JAX traces it — the Python runs once per input structure
    and shapes, on fake tensors (``make_fx``), into one graph of torch operations — and
    that graph is compiled by ``torch.compile`` (``fullgraph``, static shapes), which
    fuses the element-wise work (bias, activation and its derivative, the optimizer
    update) into a few C++ (CPU) kernels. Python floats (the step count and the
    learning rate) go in as 0-d float64 tensors, so a schedule never compiles again; a new
    batch shape, input structure or dtype compiles a new graph (the first step, whose
    optimizer state is still empty, and the next, are two). Dropout's numbers are drawn
    eagerly from each layer's ``torch.Generator`` (``random = "drawn"``): a generator
    cannot be an input of the graph, and baked in it would be a copy frozen at trace time.

    Costs: compiling takes seconds to a minute on a CPU (C++ compilation; cached on disk
    by TorchInductor for later processes), and needs a C++ compiler. Tested on the CPU;
    on CUDA devices it would use Triton kernels — NOT RUN ON A GPU here."""

    name = "compile"
    random = "drawn"

    def compile(self, fn: Any, device: Device = None) -> Any:
        return _TorchCompiled(fn)


def _flatten(tree: Any, leaves: list[Any]) -> Any:
    """The structure of nested lists, tuples and dicts (a hashable key), appending the
    leaves to ``leaves`` (a few microseconds: this runs at every step)."""
    kind = type(tree)
    if kind is list or kind is tuple:
        return (kind, tuple(_flatten(v, leaves) for v in tree))
    if kind is dict:
        keys = tuple(tree)
        return (dict, keys, tuple(_flatten(tree[k], leaves) for k in keys))
    leaves.append(tree)
    return None


def _unflatten(structure: Any, leaves: Any) -> Any:
    """``_flatten``'s inverse, taking leaves from the iterator ``leaves``."""
    if structure is None:
        return next(leaves)
    if structure[0] is dict:
        return {k: _unflatten(s, leaves) for k, s in zip(structure[1], structure[2])}
    return structure[0](_unflatten(s, leaves) for s in structure[1])


class _TorchCompiled:
    """``fn`` traced with ``make_fx`` and compiled with ``torch.compile``, once per input
    structure, shapes, dtypes and devices (the key)."""

    def __init__(self, fn: Any) -> None:
        import threading

        import torch

        self.fn = fn
        self.graphs: dict[Any, tuple[Any, Any, list[Any], list[int]]] = {}
        self.lock = threading.Lock()
        self.tensor, self.float64 = torch.Tensor, torch.float64
        self.scalar = torch.tensor

    def __call__(self, *args: Any) -> Any:
        leaves: list[Any] = []
        structure = _flatten(args, leaves)
        tensor, scalar, float64 = self.tensor, self.scalar, self.float64
        described: list[Any] = [structure]
        tensors = []
        for i, v in enumerate(leaves):
            if type(v) is float:  # a value, never a constant: a 0-d float64 input
                v = leaves[i] = scalar(v, dtype=float64)
            if isinstance(v, tensor):
                tensors.append(v)
                described.append((v.shape, v.dtype, v.device))
            else:
                described.append((type(v), v))
        key = tuple(described)
        found = self.graphs.get(key)
        if found is None:
            with self.lock:
                found = self.graphs.get(key) or self._build(key, structure, leaves)
        graph, out_structure, out_leaves, out_slots = found
        out = list(out_leaves)
        for slot, value in zip(out_slots, graph(*tensors)):
            out[slot] = value
        return _unflatten(out_structure, iter(out))

    def _build(self, key: Any, structure: Any, leaves: list[Any]
               ) -> tuple[Any, Any, list[Any], list[int]]:
        import torch
        from torch.fx.experimental.proxy_tensor import make_fx

        slots = [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]
        found: dict[str, Any] = {}

        def flat(*tensors: Any) -> list[Any]:
            full = list(leaves)
            for i, value in zip(slots, tensors):
                full[i] = value
            out: list[Any] = []
            found["structure"] = _flatten(self.fn(*_unflatten(structure, iter(full))), out)
            found["slots"] = [i for i, v in enumerate(out) if isinstance(v, torch.Tensor)]
            found["leaves"] = [None if isinstance(v, torch.Tensor) else v for v in out]
            return [v for v in out if isinstance(v, torch.Tensor)]

        # traced on fake tensors: the Python runs once, nothing is computed or updated
        traced = make_fx(flat, tracing_mode="fake")(*[leaves[i] for i in slots])
        graph = torch.compile(traced, fullgraph=True, dynamic=False)
        built = (graph, found["structure"], found["leaves"], found["slots"])
        self.graphs[key] = built
        return built


# backend -> compiler name -> compiler (register_step_compiler adds to it)
#: The step compilers by backend, then by name (``register_step_compiler`` adds to it).
REGISTERED: dict[str, dict[str, StepCompiler]] = {
    "jax": {"jit": JaxJit()},
    "torch": {"compile": TorchCompile()},
}
_DEFAULT_STEP_COMPILER = {"jax": "jit"}  # the others run the eager step
#: ``set_step_compiler``'s choices, by backend.
CHOSEN: dict[str, str] = {}  # backend -> set_step_compiler's choice


def register_step_compiler(backend: str, compiler: StepCompiler) -> None:
    """Make a step compiler selectable for a backend, as ``compiler.name``.

    It is not turned on: ``set_step_compiler`` does that.

    Parameters
    ----------
    backend : str
        The backend.
    compiler : StepCompiler
        An instance of a ``StepCompiler`` subclass, named other than ``"eager"``.

    Raises
    ------
    ValueError
        Not such an instance.
    """
    name = _backend.backend_name(backend)
    if not isinstance(compiler, StepCompiler) or compiler.name == "eager":
        raise ValueError("register a StepCompiler subclass instance with a name other than "
                         "'eager'")
    REGISTERED.setdefault(name, {})[compiler.name] = compiler


def step_compilers(backend: str | ModuleType) -> tuple[str, ...]:
    """Return the ways a backend can run a training step.

    Parameters
    ----------
    backend : str or module
        The backend.

    Returns
    -------
    tuple of str
        ``"eager"`` and the names of its compilers.

    Examples
    --------
    >>> step_compilers("torch")
    ('eager', 'compile')
    """
    return ("eager", *REGISTERED.get(_backend.backend_name(backend), {}))


_env_parsed: list[Any] = [None, {}]  # ($ANYFC_STEP_COMPILER, its parse)


def _env_step_compilers() -> dict[str, str]:
    """``$ANYFC_STEP_COMPILER``, e.g. ``torch=compile,jax=eager`` (parsed once per value:
    this is read at every training step)."""
    text = os.environ.get("ANYFC_STEP_COMPILER", "")
    if text == _env_parsed[0]:
        return dict(_env_parsed[1])
    out = {}
    for item in text.split(","):
        if item.strip():
            backend, _, mode = item.partition("=")
            out[_backend.backend_name(backend.strip())] = mode.strip()
    _env_parsed[:] = [text, out]
    return dict(out)


def set_step_compiler(backend: str | ModuleType, mode: str | None) -> None:
    """Choose how a backend runs a training step.

    The choice is part of a compiled step's key. Also ``anyfc.set_step_compiler``.

    Parameters
    ----------
    backend : str or module
        The backend.
    mode : str or None
        ``"eager"`` (the reference, op by op), one of its compilers
        (``step_compilers``: ``"jit"`` for JAX, the default there; ``"compile"`` for
        torch, off by default), or ``None`` for the default again
        (``$ANYFC_STEP_COMPILER``, e.g. ``torch=compile``, else the built-in default).

    Raises
    ------
    ValueError
        A mode the backend does not have, listing the valid ones.

    Examples
    --------
    >>> set_step_compiler("torch", "compile"); get_step_compiler("torch")
    'compile'
    >>> set_step_compiler("torch", None); get_step_compiler("torch")
    'eager'
    """
    name = _backend.backend_name(backend)
    if mode is None:
        CHOSEN.pop(name, None)
        return
    if mode not in step_compilers(name):
        raise ValueError(f"backend {name!r} has no step compiler {mode!r}; valid: "
                         f"{', '.join(step_compilers(name))}")
    CHOSEN[name] = mode


def get_step_compiler(backend: str | ModuleType) -> str:
    """Return how a backend runs a training step now.

    Parameters
    ----------
    backend : str or module
        The backend.

    Returns
    -------
    str
        ``"eager"`` or a compiler's name.

    Raises
    ------
    ValueError
        ``$ANYFC_STEP_COMPILER`` names a compiler the backend does not have.
    """
    name = _backend.backend_name(backend)
    mode = CHOSEN.get(name)
    if mode is None:
        mode = _env_step_compilers().get(name)
    if mode is None:
        return _DEFAULT_STEP_COMPILER.get(name, "eager")
    if mode not in step_compilers(name):
        raise ValueError(f"$ANYFC_STEP_COMPILER asks backend {name!r} for step compiler "
                         f"{mode!r}; valid: {', '.join(step_compilers(name))}")
    return mode


def step_compiler(xp: ModuleType, device: Device = None) -> StepCompiler | None:
    """Return the compiler a training step on a namespace and device uses.

    Parameters
    ----------
    xp : module
        The namespace.
    device : device object, optional
        The device.

    Returns
    -------
    StepCompiler or None
        The compiler, or ``None`` for the eager step (also where the chosen compiler
        does not serve that device).
    """
    name = _backend.backend_name(xp)
    compiler = REGISTERED.get(name, {}).get(get_step_compiler(name))
    if compiler is None or (device is not None and not compiler.serves(device)):
        return None
    return compiler


def compiles(xp: ModuleType, device: Device = None) -> bool:
    """Say whether ``compile_step`` compiles for a namespace and device.

    Parameters
    ----------
    xp : module
        The namespace.
    device : device object, optional
        The device.

    Returns
    -------
    bool
        ``True`` when a compiler serves them; else the step runs eagerly.
    """
    return step_compiler(xp, device) is not None


def compile_step(xp: ModuleType, fn: Any, device: Device = None) -> Any:
    """Compile a step with the step compiler chosen for a namespace (``set_step_compiler``).

    ``jax.jit`` for JAX by default, ``torch.compile`` for torch when asked for; the other
    libraries run the same Python code eagerly.

    Parameters
    ----------
    xp : module
        The namespace.
    fn : callable
        The step.
    device : device object, optional
        The device.

    Returns
    -------
    callable or None
        ``fn`` compiled, or ``None`` where the step runs eagerly.
    """
    compiler = step_compiler(xp, device)
    return None if compiler is None else compiler.compile(fn, device)
