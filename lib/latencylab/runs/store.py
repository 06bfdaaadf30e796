"""Runs on disk: `data/runs/<run_id>/` with run.json (`RunMeta`), append-only samples.jsonl (the journal), its
columnar copy samples.parquet (`columnar`) and a lock file; loading into pandas."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from latencylab import __version__
from latencylab.core import paths
from latencylab.core.errors import CorruptRun, RunExists, RunLocked, RunNotFound
from latencylab.core.sample import SAMPLE_DTYPES as SAMPLE_DTYPES  # the documented dtypes of load_run()
from latencylab.core.sample import Sample
from latencylab.plan.check import CheckResult
from latencylab.plan.facts import HostFacts, RunFacts
from latencylab.plan.study import StudySpec, SweepSpec

if TYPE_CHECKING:  # pandas and pyarrow (`columnar`) are imported by the functions that read samples: listing runs,
    # and writing one, need neither (`latencylab --help`, `runs` and `check` start at once)
    import pandas as pd
    import pyarrow as pa

SCHEMA_VERSION = 2  # of run.json; 1 (no schema_version) kept the resolved study under settings.resolved
RunStatus = Literal["prepared", "running", "complete", "interrupted", "failed"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
LOCK_FILE = "lock"  # flock'd by the one process writing the run; holds its pid


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Resume(BaseModel):
    """One time a stopped run was taken up again."""

    at: str
    samples_kept: int  # finished samples it already had
    next_seq: int | None = None  # the first request it sent again
    engine_restarted: bool = False  # the embedded engine started afresh: nothing was resident


class RunMeta(BaseModel):
    """run.json: what was run (the resolved study), where, with what, and how it went."""

    model_config = ConfigDict(extra="allow")  # fields a newer latencylab added are kept, not lost

    schema_version: int = SCHEMA_VERSION
    run_id: str
    status: RunStatus = "prepared"
    started_at: str | None = None  # when the run was created
    ended_at: str | None = None
    study: StudySpec | None = None  # resolved: sweep expanded, --base-url applied
    study_as_written: dict[str, Any] = Field(default_factory=dict)  # the study file's mapping
    planned_requests: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    # `HostFacts` (collect.gather.host_facts); runs before issue 17: hostname, platform, machine, processor,
    # cpu_count, ram_bytes (`analyse.findings.run_info` reads both)
    host: dict[str, Any] = Field(default_factory=dict)
    server: dict[str, Any] = Field(default_factory=dict)  # facts about the server(s): kind, version, command…
    event_loop: str | None = None  # "uvloop" or "asyncio": the loop that took the timestamps
    # Python's garbage collections while collecting (collect.loops.HeldGc): at quiet points between levels, and
    # forced while requests were in flight (each a pause of the stamps); None for runs before issue 20
    gc_collections: dict[str, int] | None = None
    # the server's own metrics (collect.scrape): the interval, each endpoint's scenarios, why others were not scraped
    server_metrics: dict[str, Any] = Field(default_factory=dict)
    gpus: list[dict[str, Any]] = Field(default_factory=list)  # NVIDIA GPUs NVML saw at creation (gpu.GpuDevice)
    resumes: list[Resume] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Read schema 1 (settings.resolved, study as written, resumed_at) as schema 2."""
        if not isinstance(data, dict) or "schema_version" in data or not (
            {"settings", "resumed_at"} & data.keys() or isinstance(data.get("study"), dict)
        ):
            return data
        data = dict(data)
        settings = data.pop("settings", None) or {}
        data["study_as_written"] = data.pop("study", None) or {}
        if settings.get("resolved"):
            data["study"] = settings["resolved"]
        data["planned_requests"] = settings.get("planned_requests")
        data["resumes"] = [{"at": at, "samples_kept": 0} for at in data.pop("resumed_at", [])]
        data["schema_version"] = SCHEMA_VERSION
        return data

    @field_validator("study", mode="before")
    @classmethod
    def _expanded(cls, value: Any) -> Any:
        """A resolved study holds its sweep's scenarios already: validate without expanding them again."""
        if isinstance(value, dict) and value.get("sweep") and value.get("scenarios"):
            sweep = SweepSpec.model_validate(value["sweep"])
            return StudySpec.model_validate({**value, "sweep": None}).model_copy(update={"sweep": sweep})
        return value

    @property
    def name(self) -> str:
        """The study's name (the run id's when the record has no study)."""
        return self.study.name if self.study else str(self.study_as_written.get("name", self.run_id))

    @property
    def description(self) -> str:
        """The study's description, from the study as written where the resolved one has none (schema 1)."""
        return (self.study.description if self.study else "") or str(self.study_as_written.get("description", ""))


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


