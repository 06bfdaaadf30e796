"""Figures of some findings: one colour per scenario in every figure, units on every axis.

Each function draws `Findings` (scenarios by their labels) and takes its title from the caller (the
document says what to conclude); axis words come from the catalog.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from latencylab.analyse.attribution import PARTS, exemplars
from latencylab.analyse.findings import Findings
from latencylab.analyse.stats import SEED
from latencylab.analyse.tables import measured
from latencylab.publish.i18n import text as t

STATE_COLOURS = {"cold": "#d62728", "reload": "#ff7f0e", "warm": "#2ca02c", "unknown": "#7f7f7f"}
# A figure with a point per request draws at most about this many: past it the points only overlap, and drawing
# them takes seconds per 10⁵ (the timeline of 10⁶ requests took 22 s). Beyond it, a seeded random sample in which
# each group (state, scenario…) keeps its share, and at least POINTS_MIN, so that a rare state stays in sight;
# the figure's title says so.
POINTS_MAX = 20_000
POINTS_MIN = 500


def _scattered(f: Findings, name: str) -> tuple[pd.DataFrame, list[str]]:
    """The requests figure `name` draws a point for, and the groups its sample keeps apart."""
    if name == "timeline":
        return f.samples[f.samples["ok"].fillna(False)], ["state", "label", "warmup"]
    if name == "box":
        return measured(f.samples), ["label", "phase"]
    if name == "prefill":
        return f.requests[f.requests["ttft_ms"].notna() & f.requests["prompt_tokens"].notna()], ["label"]
    data = f.requests[f.requests["decode_tps"].notna()]
    return data, ["residency" if _by_residency(data) else "state", "label"]


def _quotas(data: pd.DataFrame, by: list[str]) -> list[tuple[np.ndarray, int]]:
    """Each group's rows (positions) and how many of them a figure draws (see POINTS_MAX)."""
    groups = list(data.groupby(by, sort=False, dropna=False).indices.values())
    if len(data) <= POINTS_MAX:
        return [(rows, len(rows)) for rows in groups]
    return [(rows, min(len(rows), max(len(rows) * POINTS_MAX // len(data), POINTS_MIN))) for rows in groups]


def drawn(f: Findings, name: str) -> tuple[int, int]:
    """How many requests figure `name` (timeline, box, prefill, decode) draws, of how many."""
    data, by = _scattered(f, name)
    return sum(quota for _, quota in _quotas(data, by)), len(data)


def sample(f: Findings, name: str) -> pd.DataFrame:
    """The requests figure `name` draws a point for: all of them, or beyond POINTS_MAX a seeded random sample (in
    their order)."""
    data, by = _scattered(f, name)
    quotas = _quotas(data, by)
    if all(len(rows) == quota for rows, quota in quotas):
        return data
    rng = np.random.default_rng(SEED)
    return data.iloc[np.sort(np.concatenate([rng.choice(rows, quota, replace=False) for rows, quota in quotas]))]


def order(f: Findings) -> list[str]:
    """Scenario labels in the study's order."""
    return [f.labels[key] for key in f.keys]


def palette(f: Findings) -> dict[str, tuple[float, float, float]]:
    """The colour of each scenario, stable across figures."""
    names = order(f)
    return dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))


def _metric_axis(f: Findings, lang: str) -> str:
    return t("ax_metric", lang, metric=t(f"metric_{f.metric}", lang))


def finish(fig: Figure, ax: plt.Axes, title: str | None) -> Figure:
    if title:
        ax.set_title(title, loc="left", fontsize="medium", fontweight="bold")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def histogram(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """Histogram with a density curve per scenario, log axis."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    data = measured(f.samples)
    sns.histplot(data=data, x=f.metric, hue="label", hue_order=order(f), palette=palette(f), log_scale=True,
                 kde=data.groupby("label")[f.metric].count().min() > 2, element="step", ax=ax)
    ax.get_legend().set_title(t("legend_scenario", lang))
    ax.set_xlabel(_metric_axis(f, lang))
    ax.set_ylabel(t("ax_count", lang))
    return finish(fig, ax, title)


def box(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """Box per scenario and phase (of every request), with each request as a point over it (a sample of them
    beyond POINTS_MAX)."""
    phases = {p: t(p, lang) for p in ("first", "subsequent")}

    def worded(data: pd.DataFrame) -> pd.DataFrame:
        return data[["label", f.metric]].assign(phase=data["phase"].map(phases))

    fig, ax = plt.subplots(figsize=(8, 4.2))
    layout = {"x": "label", "y": f.metric, "hue": "phase", "order": order(f), "hue_order": list(phases.values()),
              "ax": ax}
    sns.boxplot(data=worded(measured(f.samples)), **layout, fill=False, showfliers=False, log_scale=True)
    sns.stripplot(data=worded(sample(f, "box")), **layout, dodge=True, alpha=0.6, size=4, legend=False)
    ax.get_legend().set_title(t("legend_phase", lang))
    ax.set_xlabel("")
    ax.set_ylabel(_metric_axis(f, lang))
    return finish(fig, ax, title)


def decomposition(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """Stacked bars of the mean TTFT components per scenario and state (unknown parts are left out)."""
    components = ["load", "prompt", "first_token", "rest"]
    means = f.decomposition[components].astype(float).clip(lower=0)
    means.index = [f"{f.labels[(run, s)]}\n({t(f'state_{st}', lang)})" for run, s, st in means.index]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    means.rename(columns={c: t(c, lang) for c in components}).plot.barh(
        stacked=True, ax=ax, color=["#d62728", "#1f77b4", "#9467bd", "#bcbd22"]
    )
    ax.invert_yaxis()
    ax.set_xlabel(t("ax_ttft_ms", lang))
    return finish(fig, ax, title)


PART_COLOURS = {"client_network_ms": "#bcbd22", "server_wait_ms": "#ff7f0e", "loading_ms": "#d62728",
                "prompt_ms": "#1f77b4", "first_token_ms": "#9467bd", "unattributed_ms": "#c7c7c7"}
PART_WORDS = {"client_network_ms": "col_client_network", "server_wait_ms": "col_server_wait",
              "loading_ms": "col_loading", "prompt_ms": "col_prompt", "first_token_ms": "col_first_token",
              "unattributed_ms": "col_unattributed"}


def waterfall(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """Each scenario's cold start, typical (median) and slowest request, their first byte as the parts that make
    it, one after another in the order they happen (unknown parts left out)."""
    rows = exemplars(f.requests, f.keys)
    labels = [f"{f.labels[(run, s)]} · {t(f'which_{which}', lang)} ({row.metric_ms:,.0f} ms)"
              for (run, s, which), row in rows.iterrows()]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 2.2))
    left = pd.Series(0.0, index=rows.index)
    for part in PARTS:
        width = rows[part].astype(float).fillna(0.0).clip(lower=0)
        if width.any():
            ax.barh(labels, width.to_numpy(), left=left.to_numpy(), color=PART_COLOURS[part],
                    label=t(PART_WORDS[part], lang))
        left += width
    ax.invert_yaxis()
    ax.set_xlabel(t("ax_waterfall", lang, metric=t(f"metric_{f.metric}", lang)))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, fontsize="small", frameon=False)
    return finish(fig, ax, title)


def variability(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """Coefficient of variation per scenario against the target line (the study's CV goal)."""
    cv = f.phases.xs("all", level="phase")["cv"].dropna().astype(float)
    labels = [f.labels[key] for key in cv.index]
    goal = f.goals.get("cv")
    colours = palette(f)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(labels, cv.to_numpy(float), color=[colours.get(s, "grey") for s in labels])
    if goal:
        ax.axvline(goal, color="black", ls="--", lw=1)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel(t("ax_cv", lang))
    return finish(fig, ax, title)


TARGET_COLOURS = {"pass": "#2ca02c", "fail": "#d62728", "inconclusive": "#ff7f0e", "no_evidence": "#7f7f7f"}


def targets(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """Each numeric target as measured / goal (below 1 passes) per scenario, coloured by its status."""
    table = f.targets
    numeric = table[(table["target"] != "fits_in_vram") & table["measured"].notna()].copy()
    numeric["ratio"] = numeric["measured"].astype(float) / numeric["goal"].astype(float)
    metric = t(f"metric_{f.metric}", lang)
    numeric["label"] = [f"{f.labels[(r.run, r.scenario)]} · {t(f't_{r.target}', lang, metric=metric)}"
                        for r in numeric.itertuples()]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.32 * len(numeric) + 1)))
    colours = numeric["status"].map(TARGET_COLOURS).tolist()
    ax.barh(numeric["label"], numeric["ratio"], color=colours)
    ax.axvline(1, color="black", ls="--", lw=1)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel(t("ax_ratio", lang))
    return finish(fig, ax, title)


def sweep(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """Mean metric against the idle gap, one line per keep_alive, each point labelled with its cold share."""
    data = f.sweep.reset_index()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sns.lineplot(data=data, x="idle_gap_s", y="mean", hue="keep_alive", marker="o", ax=ax)
    for _, row in data.iterrows():
        ax.annotate(
            f"{row['cold_share']:.0%} {t('cold_word', lang)}",
            (row["idle_gap_s"], row["mean"]),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize="small",
        )
    ax.set_yscale("log")
    ax.set_xlabel(t("ax_idle_gap", lang))
    ax.set_ylabel(t("ax_mean_metric", lang, metric=t(f"metric_{f.metric}", lang)))
    return finish(fig, ax, title)


def concurrency(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """TTFT percentiles against concurrency: median solid, p90 dashed, one colour per scenario."""
    colours = palette(f)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for key, group in f.concurrency.reset_index().groupby(["run", "scenario"], sort=False):
        scenario = f.labels[key]
        colour = colours.get(scenario, "grey")
        ax.plot(group["concurrency"], group["p50"], marker="o", color=colour, label=f"{scenario} p50")
        if group["p90"].notna().any():
            ax.plot(
                group["concurrency"],
                group["p90"].astype(float),
                marker="o",
                ls="--",
                color=colour,
                label=f"{scenario} p90",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(t("ax_concurrency", lang))
    ax.set_ylabel(t("ax_ttft", lang))
    ax.legend(fontsize="small")
    return finish(fig, ax, title)


RESIDENCY_COLOURS = {"gpu": "#2ca02c", "partial": "#ff7f0e", "cpu": "#d62728", "unknown": "#7f7f7f"}


def _rate_levels(f: Findings) -> list[tuple[str, pd.DataFrame, float | None, float | None]]:
    """Per scenario with rate levels: its label, the levels by offered rate, its saturation rate and high end."""
    points = {(p.run, p.scenario): p for p in f.saturation}
    found = []
    for key, group in f.capacity.groupby(["run", "scenario"], sort=False):
        rates = group[group["kind"] == "rate"].sort_values("nominal_rate_per_s")
        if rates.empty:
            continue
        point = points.get(key)
        found.append((f.labels.get(key, key[1]), rates, point.rate if point else None, point.high if point else None))
    return found


def latency_throughput(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """TTFT p50 (solid) and p95 (dashed) against the achieved rate, one colour per scenario; the knee ringed."""
    colours = palette(f)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for scenario, rates, knee, _ in _rate_levels(f):
        colour = colours.get(scenario, "grey")
        ax.plot(rates["achieved_rate_per_s"], rates["ttft_p50"], marker="o", color=colour, label=f"{scenario} p50")
        if rates["ttft_p95"].notna().any():
            ax.plot(rates["achieved_rate_per_s"], rates["ttft_p95"].astype(float), marker="o", ls="--", color=colour,
                    label=f"{scenario} p95")
        at = rates[rates["nominal_rate_per_s"] == knee]
        if not at.empty:
            ax.scatter(at["achieved_rate_per_s"], at["ttft_p50"], s=220, facecolors="none", edgecolors="black",
                       linewidths=1.5, zorder=5, label=f"{scenario}: {t('legend_knee', lang)}")
    ax.set_yscale("log")
    ax.set_xlabel(t("ax_achieved", lang))
    ax.set_ylabel(t("ax_ttft", lang))
    ax.legend(fontsize="small")
    return finish(fig, ax, title)


def goodput(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """Goodput (solid) and achieved rate (dotted) against the offered rate; the saturation interval shaded."""
    colours = palette(f)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    top = 0.0
    for scenario, rates, knee, high in _rate_levels(f):
        colour = colours.get(scenario, "grey")
        offered = rates["nominal_rate_per_s"]
        top = max(top, float(offered.max()))
        ax.plot(offered, rates["goodput_per_s"], marker="o", color=colour,
                label=f"{scenario}: {t('legend_goodput', lang)}")
        ax.plot(offered, rates["achieved_rate_per_s"], marker=".", ls=":", color=colour,
                label=f"{scenario}: {t('legend_achieved', lang)}")
        if knee is not None:
            ax.axvspan(knee, high if high is not None else knee, color=colour, alpha=0.15)
            ax.axvline(knee, color=colour, lw=1, label=f"{scenario}: {t('legend_knee', lang)}")
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label=t("legend_equal", lang))
    ax.set_xlabel(t("ax_offered", lang))
    ax.set_ylabel(t("ax_rate", lang))
    ax.legend(fontsize="small")
    return finish(fig, ax, title)


def prefill(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """TTFT against prompt tokens per scenario (a sample of the requests beyond POINTS_MAX), with each scenario's
    least-squares line where it has one."""
    data = sample(f, "prefill")
    colours = palette(f)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sns.scatterplot(data=data, x="prompt_tokens", y="ttft_ms", hue="label", hue_order=order(f), palette=colours,
                    s=35, alpha=0.7, ax=ax)
    for v in f.diagnosis.verdicts:
        if v.cause == "prompt" and pd.notna(v.values.get("slope")):
            xs = [v.values["tokens_min"], v.values["tokens_max"]]
            ax.plot(xs, [v.values["intercept"] + v.values["slope"] * x for x in xs], color=colours[f.labels[v.key]],
                    lw=1.5)
    ax.get_legend().set_title(t("legend_scenario", lang))
    ax.set_xlabel(t("ax_prompt_tokens", lang))
    ax.set_ylabel(t("ax_ttft_linear", lang))
    return finish(fig, ax, title)


def decode(f: Findings, *, lang: str = "en", title: str | None = None) -> Figure:
    """Decode speed of each request at the time it was sent (a sample of them beyond POINTS_MAX), coloured by where
    the model sat (by state where no server reported residency), one marker per scenario."""
    data = sample(f, "decode")
    by_residency = _by_residency(f.requests[f.requests["decode_tps"].notna()])
    column, colours, legend = ("residency", RESIDENCY_COLOURS, "legend_residency") if by_residency else \
        ("state", STATE_COLOURS, "legend_state")
    prefix = "residency" if by_residency else "state"
    named = {t(f"{prefix}_{k}", lang): colour for k, colour in colours.items()}
    hue, scenario = t(legend, lang), t("legend_scenario", lang)
    words = {k: t(f"{prefix}_{k}", lang) for k in colours}
    shown = pd.DataFrame({"t_s": data["started_at"] - f.samples["started_at"].min(), "decode_tps": data["decode_tps"],
                          hue: data[column].astype(str).map(lambda s: words.get(s, s)), scenario: data["label"]})
    fig, ax = plt.subplots(figsize=(10, 4.2))
    sns.scatterplot(data=shown, x="t_s", y="decode_tps", hue=hue, palette=named, style=scenario, style_order=order(f),
                    s=45, ax=ax)
    ax.set_xlabel(t("ax_time", lang))
    ax.set_ylabel(t("ax_decode", lang))
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize="small")
    return finish(fig, ax, title)


def _by_residency(data: pd.DataFrame) -> bool:
    """Whether the decode figure colours requests by residency: some server reported where the model sat."""
    return bool((data["residency"] != "unknown").any())
