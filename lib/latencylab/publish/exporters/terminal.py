"""The short table printed at the end of `latencylab run` and `latencylab report`, in the report's language: it
runs after the notebook, from the summary.json the notebook wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latencylab.publish import i18n
from latencylab.publish.exporters import summary_json

NAME = "terminal"
FILE = ""  # printed, not written


def table(summary: dict[str, Any]) -> str:
    """A plain-text table of a summary.json: scenario, n, median and p95, change, targets passed; words from the
    catalog of the summary's language, numbers as that language writes them."""
    lang = summary.get("lang") or "en"

    def t(key: str, **values: Any) -> str:
        return i18n.text(f"terminal_{key}", lang, **values)

    metric = i18n.text(f"metric_{summary['metric']}", lang)
    change = {(c["run"], c["scenario"]): c["change_pct"] for c in summary["comparisons"]}
    passed = {(x["run"], x["scenario"]): (x["passed"], x["judged"]) for x in summary["headline"]["targets_passed"]}
    baseline = (summary["baseline"]["run"], summary["baseline"]["scenario"])
    header = (t("scenario"), t("n"), t("median", metric=metric), t("p95", metric=metric), t("change"), t("passed"))
    rows = []
    for s in summary["scenarios"]:
        key = (s["run"], s["scenario"])
        difference = t("baseline") if key == baseline else i18n.DASH if change.get(key) is None else \
            ("+" if change[key] > 0 else "") + i18n.number(change[key], lang) + " %"
        rows.append((s["label"], i18n.number(s["n"], lang), i18n.ms(s["median"], lang), i18n.ms(s["p95"], lang),
                     difference, t("passed_of", passed=passed[key][0], judged=passed[key][1]) if key in passed
                     else i18n.DASH))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    return "\n".join(line(r) for r in [header, *rows])


def export(page: Path) -> str:
    """What the terminal shows after publishing `page`: the table of the summary.json beside it, then where the
    report is."""
    summary = summary_json.read(page.parent)
    lang = (summary or {}).get("lang") or "en"
    where = i18n.text("terminal_report", lang, path=page)
    return where if summary is None else f"{table(summary)}\n{where}"
