"""One value per (scenario, quantity) across Findings' tables, summary.json and the diagnosis (issue 32, item 3), on a
real run: tests/data/ollama-demo-busy-run is `latencylab run studies/ollama-demo.yaml` (8 requests a scenario, as
the demo was then) on the bundled Ollama 0.5.4 while other work took the 2 cores — loads, a warm keep_alive
scenario, host evidence, CPU taken by others confirmed —, its samples kept whole but for the chunk gaps, the text,
connection details and the model files' paths.

Every number a diagnosis sentence states with a label (`findings.LABELS`) is the value `Findings.quantities` and
summary.json give that quantity; the tables that state it again agree; tokens / rate = time where a sentence says
both."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from latencylab.analyse import compute
from latencylab.analyse.causes.cpu import CpuValues
from latencylab.analyse.causes.floor import FloorValues
from latencylab.analyse.causes.reloads import ReloadValues
from latencylab.analyse.findings import LABELS, Findings, Phrase, Phrases, Quantity, run_info
from latencylab.publish import document, i18n
from latencylab.publish.exporters import summary_json
from latencylab.runs import columnar
from latencylab.runs.columnar import samples_frame
from latencylab.runs.store import RunMeta

RUN = Path(__file__).parents[1] / "data" / "ollama-demo-busy-run"


@pytest.fixture(scope="module")
def found() -> Findings:
    meta = RunMeta.model_validate_json((RUN / "run.json").read_bytes())
    info = run_info(meta, facts=json.loads((RUN / "facts.json").read_text(encoding="utf-8")))
    checks = {meta.run_id: json.loads((RUN / "check.json").read_text(encoding="utf-8"))["findings"]}
    samples = samples_frame(columnar.read_records(RUN / "samples.jsonl"))
    return compute.findings(samples, [info], targets=info.targets, checks=checks)


def _labelled(fill: object) -> Iterator[Quantity]:
    """Every labelled quantity a phrase states, the phrases within it too."""
    if isinstance(fill, Quantity) and fill.label is not None:
        yield fill
    elif isinstance(fill, Phrase):
        for value in fill.values.values():
            yield from _labelled(value)
    elif isinstance(fill, Phrases):
        for item in fill.items:
            yield from _labelled(item)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-9)


def test_the_run_has_what_the_issue_saw(found):
    """Loads after the cold start (baseline), a warm keep_alive scenario whose Ollama reported a few ms of load for
    a resident model, host evidence of loads from storage and from memory."""
    requests = found.requests
    keepalive = requests[requests["scenario"] == "keepalive"]
    assert (keepalive["state"] == "warm").all() and (keepalive["load_ms"] > 0).all()
    assert found.load.loc[(found.baseline[0], "baseline"), "loads_later"] > 0
    assert any(v.cause == "storage" and v.verdict != "no_evidence" for v in found.diagnosis.verdicts)


def test_every_labelled_number_of_the_diagnosis_is_its_quantitys_one_value(found):
    document_ = summary_json.summary(found)
    quantities = {(s["run"], s["scenario"]): s["quantities"] for s in document_["scenarios"]}
    stated = 0
    for v in found.diagnosis.verdicts:
        one = found.quantities(v.key)
        assert quantities[v.key] == pytest.approx({k: (None if math.isnan(x) else x) for k, x in one.items()},
                                                  nan_ok=True)
        for q in _labelled(v.phrase()):
            assert q.label in one, f"{v.cause} on {v.key} states {q.label}, which no table gives"
            assert _same(float(q.value), one[q.label]), (v.cause, v.key, q.label, q.value, one[q.label])
            stated += 1
    assert stated > 20  # the loads, the cold starts, the floors, the storage counts


def test_a_quantity_the_tables_state_again_has_the_same_value(found):
    for key in found.keys:
        one = found.quantities(key)
        assert set(one) <= set(LABELS)
        later = found.phases.loc[(*key, "subsequent")]
        # the later requests are the phase table's subsequent ones: the same count, median and mean
        assert one["requests_later"] == later["n"] and _same(one["metric_mean_later"], later["mean"])
        assert _same(one["metric_median_later"], later["median"])
        if not math.isnan(one["metric_cold_start"]):  # the cold start is the first request
            assert _same(one["metric_cold_start"], found.phases.loc[(*key, "first"), "median"])
        # the Diagnosis' attribution table: the mean load over the later requests is the load per request
        assert _same(one["load_per_request"], found.diagnosis.attribution.loc[key, "loading_ms"])
        # the decomposition by state: a resident model paid no load (Ollama's few ms on it are the scheduler's)
        warm = (*key, "warm")
        if warm in found.decomposition.index:
            assert found.decomposition.loc[warm, "load"] == 0
        assert _same(one["metric_median_all"], found.intervals.loc[key, "median"])


def test_the_reloads_cause_and_the_load_table_state_one_load(found):
    for v in found.diagnosis.verdicts:
        if isinstance(v.values, ReloadValues) and v.verdict != "no_evidence":
            row = found.load.loc[v.key]
            assert (v.values.later_paid, v.values.later_n) == (row["loads_later"], row["requests_later"])
            for said, table in ((v.values.load_ms, "load_mean_loaded"), (v.values.amount_ms, "load_per_request"),
                                (v.values.share, "load_share"), (v.values.cold_start_ms, "load_cold_start")):
                assert _same(said, row[table]), (v.key, table)
            # the mean over the later requests is the mean over those that loaded, spread over all of them
            if row["loads_later"]:
                spread = row["load_mean_loaded"] * row["loads_later"] / row["requests_later"]
                assert _same(row["load_per_request"], spread)
    # no request of the warm keep_alive scenario loaded, in the tables as in the text
    keepalive = found.load.loc[(found.baseline[0], "keepalive")]
    assert keepalive["loads_later"] == 0 and keepalive["load_per_request"] == 0


def test_the_summarys_medians_are_those_of_every_request_and_say_so(found):
    """The headline and the comparisons state the median over every measured request (their interval and test are
    of those); a prediction, the floor and the target for later requests state the later requests' median."""
    h = found.headline
    assert _same(h.median_before, found.quantities(found.baseline)["metric_median_all"])
    assert _same(h.median_after, found.quantities(h.scenario)["metric_median_all"])
    for c in found.comparisons.itertuples():
        assert _same(c.median_after, found.quantities((c.run, c.scenario))["metric_median_all"])
    for v in found.diagnosis.verdicts:
        if isinstance(v.values, FloorValues):
            assert _same(v.values.now_ms, found.quantities(v.key)["metric_median_later"])
    later = found.targets[found.targets["target"] == "subsequent_ms"]
    for t in later.itertuples():
        assert _same(t.measured, found.quantities((t.run, t.scenario))["metric_median_later"])


