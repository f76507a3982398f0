"""Test sessions: one per backend, each installing only its own extra; one with every CPU
library together for the tests that need several at once; mutation testing.

    nox                                  lint, docs, build, every backend this machine can
                                         run, cross
    nox -l                               every session
    nox -s "tests(backend='numpy')"      one backend
    nox -s cross                         the cross-library tests (all CPU libraries at once)
    nox -s mutation                      mutation testing with mutmut (not run by default)
    nox -s mutation -- anyfc/losses.py   ... over other files (globs, as in MUTATE below)
    nox -s bench                         the training-step benchmark
    nox -s docs                          the documentation (docs/_build/html): Sphinx with
                                         warnings as errors, then its links checked
    nox -s build                         sdist and wheel, twine check, the wheel installed
                                         in a fresh environment and run from outside the
                                         source tree

The test sessions run the tests in random order (pytest-randomly, from the test extra);
pytest prints the seed at the top ("Using --randomly-seed=N"). Rerun that order with
    nox -s "tests(backend='numpy')" -- -p no:cacheprovider --randomly-seed=N
(tests/README.md has more), or the usual order with -- -p no:randomly.
"""

import os
import re
import shutil
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "docs", "build", "tests", "cross"]
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
# Scores so far are in tests/README.md (training/data.py, checkpoint.py, sklearn.py and
# onnx.py have none yet). The whole list takes hours on two shared cores (the training
# loop and the estimators most of it): pass one file after -- to iterate.
MUTATE = ["anyfc/layers/*", "anyfc/activations.py", "anyfc/initializers.py",
          "anyfc/optimizers.py", "anyfc/losses.py", "anyfc/training/loop.py",
          "anyfc/training/callbacks.py", "anyfc/_metrics.py", "anyfc/schedules.py",
          "anyfc/training/data.py", "anyfc/checkpoint.py", "anyfc/sklearn.py",
          "anyfc/onnx.py"]
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
    "tests/backend/test_lazy.py", "tests/test_carried_settings.py", "tests/test_sklearn.py",
    "tests/test_onnx.py",
    "tests/test_checkpoint.py::test_a_pickle_is_refused_without_running_it",
    "tests/test_checkpoint.py::test_missing_foreign_and_corrupt_files",
    "tests/test_checkpoint.py::test_interrupted_save_keeps_the_old_checkpoint",
    "tests/test_dask.py::test_data_parallel_refuses_coupled_layers",
    "tests/training/test_step.py::test_schedules_and_rate_changes_never_recompile_the_jax_step",
    "tests/training/test_step.py::test_changing_the_model_between_fits_trains_the_new_model",
    "tests/training/test_step.py::test_models_alike_share_one_compiled_step_and_others_do_not",
    "tests/training/test_step.py::test_jax_trains_past_two_to_the_31_steps",
]


# Left out of the mutation runs: a test whose worker processes (joblib's loky pool) outlive
# it, which mutmut's process pool takes for its own children and fails on (KeyError)
MUTATION_DESELECT = ["--deselect", "tests/test_sklearn.py::test_grid_search_in_two_processes"]


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
    # the tests that do the same whatever the library (no backend fixture, no library
    # named; tests/conftest.py decides) run in the numpy session only
    agnostic = "1" if backend == "numpy" else "0"
    session.run("pytest", *RANDOM_ORDER, *WORKERS, *session.posargs,
                env={"ANYFC_TEST_BACKENDS": ",".join(ids), "ANYFC_TEST_AGNOSTIC": agnostic})


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
              "    no:cacheprovider", *(f"    {a}" for a in MUTATION_DESELECT)]
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")
    session.chdir(work)
    env = {"ANYFC_TEST_BACKENDS": "numpy"}
    session.run("mutmut", "run", env=env)
    session.run("mutmut", "results", env=env)
    session.run("mutmut", "export-cicd-stats", env=env)
    session.log(f"mutants and their stats: {work / 'mutants'} "
                "(mutmut-cicd-stats.json; `mutmut show NAME` there shows one)")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation into docs/_build/html: Sphinx with warnings as errors (-W; -n: every
    cross-reference must resolve; numpydoc validates each docstring it renders, see
    docs/conf.py), the quick examples executed for the gallery, then every link between
    the built pages checked (docs/check_links.py: offline, as CI is). Posargs go to
    sphinx-build (e.g. -- -j 2)."""
    started = time.perf_counter()
    session.install("-e", ".[docs]")
    html = Path("docs", "_build", "html")
    shutil.rmtree(html, ignore_errors=True)
    session.run("sphinx-build", "-W", "--keep-going", "-n", "-E", "-q", "-b", "html",
                *session.posargs, "docs", str(html), env={"ANYFC_BACKEND": "numpy"})
    session.run("python", "docs/check_links.py", str(html))
    session.log(f"docs built and checked in {time.perf_counter() - started:.0f} s: "
                f"open {html / 'index.html'}")


@nox.session
def bench(session: nox.Session) -> None:
    """Training-step benchmark against plain NumPy and torch.nn (see benchmarks/)."""
    session.install(TORCH)
    session.install("-e", ".[jax,strict]")
    session.run("python", "benchmarks/train_step.py", *session.posargs)


# ---------------------------------------------------------------- packaging

# The installed-package check the build session runs in the fresh environment (python -I:
# neither PYTHONPATH nor the current directory can put the source tree on the path).
_INSTALLED_CHECK = """
import importlib.metadata, importlib.resources, pathlib, sys
import anyfc
expected = sys.argv[1]
where = pathlib.Path(anyfc.__file__).resolve()
assert where.is_relative_to(pathlib.Path(sys.prefix).resolve()), f"anyfc imported from {where}"
assert anyfc.__version__ == importlib.metadata.version("anyfc") == expected, (
    anyfc.__version__, importlib.metadata.version("anyfc"), expected)
