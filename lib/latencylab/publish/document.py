"""The latency documentation in words: `Findings` rendered through templates/report/ and a catalog.

Nothing here computes a figure: every number comes from the findings, every sentence from
catalogs/<lang>.yaml, every format from `i18n`. `Report` shows it section by section in a notebook, with the
figures the notebook's cells drew; the exporters (publish/exporters/) write it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from markupsafe import Markup, escape

from latencylab.analyse.capacity import ACHIEVED_SHARE, SLO_METRICS
from latencylab.analyse.causes.offload import OffloadValues
from latencylab.analyse.conversation import scenario_turns
from latencylab.analyse.findings import (
    Fill,
    Findings,
    Key,
    Modes,
    Phrase,
    Phrases,
    Quantity,
    RunInfo,
    Saturation,
    Step,
    Verdict,
)
from latencylab.plan.check import MEMORY_RULES, Finding
from latencylab.publish import check_text, figures, i18n, templating

# The document's order: the answer first (the summary with the figure of the cause, the diagnosis, what to do and the
# targets), then the measurements and how they were made. The figures of each section: publish/figures.py.
SECTIONS = ("summary", "diagnosis", "next_steps", "targets", "results", "setup", "optimisation", "baseline", "phases",
            "analysis", "measured", "conversation", "concurrency", "capacity", "sweep", "runs", "errors")


def step_words(step: Step, labels: dict[Key, str], lang: str, metric: str = "ttfb_ms") -> Markup:
    """One next step as a sentence; a predicted gain with the metric it predicts."""
    v, scenario = step.values, labels.get(step.key, "") if step.key else ""
    values: dict[str, Any] = {"scenario": scenario}
    if step.kind.startswith("predict_"):
        values.update(metric=i18n.t(f"metric_{metric}", lang), now=i18n.ms(v["now"], lang),
                      after=i18n.ms(v["after"], lang), saved=i18n.ms(v["saved"], lang))
        measured = Markup("").join(i18n.t("next_predict_measured", lang, run=labels.get(m["key"], m["key"][1]),
                                          measured=i18n.ms(m["median"], lang), change=("+" if m["change_pct"] > 0
                                          else "") + i18n.percent(m["change_pct"] / 100, lang))
                                 for m in v.get("measured", []))
        return i18n.t(f"next_{step.kind}", lang, **values) + measured
    if step.kind == "errors":
        values.update(share=i18n.percent(v["share"], lang), kinds=", ".join(f"{k} ×{n}" for k, n in v["kinds"].items()))
    elif step.kind == "keep_loaded":
        values.update(share=i18n.percent(v["share"], lang), load=i18n.ms(v["load"], lang))
    elif step.kind == "vram":
        values.update(share=i18n.percent(v["share"], lang))
    elif step.kind == "serialised":
        values.update(factor=i18n.number(v["factor"], lang, 1), low=v["low"], high=v["high"])
    elif step.kind == "variance":
        values.update(cv=i18n.percent(v["cv"], lang), goal=i18n.percent(v["goal"], lang))
    elif step.kind == "more_samples":
        values.update(n=v["n"])
    elif step.kind == "floor_above_target":
        values.update(floor=i18n.ms(v["floor"], lang), goal=i18n.ms(v["goal"], lang),
                      target=i18n.t(f"t_{v['target']}", lang, metric=i18n.t(f"metric_{metric}", lang)),
                      metric=i18n.t(f"metric_{metric}", lang), now=i18n.ms(v["now"], lang),
                      after=i18n.ms(v["after"], lang))
    return i18n.t(f"next_{step.kind}", lang, **values)


def slo_words(run: RunInfo, lang: str) -> Markup:
    """A run's SLOs and how a level is judged held, as a sentence."""
    limits = [i18n.t(f"slo_{m}", lang, limit=i18n.ms(run.slo[m], lang)) for m in SLO_METRICS if run.slo.get(m)]
    values = {"share": i18n.percent(ACHIEVED_SHARE, lang), "goal": i18n.percent(run.slo.get("goal", 0.95), lang)}
    if not limits:
        return i18n.t("capacity_no_slo", lang, **values)
    return i18n.t("capacity_slo", lang, limits=Markup(", ").join(limits), **values)


rate_words = i18n.rate  # (the capacity section's rates and the figures' conclusions write them alike)


