"""What every cause of a slow first byte shares: what makes a part material (`Scale`), what a cause is judged
against besides its scenario's requests (`Context`), the shape of a cause (`Cause`) and the helpers they read
the requests with."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from latencylab.analyse.attribution import later
from latencylab.analyse.findings import Key, Quantity, Step, Verdict
from latencylab.analyse.stats import numeric

# A part of the first byte is material — a cause worth fixing — when it is both a sizeable share of the
# scenario's latency and a sizeable amount of time. A quarter: removing less changes a median by less than
# the run-to-run spread of medians we see on a shared machine (10–20 %). 50 ms: half of the 0.1 s under
# which a response feels instantaneous (Card, Robertson & Mackinlay 1991; Nielsen 1993) — below it no user
# notices the fix. Where the study sets a target, a fifth of that target instead: the part then takes a
# fifth of the budget the study allows.
MATERIAL_SHARE = 0.25
MATERIAL_MS = 50.0
TARGET_SHARE = 0.2
TARGET_ORDER = ("subsequent_ms", "mean_ms", "first_ms")  # the target a scenario's typical request is held to
RESIDENT = 0.995  # a GPU share at or above this is the whole model on the GPU
TAIL = 0.10  # the slowest tenth of the requests
MIN_MODES_N = 10


@dataclass(frozen=True)
class Scale:
    """What makes a part of the first byte material in one scenario: a share of its latency and an amount of
    time (a fraction of its target where the study sets one, else MATERIAL_MS)."""

    share: float
    ms: float
    target: str | None  # the target the amount comes from
    goal: float | None  # that target's value (ms)

    def material(self, amount: float, latency: float) -> bool:
        return bool(amount >= self.ms and latency > 0 and amount / latency >= self.share)


def scale_of(goals: Mapping[str, Any]) -> Scale:
    """The materiality thresholds of a study's scenarios (see MATERIAL_SHARE, MATERIAL_MS, TARGET_SHARE)."""
    for name in TARGET_ORDER:
        if goals.get(name):
            return Scale(MATERIAL_SHARE, TARGET_SHARE * float(goals[name]), name, float(goals[name]))
    return Scale(MATERIAL_SHARE, MATERIAL_MS, None, None)


@dataclass(frozen=True)
class Context:
    """What a cause is judged against besides its scenario's requests."""

    metric: str
    scale: Scale
    goals: Mapping[str, Any]  # the study's targets
    data: pd.DataFrame  # every measured request of the report (`diagnosis.per_request`, with the attribution)
    predicted: Mapping[Key, tuple[int, str]]  # the check's predicted GPU share and its verdict, per scenario
    serialised: frozenset[Key]  # scenarios whose TTFT grows with the requests in flight
    # `data` grouped once (a filter of every request per scenario would grow with scenarios × requests)
    by_model: Mapping[Any, pd.DataFrame] = field(default_factory=dict)  # its requests per model (`tables.Groups`)
    by_run: Mapping[Any, pd.Series] = field(default_factory=dict)  # its GPU shares per run
    confirmed: frozenset[str] = frozenset()  # the causes confirmed so far on the scenario judged
    needs: Mapping[Key, float] = field(default_factory=dict)  # the check's estimate of what the model needs on the GPU
    # the requests each cause confirmed or present on the scenario explains, and the part they are slow in
    owned: Mapping[str, tuple[str, pd.Index]] = field(default_factory=dict)


