"""Check a study's plan before it runs: rules on the study and its servers' facts, each giving findings as data.

A finding is a level (error / warning / note), a rule id, the scenario it is about, and the evidence in
numbers; its words live in the catalogs (so the CLI, `check.json` and the report say the same thing). The rules
are pure functions of the facts (`collect.gather` gathers them). What each rule relies on, from Ollama's source
and llama.cpp, is cited where the rule is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from latencylab.core.durations import keep_alive_seconds
from latencylab.core.protocols import full_name, server_kind, unloads_idle
from latencylab.plan.facts import Facts, ModelFacts, ServerFacts, is_local
from latencylab.plan.study import ScenarioSpec, SessionsSpec, StudySpec
from latencylab.plan.workload import BUILTIN_PROMPTS

Level = Literal["error", "warning", "note"]
LEVELS: tuple[Level, ...] = ("error", "warning", "note")
EXIT_CODES: dict[Level, int] = {"note": 0, "warning": 1, "error": 2}  # the worst finding decides
GIB = 2**30
# Ollama sets aside 457 MiB per CUDA GPU before placing any layer (discover/gpu.go `cudaMinimumMemory`).
GPU_RESERVE_BYTES = 457 * 2**20
OLLAMA_NUM_BATCH = 512  # num_batch's default; the compute graph grows with min(num_ctx, num_batch)
KV_BYTES_PER_ELEMENT = 2.0  # f16 K and V, the default of both servers (OLLAMA_KV_CACHE_TYPE=q8_0 halves it)
OLLAMA_KEEP_ALIVE = "5m"  # OLLAMA_KEEP_ALIVE's default (envconfig)
OLLAMA_KEEP_ALIVE_S = keep_alive_seconds(OLLAMA_KEEP_ALIVE)
OLLAMA_MODELS_PER_GPU = 3  # OLLAMA_MAX_LOADED_MODELS' default: 3 × the GPUs, 3 on the CPU (docs/faq)


@dataclass(frozen=True)
class Finding:
    """One thing the check found: what (rule), how bad (level), where (scenario) and the numbers behind it; `run`
    is the label of the run it was checked before, once a report reads it from that run's check.json."""

    rule: str
    level: Level
    scenario: str | None
    evidence: dict[str, Any]
    run: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], run: str | None = None) -> Finding:
        """A finding as check.json holds it."""
        return cls(data["rule"], data["level"], data.get("scenario"), dict(data.get("evidence") or {}), run)

    def to_dict(self) -> dict[str, Any]:
        """check.json's form (a finding there is about its own run: no label)."""
        return {k: v for k, v in asdict(self).items() if k != "run"}


@dataclass(frozen=True)
class Budget:
    """The GPU memory the plan is checked against: declared in the study, or NVML's total on this machine."""

    bytes: int
    source: Literal["study", "nvml"]


@dataclass(frozen=True)
class Need:
    """What a scenario's model needs in memory, as Ollama estimates it (llm/memory.go `EstimateGPULayers`), and
    the share of it the GPU budget holds.

    `size` is Ollama's own figure, the one /api/ps reports as `size`: the weights, the KV cache, the compute
    graph and one spare layer (blk.0 with its KV share). Calibrated on the bundled Ollama 0.5.4 (CPU) with
    SmolLM2-135M at num_ctx 512–8192: within 1.4 % of its /api/ps `size` (README, "A real Ollama in the box")."""

    weights: int
    kv: int
    graph: int
    spare_layer: int
    num_ctx: int
    share: float | None  # None without a budget

    @property
    def size(self) -> int:
        return self.weights + self.kv + self.graph + self.spare_layer

    @property
    def on_gpu(self) -> int:
        """What the GPU must hold for the whole model: `size` and the CUDA reserve."""
        return self.size + GPU_RESERVE_BYTES


