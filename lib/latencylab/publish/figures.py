"""The registry of the report's figures: for each, the section it supports, when the findings can draw it, what to
conclude from it, the catalog keys of its words and whether it draws a sample of the requests.

`FIGURES` is the one list that the document (`document.Report`: which figures a section shows, their titles and alt
text) and the report notebook (`doc.drawable("…")`, `doc.title("…")` in each figure's own cell) read. Adding a
figure is an entry here, its words in catalogs/{en,es}.yaml and its cell in notebooks/2.0-latency-report.ipynb;
a name with no entry is an `UnknownFigure` that names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from latencylab.analyse.attribution import PARTS
from latencylab.analyse.causes.floor import FloorValues
from latencylab.analyse.findings import Findings
from latencylab.core.errors import UnknownFigure
from latencylab.publish import i18n, plots


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: `what` (a catalog key, with {metric}) says what is drawn, `conclusion` what to
    conclude ('' where nothing), worded with the catalog keys `concludes`; `when` says whether the findings hold
    what it draws; a `sampled` figure draws a point per request, a seeded sample past plots.POINTS_MAX."""

    name: str
    section: str
    what: str
    conclusion: Callable[[Findings, str], str]
    concludes: tuple[str, ...] = ()
    when: Callable[[Findings], bool] = lambda f: True
    sampled: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        """The catalog keys of its title and alt text."""
        return (self.what, *self.concludes)

    def drawable(self, f: Findings) -> bool:
        """Whether the findings hold what it draws (none where every request failed)."""
        return f.has_latency and self.when(f)


def _medians(f: Findings, lang: str) -> str:
    x, label = f.facts, f.labels.get
    if x.fastest and x.slowest and x.fastest != x.slowest:
        return i18n.text("conclude_medians", lang, fastest=label(x.fastest), slowest=label(x.slowest),
                         fast=i18n.ms(x.medians[x.fastest], lang), slow=i18n.ms(x.medians[x.slowest], lang))
    if x.fastest:
        return i18n.text("conclude_one", lang, metric=i18n.text(f"metric_{f.metric}", lang),
                         scenario=label(x.fastest), median=i18n.ms(x.medians[x.fastest], lang))
    return ""


def _paid(f: Findings, lang: str) -> str:
    return i18n.text("conclude_paid", lang, paid=f.facts.paid, n=f.facts.measured)


def _decomposition(f: Findings, lang: str) -> str:
    found = f.facts.load_share_of_ttft
    return i18n.text("conclude_decomposition", lang, scenario=f.labels.get(found[0]),
                     share=i18n.percent(found[1], lang)) if found else ""


def _cv(f: Findings, lang: str) -> str:
    x = f.facts
    if x.cv_below_goal is None:
        return ""
    return i18n.text("conclude_cv", lang, k=x.cv_below_goal, n=x.cv_count, goal=i18n.percent(f.goals.get("cv"), lang))


def _targets(f: Findings, lang: str) -> str:
    return i18n.text("conclude_targets", lang, k=f.facts.targets_passed, n=f.facts.targets_judged)


def _concurrency(f: Findings, lang: str) -> str:
    step = next((step for step in f.steps if step.kind == "serialised"), None)
    if step is None:
        return ""
    return i18n.text("conclude_concurrency", lang, scenario=f.labels.get(step.key),
                     factor=i18n.number(step.values["factor"], lang, 1), low=step.values["low"],
                     high=step.values["high"])


def _sweep(f: Findings, lang: str) -> str:
    return i18n.text("conclude_sweep", lang, share=i18n.percent(f.facts.paid_share, lang))


def _knee(f: Findings, lang: str) -> str:
    held = [p for p in f.saturation if p.rate is not None]
    if not held:
        return i18n.text("conclude_knee_none", lang) if f.saturation else ""
    return "; ".join(i18n.text("conclude_knee", lang, scenario=f.labels.get((p.run, p.scenario), p.scenario),
                               rate=i18n.rate(p.rate, lang)) for p in held)


def _prefill(f: Findings, lang: str) -> str:
    growing = [(v.key, v.values.slope) for v in f.diagnosis.verdicts
               if isinstance(v.values, FloorValues) and v.values.significant]
    if not growing:
        return i18n.text("conclude_prefill_flat", lang)
    key, slope = max(growing, key=lambda found: found[1])
    return i18n.text("conclude_prefill", lang, scenario=f.labels.get(key, key[1]),
                     slope=f"{i18n.number(slope, lang, 2)} ms")


def _waterfall(f: Findings, lang: str) -> str:
    """The slowest request after a cold start, and the part that took most of it."""
    table = f.diagnosis.attribution
    slow = f.requests[~f.requests["cold_start"].astype(bool)] if "cold_start" in f.requests else f.requests
    slow = slow[slow["metric_ms"].notna()] if "metric_ms" in slow else slow.iloc[:0]
    if table.empty or slow.empty:
        return ""
    worst = slow.loc[slow["metric_ms"].idxmax()]
    parts = {p: float(worst[p]) for p in PARTS if not i18n.missing(worst[p])}
    part = max(parts, key=parts.get)
    return i18n.text("conclude_waterfall", lang, scenario=f.labels.get((worst["run"], worst["scenario"]), ""),
                     total=i18n.ms(worst["metric_ms"], lang), part=i18n.text(plots.PART_WORDS[part], lang),
                     ms=i18n.ms(parts[part], lang))


