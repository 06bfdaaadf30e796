"""The document a person reads in a minute (issue 32): the answer first, each fact once, one value per quantity.

Read on a real run of the demo (tests/data/ollama-demo-run: `make report` on a fresh clone, the bundled Ollama 0.5.4,
13 requests a scenario, its samples' text left out), in English and in Spanish, as latency.md says it.
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from latencylab.core import paths
from latencylab.publish import i18n, report
from latencylab.publish.exporters import summary_json

DEMO = Path(__file__).parents[1] / "data" / "ollama-demo-run"
MAIN_WORDS = 1500
NUMBER = r"[−+-]?\d[\d.,\u202f\u00a0]*"


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, object]]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:  # as the `workdir` fixture does, once for the module
        mp.setenv(paths.HOME_ENV, str(home))
        for name, value in (("WORK_ROOT", home), ("DATA_DIR", home / "data"), ("RUNS_DIR", home / "data" / "runs"),
                            ("REPORTS_DIR", home / "reports")):
            mp.setattr(paths, name, value)
        shutil.copytree(DEMO, paths.run_dir("ollama-demo-run"))
        out = {}
        for lang in ("en", "es"):
            doc = report.document_of(["ollama-demo-run"], lang=lang)
            out[lang] = (doc.text(), doc)
    return out


def main_text(markdown: str) -> str:
    """The text outside the collapsed details."""
    return re.sub(r"<details>.*?</details>", "", markdown, flags=re.S)


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_answer_comes_first(documents: dict, lang: str) -> None:
    text, doc = documents[lang]
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    words = {"en": ("The answer", "What is slow", "Why", "The fix", "The study's hypotheses", "Hardware"),
             "es": ("La respuesta", "Qué es lento", "Por qué", "La solución", "Las hipótesis del estudio", "Hardware")}[lang]
    assert sections[0] == words[0]
    first = text[:text.index(f"## {words[5]}")]
    for said in words[1:5]:
        assert said in first, said
    # the fix with its predicted and its measured gain, and the three guesses of the seed judged side by side
    fix = next(line for line in first.splitlines() if words[3] in line)
    step = doc.findings.answer.fix
    assert step.kind.startswith("predict_") and step.key[1] == "baseline"  # keep the model loaded
    said = [i18n.ms(step.values["after"], lang)] + [i18n.ms(m["median"], lang) for m in step.values["measured"]]
    assert any(m["key"][1] == "keepalive" for m in step.values["measured"])  # measured where the fix was tried
    assert all(number in fix for number in said), (said, fix)
    table = re.search(r"(?:^\|.*\n)+", first[first.index(words[4]):], flags=re.M).group(0)
    assert len([row for row in table.splitlines() if row.startswith("| ")]) == 4  # header and three guesses


@pytest.mark.parametrize("lang", ["en", "es"])
def test_main_text_is_short(documents: dict, lang: str) -> None:
    main = main_text(documents[lang][0])
    assert len(main.split()) < MAIN_WORDS


@pytest.mark.parametrize("lang", ["en", "es"])
def test_no_sentence_twice(documents: dict, lang: str) -> None:
    """Once numbers and scenario names are set aside, no sentence of the main text is said twice."""
    text, doc = documents[lang]
    names = sorted(doc.findings.labels.values(), key=len, reverse=True)
    seen: dict[str, str] = {}
    for line in main_text(text).splitlines():
        if not line.strip() or line.startswith(("|", "#", "![")):
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"^\s*(\d+\.|-)\s+", "", line)):
            shape = sentence.replace("*", "")
            for name in names:
                shape = re.sub(rf"\b{re.escape(name)}\b", "@", shape)
            shape = re.sub(NUMBER, "#", shape).strip()
            if len(shape.split()) < 4:
                continue
            assert shape not in seen, f"said twice: {sentence!r} and {seen[shape]!r}"
            seen[shape] = sentence


def _value(cell: str) -> float | None:
    found = re.search(r"(\d[\d.,\u202f\u00a0]*)\s?ms", cell)
    if not found:
        return None
    digits = re.sub(r"[.,\u202f\u00a0](?=\d{3}\b)", "", found.group(1)).replace(",", ".")
    return float(digits)


def test_one_value_per_scenario_and_quantity(documents: dict) -> None:
    """Every labelled latency of the Markdown (tables, the fix, what was measured) and of summary.json has one value
    per (scenario, quantity)."""
    text, doc = documents["en"]
    f = doc.findings
    labels = set(f.labels.values())
    said: dict[tuple[str, str], set[float]] = defaultdict(set)
    for block in re.findall(r"(?:^\|.*\n)+", text, flags=re.M):
        rows = [[c.strip() for c in row.strip().strip("|").split("|")] for row in block.strip().splitlines()]
        header, body = rows[0], rows[2:]
        for row in body:
            if row[0].rstrip(" ⚠️") not in labels:
                continue
            scenario = row[0].rstrip(" ⚠️")
            if len(row) == 5 and row[2] == "" or header[1] == "Metric":  # the results' statistic by statistic table
                quantity = row[1]
                if (value := _value(row[3])) is not None:
                    said[(scenario, quantity)].add(value)
                if (value := _value(row[2])) is not None:
                    said[(doc.findings.labels[f.baseline], quantity)].add(value)
                continue
            for name, cell in zip(header[1:], row[1:], strict=False):
                quantity = re.sub(r"\s*\(<.*\)$", "", name)  # a target's column: its quantity, less its goal
                if quantity.startswith(("TTFB of the first", "median TTFB of later", "mean TTFB of all",
                                        "median TTFB of all")) and (value := _value(cell)) is not None:
                    said[(scenario, quantity)].add(value)
    later = "median TTFB of later requests"
    for scenario, after, now in re.findall(r"\*\*([^*]+)\*\*: with the model kept loaded.*?about ([\d,]+)\s?ms "
                                           r"instead of ([\d,]+)\s?ms", text):
        said[(scenario, later)].add(float(now.replace(",", "")))
    for sentence in re.findall(r"Measured in .*?\.(?:\s|$)", text):
        for scenario, value in re.findall(r"\*\*([^*]+)\*\*: ([\d,]+)\s?ms", sentence):
            said[(scenario, later)].add(float(value.replace(",", "")))
    summary = summary_json.summary(f, "en")
    for row in summary["scenarios"]:
        said[(row["label"], later)].add(round(row["later_median_ms"]))
        said[(row["label"], "TTFB of the first request")].add(round(row["first_ms"]))
    rounded = {key: {round(v) for v in values} for key, values in said.items()}
    assert len(rounded) >= 15
    assert not {key: values for key, values in rounded.items() if len(values) > 1}


def test_prompt_rate_and_time_agree(documents: dict) -> None:
    """Where a sentence says N tokens at R tokens/s take T ms, T is N / R (as far as the rounding of N, R and T
    allows: a median of 48.5 tokens is written 48)."""
    text = documents["en"][0]
    found = re.findall(r"(\d+) new prompt tokens at ([\d.,]+) tokens/s\) takes ([\d,]+)\s?ms", text)
    assert found
    for tokens, rate, took in found:
        n, r, t = float(tokens), float(rate.replace(",", "")), float(took.replace(",", ""))
        assert 1000 * (n - 0.5) / (r + 0.05) - 0.5 <= t <= 1000 * (n + 0.5) / (r - 0.05) + 0.5, (n, r, t)


def test_a_disturbed_scenario_is_flagged(documents: dict) -> None:
    """A scenario with a confirmed host cause is said to be disturbed, and what it measured is not the change's."""
    import dataclasses

    from latencylab.analyse.answer import answer, later_medians
    from latencylab.publish import document

    doc = documents["en"][1]
    f = doc.findings
    cpu = [dataclasses.replace(v, verdict="confirmed" if v.key[1] == "keepalive" else "refuted") if v.cause == "cpu"
           else v for v in f.diagnosis.verdicts]  # a busy host during keepalive's requests alone
    diagnosis = dataclasses.replace(f.diagnosis, verdicts=cpu)
    later = later_medians(f.phases)
    busy = dataclasses.replace(f, diagnosis=diagnosis, answer=answer(diagnosis, f.keys, f.targets, later,
                                                                   diagnosis.predictions + f.steps))
    text = document.section(busy, "summary", "en")
    assert "**keepalive** was measured on a busy host" in text
    assert "Measured in **keepalive**, on a busy host" in text and "**keepalive**: 267" not in text


def test_targets_the_data_cannot_decide_are_not_said_to_be_met() -> None:
    # A scenario whose median's interval crosses its goal (503 ms [500–1,297] against < 500 ms) neither fails nor
    # meets it: the first screen says so instead of "every scenario meets its targets".
    import pandas as pd

    from latencylab.analyse.answer import answer
    from latencylab.analyse.findings import Diagnosis

    key = ("run", "double")
    targets = pd.DataFrame([{"run": "run", "scenario": "double", "target": "subsequent_ms", "status": "inconclusive"},
                            {"run": "run", "scenario": "double", "target": "first_ms", "status": "pass"}])
    found = answer(Diagnosis(), [key], targets, {key: 503.0}, [])
    assert found.slow == [] and found.undecided == [key]
    failed = answer(Diagnosis(), [key], targets.assign(status="fail"), {key: 503.0}, [])
    assert failed.slow == [key] and failed.undecided == []
