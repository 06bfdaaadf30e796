"""The report's words: two catalogs with the same keys and placeholders, locale formats, and a Spanish
document without an English sentence."""

from __future__ import annotations

import re
import shutil
import string
from pathlib import Path

import pytest

from latencylab.core import paths
from latencylab.publish import document, figures, i18n, report

FIXTURE = Path(__file__).parents[1] / "data" / "fixture-run"
# Words the issue found in the Spanish report (issue 10), matched as whole words, case-sensitively.
ENGLISH_WORDS = ["Run", "Study", "Status", "Host", "state", "request(s)", "requests", "mean", "median [95 %]",
                 "std", "client queue", "first request", "no evidence"]


def _placeholders(message: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(message) if name}


def test_both_catalogs_have_the_same_keys_and_placeholders():
    en, es = i18n.catalog("en"), i18n.catalog("es")
    assert sorted(en) == sorted(es)
    for key in en:
        assert _placeholders(en[key]) == _placeholders(es[key]), key


def test_an_unknown_language_is_refused():
    with pytest.raises(ValueError, match="lang must be one of en, es, not 'fr'"):
        i18n.catalog("fr")


def test_placeholders_are_escaped_and_the_catalog_is_not():
    assert i18n.t("load_none", "en", scenario="<b>") == "**&lt;b&gt;**: no request after the first made the " \
                                                       "server load the model."
    assert "Cliff's" in i18n.t("verdict_faster", "en", p="< 0.01", delta="-1")


def test_markdown_shows_each_character_and_backslash_escapes_only_what_would_be_html():
    escaped = str(i18n.t("load_none", "en", scenario="it's <b> & p < 1 &amp; a > b"))
    assert i18n.markdown(escaped) == "**it's \\<b> & p < 1 \\&amp; a > b**: no request after the first made the " \
                                     "server load the model."
    assert i18n.markdown("&gt; quoted") == "\\> quoted"  # not a block quote at a line's start
    assert i18n.plain(i18n.t("load_none", "en", scenario="<b>")).startswith("**<b>**")


def test_numbers_are_written_as_each_language_writes_them():
    nbsp = "\u00a0"
    assert (i18n.ms(21470, "en"), i18n.ms(21470, "es")) == (f"21.5{nbsp}s", f"21,5{nbsp}s")
    assert (i18n.ms(3627, "en"), i18n.ms(13627.0 / 1.0, "es")) == (f"3,627{nbsp}ms", f"13,6{nbsp}s")
    assert i18n.number(21470.5, "es", 1) == "21.470,5" and i18n.number(3627, "es") == "3.627"
    assert (i18n.percent(0.475, "en", 1), i18n.percent(0.475, "es", 1)) == ("47.5%", f"47,5{nbsp}%")
    assert i18n.ms(None, "en") == i18n.percent(float("nan"), "es") == "–"
    assert i18n.ratio(0.109, "es") == "0,11×"
    assert (i18n.gib(4.68, "es"), i18n.gib(3.0, "en"), i18n.seconds(2.5, "es")) == (f"4,68{nbsp}GiB", f"3{nbsp}GiB",
                                                                                   f"2,5{nbsp}s")


def _fragments(message: str) -> list[str]:
    """The literal runs of a catalog message between placeholders, without Markdown emphasis."""
    parts = re.split(r"\{[^}]*\}", message.replace("**", "").replace("`", ""))
    return [p.strip(" .,;:()—-") for p in parts if len(p.strip(" .,;:()—-").split()) >= 3]


@pytest.fixture
def spanish(workdir: Path) -> str:
    shutil.copytree(FIXTURE, paths.run_dir("fixture-run"))
    doc = report.document_of(["fixture-run"], lang="es", baseline="data/baselines/seed-phi3-baseline.csv")
    own = report.document_of(["fixture-run"], lang="es")
    words = []
    for d in (doc, own):  # every section, and every figure's title and alt text (without drawing them)
        words += [d.markdown(name) for name in document.SECTIONS]
        words += [" ".join(figures.words(d.findings, spec.name, "es")) for spec in figures.FIGURES]
    return "\n".join(words)


def test_the_spanish_document_has_no_sentence_of_the_english_catalog(spanish):
    en, es = i18n.catalog("en"), i18n.catalog("es")
    english = [fragment for key, message in en.items() if message != es[key] for fragment in _fragments(message)]
    assert len(english) > 100
    found = [fragment for fragment in english if fragment in spanish]
    assert not found, found
    words = [w for w in ENGLISH_WORDS if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", spanish)]
    assert not words, words