def _decode(f: Findings, lang: str) -> str:
    speeds = f.diagnosis.decode_by_residency
    spilled = speeds.get("partial") if not i18n.missing(speeds.get("partial")) else speeds.get("cpu")
    if not i18n.missing(speeds.get("gpu")) and not i18n.missing(spilled):
        return i18n.text("conclude_decode", lang, gpu=i18n.number(speeds["gpu"], lang, 1),
                         spilled=i18n.number(spilled, lang, 1))
    return i18n.text("conclude_decode_one", lang, speed=i18n.number(f.requests["decode_tps"].median(), lang, 1))


def _server(f: Findings, lang: str) -> str:
    waiting = f.server_metrics[f.server_metrics["quantity"] == "waiting"]
    if waiting.empty:
        return ""
    most, metric = waiting["value"].max(), waiting["source"].iloc[0]
    if most == 0:
        return i18n.text("conclude_server_none", lang, n=i18n.number(len(waiting), lang), metric=metric)
    return i18n.text("conclude_server", lang, most=i18n.number(most, lang), metric=metric)


def _nothing(f: Findings, lang: str) -> str:
    return ""


def _prompts_vary(f: Findings) -> bool:
    return not f.requests.empty and f.requests.loc[f.requests["ttft_ms"].notna(), "prompt_tokens"].nunique() >= 2


MEDIANS = ("conclude_medians", "conclude_one")
KNEE = ("conclude_knee", "conclude_knee_none")
# In the document's order within each section (document.SECTIONS orders the sections).
FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("timeline", "summary", "fig_timeline", _paid, ("conclude_paid",), sampled=True),
    FigureSpec("waterfall", "diagnosis", "fig_waterfall", _waterfall, ("conclude_waterfall",),
               when=lambda f: "metric_ms" in f.requests and bool(f.requests["metric_ms"].notna().any())),
    FigureSpec("server", "diagnosis", "fig_server", _server, ("conclude_server", "conclude_server_none"),
               when=lambda f: not f.server_metrics.empty, sampled=True),
    FigureSpec("targets", "targets", "fig_targets", _targets, ("conclude_targets",),
               when=lambda f: f.facts.targets_measured),
    FigureSpec("variability", "targets", "fig_cv", _cv, ("conclude_cv",),
               when=lambda f: f.facts.cv_below_goal is not None),  # it needs a goal
    FigureSpec("ecdf", "results", "fig_ecdf", _medians, MEDIANS),
    FigureSpec("box", "results", "fig_box", _medians, MEDIANS, sampled=True),
    FigureSpec("distribution", "baseline", "fig_distribution", _medians, MEDIANS, sampled=True),
    FigureSpec("decomposition", "analysis", "fig_decomposition", _decomposition, ("conclude_decomposition",),
               when=lambda f: f.facts.has_ttft),
    FigureSpec("prefill", "measured", "fig_prefill", _prefill, ("conclude_prefill", "conclude_prefill_flat"),
               when=_prompts_vary, sampled=True),
    FigureSpec("decode", "measured", "fig_decode", _decode, ("conclude_decode", "conclude_decode_one"),
               when=lambda f: not f.requests.empty and bool(f.requests["decode_tps"].notna().any()), sampled=True),
    FigureSpec("turns", "conversation", "fig_turns", _nothing, when=lambda f: not f.conversation.empty),
    FigureSpec("concurrency", "concurrency", "fig_concurrency", _concurrency, ("conclude_concurrency",),
               when=lambda f: not f.concurrency.empty),
    FigureSpec("latency_throughput", "capacity", "fig_latency_throughput", _knee, KNEE,
               when=lambda f: not f.capacity.empty),
    FigureSpec("goodput", "capacity", "fig_goodput", _knee, KNEE,
               when=lambda f: not f.capacity.empty),
    FigureSpec("sweep", "sweep", "fig_sweep", _sweep, ("conclude_sweep",), when=lambda f: not f.sweep.empty),
)
_BY_NAME = {spec.name: spec for spec in FIGURES}


def named(name: str) -> FigureSpec:
    """The registry's entry of figure `name`."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownFigure(f"no figure {name!r} in the registry of publish/figures.py (known: "
                            f"{', '.join(_BY_NAME)})") from None


def of_section(section: str) -> tuple[FigureSpec, ...]:
    """The figures of `section`, in the order shown."""
    return tuple(spec for spec in FIGURES if spec.section == section)


def words(f: Findings, name: str, lang: str) -> tuple[str, str]:
    """(title, alt text) of figure `name`: what to conclude, then what is drawn (and of how many requests, for a
    sample)."""
    spec = named(name)
    conclusion = spec.conclusion(f, lang)
    what = i18n.text(spec.what, lang, metric=i18n.text(f"metric_{f.metric}", lang))
    if spec.sampled and (shown := plots.drawn(f, name))[0] < shown[1]:
        what += " " + i18n.text("fig_sampled", lang, shown=i18n.number(shown[0], lang), n=i18n.number(shown[1], lang))
    title = f"{conclusion}\n{what}" if conclusion else what
    return title, i18n.text("figure_alt", lang, what=what, conclusion=conclusion).strip()