def graph_bytes(facts: ModelFacts, num_ctx: int, num_batch: int = OLLAMA_NUM_BATCH) -> int:
    """Ollama's compute-graph estimate with every layer in one place (llm/ggml.go `GraphSize`, `fullOffload` of
    the llama architecture; other architectures have formulas of their own of the same order there):
    4 · b · max(1 + 4·E + ctx·(1 + H), E + vocab) bytes, b = min(ctx, num_batch). Without the vocabulary size,
    the context term alone; 0 without the embedding length and head count."""
    e, h = facts.embedding_length, facts.head_count
    if not (e and h):
        return 0
    batch = min(num_ctx, num_batch)
    return 4 * batch * max(1 + 4 * e + num_ctx * (1 + h), e + (facts.vocab_size or 0))


def ollama_default_num_ctx(version: str | None, vram_bytes: int) -> int:
    """The context Ollama gives a request that sets no num_ctx (and no OLLAMA_CONTEXT_LENGTH), by server version
    (release notes): 2048 before 0.6.7, 4096 from 0.6.7, and from 0.15.5 by total VRAM (routes.go `Serve`):
    4096 below 24 GiB, 32768 up to 48 GiB, 262144 above. An unknown version is taken as a recent one."""
    release = version_tuple(version)
    if release is not None and release < (0, 6, 7):
        return 2048
    if release is not None and release < (0, 15, 5):
        return 4096
    return 262144 if vram_bytes >= 47 * GIB else 32768 if vram_bytes >= 23 * GIB else 4096


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    """`0.5.4-ipexllm-20250407` → (0, 5, 4); None for what is no version number."""
    found = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return tuple(int(part or 0) for part in found.groups()) if found else None


@dataclass
class Plan:
    """A study, the facts of its servers and what the check derived from them (the rules' only input)."""

    study: StudySpec
    facts: Facts | None
    pulls: dict[str, tuple[str | None, int | None]] = field(default_factory=dict)  # model → probe result

    @property
    def budget(self) -> Budget | None:
        if self.study.gpu is not None:
            return Budget(int(self.study.gpu.vram_gb * GIB), "study")
        local = any(is_local(self.study.base_url_of(s)) for s in self.study.scenarios)
        if self.facts and self.facts.gpu and local:
            return Budget(self.facts.gpu.total_bytes, "nvml")
        return None

    def server(self, s: ScenarioSpec) -> ServerFacts | None:
        kind = self.study.backend_of(s)
        if self.facts is None:
            return None
        return self.facts.server(kind, None if kind == "embedded" else self.study.base_url_of(s))

    def model(self, s: ScenarioSpec) -> ModelFacts | None:
        server = self.server(s)
        return server.model(s.model) if server else None

    def num_ctx(self, s: ScenarioSpec) -> int | None:
        """The context the server will give the scenario's runner (Ollama clamps it to the trained one)."""
        kind, facts = self.study.backend_of(s), self.model(s)
        if "num_ctx" in s.options:
            wanted = int(s.options["num_ctx"])
        elif kind == "embedded":
            wanted = self.study.engine.ctx_size
        elif kind == "ollama":
            server = self.server(s)
            loaded = server.loaded_model(s.model) if server else None
            # the server's default as it applied it (/api/ps, v0.10.0 on; OLLAMA_CONTEXT_LENGTH included), unless
            # another client loaded it with a num_ctx of its own: still what the server has, not a guess
            if loaded and loaded.context_length:
                return loaded.context_length
            wanted = ollama_default_num_ctx(server.version if server else None,
                                            self.budget.bytes if self.budget else 0)
        else:
            server = self.server(s)
            wanted = server.props.get("n_ctx") if server else None
        if wanted and facts and facts.context_length and kind == "ollama":
            return min(wanted, facts.context_length)
        return wanted

    def need(self, s: ScenarioSpec) -> Need | None:
        facts, num_ctx = self.model(s), self.num_ctx(s)
        per_token = facts.kv_bytes_per_token(KV_BYTES_PER_ELEMENT) if facts else None
        if facts is None or facts.size_bytes is None or per_token is None or not num_ctx or not facts.block_count:
            return None
        weights, kv = facts.size_bytes, int(per_token * num_ctx)
        graph = graph_bytes(facts, num_ctx, int(s.options.get("num_batch", OLLAMA_NUM_BATCH)))
        spare = (weights + kv) // facts.block_count  # one block and its KV share: the file's average block
        share = None
        if self.budget:  # layers go on the GPU while the reserve, the graph and the layers so far fit
            share = min(1.0, max(0, self.budget.bytes - GPU_RESERVE_BYTES - graph) / (weights + kv + spare))
        return Need(weights, kv, graph, spare, num_ctx, share)

    def runner(self, s: ScenarioSpec) -> tuple[Any, ...]:
        """What identifies a runner: the model and its runner options (num_gpu −1 never reloads)."""
        options = dict(s.runner_options)
        if options.get("num_gpu", 0) < 0:
            del options["num_gpu"]
        options["num_ctx"] = self.num_ctx(s)
        return (self.study.backend_of(s), self.study.base_url_of(s), full_name(s.model), tuple(sorted(options.items())))


