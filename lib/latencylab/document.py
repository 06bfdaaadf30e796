"""The latency documentation in words: `Findings` rendered through templates/report/ and a catalog.

Nothing here computes a figure: every number comes from the findings, every sentence from
catalogs/<lang>.yaml, every format from `i18n`. `Report` shows it section by section in a notebook and
writes latency.md with figures/ beside it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from . import i18n, plots
from .findings import Findings, Key, Step

TEMPLATES = Path(__file__).parent / "templates"
SECTIONS = ("summary", "setup", "baseline", "analysis", "optimisation", "phases", "results", "runs", "targets",
            "next_steps", "concurrency", "sweep", "errors")
FIGURES = {"baseline": ("histogram",), "analysis": ("timeline", "decomposition"), "results": ("ecdf", "box"),
           "targets": ("variability", "targets"), "concurrency": ("concurrency",), "sweep": ("sweep",)}


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str | tuple | list | dict) and bool(pd.isna(value)))


def _cell(value: Any) -> Markup:
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
    env.filters["runs_item"] = lambda c: i18n.t("summary_runs_item", lang, scenario=c.scenario, before=i18n.ms(
        c.median_before, lang), after=i18n.ms(c.median_after, lang), ratio=i18n.ratio(c.ratio, lang))
    env.filters.update(
        cell=_cell,
        apply=lambda v, name: formats[name](v),
        gpu_text=lambda g: i18n.t("gpu_value", lang, name=g["name"], memory=i18n.mib(g["memory_total_bytes"], lang),
                                  driver=g["driver_version"], cuda=g["cuda_version"]),
        setting_name=lambda name: i18n.t(f"setting_{name}", lang) if f"setting_{name}" in i18n.catalog(lang) else name,
        setting_value=lambda v: i18n.t("unset", lang) if v is None else i18n.t("yes" if v else "no", lang)
        if isinstance(v, bool) else str(v),
        p_value=lambda p: "–" if _missing(p) else f"< {i18n.number(0.0001, lang, 4)}" if p < 0.0001
        else f"= {i18n.number(p, lang, 4)}",
    )
    env.tests["missing"] = _missing
    env.globals.update(t=lambda key, **values: i18n.t(key, lang, **values),
                       has=lambda key: key in i18n.catalog(lang))
    return env


def fact_value(value: Any, name: str, lang: str) -> str:
    """One server fact as shown: sizes in MiB, a digest's first 12 hex digits, yes/no, '–' when unknown."""
    if _missing(value):
        return "–"
    if isinstance(value, bool):
        return i18n.t("yes" if value else "no", lang)
    if name.endswith("_bytes") and isinstance(value, int | float):
        return i18n.mib(value, lang)
    if name == "digest":
        return str(value).removeprefix("sha256:")[:12]
    if isinstance(value, int):
        return i18n.number(value, lang)
    return str(value)


def step_words(step: Step, labels: dict[Key, str], lang: str) -> Markup:
    """One next step as a sentence."""
    v, scenario = step.values, labels.get(step.key, "") if step.key else ""
    values: dict[str, Any] = {"scenario": scenario}
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
    return i18n.t(f"next_{step.kind}", lang, **values)


def section(findings: Findings, name: str, lang: str) -> str:
    """One section of the document as Markdown ('' where the data has nothing for it)."""
    template = environment(lang).get_template("report/sections.md.j2")
    f = findings

    def phase(key: Key, which: str) -> pd.Series | None:
        index = (*key, which)
        return f.phases.loc[index] if index in f.phases.index else None

    def targets_passed(passed: dict[Key, tuple[int, int]]) -> Markup:
        return Markup("; ").join(i18n.t("summary_targets_one", lang, scenario=f.labels[key], passed=p, judged=n)
                                 for key, (p, n) in passed.items())

    module = template.make_module({
        "f": f, "M": i18n.t(f"metric_{f.metric}", lang), "label": lambda key: f.labels.get(tuple(key), key[1]),
        "phase": phase, "targets_passed": targets_passed, "step": lambda s: step_words(s, f.labels, lang),
    })
    return str(getattr(module, name)()).strip()


