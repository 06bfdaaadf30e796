"""`findings()`: everything a report states about some runs' samples, computed once (numbers, flags, DataFrames)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pandas as pd

from latencylab.analyse.answer import answer, later_medians
from latencylab.analyse.capacity import capacity
from latencylab.analyse.compare import (
    across_runs,
    compare_to,
    fact_differences,
    labelled_baseline,
    resolve_baseline,
    results,
    server_facts,
    setting_changes,
    spread,
)
from latencylab.analyse.conversation import turn_table
from latencylab.analyse.diagnosis import diagnose
from latencylab.analyse.findings import Findings, RunInfo
from latencylab.analyse.server_metrics import per_request
from latencylab.analyse.steps import agree_with, beside_measured, figure_facts, headline, next_steps, serialised
from latencylab.analyse.tables import (
    KEY,
    concurrency_table,
    decomposition_table,
    errors_table,
    intervals,
    keyed,
    load_share,
    phase_summary,
    residency,
    scenario_order,
    sweep,
)
from latencylab.analyse.targets import evaluate_targets


def findings(samples: pd.DataFrame, runs: Sequence[RunInfo], *, baseline: str | None = None,
             targets: dict[str, Any] | None = None, external: str | None = None,
             checks: dict[str, list[dict[str, Any]]] | None = None, phases: pd.DataFrame | None = None,
             server_metrics: pd.DataFrame | None = None) -> Findings:
    """Everything a report states about `samples` (from `runs`), computed once; `targets` decide the metric;
    `checks` are the findings of each run's check.json, by run id; `phases` is `tables.phase_summary`'s table where the
    caller has it already (the report notebook shows it before the findings), not computed twice; `server_metrics`
    the servers' own metrics scraped during the runs (`runs.server_metrics.load`), where they published any."""
    targets = dict(targets or {})
    metric = targets.get("metric") or "ttfb_ms"
    labels_of = {r.run_id: r.label for r in runs}
    series = pd.DataFrame() if server_metrics is None else server_metrics
    frame = keyed(per_request(samples, series, metric), labels_of)
    keys = scenario_order(frame)
    base = resolve_baseline(keys, labelled_baseline(runs, baseline))
    names = [k[1] for k in keys]
    labels = {k: k[1] if names.count(k[1]) == 1 else f"{k[1]} · {k[0]}" for k in keys}
    names = pd.DataFrame([(*key, label) for key, label in labels.items()], columns=[*KEY, "label"])
    frame["label"] = frame[KEY].merge(names, how="left", on=KEY)["label"].to_numpy()  # a merge keeps the left's order
    target_table = evaluate_targets(frame, targets, metric) if targets else evaluate_targets(frame.iloc[:0], {})
    comparisons = compare_to(frame, base, metric)
    changes = setting_changes(runs, keys, base)
    where = residency(frame)
    concurrency, errors = concurrency_table(frame), errors_table(frame)
    attempted = frame[~frame["warmup"].fillna(False)].groupby(KEY, sort=False).size()
    phases = phase_summary(frame, metric) if phases is None else phases
    decomposition = decomposition_table(frame)
    reference = base[0] if external is None or len(runs) == 0 else runs[0].label
    by_run = {r.run_id if r.pooled else r.label: server_facts(r) for r in runs}  # pooled runs: each by its id
    fact_reference = next((r.run_id if r.pooled else r.label for r in runs if r.label == reference),
                          runs[0].label if runs else "")
    labelled = {r.label: (checks or {})[r.run_id] for r in runs if r.run_id in (checks or {})}
    measured_figures, diagnosis, requests = diagnose(frame, keys, metric, targets, serialised(concurrency), labelled,
                                                     target_table)
    load = load_share(requests, metric)  # the loads as the diagnosis counts them
    steps = next_steps(load, where, target_table, comparisons, concurrency, errors, attempted)
    claims = [h for r in runs for h in r.hypotheses]
    diagnosis = dataclasses.replace(diagnosis, hypotheses=[h for i, h in enumerate(claims) if h not in claims[:i]])
    steps = agree_with(steps, diagnosis)
    across = across_runs(frame, reference, metric)
    diagnosis = dataclasses.replace(diagnosis, predictions=beside_measured(diagnosis.predictions, comparisons,
                                                                           across, changes, base, phases))
    # the attribution's server wait per request, beside the capacity's levels (what grows past the knee)
    waited = frame.assign(server_wait_ms=requests["server_wait_ms"]) if "server_wait_ms" in requests else frame
    levels, saturation = capacity(waited, runs)
    later = later_medians(phases)
    return Findings(
        metric=metric, goals=targets, baseline=base, keys=keys, labels=labels, runs=list(runs), external=external,
        phases=phases, intervals=intervals(frame, metric), load=load, residency=where,
        decomposition=decomposition, changes=changes, comparisons=comparisons, results=results(phases, base, keys),
        targets=target_table, facts=figure_facts(phases, frame, decomposition, target_table, targets),
        concurrency=concurrency, sweep=sweep(frame, metric) if any(r.sweep for r in runs) else pd.DataFrame(),
        errors=errors, steps=steps, samples=frame,
        headline=headline(base, comparisons, changes, target_table, diagnosis.predictions + steps),
        across_runs=across, spread=spread(frame, metric), server_facts=by_run,
        differences=fact_differences(by_run, fact_reference),
        measured_figures=measured_figures, diagnosis=diagnosis, requests=requests, capacity=levels,
        saturation=saturation, conversation=turn_table(requests, metric),
        answer=answer(diagnosis, keys, target_table, later, diagnosis.predictions + steps),
        server_metrics=series.assign(label=[labels.get((labels_of.get(run, run), scenario), scenario)
                                            for run, scenario in zip(series["run"], series["scenario"], strict=True)])
        if len(series) else series,
    )
