"""The report's words (one catalog per language, catalogs/<lang>.yaml) and its number formats (Babel's CLDR).

Catalog messages are trusted Markdown with named placeholders; `t()` escapes what fills them.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from babel import Locale
from babel.numbers import format_decimal, format_percent
from markupsafe import Markup

LANGS = ("en", "es")
CATALOGS = Path(__file__).parent / "catalogs"
DASH = "–"
NBSP = "\u00a0"


@cache
def catalog(lang: str) -> dict[str, str]:
    """Every message of `lang`, by key."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, not {lang!r}")
    return yaml.safe_load((CATALOGS / f"{lang}.yaml").read_text(encoding="utf-8"))


def t(key: str, lang: str, **values: Any) -> Markup:
    """The message `key` in `lang` with `values` filled in, each value HTML-escaped unless it is Markup."""
    return Markup(catalog(lang)[key]).format(**values)


def text(key: str, lang: str, **values: Any) -> str:
    """The message as plain text (figure titles and axes: matplotlib draws text, not HTML)."""
    return catalog(lang)[key].format(**values)


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def number(value: float | None, lang: str, decimals: int = 0) -> str:
    """A number as the language writes it (CLDR): 21,470.5 (en), 21.470,5 (es); a dash when missing."""
    if _missing(value):
        return DASH
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(float(value), format=pattern, locale=lang)


def ms(value: float | None, lang: str) -> str:
    """A duration: whole ms below 10 s, else seconds with one decimal (3,627 ms; 21.5 s)."""
    if _missing(value):
        return DASH
    value = float(value)
    return f"{number(value / 1000, lang, 1)}{NBSP}s" if abs(value) >= 10_000 else f"{number(value, lang)}{NBSP}ms"


def percent(value: float | None, lang: str, decimals: int = 0) -> str:
    """A share as the language writes a percentage (47%, 47 %)."""
    if _missing(value):
        return DASH
    pattern = Locale.parse(lang).percent_formats[None].pattern
    if decimals:
        pattern = re.sub(r"0(?=[^0#]*%)", "0." + "0" * decimals, pattern, count=1)
    return format_percent(float(value), format=pattern, locale=lang)


def mib(value: float | None, lang: str) -> str:
    """Bytes as MiB."""
    return DASH if _missing(value) else f"{number(float(value) / 2**20, lang)}{NBSP}MiB"


def ratio(value: float | None, lang: str) -> str:
    """A ratio of medians (0.33×)."""
    return DASH if _missing(value) else f"{number(value, lang, 2)}×"
