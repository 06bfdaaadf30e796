"""The exporters: summary.json is strict JSON with a schema version; the terminal table in the report's language;
the samples as CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from latencylab.analyse import compute
from latencylab.analyse.findings import STATUSES, RunInfo
from latencylab.publish import document
from latencylab.publish.exporters import samples_csv, summary_json, terminal
from latencylab.runs.columnar import samples_frame


def _found():
    rows = [{"run_id": "r", "seq": i, "scenario": name, "ok": True, "warmup": False, "state": "warm",
             "phase": "first" if i < 2 else "subsequent", "ttfb_ms": value}
            for i, (name, value) in enumerate([("a", 100.0), ("b", 50.0), ("a", 110.0), ("b", 40.0), ("a", 90.0)])]
    return compute.findings(samples_frame(rows), [RunInfo(run_id="r", label="r")],
                             targets={"metric": "ttfb_ms", "first_ms": 80, "cv": 0.5})


def test_summary_json_is_strict_and_versioned(tmp_path: Path):
    path = summary_json.export(document.Report(_found(), "es"), tmp_path)
    data = json.loads(path.read_text(), parse_constant=lambda c: 1 / 0)  # no NaN, no Infinity
    assert data["schema_version"] == summary_json.SCHEMA_VERSION and data["metric"] == "ttfb_ms"
    assert data["lang"] == "es" and path == tmp_path / "summary.json"
    a, b = data["scenarios"]
    assert (a["scenario"], a["n"], a["median"], a["p95"]) == ("a", 3, 100.0, None)  # p95 needs 20: null
    assert b["cv"] is not None and data["baseline"] == {"run": "r", "scenario": "a"}
    assert data["headline"]["scenario"] == {"run": "r", "scenario": "b"} and data["headline"]["ratio"] == 0.45
    assert {t["status"] for t in data["targets"]} <= set(STATUSES)


def test_terminal_table_has_one_line_per_scenario(tmp_path: Path):
    text = terminal.table(summary_json.summary(_found()))
    header, a, b = text.splitlines()
    assert header.split()[:4] == ["scenario", "n", "median", "TTFB"]
    assert a.split()[:4] == ["a", "3", "100", "ms"] and "baseline" in a and "1 of 2" in a
    assert b.split()[:4] == ["b", "2", "45", "ms"] and "-55 %" in b


def test_terminal_table_in_the_report_s_language(tmp_path: Path):
    summary = summary_json.summary(_found(), "es")
    summary["scenarios"][0]["median"] = 12_345.0  # a long first byte: in seconds, with Spanish's decimal comma
    header, a, b = terminal.table(summary).splitlines()
    assert header.split()[:4] == ["escenario", "n", "mediana", "TTFB"] and header.endswith("objetivos cumplidos")
    assert a.split()[:4] == ["a", "3", "12,3", "s"] and "baseline" in a and a.endswith("1 de 2")
    assert "-55 %" in b
    # after the table, where the report is, in the same language
    summary_json.export(document.Report(_found(), "es"), tmp_path)
    assert terminal.export(tmp_path / "index.html").splitlines()[-1] == f"informe: {tmp_path / 'index.html'}"
    summary_json.export(document.Report(_found()), tmp_path)
    assert terminal.export(tmp_path / "index.html").splitlines()[-1] == f"report: {tmp_path / 'index.html'}"


def test_samples_csv_keeps_every_sample(tmp_path: Path):
    found = _found()
    frame = pd.read_csv(samples_csv.export(document.Report(found), tmp_path))
    assert len(frame) == 5 and "run" in frame.columns and "label" not in frame.columns


def test_samples_csv_writes_each_value_as_pandas_writes_the_samples(tmp_path: Path):
    # the nullable floats go out as float64: the same text, <NA> as an empty field
    values = [1.8e9, 0.1, 1e-07, 123456789012.5, 1e16, None, 1 / 3, 12345678.9]
    rows = [{"run_id": "r", "seq": i, "scenario": "a", "ok": True, "warmup": False, "state": "warm",
             "phase": "subsequent", "ttfb_ms": 100.0 + i, "e2e_ms": v, "started_at": v} for i, v in enumerate(values)]
    found = compute.findings(samples_frame(rows), [RunInfo(run_id="r", label="r")])
    written = samples_csv.export(document.Report(found), tmp_path).read_text()
    assert written == found.samples.drop(columns=["label"]).to_csv(index=False)
    assert ",1800000000.0," in written and ",1e-07," in written
