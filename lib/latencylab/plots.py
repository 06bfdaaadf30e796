"""Figures of a samples DataFrame; one colour per scenario in every figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .analysis import measured, scenario_order

LABELS = {"ttfb_ms": "time to first byte (ms)", "ttft_ms": "time to first token (ms)",
          "e2e_ms": "end to end (ms)", "headers_ms": "time to headers (ms)"}
STATE_MARKERS = {"cold": "X", "reload": "s", "warm": "o", "unknown": "D"}


def palette(samples: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """The colour of each scenario, stable across figures."""
    names = scenario_order(samples)
    return dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))


def distribution(samples: pd.DataFrame, metric: str = "ttfb_ms") -> Figure:
    """ECDF of `metric` per scenario on a log axis: the share of requests at or below each latency."""
    data = measured(samples)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.ecdfplot(data=data, x=metric, hue="scenario", hue_order=scenario_order(samples),
                 palette=palette(samples), log_scale=True, ax=ax)
    ax.set_xlabel(LABELS.get(metric, metric) + ", log scale")
    ax.set_ylabel("share of requests at or below")
    ax.set_title(f"Distribution of {LABELS.get(metric, metric).split(' (')[0]} per scenario")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def timeline(samples: pd.DataFrame, metric: str = "ttfb_ms") -> Figure:
    """Every request in the order sent; marker = state from server evidence, hollow = warm-up."""
    data = samples[samples["ok"].fillna(False)].copy()
    data["state"] = data["state"].astype(str)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    sns.scatterplot(data=data, x="seq", y=metric, hue="scenario", hue_order=scenario_order(samples),
                    palette=palette(samples), style="state", markers=STATE_MARKERS, s=50, ax=ax)
    warmups = data[data["warmup"].fillna(False)]
    ax.scatter(warmups["seq"], warmups[metric], s=140, facecolors="none", edgecolors="grey", label="warm-up")
    failed = samples[~samples["ok"].fillna(False)]
    for seq in failed["seq"]:
        ax.axvline(seq, color="red", alpha=0.3, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("request (order sent); red lines: failed requests")
    ax.set_ylabel(LABELS.get(metric, metric) + ", log scale")
    ax.set_title(f"{LABELS.get(metric, metric).split(' (')[0].capitalize()} of every request, in order")
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def sweep(table: pd.DataFrame, metric: str = "ttfb_ms") -> Figure:
    """Mean `metric` against the idle gap, one line per keep_alive, each point labelled with its cold share."""
    data = table.reset_index()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.lineplot(data=data, x="idle_gap_s", y=f"mean_{metric}", hue="keep_alive", marker="o", ax=ax)
    for _, row in data.iterrows():
        ax.annotate(f"{row['cold_share']:.0%} cold", (row["idle_gap_s"], row[f"mean_{metric}"]),
                    textcoords="offset points", xytext=(4, 6), fontsize="small")
    ax.set_yscale("log")
    ax.set_xlabel("idle gap before each request (s)")
    ax.set_ylabel(f"mean {LABELS.get(metric, metric)}, log scale")
    ax.set_title("A model pays a load once the idle gap outlasts its keep-alive")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig
