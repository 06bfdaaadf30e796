"""samples.csv: every sample of the report (failed and warm-up ones included), with its run label."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from latencylab.publish.document import Report


NAME = "csv"
FILE = "samples.csv"


def export(doc: Report, folder: Path) -> Path:
    """The samples as the findings hold them, less the label column (the `run` column names the run)."""
    path = folder / FILE
    frame = doc.findings.samples.drop(columns=["label"])
    # pandas formats a nullable float column a value at a time in Python (5.4 of the 8.3 s that 200 000 samples
    # took); as float64, with NaN for <NA>, the same text comes out in 4.6 s all told
    frame = frame.astype({c: float for c in frame if isinstance(frame[c].dtype, pd.Float64Dtype)})
    # each request's gaps as the list they were recorded as (loaded runs hold them as NumPy arrays)
    frame["itl_ms"] = frame["itl_ms"].map(lambda gaps: str(gaps.tolist()) if isinstance(gaps, np.ndarray) else gaps)
    frame.to_csv(path, index=False)
    return path
