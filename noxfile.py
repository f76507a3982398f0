"""Test sessions, one per backend, each installing only its own extra.

    nox                      lint + every backend this machine can run
    nox -s "tests(backend='numpy')"    one backend (nox -l lists them all)
    nox -s bench             the training-step benchmark
"""

import shutil
import subprocess

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"

TORCH = "torch==2.13.0"  # the CPU wheel on our machines; never an unpinned torch

# session -> (extras to install, ids selected through ANYFC_TEST_BACKENDS)
BACKENDS = {
    "numpy": ([], ["numpy"]),
    "array_api_strict": (["strict"], ["array_api_strict", "array_api_strict:device1"]),
    "torch": (["torch"], ["torch"]),
    "jax": (["jax"], ["jax"]),
    "dask": (["dask"], ["dask"]),
    "cupy": (["cuda12"], ["cupy"]),
}


def _has_nvidia_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def _torch_has_cuda(session: nox.Session) -> bool:
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return session.run("python", "-c", code, success_codes=[0, 1], silent=True) is True


@nox.session
@nox.parametrize("backend", list(BACKENDS))
def tests(session: nox.Session, backend: str) -> None:
    """The test suite on one backend (the cupy session needs an NVIDIA GPU)."""
    if backend == "cupy" and not _has_nvidia_gpu():
        session.skip("no NVIDIA GPU here: the cupy backend cannot run")
    extras, ids = BACKENDS[backend]
    if backend == "torch":
        session.install(TORCH)
        if _torch_has_cuda(session):
            ids = ids + ["torch:cuda"]
    session.install("-e", f".[{','.join(['test', 'examples', *extras])}]")
    session.run("pytest", *session.posargs, env={"ANYFC_TEST_BACKENDS": ",".join(ids)})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the package."""
    session.install("ruff", "mypy", "numpy", "array-api-compat")
    session.run("ruff", "check", ".")
    session.run("mypy", "anyfc")


@nox.session
def bench(session: nox.Session) -> None:
    """Training-step benchmark against plain NumPy and torch.nn (see benchmarks/)."""
    session.install(TORCH)
    session.install("-e", ".[jax,strict]")
    session.run("python", "benchmarks/train_step.py", *session.posargs)
