"""The Spanish report as a Spanish-speaking engineer writes it: one word for each thing (the glossary,
catalogs/glossary-es.yaml), no English outside code, names and the study's own text, every number in the locale."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from latencylab.analyse.findings import Findings
from latencylab.core import paths
from latencylab.publish import document, figures, i18n, report, templating

FIXTURE = Path(__file__).parents[1] / "data" / "fixture-run"
GLOSSARY = yaml.safe_load((i18n.CATALOGS / "glossary-es.yaml").read_text(encoding="utf-8"))
# What the run tells the report about itself, beside the samples: a model whose parameter count Ollama writes as text
# with a decimal point (134.52M), its digest, a check before the run and a hypothesis in the study's own words.
FACTS = {"before": {"servers": [{"kind": "embedded", "version": "b4400", "reachable": True, "models": [
    {"name": "smollm2-135m-q8_0", "family": "llama", "parameter_size": "134.52M", "quantization_level": "Q8_0",
     "context_length": 8192, "block_count": 30, "size_bytes": 144_810_048, "digest": "sha256:0123456789abcdef0123"}]}],
    "host": {"system": "Linux 6.8", "cpu": "AMD EPYC 9454", "cores_logical": 2, "ram_bytes": 24 << 30}}}
CHECK = {"findings": [
    {"rule": "keep-alive-gap", "level": "warning", "scenario": "baseline",
     "evidence": {"keep_alive_s": 2.0, "gap_s": 2.5, "keep_alive_source": "scenario"}},
    {"rule": "memory-fits", "level": "note", "scenario": "optimised",
     "evidence": {"model": "smollm2-135m-q4_1", "num_ctx": 2048, "need_gb": 0.35, "budget_gb": 3.0,
                  "budget_source": "study", "gpu_pct": 100}}]}
CLAIM = "Ollama unloads the model between requests and reloads it from disk"
NAMED = ("version", "backend", "family", "quantization_level", "name", "driver", "hostname", "system", "cpu")  # facts

CODE_SPAN = re.compile(r"`[^`]*`")
PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{[^{}]*\}")
URL = re.compile(r"\b\w+://\S+")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.+-]+")
VERSION = re.compile(r"\b\d+(?:\.\d+){2,}\b")  # 0.5.4, 3.11.7: a version, not a number to localise
# A token as the check reads it: letters, with what joins an identifier, a path or an option (keep_alive, /api/show,
# check.json, --base-url); a token with "_", "/", "." or a leading "-" inside is code, not a word.
TOKEN = re.compile(r"-*[^\W\d_]+(?:[-_./][\w]+)*(?:['’][^\W\d_]+)?|[\w./-]+")
# A decimal point: the language writes 0,19 and 134,52 (a dot only groups thousands: 3.627, three digits after it).
DECIMAL_POINT = re.compile(r"\d\.(?:\d{1,2}|\d{4,})(?!\d)")


def _words(text: str) -> list[str]:
    """The words of a text with code, placeholders and the glossary's code fragments taken out."""
    text = PLACEHOLDER.sub(" ", CODE_SPAN.sub(" ", text))
    for fragment in GLOSSARY["code"]:
        text = text.replace(fragment, " ")
    words = []
    for token in TOKEN.findall(text):
        if token in GLOSSARY["kept"] or token.startswith("-") or re.search(r"[_/.\d]", token):
            continue
        words += [w for w in token.split("-") if w]
    return words


def _english() -> set[str]:
    """Every word of the English catalog that is neither Spanish as well nor kept in English by the glossary."""
    vocabulary = {w.lower() for message in i18n.catalog("en").values() for w in _words(message)}
    allowed = {w.lower() for w in GLOSSARY["kept"] + GLOSSARY["spanish_too"]}
    return vocabulary - allowed


def _english_in(text: str) -> list[str]:
    english = _english()
    return sorted({w for w in _words(text) if w.lower() in english})


def _forbidden_in(text: str) -> list[str]:
    return [w for w in GLOSSARY["forbidden"] if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text, re.IGNORECASE)]


