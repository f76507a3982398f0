"""No module of ``anyfc`` imports one that imports it back, directly or through others.

Every import statement counts, those inside functions too (a lazy import is still a
circle: it only hides it until the function runs). ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``; a module's own parent packages are
not edges (Python imports them first, whatever the module says).
"""

from __future__ import annotations

import ast
from pathlib import Path

import anyfc

ROOT = Path(anyfc.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.add(full if full in modules else source)
    ancestors = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
    return {m for m in found if m in modules and m != name and m not in ancestors}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_one_that_imports_it_back():
    graph = _graph()
    assert {"anyfc.model", "anyfc.checkpoint", "anyfc.training.loop"} <= set(graph)
    assert _cycles(graph) == []


def test_the_checker_sees_lazy_imports_and_finds_a_circle():
    graph = _graph()
    # model.save writes through the checkpoint module, and io.load builds a model
    assert "anyfc.checkpoint" in graph["anyfc.model"]
    assert "anyfc.model" in graph["anyfc.io"]
    graph["anyfc.checkpoint"] = graph["anyfc.checkpoint"] | {"anyfc.io"}
    planted = {"anyfc.checkpoint", "anyfc.io", "anyfc.model"}
    assert any(planted <= set(c) for c in _cycles(graph))


def test_the_training_modules_never_import_the_model():
    graph = _graph()
    for name in graph:
        if name.startswith(("anyfc.training", "anyfc.checkpoint", "anyfc._dask")):
            assert "anyfc.model" not in graph[name], name


# ---- no module uses another module's underscore names ---------------------------------
# A name with one leading underscore is its module's own. Other modules reach it neither by
# import (``from .losses import _row_weights``), nor through the module
# (``_backend._host_view``), nor on an object (``model._adopt``): what they need is a
# public name. Modules may themselves be package-internal (``anyfc._backend``); it is
# their underscore *names* that stay inside. ``self``/``cls`` reach their own. Deliberate
# exceptions, each with its reason:
ALLOWED: dict[tuple[str, str], str] = {
    **{("anyfc._backend.fused", f"_foreach_{op}"): (
        "torch's multi-tensor kernels: underscore-named in torch, but what torch.optim "
        "itself runs (foreach=True), and torch has no public multi-tensor update")
       for op in ("add", "add_", "addcdiv_", "addcmul_", "div_", "mul", "mul_", "sqrt",
                  "sub_")},
}

_OWN = ("self", "cls", "twin", "scratch")  # an object of the module's own class


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _underscore_uses(name: str, path: Path) -> list[str]:
    modules = _modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != "anyfc" and not source.startswith("anyfc."):
                continue  # another library's names are its business
            found += [alias.name for alias in node.names if _private(alias.name)
                      and f"{source}.{alias.name}" not in modules]  # a module may be
            # package-internal: ``from . import _backend``
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in _OWN:
                continue
            if isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super":
                continue
            found.append(f"{ast.unparse(base)}.{node.attr}")
    return [use for use in found if (name, use.rpartition(".")[2]) not in ALLOWED]


def test_no_module_uses_another_modules_underscore_names():
    uses = {name: _underscore_uses(name, path) for name, path in _modules().items()}
    assert {name: found for name, found in uses.items() if found} == {}


def test_the_underscore_checker_finds_a_private_call(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("from .losses import _row_weights\nfrom . import _backend\n"
                       "def f(model):\n    return model._adopt(1), _backend._host_view(2)\n")
    assert _underscore_uses("anyfc.planted", planted) == [
        "_row_weights", "model._adopt", "_backend._host_view"]


def test_training_types_the_model_with_a_protocol():
    for path in (ROOT / "training").glob("*.py"):
        assert "Model = Any" not in path.read_text(), path
    assert "Model = Any" not in (ROOT / "_dask.py").read_text()
