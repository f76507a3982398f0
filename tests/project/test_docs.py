"""The documentation cannot drift from the code (issue #24).

- Every ``python`` code block of README.md and of the pages under docs/ runs, the blocks
  of one file in order, in a fresh process and an empty folder, on the NumPy backend. A
  block that needs a GPU or a library the NumPy session does not install says so in an
  HTML comment on the line before it, ``<!-- test: needs dask -->`` (``gpu``: a CUDA
  device for CuPy); it runs wherever that is there, and there are few such blocks.
- The ``>>>`` examples in anyfc's docstrings run (doctest), in a fresh process.
- The API reference (docs/api/, one page per public module) documents every public name:
  each name in a public module's ``__all__`` (or, without one, each class, function and
  upper-case constant it defines without a leading underscore). Every public method and
  property of a documented class has a docstring; an override without one of its own
  shows its parent's, so it must take the parent's parameters.
- The layer protocol the docs describe is the one the library calls.
- The README keeps the two quick-start commands CI runs (.ci/run).
- docs/check_links.py, which ``nox -s docs`` runs over the built HTML, finds broken links.

The Sphinx build itself (``nox -s docs``, warnings as errors) checks each docstring's
numpydoc form: see ``numpydoc_validation_checks`` in docs/conf.py.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import json
import os
import pathlib
import pkgutil
import re
import subprocess
import sys
import textwrap

import pytest

import anyfc

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
API = DOCS / "api"
DOC_FILES = [ROOT / "README.md"] + sorted(
    p for p in DOCS.rglob("*.md") if not {"_build", "auto_examples"} & set(p.parts))
# blocks that may not run in the NumPy session (a GPU, or a library it lacks): keep it small
MAX_NEEDS = 5
RUN = {"python"}  # fenced languages that run
SHOWN = {"sh", "console", "text", "json"}  # fenced languages that are shown, not run

# Modules without an underscore that have no page of their own: their public names are
# documented where the package re-exports them.
INTERNAL = {
    "anyfc.layers.activation": "anyfc.layers re-exports its classes",
    "anyfc.layers.base": "anyfc.layers re-exports Layer (size, real, describe: helpers)",
    "anyfc.layers.dense": "anyfc.layers re-exports Dense",
    "anyfc.layers.dropout": "anyfc.layers re-exports Dropout",
    "anyfc.layers.normalization": "anyfc.layers re-exports BatchNorm and LayerNorm",
    "anyfc.training.history": "anyfc.model (and anyfc) re-export History",
    "anyfc.training.data": "fit's data paths (in memory, streamed, data-parallel)",
    "anyfc.training.loop": "fit's epochs; Sequential.fit is the public face",
    "anyfc.training.step": "one training step, eager or compiled; Sequential.fit runs it",
    "anyfc.training.protocol": "the Model protocol the training package types models with",
}


def _numpy_session() -> bool:
    """The code runs on the NumPy backend: only where the NumPy id is selected."""
    wanted = os.environ.get("ANYFC_TEST_BACKENDS", "").strip()
    return not wanted or "numpy" in [w.strip() for w in wanted.split(",")]


numpy_only = pytest.mark.skipif(not _numpy_session(),
                                reason="the docs' code runs in the NumPy session")


# ---------------------------------------------------------------- code blocks

@dataclasses.dataclass
class Block:
    path: pathlib.Path
    line: int  # of the first line of code, 1-based
    language: str
    source: str
    needs: list[str]


FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
MARKER = re.compile(r"^\s*<!--\s*test:\s*(?P<what>.*?)\s*-->\s*$")


def code_blocks(path: pathlib.Path) -> list[Block]:
    """The fenced code blocks of a Markdown file (MyST directives, ```{name}, left out),
    each with the ``needs`` of the marker comment on the line before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        info = match["info"].strip()
        closing = re.compile(rf"^[ ]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path.name}:{i + 1}: a code fence is never closed")
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip()
                for ln in lines[i + 1:j]]
        needs: list[str] = []
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = MARKER.match(lines[k]) if k >= 0 else None
        if marker:
            what = marker["what"]
            assert what.startswith("needs "), (
                f"{path.name}:{k + 1}: unknown test marker {what!r} (say 'needs <what>')")
            needs = [w.strip() for w in what.removeprefix("needs ").split(",") if w.strip()]
        if not info.startswith("{"):
            blocks.append(Block(path, i + 2, info.split()[0] if info else "",
                                "\n".join(body) + "\n", needs))
        i = j + 1
    return blocks


def _missing(needs: list[str]) -> list[str]:
    missing = []
    for need in needs:
        if need == "gpu":
            if "cupy" not in anyfc.available_backends():
                missing.append("a GPU (CuPy with a CUDA device)")
        elif importlib.util.find_spec(need) is None:
            missing.append(need)
    return missing


# Runs the blocks of one file in order, in one namespace; each block is compiled with
# its own line numbers in the file, so a traceback points into the page.
RUNNER = textwrap.dedent("""
    import json, sys
    blocks = json.load(open(sys.argv[1], encoding="utf-8"))
    namespace = {"__name__": "__main__"}
    for block in blocks:
        code = compile("\\n" * (block["line"] - 1) + block["source"], block["path"], "exec")
        exec(code, namespace)
""")


def _id(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


RUNNABLE = [p for p in DOC_FILES if any(b.language in RUN for b in code_blocks(p))]


@numpy_only
@pytest.mark.parametrize("path", RUNNABLE, ids=_id)
def test_code_blocks_run(path, tmp_path):
    runnable = [b for b in code_blocks(path) if b.language in RUN]
    skipped = [(b.line, _missing(b.needs)) for b in runnable if _missing(b.needs)]
    run = [b for b in runnable if not _missing(b.needs)]
    if not run:
        pytest.skip(f"{_id(path)}: no python block to run here "
                    f"({len(runnable)} in all, {len(skipped)} needing what is missing)")
    blocks = tmp_path / "blocks.json"
    blocks.write_text(json.dumps([{"path": str(b.path), "line": b.line, "source": b.source}
                                  for b in run]), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "MPLBACKEND": "Agg", "ANYFC_BACKEND": "numpy",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", RUNNER, str(blocks)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (
        f"a code block of {_id(path)} failed (blocks skipped here: {skipped}):\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}")


def test_every_block_is_labelled_and_few_need_more():
    needing = []
    for path in DOC_FILES:
        for block in code_blocks(path):
            where = f"{_id(path)}:{block.line}"
            assert block.language in RUN | SHOWN, (
                f"{where}: a code block in {block.language or 'no language'}; label it "
                f"{sorted(RUN)} (it runs in the tests) or one of {sorted(SHOWN)}")
            if block.needs:
                assert block.language in RUN, f"{where}: a marker on a block that never runs"
                needing.append(where)
    assert len(needing) <= MAX_NEEDS, (
        f"{len(needing)} code blocks need a GPU or another library ({needing}); at most "
        f"{MAX_NEEDS}: write the others against the NumPy backend")


def test_code_block_parser_reads_languages_markers_and_indented_fences(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        # Title

        ```python
        a = 1
        ```

        1. A step:

           <!-- test: needs dask, gpu -->
           ```python
           b = 2
           ```

        ```{toctree}
        index
        ```

        ````sh
        echo ```
        ````
    """))
    blocks = code_blocks(page)
    assert [(b.line, b.language, b.source, b.needs) for b in blocks] == [
        (4, "python", "a = 1\n", []), (11, "python", "b = 2\n", ["dask", "gpu"]),
        (19, "sh", "echo ```\n", [])]


# ---------------------------------------------------------------- docstring examples

DOCTEST = textwrap.dedent("""
    import doctest, importlib, pkgutil, sys
    import anyfc
    names = ["anyfc"] + sorted(m.name for m in pkgutil.walk_packages(anyfc.__path__, "anyfc.")
                               if m.name != "anyfc.__main__")
    failed = attempted = 0
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # an optional library (dask) is missing here
            print(f"not run: {name} ({exc})")
            continue
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS
                                 | doctest.NORMALIZE_WHITESPACE)
        failed, attempted = failed + result.failed, attempted + result.attempted
    print(f"{attempted} examples, {failed} failed")
    sys.exit(1 if failed or not attempted else 0)
