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
# with its optimizer state across libraries, arrays moved from every library to every
# other). The per-backend sessions install one library each, so these skip there, with
# the reason shown; the cross session runs them. They are marked `cross` wherever they
# live (tests/backend/test_transfers.py, test_devices.py and test_compilers.py,
# tests/training/test_step.py, tests/test_model.py, tests/test_io.py).
CROSS_FILES = ["tests"]
CROSS_SELECT = "cross"  # a marker expression (pytest -m)
CROSS_IDS = ["numpy", "array_api_strict", "array_api_strict:device1", "torch", "jax", "dask"]

# Mutation testing (mutmut): the files mutated, as globs relative to the repository root.
# Still to add as they are triaged (tests/README.md): "anyfc/schedules.py",
# "anyfc/training/data.py", "anyfc/checkpoint.py". The whole list takes about an hour on
# two shared cores (the training loop alone most of it): pass one file after -- to iterate.
MUTATE = ["anyfc/layers/*", "anyfc/activations.py", "anyfc/initializers.py",
          "anyfc/optimizers.py", "anyfc/losses.py", "anyfc/training/loop.py",
          "anyfc/training/callbacks.py", "anyfc/_metrics.py"]
# The tests each mutant runs (on the NumPy backend only): those that exercise the math and
# the training loop in this process. Left out: the backend plumbing (tests/backend/ but
# for kernels and lazy arrays), tests that start subprocesses, which would import the
# unmutated code or none (project/test_examples.py, onnx, sklearn, backend/transfers, the
# hostile files of test_checkpoint.py), that need other libraries (dask, the compiled
# steps of training/test_step.py), and those that read the sources mutmut rewrites
# (project/). Files that mix both kinds name their tests.
MUTATION_TESTS = [
    "tests/test_activations.py", "tests/test_initializers.py", "tests/layers/",
    "tests/test_losses.py", "tests/test_optimizers.py", "tests/test_schedules.py",
    "tests/test_model.py", "tests/test_io.py", "tests/test_info.py", "tests/test_metrics.py",
    "tests/test_validation.py", "tests/test_testing.py", "tests/training/test_loop.py",
    "tests/training/test_data.py", "tests/training/test_callbacks.py",
    "tests/training/test_history.py", "tests/backend/test_kernels.py",
    "tests/backend/test_lazy.py",
    "tests/test_checkpoint.py::test_a_pickle_is_refused_without_running_it",
    "tests/test_checkpoint.py::test_missing_foreign_and_corrupt_files",
    "tests/test_checkpoint.py::test_interrupted_save_keeps_the_old_checkpoint",
    "tests/test_dask.py::test_data_parallel_refuses_coupled_layers",
    "tests/training/test_step.py::test_schedules_and_rate_changes_never_recompile_the_jax_step",
    "tests/training/test_step.py::test_changing_the_model_between_fits_trains_the_new_model",
    "tests/training/test_step.py::test_models_alike_share_one_compiled_step_and_others_do_not",
    "tests/training/test_step.py::test_jax_trains_past_two_to_the_31_steps",
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
    session.run("pytest", *RANDOM_ORDER, *WORKERS, *CROSS_FILES, "-m", CROSS_SELECT,
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
