"""The pure parts of comparing runs: labels, baselines that name a run, each scenario against the reference
run's, the spread of pooled runs, and the server facts that differ between runs (values by hand)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from latencylab.analyse import compare, tables
from latencylab.core import paths
from latencylab.analyse.findings import RunInfo
from latencylab.publish import report, templating
from latencylab.runs.columnar import samples_frame

KEYS = [("before", "base"), ("before", "fast"), ("after", "base"), ("after", "fast")]


def _samples(medians: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = [{"run_id": run, "scenario": scenario, "seq": i, "ok": True, "warmup": False, "phase": "subsequent",
             "state": "warm", "ttfb_ms": value, "backend": "ollama"}
            for (run, scenario), values in medians.items() for i, value in enumerate(values)]
    return samples_frame(rows)


def test_a_baseline_is_run_colon_scenario_or_a_name_only_one_run_has():
    assert compare.resolve_baseline(KEYS, "after:fast") == ("after", "fast")
    assert compare.resolve_baseline(KEYS, "after/fast") == ("after", "fast")  # the older spelling still reads
    assert compare.resolve_baseline([("r1", "base"), ("r2", "other")], "other") == ("r2", "other")
    with pytest.raises(compare.BadBaseline, match=r"name one as RUN:scenario \(before:base, after:base\)"):
        compare.resolve_baseline(KEYS, "base")
    with pytest.raises(compare.BadBaseline, match=r"not a scenario of these runs \(before:base, before:fast"):
        compare.resolve_baseline(KEYS, "during:base")


def test_a_run_id_in_a_baseline_is_read_as_its_label():
    runs = [RunInfo(run_id="20261127T0900Z-demo", label="before"), RunInfo(run_id="20261128T0900Z-demo", label="after")]
    assert compare.labelled_baseline(runs, "20261128T0900Z-demo:base") == "after:base"
    assert compare.labelled_baseline(runs, "after:base") == "after:base"
    assert compare.labelled_baseline(runs, "base") == "base" and compare.labelled_baseline(runs, None) is None


def test_default_labels_drop_the_suffix_all_runs_share_when_what_is_left_is_unique():
    assert report.short_labels(["20261127T0900Z-demo", "20261128T0900Z-demo"]) == {
        "20261127T0900Z-demo": "20261127T0900Z", "20261128T0900Z-demo": "20261128T0900Z"}
    assert report.short_labels(["20261127T0900Z-demo", "20261127T0900Z-demo-2"]) == {
        "20261127T0900Z-demo": "20261127T0900Z", "20261127T0900Z-demo-2": "20261127T0900Z-2"}  # same second
    assert report.short_labels(["a-demo", "b-other"]) == {"a-demo": "a-demo", "b-other": "b-other"}
    assert report.short_labels(["only-one"]) == {"only-one": "only-one"}


def test_labels_name_runs_of_the_report_once_each_in_one_word():
    runs = ["r1-demo", "r2-demo"]
    assert report.run_labels(runs, {"before": "r1-demo"}) == {"r1-demo": "before", "r2-demo": "r2"}
    for labels, message in (({"x": "r3-demo"}, "not one of the runs reported"),
                            ({"a b": "r1-demo"}, "one word without"), ({"a": "r1-demo", "b": "r1-demo"}, "named twice"),
                            ({"r2": "r1-demo"}, "two runs would share a label")):
        with pytest.raises(report.BadLabel, match=message):
            report.run_labels(runs, labels)


def test_each_scenario_of_a_run_is_compared_with_the_same_scenario_of_the_reference_run():
    samples = _samples({("r1", "base"): [100.0, 110, 120, 130, 140], ("r1", "fast"): [50.0, 55, 60, 65, 70],
                        ("r2", "base"): [200.0, 220, 240, 260, 280], ("r2", "fast"): [50.0, 55, 60, 65, 70]})
    labelled = tables.keyed(samples, {"r1": "before", "r2": "after"})
    table = compare.across_runs(labelled, "before").set_index("scenario")
    assert list(table.index) == ["base", "fast"] and set(table["run"]) == {"after"}
    # medians 120 → 240: twice the reference's; identical samples: ratio 1
    assert table.loc["base", ["median_before", "median_after", "ratio"]].tolist() == [120.0, 240.0, 2.0]
    assert table.loc["fast", "ratio"] == 1.0
    assert compare.across_runs(tables.keyed(samples, {"r1": "one", "r2": "one"}), "one").empty  # pooled


# twelve prompts whose own cost differs far more than what the change saves on each
PROMPT_MS = [100.0, 400, 150, 800, 250, 600, 120, 900, 300, 500, 200, 700]


def _by_prompt(base: list[float], other: list[float], other_index: list[int] | None = None) -> pd.DataFrame:
    """A baseline and a scenario, each request with its prompt's index (the scenario's: `other_index`)."""
    rows = [{"run_id": "r", "scenario": scenario, "seq": seq, "ok": True, "warmup": False, "ttfb_ms": value,
             "prompt_index": index, "backend": "ollama"}
            for seq, (scenario, value, index) in enumerate(
                [("base", v, i) for i, v in enumerate(base)]
                + [("fast", v, i) for i, v in zip(other_index or range(len(other)), other, strict=True)])]
    return samples_frame(rows)


def test_a_difference_on_every_prompt_that_their_spread_hides_is_found_by_pairing_them():
    faster = [v - 20 - i for i, v in enumerate(PROMPT_MS)]  # each prompt 20 ms or more faster
    row = compare.compare_to(_by_prompt(PROMPT_MS, faster), ("r", "base")).iloc[0]
    # 12 differences, all below 0: the exact two-sided signed-rank p is 2 / 2¹²; every pair faster: δ −1
    assert (row["test"], row["pairs"], row["verdict"], row["cliffs_delta"]) == ("wilcoxon", 12, "faster", -1.0)
    assert row["p_value"] == pytest.approx(2 / 2**12) and row["ratio_high"] < 1
    # the same values as two independent samples: the prompts' spread hides it
    unpaired = compare.compare_to(_by_prompt(PROMPT_MS, faster).assign(prompt_index=pd.NA), ("r", "base")).iloc[0]
    assert (unpaired["test"], unpaired["pairs"], unpaired["verdict"]) == ("mann-whitney", 0, "no_difference")
    assert unpaired["p_value"] > 0.5


def test_requests_that_were_not_sent_the_same_prompts_are_compared_unpaired():
    faster = [v - 20 for v in PROMPT_MS]

    def compared(index: list[int]) -> tuple[str, int]:
        row = compare.compare_to(_by_prompt(PROMPT_MS, faster, index), ("r", "base")).iloc[0]
        return row["test"], row["pairs"]

    assert compared(list(range(12, 24))) == ("mann-whitney", 0)  # prompt_order: continue, the prompts ran on
    assert compared([0] * 12) == ("mann-whitney", 0)  # an index sent twice (pooled runs): no pairs to trust
    assert compared([*range(10), 30, 31]) == ("wilcoxon", 10)  # two lost (errors): the rest still pair
    assert compared([*range(5), *range(20, 27)]) == ("mann-whitney", 0)  # fewer than half match


def test_the_report_says_which_test_each_comparison_used(workdir):
    fixture = Path(__file__).parents[1] / "data" / "fixture-run"
    shutil.copytree(fixture, paths.run_dir("fixture-run"))  # recorded before prompt indices: unpaired
    journal = paths.run_dir("fixture-run") / "samples.jsonl"
    unpaired = report.document_of(["fixture-run"], lang="en").markdown("results")
    assert "cannot be matched with the baseline's prompt by prompt" in unpaired and "Wilcoxon" not in unpaired
    rows, taken = [json.loads(line) for line in journal.read_text().splitlines()], {}
    for row in rows:  # each scenario's requests numbered from its first, as `prompt_order: same` sends them
        row["prompt_index"] = taken[row["scenario"]] = taken.get(row["scenario"], -1) + 1
    journal.write_text("".join(json.dumps(row) + "\n" for row in rows))
    paired = report.document_of(["fixture-run"], lang="es").markdown("results")
    assert "cada comparación empareja las peticiones por prompt (12 pares): una prueba de rangos con signo de " \
           "Wilcoxon" in paired


def test_the_spread_of_pooled_runs_is_each_runs_median_and_their_cv():
    samples = _samples({("r1", "base"): [100.0, 100, 100], ("r2", "base"): [200.0, 200, 200],
                        ("r3", "base"): [300.0, 300, 300]})
    table = compare.spread(tables.keyed(samples, {"r1": "demo", "r2": "demo", "r3": "demo"}))
    row = table.loc[("demo", "base")]
    # medians 100, 200, 300: mean 200, sample std 100 → CV 0.5; 300 / 100 = 3×
    assert row["medians"] == {"r1": 100.0, "r2": 200.0, "r3": 300.0} and row["runs"] == 3
    assert (row["low"], row["high"], row["range_ratio"], row["cv"]) == (100.0, 300.0, 3.0, 0.5)
    assert compare.spread(tables.keyed(samples)).empty  # runs apart: no spread to show


def _facts(version: str, quantization: str, digest: str, gpu: dict | None = None) -> dict:
    model = {"name": "phi3:latest", "family": "phi3", "parameter_size": "3.8B", "quantization_level": quantization,
             "context_length": 4096, "block_count": 32, "size_bytes": 2_000_000_000, "digest": digest}
    return {"before": {"servers": [{"kind": "ollama", "base_url": "http://127.0.0.1:1", "version": version,
                                    "reachable": True, "models": [model]}],
                       "gpu": gpu, "host": {"system": "Linux 6", "cpu": "EPYC", "cores_logical": 2,
                                            "ram_bytes": 8 << 30}}}


def test_server_facts_that_differ_between_runs_are_listed_as_data():
    gpu = {"name": "NVIDIA H100", "total_bytes": 80 << 30, "used_bytes": 1 << 30, "driver": "580"}
    before = RunInfo(run_id="a", label="before", hostname="box", facts=_facts("0.33.0", "Q4_0", "sha256:aa"))
    after = RunInfo(run_id="b", label="after", hostname="box", facts=_facts("0.34.0", "Q4_K_M", "sha256:bb", gpu))
    facts = {r.label: compare.server_facts(r) for r in (before, after)}
    assert facts["before"][("model", "phi3:latest")]["quantization_level"] == "Q4_0"
    assert facts["after"][("gpu", "0")]["name"] == "NVIDIA H100" and ("gpu", "0") not in facts["before"]
    found = compare.fact_differences(facts, "before")
    assert [(d.kind, d.name, d.field, d.before, d.after) for d in found.itertuples()] == [
        ("server", "ollama", "version", "0.33.0", "0.34.0"),
        ("model", "phi3:latest", "quantization_level", "Q4_0", "Q4_K_M"),
        ("model", "phi3:latest", "digest", "sha256:aa", "sha256:bb"),
        ("gpu", "0", "present", False, True),
    ] and set(found["run"]) == {"after"}
    same = {"before": facts["before"], "again": compare.server_facts(RunInfo(
        run_id="c", label="again", hostname="box", facts=_facts("0.33.0", "Q4_0", "sha256:aa")))}
    assert compare.fact_differences(same, "before").empty


def test_a_run_without_facts_json_still_has_its_server_host_and_gpus_from_run_json():
    run = RunInfo(run_id="a", label="a", server="embedded llama-server", server_version="b1234", engine_backend="cpu",
                  cpu_count=2, ram_bytes=8 << 30, platform="Linux")
    facts = compare.server_facts(run)
    assert facts[("server", "embedded")] == {"version": "b1234", "backend": "cpu"}  # as facts.json would name it
    assert facts[("host", "")]["cores"] == 2 and not any(kind == "gpu" for kind, _ in facts)


@pytest.mark.parametrize("value, name, en, es", [
    (None, "version", "–", "–"), (True, "reachable", "yes", "sí"), ("sha256:0123456789abcdef", "digest",
                                                                    "0123456789ab", "0123456789ab"),
    (2 * 2**20, "size_bytes", "2\u00a0MiB", "2\u00a0MiB"), (8192, "context_length", "8,192", "8.192"),
    ("134.52M", "parameter_size", "134.52M", "134,52M"), ("3.8B", "parameter_size", "3.8B", "3,8B"),
    ("Q4_K_M", "quantization_level", "Q4_K_M", "Q4_K_M"), (0.5, "load", "0.5", "0,5"),
])
def test_a_fact_is_shown_in_each_language(value, name, en, es):
    assert templating.fact_value(value, name, "en") == en and templating.fact_value(value, name, "es") == es