assert (importlib.resources.files("anyfc") / "py.typed").is_file(), "no anyfc/py.typed"
print(f"anyfc {anyfc.__version__} from {where.parent}, with py.typed")
"""


def _source_version(root: Path) -> str:
    """anyfc.__version__ as written in the source, the one place the version lives."""
    text = (root / "anyfc" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no __version__ = \"...\" line in anyfc/__init__.py")
    return match.group(1)


def _package_files(root: Path) -> set[str]:
    """The files of the anyfc package a wheel must hold: every module, and py.typed."""
    files = {p.relative_to(root).as_posix() for p in (root / "anyfc").rglob("*.py")
             if "__pycache__" not in p.parts}
    return files | {"anyfc/py.typed"}


def _check_dists(session: nox.Session, root: Path, dist: Path, version: str) -> Path:
    """Fail unless dist/ holds exactly one sdist and one wheel of this version, whole:
    every package file (so a file left out of the sdist, which the wheel is built from,
    fails too), the license, nothing outside the package. Returns the wheel."""
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if [w.name for w in wheels] != [f"anyfc-{version}-py3-none-any.whl"] or \
            [s.name for s in sdists] != [f"anyfc-{version}.tar.gz"]:
        session.error(f"expected one sdist and one wheel of anyfc {version} in {dist}, "
                      f"found {sorted(p.name for p in dist.iterdir())}")
    expected = _package_files(root)
    info = f"anyfc-{version}.dist-info"
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"{info}/METADATA").decode()
    missing = sorted(expected - names)
    if missing:
        session.error(f"missing from the wheel: {missing}")
    stray = sorted(n for n in names if not n.startswith(("anyfc/", f"{info}/")))
    if stray:
        session.error(f"outside the package in the wheel: {stray}")
    if f"{info}/licenses/LICENSE" not in names:
        session.error("the wheel carries no LICENSE")
    with tarfile.open(sdists[0]) as sdist:
        top = f"anyfc-{version}/"
        in_sdist = {m.name.removeprefix(top) for m in sdist.getmembers()}
    missing = sorted((expected | {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml",
                                  "examples/train_digits.py"}) - in_sdist)
    if missing:
        session.error(f"missing from the sdist: {missing}")
    # unknown classifiers pass twine check but make PyPI refuse the upload
    classifiers = re.findall(r"^Classifier: (.+)$", metadata, re.MULTILINE)
    session.run("python", "-c", "import sys, trove_classifiers as t; "
                "bad = [c for c in sys.argv[1:] if c not in t.classifiers]; "
                "sys.exit(f'unknown classifiers: {bad}' if bad else 0)", *classifiers,
                silent=True)
    session.log(f"{wheels[0].name}: {len(expected)} package files, LICENSE, "
                f"{len(classifiers)} known classifiers; {sdists[0].name} whole")
    return wheels[0]


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel (the wheel from the sdist), check them (twine check,
    every package file present, classifiers PyPI knows), install the wheel with its
    examples extra from PyPI into a fresh virtual environment, and run
    examples/train_digits.py and an import check there from a folder outside the source
    tree, so that what runs is the installed wheel and nothing else."""
    started = time.perf_counter()
    session.install("build", "twine", "trove-classifiers")
    root = Path.cwd().resolve()
    version = _source_version(root)
    if f"## [{version}]" not in (root / "CHANGELOG.md").read_text(encoding="utf-8"):
        session.error(f"CHANGELOG.md has no entry for {version}")
    tmp = Path(session.create_tmp()).resolve()
    for name in ("dist", "venv", "run", "out"):
        shutil.rmtree(tmp / name, ignore_errors=True)
    # setuptools adds every file an old anyfc.egg-info/SOURCES.txt lists to the sdist, so a
    # stale one (from an earlier build here) could hide a file the packaging leaves out
    shutil.rmtree(root / "anyfc.egg-info", ignore_errors=True)
    dist, venv, run = tmp / "dist", tmp / "venv", tmp / "run"
    session.run("python", "-m", "build", "--outdir", str(dist), silent=True)
    session.run("twine", "check", "--strict", *(str(p) for p in sorted(dist.iterdir())))
    wheel = _check_dists(session, root, dist, version)

    session.run("python", "-m", "venv", str(venv))
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    session.run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                f"{wheel}[examples]", external=True)
    run.mkdir()
    shutil.copy2(root / "examples" / "train_digits.py", run / "train_digits.py")
    with session.chdir(run):
        session.run(python, "-I", "-c", _INSTALLED_CHECK, version, external=True)
        session.run(python, "-I", "train_digits.py", "--epochs", "3", "--quiet",
                    "--out", str(tmp / "out"), external=True)
    left = sorted(p.name for p in run.iterdir())
    if left != ["train_digits.py"]:
        session.error(f"the example wrote into its working directory: {left}")
    if not (tmp / "out" / "digits_curve.png").is_file():
        session.error(f"the example saved no training curve in {tmp / 'out'}")
    session.log(f"built, checked, installed and ran {wheel.name} in "
                f"{time.perf_counter() - started:.0f} s")
