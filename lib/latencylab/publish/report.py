"""What the report notebook reads: the runs, their labels and samples, and the findings' document of them.
The kernel imports it, and so does the process that publishes (`render`), for the runs' metadata only: the
analysis and the document are imported where they are used, not by that process."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from latencylab.analyse.findings import Key, RunInfo, run_info
from latencylab.core import paths
from latencylab.core.errors import BadLabel
from latencylab.runs import server_metrics, store
from latencylab.runs.baselines import read_baseline_csv

if TYPE_CHECKING:
    from latencylab.publish.document import Report


def read_run(run_id: str, label: str = "", pooled: bool = False) -> RunInfo:
    """The one place a report reads a run's metadata (run.json) and its server facts (facts.json)."""
    try:  # a run from before facts.json, or one cut off before it was written, has none
        facts = json.loads((paths.run_dir(run_id) / "facts.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        facts = {}
    info = run_info(store.load_meta(run_id), label, facts)
    return dataclasses.replace(info, pooled=True) if pooled else info


# runs compared, server facts (issue 11)

LABEL = re.compile(r"[^\s:/]+")


def short_labels(run_ids: list[str]) -> dict[str, str]:
    """Default labels: the run ids less the study name they all share (`20261127T044512Z`, `…Z-2`) when what is
    left is unique."""
    if len(run_ids) < 2:
        return {r: r for r in run_ids}
    study = run_ids[0][run_ids[0].find("-"):] if "-" in run_ids[0] else ""
    heads = [r.replace(study, "", 1) for r in run_ids]
    if study and all(study in r for r in run_ids) and all(heads) and len(set(heads)) == len(heads):
        return dict(zip(run_ids, heads, strict=True))
    return {r: r for r in run_ids}


def run_labels(run_ids: list[str], labels: dict[str, str] | None = None, pool: bool = False) -> dict[str, str]:
    """Each run's label: `labels` maps a name to a run (`before` → RUN_A); the others get `short_labels`;
    `pool` gives every run one label, the study's name (all runs must be of one study)."""
    labels = labels or {}
    if not isinstance(labels, dict) or not isinstance(pool, bool):
        raise TypeError(f"parameters labels and pool must be a dict and a bool, got {labels!r}, {pool!r}")
    if pool:
        if labels:
            raise BadLabel("--pool makes one set of the runs: name them with no --label")
        studies = sorted({store.load_meta(r).name for r in run_ids})
        if len(studies) != 1:
            raise BadLabel(f"--pool pools runs of one study; these are of {', '.join(studies)}")
        return {r: studies[0] for r in run_ids}
    named: dict[str, str] = {}
    for label, run_id in labels.items():
        if not LABEL.fullmatch(str(label)):
            raise BadLabel(f"--label {label!r}: a label is one word without ':' or '/' (before=RUN)")
        if run_id not in run_ids:
            raise BadLabel(f"--label {label}={run_id}: {run_id!r} is not one of the runs reported "
                           f"({', '.join(run_ids)})")
        if run_id in named:
            raise BadLabel(f"--label: run {run_id} is named twice ({named[run_id]}, {label})")
        named[run_id] = str(label)
    result = {**short_labels(run_ids), **named}
    if len(set(result.values())) != len(result):
        raise BadLabel(f"--label: two runs would share a label ({', '.join(f'{k}={v}' for k, v in result.items())})")
    return result


def read_runs(run_ids: list[str], labels: dict[str, str] | None = None, pool: bool = False) -> list[RunInfo]:
    """The runs' metadata, each with its label (see `run_labels`)."""
    names = run_labels(run_ids, labels, pool)
    return [read_run(r, names[r], pooled=pool and len(run_ids) > 1) for r in run_ids]


def planned_keys(runs: list[RunInfo]) -> list[Key]:
    """(label, scenario) of every scenario the runs' studies name, before any sample is read."""
    return list(dict.fromkeys((r.label, name) for r in runs for name in r.scenarios))


def check_options(run_ids: list[str], labels: dict[str, str] | None = None, pool: bool = False,
                  baseline: str = "") -> None:
    """Refuse bad labels or a baseline that names no scenario, before a notebook runs (a `UsageError`)."""
    runs = read_runs(run_ids, labels, pool)
    if baseline and not baseline.endswith(".csv"):
        from latencylab.analyse import compare

        compare.resolve_baseline(planned_keys(runs), compare.labelled_baseline(runs, baseline))


def resolve_runs(run_ids: list[str]) -> list[str]:
    """`run_ids` as given, or the latest run when empty."""
    if not isinstance(run_ids, list):
        raise TypeError(f"parameter run_ids must be a list, got {run_ids!r}")
    run_ids = run_ids or store.list_runs()[-1:]
    if not run_ids:
        raise store.RunNotFound(f"no runs yet in {paths.RUNS_DIR}; run `latencylab run STUDY` first")
    return run_ids


def read_checks(run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The findings of each run's check.json (the check that ran before it), by run id; runs without one left out."""
    found = {}
    for run_id in run_ids:
        path = paths.run_dir(run_id) / "check.json"
        if path.exists():
            found[run_id] = json.loads(path.read_text(encoding="utf-8")).get("findings", [])
    return found


def load_samples(run_ids: list[str], baseline: str = "") -> tuple[pd.DataFrame, str, str | None]:
    """The runs' samples, with an external CSV baseline's put first: (samples, baseline scenario, CSV or None)."""
    samples = store.load_runs(run_ids)
    if not baseline.endswith(".csv"):
        return samples, baseline, None
    path = Path(baseline) if Path(baseline).is_absolute() else paths.PROJECT_ROOT / baseline
    external = read_baseline_csv(path)
    return pd.concat([external, samples], ignore_index=True), str(external["scenario"].iloc[0]), baseline


def document_of(run_ids: list[str], *, baseline: str = "", lang: str = "", targets: dict[str, Any] | None = None,
                labels: dict[str, str] | None = None, pool: bool = False) -> Report:
    """What the report notebook builds, in one call: the findings of `run_ids` and their document.

    `baseline` is a scenario (`RUN:scenario` or a name only one run has) or a CSV of earlier TTFB values;
    `lang` defaults to the study's; `labels` name runs (`{"before": RUN_A}`); `pool` makes one set of them.
    """
    for name, value, kind in (("baseline", baseline, str), ("lang", lang, str), ("targets", targets or {}, dict)):
        if not isinstance(value, kind):
            raise TypeError(f"parameter {name} must be a {kind.__name__}, got {value!r}")
    from latencylab.analyse import compute
    from latencylab.publish.document import Report

    run_ids = resolve_runs(run_ids)
    runs = read_runs(run_ids, labels, pool)
    samples, baseline, external = load_samples(run_ids, baseline)
    found = compute.findings(samples, runs, baseline=baseline or None, targets={**runs[0].targets, **(targets or {})},
                              external=external, checks=read_checks(run_ids), server_metrics=server_metrics.load(run_ids))
    return Report(found, lang or runs[0].lang)
