"""What a report states, as data: numbers, flags and tables, no words (`compute.findings()` fills it).

A scenario is identified by its run label and its name (`Key`), so runs that reuse a name stay apart.
Every table is a DataFrame indexed by `run`, `scenario` (and more levels where it says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from latencylab.plan.check import Finding

if TYPE_CHECKING:
    from latencylab.analyse.answer import Answer
    from latencylab.runs.store import RunMeta

Key = tuple[str, str]  # (run label, scenario name)
STATUSES = ("pass", "fail", "inconclusive", "no_evidence")


@dataclass(frozen=True)
class RunInfo:
    """The facts of one run's run.json that a report shows (`run_info()` is the one place that reads it)."""

    run_id: str
    label: str
    study: str = ""
    description: str = ""
    status: str = ""
    started_at: str = ""
    ended_at: str = ""
    server: str = ""
    server_version: str = ""
    platform: str = ""
    cpu_count: int | None = None
    ram_bytes: int | None = None
    gpus: list[dict[str, Any]] = field(default_factory=list)  # NVML's GPUs (gpu.GpuDevice fields); none seen: []
    engine_backend: str = ""  # the embedded engine's build: "cpu", "cuda"…
    resumes: list[dict[str, Any]] = field(default_factory=list)  # store.Resume fields, one per resume
    latencylab_version: str = ""
    python_version: str = ""
    lang: str = "en"
    targets: dict[str, Any] = field(default_factory=dict)
    slo: dict[str, Any] = field(default_factory=dict)  # the study's per-request SLOs and goal (plan.study.SloSpec)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → runner settings
    sweep: bool = False
    hostname: str = ""
    facts: dict[str, Any] = field(default_factory=dict)  # facts.json (`facts.RunFacts`: before, after) as JSON
    pooled: bool = False  # one of several runs pooled under one label (--pool)
    hypotheses: list[dict[str, str]] = field(default_factory=list)  # the study's: claim (its words), cause


RUNNER_KEYS = ("backend", "model", "keep_alive", "preload", "idle_gap_s", "options")


def run_info(meta: RunMeta, label: str = "", facts: dict[str, Any] | None = None) -> RunInfo:
    """A run's record as `RunInfo`, named `label` (default: its run id), with its facts.json when it has one."""
    study, host = meta.study, meta.host  # host: HostFacts' fields, or the keys runs before issue 17 wrote
    scenarios = {} if study is None else {
        s.name: {**{k: getattr(s, k) for k in RUNNER_KEYS if k != "backend"}, "backend": study.backend_of(s)}
        for s in study.scenarios
    }
    return RunInfo(
        run_id=meta.run_id,
        label=label or meta.run_id,
        study=meta.name,
        description=meta.description,
        status=meta.status,
        started_at=meta.started_at or "",
        ended_at=meta.ended_at or "",
        server=str(meta.server.get("kind") or (study.backend if study else "") or ""),
        server_version=str(meta.server.get("version", "") or ""),
        platform=str(host.get("platform") or " ".join(filter(None, (host.get("system"), host.get("machine"))))),
        cpu_count=host.get("cpu_count") or host.get("cores_logical"),
        ram_bytes=host.get("ram_bytes"),
        gpus=list(meta.gpus),
        engine_backend=str(meta.server.get("backend", "") or ""),
        resumes=[r.model_dump(mode="json") for r in meta.resumes],
        latencylab_version=str(meta.versions.get("latencylab", "") or ""),
        python_version=str(meta.versions.get("python", "") or ""),
        lang=study.lang if study else "en",
        targets=study.targets.model_dump(mode="json", exclude_none=False) if study else {},
        slo=study.slo.model_dump(mode="json") if study else {},
        scenarios=scenarios,
        sweep=bool(study and study.sweep),
        hostname=str(host.get("hostname") or ""),
        facts=dict(facts or {}),
        hypotheses=[h.model_dump() for h in study.hypotheses] if study else [],
    )