def test_tokens_over_rate_is_the_time_stated(found):
    floors = [v for v in found.diagnosis.verdicts if isinstance(v.values, FloorValues) and v.verdict != "no_evidence"]
    assert floors
    for v in floors:
        x = v.values
        # "N new prompt tokens at R tokens/s takes T ms": T = N / R, the first token adding 0 where the prompt is timed
        assert x.new_tokens / x.prefill_tps * 1000 == pytest.approx(x.floor_ms)
        # as written: the numbers rounded as the document rounds them still agree within that rounding
        tokens, rate = round(x.new_tokens), round(x.prefill_tps, 1)
        assert abs(tokens / rate * 1000 - x.floor_ms) <= 0.5 / rate * 1000 + 0.05 / rate * x.floor_ms + 0.5
        # growth is of the server's prompt time (Ollama reports it), on the tokens it processed
        assert x.growth_of == "prompt_ms"


def test_a_prefill_rate_said_twice_of_the_same_requests_is_one_value(found):
    """The floor's prefill and the CPU cause's (of the contended requests) are one definition: where every later
    request was contended, the same rate."""
    compared = 0
    for v in found.diagnosis.verdicts:
        if isinstance(v.values, CpuValues) and v.verdict != "refuted" and v.values.contended_n == v.values.n:
            floor = next(x.values for x in found.diagnosis.verdicts if x.cause == "prompt" and x.key == v.key)
            assert _same(v.values.prefill, floor.prefill_tps), v.key
            compared += 1
    assert compared


def test_a_prediction_is_measured_as_it_was_predicted(found):
    """'its median would be about A instead of NOW … measured in S: M (c %)': NOW and M are medians of later
    requests, c is M against NOW."""
    for step in found.diagnosis.predictions:
        assert _same(step.values["now"], found.quantities(step.key)["metric_median_later"])
        for m in step.values.get("measured", []):
            assert _same(m["median"], found.quantities(m["key"])["metric_median_later"])
            assert m["change_pct"] == pytest.approx(100 * (m["median"] / step.values["now"] - 1))


def test_the_storage_counts_say_whose_loads_they_are(found):
    for v in found.diagnosis.verdicts:
        if v.cause != "storage" or v.verdict == "no_evidence":
            continue
        said = {q.label: q.value for q in _labelled(v.phrase())}
        if v.verdict == "refuted":  # its own loads only: the report's others compare nothing there
            assert set(said) == {"loads_host"}
        else:
            assert said["loads_storage"] <= said["loads_host"]
            own = found.requests[(found.requests["scenario"] == v.key[1]) & found.requests["loaded"]]
            assert said["loads_host"] == pd.to_numeric(own["cached_share"], errors="coerce").notna().sum()


def test_the_documents_words_carry_the_one_value(found):
    """The Markdown is the lead's to check (test_document_answer.py); here, the load the answer and the Diagnosis
    state is the load table's mean load."""
    for lang in ("en", "es"):
        summary = document.section(found, "summary", lang)
        diagnosis = document.section(found, "diagnosis", lang)
        row = found.load.loc[(found.baseline[0], "baseline")]
        load = str(document.UNITS["ms"](row["load_mean_loaded"], lang))
        assert load in summary and load in diagnosis


@pytest.mark.parametrize("lang", ["en", "es"])
def test_every_label_has_its_words(lang):
    """A template prints what a number is beside it: `q_<label>` in each catalog, for every label and no other."""
    words = {key[2:] for key in i18n.catalog(lang) if key.startswith("q_")}
    assert words == set(LABELS)
    assert all(i18n.t(f"q_{label}", lang, metric="TTFB") for label in LABELS)
