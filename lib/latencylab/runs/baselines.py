"""Earlier measurements from a CSV of TTFB values (a hand-made study, another tool), shaped as samples.

The CSV needs a `ttfb_ms` column; `ttft_ms`, `e2e_ms` and `note` are read when present. Rows are
requests in the order sent: the first is the `first` phase, the rest `subsequent`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from latencylab.core.errors import BaselineError
from latencylab.runs.columnar import samples_frame

OPTIONAL = ("ttft_ms", "e2e_ms")


def read_baseline_csv(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """The file's requests as samples of one scenario named `name` (default: the file's stem)."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read a CSV: {exc}") from None
    if "ttfb_ms" not in table.columns:
        raise BaselineError(f"{path}: needs a ttfb_ms column (found: {', '.join(map(str, table.columns))})")
    rows = []
    for index, row in table.iterrows():
        record = {
            "run_id": f"external:{path.name}",
            "seq": int(index),
            "scenario": name or path.stem,
            "backend": "external",
            "ok": True,
            "warmup": False,
            "state": "unknown",
            "phase": "first" if index == 0 else "subsequent",
        }
        for column in ("ttfb_ms", *OPTIONAL):
            if column in table.columns and pd.notna(row[column]):
                value = pd.to_numeric(row[column], errors="coerce")
                if pd.isna(value) or value < 0:
                    raise BaselineError(
                        f"{path}: row {int(index) + 2}, {column}: {row[column]!r} is not a duration in ms"
                    )
                record[column] = float(value)
        rows.append(record)
    if not rows:
        raise BaselineError(f"{path}: no rows")
    return samples_frame(rows)
