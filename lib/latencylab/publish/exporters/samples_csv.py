"""samples.csv: every sample of the report (failed and warm-up ones included), with its run label."""

from __future__ import annotations

from pathlib import Path

from latencylab.publish.document import Report

NAME = "csv"
FILE = "samples.csv"


def export(doc: Report, folder: Path) -> Path:
    """The samples as the findings hold them, less the label column (the `run` column names the run)."""
    path = folder / FILE
    doc.findings.samples.drop(columns=["label"]).to_csv(path, index=False)
    return path
