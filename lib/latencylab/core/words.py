"""The catalogs' words as plain text, for every layer: what `latencylab run` and `check` print while they work
(progress, warnings) comes from the same catalogs/<lang>.yaml as the report, in the user's language. The files live
with the report's templates (publish/catalogs/); `publish.i18n` adds HTML escaping and number formats on top."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

LANGS = ("en", "es")
CATALOGS = Path(__file__).resolve().parents[1] / "publish" / "catalogs"


@cache
def catalog(lang: str) -> dict[str, str]:
    """Every message of `lang`, by key."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, not {lang!r}")
    return yaml.safe_load((CATALOGS / f"{lang}.yaml").read_text(encoding="utf-8"))


def text(key: str, lang: str, **values: Any) -> str:
    """The message `key` in `lang` with `values` filled in, as plain text (no escaping: a terminal shows it)."""
    return catalog(lang)[key].format(**values)
