"""Study specs (YAML) parsed and validated into pydantic models; every error names file and key path."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from latencylab.core import paths
from latencylab.core.durations import keep_alive_seconds
from latencylab.core.errors import StudyError
from latencylab.core.protocols import SERVER_KINDS, capabilities
from latencylab.core.timeouts import Timeouts

# A study's server kinds are the registry's keys: a Literal built from them, so that pydantic's error and the
# study's JSON schema name each one.
BackendKind = Literal[tuple(SERVER_KINDS)]  # type: ignore[valid-type]
# Ollama options that must be numbers; a string there is an HTTP 500 from the server.
# Options that make a runner: two scenarios of one model that differ in any of them cannot share it, and
# Ollama keeps one runner per model, so switching between them reloads (server/sched.go `needsReload`).
RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "num_thread", "main_gpu", "use_mmap")
INTEGER_OPTIONS = {"num_ctx", "num_batch", "num_gpu", "num_thread", "main_gpu", "num_predict", "seed", "top_k",
                   "num_keep", "repeat_last_n", "num_parallel"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSpec(_Spec):
    """The embedded llama-server (router mode) that serves studies with `backend: embedded`."""

    models_max: int = Field(2, ge=1, description="models kept loaded at once; loading another evicts one")
    ctx_size: int = Field(2048, ge=128, description="context size of models whose scenario sets no num_ctx")
    threads: int | None = Field(None, ge=1, description="CPU threads; the engine decides when unset")


# The models the bundled Ollama has: made from the shipped GGUFs (data/models/), under their own names.
BUNDLED_OLLAMA_MODELS = ("smollm2:135m-q4_1", "smollm2:135m-q8_0")


class BundledOllamaSpec(_Spec):
    """The bundled Ollama (0.5.4, Intel's CPU build, `make install`): started for the run, serving every
    scenario with `backend: ollama` and no base_url. Its settings are Ollama's environment variables."""

    num_parallel: int | None = Field(None, ge=1, description="OLLAMA_NUM_PARALLEL; Ollama decides when unset")
    max_loaded_models: int | None = Field(None, ge=1, description="OLLAMA_MAX_LOADED_MODELS")
    keep_alive: int | float | str | None = Field(None, description="OLLAMA_KEEP_ALIVE, the server's default")

    @model_validator(mode="before")
    @classmethod
    def _true(cls, value: Any) -> Any:
        return {} if value is True else value  # `bundled_ollama: true` asks for it with Ollama's defaults

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive(cls, value: Any) -> Any:
        if value is not None:
            keep_alive_seconds(value)  # raises with Ollama's reason
        return value

    def env(self) -> dict[str, str]:
        """The Ollama environment these settings make."""
        env = {"OLLAMA_NUM_PARALLEL": self.num_parallel, "OLLAMA_MAX_LOADED_MODELS": self.max_loaded_models,
               "OLLAMA_KEEP_ALIVE": self.keep_alive if isinstance(self.keep_alive, str) or self.keep_alive is None
               else f"{self.keep_alive}s"}
        return {k: str(v) for k, v in env.items() if v is not None}


class TargetsSpec(_Spec):
    """Pass/fail criteria, the seed study's by default; a null turns one off."""

    metric: Literal["ttfb_ms", "ttft_ms"] = "ttfb_ms"
    first_ms: float | None = Field(2000.0, gt=0, description="first request of a scenario")
    subsequent_ms: float | None = Field(500.0, gt=0, description="median of the subsequent requests")
    mean_ms: float | None = Field(2000.0, gt=0, description="mean of every measured request")
    mean_stretch_ms: float | None = Field(1000.0, gt=0, description="the stretch goal for the mean")
    cv: float | None = Field(0.5, gt=0, description="coefficient of variation (std / mean): the seed's variance")
    fits_in_vram: bool | None = Field(True, description="the model entirely in GPU memory")


class HypothesisSpec(_Spec):
    """A claim the study sets out to test, in its own words, and the cause of slow first bytes it names."""

    claim: str = Field(min_length=1, description="the hypothesis as the study's authors wrote it")
    cause: Literal["reloads", "offload", "prompt", "queueing", "variance"] = Field(
        description="what the diagnosis tests it by: reloads between requests, a model not wholly in VRAM, prompt "
        "processing, queueing, or what makes the slowest requests slow")


class SessionsSpec(_Spec):
    """Conversations: each turn resends the whole history (the system prompt, every earlier user turn and the
    assistant's real answers), as a chat client does; sessions run `concurrent` at a time."""

    count: int = Field(1, ge=1, description="sessions per scenario")
    turns: int = Field(8, ge=1, description="user turns per session")
    think_time_s: float | tuple[float, float] = Field(
        0.0, description="pause between a turn's answer and the next turn: seconds, or [low, high] drawn uniformly "
        "(seeded by `think_seed`)")
    think_seed: int = Field(0, description="seed of the drawn think times")
    system_prompt: str | None = Field(None, description="a system message every session starts with: a prefix "
                                      "the sessions share")
    concurrent: int = Field(1, ge=1, description="sessions in flight at once")

    @field_validator("think_time_s")
    @classmethod
    def _think(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        low, high = value if isinstance(value, tuple) else (value, value)
        if low < 0 or high < low:
            raise ValueError("think_time_s: seconds ≥ 0, or [low, high] with low ≤ high")
        return value

    @property
    def think_max_s(self) -> float:
        """The longest think time the sessions can draw."""
        return self.think_time_s[1] if isinstance(self.think_time_s, tuple) else self.think_time_s


class ScenarioSpec(_Spec):
    """One configuration to measure: a server, a model and its settings."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    backend: BackendKind | None = None  # the study's `backend` when unset
    base_url: str | None = Field(None, pattern=r"^https?://")
    model: str
    endpoint: Literal["generate", "chat"] = "generate"  # Ollama only
    keep_alive: int | float | str | None = None  # Ollama's; on the embedded engine, the idle sleep
    options: dict[str, Any] = Field(default_factory=dict)  # Ollama `options`; mapped onto the engine
    preload: bool = Field(False, description="load the model (with its keep_alive) before measuring")
    idle_gap_s: float | None = Field(None, ge=0, description="pause before each request; the workload's when unset")
    sessions: SessionsSpec | None = Field(None, description="this scenario's conversations instead of the "
                                          "workload's sessions, which the study must give (e.g. one session alone "
                                          "beside several at once)")

    @property
    def runner_options(self) -> dict[str, Any]:
        """The scenario's options that decide its runner (a change of any of them makes Ollama reload)."""
        return {k: self.options[k] for k in RUNNER_OPTIONS if k in self.options}

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive(cls, value: Any) -> Any:
        if isinstance(value, bool | int | float | str):  # bool first: it would pass as an int
            keep_alive_seconds(value)  # raises with Ollama's reason
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in INTEGER_OPTIONS & value.keys():
            if isinstance(value[key], bool) or not isinstance(value[key], int | float):
                raise ValueError(f"option {key!r} must be a number, got {value[key]!r} (Ollama answers HTTP 500)")
        return value


class TraceSpec(_Spec):
    """A recorded trace replayed on its own schedule (the Mooncake format AIPerf reads): one JSON object a line,
    `timestamp` (ms after the trace's start), `input_length` and `output_length` (tokens), `hash_ids` (ids of
    shared prompt blocks of `block_tokens` tokens: one id, one text, in every request that names it)."""

    file: str = Field(min_length=1, description="the JSONL trace, relative to the study file")
    block_tokens: int = Field(512, ge=1, description="tokens per hash id's block (AIPerf's default: 512)")
    time_scale: float = Field(1.0, gt=0, description="multiplies the trace's times: 0.5 replays it twice as fast")
    max_requests: int | None = Field(None, ge=1, description="replay only the first this many requests")


class WorkloadSpec(_Spec):
    """What is sent, how often, in which order."""

    requests: int = Field(20, ge=1, description="measured requests per scenario")
    warmup: int = Field(0, ge=0, description="requests per scenario sent first, kept but not counted")
    max_tokens: int = Field(32, ge=1)
    prompts: Literal["builtin"] | list[str] = "builtin"
    unique_prefix: bool = Field(
        True, description="make every prompt unique so the prompt cache cannot flatter warm requests"
    )
    prompt_order: Literal["same", "continue"] = Field(
        "same", description="same: every scenario is sent the same prompts in the same order, so that scenarios "
        "differ by their settings, not their prompts; continue: the prompts run on across the run's requests")
    idle_gap_s: float = Field(0.0, ge=0, description="pause before each request")
    order: Literal["interleaved", "blocked", "random"] = "interleaved"
    order_seed: int = Field(0, description="seed of the random order")
    mode: Literal["closed", "open"] = Field(
        "closed", description="closed: `concurrency` requests in flight; open: Poisson arrivals at `rate_per_s`"
    )
    concurrency: int | list[int] = Field(1, description="requests in flight at once; a list sweeps the levels")
    rate_per_s: float | list[float] | Literal["sweep"] | None = Field(
        None, description="open loop: mean arrivals per second; a list runs one level per rate, each scenario in "
        "turn; `sweep` finds the rates (a synchronous pass, a throughput pass, then `sweep_rates` rates)")
    sweep_rates: int = Field(6, ge=2, le=50, description="rate levels of a sweep, from the lower of the "
                             "synchronous rate and half the throughput to 1.2 × the throughput")
    level_duration_s: float | None = Field(
        None, gt=0, description="each rate level sends rate × this many measured requests instead of `requests`")
    arrival_seed: int = Field(0, description="seed of the open loop's arrival times")
    client_processes: int = Field(
        1, ge=1, le=64, description="worker processes that send the timed requests (the coordinator keeps the "
        "schedule, probes and cold protocol): more than 1 when one event loop cannot keep up with many streams")
    connection: Literal["new", "reuse"] = Field(
        "reuse", description="reuse: keep connections alive between requests (a closed one is retried); "
        "new: set up a connection for every request (its set-up inside each TTFB)"
    )

    sessions: SessionsSpec | None = Field(None, description="send conversations instead of single prompts")
    trace: TraceSpec | None = Field(None, description="replay a recorded trace instead of the request plan")

    @field_validator("concurrency")
    @classmethod
    def _levels(cls, value: int | list[int]) -> int | list[int]:
        levels = value if isinstance(value, list) else [value]
        if not levels or any(level < 1 for level in levels):
            raise ValueError("concurrency must be 1 or more (or a non-empty list of such levels)")
        return value

    @field_validator("rate_per_s")
    @classmethod
    def _rates(cls, value: Any) -> Any:
        rates = value if isinstance(value, list) else [] if value in (None, "sweep") else [value]
        if isinstance(value, list) and not value:
            raise ValueError("rate_per_s: give at least one rate")
        if any(rate <= 0 for rate in rates):
            raise ValueError("rate_per_s: every rate must be above 0 requests per second")
        return value

    @model_validator(mode="after")
    def _mode(self) -> WorkloadSpec:
        if self.mode == "open" and self.rate_per_s is None:
            raise ValueError("mode: open needs rate_per_s (mean requests per second, a list, or sweep)")
        if self.mode == "closed" and self.rate_levels is not None:
            raise ValueError("a rate list or sweep is an open loop: add mode: open")
        if self.mode == "open" and isinstance(self.concurrency, list):
            raise ValueError("a concurrency sweep is a closed-loop study: use mode: closed")
        if self.sessions is not None and self.trace is not None:
            raise ValueError("give sessions or a trace, not both")
        if (self.sessions is not None or self.trace is not None) and (
                self.mode == "open" or isinstance(self.concurrency, list)):
            raise ValueError("sessions and a trace set their own schedule: leave mode, rate_per_s and concurrency "
                             "at their defaults (sessions.concurrent runs sessions at once)")
        return self

    @property
    def levels(self) -> list[int]:
        """The concurrency levels, in the order they are run."""
        return self.concurrency if isinstance(self.concurrency, list) else [self.concurrency]

    @property
    def rate_levels(self) -> list[float] | Literal["sweep"] | None:
        """The rate levels of a rate sweep (a list, or `sweep` when the run finds them); None: no levels."""
        return self.rate_per_s if isinstance(self.rate_per_s, list) or self.rate_per_s == "sweep" else None
    temperature: float | None = 0.0
    seed: int | None = 42


class SloSpec(_Spec):
    """Per-request service-level objectives: a request meets them when it succeeded within every limit given.

    A rate sweep reports, per level, the share that met them (attainment) and how many per second did
    (goodput); its saturation point is the highest rate whose attainment stayed at `goal` or above.
    """

    ttft_ms: float | None = Field(None, gt=0, description="time to first token, at most")
    tpot_ms: float | None = Field(None, gt=0, description="time per output token after the first, at most")
    e2e_ms: float | None = Field(None, gt=0, description="the whole response, at most")
    goal: float = Field(0.95, gt=0, le=1, description="share of requests that must meet them at a held level")


class GpuSpec(_Spec):
    """The server's GPU, for `latencylab check` when NVML cannot see it (a remote server)."""

    vram_gb: float = Field(gt=0, description="GPU memory as the card is sold: a \"3GB\" card has 3 × 2^30 bytes")
    offload_expected: bool = Field(
        False, description="scenarios that will not fit are what the study measures: a note, not a warning")


class ServerMetricsSpec(_Spec):
    """The server's own metrics (llama-server's /metrics and /slots, vLLM's /metrics), scraped while the run collects."""

    scrape: bool = Field(True, description="scrape them where the server publishes them")
    interval_s: float = Field(0.25, ge=0.05, le=60, description="seconds between two scrapes")


class PrepareSpec(_Spec):
    """Steps before measuring."""

    pull: bool = Field(False, description="Ollama: pull models the server does not have (/api/pull)")


def _label(keep_alive: int | float | str) -> str:
    return f"{keep_alive:g}s" if isinstance(keep_alive, float | int) else keep_alive


class SweepSpec(_Spec):
    """A grid of scenarios: one per keep_alive × idle gap, all on one model."""

    model: str
    keep_alive: list[int | float | str] = Field(min_length=1)
    idle_gap_s: list[float] = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    def scenarios(self) -> list[dict[str, Any]]:
        return [
            {"name": f"ka-{_label(ka)}-gap-{gap:g}s", "model": self.model, "keep_alive": ka, "idle_gap_s": gap,
             "options": self.options}
            for ka in self.keep_alive for gap in self.idle_gap_s
        ]


class StudySpec(_Spec):
    """A whole study: scenarios measured under one workload."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    lang: Literal["en", "es"] = "en"
    backend: BackendKind = "embedded"
    base_url: str | None = Field(None, pattern=r"^https?://")
    engine: EngineSpec = EngineSpec()
    bundled_ollama: BundledOllamaSpec | None = None
    timeouts: Timeouts = Timeouts()
    targets: TargetsSpec = TargetsSpec()
    slo: SloSpec = SloSpec()
    workload: WorkloadSpec = WorkloadSpec()
    prepare: PrepareSpec = PrepareSpec()
    server_metrics: ServerMetricsSpec = ServerMetricsSpec()
    gpu: GpuSpec | None = None
    cold_protocol: Literal["none", "unload_before_each", "first_only"] = "none"
    sweep: SweepSpec | None = None
    hypotheses: list[HypothesisSpec] = Field(default_factory=list, description="what the study sets out to test")
    scenarios: list[ScenarioSpec] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _expand_sweep(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("sweep"), dict):
            try:
                sweep = SweepSpec.model_validate(data["sweep"])
            except ValidationError:
                return data  # reported with its key path by the field validation
            data = {**data, "scenarios": [*data.get("scenarios", []), *sweep.scenarios()]}
        return data

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if not self.scenarios:
            raise ValueError("a study needs at least one scenario (scenarios: or sweep:)")
        names = [s.name for s in self.scenarios]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"scenario names must be unique; repeated: {', '.join(duplicates)}")
        if self.bundled_ollama is not None:
            if self.base_url:
                raise ValueError("bundled_ollama starts an Ollama of its own: remove base_url (or remove "
                                 "bundled_ollama to measure the server at base_url)")
            if not self.uses_bundled_ollama:
                raise ValueError("bundled_ollama serves the scenarios with backend: ollama and no base_url; "
                                 "this study has none")
        for s in self.scenarios:
            kind = self.backend_of(s)
            if s.sessions is not None and self.workload.sessions is None:
                raise ValueError(f"scenario {s.name!r}: sessions replace the workload's sessions; give "
                                 "workload.sessions too (the study then sends conversations)")
            if self.on_bundled_ollama(s) and s.model not in BUNDLED_OLLAMA_MODELS:
                raise ValueError(f"scenario {s.name!r}: the bundled Ollama has no model {s.model!r}; it has "
                                 f"{', '.join(BUNDLED_OLLAMA_MODELS)}")
            if not SERVER_KINDS[kind].started and not (s.base_url or self.base_url or self.on_bundled_ollama(s)):
                hint = " (or bundled_ollama: true, to run it on the bundled Ollama)" if kind == "ollama" else ""
                raise ValueError(f"scenario {s.name!r} uses backend {kind!r} and needs a base_url{hint}")
            if (self.cold_protocol != "none" or s.preload) and not _can_load(kind):
                *some, last = (k for k in SERVER_KINDS if _can_load(k))
                raise ValueError(
                    f"scenario {s.name!r}: a {kind} server cannot be told to load or unload; "
                    f"use backend {', '.join(some)} or {last}, or cold_protocol: none and preload: false"
                )
            if kind == "embedded" and s.keep_alive is not None and keep_alive_seconds(s.keep_alive) == 0:
                raise ValueError(
                    f"scenario {s.name!r}: keep_alive 0 has no equivalent on the embedded engine (its idle sleep "
                    "is at least 1 s); use cold_protocol: unload_before_each to measure cold requests"
                )
        return self

    def backend_of(self, scenario: ScenarioSpec) -> BackendKind:
        return scenario.backend or self.backend

    def sessions_of(self, scenario: ScenarioSpec) -> SessionsSpec | None:
        """The conversations a scenario sends: its own sessions, else the workload's (None: single prompts)."""
        return scenario.sessions or self.workload.sessions

    def base_url_of(self, scenario: ScenarioSpec) -> str | None:
        return scenario.base_url or self.base_url

    def idle_gap_of(self, scenario: ScenarioSpec) -> float:
        return self.workload.idle_gap_s if scenario.idle_gap_s is None else scenario.idle_gap_s

    @property
    def uses_engine(self) -> bool:
        return any(self.backend_of(s) == "embedded" for s in self.scenarios)

    def on_bundled_ollama(self, scenario: ScenarioSpec) -> bool:
        """Whether the bundled Ollama serves this scenario (an Ollama scenario that names no server)."""
        return self.bundled_ollama is not None and self.backend_of(scenario) == "ollama" \
            and not (scenario.base_url or self.base_url)

    @property
    def uses_bundled_ollama(self) -> bool:
        return any(self.on_bundled_ollama(s) for s in self.scenarios)


def _can_load(kind: BackendKind) -> bool:
    """Whether a server of `kind` loads and unloads models on request (its protocol's capability)."""
    return capabilities(kind).load_unload


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `loc` (for "did you mean")."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(current.model_fields) if current else []


def _describe(error: dict[str, Any], source: str) -> str:
    loc = tuple(error["loc"])
    where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[") or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(StudySpec, loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = "unknown key" + (f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}")
    elif "input" in error and error["type"] not in ("missing",):
        message += f" (got {error['input']!r})"
    return f"{source}: {where}: {message}"


def _inline_prompts(data: dict[str, Any], source: str, base_dir: Path) -> dict[str, Any]:
    """Replace `workload.prompts_file` (relative to the study file) by the prompts it holds."""
    workload = data.get("workload")
    if not isinstance(workload, dict) or not isinstance(workload.get("prompts_file"), str):
        return data
    if "prompts" in workload:
        raise StudyError(f"{source}: workload: give prompts or prompts_file, not both")
    file = base_dir / workload["prompts_file"]
    try:
        prompts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"{source}: workload.prompts_file: cannot read {file}: {exc}") from None
    if not prompts:
        raise StudyError(f"{source}: workload.prompts_file: {file} holds no prompt (one per line)")
    rest = {k: v for k, v in workload.items() if k != "prompts_file"}
    return {**data, "workload": {**rest, "prompts": prompts}}


def _resolve_trace(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """`workload.trace.file` relative to the study file made absolute, so that a resumed run finds it."""
    workload = data.get("workload")
    trace = workload.get("trace") if isinstance(workload, dict) else None
    if not isinstance(trace, dict) or not isinstance(trace.get("file"), str) or not trace["file"]:
        return data
    file = str((base_dir / trace["file"]).resolve())
    return {**data, "workload": {**workload, "trace": {**trace, "file": file}}}


def parse_study(data: Any, source: str = "<study>", base_dir: Path | None = None) -> StudySpec:
    """Validate a study already read from YAML; raise `StudyError` listing every problem."""
    if not isinstance(data, dict):
        raise StudyError(f"{source}: a study must be a YAML mapping, got {type(data).__name__}")
    data = _resolve_trace(_inline_prompts(data, source, base_dir or Path.cwd()), base_dir or Path.cwd())
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join("  " + _describe(e, source) for e in exc.errors())
        raise StudyError(f"invalid study ({len(exc.errors())} problem(s)):\n{problems}") from None


def resolve_study_path(name_or_path: str | Path) -> Path:
    """A study file by path, or by name under studies/ (`embedded-demo` → studies/embedded-demo.yaml)."""
    path = Path(name_or_path)
    for candidate in (path, paths.STUDIES_DIR / path, paths.STUDIES_DIR / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(p.stem for p in sorted(paths.STUDIES_DIR.glob("*.yaml")))
    raise StudyError(f"no study file {str(name_or_path)!r}; shipped studies: {shipped}")


def load_study(name_or_path: str | Path) -> tuple[StudySpec, dict[str, Any]]:
    """Read and validate a study file; returns the spec and the raw mapping as given."""
    path = resolve_study_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise StudyError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a study is a YAML file") from None
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None
    return parse_study(raw, str(path), path.parent), raw


def with_base_url(study: StudySpec, base_url: str) -> StudySpec:
    """The study with `base_url` for every scenario that does not name its own (validated again); it replaces
    the bundled Ollama, so one study measures the bundled server or yours."""
    data = study.model_dump(mode="json", exclude={"sweep"})  # its scenarios are already expanded
    return parse_study({**data, "base_url": base_url, "bundled_ollama": None}, "--base-url")
