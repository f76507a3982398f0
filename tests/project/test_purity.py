"""The math modules are written once: they import no array library and branch on no
backend name. Everything backend-specific lives in anyfc/_backend/ (and how a training step
is compiled, in anyfc/training/compilers.py)."""

import ast
import pathlib

import pytest

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[2] / "anyfc"
# the math: modules, and every module of the packages among them (anyfc/layers/)
MATH = [p.relative_to(PACKAGE_DIR).with_suffix("").as_posix() for name in
        ("activations", "initializers", "layers", "losses", "optimizers", "metrics",
                     "model")
        for p in ([PACKAGE_DIR / f"{name}.py"] if (PACKAGE_DIR / f"{name}.py").exists()
                  else sorted((PACKAGE_DIR / name).glob("*.py")))]
LIBRARIES = {"numpy", "cupy", "torch", "jax", "dask", "array_api_strict", "array_api_compat"}
BACKEND_NAMES = {"numpy", "cupy", "torch", "jax", "dask", "array_api_strict"}
PACKAGE = PACKAGE_DIR


@pytest.mark.parametrize("module", MATH)
def test_math_module_imports_no_array_library(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & LIBRARIES, f"{module}.py imports {imported & LIBRARIES}"


@pytest.mark.parametrize("module", MATH)
def test_math_module_compares_no_backend_name(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Constant) and side.value in BACKEND_NAMES:
                    pytest.fail(f"{module}.py:{node.lineno} compares against {side.value!r}")
