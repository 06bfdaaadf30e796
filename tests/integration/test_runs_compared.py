"""Two runs of one study against the Ollama test double (not Ollama), reported together: two sets of
figures and their comparison, the server facts that changed between them, --pool with the spread between
runs, RUN:scenario baselines, and the CLI's one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from doubles.ollama import OllamaDouble
from latencylab.analyse import compare
from latencylab.collect import gather, runner
from latencylab.core import paths
from latencylab.plan import facts
from latencylab.plan.study import parse_study
from latencylab.publish import document, render, report
from latencylab.publish.exporters import samples_csv, summary_json
from latencylab.runs import store

SCENARIOS = [{"name": "base", "model": "tiny"}, {"name": "fast", "model": "tiny", "keep_alive": -1}]


def _run(quantization: str, version: str, prompt_token_delay_s: float) -> str:
    """One tiny run of the study (2 scenarios × 3 requests) with facts.json as `latencylab run` writes it. The
    first token comes right after the prompt (as on the real Ollama), so the prompt's pace sets the TTFB."""
    model = {"size": 1_000_000, "quantization_level": quantization}
    with OllamaDouble(models={"tiny": model}, version=version, prompt_token_delay_s=prompt_token_delay_s) as server:
        spec = parse_study({"name": "twice", "backend": "ollama", "base_url": server.base_url,
                            "workload": {"requests": 3, "max_tokens": 4}, "scenarios": SCENARIOS})
        before = gather.collect(spec, "before")
        run_id = runner.run_study(spec, progress=False)
        store.save_facts(facts.RunFacts(before=before, after=gather.collect(spec, "after")), run_id)
    return run_id


def _home(patch: pytest.MonkeyPatch, home: Path) -> None:
    """data/ and reports/ under `home`, as the `workdir` fixture does, for a module-scoped fixture."""
    patch.setenv(paths.HOME_ENV, str(home))
    patch.setattr(paths, "WORK_ROOT", home)
    patch.setattr(paths, "DATA_DIR", home / "data")
    patch.setattr(paths, "RUNS_DIR", home / "data" / "runs")
    patch.setattr(paths, "REPORTS_DIR", home / "reports")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """Run A (Q4_0, Ollama 0.33.0, a fast prompt) and run B (Q8_0 under the same tag, 0.34.0, a prompt 10× slower)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        _home(patch, home)
        first = _run("Q4_0", "0.33.0", 0.0005)
        second = _run("Q8_0", "0.34.0", 0.005)
    return first, second, home


@pytest.fixture
def runs(two_runs: tuple[str, str, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    _home(monkeypatch, two_runs[2])
    return two_runs[0], two_runs[1]


def _labelled(runs: tuple[str, str], **options: Any) -> document.Report:
    a, b = runs
    return report.document_of([a, b], labels={"before": a, "after": b}, baseline="before:base", **options)


def _median_by_hand(run_id: str, scenario: str) -> float:
    """A scenario's median TTFB in one run, from its samples.jsonl: the middle one of its three requests."""
    samples = store.read_samples(paths.run_dir(run_id) / "samples.jsonl")
    ttfbs = sorted(s["ttfb_ms"] for s in samples if s["scenario"] == scenario and s["ok"] and not s["warmup"])
    assert len(ttfbs) == 3
    return ttfbs[1]


def test_two_runs_of_one_study_stay_two_sets_of_figures_and_are_compared(runs, tmp_path):
    f = _labelled(runs).findings
    assert f.keys == [("before", "base"), ("before", "fast"), ("after", "base"), ("after", "fast")]
    assert f.baseline == ("before", "base")
    assert f.labels[("after", "base")] == "base · after"  # a name two runs share says which run
    for key in f.keys:
        assert f.phases.loc[(*key, "all"), "n"] == 3  # three requests each, never six merged
    compared = f.across_runs.set_index("scenario")
    assert list(compared.index) == ["base", "fast"] and set(compared["run"]) == {"after"}
    assert (compared["reference"] == "before").all()
    # each scenario's median TTFB in each run, by hand from its samples.jsonl (not "B is slower": the double's first
    # token comes right after the prompt, so B's slower tokens leave the TTFBs of both runs at about the same)
    for scenario in ("base", "fast"):
        before, after = (_median_by_hand(run_id, scenario) for run_id in runs)
        assert compared.loc[scenario, ["median_before", "median_after"]].tolist() == [before, after]
        assert compared.loc[scenario, "ratio"] == pytest.approx(after / before)
    summary = summary_json.summary(f)
    assert [(s["run"], s["scenario"]) for s in summary["scenarios"]] == f.keys
    assert summary["baseline"] == {"run": "before", "scenario": "base"}
    assert summary["labels"] == {runs[0]: "before", runs[1]: "after"}
    assert [(c["run"], c["scenario"], c["reference"]) for c in summary["across_runs"]] == [
        ("after", "base", "before"), ("after", "fast", "before")]
    assert {d["field"] for d in summary["server_differences"]} == {"version", "quantization_level"}
    samples_csv.export(document.Report(f), tmp_path)
    exported = pd.read_csv(tmp_path / "samples.csv")
    assert len(exported) == 12 and exported.groupby("run").size().to_dict() == {"after": 6, "before": 6}


