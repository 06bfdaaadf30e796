"""The server's own metrics, scraped during a run of the real embedded llama-server (issue 34): its `/metrics`
(`requests_deferred`, `requests_processing`, `prompt_tokens_cached_total`) and `/slots`, stored beside the samples,
drawn in the report, and read by the Diagnosis: a one-slot server at four requests at once is confirmed queueing
with its own deferred count named; the same load on four slots is not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from latencylab.collect import runner
from latencylab.core import paths
from latencylab.plan.study import parse_study
from latencylab.publish import render, report
from latencylab.runs import server_metrics, store


def _study(slots: int, **settings: Any) -> Any:
    return parse_study({
        "name": f"slots-{slots}", "backend": "embedded", "engine": {"threads": 1}, "targets": {"metric": "ttft_ms"},
        "workload": {"max_tokens": 8, "concurrency": 4, "requests": 12, "warmup": 1}, **settings,
        "scenarios": [{"name": "four-at-once", "model": "smollm2-135m-q4_1", "keep_alive": -1, "preload": True,
                       "options": {"num_parallel": slots}}]}, base_dir=paths.WORK_ROOT)


def _queueing(run_id: str) -> tuple[Any, str]:
    """The queueing verdict of the run, and the report's Markdown."""
    document = report.document_of([run_id])
    verdict = next(v for v in document.findings.diagnosis.verdicts if v.cause == "queueing")
    return verdict, document.text()


@pytest.mark.engine
def test_one_slot_at_four_requests_at_once_is_queueing_by_the_server_s_own_deferred_count(
        models: list[Path], workdir: Path) -> None:
    run_id = runner.run_study(_study(1), progress=False)
    folder = paths.run_dir(run_id)
    assert (folder / server_metrics.PARQUET).exists()  # the time series, beside samples.parquet
    assert store.load_meta(run_id).server_metrics["endpoints"]  # which scenario each scraped endpoint served
    series = server_metrics.load([run_id])
    deferred = series[series["quantity"] == "waiting"]
    assert set(deferred["source"]) == {"llamacpp:requests_deferred"} and deferred["value"].max() >= 1
    assert set(series.loc[series["quantity"] == "slots_total", "value"]) == {1.0}  # /slots, read in flight
    verdict, text = _queueing(run_id)
    assert verdict.verdict == "confirmed" and verdict.values.queued >= 1
    assert verdict.values.queue_metric == "llamacpp:requests_deferred"
    confirmed = next(line for line in text.splitlines() if "✅" in line and "llamacpp:requests_deferred" in line)
    assert "four-at-once" in confirmed
    page = render.publish([run_id])  # the notebook draws it beside the timeline
    assert (page.parent / "figures" / "server.png").exists()
    assert "llamacpp:requests_deferred" in (page.parent / "latency.md").read_text(encoding="utf-8")


@pytest.mark.engine
def test_four_slots_at_four_requests_at_once_is_no_queue_by_the_server_s_count(models: list[Path],
                                                                               workdir: Path) -> None:
    run_id = runner.run_study(_study(4), progress=False)
    verdict, _ = _queueing(run_id)
    assert verdict.values.queued == 0 and verdict.values.scrapes >= 3
    assert verdict.verdict != "confirmed"


@pytest.mark.engine
def test_a_run_that_asks_for_no_scraping_has_no_series(models: list[Path], workdir: Path) -> None:
    run_id = runner.run_study(_study(1, server_metrics={"scrape": False}), progress=False)
    assert not (paths.run_dir(run_id) / server_metrics.JOURNAL).exists()
    assert json.loads((paths.run_dir(run_id) / "run.json").read_text())["server_metrics"] == {"off": True}
    verdict, _ = _queueing(run_id)
    assert verdict.verdict == "confirmed" and verdict.values.queue_metric == ""  # from the timings alone
