"""What the report notebook's figure cells share: one colour per scenario in every figure, the colours of states,
parts, phases, targets and residency, the scenarios' order, the finish of every figure, the rate levels the capacity
figures draw.

The figures themselves are drawn in the cells of notebooks/2.0-latency-report.ipynb, one a cell, so that changing a
cell changes the published figure; their titles and axis words come from the document (`Report.title`, `.words`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib.font_manager as mfont
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axis import Axis
from matplotlib.figure import Figure

from latencylab.analyse.findings import Findings
from latencylab.analyse import tables
from latencylab.analyse.stats import SEED
from latencylab.publish import i18n

STATE_COLOURS = {"cold": "#d62728", "reload": "#ff7f0e", "warm": "#2ca02c", "unknown": "#7f7f7f"}
PART_COLOURS = {"client_network_ms": "#bcbd22", "server_wait_ms": "#ff7f0e", "loading_ms": "#d62728",
                "prompt_ms": "#1f77b4", "first_token_ms": "#9467bd", "unattributed_ms": "#c7c7c7"}
PART_WORDS = {"client_network_ms": "col_client_network", "server_wait_ms": "col_server_wait",
              "loading_ms": "col_loading", "prompt_ms": "col_prompt", "first_token_ms": "col_first_token",
              "unattributed_ms": "col_unattributed"}
# Phases in greys: a hue in a figure of scenarios would read as a scenario's colour.
PHASE_COLOURS = {"first": "#8c8c8c", "subsequent": "#262626"}
TARGET_COLOURS = {"pass": "#2ca02c", "fail": "#d62728", "inconclusive": "#ff7f0e", "no_evidence": "#7f7f7f"}
RESIDENCY_COLOURS = {"gpu": "#2ca02c", "partial": "#ff7f0e", "cpu": "#d62728", "unknown": "#7f7f7f"}
# A figure with a point per request draws at most about this many: past it the points only overlap, and drawing
# them takes seconds per 10⁵ (the timeline of 10⁶ requests took 22 s). Beyond it, a seeded random sample in which
# each group (state, scenario…) keeps its share, and at least POINTS_MIN, so that a rare state stays in sight;
# the figure's title says so.
POINTS_MAX = 20_000
POINTS_MIN = 500
SMALL = 20  # fewer requests than this in a group: drawn as points, not as a curve of their density


def _scattered(f: Findings, name: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The frame whose requests figure `name` draws a point for, which of its rows (positions), and the groups its
    sample keeps apart. Rows, not a filtered copy: of 10⁶ requests, a copy of every column is gigabytes."""
    if name == "timeline":
        frame, keep, by = f.samples, f.samples["ok"].fillna(False), ["state", "label", "warmup"]
    elif name == "server":
        frame, keep, by = f.samples, f.samples["ok"].fillna(False), ["label"]
    elif name in ("box", "distribution"):
        frame, by = f.samples, ["label", "phase"] if name == "box" else ["label"]
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
    """How many requests figure `name` (timeline, box, distribution, prefill, decode) draws, of how many."""
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
    """The colour of each scenario, the same in every figure: tab10's ten distinct hues (colorblind's second and
    fourth, two oranges, read as one scenario at a glance), then evenly spaced hues past ten."""
    names = order(f)
    colours = sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colours, strict=True))


def small(f: Findings) -> bool:
    """Whether some scenario has fewer than SMALL measured requests: then a figure draws them as points, since a
    density curve or a histogram of so few shows the smoothing, not the data."""
    counts = tables.measured(f.samples, ["label"]).value_counts()
    return counts.empty or int(counts.min()) < SMALL


