"""latency.md with figures/ beside it: the document as Markdown, its figures as the PNGs the HTML embeds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from latencylab.publish.document import Report

NAME = "markdown"
FILE = "latency.md"


def export(doc: Report, folder: Path) -> Path:
    """latency.md (`Report.text`, linking figures/<name>.png) and the PNGs handed to the document: the same bytes
    the HTML embeds."""
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    path = folder / FILE
    path.write_text(doc.text(), encoding="utf-8")
    for fig in doc.drawn():
        (figures / f"{fig.name}.png").write_bytes(fig.png)
    return path
