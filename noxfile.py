"""Test sessions: one per backend, each installing only its own extra; one with every CPU
library together for the tests that need several at once; mutation testing.

    nox                                  lint, every backend this machine can run, cross
    nox -l                               every session
    nox -s "tests(backend='numpy')"      one backend
    nox -s cross                         the cross-library tests (all CPU libraries at once)
    nox -s mutation                      mutation testing with mutmut (not run by default)
    nox -s mutation -- anyfc/losses.py   ... over other files (globs, as in MUTATE below)
    nox -s bench                         the training-step benchmark

The test sessions run the tests in random order (pytest-randomly, from the test extra);
pytest prints the seed at the top ("Using --randomly-seed=N"). Rerun that order with
    nox -s "tests(backend='numpy')" -- -p no:cacheprovider --randomly-seed=N
(tests/README.md has more), or the usual order with -- -p no:randomly.
"""

import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "cross"]
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
RANDOM_ORDER = ["-p", "randomly"]  # fails loudly if pytest-randomly is missing
# two test processes (pytest-xdist): most tests are bound by Python's dispatch of small
# array operations, one core each, so two workers nearly halve a session on our 2 cores
WORKERS = ["-n", "2"]

# The tests that need two array libraries in one process (data of one library into a
# model of another, a checkpoint saved on one and loaded on each other, moving a model
# with its optimizer state across libraries). The per-backend sessions install one
# library each, so these skip there, with the reason shown; the cross session runs them.
CROSS_FILES = ["tests/test_transfers.py", "tests/test_model.py", "tests/test_io.py",
               "tests/test_references.py"]
CROSS_SELECT = ("test_transfers or inputs_from_other_libraries or load_on_every_other"
                " or cross_library")
CROSS_IDS = ["numpy", "array_api_strict", "array_api_strict:device1", "torch", "jax", "dask"]

# Mutation testing (mutmut): the files mutated, as globs relative to the repository root.
# Still to add as they are triaged (tests/README.md): "anyfc/schedules.py",
# "anyfc/training/data.py", "anyfc/checkpoint.py". The whole list takes about an hour on
# two shared cores (the training loop alone most of it): pass one file after -- to iterate.
MUTATE = ["anyfc/layers/*", "anyfc/activations.py", "anyfc/initializers.py",
          "anyfc/optimizers.py", "anyfc/losses.py", "anyfc/training/loop.py",
          "anyfc/training/callbacks.py", "anyfc/_metrics.py"]
# The tests each mutant runs (on the NumPy backend only): those that exercise the math and
# the training loop in this process. Left out: tests that start subprocesses, which would
# import the unmutated code or none (examples, transfers, onnx, sklearn,
# checkpoint_untrusted), that need other libraries (dask, compiled), and those that read
# the sources mutmut rewrites (purity, import_graph).
MUTATION_TESTS = [
    "tests/test_activations.py", "tests/test_layers.py", "tests/test_layer_zoo.py",
    "tests/test_losses.py", "tests/test_weighted_losses.py", "tests/test_model.py",
    "tests/test_training.py", "tests/test_optimizers.py", "tests/test_schedules.py",
    "tests/test_clipping.py", "tests/test_errors.py", "tests/test_hostile.py",
    "tests/test_io.py", "tests/test_references.py", "tests/test_properties.py",
]


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
    session.run("pytest", *RANDOM_ORDER, *WORKERS, *session.posargs,
                env={"ANYFC_TEST_BACKENDS": ",".join(ids)})


@nox.session
def cross(session: nox.Session) -> None:
    """The cross-library tests, with every CPU library installed together."""
    session.install(TORCH)
    session.install("-e", ".[test,jax,dask,strict]")
    session.run("pytest", *RANDOM_ORDER, *WORKERS, *CROSS_FILES, "-k", CROSS_SELECT,
                *session.posargs,
                env={"ANYFC_TEST_BACKENDS": ",".join(CROSS_IDS)})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the package."""
    session.install("ruff", "mypy", "numpy", "array-api-compat")
    session.run("ruff", "check", ".")
    session.run("mypy", "anyfc")


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Mutation testing with mutmut over MUTATE (or the globs given after --), each
    mutant against MUTATION_TESTS on the NumPy backend. Runs in a copy of the project
    under .nox/ (mutmut wants its settings in setup.cfg and writes a mutants/ folder),
    so the working tree is never touched; prints the surviving mutants and the score.
    `mutmut show <name>` in that folder (printed at the end) shows a mutant's diff."""
    patterns = list(session.posargs) or MUTATE
    session.install("-e", ".[test]")
    session.install("mutmut>=3.3,<4")
    root = Path.cwd()
    work = Path(session.create_tmp()) / "mutation"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(root / "anyfc", work / "anyfc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "tests", work / "tests",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(root / "pyproject.toml", work / "pyproject.toml")
    lines = ["[mutmut]", "source_paths = anyfc", "only_mutate ="]
    lines += [f"    {p}" for p in patterns]
    lines += ["pytest_add_cli_args_test_selection ="] + [f"    {t}" for t in MUTATION_TESTS]
    # no random order: mutmut runs the fastest tests that cover a mutant first
    lines += ["pytest_add_cli_args =", "    -p", "    no:randomly", "    -p",
              "    no:cacheprovider"]
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")
    session.chdir(work)
    env = {"ANYFC_TEST_BACKENDS": "numpy"}
    session.run("mutmut", "run", env=env)
    session.run("mutmut", "results", env=env)
    session.run("mutmut", "export-cicd-stats", env=env)
    session.log(f"mutants and their stats: {work / 'mutants'} "
                "(mutmut-cicd-stats.json; `mutmut show NAME` there shows one)")


@nox.session
def bench(session: nox.Session) -> None:
    """Training-step benchmark against plain NumPy and torch.nn (see benchmarks/)."""
    session.install(TORCH)
    session.install("-e", ".[jax,strict]")
    session.run("python", "benchmarks/train_step.py", *session.posargs)
