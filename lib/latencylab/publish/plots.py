"""What the report notebook's figure cells share: one colour per scenario in every figure, the colours of states,
parts, targets and residency, the scenarios' order, the finish of every figure, the rate levels the capacity
figures draw.

The figures themselves are drawn in the cells of notebooks/2.0-latency-report.ipynb, one a cell, so that changing a
cell changes the published figure; their titles and axis words come from the document (`Report.title`, `.words`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from latencylab.analyse.findings import Findings

STATE_COLOURS = {"cold": "#d62728", "reload": "#ff7f0e", "warm": "#2ca02c", "unknown": "#7f7f7f"}
PART_COLOURS = {"client_network_ms": "#bcbd22", "server_wait_ms": "#ff7f0e", "loading_ms": "#d62728",
                "prompt_ms": "#1f77b4", "first_token_ms": "#9467bd", "unattributed_ms": "#c7c7c7"}
PART_WORDS = {"client_network_ms": "col_client_network", "server_wait_ms": "col_server_wait",
              "loading_ms": "col_loading", "prompt_ms": "col_prompt", "first_token_ms": "col_first_token",
              "unattributed_ms": "col_unattributed"}
TARGET_COLOURS = {"pass": "#2ca02c", "fail": "#d62728", "inconclusive": "#ff7f0e", "no_evidence": "#7f7f7f"}
RESIDENCY_COLOURS = {"gpu": "#2ca02c", "partial": "#ff7f0e", "cpu": "#d62728", "unknown": "#7f7f7f"}


def order(f: Findings) -> list[str]:
    """Scenario labels in the study's order."""
    return [f.labels[key] for key in f.keys]


def palette(f: Findings) -> dict[str, tuple[float, float, float]]:
    """The colour of each scenario, stable across figures."""
    names = order(f)
    return dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))


def finish(fig: Figure, ax: plt.Axes, title: str | None) -> Figure:
    """Every figure's title (left, bold: what to conclude, then what is drawn), grid and layout."""
    if title:
        ax.set_title(title, loc="left", fontsize="medium", fontweight="bold")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def rate_levels(f: Findings) -> list[tuple[str, pd.DataFrame, float | None, float | None]]:
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
