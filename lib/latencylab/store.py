"""Runs on disk: `data/runs/<run_id>/run.json` + append-only `samples.jsonl`, and loading into pandas."""

from __future__ import annotations

import json
import os
import platform
import sys
import warnings
from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__, paths
from .errors import LatencyLabError
from .sample import Sample

RUN_STATUSES = ("running", "complete", "interrupted", "failed")

# Column dtypes of `load_run()`; nullable pandas types, so a missing figure is <NA>, never 0.
_DTYPE_BY_TYPE = {"str": "string", "str | None": "string", "int": "Int64", "int | None": "Int64",
                  "float": "Float64", "float | None": "Float64", "bool": "boolean",
                  "bool | None": "boolean", "list[float]": "object"}
SAMPLE_DTYPES: dict[str, str] = {f.name: _DTYPE_BY_TYPE[str(f.type)] for f in fields(Sample)}


class RunNotFound(LatencyLabError, FileNotFoundError):
    """A run id with no folder under data/runs/."""


class CorruptRun(LatencyLabError, ValueError):
    """A samples.jsonl with a broken line that is not the last one (a killed run only tears the last)."""


def new_run_id(study_name: str, now: datetime | None = None) -> str:
    """UTC timestamp + study name: sortable and readable (`20261127T044512Z-embedded-demo`)."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{study_name}"


def free_run_id(study_name: str) -> str:
    """A new run id whose folder does not exist yet (`-2`, `-3`… when two runs start in one second)."""
    base = new_run_id(study_name)
    candidate, n = base, 1
    while paths.run_dir(candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def host_info() -> dict[str, Any]:
    """The machine a run measured from."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "ram_bytes": ram,
    }


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunWriter:
    """Writes one run; every sample is on disk (flushed) as soon as `append` returns."""

    def __init__(self, run_id: str, *, study: dict[str, Any], settings: dict[str, Any], resume: bool = False) -> None:
        self.run_id = run_id
        self.dir = paths.run_dir(run_id)
        if resume:
            self.meta = read_meta(run_id)
            self.meta["status"] = "running"
            self.meta.setdefault("resumed_at", []).append(_utc_now())
            self._write_meta()
            self._drop_torn_line()
            self._samples = open(self.dir / "samples.jsonl", "a", encoding="utf-8")
            return
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir()  # fails if the folder exists: two runs never share one
        self.meta: dict[str, Any] = {
            "run_id": run_id,
            "status": "running",
            "started_at": _utc_now(),
            "ended_at": None,
            "study": study,
            "settings": settings,
            "versions": {"latencylab": __version__, "python": sys.version.split()[0]},
            "host": host_info(),
        }
        self._write_meta()
        self._samples = open(self.dir / "samples.jsonl", "a", encoding="utf-8")

    def _drop_torn_line(self) -> None:
        """Cut a sample that a killed run left half-written (it never completed), so appends start clean."""
        data = self.samples_path.read_bytes() if self.samples_path.exists() else b""
        if data and not data.endswith(b"\n"):
            with open(self.samples_path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    @property
    def samples_path(self) -> Path:
        return self.dir / "samples.jsonl"

    def _write_meta(self) -> None:
        _write_meta(self.dir, self.meta)

    def update(self, **meta: Any) -> None:
        """Record more metadata (server version, engine settings) in run.json."""
        self.meta.update(meta)
        self._write_meta()

    def append(self, sample: Sample) -> None:
        self._samples.write(json.dumps(sample.to_dict(), allow_nan=False) + "\n")
        self._samples.flush()

    def close(self, status: str) -> None:
        """Close the samples file and record the final status."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self._samples.close()
        self.update(status=status, ended_at=_utc_now())


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    tmp = folder / "run.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    tmp.replace(folder / "run.json")  # atomic: a reader never sees half a file


def settle_status(run_id: str, status: str) -> None:
    """Record `status` for a run still marked running whose writer could not close it (a killed kernel)."""
    try:
        meta = read_meta(run_id)
    except RunNotFound:
        return
    if meta.get("status") == "running":
        _write_meta(paths.run_dir(run_id), {**meta, "status": status})


def read_meta(run_id: str) -> dict[str, Any]:
    """A run's run.json."""
    path = paths.run_dir(run_id) / "run.json"
    if not path.exists():
        known = ", ".join(list_runs()[-5:]) or "none yet"
        raise RunNotFound(f"no run {run_id!r} in {paths.RUNS_DIR} (latest: {known})")
    return json.loads(path.read_text(encoding="utf-8"))


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Parse samples.jsonl; a torn last line (a killed run) is skipped with a warning."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                warnings.warn(f"{path}:{number}: skipped a torn last line (the run was cut off)", stacklevel=2)
                continue
            raise CorruptRun(
                f"{path}:{number}: not a JSON sample ({exc.msg}); the file is corrupt: mend or delete that line"
            ) from exc
    return records


def samples_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Samples as a DataFrame with the documented `SAMPLE_DTYPES` (unknown keys are kept as-is)."""
    frame = pd.DataFrame.from_records(list(records), columns=None)
    for column, dtype in SAMPLE_DTYPES.items():
        if column not in frame:
            frame[column] = pd.Series([None] * len(frame), dtype="object")
        if dtype != "object":
            frame[column] = frame[column].astype(dtype)
    return frame


def load_run(run_id: str) -> pd.DataFrame:
    """One run's samples, one row per request (failed ones included, `ok` False)."""
    read_meta(run_id)  # a clear error for an unknown run
    return samples_frame(read_samples(paths.run_dir(run_id) / "samples.jsonl"))


def load_runs(run_ids: Iterable[str]) -> pd.DataFrame:
    """Several runs' samples in one DataFrame (`run_id` tells them apart)."""
    frames = [load_run(run_id) for run_id in run_ids]
    if not frames:
        return samples_frame([])
    return pd.concat(frames, ignore_index=True)


def list_runs() -> list[str]:
    """Every run id on disk, oldest first."""
    if not paths.RUNS_DIR.exists():
        return []
    return sorted(p.name for p in paths.RUNS_DIR.iterdir() if (p / "run.json").exists())