def exists(run_id: str) -> bool:
    """Whether run `run_id` has a folder under data/runs/."""
    return paths.run_dir(run_id).exists()


def refuse_existing(run_id: str) -> None:
    """`RunExists` when the run id is taken: two runs never share a folder."""
    if exists(run_id):
        raise RunExists(f"run {run_id!r} already exists in {paths.RUNS_DIR}; choose another run id")


def _save_meta(meta: RunMeta) -> None:
    """The one place run.json is written: a temporary file, then an atomic rename."""
    folder = paths.run_dir(meta.run_id)
    tmp = folder / f"run.json.{os.getpid()}.tmp"
    tmp.write_text(meta.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, folder / "run.json")  # a reader never sees half a file


def create_run(run_id: str, *, study: StudySpec | None = None, study_as_written: dict[str, Any] | None = None,
               planned_requests: int | None = None, server: dict[str, Any] | None = None,
               gpus: list[dict[str, Any]] | None = None, host: HostFacts | None = None) -> RunMeta:
    """Make the run's folder with its run.json (status `prepared`) and an empty samples.jsonl; once. `host` is the
    machine the run measures from, as the caller gathered it."""
    folder = paths.run_dir(run_id)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()  # fails if the folder exists: two runs never share one
    except FileExistsError:
        raise RunExists(f"run {run_id!r} already exists in {paths.RUNS_DIR}; choose another run id") from None
    meta = RunMeta(run_id=run_id, started_at=utc_now(), study=study, study_as_written=study_as_written or {},
                   planned_requests=planned_requests, server=server or {}, gpus=gpus or [],
                   versions={"latencylab": __version__, "python": sys.version.split()[0]},
                   host=host.model_dump(mode="json") if host else {})
    (folder / "samples.jsonl").touch()
    _save_meta(meta)
    return meta


class RunWriter:
    """The one writer of a run: holds its lock, appends samples (on disk as soon as `append` returns), and
    writes run.json. Opening fails with `RunLocked` while another process writes the run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.dir = paths.run_dir(run_id)
        load_meta(run_id)  # RunNotFound before anything is touched
        self._lock = _acquire(self.dir, run_id)
        self.meta = load_meta(run_id)  # as the last writer left it
        self._drop_torn_line()
        self._samples = open(self.samples_path, "a", encoding="utf-8")

    @property
    def samples_path(self) -> Path:
        return self.dir / "samples.jsonl"

    def _drop_torn_line(self) -> None:
        """Cut a sample that a killed run left half-written (it never completed), so appends start clean."""
        data = self.samples_path.read_bytes() if self.samples_path.exists() else b""
        if data and not data.endswith(b"\n"):
            with open(self.samples_path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def update(self, **changes: Any) -> None:
        """Change fields of run.json (status, server facts, a resume) and write it at once."""
        self.meta = self.meta.model_copy(update=changes)
        _save_meta(self.meta)

    def append(self, sample: Sample) -> None:
        self._samples.write(json.dumps(sample.to_dict(), allow_nan=False) + "\n")
        self._samples.flush()

    def close(self, status: RunStatus) -> None:
        """Record the final status, write the samples' columnar copy (samples.parquet) and let go of the run."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        try:
            self.update(status=status, ended_at=utc_now())
            self._samples.close()
            from latencylab.runs import columnar

            from latencylab.runs import server_metrics

            for copy in (columnar, server_metrics):
                try:
                    copy.write(self.dir)
                except (OSError, ValueError) as exc:  # the next load builds it from the journal, and says why not
                    warnings.warn(f"{self.dir / copy.PARQUET} not written: {exc}", stacklevel=2)
        finally:
            self.release()

    def release(self) -> None:
        """Close the samples file and let go of the run, its status unchanged."""
        self._samples.close()
        self._lock.close()  # closing the file releases the flock