def _gb(n: int | None) -> float | None:
    return None if n is None else round(n / GIB, 2)


def rule_servers(plan: Plan) -> Iterator[Finding]:
    """A server the study names that does not answer: nothing else about it can be checked."""
    for server in plan.facts.servers if plan.facts else []:
        if not server.reachable:
            yield Finding("server-unreachable", "error", None,
                          {"kind": server.kind, "server": server.base_url, "error": server.error})


def rule_models(plan: Plan) -> Iterator[Finding]:
    """A model the server lacks: pulled if the study may pull and the registry has the tag, else the run stops."""
    seen: set[tuple[str, str]] = set()
    for s in plan.study.scenarios:
        server = plan.server(s)
        name = full_name(s.model) if server and server.kind == "ollama" else s.model
        if server is None or not server.reachable or name not in server.missing or (server.kind, name) in seen:
            continue
        seen.add((server.kind, name))
        evidence = {"model": s.model, "server": server.base_url or "embedded", "kind": server.kind}
        if server.kind == "ollama" and plan.study.prepare.pull:
            error, size = plan.pulls.get(name, (None, None))
            if error:
                library = s.model.split(":", 1)[0]
                yield Finding("tag-unavailable", "error", s.name,
                              {**evidence, "error": error, "tags_url": f"https://ollama.com/library/{library}/tags"})
            else:
                yield Finding("will-pull", "note", s.name, {**evidence, "size_gb": _gb(size)})
        else:
            yield Finding("model-missing", "error", s.name, evidence)


def rule_num_gpu(plan: Plan) -> Iterator[Finding]:
    """`num_gpu` is a count of layers, not of GPUs (api/types.go `Runner.NumGPU`; llama-server `-ngl`)."""
    for s in plan.study.scenarios:
        if "num_gpu" not in s.options or int(s.options["num_gpu"]) < 0:
            continue
        n, facts = int(s.options["num_gpu"]), plan.model(s)
        layers = facts.layers if facts else None
        if n == 0:
            yield Finding("cpu-only", "note", s.name, {"num_gpu": 0})
        elif layers is None:
            yield Finding("num-gpu-unknown", "warning", s.name, {"num_gpu": n})
        elif n < layers:
            # llm/memory.go stops placing layers on the GPU once it has placed num_gpu of them.
            yield Finding("num-gpu-layers", "warning", s.name,
                          {"num_gpu": n, "layers": layers, "cpu_layers": layers - n,
                           "gpu_pct": round(100 * n / layers)})


def rule_memory(plan: Plan) -> Iterator[Finding]:
    """Weights + KV cache + margin against the GPU's memory: whole on the GPU, or the share that fits."""
    budget = plan.budget
    scenarios = [s for s in plan.study.scenarios if plan.study.backend_of(s) != "openai"]
    if budget is None:
        if scenarios and any(plan.study.backend_of(s) != "embedded" for s in scenarios):
            yield Finding("no-gpu-budget", "note", None, {})
        return
    expected = bool(plan.study.gpu and plan.study.gpu.offload_expected)
    for s in scenarios:
        need = plan.need(s)
        if need is None:
            server = plan.server(s)
            if server is None or (server.reachable and s.model not in server.missing
                                  and full_name(s.model) not in server.missing):
                yield Finding("no-model-facts", "note", s.name, {"model": s.model})
            continue
        evidence = {"model": s.model, "num_ctx": need.num_ctx, "weights_gb": _gb(need.weights),
                    "kv_gb": _gb(need.kv), "graph_gb": _gb(need.graph),
                    "margin_gb": _gb(need.spare_layer + GPU_RESERVE_BYTES), "need_gb": _gb(need.on_gpu),
                    "budget_gb": _gb(budget.bytes), "budget_source": budget.source,
                    "gpu_pct": math.floor(100 * (need.share or 0))}
        if need.share is not None and need.share >= 1:
            yield Finding("memory-fits", "note", s.name, evidence)
        else:
            yield Finding("memory-offload-expected", "note", s.name, evidence) if expected else \
                Finding("memory-partial", "warning", s.name, evidence)


