"""What the report notebook's figure cells share: one colour per scenario in every figure, the colours of states,
parts, targets and residency, the scenarios' order, the finish of every figure, the rate levels the capacity
figures draw.

The figures themselves are drawn in the cells of notebooks/2.0-latency-report.ipynb, one a cell, so that changing a
cell changes the published figure; their titles and axis words come from the document (`Report.title`, `.words`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from latencylab.analyse.findings import Findings
from latencylab.analyse.stats import SEED
from latencylab.analyse.tables import measured

STATE_COLOURS = {"cold": "#d62728", "reload": "#ff7f0e", "warm": "#2ca02c", "unknown": "#7f7f7f"}
PART_COLOURS = {"client_network_ms": "#bcbd22", "server_wait_ms": "#ff7f0e", "loading_ms": "#d62728",
                "prompt_ms": "#1f77b4", "first_token_ms": "#9467bd", "unattributed_ms": "#c7c7c7"}
PART_WORDS = {"client_network_ms": "col_client_network", "server_wait_ms": "col_server_wait",
              "loading_ms": "col_loading", "prompt_ms": "col_prompt", "first_token_ms": "col_first_token",
              "unattributed_ms": "col_unattributed"}
TARGET_COLOURS = {"pass": "#2ca02c", "fail": "#d62728", "inconclusive": "#ff7f0e", "no_evidence": "#7f7f7f"}
RESIDENCY_COLOURS = {"gpu": "#2ca02c", "partial": "#ff7f0e", "cpu": "#d62728", "unknown": "#7f7f7f"}
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
    return data, ["residency" if by_residency(data) else "state", "label"]


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


def by_residency(data: pd.DataFrame) -> bool:
    """Whether the decode figure colours requests by residency: some server reported where the model sat."""
    return bool((data["residency"] != "unknown").any())