""")


@numpy_only
def test_docstring_examples_run(tmp_path):
    env = {**os.environ, "ANYFC_BACKEND": "numpy", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", DOCTEST], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-8000:]}\n{done.stderr[-3000:]}"


# ---------------------------------------------------------------- the API reference

def _modules() -> list[str]:
    """Every module of the package whose name has no part starting with an underscore."""
    names = ["anyfc"] + [m.name for m in pkgutil.walk_packages(anyfc.__path__, "anyfc.")]
    return sorted(n for n in names if not any(p.startswith("_") for p in n.split(".")))


def public_names(module) -> list[str]:
    """``__all__``, or the classes and functions the module defines and its upper-case
    constants, without a leading underscore."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if inspect.isclass(value) or inspect.isfunction(value):
            if value.__module__ == module.__name__:
                names.append(name)
        elif name.isupper():
            names.append(name)
    return names


DIRECTIVE = re.compile(
    r"^\.\. (?P<kind>auto(?:class|exception|function|data)|automodule)::\s*(?P<name>\S+)"
    r"(?P<body>(?:\n(?:[ ]{3,}.*|[ \t]*))*)", re.MULTILINE)


def _api_pages() -> dict[str, list[tuple[str, str, str]]]:
    """page module -> [(directive, documented name, directive body)]."""
    pages = {}
    for page in sorted(API.glob("anyfc*.rst")):
        pages[page.stem] = [(m["kind"], m["name"], m["body"])
                            for m in DIRECTIVE.finditer(page.read_text(encoding="utf-8"))]
    return pages