def rule_thrashing(plan: Plan) -> Iterator[Finding]:
    """Interleaved scenarios whose runners cannot all stay resident: every switch is a load (sched.go)."""
    study = plan.study
    if study.workload.order == "blocked" or study.cold_protocol == "unload_before_each":
        return
    by_server: dict[tuple[str, str | None], list[ScenarioSpec]] = {}
    for s in study.scenarios:
        if server_kind(study.backend_of(s)).resident_limit:  # a server whose bound the check knows
            by_server.setdefault((study.backend_of(s), study.base_url_of(s)), []).append(s)
    for (kind, _url), scenarios in by_server.items():
        if kind == "embedded":  # one served model per scenario (embedded.served_model_id); the router keeps models_max
            if len(scenarios) > study.engine.models_max:
                yield Finding("thrashing-count", "warning", None,
                              {"scenarios": [s.name for s in scenarios], "resident_max": study.engine.models_max,
                               "setting": server_kind(kind).resident_limit})
            continue
        runners: dict[tuple[Any, ...], list[ScenarioSpec]] = {}
        for s in scenarios:
            runners.setdefault(plan.runner(s), []).append(s)
        if len(runners) < 2:
            continue
        models = [key[2] for key in runners]
        names = [s.name for s in scenarios]
        shared = sorted({m for m in models if models.count(m) > 1})
        gpus = plan.facts.gpu.count if plan.facts and plan.facts.gpu and is_local(_url) else 1
        needs = [plan.need(group[0]) for group in runners.values()]
        if shared:
            yield Finding("thrashing-options", "warning", None, {"scenarios": names, "models": shared})
        elif len(runners) > OLLAMA_MODELS_PER_GPU * gpus:
            yield Finding("thrashing-count", "warning", None,
                          {"scenarios": names, "resident_max": OLLAMA_MODELS_PER_GPU * gpus,
                           "setting": server_kind(kind).resident_limit})
        else:  # the models whose needs are unknown can only add to the known ones
            total = sum(n.size for n in needs if n) + GPU_RESERVE_BYTES
            if plan.budget and total > plan.budget.bytes:
                yield Finding("thrashing-memory", "warning", None,
                              {"scenarios": names, "models": models, "together_gb": _gb(total),
                               "budget_gb": _gb(plan.budget.bytes)})
            elif not plan.budget or not all(needs):
                yield Finding("interleaved-unknown", "note", None, {"scenarios": names, "models": models})


def server_keep_alive_s(study: StudySpec, s: ScenarioSpec) -> float:
    """The keep_alive an Ollama server gives a request without one: OLLAMA_KEEP_ALIVE, which the study sets for
    the bundled Ollama (an Ollama scenario that names no server of its own), else Ollama's default."""
    bundled = study.bundled_ollama
    if bundled is not None and bundled.keep_alive is not None and not s.base_url:
        return keep_alive_seconds(bundled.keep_alive)
    return OLLAMA_KEEP_ALIVE_S


def rule_keep_alive(plan: Plan) -> Iterator[Finding]:
    """A keep_alive shorter than the time between a scenario's requests: each of them starts cold."""
    study = plan.study
    if study.cold_protocol == "unload_before_each":
        return
    round_s = sum(study.idle_gap_of(s) for s in study.scenarios)  # interleaved: every scenario's gap in between
    for s in study.scenarios:
        if not unloads_idle(study.backend_of(s), s.keep_alive is not None):
            continue  # the embedded engine has no idle sleep unless the scenario asks for one
        keep = server_keep_alive_s(study, s) if s.keep_alive is None else keep_alive_seconds(s.keep_alive)
        gap = study.idle_gap_of(s) if study.workload.order == "blocked" else round_s
        if 0 < keep < gap:
            yield Finding("keep-alive-gap", "warning" if s.keep_alive is None else "note", s.name,
                          {"keep_alive_s": keep, "gap_s": gap, "keep_alive_source":
                           "server default" if s.keep_alive is None else "scenario"})


