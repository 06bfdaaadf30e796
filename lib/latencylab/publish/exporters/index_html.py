"""index.html: the executed report notebook as one self-contained page without code (nbconvert), figures
embedded. It runs after the notebook, in the language and under the title its summary.json records."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

from latencylab.publish import templating
from latencylab.publish.exporters import summary_json

NAME = "html"
FILE = "index.html"
# templates/latencylab: the lab template, minus CDN scripts.
TEMPLATE = "latencylab"
# Cells tagged remove_cell talk to notebook users; `explore` cells show the DataFrames behind a section.
HIDDEN_TAGS = {"remove_cell", "explore"}


def export(executed: Path, folder: Path) -> Path:
    """Convert `executed` to folder/index.html; its <title> is the report's title in the report's language (where
    the notebook wrote no summary.json, nbconvert's default: the notebook's name)."""
    notebook = nbformat.read(executed, as_version=4)
    summary = summary_json.read(folder) or {}
    lang = summary.get("lang") or "en"
    if summary:
        notebook.metadata["title"] = templating.heading(summary.get("study"), lang)
    exporter = HTMLExporter(extra_template_basedirs=[str(templating.TEMPLATES)], template_name=TEMPLATE,
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True, language_code=lang)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags=HIDDEN_TAGS), enabled=True)
    body, _ = exporter.from_notebook_node(notebook)
    path = folder / FILE
    path.write_text(body, encoding="utf-8")
    return path