@dataclass(frozen=True)
class Saturation:
    """The highest offered rate a scenario held (achieved ≈ offered, attainment ≥ goal) and where it broke.

    status: `found` (held at `rate`, broke at `high`), `held_all` (held at every level: at least `rate`),
    `none_held` (broke at the lowest level, `high`), `client_limited` (the first level that broke was one
    the client could not send: the server held at least `rate`, beyond is unknown).
    `grows`: (at the last level held, at the first broken one) in ms, of what rises past the saturation point:
    the median TTFT above the single-request one (`queue_p50_ms`), the client's median lag, the server's
    reported wait where there is one, the TTFT p95.
    """

    run: str
    scenario: str
    status: str
    rate: float | None
    high: float | None
    goal: float
    grows: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class Step:
    """One next step the data calls for: its kind (a catalog key `next_<kind>`), whom it is about, its numbers."""

    kind: str
    key: Key | None = None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Headline:
    """The summary's facts: the change against the baseline, its interval, and targets passed before/after."""

    scenario: Key | None
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    verdict: str | None
    median_before: float | None
    median_after: float | None
    changed: list[str]  # settings that differ from the baseline
    targets_passed: dict[Key, tuple[int, int]]  # key → (passed, judged)
    finding: Step | None  # the most important of the next steps


@dataclass(frozen=True)
class FigureFacts:
    """What figure titles and notes state: fastest and slowest medians, loads paid, CVs under the goal."""

    fastest: Key | None
    slowest: Key | None
    medians: dict[Key, float]
    paid: int
    measured: int
    paid_share: float | None
    cv_below_goal: int | None
    cv_count: int
    targets_passed: int
    targets_judged: int
    load_share_of_ttft: tuple[Key, float] | None  # the key whose loads weigh most in its mean TTFT
    has_ttft: bool  # whether any request has a TTFT to decompose
    targets_measured: bool  # whether any target has a measured value to draw
    rest_negative: int  # requests whose server figures add up to more than the client measured


Unit = Literal["ms", "fine_ms", "share", "count", "tps", "mib", "rho", "p", "slope", "mbps", "gbps", "text"]


# What a labelled number is: one name per quantity and the requests it is taken over, one definition each, so that
# a quantity stated in several places has one value (tests/unit/test_reconciled.py holds them to it). "Later
# requests" are those after a scenario's first and its cold start (`attribution.later`): the seed's "subsecuente",
# the phase table's `subsequent`. The catalogs word each as `q_<name>`, what a template prints beside the number.
LABELS = {
    "metric_median_all": "the metric's median over every measured request",
    "metric_median_later": "the metric's median over the later requests",
    "metric_mean_later": "the metric's mean over the later requests",
    "metric_cold_start": "the metric of the cold start's request",
    "load_cold_start": "the load the cold start paid",
    "load_mean_loaded": "the mean load over the later requests that made the server load",
    "load_per_request": "the mean load over every later request (0 where it loaded nothing)",
    "load_share": "load_per_request over metric_mean_later",
    "loads_later": "how many later requests made the server load",
    "requests_later": "how many later requests there are",
    "prompt_median": "the median server prompt time of the later requests no other cause owns (the floor adds the "
                     "first token's)",
    "tokens_median": "the median prompt tokens processed (cached ones left out) of those requests",
    "prefill_rate": "tokens_median over prompt_median, so that tokens / rate = time",
    "growth_slope": "the Theil–Sen slope of the server's prompt time (the metric where there is none) on the tokens "
                    "processed, ms per token",
    "loads_host": "the scenario's loads with host evidence",
    "loads_storage": "those of the scenario's loads that read the model from storage",
    "loads_memory_report": "the report's loads of the same model file from memory, every scenario's",
}