@pytest.fixture(scope="module")
def spanish(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """The whole Spanish document of the fixture run with server facts, a check and a hypothesis added (against the
    seed's CSV baseline and against its own), every figure's title and alt text; and the data's own strings."""
    tmp = tmp_path_factory.mktemp("es")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(paths.HOME_ENV, str(tmp))
        for name, value in (("WORK_ROOT", tmp), ("DATA_DIR", tmp / "data"), ("RUNS_DIR", tmp / "data" / "runs"),
                            ("REPORTS_DIR", tmp / "reports")):
            mp.setattr(paths, name, value)
        run = paths.run_dir("fixture-run")
        shutil.copytree(FIXTURE, run)
        meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
        meta["settings"]["resolved"]["hypotheses"] = [{"claim": CLAIM, "cause": "reloads"}]
        (run / "run.json").write_text(json.dumps(meta), encoding="utf-8")
        (run / "facts.json").write_text(json.dumps(FACTS), encoding="utf-8")
        (run / "check.json").write_text(json.dumps(CHECK), encoding="utf-8")
        docs = [report.document_of(["fixture-run"], lang="es", baseline="data/baselines/seed-phi3-baseline.csv"),
                report.document_of(["fixture-run"], lang="es")]
        parts = []
        for doc in docs:
            parts += [doc.markdown(name) for name in document.SECTIONS]
            parts += [" ".join(figures.words(doc.findings, spec.name, "es")) for spec in figures.FIGURES]
        yield "\n".join(parts), [s for doc in docs for s in _data(doc.findings)]


def _data(f: Findings) -> list[str]:
    """The strings the run brings, not the catalog: names of scenarios, runs, models and the server, the study's
    name, description and hypotheses (its own words: a study has one description, in its author's language), what
    the host and a failed request said. Each as the document writes it too (a table cell in Markdown)."""
    raw = [*f.labels.values(), *(k[1] for k in f.keys), f.external or ""]
    for run in f.runs:
        raw += [run.run_id, run.label, run.study, run.description, run.server, run.server_version, run.platform,
                run.engine_backend, *(g["name"] for g in run.gpus), *(h["claim"] for h in run.hypotheses)]
    for facts in f.server_facts.values():  # names, not numbers: those are the document's to write
        raw += [name for _, name in facts]
        raw += [str(values[k]) for values in facts.values() for k in NAMED if values.get(k)]
    raw += [str(v) for r in f.errors.itertuples() for v in (r.kind, r.example)]
    raw = [s for s in raw if s and re.search(r"[^\W\d_]", s)]
    return raw + [i18n.markdown(str(templating.cell(s))) for s in raw]


def _prose(text: str, data: list[str]) -> str:
    """The document less its code, URLs, timestamps, versions and the data's own strings (longest first)."""
    text = URL.sub(" ", TIMESTAMP.sub(" ", CODE_SPAN.sub(" ", text)))
    for s in sorted(set(data), key=len, reverse=True):
        text = text.replace(s, " ")
    return VERSION.sub(" ", text)


def test_the_words_finder_catches_what_the_issue_found_and_spares_code_and_terms_of_art():
    assert _english_in("Targets cumplidos; digest 0123456789ab; ninguna request") == ["Targets", "digest", "request"]
    assert _english_in("`keep_alive: -1` o num_ctx 2048, --base-url, llama-server, TTFB y tokens/s del prompt") == []
    assert _forbidden_in("una solicitud, la Varianza (CV) y la línea base") == ["solicitud", "varianza", "línea base"]


def test_no_message_of_the_spanish_catalog_has_an_english_word_or_a_forbidden_variant():
    es = i18n.catalog("es")
    english = {key: found for key, message in es.items() if (found := _english_in(message))}
    assert not english, english
    forbidden = {key: found for key, message in es.items() if (found := _forbidden_in(message))}
    assert not forbidden, forbidden


def test_each_thing_has_the_glossary_s_one_word():
    en, es = i18n.catalog("en"), i18n.catalog("es")
    missing = {}
    for term, forms in GLOSSARY["terms"].items():
        longer = [t for t in GLOSSARY["terms"] if term in t and t != term]  # "later requests" says "request" its way
        for key, message in en.items():
            said = PLACEHOLDER.sub(" ", CODE_SPAN.sub(" ", message))
            for phrase in longer:
                said = re.sub(rf"\b{re.escape(phrase)}s?\b", " ", said, flags=re.IGNORECASE)
            if re.search(rf"\b{re.escape(term)}s?\b", said, re.IGNORECASE) and \
                    not any(form.lower() in es[key].lower() for form in forms):
                missing.setdefault(term, []).append(key)
    assert not missing, missing


def test_the_spanish_document_has_no_english_outside_code_names_and_the_study_s_own_text(spanish):
    text, data = spanish
    assert "smollm2-135m-q8_0" in text and CLAIM in text and "AMD EPYC 9454" in text  # the data is there, and spared
    prose = _prose(text, data)
    assert not _english_in(prose), _english_in(prose)
    assert not _forbidden_in(prose), _forbidden_in(prose)
    assert "hash 0123456789ab" in text and "parámetros 134,52M" in text


def test_every_number_of_the_spanish_document_is_written_the_spanish_way(spanish):
    text, data = spanish
    prose = _prose(text, data)
    assert re.search(r"\d,\d", prose) and re.search(r"\d\.\d{3}", prose)  # decimals and thousands are there
    found = [prose[max(0, m.start() - 30):m.end() + 10] for m in DECIMAL_POINT.finditer(prose)]
    assert not found, found
