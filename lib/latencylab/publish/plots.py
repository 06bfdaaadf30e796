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


def _scattered(f: Findings, name: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The frame whose requests figure `name` draws a point for, which of its rows (positions), and the groups its
    sample keeps apart. Rows, not a filtered copy: of 10⁶ requests, a copy of every column is gigabytes."""
    if name == "timeline":
        frame, keep, by = f.samples, f.samples["ok"].fillna(False), ["state", "label", "warmup"]
    elif name == "box":
        frame, by = f.samples, ["label", "phase"]
        keep = f.samples["ok"].fillna(False) & ~f.samples["warmup"].fillna(False)
    elif name == "prefill":
        frame, by = f.requests, ["label"]
        keep = f.requests["ttft_ms"].notna() & f.requests["prompt_tokens"].notna()
    else:
        frame, keep = f.requests, f.requests["decode_tps"].notna()
        by = ["residency" if by_residency(f) else "state", "label"]
    return frame, np.flatnonzero(keep.to_numpy(dtype=bool)), by


def _quotas(groups: pd.DataFrame, by: list[str]) -> list[tuple[np.ndarray, int]]:
    """Each group's rows (positions in `groups`) and how many of them a figure draws (see POINTS_MAX)."""
    found = list(groups.groupby(by, sort=False, dropna=False).indices.values())
    if len(groups) <= POINTS_MAX:
        return [(rows, len(rows)) for rows in found]
    return [(rows, min(len(rows), max(len(rows) * POINTS_MAX // len(groups), POINTS_MIN))) for rows in found]


def drawn(f: Findings, name: str) -> tuple[int, int]:
    """How many requests figure `name` (timeline, box, prefill, decode) draws, of how many."""
    frame, rows, by = _scattered(f, name)
    return sum(quota for _, quota in _quotas(frame[by].iloc[rows], by)), len(rows)  # (the group columns only)


def sample(f: Findings, name: str) -> pd.DataFrame:
    """The requests figure `name` draws a point for: all of them, or beyond POINTS_MAX a seeded random sample (in
    their order)."""
    frame, rows, by = _scattered(f, name)
    quotas = _quotas(frame[by].iloc[rows], by)  # the group columns of those rows only
    if all(len(chosen) == quota for chosen, quota in quotas):
        return frame.iloc[rows]
    rng = np.random.default_rng(SEED)
    return frame.iloc[rows[np.sort(np.concatenate([rng.choice(chosen, quota, replace=False)
                                                   for chosen, quota in quotas]))]]


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


def by_residency(f: Findings) -> bool:
    """Whether the decode figure colours requests by residency: some server reported where a model sat."""
    return bool((f.requests["decode_tps"].notna() & (f.requests["residency"] != "unknown")).any())