def saturation_words(point: Saturation, labels: dict[Key, str], lang: str) -> Markup:
    """Where a scenario's saturation point lies and, past it, what grew."""
    scenario = labels.get((point.run, point.scenario), point.scenario)
    said = i18n.t(f"saturation_{point.status}", lang, scenario=scenario, rate=rate_words(point.rate, lang),
                  high=rate_words(point.high, lang))
    grows = point.grows

    def lag(ms: float) -> str:
        return f"{i18n.number(ms, lang, 1)}\u00a0ms"

    if "queue_p50_ms" in grows and "client_lag_p50_ms" in grows:
        (queue_held, queue_broke), (lag_held, lag_broke) = grows["queue_p50_ms"], grows["client_lag_p50_ms"]
        said += Markup(" ") + i18n.t("saturation_grows", lang, rate=rate_words(point.rate, lang),
                                     high=rate_words(point.high, lang), queue_held=i18n.ms(queue_held, lang),
                                     queue_broke=i18n.ms(queue_broke, lang), lag_held=lag(lag_held),
                                     lag_broke=lag(lag_broke))
    if "server_wait_p50_ms" in grows:
        held, broke = grows["server_wait_p50_ms"]
        said += Markup(" ") + i18n.t("saturation_server_wait", lang, held=i18n.ms(held, lang),
                                     broke=i18n.ms(broke, lang))
    return said


def _tps(value: float | None, lang: str) -> str:
    return i18n.number(value, lang, 1)


def phrase_words(phrase: Phrase, lang: str, **common: Any) -> Markup:
    """A phrase as its catalog words, every number in its unit's format; `common` fills the placeholders every
    phrase of a sentence may use (scenario, verdict, metric) where the phrase does not fill them itself."""

    def fill(value: Fill) -> Markup | str:
        if value is None:
            return ""
        if isinstance(value, Quantity):
            return UNITS[value.unit](value.value, lang)
        if isinstance(value, Phrase):
            return phrase_words(value, lang, **common)
        return Markup(value.sep).join(phrase_words(p, lang, **common) for p in value.items)

    return i18n.t(phrase.key, lang, **{**common, **{name: fill(v) for name, v in phrase.values.items()}})


def verdict_words(v: Verdict, f: Findings, lang: str) -> Markup:
    """One cause's verdict on one scenario as a sentence, with the numbers behind it."""
    return phrase_words(v.phrase(), lang, scenario=f.labels.get(v.key, v.key[1]),
                        verdict=i18n.t(f"dx_verdict_{v.verdict}", lang), metric=i18n.t(f"metric_{f.metric}", lang))


def waste_words(key: Key, f: Findings, lang: str) -> Markup | None:
    """One scenario's diagnosis in one line: the waste confirmed, or nothing wasted (None: not diagnosed)."""
    verdicts = [v for v in f.diagnosis.verdicts if v.key == key]
    if not verdicts:
        return None
    wasted = Phrases(tuple(Phrase(f"dx_waste_{v.cause}") for v in verdicts if v.verdict == "confirmed"), ", ")
    phrase = Phrase("dx_wasted", {"causes": wasted}) if wasted.items else Phrase("dx_nothing_wasted")
    return phrase_words(phrase, lang, scenario=f.labels.get(key, key[1]), metric=i18n.t(f"metric_{f.metric}", lang))


def no_host_words(f: Findings, lang: str) -> list[Markup]:
    """Why scenarios have no host evidence, once per reason, with the scenarios it holds for."""
    reasons = f.diagnosis.no_host
    return [i18n.t(f"dx_no_host_{reason}", lang, scenarios=", ".join(f.labels.get(k, k[1]) for k, r in reasons.items()
                                                                      if r == reason))
            for reason in dict.fromkeys(reasons.values())]


def thresholds_words(f: Findings, lang: str) -> Markup:
    """What makes a part of the first byte material in this report, as the diagnosis applied it."""
    x = f.diagnosis.thresholds
    metric = i18n.t(f"metric_{f.metric}", lang)
    why = i18n.t("dx_threshold_default", lang) if not x.get("target") else i18n.t(
        "dx_threshold_target", lang, target=i18n.t(f"t_{x['target']}", lang, metric=metric),
        goal=i18n.ms(x["goal"], lang))
    return i18n.t("dx_thresholds", lang, share=i18n.percent(x["share"], lang), ms=i18n.ms(x["ms"], lang),
                  metric=metric, why=why)