def _resolve(name: str):
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def test_every_public_module_has_a_page_or_a_reason():
    pages = _api_pages()
    for name, entries in pages.items():
        assert ("automodule", name, "") in [(k, n, "") for k, n, _ in entries], (
            f"docs/api/{name}.rst does not render its module (.. automodule:: {name})")
    index = (API / "index.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s+(anyfc\S*)\s*$", index, re.MULTILINE))
    assert listed == set(pages), f"docs/api/index.rst lists {sorted(listed ^ set(pages))} wrongly"
    unclassified = [m for m in _modules() if m not in pages and m not in INTERNAL]
    assert not unclassified, (
        f"modules with neither a page in docs/api/ nor a reason in INTERNAL: {unclassified}")
    both = [m for m in INTERNAL if m in pages]
    assert not both, f"{both} have a page but are listed as internal"


def _documented() -> tuple[set[int], set[str]]:
    ids, names = set(), set()
    for entries in _api_pages().values():
        for kind, name, _ in entries:
            if kind == "automodule":
                continue
            names.add(name)
            ids.add(id(_resolve(name)))
    return ids, names


def test_every_public_name_is_in_the_api_reference():
    pages = _api_pages()
    ids, names = _documented()
    missing = []
    for module_name in pages:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            value = getattr(module, name)
            if inspect.ismodule(value):
                if value.__name__ not in pages:
                    missing.append(f"{module_name}.{name} (a module without a page)")
            elif inspect.isclass(value) or inspect.isfunction(value):
                if id(value) not in ids:
                    missing.append(f"{module_name}.{name}")
            elif f"{module_name}.{name}" not in names and not any(
                    n.rpartition(".")[2] == name and _resolve(n) is value for n in names):
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names no page of docs/api/ documents: {missing}"