@dataclass(frozen=True)
class Quantity:
    """A number a sentence states, with the unit `document` writes it in (fine_ms: two decimals; rho: a
    correlation; p: a p-value; slope: ms per token; mbps, gbps: bytes/s as MB/s, GB/s; text: a name as it is)
    and, where it is one of them, the quantity it is (a name of `LABELS`)."""

    value: float | str | None
    unit: Unit
    label: str | None = None

    def __post_init__(self) -> None:
        if self.label is not None and self.label not in LABELS:
            raise ValueError(f"unknown quantity label {self.label!r}")


@dataclass(frozen=True)
class Phrase:
    """A catalog message by its key, and what fills its placeholders: numbers, other phrases, phrases said one
    after another, or nothing (None). The words are the catalogs'; this names which message says what."""

    key: str
    values: dict[str, Fill] = field(default_factory=dict)


@dataclass(frozen=True)
class Phrases:
    """Phrases said one after another, `sep` between them (", " for a list)."""

    items: tuple[Phrase, ...] = ()
    sep: str = ""


Fill = Quantity | Phrase | Phrases | None


@dataclass(frozen=True)
class Values:
    """The numbers behind one cause's verdict: each cause (`analyse.causes`) has its own fields, and names the
    catalog messages that word them."""

    def phrase(self, verdict: str, reason: str) -> Phrase:
        """The sentence of this verdict (its placeholders scenario, verdict and metric are the report's)."""
        raise NotImplementedError

    def quantities(self) -> dict[str, float]:
        """The labelled quantities (`LABELS`) this cause alone computes; those it shares with a table are the
        table's (`Findings.quantities`)."""
        return {}


@dataclass(frozen=True)
class Verdict:
    """One cause of slow first bytes put to the test for one scenario, and the numbers behind the verdict."""

    cause: str  # a name of `analyse.causes.CAUSES`: reloads, offload, prompt, queueing, variance
    key: Key
    # confirmed (waste, and material: this is why the first byte is slow), present (there, but not a cause),
    # refuted, no_evidence; offload also no_gpu (the server ran the model on the CPU though it did not have to);
    # prompt (the server's own work, never waste) floor, or floor_above_target (the floor alone is above the
    # study's target: a finding against the study, not a fault)
    verdict: str
    values: Values
    reason: str = ""  # why there is no evidence (a catalog suffix); "targets_met": material, but the targets are met

    def phrase(self) -> Phrase:
        """The sentence that words this verdict."""
        if self.reason == "targets_met":  # the numbers as for a confirmed cause, and why it is not one
            return Phrase("dx_targets_met", {"said": self.values.phrase("confirmed", "")})
        return self.values.phrase(self.verdict, self.reason)


@dataclass(frozen=True)
class Modes:
    """A bimodal distribution of the metric: its two modes, and whether a prompt-token threshold explains them."""

    key: Key
    low_median: float
    high_median: float
    low_n: int
    high_n: int
    ashman_d: float
    agreement: float  # share of requests the best prompt-token threshold puts in their mode (NaN: unknown)
    threshold: float  # that threshold: more tokens than this → the slow mode
    low_tokens: float  # median prompt tokens processed of each mode
    high_tokens: float
    by_prompt: bool
    beyond_n: int = 0  # slower requests beyond both modes (when the modes are those of the faster requests)
    beyond_from: float = float("nan")  # the fastest of them


@dataclass(frozen=True)
class Diagnosis:
    """Each cause put to the test per scenario, the bimodal distributions, and the check's findings."""

    verdicts: list[Verdict] = field(default_factory=list)
    modes: list[Modes] = field(default_factory=list)
    decode_by_residency: dict[str, float] = field(default_factory=dict)  # gpu / partial / cpu → median tok/s
    checks: list[Finding] = field(default_factory=list)  # check.json's findings, each with its run's label
    predicted: dict[Key, tuple[int, str]] = field(default_factory=dict)  # the check's GPU share and its verdict
    thresholds: dict[str, Any] = field(default_factory=dict)  # what makes a part material (diagnosis.Scale)
    predictions: list[Step] = field(default_factory=list)  # predict_<cause>: the median a fix would leave
    # per key: the mean of each part of the first byte (attribution.PARTS) over the requests after the cold start
    attribution: pd.DataFrame = field(default_factory=pd.DataFrame)
    hypotheses: list[dict[str, str]] = field(default_factory=list)  # the study's: claim (its words), cause
    no_host: dict[Key, str] = field(default_factory=dict)  # why a scenario has no host evidence: remote, not_found…


