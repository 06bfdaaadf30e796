"""summary.json: a report's key figures as strict JSON for scripts, CI and dashboards (schema in
docs/summary-schema.md)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from latencylab.analyse.findings import Findings, Key
from latencylab.plan.check import MEMORY_RULES

if TYPE_CHECKING:
    from latencylab.publish.document import Report

NAME = "json"
FILE = "summary.json"
SCHEMA_VERSION = 2


def _plain(value: Any) -> Any:
    """A JSON-safe value: NaN, NA and infinities become None, numpy scalars Python ones."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _key(key: Key | None) -> dict[str, str] | None:
    return None if key is None else {"run": key[0], "scenario": key[1]}


def _confirmation(f: Findings, key: Key) -> dict[str, Any] | None:
    """The check's predicted GPU share for `key` and whether the run confirmed it."""
    if key not in f.diagnosis.predicted:
        return None
    predicted, verdict = f.diagnosis.predicted[key]
    return {"predicted_pct": predicted, "verdict": verdict}


def summary(f: Findings, lang: str | None = None) -> dict[str, Any]:
    """The key figures as plain data (the schema documented in docs/summary-schema.md); `lang`: the report's
    language, which the exporters after the notebook word their output in (None outside a report)."""
    scenarios = []
    for key in f.keys:
        row = f.phases.loc[(*key, "all")]
        first, later = (f.phases.loc[(*key, p), "median"] if (*key, p) in f.phases.index else None
                        for p in ("first", "subsequent"))
        ci = f.intervals.loc[key]
        load = f.load.loc[key] if key in f.load.index else None
        scenarios.append({
            **_key(key), "label": f.labels[key], "n": int(row["n"]), "errors": int(row["errors"]),
            **{k: row[k] for k in ("mean", "median", "min", "max", "std", "cv", "p90", "p95", "p99")},
            "median_ci": [ci["median_low"], ci["median_high"]], "p95_ci": [ci["p95_low"], ci["p95_high"]],
            "paid_load_share": None if load is None else load["paid_load_share"],
            "first_ms": first, "later_median_ms": later,
            "quantities": f.quantities(key),  # each labelled quantity's one value (findings.LABELS say what it is)
        })
    a = f.answer
    h = f.headline
    document = {
        "schema_version": SCHEMA_VERSION,
        "metric": f.metric,
        "lang": lang,
        "study": f.runs[0].study if f.runs else None,
        "runs": [r.run_id for r in f.runs],
        "baseline": _key(f.baseline),
        "external_baseline": f.external,
        "headline": {"scenario": _key(h.scenario), "ratio": h.ratio, "ratio_ci": [h.ratio_low, h.ratio_high],
                     "verdict": h.verdict, "median_before": h.median_before, "median_after": h.median_after,
                     "changed": h.changed,
                     "targets_passed": [{**_key(k), "passed": p, "judged": n}
                                        for k, (p, n) in h.targets_passed.items()],
                     "finding": None if h.finding is None else {"kind": h.finding.kind, **(_key(h.finding.key) or {})}},
        "answer": None if a is None else {
            "slow": [_key(k) for k in a.slow],
            "confirmed": [{"cause": c.cause, "scenarios": [_key(v.key) for v in c.verdicts]} for c in a.confirmed],
            "fix": None if a.fix is None else {"kind": a.fix.kind, **_key(a.fix.key)},
            "disturbed": [{**_key(k), "causes": causes} for k, causes in a.disturbed.items()],
            "run_wide": a.run_wide,
            "hypotheses": [{"cause": h.cause, "claim": h.claim, "verdict": h.verdict,
                            "scenarios": [_key(k) for k in h.keys]} for h in a.hypotheses],
        },
        "scenarios": scenarios,
        "comparisons": f.comparisons.to_dict(orient="records"),
        "targets": f.targets.to_dict(orient="records"),
        "next_steps": [{"kind": s.kind, **(_key(s.key) or {}), "values": s.values} for s in f.steps],
        # runs compared, server facts (issue 11)
        "labels": {r.run_id: r.label for r in f.runs},
        "across_runs": f.across_runs.to_dict(orient="records"),
        "spread": [{**_key(key), **row} for key, row in f.spread.to_dict(orient="index").items()],
        "server_differences": f.differences.to_dict(orient="records"),
        "measured_figures": f.measured_figures.reset_index().to_dict(orient="records"),
        "diagnosis": {
            "verdicts": [{"cause": v.cause, **_key(v.key), "verdict": v.verdict, "reason": v.reason or None,
                          "values": asdict(v.values)} for v in f.diagnosis.verdicts],
            "modes": [{**_key(m.key), **{k: v for k, v in asdict(m).items() if k != "key"}} for m in f.diagnosis.modes],
            "decode_by_residency": f.diagnosis.decode_by_residency,
            "check": [{"run": c.run, "level": c.level, "rule": c.rule, "scenario": c.scenario, "evidence": c.evidence,
                       "confirmation": _confirmation(f, (c.run, c.scenario)) if c.rule in MEMORY_RULES else None}
                      for c in f.diagnosis.checks],
            "thresholds": f.diagnosis.thresholds,
            "attribution": [{**_key(key), **row}
                            for key, row in f.diagnosis.attribution.to_dict(orient="index").items()],
            "predictions": [{"kind": s.kind, **_key(s.key), **{k: v for k, v in s.values.items() if k != "measured"},
                             "measured": [{**_key(m["key"]), "median": m["median"], "change_pct": m["change_pct"]}
                                          for m in s.values.get("measured", [])]} for s in f.diagnosis.predictions],
            "hypotheses": f.diagnosis.hypotheses,
            "no_host": [{**_key(key), "reason": reason} for key, reason in f.diagnosis.no_host.items()],
        },
        # capacity (issue 20)
        "capacity": {
            "levels": f.capacity.to_dict(orient="records"),
            "saturation": [asdict(p) for p in f.saturation],
        },
    }
    return _plain(document)


def export(doc: Report, folder: Path) -> Path:
    """summary.json, strict: `allow_nan=False` refuses any NaN that `_plain` missed."""
    path = folder / FILE
    text = json.dumps(summary(doc.findings, doc.lang), indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def read(folder: Path) -> dict[str, Any] | None:
    """A published report's summary.json, or None where there is none."""
    path = folder / FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
