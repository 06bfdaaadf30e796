"""The latency documentation, written from the data: the seed study's sections, in English or Spanish.

`build()` turns samples into a `Document` (Markdown, tables of formatted text, figures); the report
notebook shows it, and `Document.write()` saves the same document as latency.md with its figures and
the key figures as summary.json.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from . import analysis, plots, stats
from .i18n import LANGS, mib, ms, number, percent, t
from .store import RunMeta

RUNNER_KEYS = ("backend", "model", "keep_alive", "preload", "idle_gap_s", "options")


@dataclass
class Block:
    """One piece of the document: Markdown text, a table of formatted cells, or a figure."""

    markdown: str = ""
    table: pd.DataFrame | None = None
    figure: Figure | None = None
    name: str = ""


@dataclass
class Document:
    lang: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    key_figures: dict[str, Any] = field(default_factory=dict)

    def add(
        self, markdown: str = "", *, table: pd.DataFrame | None = None, figure: Figure | None = None, name: str = ""
    ) -> None:
        if figure is not None:
            plt.close(figure)  # shown by show(), not by the notebook's inline backend at the end of a cell
        self.blocks.append(Block(markdown, table, figure, name))

    def show(self) -> None:
        """Display the document in a notebook (figures closed once shown)."""
        from IPython.display import HTML, Markdown, display

        for block in self.blocks:
            if block.markdown:
                display(Markdown(block.markdown))
            if block.table is not None:
                display(HTML(block.table.to_html(index=False, escape=True, border=0, classes="latency")))
            if block.figure is not None:
                display(block.figure)

    def write(self, folder: Path) -> Path:
        """latency.md with figures/*.png beside it, and summary.json (the key figures)."""
        figures = folder / "figures"
        figures.mkdir(parents=True, exist_ok=True)
        parts = []
        for block in self.blocks:
            if block.markdown:
                parts.append(block.markdown)
            if block.table is not None:
                parts.append(markdown_table(block.table))
            if block.figure is not None:
                block.figure.savefig(figures / f"{block.name}.png", dpi=110, bbox_inches="tight")
                parts.append(f"![{block.name}](figures/{block.name}.png)")
        path = folder / "latency.md"
        path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        (folder / "summary.json").write_text(json.dumps(self.key_figures, indent=2, default=_json_default))
        return path


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table of the cells as text, HTML-escaped (cells may hold a server's words)."""

    def cell(value: Any) -> str:
        return html.escape(str(value)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _interval(low: Any, high: Any, lang: str) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "–"
    return f"{ms(float(low), lang)} – {ms(float(high), lang)}"


def _scenario_settings(meta: RunMeta) -> dict[str, dict[str, Any]]:
    if meta.study is None:
        return {}
    return {
        s.name: {**{k: getattr(s, k) for k in RUNNER_KEYS}, "backend": meta.study.backend_of(s)}
        for s in meta.study.scenarios
    }


def build(
    samples: pd.DataFrame,
    metas: list[RunMeta],
    *,
    lang: str = "en",
    baseline: str | None = None,
    targets: dict[str, Any] | None = None,
    external: str | None = None,
) -> Document:
    """The whole document for `samples` (runs described by `metas`), `baseline` first among scenarios."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, not {lang!r}")
    scenarios = analysis.scenario_order(samples)
    baseline = baseline or scenarios[0]
    if baseline not in scenarios:
        raise ValueError(f"baseline {baseline!r} is not a scenario of these runs ({', '.join(scenarios)})")
    targets = targets or {}
    metric = targets.get("metric", "ttfb_ms")
    study = metas[0].name if metas else "latencylab"
    doc = Document(lang, t("title", lang, study=study))
    doc.add(f"# {_esc(doc.title)}\n\n{t('intro', lang)}")
    _setup(doc, metas)
    summary = analysis.phase_summary(samples, metric)
    ci = analysis.intervals(samples, metric)
    _baseline(doc, samples, baseline, summary, ci, external)
    _analysis(doc, samples, scenarios)
    comparisons = analysis.compare_to(samples, baseline, metric)
    _optimisation(doc, metas, baseline, scenarios, external)
    _phases(doc, summary, ci)
    _results(doc, samples, baseline, summary, comparisons)
    target_table = analysis.evaluate_targets(samples, targets) if targets else pd.DataFrame()
    _targets(doc, target_table)
    _next_steps(doc, samples, summary, comparisons, target_table, targets)
    _concurrency(doc, samples)
    if any(m.study and m.study.sweep for m in metas):
        _sweep(doc, samples, metric)
    _errors(doc, samples)
    _figures(doc, samples, summary, target_table, targets, metric)
    doc.key_figures = _key_figures(samples, summary, ci, comparisons, target_table, baseline)
    return doc


def _setup(doc: Document, metas: list[RunMeta]) -> None:
    lang = doc.lang
    rows = []
    for meta in metas:
        host, server = meta.host, meta.server
        ram = host.get("ram_bytes")
        rows += [
            ("Run", meta.run_id),
            ("Study", f"{meta.name} — {meta.description}"),
            ("Status", meta.status),
            ("UTC", f"{meta.started_at} → {meta.ended_at}"),
            *[("Resumed", f"{r.at}: {r.samples_kept} samples kept, from request {r.next_seq}"
               + (" (engine restarted, preloads redone)" if r.engine_restarted else "")) for r in meta.resumes],
            (
                "Server",
                f"{server.get('kind', meta.study.backend if meta.study else '')} {server.get('version', '')}".strip(),
            ),
            (
                "Host",
                f"{host.get('platform')}, {host.get('cpu_count')} CPU"
                + (f", {number(ram / 2**30, lang, 1)} GiB RAM" if ram else ""),
            ),
            ("GPU", ", ".join(g["name"] for g in meta.gpus) or "no NVIDIA GPU seen"),
            ("latencylab / Python", f"{meta.versions.get('latencylab')} / {meta.versions.get('python')}"),
        ]
    doc.add(
        f"## {t('h_setup', lang)}",
        table=pd.DataFrame([(k, str(v)) for k, v in rows], columns=[t("setting", lang), t("value", lang)]),
    )


def _baseline(
    doc: Document, samples: pd.DataFrame, baseline: str, summary: pd.DataFrame, ci: pd.DataFrame, external: str | None
) -> None:
    lang = doc.lang
    row = summary.loc[(baseline, "all")]
    first = summary.loc[(baseline, "first")] if (baseline, "first") in summary.index else None
    later = summary.loc[(baseline, "subsequent")] if (baseline, "subsequent") in summary.index else None
    interval = ci.loc[baseline]
    p95 = ms(row["p95"], lang) if pd.notna(row["p95"]) else t("n_too_small", lang, n=20)
    rows = [
        (t("mean", lang), ms(row["mean"], lang), "–"),
        (t("median", lang), ms(row["median"], lang), _interval(interval["median_low"], interval["median_high"], lang)),
        (t("min", lang), ms(row["min"], lang), "–"),
        (t("max", lang), ms(row["max"], lang), "–"),
        (t("p95", lang), p95, _interval(interval["p95_low"], interval["p95_high"], lang)),
        (t("cv", lang), percent(row["cv"], lang), "–"),
        (t("t_first_ms", lang), ms(first["max"], lang) if first is not None else "–", "–"),
        (t("t_subsequent_ms", lang), ms(later["median"], lang) if later is not None else "–", "–"),
        (t("requests", lang), number(row["n"], lang), "–"),
        (t("errors", lang), number(row["errors"], lang), "–"),
    ]
    note = f"\n\n*{t('external', lang, file=_esc(external))}*" if external else ""
    doc.add(
        f"## {t('h_baseline', lang, name=_esc(baseline))}{note}",
        table=pd.DataFrame(rows, columns=[t("metric", lang), t("value", lang), t("ci95", lang)]),
    )


def _analysis(doc: Document, samples: pd.DataFrame, scenarios: list[str]) -> None:
    lang = doc.lang
    shares = analysis.load_share(samples)
    residency = analysis.residency(samples)
    lines = []
    for scenario in scenarios:
        if scenario not in shares.index:
            continue
        row = shares.loc[scenario]
        paid = int(row["cold"] + row["reload"])
        if row["unknown"] == row["n"]:
            lines.append(t("load_unknown", lang, scenario=_esc(scenario)))
        elif paid == 0:
            lines.append(t("load_none", lang, scenario=_esc(scenario)))
        else:
            source = t("source_derived" if "derived" in row["load_source"] else "source_server", lang)
            lines.append(
                t(
                    "load_paid",
                    lang,
                    scenario=_esc(scenario),
                    share=percent(row["paid_load_share"], lang),
                    paid=paid,
                    n=int(row["n"]),
                    load=ms(row["mean_load_ms"], lang),
                    source=source,
                    explained=percent(row["load_share_of_mean"], lang),
                    paid_median=ms(row["median_ttfb_ms_paid"], lang),
                    warm=""
                    if pd.isna(row["median_ttfb_ms_warm"])
                    else t("warm_median", lang, value=ms(row["median_ttfb_ms_warm"], lang)),
                )
            )
    for scenario in scenarios:
        if scenario not in residency.index or residency.loc[scenario, "model"] is pd.NA:
            continue
        r = residency.loc[scenario]
        size = mib(r["model_size_mib"] * 2**20, lang) if pd.notna(r["model_size_mib"]) else "–"
        if pd.notna(r["gpu_share"]) and r["gpu_share"] < 1:
            lines.append(
                t(
                    "vram_partial",
                    lang,
                    scenario=_esc(scenario),
                    share=percent(r["gpu_share"], lang),
                    vram=mib(r["vram_mib"] * 2**20, lang),
                    size=size,
                )
            )
        elif pd.notna(r["gpu_share"]):
            lines.append(t("vram_full", lang, scenario=_esc(scenario), size=size))
        elif pd.notna(r["model_size_mib"]):
            rss = t("rss", lang, rss=mib(r["server_rss_mib"] * 2**20, lang)) if pd.notna(r["server_rss_mib"]) else ""
            lines.append(t("vram_cpu", lang, scenario=_esc(scenario), size=size, rss=rss))
    table = analysis.decomposition_table(samples)
    shown = pd.DataFrame(
        {
            t("scenario", lang): [str(s) for s, _ in table.index],
            "state": [st for _, st in table.index],
            "n": [number(v, lang) for v in table["n"]],
            **{t(c, lang): [ms(v, lang) for v in table[c]] for c in ("load", "prompt", "first_token", "rest")},
            "TTFT": [ms(v, lang) for v in table["ttft"]],
        }
    )
    flagged = int(table["rest_negative"].sum())
    note = f"\n\n{t('rest_negative', lang, n=flagged)}" if flagged else ""
    doc.add(
        f"## {t('h_analysis', lang)}\n\n"
        + "\n\n".join(f"- {line}" for line in lines)
        + f"\n\n{t('decomposition', lang)}{note}",
        table=shown,
    )


def _optimisation(
    doc: Document, metas: list[RunMeta], baseline: str, scenarios: list[str], external: str | None
) -> None:
    lang = doc.lang
    settings: dict[str, dict[str, Any]] = {}
    for meta in metas:
        settings.update(_scenario_settings(meta))
    base = settings.get(baseline, {})
    rows = []
    for scenario in scenarios:
        if scenario == baseline or scenario not in settings:
            continue
        mine = settings[scenario]
        for key in RUNNER_KEYS:
            if key == "options":
                options = set(base.get("options") or {}) | set(mine.get("options") or {})
                for option in sorted(options):
                    old, new = (base.get("options") or {}).get(option), (mine.get("options") or {}).get(option)
                    if old != new:
                        rows.append((str(scenario), option, str(_show(old)), str(_show(new))))
            elif base.get(key) != mine.get(key):
                rows.append(
                    (
                        str(scenario),
                        t(f"setting_{key}" if key != "idle_gap_s" else "setting_idle_gap", lang),
                        str(_show(base.get(key))),
                        str(_show(mine.get(key))),
                    )
                )
    if not rows:
        doc.add(f"## {t('h_optimisation', lang)}\n\n{t('no_baseline', lang)}")
        return
    doc.add(
        f"## {t('h_optimisation', lang)}\n\n{t('setting_unchanged', lang)}",
        table=pd.DataFrame(rows, columns=[t("scenario", lang), t("setting", lang), str(baseline), "→"]),
    )


def _phases(doc: Document, summary: pd.DataFrame, ci: pd.DataFrame) -> None:
    """Every figure per scenario and phase; the median's interval on the `all` rows."""
    lang = doc.lang
    rows = []
    for (scenario, phase), r in summary.iterrows():
        median = ms(r["median"], lang)
        if phase == "all" and scenario in ci.index and pd.notna(ci.loc[scenario, "median_low"]):
            median += f" [{_interval(ci.loc[scenario, 'median_low'], ci.loc[scenario, 'median_high'], lang)}]"
        pct = {
            name: ms(r[name], lang) if pd.notna(r[name]) else t("n_too_small", lang, n=stats.min_n(q))
            for name, q in stats.PERCENTILES.items()
        }
        rows.append(
            (
                scenario,
                t(phase, lang),
                number(r["n"], lang),
                number(r["errors"], lang),
                ms(r["mean"], lang),
                median,
                ms(r["min"], lang),
                ms(r["max"], lang),
                ms(r["std"], lang),
                percent(r["cv"], lang),
                pct["p90"],
                pct["p95"],
                pct["p99"],
            )
        )
    columns = [
        t("scenario", lang),
        t("phase", lang),
        "n",
        t("errors", lang),
        "mean",
        "median [95 %]",
        "min",
        "max",
        "std",
        "CV",
        "p90",
        "p95",
        "p99",
    ]
    doc.add(f"## {t('h_phases', lang)}", table=pd.DataFrame(rows, columns=columns))


def _p_value(p: float | None, lang: str) -> str:
    if p is None or pd.isna(p):
        return "–"
    return f"< {number(0.0001, lang, 4)}" if p < 0.0001 else f"= {number(p, lang, 4)}"


def _show(value: Any) -> str:
    return "–" if value is None else str(value)


def _results(
    doc: Document, samples: pd.DataFrame, baseline: str, summary: pd.DataFrame, comparisons: pd.DataFrame
) -> None:
    lang = doc.lang
    if comparisons.empty:
        doc.add(f"## {t('h_results', lang)}\n\n{t('no_baseline', lang)}")
        return
    rows = []
    measures = [
        ("t_first_ms", "first", "max"),
        ("t_subsequent_ms", "subsequent", "median"),
        ("mean", "all", "mean"),
        ("median", "all", "median"),
        ("p95", "all", "p95"),
        ("cv", "all", "cv"),
    ]
    for c in comparisons.itertuples():
        for label, phase, column in measures:
            if (baseline, phase) not in summary.index or (c.scenario, phase) not in summary.index:
                continue
            old, new = summary.loc[(baseline, phase), column], summary.loc[(c.scenario, phase), column]
            fmt = (lambda v: percent(v, lang)) if column == "cv" else (lambda v: ms(v, lang))
            change = percent((new - old) / old, lang) if pd.notna(old) and pd.notna(new) and old else "–"
            rows.append((str(c.scenario), t(label, lang), fmt(old), fmt(new), change))
    verdicts = []
    for c in comparisons.itertuples():
        words = t(
            f"verdict_{c.verdict}",
            lang,
            p=_p_value(c.p_value, lang),
            delta=number(c.cliffs_delta, lang, 2) if c.cliffs_delta is not None else "–",
        )
        ratio = (
            f"{number(c.ratio, lang, 2)}× ({number(c.ratio_low, lang, 2)}–{number(c.ratio_high, lang, 2)})"
            if pd.notna(c.ratio_low)
            else f"{number(c.ratio, lang, 2)}×"
        )
        verdicts.append(f"- **{_esc(c.scenario)}**: median {ratio} — {words}.")
    doc.add(
        f"## {t('h_results', lang)}\n\n" + "\n".join(verdicts),
        table=pd.DataFrame(
            rows, columns=[t("scenario", lang), t("metric", lang), str(baseline), "→", t("change", lang)]
        ),
    )


def _targets(doc: Document, table: pd.DataFrame) -> None:
    lang = doc.lang
    if table.empty:
        return
    rows = []
    for r in table.itertuples():
        if r.key == "fits_in_vram":
            goal = t("yes" if r.goal else "no", lang)
            value = "–" if r.measured is None else t("yes" if r.measured else "no", lang)
        elif r.key == "cv":
            goal, value = percent(r.goal, lang), percent(r.measured, lang)
        else:
            goal, value = f"< {ms(r.goal, lang)}", ms(r.measured, lang)
            if pd.notna(r.ci_low):
                value += f" [{_interval(r.ci_low, r.ci_high, lang)}]"
        result = t("no_evidence" if r.passed is None else "pass" if r.passed else "fail", lang)
        rows.append((str(r.scenario), t(f"t_{r.key}", lang), goal, value, result))
    doc.add(
        f"## {t('h_targets', lang)}",
        table=pd.DataFrame(
            rows,
            columns=[t("scenario", lang), t("target", lang), t("goal", lang), t("measured", lang), t("result", lang)],
        ),
    )


def _next_steps(
    doc: Document,
    samples: pd.DataFrame,
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    target_table: pd.DataFrame,
    targets: dict[str, Any],
) -> None:
    lang = doc.lang
    steps = []
    shares, residency = analysis.load_share(samples), analysis.residency(samples)
    for scenario in analysis.scenario_order(samples):
        if scenario in shares.index and shares.loc[scenario, "paid_load_share"] >= 0.2:
            row = shares.loc[scenario]
            steps.append(
                t(
                    "next_keep_loaded",
                    lang,
                    scenario=_esc(scenario),
                    share=percent(row["paid_load_share"], lang),
                    load=ms(row["mean_load_ms"], lang),
                )
            )
        if (
            scenario in residency.index
            and pd.notna(residency.loc[scenario, "gpu_share"])
            and residency.loc[scenario, "gpu_share"] < 1
        ):
            steps.append(
                t("next_vram", lang, scenario=_esc(scenario), share=percent(residency.loc[scenario, "gpu_share"], lang))
            )
        cv_goal = targets.get("cv")
        if (
            cv_goal
            and (scenario, "all") in summary.index
            and pd.notna(summary.loc[(scenario, "all"), "cv"])
            and summary.loc[(scenario, "all"), "cv"] > cv_goal
        ):
            steps.append(
                t(
                    "next_variance",
                    lang,
                    scenario=_esc(scenario),
                    cv=percent(summary.loc[(scenario, "all"), "cv"], lang),
                    goal=percent(cv_goal, lang),
                )
            )
        attempted = samples[(samples["scenario"] == scenario) & ~samples["warmup"].fillna(False)]
        failed = attempted[~attempted["ok"].fillna(False)]
        if len(failed):
            kinds = ", ".join(f"{k} ×{n}" for k, n in failed["error_kind"].value_counts().items())
            steps.append(
                t(
                    "next_errors",
                    lang,
                    scenario=_esc(scenario),
                    share=percent(len(failed) / len(attempted), lang),
                    kinds=_esc(kinds),
                )
            )
        mine = target_table[target_table["scenario"] == scenario] if not target_table.empty else target_table
        if len(mine) and mine["passed"].map(lambda v: v is True).all():
            steps.append(t("next_all_met", lang, scenario=_esc(scenario)))
    for scenario, factor, low, high in serialised(samples):
        steps.append(t("next_serialised", lang, scenario=scenario, factor=number(factor, lang, 1), low=low, high=high))
    for c in comparisons.itertuples():
        if c.verdict in ("no_difference", "too_few"):
            steps.append(t("next_more_samples", lang, scenario=_esc(c.scenario), n=min(c.n_before, c.n_after)))
    body = "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1)) or t("next_nothing", lang)
    doc.add(f"## {t('h_next', lang)}\n\n{body}")


def _concurrency(doc: Document, samples: pd.DataFrame) -> None:
    lang = doc.lang
    table = analysis.concurrency_table(samples)
    if table.empty:
        return
    rows = [
        (
            scenario,
            level,
            number(r["n"], lang),
            ms(r["p50"], lang),
            ms(r["p90"], lang) if pd.notna(r["p90"]) else t("n_too_small", lang, n=10),
            ms(r["p95"], lang) if pd.notna(r["p95"]) else t("n_too_small", lang, n=20),
            f"{number(r['client_queue_ms'], lang, 2)} ms",
        )
        for (scenario, level), r in table.iterrows()
    ]
    doc.add(
        f"## {t('h_concurrency', lang)}\n\n{t('concurrency_intro', lang)}",
        table=pd.DataFrame(
            rows, columns=[t("scenario", lang), "concurrency", "n", "p50", "p90", "p95", "client queue"]
        ),
    )
    doc.add(figure=plots.concurrency(table, samples, lang=lang, title=t("fig_concurrency", lang)), name="concurrency")


def _sweep(doc: Document, samples: pd.DataFrame, metric: str) -> None:
    """The keep-alive sweep: share of requests that paid a load, and mean TTFB, per keep_alive × idle gap."""
    lang = doc.lang
    table = analysis.sweep(samples, metric)
    if table.empty:
        return
    rows = [
        (
            keep_alive,
            f"{number(gap, lang, 1)} s",
            number(r["n"], lang),
            percent(r["cold_share"], lang),
            ms(r[f"mean_{metric}"], lang),
        )
        for (keep_alive, gap), r in table.iterrows()
    ]
    doc.add(
        f"## {t('h_sweep', lang)}\n\n{t('sweep_intro', lang)}",
        table=pd.DataFrame(
            rows, columns=["keep_alive", t("setting_idle_gap", lang), "n", t("cold_share", lang), t("mean", lang)]
        ),
    )
    doc.add(figure=plots.sweep(table, metric, lang=lang, title=t("fig_sweep", lang)), name="sweep")


def serialised(samples: pd.DataFrame) -> list[tuple[str, float, int, int]]:
    """Scenarios whose median TTFT at the highest level is over twice the lowest level's."""
    table = analysis.concurrency_table(samples)
    found = []
    for scenario, group in table.reset_index().groupby("scenario", sort=False) if not table.empty else []:
        low, high = group.iloc[0], group.iloc[-1]
        if low["p50"] and high["p50"] / low["p50"] > 2:
            found.append((scenario, high["p50"] / low["p50"], int(low["concurrency"]), int(high["concurrency"])))
    return found


def _errors(doc: Document, samples: pd.DataFrame) -> None:
    lang = doc.lang
    failed = samples[~samples["ok"].fillna(False)]
    if failed.empty:
        doc.add(f"## {t('h_errors', lang)}\n\n{t('no_errors', lang)}")
        return
    rows = [
        (str(scenario), str(kind), len(group), str(group["error"].iloc[0])[:200])
        for (scenario, kind), group in failed.groupby(["scenario", "error_kind"], sort=False)
    ]
    doc.add(
        f"## {t('h_errors', lang)}",
        table=pd.DataFrame(rows, columns=[t("scenario", lang), t("kind", lang), t("count", lang), t("example", lang)]),
    )


def _figures(
    doc: Document,
    samples: pd.DataFrame,
    summary: pd.DataFrame,
    target_table: pd.DataFrame,
    targets: dict[str, Any],
    metric: str,
) -> None:
    lang = doc.lang
    if analysis.measured(samples)[metric].dropna().empty:
        doc.add(f"## {t('h_figures', lang)}\n\n{t('no_figures', lang)}")
        return
    medians = summary.xs("all", level="phase")["median"].dropna().astype(float)
    ranking = ""
    if len(medians) > 1:
        fastest, slowest = medians.idxmin(), medians.idxmax()
        ranking = t(
            "conclude_medians",
            lang,
            fastest=fastest,
            fast=ms(medians[fastest], lang),
            slowest=slowest,
            slow=ms(medians[slowest], lang),
        )
    measured = analysis.measured(samples)
    paid = int(measured["state"].isin(["cold", "reload"]).sum())
    doc.add(f"## {t('h_figures', lang)}")
    doc.add(figure=plots.distribution(samples, metric, lang=lang, title=_title("fig_ecdf", ranking, lang)), name="ecdf")
    doc.add(figure=plots.histogram(samples, metric, lang=lang, title=t("fig_hist", lang)), name="histogram")
    doc.add(figure=plots.box_strip(samples, metric, lang=lang, title=_title("fig_box", ranking, lang)), name="box")
    doc.add(
        figure=plots.timeline(
            samples,
            metric,
            lang=lang,
            title=_title("fig_timeline", t("conclude_paid", lang, paid=paid, n=len(measured)), lang),
        ),
        name="timeline",
    )
    if samples["ttft_ms"].notna().any():
        doc.add(
            figure=plots.decomposition(samples, lang=lang, title=t("fig_decomposition", lang)), name="decomposition"
        )
    cv = summary.xs("all", level="phase")["cv"].dropna().astype(float)
    goal = targets.get("cv")
    if len(cv):
        steady = t("conclude_cv", lang, k=int((cv < goal).sum()), n=len(cv), goal=percent(goal, lang)) if goal else ""
        doc.add(
            figure=plots.variability(cv, samples=samples, goal=goal, lang=lang, title=_title("fig_cv", steady, lang)),
            name="variability",
        )
    if not target_table.empty and target_table["measured"].notna().any():
        met = t(
            "conclude_targets", lang, k=int(target_table["passed"].map(lambda v: v is True).sum()), n=len(target_table)
        )
        doc.add(figure=plots.targets(target_table, lang=lang, title=_title("fig_targets", met, lang)), name="targets")


def _title(key: str, conclusion: str, lang: str) -> str:
    """A figure title that says what to conclude first, and what is drawn second."""
    return f"{conclusion}\n{t(key, lang)}" if conclusion else t(key, lang)


def _key_figures(
    samples: pd.DataFrame,
    summary: pd.DataFrame,
    ci: pd.DataFrame,
    comparisons: pd.DataFrame,
    target_table: pd.DataFrame,
    baseline: str,
) -> dict[str, Any]:
    """The numbers a test (or a user's script) checks, as plain JSON."""
    shares = analysis.load_share(samples)
    scenarios = {}
    for scenario in analysis.scenario_order(samples):
        row = summary.loc[(scenario, "all")]
        scenarios[scenario] = {
            "n": int(row["n"]),
            "errors": int(row["errors"]),
            **{k: None if pd.isna(row[k]) else float(row[k]) for k in ("mean", "median", "min", "max", "cv", "p95")},
            "median_ci": [
                None if pd.isna(ci.loc[scenario, k]) else float(ci.loc[scenario, k])
                for k in ("median_low", "median_high")
            ]
            if scenario in ci.index
            else None,
            "paid_load_share": float(shares.loc[scenario, "paid_load_share"]) if scenario in shares.index else None,
        }
    return {
        "baseline": baseline,
        "scenarios": scenarios,
        "comparisons": comparisons.to_dict(orient="records"),
        "targets": target_table.drop(columns=[], errors="ignore").to_dict(orient="records"),
    }
