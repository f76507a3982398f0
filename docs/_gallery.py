"""How the docs build runs the examples (``sphinx_gallery_conf["reset_argv"]``).

sphinx-gallery executes an example as ``__main__`` with ``sys.argv = [file]``; the
arguments returned here are appended, so that an executed example trains for a few
epochs only (each takes a few seconds) and writes its files into a temporary folder. The
examples themselves are unchanged: ``python examples/train_digits.py`` prints and does
what the README says.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

# The examples the gallery executes (on the CPU, NumPy backend), each with its short run.
# The others are shown, not run: gpu_speedup.py needs a GPU, dask_out_of_core.py writes
# and trains on hundreds of MiB, export_onnx.py needs onnxruntime and sklearn_pipeline.py
# runs a grid search (their commands are in each example's text).
QUICK: dict[str, list[str]] = {
    "train_digits.py": ["--epochs", "10"],
    "from_scratch.py": ["--epochs", "5"],
    "regression.py": ["--epochs", "40"],
    "custom_layer.py": ["--backend", "numpy", "--epochs", "5"],
    "portable_checkpoint.py": ["--epochs", "2", "--to", "numpy"],
}
WRITES = {"train_digits.py", "portable_checkpoint.py"}  # these take --out

FILENAME_PATTERN = "/(" + "|".join(name.replace(".", r"\.") for name in QUICK) + ")$"


def argv(gallery_conf: dict, script_vars: dict) -> list[str]:
    """The command-line arguments of one executed example (after its file name)."""
    name = Path(script_vars["src_file"]).name
    args = list(QUICK.get(name, []))
    if name in WRITES:
        args += ["--out", tempfile.mkdtemp(prefix="anyfc-gallery-")]
    return args