@pytest.mark.parametrize("lang, words", [
    ("en", ("## Runs compared", "### Run before — ", "in **before** →", "quantization Q4_0 → Q8_0",
            "server ollama, version 0.33.0 → 0.34.0", "The runs differ in 2 server facts")),
    ("es", ("## Ejecuciones comparadas", "### Ejecución before — ", "en **before** →",
            "cuantización Q4_0 → Q8_0", "servidor ollama, versión 0.33.0 → 0.34.0",
            "Las ejecuciones difieren en 2 datos del servidor")),
])
def test_the_document_compares_the_runs_and_names_what_changed_on_the_server(runs, lang, words):
    doc = _labelled(runs, lang=lang)
    differences = doc.findings.differences
    assert {(d.kind, d.name, d.field, d.before, d.after) for d in differences.itertuples()} == {
        ("server", "ollama", "version", "0.33.0", "0.34.0"),
        ("model", "tiny:latest", "quantization_level", "Q4_0", "Q8_0")}  # same tag, same digest: the quantization
    text = doc.text()
    for word in words:
        assert word in text, word
    setup = doc.markdown("setup")
    assert setup.count("| Q4_0") + setup.count(" Q4_0,") >= 1 and "tiny:latest" in setup
    assert ("no NVIDIA GPU seen" in setup) == (lang == "en")  # the GPU row keeps its wording without a GPU


def test_pool_makes_one_set_per_scenario_and_shows_the_spread_between_runs(runs):
    doc = report.document_of(list(runs), pool=True)
    f = doc.findings
    assert f.keys == [("twice", "base"), ("twice", "fast")]  # one set per scenario, under the study's name
    assert f.phases.loc[("twice", "base", "all"), "n"] == 6
    spread = f.spread.loc[("twice", "base")]
    by_hand = {run_id: _median_by_hand(run_id, "base") for run_id in runs}
    low, high = sorted(by_hand.values())
    assert spread["runs"] == 2 and spread["medians"] == by_hand and (spread["low"], spread["high"]) == (low, high)
    # two medians: sample std |high − low| / √2, mean (high + low) / 2 → CV √2 (high − low) / (high + low)
    assert spread["range_ratio"] == pytest.approx(high / low)
    assert spread["cv"] == pytest.approx(2**0.5 * (high - low) / (high + low))
    assert f.across_runs.empty and len(f.server_facts) == 2  # pooled runs keep their own facts
    assert "quantization Q4_0 → Q8_0" in doc.markdown("setup")  # pooling runs whose server changed is said
    spread_json, _ = summary_json.summary(f)["spread"]
    assert spread_json["scenario"] == "base" and spread_json["runs"] == 2 and list(spread_json["medians"]) == list(runs)
    text = doc.markdown("runs")
    assert "Runs pooled: each scenario's samples from 2 runs" in text and "CV of the medians" in text


def test_a_baseline_names_a_run_by_id_or_label_and_a_shared_name_must_say_which(runs):
    a, b = runs
    assert _labelled(runs).findings.baseline == ("before", "base")
    by_id = report.document_of([a, b], labels={"before": a, "after": b}, baseline=f"{b}:fast").findings
    assert by_id.baseline == ("after", "fast") and set(by_id.across_runs["run"]) == {"before"}
    with pytest.raises(compare.BadBaseline, match="several runs: name one as RUN:scenario"):
        report.check_options([a, b], baseline="base")
    with pytest.raises(compare.BadBaseline, match="is not a scenario of these runs"):
        report.check_options([a, b], labels={"before": a}, baseline="after:base")
    with pytest.raises(report.BadLabel, match="not one of the runs reported"):
        report.check_options([a], labels={"after": b})
    with pytest.raises(report.BadLabel, match="one word without"):
        report.check_options([a, b], labels={"be:fore": a})


def test_cli_compares_two_labelled_runs_and_refuses_bad_labels_in_one_line(runs):
    a, b = runs
    env = {**os.environ, paths.HOME_ENV: str(paths.WORK_ROOT)}
    cli = [sys.executable, "-m", "latencylab.cli", "report", a, b]
    bad = subprocess.run([*cli, "--label", "before"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "write it NAME=RUN" in bad.stderr
    bad = subprocess.run([*cli, "--baseline", "base"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "name one as RUN:scenario" in bad.stderr
    done = subprocess.run([*cli, "--label", f"before={a}", "--label", f"after={b}", "--baseline", "before:base"],
                          env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = paths.REPORTS_DIR / render.report_name([a, b])  # a comparison never replaces b's own report
    assert f"report: {folder / 'index.html'}" in done.stdout
    markdown = (folder / "latency.md").read_text()
    assert "## Runs compared" in markdown and "quantization Q4_0 → Q8_0" in markdown
    assert "base · after" in done.stdout  # the terminal table names each run's scenarios