@dataclass
class Findings:
    """Everything a report says about some runs, computed once (see `compute.findings`)."""

    metric: str  # ttfb_ms or ttft_ms: what every latency label refers to
    goals: dict[str, Any]  # the targets judged (the study's, with any overrides)
    baseline: Key
    keys: list[Key]  # in the study's order
    labels: dict[Key, str]  # how each scenario is named on a figure or a table
    runs: list[RunInfo]
    external: str | None  # the CSV an external baseline came from
    phases: pd.DataFrame  # tables.phase_summary per key and phase (first, subsequent, all)
    intervals: pd.DataFrame
    load: pd.DataFrame
    residency: pd.DataFrame
    decomposition: pd.DataFrame  # index run, scenario, state
    changes: pd.DataFrame  # run, scenario, setting, before, after
    comparisons: pd.DataFrame
    results: pd.DataFrame  # run, scenario, measure, before, after, change
    targets: pd.DataFrame
    facts: FigureFacts
    concurrency: pd.DataFrame
    sweep: pd.DataFrame
    errors: pd.DataFrame
    steps: list[Step]
    headline: Headline
    samples: pd.DataFrame = field(repr=False)  # the samples behind it, with `run` and `label` columns
    # runs compared, server facts (issue 11)
    across_runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # each run's scenarios against the reference run's
    spread: pd.DataFrame = field(default_factory=pd.DataFrame)  # pooled keys: the metric's median in each run pooled
    server_facts: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)  # label → facts
    differences: pd.DataFrame = field(default_factory=pd.DataFrame)  # server facts that differ from the reference run's
    # diagnosis and metrics (issue 11)
    measured_figures: pd.DataFrame = field(default_factory=pd.DataFrame)  # index run, scenario, figure
    diagnosis: Diagnosis = field(default_factory=Diagnosis)
    requests: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # measured samples + decode_tps…
    # capacity (issue 20): one row per rate-sweep level (analyse.capacity.levels), the saturation point per key
    capacity: pd.DataFrame = field(default_factory=pd.DataFrame)
    conversation: pd.DataFrame = field(default_factory=pd.DataFrame)  # a conversation's turns (conversation.py)
    saturation: list[Saturation] = field(default_factory=list)
    # the server's own metrics scraped during the runs (runs.server_metrics.LOADED), with `label`
    server_metrics: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    answer: Answer | None = None  # what the report leads with (answer.py)

    def quantities(self, key: Key) -> dict[str, float]:
        """One scenario's labelled quantities (`LABELS`), each from the one place that computes it: the phase table's
        medians, the load table (`attribution.load_figures`, the reloads cause's too) and the causes' own."""
        def number(value: Any) -> float:
            return float("nan") if pd.isna(value) else float(value)  # a scenario whose requests all failed: <NA>

        out = {}
        for phase, label in (("all", "metric_median_all"), ("subsequent", "metric_median_later")):
            if (*key, phase) in self.phases.index:
                out[label] = number(self.phases.loc[(*key, phase), "median"])
        if key in self.load.index:
            row = self.load.loc[key]
            out.update({label: number(row[label]) for label in LABELS if label in row.index})
        for v in self.diagnosis.verdicts:
            if v.key == key:
                out.update(v.values.quantities())
        return out

    @property
    def has_latency(self) -> bool:
        """Whether any measured request has a value of the metric (else there is nothing to draw)."""
        return bool(self.phases["n"].fillna(0).sum() > 0)
