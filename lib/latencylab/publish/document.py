"""The latency documentation in words: `Findings` rendered through templates/report/ and a catalog.

Nothing here computes a figure: every number comes from the findings, every sentence from
catalogs/<lang>.yaml, every format from `i18n`. `Report` shows it section by section in a notebook, with the
figures the notebook's cells drew; the exporters (publish/exporters/) write it.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from markupsafe import Markup, escape

from latencylab.analyse.answer import share_of
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


def step_words(step: Step, labels: dict[Key, str], lang: str, metric: str = "ttfb_ms",
               disturbed: Collection[Key] = ()) -> Markup:
    """One next step as a sentence; a predicted gain with the metric it predicts, and what was measured where the
    fix was tried (said to be disturbed where a busy host slowed that scenario: not the change's alone)."""
    v, scenario = step.values, labels.get(step.key, "") if step.key else ""
    values: dict[str, Any] = {"scenario": scenario}
    if step.kind.startswith("predict_"):
        values.update(metric=i18n.t(f"metric_{metric}", lang), now=i18n.ms(v["now"], lang),
                      after=i18n.ms(v["after"], lang), saved=i18n.ms(v["saved"], lang))
        items = [i18n.t("next_predict_disturbed", lang, run=labels.get(m["key"], m["key"][1]),
                        measured=i18n.ms(m["median"], lang)) if tuple(m["key"]) in disturbed else
                 i18n.t("next_predict_measured_item", lang, run=labels.get(m["key"], m["key"][1]),
                        measured=i18n.ms(m["median"], lang), change=signed(m["change_pct"] / 100, lang))
                 for m in v.get("measured", [])]
        listed = Markup("; ").join(items)
        measured = i18n.t("next_predict_measured", lang, list=listed) if items else Markup("")
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


def names(keys: Any, f: Findings, lang: str) -> Markup:
    """Scenarios named one after another: "a, b and c"."""
    said = [escape(f.labels.get(tuple(k), k[1])) for k in keys]
    if len(said) < 2:
        return Markup("").join(said)
    return Markup(", ").join(said[:-1]) + i18n.t("list_and", lang) + said[-1]


def signed(value: float | None, lang: str) -> str:
    """A change as a signed percentage: +5 %, −66 %."""
    if i18n.missing(value):
        return "–"
    return ("+" if value > 0 else "") + i18n.percent(value, lang).replace("-", "−")


def _gist_amount(v: Verdict) -> Phrase | None:
    x = v.values
    amount, part = getattr(x, "amount_ms", None), share_of(v)
    if i18n.missing(amount) and not part:
        return None
    return Phrase("gist_amount", {"amount": Quantity(amount, "ms"), "share": Quantity(part, "share")})


def _gist_offload(v: Verdict) -> Phrase | None:
    return Phrase("gist_gpu", {"share": Quantity(getattr(v.values, "share", None), "share")})


def _gist_floor(v: Verdict) -> Phrase | None:
    x = v.values
    return Phrase("gist_floor", {"ms": Quantity(x.floor_ms, "ms"), "share": Quantity(x.share, "share"),
                                 "tokens": Quantity(x.new_tokens, "count"), "speed": Quantity(x.prefill_tps, "tps")})


def _gist_storage(v: Verdict) -> Phrase | None:
    x = v.values
    if not getattr(x, "n", 0):
        return None
    return Phrase("gist_storage", {"storage": Quantity(x.storage_n, "count"), "n": Quantity(x.n, "count"),
                                   "rate": Quantity(getattr(x, "memory_rate", None), "gbps")})


def _gist_variance(v: Verdict) -> Phrase | None:
    return Phrase("gist_cv", {"cv": Quantity(getattr(v.values, "cv", None), "share")})


def _gist_preemption(v: Verdict) -> Phrase | None:
    x = v.values
    return Phrase("gist_preemption", {"preempted": Quantity(x.preempted_n, "count"),
                                      "n": Quantity(x.counted_n, "count"), "extra": Quantity(x.extra_ms, "ms")})


# The one number behind a verdict, by cause: how much of the first byte it is (the default), or what else says it.
GIST: dict[str, Callable[[Verdict], Phrase | None]] = {
    "offload": _gist_offload, "prompt": _gist_floor, "storage": _gist_storage, "variance": _gist_variance,
    "preemption": _gist_preemption}


def gist(v: Verdict | None, f: Findings, lang: str, why: bool = True) -> Markup:
    """The number that stands behind a verdict, in a few words ('–' where it has none); with `why`, a reload's
    reasons too."""
    if v is None or v.verdict == "no_evidence":
        return Markup("–")
    phrase = GIST.get(v.cause, _gist_amount)(v)
    if phrase is None:
        return Markup("–")
    said = phrase_words(phrase, lang, metric=i18n.t(f"metric_{f.metric}", lang))
    return said + Markup("; ") + reasons if why and (reasons := reason_words(v, lang)) else said


def reason_words(v: Verdict, lang: str) -> Markup:
    """Why a reload happened, in a few words ('' for a cause that records no reason)."""
    reasons = getattr(v.values, "reasons", None)
    if v.cause != "reloads" or not reasons:
        return Markup("")
    return phrase_words(Phrase("gist_why", {"why": Phrases(tuple(Phrase(f"gist_reason_{r}") for r in reasons),
                                                              ", ")}), lang)


def slow_list(f: Findings, lang: str) -> Markup:
    """The scenarios that miss a target, grouped by the first target each misses (later requests' median first),
    each with its value; with no target judged, the slowest scenario and its median of later requests."""
    metric = i18n.t(f"metric_{f.metric}", lang)
    order = ("subsequent_ms", "mean_ms", "first_ms", "mean_stretch_ms", "cv", "fits_in_vram")
    missed: dict[str, list[Any]] = {}
    for key in f.answer.slow:
        rows = [r for r in f.targets.itertuples() if (r.run, r.scenario) == key and r.status == "fail"]
        if not rows:
            median = f.phases.loc[(*key, "subsequent"), "median"] if (*key, "subsequent") in f.phases.index else None
            return i18n.t("answer_slow_median", lang, scenario=f.labels[key], metric=metric, median=i18n.ms(median, lang))
        row = min(rows, key=lambda r: order.index(r.target) if r.target in order else len(order))
        missed.setdefault(row.target, []).append(row)
    groups = []
    for target, rows in missed.items():
        if target in ("cv", "fits_in_vram"):  # a goal that is no duration: the scenarios that miss it, named
            groups.append(i18n.t("answer_slow_target", lang, scenario=names([(r.run, r.scenario) for r in rows], f, lang),
                                 target=i18n.t(f"t_{target}", lang, metric=metric)))
            continue
        unit = (lambda v: i18n.percent(v, lang)) if target == "cv" else (lambda v: i18n.ms(v, lang))
        said = [i18n.t("answer_slow_value", lang, scenario=f.labels[(r.run, r.scenario)], measured=unit(r.measured))
                for r in rows]
        listed = Markup(", ").join(said[:-1]) + i18n.t("list_and", lang) + said[-1] if len(said) > 1 else said[0]
        groups.append(i18n.t("answer_slow_group" if len(said) > 1 else "answer_slow_one", lang, list=listed,
                             target=i18n.t(f"t_{target}", lang, metric=metric),
                             goal="" if target == "fits_in_vram" else unit(rows[0].goal)))
    return Markup("; ").join(groups)


def undecided_list(f: Findings, lang: str) -> Markup:
    """The scenarios whose data cannot decide a target, each with those targets and their values."""
    metric = i18n.t(f"metric_{f.metric}", lang)
    said = []
    for key in f.answer.undecided:
        rows = [r for r in f.targets.itertuples() if (r.run, r.scenario) == key and r.status == "inconclusive"]
        values = [i18n.t("answer_undecided_value", lang, target=i18n.t(f"t_{r.target}", lang, metric=metric),
                         measured=i18n.percent(r.measured, lang) if r.target == "cv" else i18n.ms(r.measured, lang))
                  for r in rows]
        said.append(i18n.t("answer_slow_value", lang, scenario=f.labels[key], measured=Markup(", ").join(values)))
    return Markup("; ").join(said)


def wasted(key: Key, f: Findings, lang: str) -> Markup:
    """A scenario's confirmed waste in a table cell: each cause with its share of the first byte."""
    found = [v for v in f.diagnosis.verdicts if v.key == key and v.verdict == "confirmed"]
    if not found:
        return i18n.t("nothing_wasted_short", lang)
    return Markup(", ").join(
        i18n.t(f"dx_waste_{v.cause}", lang) + (Markup(" ({})").format(i18n.percent(share_of(v), lang))
                                               if share_of(v) else "") for v in found)


def matrix_cells(cause: str, f: Findings, lang: str) -> list[Markup]:
    """One cause's verdict in each scenario, as a mark with its share of the first byte where it has one."""
    table = f.answer.matrix
    cells = []
    for key in f.keys:
        verdict = table.loc[key, cause] if key in table.index else None
        if not isinstance(verdict, str):
            cells.append(Markup(""))
            continue
        v = next(x for x in f.diagnosis.verdicts if x.key == key and x.cause == cause)
        mark = i18n.t(f"dx_mark_{verdict}", lang)
        part = share_of(v)
        cells.append(mark + (Markup(" {}").format(i18n.percent(part, lang)) if part > 0 and verdict in ("confirmed", "present")
                             else ""))
    return cells


def grouped_verdicts(cause: str, f: Findings, lang: str) -> list[Markup]:
    """One cause's verdicts as sentences, a sentence said once with every scenario it holds for."""
    said: dict[str, list[Key]] = {}
    for v in f.diagnosis.verdicts:
        if v.cause == cause:
            said.setdefault(str(_verdict_for(v, f, lang, "\\x00")), []).append(v.key)
    verdicts = {v.key: v for v in f.diagnosis.verdicts if v.cause == cause}
    return [_verdict_for(verdicts[keys[0]], f, lang, names(keys, f, lang)) for keys in said.values()]


def _verdict_for(v: Verdict, f: Findings, lang: str, scenario: Any) -> Markup:
    return phrase_words(v.phrase(), lang, scenario=scenario, verdict=i18n.t(f"dx_verdict_{v.verdict}", lang),
                        metric=i18n.t(f"metric_{f.metric}", lang))


def next_lines(f: Findings, lang: str) -> list[Markup]:
    """The next steps, most important first, each action once: a fix on the first screen is not said again, a fix
    that holds for more scenarios is one line with their numbers, a step alike for several scenarios one line."""
    fix = f.answer.fix if f.answer else None
    metric = i18n.t(f"metric_{f.metric}", lang)
    lines: list[Markup] = []
    grouped: dict[str, list[Step]] = {}
    for s in [*f.diagnosis.predictions, *f.steps]:
        if fix is not None and s.kind == fix.kind and s.key == fix.key:
            continue
        if s.kind.startswith("predict_") or f"next_group_{s.kind}" in i18n.catalog(lang):
            said = ACTIONS.get(s.kind, s.kind)  # one line for every scenario it holds for, each with its numbers
        else:
            said = str(step_words(s, {**f.labels, s.key: "\x00"} if s.key else f.labels, lang, f.metric))
        grouped.setdefault(said, []).append(s)
    for said, steps in grouped.items():
        first = steps[0]
        if first.kind.startswith("predict_"):
            items = Markup("; ").join(i18n.t("next_gain_item", lang, scenario=f.labels.get(s.key, ""),
                                             now=i18n.ms(s.values["now"], lang), after=i18n.ms(s.values["after"], lang))
                                      for s in steps)
            also = fix is not None and ACTIONS.get(fix.kind) == said
            lines.append(i18n.t("next_gain_also" if also else "next_gain", lang, action=i18n.t(f"action_{said}", lang),
                                metric=metric, list=items))
        elif f"next_group_{first.kind}" in i18n.catalog(lang) and len(steps) > 1:
            lines.append(GROUPS[first.kind](steps, f, lang))
        elif first.key is None:
            lines.append(step_words(first, f.labels, lang, f.metric))
        else:
            keys = [s.key for s in steps]
            if len(keys) == len(f.keys) > 1 and f"next_{first.kind}_run" in i18n.catalog(lang):
                lines.append(i18n.t(f"next_{first.kind}_run", lang))  # a fact of the whole run, said once
                continue
            who = i18n.t("every_scenario", lang) if len(keys) == len(f.keys) > 1 else names(keys, f, lang)
            many = len(keys) > 1 and f"next_{first.kind}_many" in i18n.catalog(lang)  # a sentence whose verb agrees
            step = Step(f"{first.kind}_many", first.key, first.values) if many else first
            lines.append(step_words(step, {**f.labels, first.key: who}, lang, f.metric))
    return lines


def _by_causes(disturbed: dict[Key, list[str]]) -> list[tuple[tuple[str, ...], list[Key]]]:
    """The scenarios a busy host disturbed, grouped by what disturbed them."""
    groups: dict[tuple[str, ...], list[Key]] = {}
    for key, causes in disturbed.items():
        groups.setdefault(tuple(causes), []).append(key)
    return list(groups.items())


def _floors(steps: list[Step], f: Findings, lang: str) -> Markup:
    """Floors above the target in several scenarios, as one step: each scenario with what its prompts need."""
    metric = i18n.t(f"metric_{f.metric}", lang)
    items = Markup("; ").join(i18n.t("next_group_item_floor_above_target", lang, scenario=f.labels.get(s.key, ""),
                                     floor=i18n.ms(s.values["floor"], lang)) for s in steps)
    v = steps[0].values
    return i18n.t("next_group_floor_above_target", lang, list=items, goal=i18n.ms(v["goal"], lang),
                  target=i18n.t(f"t_{v['target']}", lang, metric=metric))


# Steps of one kind that several scenarios share with numbers of their own: one line, each scenario with its numbers.
GROUPS: dict[str, Callable[[list[Step], Findings, str], Markup]] = {"floor_above_target": _floors}


# The action each predicted gain stands for: predictions of one action are one next step.
ACTIONS = {"predict_reloads": "keep_loaded", "predict_reloads_each": "keep_loaded", "predict_think": "keep_loaded",
           "predict_queueing": "queueing", "predict_cache": "cache", "predict_overflow": "overflow",
           "predict_preemption": "preemption"}


def section(findings: Findings, name: str, lang: str) -> str:
    """One section of the document as Markdown ('' where the data has nothing for it)."""
    template = templating.environment(lang).get_template("report/sections.md.j2")
    f = findings

    def phase(key: Key, which: str) -> pd.Series | None:
        index = (*key, which)
        return f.phases.loc[index] if index in f.phases.index else None

    module = template.make_module({
        "f": f, "M": i18n.t(f"metric_{f.metric}", lang), "label": lambda key: f.labels.get(tuple(key), key[1]),
        "heading": templating.heading(f.runs[0].study if f.runs else None, lang),
        "phase": phase, "step": lambda s: step_words(s, f.labels, lang, f.metric, f.answer.disturbed if f.answer else ()),
        "verdict": lambda v: verdict_words(v, f, lang), "mode": lambda m: mode_words(m, f, lang),
        "thresholds": lambda: thresholds_words(f, lang), "check_line": lambda item: check_words(item, f, lang),
        "no_host": lambda: no_host_words(f, lang),
        "tps": lambda v: _tps(v, lang),
        "rate": lambda v: rate_words(v, lang), "slo_line": lambda run: slo_words(run, lang),
        "saturation_line": lambda point: saturation_words(point, f.labels, lang),
        "turns": lambda: scenario_turns(f.conversation),
        "slow_list": lambda: slow_list(f, lang), "undecided_list": lambda: undecided_list(f, lang), "names": lambda keys: names(keys, f, lang),
        "gist": lambda v, why=True: gist(v, f, lang, why), "reasons": lambda v: reason_words(v, lang), "wasted": lambda key: wasted(key, f, lang),
        "comparison": lambda key: next((c for c in f.comparisons.itertuples() if (c.run, c.scenario) == tuple(key)), None),
        "signed": lambda v: signed(v, lang), "cells": lambda cause: matrix_cells(cause, f, lang),
        "cause_names": lambda causes: Markup(", ").join(i18n.t(f"dx_waste_{c}", lang) for c in causes),
        "scenario_names": lambda: [f.labels[k] for k in f.keys],
        "interval_ratio": lambda low, high: "–" if i18n.missing(low) else Markup("{} – {}").format(
            i18n.ratio(low, lang), i18n.ratio(high, lang)),
        "grouped": lambda cause: grouped_verdicts(cause, f, lang),
        "disturbed_groups": lambda: _by_causes(f.answer.disturbed),
        "target_row": lambda key, name: next((r for r in f.targets.itertuples() if (r.run, r.scenario, r.target)
                                              == (key[0], key[1], name)), None),
        "target_goal": lambda name: f.targets.loc[f.targets["target"] == name, "goal"].iloc[0], "next_lines": lambda: next_lines(f, lang),
    })
    return i18n.markdown(str(getattr(module, name)()).strip())


DETAILS = re.compile(r"<details><summary>(.*?)</summary>\n(.*?)\n</details>", re.S)  # sections.md.j2's details()


def _html(markdown: str) -> str:
    """Markdown (already escaped by the template) as HTML, tables included."""
    import mistune

    return str(mistune.create_markdown(escape=False, plugins=["table"])(markdown))


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

        # A notebook's Markdown output is rendered block by block, which drops a <details> element's end and shows
        # what it folds: each collapsed part goes out as HTML of its own, its Markdown rendered here.
        for i, part in enumerate(DETAILS.split(self.markdown(name))):
            if i % 3 == 0 and part.strip():
                display(Markdown(part))
            elif i % 3 == 1:
                summary = part
            elif i % 3 == 2:
                display(HTML(f"<details><summary>{summary}</summary>{_html(part)}</details>"))
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
