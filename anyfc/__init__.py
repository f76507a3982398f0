"""anyfc — fully-connected neural networks written once against the Python Array API
standard, trained unchanged on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict.

>>> import anyfc
>>> model = anyfc.Sequential([anyfc.Dense(4, 8, "relu", seed=0), anyfc.Dense(8, 3, seed=1)])
>>> model.predict([[0.0, 1.0, 2.0, 3.0]]).shape
(1, 3)
"""

from . import (
    activations,
    callbacks,
    initializers,
    losses,
    metrics,
    optimizers,
    registry,
    schedules,
    testing,
)
from ._backend import (
    BACKENDS,
    available_backends,
    get_backend,
    get_precision,
    set_backend,
    set_precision,
    set_seed,
    synchronize,
    to_backend,
    to_numpy,
)
from ._info import info
from .io import load
from .layers import (
    ELU,
    GELU,
    Activation,
    BatchNorm,
    Dense,
    Dropout,
    Layer,
    LayerNorm,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Softsign,
    Tanh,
)
from .model import History, Sequential
from .registry import register
from .training.callbacks import (
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    NoImprovementStopping,
    ReduceLROnPlateau,
)
from .training.compilers import (
    compilation_cache,
    get_step_compiler,
    set_compilation_cache,
    set_step_compiler,
)

__version__ = "0.2.0"  # the one source of the version: pyproject.toml reads it

__all__ = [
    "BACKENDS",
    "ELU",
    "GELU",
    "Activation",
    "BatchNorm",
    "CSVLogger",
    "EarlyStopping",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "NoImprovementStopping",
    "ReduceLROnPlateau",
    "Dense",
    "Dropout",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Softsign",
    "Tanh",
    "History",
    "Sequential",
    "activations",
    "callbacks",
    "schedules",
    "available_backends",
    "get_backend",
    "get_precision",
    "compilation_cache",
    "get_step_compiler",
    "info",
    "initializers",
    "load",
    "losses",
    "metrics",
    "optimizers",
    "register",
    "registry",
    "set_backend",
    "set_precision",
    "set_seed",
    "set_compilation_cache",
    "set_step_compiler",
    "synchronize",
    "testing",
    "to_backend",
    "to_numpy",
]
