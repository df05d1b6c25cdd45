"""Sphinx configuration: ``make docs`` builds docs/_build/html offline (no downloads, no notebook runs)."""

from __future__ import annotations

import inspect
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # document this checkout, installed or not

import regdecoder  # noqa: E402

project = "regdecoder"
author = "regdecoder developers"
copyright = "regdecoder developers"  # noqa: A001
release = regdecoder.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # numpy-style docstrings
    "sphinx.ext.mathjax",
    "myst_nb",  # Markdown (the README) and the tutorials' stored outputs
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# --- API reference: one page per public module, listing its __all__
autosummary_generate = True
autosummary_ignore_module_all = False  # a module's members are its __all__
autosummary_imported_members = True  # the public names are imported from private files
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# --- Markdown and notebooks: render the stored outputs, never execute (offline, fast)
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"regdecoder {release}"
html_static_path: list[str] = []


def _copy_tutorials() -> None:
    """The notebooks live in tutorials/ at the top of the repository; Sphinx reads docs/ only."""
    dest = HERE / "tutorials"
    dest.mkdir(exist_ok=True)
    for nb in sorted((ROOT / "tutorials").glob("*.ipynb")):
        target = dest / nb.name
        if not target.exists() or target.read_bytes() != nb.read_bytes():
            shutil.copyfile(nb, target)


#: the modules of the API reference, in the order shown
API_MODULES = ("sim", "pp", "tl", "pl", "get", "metrics", "datasets", "nn", "train")


def _write_api_pages() -> None:
    """One page per public module listing its ``__all__`` (so the reference follows the code)."""
    dest = HERE / "api"
    dest.mkdir(exist_ok=True)
    for name in API_MODULES:
        mod = getattr(regdecoder, name)
        title = f"rd.{name}"
        lines = [
            title,
            "=" * len(title),
            "",
            f".. automodule:: regdecoder.{name}",
            "   :no-members:",
            "",
            f".. currentmodule:: regdecoder.{name}",
            "",
            ".. autosummary::",
            "   :toctree: generated",
            "   :nosignatures:",
            "",
            *(f"   {item}" for item in mod.__all__),
            "",
        ]
        text = "\n".join(lines)
        page = dest / f"{name}.rst"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)


def _drop_inherited_data_docstrings(app, what, name, obj, options, lines) -> None:
    """A module constant (a dict, a tuple, a Recipe) has no docstring of its own: do not show its type's
    (napoleon may have rewritten it already, so the first line is compared)."""
    if what in ("data", "attribute") and lines and type(obj).__doc__ and not isinstance(obj, type):
        first = next((ln.strip() for ln in lines if ln.strip()), "")
        type_first = inspect.cleandoc(type(obj).__doc__).strip().splitlines()[0]
        if first == type_first:
            lines.clear()


_BARS = re.compile(r"(?<![\\|\w`])\|(\w+)\|(?![\w|`])")


def _escape_absolute_values(app, what, name, obj, options, lines) -> None:
    """``|PCC|`` in a docstring means an absolute value, not an reST substitution: escape the bars.

    Core docstrings that need this (to be written as ``|PCC|`` in double backquotes, after which
    this hook can go): regdecoder/metrics/_pcc.py (match_factors), regdecoder/metrics/_recovery.py
    (recovery).
    """
    for i, line in enumerate(lines):
        if not line.lstrip().startswith(("|", "+")):  # leave tables and line blocks alone
            lines[i] = _BARS.sub(r"\\|\1\\|", line)


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _drop_inherited_data_docstrings)
    app.connect("autodoc-process-docstring", _escape_absolute_values)


_copy_tutorials()
_write_api_pages()
