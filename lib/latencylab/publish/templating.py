"""The Jinja2 environment of each language (the catalog as t(), the locale's number filters, autoescape on) and the
report's templates. Light: the process that publishes uses it for reports/index.html without the analysis."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from latencylab.publish import i18n

TEMPLATES = Path(__file__).parent / "templates"  # the report's Markdown, and the HTML page's template
# A count the server writes as text with a decimal point and a unit letter: Ollama's parameter_size (134.52M, 3.8B).
_SIZE_LABEL = re.compile(r"(\d+(?:\.\d+)?)([KMBT])")


def cell(value: Any) -> Markup:
    """A Markdown table cell: escaped, pipes and line breaks neutralised."""
    return Markup(str(escape(value)).replace("|", "\\|").replace("\n", " "))


@cache
def environment(lang: str) -> Environment:
    """The Jinja2 environment of one language: autoescape on, the catalog as t(), the locale's filters."""
    i18n.catalog(lang)  # refuses an unknown language
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True, undefined=StrictUndefined, keep_trailing_newline=True)
    formats: dict[str, Callable[..., str]] = {
        "ms": lambda v: i18n.ms(v, lang), "pct": lambda v: i18n.percent(v, lang),
        "num": lambda v, decimals=0: i18n.number(v, lang, decimals), "ratio": lambda v: i18n.ratio(v, lang),
        "mib": lambda v: i18n.mib(v, lang),
    }
    env.filters.update(formats)
    env.filters["fact"] = lambda v, name: fact_value(v, name, lang)
    env.filters.update(
        cell=cell,
        first_upper=lambda v: v[:1].upper() + v[1:] if isinstance(v, str) else v,  # a table's headings
        apply=lambda v, name: formats[name](v),
        gpu_text=lambda g: i18n.t("gpu_value", lang, name=g["name"], memory=i18n.mib(g["memory_total_bytes"], lang),
                                  driver=g["driver_version"], cuda=g["cuda_version"]),
        setting_name=lambda name: i18n.t(f"setting_{name}", lang) if f"setting_{name}" in i18n.catalog(lang) else name,
        setting_value=lambda v: setting_value(v, lang),
        p_value=lambda p: "–" if i18n.missing(p) else f"< {i18n.number(0.0001, lang, 4)}" if p < 0.0001
        else f"= {i18n.number(p, lang, 4)}",
    )
    env.tests["missing"] = i18n.missing
    env.globals.update(t=lambda key, **values: i18n.t(key, lang, **values),
                       has=lambda key: key in i18n.catalog(lang))
    return env


def setting_value(value: Any, lang: str) -> str:
    """A scenario's setting as the study wrote it, a fraction in the language's decimals (2,5), yes/no, 'not set'."""
    if value is None:
        return i18n.t("unset", lang)
    if isinstance(value, bool):
        return i18n.t("yes" if value else "no", lang)
    return i18n.decimal(value, lang) if isinstance(value, float) else str(value)


def fact_value(value: Any, name: str, lang: str) -> str:
    """One server fact as shown: sizes in MiB, a digest's first 12 hex digits, yes/no, '–' when unknown, numbers
    (a parameter count written as text too: 134.52M) in the language's format."""
    if i18n.missing(value):
        return "–"
    if isinstance(value, bool):
        return i18n.t("yes" if value else "no", lang)
    if name.endswith("_bytes") and isinstance(value, int | float):
        return i18n.mib(value, lang)
    if name == "digest":
        return str(value).removeprefix("sha256:")[:12]
    if name == "config":  # an Ollama server's start log: KEY=value, the server's default where it printed none
        if not isinstance(value, dict):
            return i18n.t("config_unknown", lang)
        return ", ".join(f"{k.removeprefix('OLLAMA_')}={v or i18n.t('config_default', lang)}" for k, v in value.items())
    if isinstance(value, int):
        return i18n.number(value, lang)
    if isinstance(value, float):
        return i18n.decimal(value, lang)
    if name == "parameter_size" and (size := _SIZE_LABEL.fullmatch(str(value))):
        return i18n.decimal(float(size[1]), lang) + size[2]
    return str(value)


def heading(study: str | None, lang: str) -> str:
    """The document's title as plain text: latency.md's first heading, the HTML page's <title>."""
    return i18n.text("title", lang, study=study or "latencylab")