def rule_num_thread(plan: Plan) -> Iterator[Finding]:
    """More threads than this machine's cores (only known for a server on this machine)."""
    cores = plan.facts.host.cores_logical if plan.facts else None
    for s in plan.study.scenarios:
        if "num_thread" in s.options and cores and is_local(plan.study.base_url_of(s)) \
                and int(s.options["num_thread"]) > cores:
            yield Finding("num-thread", "warning", s.name, {"num_thread": int(s.options["num_thread"]), "cores": cores})


def rule_num_ctx(plan: Plan) -> Iterator[Finding]:
    """A context above the model's trained one: Ollama clamps it (sched.go), llama-server runs it untrained."""
    for s in plan.study.scenarios:
        facts = plan.model(s)
        trained = facts.context_length if facts else None
        if "num_ctx" in s.options and trained and int(s.options["num_ctx"]) > trained:
            yield Finding("num-ctx-trained", "warning", s.name,
                          {"num_ctx": int(s.options["num_ctx"]), "trained": facts.context_length,
                           "kind": plan.study.backend_of(s)})


def rule_gpu_others(plan: Plan) -> Iterator[Finding]:
    """Other processes holding memory on the local GPU: named; a warning for each scenario whose model would fit in
    the GPU's free memory only without them."""
    gpu = plan.facts.gpu if plan.facts else None
    if gpu is None or not gpu.others or plan.budget is None or plan.budget.source != "nvml":
        return
    held = sum(p.used_bytes or 0 for p in gpu.others)
    who = [f"{p.name} ({p.pid})" for p in gpu.others]
    yield Finding("gpu-others", "note", None, {"others_gb": _gb(held), "who": who, "free_gb": _gb(gpu.free_bytes)})
    for s in plan.study.scenarios:
        need = plan.need(s)
        if need is None or gpu.free_bytes is None:
            continue
        if gpu.free_bytes < need.on_gpu <= gpu.free_bytes + held:
            yield Finding("gpu-others-crowd", "warning", s.name, {
                "model": s.model, "need_gb": _gb(need.on_gpu), "free_gb": _gb(gpu.free_bytes),
                "others_gb": _gb(held), "who": who})


CHARS_PER_TOKEN = 4.0  # an English text's characters per token: the check's estimate of a message's tokens
MESSAGE_FRAME_TOKENS = 8  # the chat template's tokens around each message (ChatML)


def conversation_tokens(study: StudySpec, sessions: SessionsSpec | None) -> list[int]:
    """The estimated prompt tokens of each planned turn of a session of `sessions`, from its messages alone: the
    system prompt, then per turn the user message (the prompts' mean length) and the answer before it at
    `max_tokens` (its most): about four characters a token, an estimate that each model's tokeniser moves either
    way."""
    w = study.workload
    if sessions is None:
        return []
    prompts = BUILTIN_PROMPTS if w.prompts == "builtin" else tuple(w.prompts)
    user = sum(len(p) for p in prompts) / len(prompts) / CHARS_PER_TOKEN + MESSAGE_FRAME_TOKENS
    system = len(sessions.system_prompt) / CHARS_PER_TOKEN + MESSAGE_FRAME_TOKENS if sessions.system_prompt else 0.0
    return [round(system + (turn + 1) * user + turn * (w.max_tokens + MESSAGE_FRAME_TOKENS))
            for turn in range(sessions.turns)]


