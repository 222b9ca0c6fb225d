"""Sphinx configuration for fastpool's documentation (built by .ci/docs, warnings as errors)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Document the tree this file belongs to, whatever is installed; the public classes are the same
# on both backends, so the pure twins do and a clone need not be compiled.
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FASTPOOL_NO_EXTENSIONS", "1")

project = "fastpool"
author = "the fastpool developers"
copyright = "the fastpool developers"
version = release = importlib.import_module("fastpool").__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Markdown: heading anchors so pages can link to each other's sections (page.md#a-heading).
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = f"fastpool {release}"