class _Readable(mticker.Locator):
    """A log axis's labelled ticks at round numbers, as many as fit: 1 to 9 times the powers of ten, or fewer of
    them (1, 2, 3, 5, 7; 1, 2, 5; 1, 3; 1), or one power in two or more; evenly spaced ones on a span under 2×.
    "Fit" is measured on the drawn axes where it is known: each label's room on the axis (its width on an x axis,
    its height on a y axis) between it and the next; else at most `most` of them."""

    SUBS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 5, 7), (1, 2, 5), (1, 3), (1,))

    def __init__(self, most: int) -> None:
        self.most = most

    def __call__(self) -> list[float]:
        low, high = sorted(float(v) for v in self.axis.get_view_interval())
        return self.tick_values(low, high, self._fits(low, high))

    def _fits(self, low: float, high: float) -> Callable[[list[float]], bool] | None:
        """Whether a set of ticks has room for its labels on the drawn axes (None: the axes are not laid out)."""
        axes = self.axis.axes
        length = axes.bbox.width if self.axis.axis_name == "x" else axes.bbox.height
        if not length or low <= 0 or high <= low:
            return None
        font = mfont.FontProperties(size=plt.rcParams[f"{self.axis.axis_name}tick.labelsize"]).get_size_in_points()
        pixels = font * axes.figure.dpi / 72
        per_decade = length / math.log10(high / low)

        def room(a: float, b: float) -> float:  # what two neighbouring labels need between their ticks
            if self.axis.axis_name == "y":
                return 1.3 * pixels
            return 0.65 * pixels * (len(f"{a:,.0f}") + len(f"{b:,.0f}")) / 2 + pixels

        return lambda ticks: all(math.log10(b / a) * per_decade >= room(a, b) for a, b in zip(ticks, ticks[1:]))

    def tick_values(self, vmin: float, vmax: float, fits: Callable[[list[float]], bool] | None = None) -> list[float]:
        low, high = sorted((float(vmin), float(vmax)))
        low = max(low, high * 1e-12, 1e-300)
        if high / low < 2:
            return list(mticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high))
        first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
        for subs in self.SUBS:
            ticks = [s * 10.0**e for e in range(first, last + 1) for s in subs if low <= s * 10.0**e <= high * 1.000001]
            if len(ticks) <= self.most and (fits is None or fits(ticks)):
                return ticks
        every = math.ceil((last - first + 1) / self.most)
        return [10.0**e for e in range(first, last + 1) if e % every == 0]


def readable_log(axis: Axis, lang: str) -> None:
    """Plain round numbers (100, 200, 500, 1,000) as a log axis's labels, in the language's format, and unlabelled
    minor ticks: not matplotlib's 10² and 3×10⁻¹, which overlap where a span holds no power of ten."""
    def label(value: float, _: object) -> str:
        return i18n.number(value, lang, max(0, -math.floor(math.log10(value)))) if value > 0 else ""

    if axis.get_scale() != "log":
        return
    base = axis.get_transform().base
    axis.set_major_locator(_Readable(7 if axis.axis_name == "y" else 9) if base == 10
                           else mticker.LogLocator(base=base))
    axis.set_major_formatter(mticker.FuncFormatter(label))
    axis.set_minor_formatter(mticker.NullFormatter())


def finish(fig: Figure, ax: plt.Axes, title: str | None, lang: str) -> Figure:
    """Every figure's title (left, bold: what to conclude, then what is drawn), grid, readable log axes, its legend
    outside the data (right of the axes) and layout."""
    if title:
        ax.set_title(title, loc="left", fontsize="medium", fontweight="bold")
    ax.grid(True, which="both", alpha=0.3)
    for axes in fig.axes:
        readable_log(axes.xaxis, lang)
        readable_log(axes.yaxis, lang)
        if axes.get_legend() is not None:
            sns.move_legend(axes, "upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, fontsize="small",
                            title_fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def overlaps(fig: Figure) -> list[str]:
    """What in a drawn figure covers what it should not: two visible tick labels of an axis that overlap, a legend
    over its axes' data area. Measured with matplotlib's own renderer, as the PNG is drawn."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for axes in [*fig.axes, *(child for axes in fig.axes for child in axes.child_axes)]:  # (secondary axes)
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            boxes = [(tick.label1.get_text(), tick.label1.get_window_extent(renderer))
                     for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                     if tick.label1.get_visible() and tick.label1.get_text() and low <= tick.get_loc() <= high]
            for i, (text, box) in enumerate(boxes):
                found += [f"{axis.axis_name} tick labels {text!r} and {other!r} overlap"
                          for other, box2 in boxes[i + 1:] if box.overlaps(box2)]  # (touching is not overlapping)
        legend = axes.get_legend()
        if legend is not None and legend.get_visible() and legend.get_window_extent(renderer).overlaps(
                axes.get_window_extent(renderer)):
            found.append(f"a legend covers the data of {axes.get_title(loc='left')!r}")
    return found


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


def server_in_use(f: Findings) -> tuple[pd.DataFrame, str]:
    """What the server figure's lowest panel draws: per endpoint and scrape, the share of the server's KV cache in use
    (vLLM), else of its slots busy (llama-server's /slots, read while requests were in flight); with the catalog key
    of its axis ("" where the server published neither)."""
    wide = f.server_metrics.pivot_table(index=["label", "endpoint", "t"], columns="quantity", values="value")
    if "kv_used" in wide:
        return wide["kv_used"].dropna().rename("in_use").reset_index(), "ax_server_kv"
    if {"slots_busy", "slots_total"} <= set(wide.columns):
        return (wide["slots_busy"] / wide["slots_total"]).dropna().rename("in_use").reset_index(), "ax_server_slots"
    return pd.DataFrame(columns=["label", "endpoint", "t", "in_use"]), ""


def by_residency(f: Findings) -> bool:
    """Whether the decode figure colours requests by residency: some server reported where a model sat."""
    return bool((f.requests["decode_tps"].notna() & (f.requests["residency"] != "unknown")).any())
