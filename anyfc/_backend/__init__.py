"""Everything that knows about concrete array libraries, by concern.

The math modules (``layers``, ``activations``, ``losses``, ``optimizers``) see only an
Array API namespace ``xp``; this package turns user-facing names (``"numpy"``,
``"cuda:1"``, ``"float32"``) into namespaces, devices and dtypes, draws random numbers,
moves arrays between libraries and devices, and sets the libraries' precision.

- ``namespaces``: backend names and aliases, the default backend, namespaces of
  backends and arrays, available backends, what kind of data an input holds
- ``devices``: where an array lives, and each library's device for a user's name
- ``dtypes``: floating dtypes by name, the integer dtype for labels and indices
- ``transfers``: host to device, device to NumPy, library to library (``to_backend``),
  waiting for a device
- ``kernels``: in-place updates and products where the library allows them
- ``fused``: optimizer updates of every parameter at once where the library has
  multi-tensor kernels (torch's ``_foreach_*``), the optimizers' own code as reference
- ``lazy``: whether an array is lazy (Dask), and concrete versions of lazy arrays
- ``random``: the host generator, and generators on the array's own device (dropout)
- ``precision``: the precision policy for float32 products, and its scope

The names below are re-exported, so callers write ``_backend.to_backend(...)``. (How a
training step is compiled lives beside the step, in ``anyfc.training.compilers``.)

>>> from anyfc import _backend
>>> xp = _backend.get_namespace("numpy")
>>> _backend.backend_name(xp)
'numpy'
"""

from .devices import device_of, device_token, resolve_device
from .dtypes import dtype_name, index_dtype, resolve_dtype
from .floating import quiet
from .fused import adam_, fused, set_fused, sgd_
from .kernels import (
    affine,
    matmul,
    relu_,
    scale_add_,
    softmax_rows,
    subtract_,
    subtract_scaled_,
    take_rows,
    total,
)
from .lazy import is_lazy, materialize
from .namespaces import (
    BACKENDS,
    EXTRAS,
    available_backends,
    backend_name,
    check_numeric,
    get_backend,
    get_namespace,
    is_array,
    namespace_of,
    set_backend,
)
from .precision import get_precision, precision_scope, set_precision, sets_anything
from .random import host_rng, set_seed
from .transfers import all_finite, from_host, synchronize, to_backend, to_float, to_numpy

__all__ = [
    "affine",
    "relu_",
    "adam_",
    "fused",
    "set_fused",
    "sgd_",
    "BACKENDS",
    "EXTRAS",
    "available_backends",
    "backend_name",
    "check_numeric",
    "all_finite",
    "device_of",
    "device_token",
    "dtype_name",
    "from_host",
    "get_backend",
    "get_namespace",
    "get_precision",
    "host_rng",
    "quiet",
    "set_seed",
    "index_dtype",
    "is_array",
    "is_lazy",
    "materialize",
    "matmul",
    "namespace_of",
    "precision_scope",
    "resolve_device",
    "resolve_dtype",
    "scale_add_",
    "set_backend",
    "set_precision",
    "sets_anything",
    "subtract_",
    "softmax_rows",
    "subtract_scaled_",
    "take_rows",
    "total",
    "synchronize",
    "to_backend",
    "to_float",
    "to_numpy",
]