def rule_conversation(plan: Plan) -> Iterator[Finding]:
    """A planned conversation that will outgrow its context (the server then cuts the history, and the cache no
    longer matches), and think times that outlast the keep_alive (each turn after one pays a load)."""
    study = plan.study
    for s in study.scenarios:
        sessions = study.sessions_of(s)
        if sessions is None:
            continue
        tokens = conversation_tokens(study, sessions)
        num_ctx = plan.num_ctx(s)
        if num_ctx and tokens[-1] > num_ctx:
            turn = next(t for t, n in enumerate(tokens) if n > num_ctx)
            needed = 2 ** math.ceil(math.log2(tokens[-1] + study.workload.max_tokens))
            facts = plan.model(s)
            per_token = facts.kv_bytes_per_token(KV_BYTES_PER_ELEMENT) if facts else None
            yield Finding("conversation-overflow", "warning", s.name,
                          {"tokens": tokens[-1], "num_ctx": num_ctx, "turn": turn, "needed": needed,
                           "kv_gb": _gb(int(per_token * needed)) if per_token else None})
        if unloads_idle(study.backend_of(s), s.keep_alive is not None):
            keep = server_keep_alive_s(study, s) if s.keep_alive is None else keep_alive_seconds(s.keep_alive)
            if 0 < keep < sessions.think_max_s:
                yield Finding("think-keep-alive", "warning", s.name,
                              {"think_s": sessions.think_max_s, "keep_alive_s": keep})


RULES: tuple[Callable[[Plan], Iterator[Finding]], ...] = (
    rule_servers, rule_models, rule_num_gpu, rule_memory, rule_gpu_others, rule_thrashing, rule_keep_alive,
    rule_num_thread, rule_num_ctx, rule_conversation)


def evaluate(plan: Plan) -> list[Finding]:
    """Every rule's findings, errors first, then warnings, then notes (each in study order)."""
    found = [f for rule in RULES for f in rule(plan)]
    return sorted(found, key=lambda f: LEVELS.index(f.level))


@dataclass(frozen=True)
class CheckResult:
    """The findings of one check and the facts they rest on."""

    findings: list[Finding]
    facts: Facts | None
    budget: Budget | None

    @property
    def exit_code(self) -> int:
        return max((EXIT_CODES[f.level] for f in self.findings), default=0)

    def counts(self) -> dict[Level, int]:
        return {level: sum(f.level == level for f in self.findings) for level in LEVELS}

    def to_dict(self, with_facts: bool = True) -> dict[str, Any]:
        """The JSON form (`--json`, `check.json`): findings as data, the budget, and the facts they rest on."""
        data = {"exit_code": self.exit_code, "counts": self.counts(),
                "budget": asdict(self.budget) if self.budget else None,
                "findings": [f.to_dict() for f in self.findings]}
        if with_facts:
            data["facts"] = self.facts.model_dump(mode="json") if self.facts else None
        return data


MEMORY_RULES = ("memory-fits", "memory-partial", "memory-offload-expected")


@dataclass(frozen=True)
class Confirmation:
    """A memory prediction against what the run measured (`gpu_share`: size_vram / size from /api/ps)."""

    scenario: str
    predicted_pct: int
    measured_pct: float
    verdict: Literal["confirmed", "refuted"]


def confirm(findings: list[Finding] | list[dict[str, Any]], measured_share: dict[str, float],
            tolerance_pct: float = 10.0) -> list[Confirmation]:
    """Each scenario's predicted share on the GPU (memory, capped by num_gpu's layers) against its median measured
    share; the findings may be `Finding`s or check.json's dicts."""
    given = [Finding.from_dict(f) if isinstance(f, dict) else f for f in findings]
    caps = {f.scenario: f.evidence.get("gpu_pct", 0) for f in given if f.rule in ("num-gpu-layers", "cpu-only")}
    out = []
    for f in given:
        if f.rule not in MEMORY_RULES or f.scenario not in measured_share:
            continue
        predicted = min(f.evidence["gpu_pct"], caps.get(f.scenario, 100))
        measured = 100 * measured_share[f.scenario]
        whole = f.rule == "memory-fits" and predicted == 100
        agrees = whole == (measured >= 99.5) and (whole or abs(measured - predicted) <= tolerance_pct)
        out.append(Confirmation(f.scenario, predicted, round(measured, 1), "confirmed" if agrees else "refuted"))
    return out