def _acquire(folder: Path, run_id: str) -> IO[str]:
    """An exclusive flock on the run's lock file, which then holds this process's pid."""
    lock = open(folder / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise RunLocked(f"run {run_id} is being written by process {holder}; wait for it to end "
                        f"(or stop it) before resuming") from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def load_meta(run_id: str) -> RunMeta:
    """A run's run.json, as a `RunMeta` (an older run.json is read as the current schema)."""
    path = paths.run_dir(run_id) / "run.json"
    if not path.exists():
        known = ", ".join(list_runs()[-5:]) or "none yet"
        raise RunNotFound(f"no run {run_id!r} in {paths.RUNS_DIR} (latest: {known})")
    try:
        return RunMeta.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(top level)"
        raise CorruptRun(f"{path}: not a run record ({where}: {first['msg']})") from None


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Parse samples.jsonl into dicts; a torn last line (a killed run) is skipped with a warning."""
    from latencylab.runs import columnar

    return columnar.read_records(path)


def finished(path: Path, columns: list[str]) -> pa.Table:
    """`columns` of the samples of requests that ended (any way but `interrupted`: a resume sends the others
    again), in the journal's order; read in pieces, so a resume of a long run holds these columns only."""
    import pyarrow.compute as pc

    from latencylab.runs import columnar

    table = columnar.read_columns(path, list(dict.fromkeys([*columns, "error_kind"])))
    ended = pc.invert(pc.fill_null(pc.equal(table.column("error_kind"), "interrupted"), False))
    return table.filter(ended).select(columns)


def load_run(run_id: str) -> pd.DataFrame:
    """One run's samples, one row per request (failed ones included, `ok` False; a request that a resume
    sent again appears once, with its finished sample). Read from samples.parquet, built from the journal when
    it is missing or older; a run still being written is read from its journal."""
    from latencylab.runs import columnar

    folder, writable = _samples_folder(run_id)
    return columnar.load(folder, writable=writable)


def prepare_run(run_id: str) -> None:
    """Ready a run's samples for `load_run` (samples.parquet built where it is missing or older) without loading
    them: an unknown run or an unreadable journal is said here, before a report notebook starts."""
    from latencylab.runs import columnar

    folder, writable = _samples_folder(run_id)
    columnar.prepare(folder, writable=writable)


def _samples_folder(run_id: str) -> tuple[Path, bool]:
    """The run's folder, and whether its Parquet copy may be written (no process is appending to the run)."""
    meta = load_meta(run_id)  # a clear error for an unknown run
    folder = paths.run_dir(run_id)
    return folder, not (meta.status == "running" and _locked(folder))


def _locked(folder: Path) -> bool:
    """Whether a process holds the run's lock (is appending to it) right now; taken and let go at once."""
    try:
        lock = open(folder / LOCK_FILE, "rb")  # read-only: a read-only folder is asked too
    except FileNotFoundError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def load_runs(run_ids: Iterable[str]) -> pd.DataFrame:
    """Several runs' samples in one DataFrame (`run_id` tells them apart)."""
    import pandas as pd

    from latencylab.runs import columnar

    frames = [load_run(run_id) for run_id in run_ids]
    if not frames:
        return columnar.samples_frame([])
    return pd.concat(frames, ignore_index=True)


def list_runs() -> list[str]:
    """Every run id on disk, oldest first."""
    if not paths.RUNS_DIR.exists():
        return []
    return sorted(p.name for p in paths.RUNS_DIR.iterdir() if (p / "run.json").exists())


def save_check(result: CheckResult, run_id: str) -> Path:
    """Write the run's `check.json` (the check's findings and budget; the facts go to facts.json)."""
    path = paths.run_dir(run_id) / "check.json"
    path.write_text(json.dumps(result.to_dict(with_facts=False), indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def read_check(run_id: str) -> list[dict[str, Any]] | None:
    """The findings of the run's check.json; None for a run without one."""
    path = paths.run_dir(run_id) / "check.json"
    return json.loads(path.read_text(encoding="utf-8")).get("findings", []) if path.exists() else None


def save_facts(run_facts: RunFacts, run_id: str) -> Path:
    """Write the run's `facts.json` (the servers' facts before the first request and after the last)."""
    path = paths.run_dir(run_id) / "facts.json"
    path.write_text(run_facts.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return path


def read_facts(run_id: str) -> dict[str, Any]:
    """The run's facts.json as a mapping; empty for a run from before facts.json, or cut off before it."""
    try:
        return json.loads((paths.run_dir(run_id) / "facts.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