class Cause(ABC):
    """One cause of slow first bytes, in one module: the test it puts a scenario's requests to (`judge`, with its
    own `Values`), the gain its fix would bring where it is confirmed, the catalog messages that word it
    (`words`, in both catalogs) and the findings a planted condition (tests/doubles/planted.py) scores it by."""

    name: ClassVar[str]
    words: ClassVar[tuple[str, ...]]  # every catalog key its phrases use, its heading dx_h_<name> among them
    findings: ClassVar[Mapping[str, str]]  # verdict → the finding it states (what the planted conditions score)
    host: ClassVar[bool] = False  # judged on the host evidence (collect/host.py), only where it was taken
    part: ClassVar[str | None] = None  # the part of the first byte (attribution.PARTS) the requests it owns pay

    def applies(self, g: pd.DataFrame) -> bool:
        """Whether the cause is put to these requests at all: a host cause where the host's evidence was taken (a
        conversation's causes, overriding it, only to conversations)."""
        return not self.host or bool((g.get("host", pd.Series(dtype=object)) == "local").any())

    @abstractmethod
    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """The verdict on one scenario's requests (`diagnosis.per_request` with the attribution's columns)."""

    def owns(self, g: pd.DataFrame) -> pd.Index:
        """The requests whose slowness this cause explains by themselves (a conversation's turns it names), so that
        the spread can tell them from a stall; none by default."""
        return g.index[:0]

    def gain(self, g: pd.DataFrame, metric: str) -> Step | None:
        """What fixing this cause would leave of the scenario's median, where it is confirmed; None: no fix to
        predict."""
        return None


def key_of(g: pd.DataFrame) -> Key:
    return g["run"].iloc[0], g["scenario"].iloc[0]


def median(series: pd.Series) -> float:
    values = numeric(series).dropna()
    return float(values.median()) if len(values) else math.nan


def mean(series: pd.Series) -> float:
    values = numeric(series).dropna()
    return float(values.mean()) if len(values) else math.nan


def missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def gain_step(kind: str, g: pd.DataFrame, metric: str, after: float) -> Step | None:
    """A predicted gain (`predict_<cause>`): the scenario's median after its cold start now and after the fix;
    None where the fix would save nothing."""
    now = median(later(g)[metric])
    if math.isnan(after) or not after < now:
        return None
    return Step(kind, key_of(g), {"now": now, "after": after, "saved": now - after})


def ms(value: float | None, label: str | None = None) -> Quantity:
    return Quantity(value, "ms", label)


def fine_ms(value: float | None, label: str | None = None) -> Quantity:
    return Quantity(value, "fine_ms", label)


def share(value: float | None, label: str | None = None) -> Quantity:
    return Quantity(value, "share", label)


def count(value: float | None, label: str | None = None) -> Quantity:
    return Quantity(value, "count", label)


def tps(value: float | None, label: str | None = None) -> Quantity:
    return Quantity(value, "tps", label)


def mib(value: float | None, label: str | None = None) -> Quantity:
    return Quantity(value, "mib", label)


def processed_tokens(g: pd.DataFrame) -> pd.Series:
    """The prompt tokens the server processed for each request: a conversation's turn less what it reused of its
    history (`conversation.turns`), else the prompt less the tokens the server says it had cached."""
    tokens = numeric(g["prompt_tokens"]) - numeric(g["cached_tokens"]).fillna(0)
    return numeric(g["processed"]).fillna(tokens) if "processed" in g else tokens


def prefill_rate(g: pd.DataFrame) -> tuple[float, float, float]:
    """The prefill of a typical request of `g`: the median tokens processed, the median prompt time (ms) and their
    ratio in tokens/s, over the requests the server timed the prompt of — a rate that, stated beside those two, says
    tokens / rate = time (a median of each request's rate would not). NaN where no prompt was timed."""
    time = numeric(g["prompt_ms"])  # columns, not a filtered copy of `g`: it may be every request of a model
    timed = time.notna()
    tokens, time = median(processed_tokens(g)[timed]), median(time[timed])
    return tokens, time, tokens / time * 1000 if time > 0 else math.nan


def own_work(g: pd.DataFrame, context: Context) -> pd.DataFrame:
    """`g`'s requests that no cause named so far owns (a conversation's turns that re-processed a history, or
    loaded, are that cause's waste); all of them where every one is owned."""
    owned = [requests for _, requests in context.owned.values()]
    left = g.drop(index=g.index.intersection(owned[0].append(owned[1:]))) if owned else g
    return left if len(left) else g


def host_share(g: pd.DataFrame) -> pd.Series:
    """The share of the machine's cores other processes used during each request (NaN without host evidence)."""
    return numeric(g["others_cpu_ms"]) / (numeric(g["host_window_ms"]) * numeric(g["host_cores"]))
