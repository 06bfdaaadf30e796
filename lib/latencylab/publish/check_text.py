"""The check's findings in words: `check_<rule>` and `check_fix_<rule>` from the catalogs, the evidence in the
language's number formats (`i18n`). The terminal (`latencylab check`, `--json`, the run's warnings) and the report
all render a finding through `render`."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

from markupsafe import Markup

from latencylab.plan.check import CheckResult, Finding
from latencylab.publish import i18n

# How evidence is shown, by the suffix of its name (plan/check.py names it so): GiB, percent points, seconds, and a
# word the catalog translates (`check_source_<value>`).
FORMATS: dict[str, Callable[[Any, str], str]] = {
    "_gb": i18n.gib,
    "_pct": lambda v, lang: i18n.percent(None if v is None else v / 100, lang),
    "_s": i18n.seconds,
    "_source": lambda v, lang: i18n.t(f"check_source_{str(v).replace(' ', '_')}", lang),
}


def _shown(name: str, value: Any, lang: str) -> Any:
    for suffix, show in FORMATS.items():
        if name.endswith(suffix):
            return show(value, lang)
    if isinstance(value, float):
        return i18n.decimal(value, lang)
    return ", ".join(map(str, value)) if isinstance(value, list) else value


def _key(rule: str) -> str:
    return rule.replace("-", "_")


def render(finding: Finding, lang: str = "en") -> tuple[Markup, Markup]:
    """The finding's sentence (its scenario first) and its fix, with every value escaped for HTML (`i18n.plain`
    gives the text, `i18n.markdown` the Markdown)."""
    values = {name: _shown(name, value, lang) for name, value in finding.evidence.items()}
    for key in (f"check_{_key(finding.rule)}", f"check_fix_{_key(finding.rule)}"):
        # a number a check.json from an older version lacks (the compute graph, before issue 18) shows as "?"
        values |= {n: "?" for _, n, _, _ in string.Formatter().parse(i18n.catalog(lang)[key]) if n and n not in values}
    message = i18n.t(f"check_{_key(finding.rule)}", lang, **values)
    if finding.scenario:
        message = Markup("{}: ").format(finding.scenario) + message
    return message, i18n.t(f"check_fix_{_key(finding.rule)}", lang, **values)


def text(finding: Finding, lang: str = "en") -> tuple[str, str]:
    """`render` as plain text: the terminal and JSON show the characters the HTML shows."""
    message, fix = render(finding, lang)
    return i18n.plain(message), i18n.plain(fix)


def lines(result: CheckResult, lang: str = "en") -> list[str]:
    """The check as the terminal shows it: level, rule and line per finding, its fix under it, then the counts."""
    out = []
    for finding in result.findings:
        message, fix = render(finding, lang)
        out += [f"{finding.level:<7}  {finding.rule}  {i18n.plain(message)}",
                f"{'':<9}{i18n.plain(i18n.t('check_line_fix', lang, fix=fix))}"]
    counts = result.counts()
    out.append(i18n.plain(i18n.t("check_line_counts", lang, errors=counts["error"], warnings=counts["warning"],
                                 notes=counts["note"])))
    return out


def as_json(result: CheckResult, lang: str = "en") -> dict[str, Any]:
    """The JSON form with each finding's line and fix added as plain text (the data stays as it was)."""
    data = result.to_dict()
    for entry, finding in zip(data["findings"], result.findings, strict=True):
        entry["message"], entry["fix"] = text(finding, lang)
    return data