def _p(p: float, lang: str) -> str:
    return f"< {i18n.number(0.0001, lang, 4)}" if p < 0.0001 else f"= {i18n.number(p, lang, 4)}"


def _fine_ms(value: float | None, lang: str) -> str:
    """A short duration with two decimals (client queueing is often well under a millisecond)."""
    return "–" if i18n.missing(value) else f"{i18n.number(value, lang, 2)}{i18n.NBSP}ms"


# How each unit of a `Quantity` is written.
UNITS: dict[str, Callable[[Any, str], str]] = {
    "ms": i18n.ms, "fine_ms": _fine_ms, "share": i18n.percent, "count": i18n.number, "tps": _tps, "mib": i18n.mib,
    "rho": lambda v, lang: i18n.number(v, lang, 2), "p": _p,
    "slope": lambda v, lang: f"{i18n.number(v, lang, 2)}{i18n.NBSP}ms",
    "mbps": lambda v, lang: "–" if i18n.missing(v) else f"{i18n.number(v / 1e6, lang, 0)}{i18n.NBSP}MB/s",
    "gbps": lambda v, lang: "–" if i18n.missing(v) else f"{i18n.number(v / 1e9, lang, 1)}{i18n.NBSP}GB/s",
    "text": lambda v, lang: "–" if v is None else str(v),
}


def mode_words(m: Modes, f: Findings, lang: str) -> Markup:
    """A bimodal distribution, and whether prompt length explains it."""
    ms = lambda value: i18n.ms(value, lang)  # noqa: E731
    values = {"scenario": f.labels.get(m.key, m.key[1]), "metric": i18n.t(f"metric_{f.metric}", lang),
              "low": ms(m.low_median), "high": ms(m.high_median), "low_n": m.low_n, "high_n": m.high_n}
    if not m.by_prompt:
        return i18n.t("dx_modes_other", lang, **values)
    beyond = i18n.t("dx_modes_beyond", lang, n=m.beyond_n, start=ms(m.beyond_from)) if m.beyond_n else ""
    return i18n.t("dx_modes_prompt", lang, threshold=i18n.number(m.threshold, lang),
                  high_tokens=i18n.number(m.high_tokens, lang), low_tokens=i18n.number(m.low_tokens, lang),
                  agreement=i18n.percent(m.agreement, lang), **values) + beyond


def hypothesis_words(claim: str, cause: str, f: Findings, lang: str) -> Markup | None:
    """One of the study's hypotheses, in its own words, with this report's verdicts on the cause it names."""
    tested = [v for v in f.diagnosis.verdicts if v.cause == cause and v.verdict != "no_evidence"]
    if not tested:
        return None
    verdicts = Markup("; ").join(Markup("{}: {}").format(f.labels.get(v.key, v.key[1]),
                                                          i18n.t(f"dx_verdict_{v.verdict}", lang)) for v in tested)
    return i18n.t("dx_hypothesis", lang, claim=claim, verdicts=verdicts)


def check_words(item: Finding, f: Findings, lang: str) -> Markup:
    """One finding of the check before the run, in the report's language, with what was then measured."""
    message, _ = check_text.render(item, lang)
    line = Markup("{}: {}").format(i18n.t(f"dx_level_{item.level}", lang), message)
    key = (item.run, item.scenario)
    if item.rule in MEMORY_RULES and key in f.diagnosis.predicted:
        share = next(v.values.share for v in f.diagnosis.verdicts
                     if isinstance(v.values, OffloadValues) and v.key == key)
        line += i18n.t("dx_check_measured", lang, measured=i18n.percent(share, lang),
                       verdict=i18n.t(f"dx_check_{f.diagnosis.predicted[key][1]}", lang))
    return line