def _data_doc(module_name: str, name: str) -> bool:
    """A ``#:`` comment before, or a string right after, ``name = ...`` in the module."""
    source = pathlib.Path(importlib.import_module(module_name).__file__).read_text(
        encoding="utf-8")
    lines = source.splitlines()
    body = ast.parse(source).body
    for i, node in enumerate(body):
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            after = body[i + 1] if i + 1 < len(body) else None
            if (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                return True
            return node.lineno >= 2 and lines[node.lineno - 2].strip().startswith("#:")
    return False


def test_every_documented_constant_says_what_it_is():
    bare = []
    for entries in _api_pages().values():
        for kind, name, body in entries:
            if kind != "autodata":
                continue
            text = "\n".join(ln for ln in body.splitlines() if not ln.strip().startswith(":"))
            if not text.strip() and not _data_doc(*name.rsplit(".", 1)):
                bare.append(name)
    assert not bare, (f"constants with no description ({bare}): write a '#:' comment above "
                      "the assignment, or the description under the .. autodata:: directive")


def _members(cls):
    """(name, owner, raw attribute) of the public methods and properties anyfc defines
    on ``cls`` or its bases."""
    seen = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("anyfc"):
            continue
        for name, raw in vars(klass).items():
            if name in seen or (name.startswith("_") and name != "__call__"):
                continue
            if isinstance(raw, (staticmethod, classmethod)):
                raw = raw.__func__
            if inspect.isfunction(raw) or isinstance(raw, property):
                seen.add(name)
                yield name, klass, raw


def _classes():
    for entries in _api_pages().values():
        for kind, name, _ in entries:
            if kind in ("autoclass", "autoexception"):
                yield name, _resolve(name)


def test_every_public_method_and_property_has_a_docstring():
    bare = sorted({f"{owner.__module__}.{owner.__qualname__}.{member}"
                   for _, cls in _classes() for member, owner, _ in _members(cls)
                   if not inspect.getdoc(getattr(cls, member))})
    assert not bare, f"public members without a docstring (own or inherited): {bare}"


def _parameters(function) -> list[str]:
    return [p.name for p in inspect.signature(function).parameters.values()
            if p.name not in ("self", "cls")]


def test_an_override_without_a_docstring_takes_its_parents_parameters():
    """Such an override is documented by its parent's docstring (help(), autodoc)."""
    wrong = []
    for _, cls in _classes():
        for member, owner, raw in _members(cls):
            if isinstance(raw, property) or raw.__doc__ is not None:
                continue
            parent = next((vars(k)[member] for k in owner.__mro__[1:]
                           if member in vars(k)), None)
            if isinstance(parent, (staticmethod, classmethod)):
                parent = parent.__func__
            if inspect.isfunction(parent) and _parameters(parent) != _parameters(raw):
                wrong.append(f"{owner.__qualname__}.{member}{_parameters(raw)} vs "
                             f"{_parameters(parent)}")
    assert not wrong, f"overrides that need a docstring of their own: {wrong}"


# ---------------------------------------------------------------- what the docs promise

def _signature_text(function) -> str:
    return ", ".join(str(p.replace(annotation=inspect.Parameter.empty))
                     for p in inspect.signature(function).parameters.values()
                     if p.name != "self")


def test_the_layer_protocol_in_the_docs_is_the_librarys():
    """docs/layers.md and the Layer docstrings write ``forward(x, training=True)`` and
    ``backward(grad_y, need_grad_x=True)``; the model calls exactly that."""
    expected = {"forward": _signature_text(anyfc.Layer.forward),
                "backward": _signature_text(anyfc.Layer.backward)}
    assert expected == {"forward": "x, training=True", "backward": "grad_y, need_grad_x=True"}
    texts = {"docs/layers.md": (DOCS / "layers.md").read_text(encoding="utf-8"),
             "anyfc.layers.base": inspect.getdoc(importlib.import_module("anyfc.layers.base"))}
    for where, text in texts.items():
        found = re.findall(r"\b(forward|backward)\(((?:x|grad_y)\b[^)]*)\)", text)
        assert {method for method, _ in found} == {"forward", "backward"}, where
        for method, args in found:
            assert args == expected[method], (
                f"{where} writes {method}({args}); the library's is "
                f"{method}({expected[method]})")

    calls = []

    class Spy(anyfc.Layer):
        def __init__(self, backend=None, device=None, dtype=None):
            self.place(backend, device, dtype)

        def forward(self, x, training=True):
            return x

        def backward(self, grad_y, need_grad_x=True):
            calls.append(need_grad_x)
            return grad_y if need_grad_x else None

    import numpy as np

    model = anyfc.Sequential([Spy(), anyfc.Dense(3, 2, seed=0), Spy()])
    model.fit(np.ones((4, 3)), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    assert calls == [True, False], calls  # the top Spy passes ∂E/∂x on; the first need not


def test_readme_keeps_the_quick_start_commands_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    train = ("python3 -m venv .venv && .venv/bin/pip install -e '.[examples]' && "
             ".venv/bin/python examples/train_digits.py")
    suite = "python3 -m venv .venv-nox && .venv-nox/bin/pip install nox && .venv-nox/bin/nox"
    blocks = [b.source.strip() for b in code_blocks(ROOT / "README.md") if b.language == "sh"]
    assert train in blocks and suite in blocks, blocks
    assert readme.index(train) < readme.index(suite) < readme.index("## A short tour")
    assert suite in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


# ---------------------------------------------------------------- the link checker

def _check_links():
    spec = importlib.util.spec_from_file_location("check_links", DOCS / "check_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_link_checker_finds_broken_pages_anchors_and_files(tmp_path):
    site = tmp_path / "html"
    (site / "api").mkdir(parents=True)
    (site / "_static").mkdir()
    (site / "_static" / "style.css").write_text("")
    (site / "index.html").write_text(
        '<html><head><link href="_static/style.css" rel="stylesheet"></head><body>'
        '<h1 id="top">t</h1><a href="api/mod.html#anyfc.f">f</a> <a href="#top">up</a>'
        '<a href="https://example.org/x">out</a> <a href="mailto:a@b">m</a>'
        '<a href="api/mod.html#gone">gone</a> <a href="missing.html">missing</a>'
        '<img src="_static/none.png"></body></html>')
    (site / "api" / "mod.html").write_text(
        '<html><body><dt id="anyfc.f">f</dt><a href="../index.html#top">home</a>'
        '<a name="old"></a><a href="#old">old</a></body></html>')
    problems = _check_links().check(site)
    assert sorted(problems) == sorted([
        "index.html: api/mod.html#gone: no id 'gone' in api/mod.html",
        "index.html: missing.html: no such file",
        "index.html: _static/none.png: no such file"]), problems
