"""Sphinx configuration of anyfc's documentation (``nox -s docs`` builds it).

The API reference is generated from the docstrings (numpydoc style) of the source tree
next to this folder; the examples (``examples/*.py``) become a gallery with
sphinx-gallery, the quick ones executed on the CPU (``_gallery.py``); the narrative pages
are Markdown (MyST), and their code blocks run in the test suite
(``tests/project/test_docs.py``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the source tree beside this folder
sys.path.insert(0, str(DOCS))  # _gallery
os.environ.setdefault("ANYFC_BACKEND", "numpy")

import _gallery  # noqa: E402

import anyfc  # noqa: E402

project = "anyfc"
author = "the anyfc developers"
copyright = "the anyfc developers"  # noqa: A001
release = version = anyfc.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json"]
nitpicky = True
suppress_warnings: list[str] = []

# ---------------------------------------------------------------- Markdown pages
myst_enable_extensions = ["dollarmath", "deflist"]
myst_heading_anchors = 3  # "training.md#callbacks" links resolve to the section

# ---------------------------------------------------------------- API reference
autodoc_typehints = "none"  # the types are in the numpydoc Parameters sections
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autosummary_generate = False

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = False
# The docstring checks: the build fails (-W) on any of these in a rendered docstring.
#   GL08  the object has no docstring
#   SS01  no one-line summary;  SS03  the summary does not end with a period
#   PR01  a parameter of the signature is not documented;  PR02  a documented parameter
#         is not in the signature;  PR03  documented in another order
#   PR06  a type spelt "string"/"integer"/"boolean";  PR10  "name:type" with no space
#   GL06  an unknown section;  GL07  sections in the wrong order
#   RT02  a Returns entry that is only a name where a type is needed
# An override without a docstring of its own is not rendered (see _skip_member): its
# parent documents it, and tests/project/test_docs.py checks that it takes the parent's
# parameters and that every public method and property has a docstring.
numpydoc_validation_checks = {"GL06", "GL07", "GL08", "SS01", "SS03", "PR01", "PR02",
                              "PR03", "PR06", "PR10", "RT02"}
# constants (autodata) are described by a #: comment, which numpydoc cannot see: it would
# validate the docstring of the value's type (str, dict) instead
numpydoc_validation_exclude = {
    rf"^{re.escape(name)}$"
    for page in (DOCS / "api").glob("*.rst")
    for name in re.findall(r"^\.\. autodata:: (\S+)", page.read_text(encoding="utf-8"),
                           re.MULTILINE)}

# ---------------------------------------------------------------- gallery
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": _gallery.FILENAME_PATTERN,  # executed; the others are shown
    "reset_argv": "_gallery.argv",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "backreferences_dir": None,
    "doc_module": (),
    "image_scrapers": ("matplotlib",),
    "remove_config_comments": True,
    "show_memory": False,
    "show_signature": False,
    "write_computation_times": False,
}

# ---------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"anyfc {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 8,
}
html_show_sourcelink = False


# ---------------------------------------------------------------- autodoc hooks
def _is_anyfc(obj) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "anyfc" or module.startswith("anyfc.")


def _own_doc(obj) -> str | None:
    return getattr(getattr(obj, "fget", obj), "__doc__", None)


def _skip_member(app, what, name, obj, skip, options):
    """Document anyfc's own members only (not what a base class of another library, such
    as scikit-learn's metadata routing, adds), and an override only where it says more
    than the method it overrides: without a docstring of its own it is documented once,
    on the base class (tests/project/test_docs.py checks that it takes the base's
    parameters)."""
    if what != "class" or skip:
        return None
    target = getattr(obj, "__func__", getattr(obj, "fget", obj))
    if callable(target) and not _is_anyfc(target):
        return True
    if callable(target) and _own_doc(target) is None:
        return True
    return None


def _public_bases(app, name, obj, options, bases):
    """Show a class's public bases: a private base (``_Norm``) is replaced by its own."""
    shown: list = []

    def add(base):
        if base.__name__.startswith("_") and base is not object:
            for b in base.__bases__:
                add(b)
        elif base not in shown:
            shown.append(base)

    for base in list(bases):
        add(base)
    bases[:] = [b for b in shown if b is not object] or [object]


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-bases", _public_bases)


# other libraries' classes appear as bases (scikit-learn's mixins) but are not ours to
# document: the offline build has no intersphinx inventory to link them to
nitpick_ignore_regex = [("py:class", r"sklearn\..*")]
