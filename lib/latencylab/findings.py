"""What a report states, as data: numbers, flags and tables, no words (`analysis.findings()` fills it).

A scenario is identified by its run label and its name (`Key`), so runs that reuse a name stay apart.
Every table is a DataFrame indexed by `run`, `scenario` (and more levels where it says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

Key = tuple[str, str]  # (run label, scenario name)
STATUSES = ("pass", "fail", "inconclusive", "no_evidence")


@dataclass(frozen=True)
class RunInfo:
    """The facts of one run's run.json that a report shows (`run_info()` is the one place that reads it)."""

    run_id: str
    label: str
    study: str = ""
    description: str = ""
    status: str = ""
    started_at: str = ""
    ended_at: str = ""
    server: str = ""
    server_version: str = ""
    platform: str = ""
    cpu_count: int | None = None
    ram_bytes: int | None = None
    gpu: bool = False
    latencylab_version: str = ""
    python_version: str = ""
    lang: str = "en"
    targets: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → runner settings
    sweep: bool = False


RUNNER_KEYS = ("backend", "model", "keep_alive", "preload", "idle_gap_s", "options")


def run_info(meta: dict[str, Any]) -> RunInfo:
    """A run.json (as a dict) as `RunInfo`; its label is the run id until runs are given labels."""
    resolved = meta.get("settings", {}).get("resolved", {})
    host, server, versions = meta.get("host", {}), meta.get("server", {}), meta.get("versions", {})
    backend = resolved.get("backend")
    scenarios = {
        s["name"]: {**{k: s.get(k) for k in RUNNER_KEYS}, "backend": s.get("backend") or backend}
        for s in resolved.get("scenarios", [])
    }
    return RunInfo(
        run_id=str(meta.get("run_id", "")),
        label=str(meta.get("run_id", "")),
        study=str(meta.get("study", {}).get("name", "")),
        description=str(meta.get("study", {}).get("description", "") or ""),
        status=str(meta.get("status", "")),
        started_at=str(meta.get("started_at", "") or ""),
        ended_at=str(meta.get("ended_at", "") or ""),
        server=str(server.get("kind") or backend or ""),
        server_version=str(server.get("version", "") or ""),
        platform=str(host.get("platform", "") or ""),
        cpu_count=host.get("cpu_count"),
        ram_bytes=host.get("ram_bytes"),
        gpu=bool(meta.get("gpu")),
        latencylab_version=str(versions.get("latencylab", "") or ""),
        python_version=str(versions.get("python", "") or ""),
        lang=str(resolved.get("lang", "en") or "en"),
        targets=dict(resolved.get("targets") or {}),
        scenarios=scenarios,
        sweep=bool(resolved.get("sweep")),
    )


@dataclass(frozen=True)
class Step:
    """One next step the data calls for: its kind (a catalog key `next_<kind>`), whom it is about, its numbers."""

    kind: str
    key: Key | None = None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Headline:
    """The summary's facts: the change against the baseline, its interval, and targets passed before/after."""

    scenario: Key | None
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    verdict: str | None
    median_before: float | None
    median_after: float | None
    changed: list[str]  # settings that differ from the baseline
    targets_passed: dict[Key, tuple[int, int]]  # key → (passed, judged)
    finding: Step | None  # the most important of the next steps


@dataclass(frozen=True)
class FigureFacts:
    """What figure titles and notes state: fastest and slowest medians, loads paid, CVs under the goal."""

    fastest: Key | None
    slowest: Key | None
    medians: dict[Key, float]
    paid: int
    measured: int
    paid_share: float | None
    cv_below_goal: int | None
    cv_count: int
    targets_passed: int
    targets_judged: int
    load_share_of_ttft: tuple[Key, float] | None  # the key whose loads weigh most in its mean TTFT
    has_ttft: bool  # whether any request has a TTFT to decompose
    targets_measured: bool  # whether any target has a measured value to draw
    rest_negative: int  # requests whose server figures add up to more than the client measured


@dataclass
class Findings:
    """Everything a report says about some runs, computed once (see `analysis.findings`)."""

    metric: str  # ttfb_ms or ttft_ms: what every latency label refers to
    goals: dict[str, Any]  # the targets judged (the study's, with any overrides)
    baseline: Key
    keys: list[Key]  # in the study's order
    labels: dict[Key, str]  # how each scenario is named on a figure or a table
    runs: list[RunInfo]
    external: str | None  # the CSV an external baseline came from
    phases: pd.DataFrame  # analysis.summary per key and phase (first, subsequent, all)
    intervals: pd.DataFrame
    load: pd.DataFrame
    residency: pd.DataFrame
    decomposition: pd.DataFrame  # index run, scenario, state
    changes: pd.DataFrame  # run, scenario, setting, before, after
    comparisons: pd.DataFrame
    results: pd.DataFrame  # run, scenario, measure, before, after, change
    targets: pd.DataFrame
    facts: FigureFacts
    concurrency: pd.DataFrame
    sweep: pd.DataFrame
    errors: pd.DataFrame
    steps: list[Step]
    headline: Headline
    samples: pd.DataFrame = field(repr=False)  # the samples behind it, with `run` and `label` columns

    @property
    def has_latency(self) -> bool:
        """Whether any measured request has a value of the metric (else there is nothing to draw)."""
        return bool(self.phases["n"].fillna(0).sum() > 0)
