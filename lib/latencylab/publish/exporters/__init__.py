"""One exporter per output format of a report, over the same findings (AIPerf's shape): each module names its
format (`NAME`), the file it writes in the report's folder (`FILE`) and has an `export`.

The document's exporters run in the report notebook's Save cell, on its `Report`: summary_json (summary.json),
samples_csv (samples.csv), latency_md (latency.md + figures/). After the notebook, `render.publish` runs
index_html (index.html: nbconvert on the executed notebook) and the CLI prints terminal's table; both read the
summary.json the notebook wrote, so they speak the report's language.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from latencylab.publish.exporters import latency_md, samples_csv, summary_json

if TYPE_CHECKING:
    from latencylab.publish.document import Report


class Exporter(Protocol):
    """A format written from the document: its name, its file, and the function that writes it into a folder."""

    NAME: str
    FILE: str

    def export(self, doc: Report, folder: Path) -> Path: ...  # into `folder`, which exists


DOCUMENT: tuple[Exporter, ...] = (summary_json, samples_csv, latency_md)
