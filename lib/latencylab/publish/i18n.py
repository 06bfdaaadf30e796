"""The report's words (one catalog per language, catalogs/<lang>.yaml) and its number formats (Babel's CLDR).

Catalog messages are trusted Markdown with named placeholders; `t()` escapes what fills them for HTML.
`markdown()` turns that escaping into Markdown's (latency.md shows `'` and `<`, not `&#39;` and `&lt;`), `plain()`
into none (the terminal).
"""

from __future__ import annotations

import math
import re
from typing import Any

from babel import Locale
from babel.numbers import format_decimal, format_percent
from markupsafe import Markup

# The one loader, core's: the collection's words and the report's come from the same files. `text` is a message as
# plain text (figure titles and axes: matplotlib draws text, not HTML).
from latencylab.core.words import CATALOGS as CATALOGS
from latencylab.core.words import LANGS as LANGS
from latencylab.core.words import catalog
from latencylab.core.words import text as text

DASH = "–"
NBSP = "\u00a0"


def t(key: str, lang: str, **values: Any) -> Markup:
    """The message `key` in `lang` with `values` filled in, each value HTML-escaped unless it is Markup."""
    return Markup(catalog(lang)[key]).format(**values)


# The entities markupsafe writes, and what Markdown needs instead: the character itself, backslash-escaped only
# where Markdown would read raw HTML (`<` before a tag's first character) or an entity (`&` before `name;`).
_ESCAPED = re.compile(r"&(amp|lt|gt|#39|#34);")
_TAG_START = re.compile(r"[A-Za-z/!?]")
_ENTITY = re.compile(r"#?[A-Za-z0-9]+;")


def markdown(escaped: str) -> str:
    """Markdown rendered with HTML escaping (`t()`, the templates) as Markdown that shows each character as itself
    and still renders no HTML a value brought in: `&#39;` → `'`, `&lt;` → `<` (`\\<` before a tag)."""

    def one(match: re.Match[str]) -> str:
        name, end = match.group(1), match.end()
        if name == "lt":
            return "\\<" if _TAG_START.match(escaped, end) else "<"
        if name == "amp":
            return "\\&" if _ENTITY.match(escaped, end) else "&"
        if name == "gt":
            return "\\>" if match.start() == 0 or escaped[match.start() - 1] == "\n" else ">"  # not a quote
        return "'" if name == "#39" else '"'

    return _ESCAPED.sub(one, escaped)


def plain(message: Markup) -> str:
    """A rendered message as plain text (the terminal, JSON): the characters the HTML shows."""
    return message.unescape()


def missing(value: Any) -> bool:
    """None, NaN, or pandas' own missing values (NA, NaT): pandas only for a value of its own, so that the
    terminal's words (`latencylab check`) need no pandas."""
    if value is None:
        return True
    if type(value).__module__.startswith("pandas"):
        import pandas as pd

        return bool(pd.isna(value))
    try:
        return math.isnan(value)
    except TypeError:
        return False


def number(value: float | None, lang: str, decimals: int = 0) -> str:
    """A number as the language writes it (CLDR): 21,470.5 (en), 21.470,5 (es); a dash when missing."""
    if missing(value):
        return DASH
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(float(value), format=pattern, locale=lang)


def ms(value: float | None, lang: str) -> str:
    """A duration: whole ms below 10 s, else seconds with one decimal (3,627 ms; 21.5 s)."""
    if missing(value):
        return DASH
    value = float(value)
    return f"{number(value / 1000, lang, 1)}{NBSP}s" if abs(value) >= 10_000 else f"{number(value, lang)}{NBSP}ms"


def percent(value: float | None, lang: str, decimals: int = 0) -> str:
    """A share as the language writes a percentage (47%, 47 %)."""
    if missing(value):
        return DASH
    pattern = Locale.parse(lang).percent_formats[None].pattern
    if decimals:
        pattern = re.sub(r"0(?=[^0#]*%)", "0." + "0" * decimals, pattern, count=1)
    return format_percent(float(value), format=pattern, locale=lang)


def mib(value: float | None, lang: str) -> str:
    """Bytes as MiB."""
    return DASH if missing(value) else f"{number(float(value) / 2**20, lang)}{NBSP}MiB"


def decimal(value: float, lang: str) -> str:
    """At most two decimals, none when they are zero (4.68, 0.5, 3; 4,68 in Spanish)."""
    return format_decimal(float(value), format="#,##0.##", locale=lang)


def gib(value: float | None, lang: str) -> str:
    """A size given in GiB (the check's evidence): 4.68 GiB, 4,68 GiB."""
    return DASH if missing(value) else f"{decimal(value, lang)}{NBSP}GiB"


def seconds(value: float | None, lang: str) -> str:
    """A setting's duration in seconds (keep_alive, a gap between requests): 300 s, 2,5 s."""
    return DASH if missing(value) else f"{decimal(value, lang)}{NBSP}s"


def ratio(value: float | None, lang: str) -> str:
    """A ratio of medians (0.33×)."""
    return DASH if missing(value) else f"{number(value, lang, 2)}×"


def rate(value: float | None, lang: str) -> str:
    """A rate in requests per second: two decimals below 10, one below 100, none above."""
    if missing(value):
        return DASH
    return number(value, lang, 2 if value < 10 else 1 if value < 100 else 0)