def section(findings: Findings, name: str, lang: str) -> str:
    """One section of the document as Markdown ('' where the data has nothing for it)."""
    template = templating.environment(lang).get_template("report/sections.md.j2")
    f = findings

    def phase(key: Key, which: str) -> pd.Series | None:
        index = (*key, which)
        return f.phases.loc[index] if index in f.phases.index else None

    def targets_passed(passed: dict[Key, tuple[int, int]]) -> Markup:
        return Markup("; ").join(i18n.t("summary_targets_one", lang, scenario=f.labels[key], passed=p, judged=n)
                                 for key, (p, n) in passed.items())

    module = template.make_module({
        "f": f, "M": i18n.t(f"metric_{f.metric}", lang), "label": lambda key: f.labels.get(tuple(key), key[1]),
        "heading": templating.heading(f.runs[0].study if f.runs else None, lang),
        "phase": phase, "targets_passed": targets_passed, "step": lambda s: step_words(s, f.labels, lang, f.metric),
        "verdict": lambda v: verdict_words(v, f, lang), "mode": lambda m: mode_words(m, f, lang),
        "waste": lambda key: waste_words(key, f, lang),
        "hypothesis": lambda h: hypothesis_words(h["claim"], h["cause"], f, lang),
        "thresholds": lambda: thresholds_words(f, lang), "check_line": lambda item: check_words(item, f, lang),
        "no_host": lambda: no_host_words(f, lang),
        "tps": lambda v: _tps(v, lang),
        "rate": lambda v: rate_words(v, lang), "slo_line": lambda run: slo_words(run, lang),
        "saturation_line": lambda point: saturation_words(point, f.labels, lang),
        "turns": lambda: scenario_turns(f.conversation),
    })
    return i18n.markdown(str(getattr(module, name)()).strip())


@dataclass
class Figure:
    """A drawn figure as PNG, with the title it carries and its alt text."""

    name: str
    png: bytes
    alt: str

    def html(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        return f'<img alt="{escape(self.alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


@dataclass
class Report:
    """The document of some findings in one language, section by section, with the figures the notebook drew."""

    findings: Findings
    lang: str = "en"
    _figures: dict[str, Figure] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        templating.environment(self.lang)

    def markdown(self, name: str) -> str:
        return section(self.findings, name, self.lang)

    def figure_names(self, name: str) -> list[str]:
        """The figures that support section `name` where the data can draw them, in the order shown."""
        return [spec.name for spec in figures.of_section(name) if spec.drawable(self.findings)]

    def figures(self, name: str) -> list[Figure]:
        """The figures of section `name` that the notebook handed in, in the order shown."""
        return [self._figures[spec.name] for spec in figures.of_section(name) if spec.name in self._figures]

    def drawn(self) -> list[Figure]:
        """Every figure the notebook handed in."""
        return list(self._figures.values())

    def words(self, key: str, **values: Any) -> str:
        """A catalog message as plain text in the report's language (axis labels, legend titles)."""
        return i18n.text(key, self.lang, **values)

    def number(self, value: float, decimals: int = 0) -> str:
        """A number as the report's language writes it (figures' labels: 0.62, 0,62)."""
        return i18n.number(value, self.lang, decimals)

    def ms(self, value: float) -> str:
        """A duration as the document writes it (1,234 ms; 1.234 ms)."""
        return i18n.ms(value, self.lang)

    def percent(self, value: float) -> str:
        """A share as the document writes it (47%, 47 %)."""
        return i18n.percent(value, self.lang)

    def title(self, name: str) -> str:
        """The title of figure `name`: what to conclude, then what is drawn."""
        return figures.words(self.findings, name, self.lang)[0]

    def add_figure(self, name: str, figure: plt.Figure) -> None:
        """Figure `name` as a notebook cell drew it, for its section (the HTML and latency.md); drawn again, it
        replaces the earlier one. A name the registry (publish/figures.py) lacks is an `UnknownFigure`."""
        _, alt = figures.words(self.findings, name, self.lang)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        self._figures[name] = Figure(name, buffer.getvalue(), alt)

    def drawable(self, name: str) -> bool:
        """Whether the findings hold what figure `name` draws (none where every request failed)."""
        return figures.named(name).drawable(self.findings)

    def show(self, name: str) -> None:
        """Display section `name` in a notebook: its text and tables, then the figures its cells drew."""
        from IPython.display import HTML, Markdown, display

        text = self.markdown(name)
        if text:
            display(Markdown(text))
        if name == "results" and not self.findings.has_latency:
            display(Markdown(i18n.t("no_figures", self.lang)))
        for figure in self.figures(name):
            display(HTML(figure.html()))

    def text(self) -> str:
        """The whole document as Markdown, figures linked from figures/."""
        parts = []
        for name in SECTIONS:
            if text := self.markdown(name):
                parts.append(text)
            parts += [f"![{i18n.markdown(escape(fig.alt))}](figures/{fig.name}.png)" for fig in self.figures(name)]
        return "\n\n".join(parts) + "\n"
