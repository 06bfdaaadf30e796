"""The server's own metrics, as a run scraped them (`collect.scrape`): the journal server_metrics.jsonl, a line per
scrape of one endpoint, and its columnar copy server_metrics.parquet, a row per quantity of a scrape:

    run, t (Unix seconds, the scrape's middle), endpoint, quantity, value, source (the server's metric name)

An endpoint is one server (or one model's instance of the embedded engine); run.json's `server_metrics` says which
scenarios each serves and why one was not scraped. `load` gives each row once per scenario its endpoint serves."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from latencylab.core import paths

JOURNAL = "server_metrics.jsonl"
PARQUET = "server_metrics.parquet"
COLUMNS = ["run", "t", "endpoint", "quantity", "value", "source"]
LOADED = ["run", "scenario", "t", "endpoint", "quantity", "value", "source"]
SCHEMA = pa.schema([("run", pa.string()), ("t", pa.float64()), ("endpoint", pa.string()), ("quantity", pa.string()),
                    ("value", pa.float64()), ("source", pa.string())])


def _rows(journal: Path, run_id: str) -> dict[str, list[object]]:
    """The journal's scrapes as columns; a torn last line (a killed run) is left out."""
    columns: dict[str, list[object]] = {name: [] for name in COLUMNS}
    with open(journal, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                scrape = json.loads(line)
            except json.JSONDecodeError:
                warnings.warn(f"{journal}: line {number} is not a scrape (cut short?); left out", stacklevel=3)
                continue
            for quantity, (value, source) in scrape["values"].items():
                for name, item in zip(COLUMNS, (run_id, scrape["t"], scrape["endpoint"], quantity, value, source),
                                      strict=True):
                    columns[name].append(item)
    return columns


def write(folder: Path) -> Path | None:
    """Write the journal's columnar copy beside it; None where the run scraped nothing."""
    journal = folder / JOURNAL
    if not journal.exists():
        return None
    table = pa.table(_rows(journal, folder.name), schema=SCHEMA)
    pq.write_table(table, folder / PARQUET)
    return folder / PARQUET


def load(run_ids: Iterable[str]) -> pd.DataFrame:
    """The runs' scrapes (`LOADED`): from the columnar copy where it is as new as the journal, each row once per
    scenario its endpoint serves (run.json's `server_metrics.endpoints`)."""
    from latencylab.runs.store import load_meta

    frames = []
    for run_id in run_ids:
        folder = paths.run_dir(run_id)
        journal, columnar = folder / JOURNAL, folder / PARQUET
        if columnar.exists() and (not journal.exists() or columnar.stat().st_mtime >= journal.stat().st_mtime):
            table = pq.read_table(columnar, schema=SCHEMA)
        elif journal.exists():
            table = pa.table(_rows(journal, run_id), schema=SCHEMA)
        else:
            continue
        served = load_meta(run_id).server_metrics.get("endpoints", {})
        scenarios = pd.DataFrame([(key, name) for key, names in served.items() for name in names],
                                 columns=["endpoint", "scenario"])
        frames.append(table.to_pandas().merge(scenarios, on="endpoint")[LOADED])
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=float if name in ("t", "value") else str) for name in LOADED})
    return pd.concat(frames, ignore_index=True)
