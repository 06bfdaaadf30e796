"""Figures of a samples DataFrame: one colour per scenario in every figure, units on every axis.

Each function takes the words of its title from the caller (the document says what to conclude).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .analysis import decompose, measured, scenario_order
from .i18n import t

STATE_COLOURS = {"cold": "#d62728", "reload": "#ff7f0e", "warm": "#2ca02c", "unknown": "#7f7f7f"}
STATE_MARKERS = {"cold": "X", "reload": "s", "warm": "o", "unknown": "D"}


def palette(samples: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """The colour of each scenario, stable across figures."""
    names = scenario_order(samples)
    return dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))


def _finish(fig: Figure, ax: plt.Axes, title: str | None) -> Figure:
    if title:
        ax.set_title(title, loc="left", fontsize="medium", fontweight="bold")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def distribution(
    samples: pd.DataFrame, metric: str = "ttfb_ms", *, lang: str = "en", title: str | None = None
) -> Figure:
    """ECDF of `metric` per scenario on a log axis: the share of requests at or below each latency."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sns.ecdfplot(
        data=measured(samples),
        x=metric,
        hue="scenario",
        hue_order=scenario_order(samples),
        palette=palette(samples),
        log_scale=True,
        ax=ax,
    )
    ax.set_xlabel(t("ax_ttfb", lang))
    ax.set_ylabel(t("ax_share", lang))
    return _finish(fig, ax, title)


def histogram(samples: pd.DataFrame, metric: str = "ttfb_ms", *, lang: str = "en", title: str | None = None) -> Figure:
    """Histogram with a density curve per scenario, log axis."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    data = measured(samples)
    sns.histplot(
        data=data,
        x=metric,
        hue="scenario",
        hue_order=scenario_order(samples),
        palette=palette(samples),
        log_scale=True,
        kde=data.groupby("scenario")[metric].count().min() > 2,
        element="step",
        ax=ax,
    )
    ax.set_xlabel(t("ax_ttfb", lang))
    ax.set_ylabel(t("ax_count", lang))
    return _finish(fig, ax, title)


def box_strip(samples: pd.DataFrame, metric: str = "ttfb_ms", *, lang: str = "en", title: str | None = None) -> Figure:
    """Box per scenario and phase, with every request as a point over it."""
    data = measured(samples).copy()
    data["phase"] = data["phase"].map(lambda p: t(p, lang))
    order, phases = scenario_order(samples), [t("first", lang), t("subsequent", lang)]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    layout = {"data": data, "x": "scenario", "y": metric, "hue": "phase", "order": order, "hue_order": phases,
              "ax": ax}
    sns.boxplot(**layout, fill=False, showfliers=False, log_scale=True)
    sns.stripplot(**layout, dodge=True, alpha=0.6, size=4, legend=False)
    ax.set_xlabel("")
    ax.set_ylabel(t("ax_ttfb", lang))
    return _finish(fig, ax, title)


def timeline(samples: pd.DataFrame, metric: str = "ttfb_ms", *, lang: str = "en", title: str | None = None) -> Figure:
    """Every request at the time it was sent, coloured by state; gaps on the axis are idle time."""
    data = samples[samples["ok"].fillna(False)].copy()
    data["state"] = data["state"].astype(str)
    data["t_s"] = data["started_at"] - samples["started_at"].min()
    fig, ax = plt.subplots(figsize=(10, 4.2))
    sns.scatterplot(
        data=data,
        x="t_s",
        y=metric,
        hue="state",
        palette=STATE_COLOURS,
        style="scenario",
        style_order=scenario_order(samples),
        s=45,
        ax=ax,
    )
    warmups = data[data["warmup"].fillna(False)]
    ax.scatter(warmups["t_s"], warmups[metric], s=140, facecolors="none", edgecolors="grey", label="warm-up")
    failed = samples[~samples["ok"].fillna(False)]
    for start in failed["started_at"] - samples["started_at"].min():
        ax.axvline(start, color="black", alpha=0.3, lw=1, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel(t("ax_time", lang))
    ax.set_ylabel(t("ax_ttfb", lang))
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize="small")
    return _finish(fig, ax, title)


def decomposition(samples: pd.DataFrame, *, lang: str = "en", title: str | None = None) -> Figure:
    """Stacked bars of the mean TTFT components per scenario and state."""
    parts = decompose(samples)
    parts = parts[~parts["warmup"].fillna(False)]
    components = ["load", "prompt", "first_token", "rest"]
    means = parts.groupby(["scenario", "state"], sort=False)[components].mean().clip(lower=0)
    means.index = [f"{s}\n({st})" for s, st in means.index]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    means.rename(columns={c: t(c, lang) for c in components}).plot.barh(
        stacked=True, ax=ax, color=["#d62728", "#1f77b4", "#9467bd", "#bcbd22"]
    )
    ax.invert_yaxis()
    ax.set_xlabel(t("ax_ttft_ms", lang))
    return _finish(fig, ax, title)


def variability(
    cv: pd.Series, *, samples: pd.DataFrame, goal: float | None = 0.5, lang: str = "en", title: str | None = None
) -> Figure:
    """Coefficient of variation per scenario against the target line (the seed's 50 %)."""
    colours = palette(samples)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(cv.index.astype(str), cv.to_numpy(float), color=[colours.get(s, "grey") for s in cv.index])
    if goal:
        ax.axvline(goal, color="black", ls="--", lw=1)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel(t("ax_cv", lang))
    return _finish(fig, ax, title)


def targets(table: pd.DataFrame, *, lang: str = "en", title: str | None = None) -> Figure:
    """Each numeric target as measured / goal (below 1 passes), per scenario."""
    numeric = table[table["key"] != "fits_in_vram"].dropna(subset=["measured"]).copy()
    numeric["ratio"] = numeric["measured"].astype(float) / numeric["goal"].astype(float)
    numeric["label"] = numeric["scenario"] + " · " + numeric["key"].map(lambda key: t(f"t_{key}", lang))
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.32 * len(numeric) + 1)))
    colours = np.where(numeric["ratio"] < 1, "#2ca02c", "#d62728")
    ax.barh(numeric["label"], numeric["ratio"], color=colours)
    ax.axvline(1, color="black", ls="--", lw=1)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel(t("ax_ratio", lang))
    return _finish(fig, ax, title)


def sweep(table: pd.DataFrame, metric: str = "ttfb_ms", *, lang: str = "en", title: str | None = None) -> Figure:
    """Mean `metric` against the idle gap, one line per keep_alive, each point labelled with its cold share."""
    data = table.reset_index()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sns.lineplot(data=data, x="idle_gap_s", y=f"mean_{metric}", hue="keep_alive", marker="o", ax=ax)
    for _, row in data.iterrows():
        ax.annotate(
            f"{row['cold_share']:.0%} {t('cold_word', lang)}",
            (row["idle_gap_s"], row[f"mean_{metric}"]),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize="small",
        )
    ax.set_yscale("log")
    ax.set_xlabel(t("ax_idle_gap", lang))
    ax.set_ylabel(t("ax_mean_ttfb", lang))
    return _finish(fig, ax, title)


def concurrency(table: pd.DataFrame, samples: pd.DataFrame, *, lang: str = "en", title: str | None = None) -> Figure:
    """TTFT percentiles against concurrency: median solid, p90 dashed, one colour per scenario."""
    colours = palette(samples)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for scenario, group in table.reset_index().groupby("scenario", sort=False):
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
    return _finish(fig, ax, title)