@dataclass
class Figure:
    """A drawn figure as PNG, with the title it carries and its alt text."""

    name: str
    png: bytes
    alt: str

    def html(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        return f'<img alt="{escape(self.alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _title(lang: str, conclusion: str, what: str) -> str:
    return f"{conclusion}\n{what}" if conclusion else what


def figure_words(f: Findings, name: str, lang: str) -> tuple[str, str] | None:
    """(title, alt text) of one figure: what to conclude, then what is drawn; None where it has nothing to say."""
    x, metric = f.facts, i18n.text(f"metric_{f.metric}", lang)
    label = f.labels.get
    serialised = next((step for step in f.steps if step.kind == "serialised"), None)
    medians = ""
    if x.fastest and x.slowest and x.fastest != x.slowest:
        medians = i18n.text("conclude_medians", lang, fastest=label(x.fastest), slowest=label(x.slowest),
                            fast=i18n.ms(x.medians[x.fastest], lang), slow=i18n.ms(x.medians[x.slowest], lang))
    elif x.fastest:
        medians = i18n.text("conclude_one", lang, metric=metric, scenario=label(x.fastest),
                            median=i18n.ms(x.medians[x.fastest], lang))
    conclusion = {
        "histogram": medians, "ecdf": medians, "box": medians,
        "timeline": i18n.text("conclude_paid", lang, paid=x.paid, n=x.measured),
        "decomposition": i18n.text("conclude_decomposition", lang, scenario=label(x.load_share_of_ttft[0]),
                                   share=i18n.percent(x.load_share_of_ttft[1], lang)) if x.load_share_of_ttft else "",
        "variability": i18n.text("conclude_cv", lang, k=x.cv_below_goal, n=x.cv_count,
                                 goal=i18n.percent(f.goals.get("cv"), lang))
        if x.cv_below_goal is not None else "",
        "targets": i18n.text("conclude_targets", lang, k=x.targets_passed, n=x.targets_judged),
        "concurrency": i18n.text("conclude_concurrency", lang, scenario=label(serialised.key),
                                 factor=i18n.number(serialised.values["factor"], lang, 1),
                                 low=serialised.values["low"], high=serialised.values["high"]) if serialised else "",
        "sweep": i18n.text("conclude_sweep", lang, share=i18n.percent(x.paid_share, lang)),
    }[name]
    what = i18n.text({"histogram": "fig_hist", "variability": "fig_cv"}.get(name, f"fig_{name}"), lang, metric=metric)
    return _title(lang, conclusion, what), i18n.text("figure_alt", lang, what=what, conclusion=conclusion).strip()


@dataclass
class Report:
    """The document of some findings in one language, section by section, figures drawn once."""

    findings: Findings
    lang: str = "en"
    _figures: dict[str, list[Figure]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        environment(self.lang)

    def markdown(self, name: str) -> str:
        return section(self.findings, name, self.lang)

    def figures(self, name: str) -> list[Figure]:
        """The figures that support section `name`, drawn on first use."""
        if name not in self._figures:
            self._figures[name] = [self._draw(fig) for fig in FIGURES.get(name, ()) if self._drawable(fig)]
        return self._figures[name]

    def _drawable(self, name: str) -> bool:
        f = self.findings
        return f.has_latency and {
            "decomposition": f.facts.has_ttft, "variability": f.facts.cv_below_goal is not None,  # needs a goal
            "targets": f.facts.targets_measured,
            "concurrency": not f.concurrency.empty, "sweep": not f.sweep.empty,
        }.get(name, True)

    def _draw(self, name: str) -> Figure:
        title, alt = figure_words(self.findings, name, self.lang)
        figure = getattr(plots, name)(self.findings, lang=self.lang, title=title)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        return Figure(name, buffer.getvalue(), alt)

    def show(self, name: str) -> None:
        """Display section `name` in a notebook: its text and tables, then its figures."""
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
            parts += [f"![{escape(fig.alt)}](figures/{fig.name}.png)" for fig in self.figures(name)]
        return "\n\n".join(parts) + "\n"

    def write(self, folder: Path) -> Path:
        """latency.md with figures/*.png beside it."""
        figures = folder / "figures"
        figures.mkdir(parents=True, exist_ok=True)
        path = folder / "latency.md"
        path.write_text(self.text(), encoding="utf-8")
        for name in SECTIONS:
            for fig in self.figures(name):
                (figures / f"{fig.name}.png").write_bytes(fig.png)
        return path
