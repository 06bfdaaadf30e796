"""An Ollama test double: a test double written from shared/reference/ollama-api.md, not Ollama.

It simulates what a latency client can observe (the reference's §7 checklist): pulled models,
loads that delay the first byte, `keep_alive` parsed like `api.Duration` (§1.2), idle expiry,
reloads when runner options change (§3.3), NDJSON streams of `/api/generate` and `/api/chat` with
`omitempty` metrics in integer ns (§1.5, §1.6), load-only and unload requests (§1.4), `/api/ps`
(§2), the errors of §1.7 and a bounded load queue that answers 503. Standard library only; every
wait is bounded, and the server stops by itself after `lifetime_s` if a test forgets to.

With `vram_bytes` set it also models memory (§3.4): a model needs its weights plus a KV cache for its
`num_ctx` (llm/memory.go's formula, from the model's layer and head counts); it is partially offloaded
when that does not fit (or when `num_gpu` caps its layers); loading another model evicts idle ones
while they do not fit together or `max_loaded_models` (OLLAMA_MAX_LOADED_MODELS) is reached. Loads take
longer for bigger models and decoding slows with the share on the CPU. `/api/show` and `/api/version`
answer as §2 says. It is a test double: its numbers prove that latencylab's rules and analysis find
what was put in, never how fast any real server or GPU is.

Checked against a real Ollama (the bundled 0.5.4, tests/integration/test_real_ollama.py, issue 18); where they
disagreed the double now follows the real server:
- the first token is sampled from the prompt's logits: it comes right after prompt evaluation (TTFT ≈
  load_duration + prompt_eval_duration) and `eval_duration` covers the `eval_count − 1` decode steps after it
  (it slept one token delay more before);
- chat with a model the server lacks: 404 `model "x" not found, try pulling it first` (generate keeps
  `model 'x' not found`).
Its memory model follows llm/memory.go as the real server's `size` confirmed it (weights and KV cache, a spare
layer, the compute graph). Still only the double's: the GPU (VRAM budget, partial offload, `size_vram` > 0),
`context_length` in `/api/ps` (newer servers, v0.10.0 on; 0.5.4 has none), `prompt_eval_cached_count` with
`reports_cached` (`current_ollama()`: a server built from the commit named there), the 503 of a full queue, durations in
nanoseconds (0.5.4 reports prompt and eval durations in whole milliseconds), and a pull that succeeds.
Not modelled: two tags of one GGUF share one runner on the real server (it keys runners by blob).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from .loopback import LoopbackServer

FOREVER_NS = 2**63 - 1  # math.MaxInt64 ns, about 292 years
CUDA_MINIMUM_BYTES = 457 * 2**20  # set aside per GPU before any layer (discover/gpu.go cudaMinimumMemory)
RUNNER_DEFAULTS = {"num_ctx": None, "num_batch": 512, "num_gpu": -1, "num_thread": 0,
                   "main_gpu": 0, "use_mmap": None}  # changing any of these reloads the model
INT_OPTIONS = {"num_ctx", "num_batch", "num_gpu", "num_thread", "main_gpu", "num_predict", "seed",
               "top_k", "num_keep", "repeat_last_n"}
METRICS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
           "eval_count", "eval_duration")
BUSY = "server busy, please try again.  maximum pending requests exceeded"  # two spaces, as in Go
_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
          "m": 60 * 10**9, "h": 3600 * 10**9}
_NAME = re.compile(r"^[A-Za-z0-9_][\w.\-]*(/[\w.\-]+)*(:[\w.\-]+)?$")


class HTTPError(Exception):
    """An error answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_go_duration(text: str) -> int:
    """Go's `time.ParseDuration` in ns; errors are ValueErrors carrying Go's message."""
    q = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731 (close enough to Go's quote)
    neg, total = text[:1] == "-", 0
    s = text[1:] if text[:1] in ("-", "+") else text
    if s == "0":
        return 0
    while True:
        m = re.match(r"(\d*)(?:\.(\d*))?([^\d.]*)", s)
        whole, frac, unit = m.group(1), m.group(2) or "", m.group(3)
        if not whole and not frac:
            raise ValueError(f"time: invalid duration {q(text)}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {q(text)}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {q(unit)} in duration {q(text)}")
        s, scale = s[m.end():], _UNITS[unit]
        total += int(whole or 0) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        if not s:
            return -total if neg else total


def parse_keep_alive(value: Any) -> int | None:
    """`keep_alive` as `api.Duration.UnmarshalJSON` reads it: ns, FOREVER_NS, or None when unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise HTTPError(400, "Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        return FOREVER_NS if value < 0 else int(value * 10**9)  # a number is seconds
    if isinstance(value, str):
        try:
            ns = parse_go_duration(value)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        return FOREVER_NS if ns < 0 else ns
    go_type = "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"
    raise HTTPError(400, f"Unsupported type: '{go_type}'")


def parse_options(raw: Any) -> dict[str, Any]:
    """`Options.FromMap`: unknown keys ignored, floats truncated, a wrong type is a 500."""
    out = dict(raw or {})
    for key in INT_OPTIONS & out.keys():
        if isinstance(out[key], bool) or not isinstance(out[key], (int, float)):
            raise HTTPError(500, f'option "{key}" must be of type integer')
        out[key] = int(out[key])
    return out


def rfc3339(t_ns: int, local: bool = False) -> str:
    """Go's RFC 3339 with nanoseconds, trailing zeros trimmed; `Z` for UTC, else `±hh:mm`."""
    dt = datetime.fromtimestamp(t_ns // 10**9, UTC)
    dt = dt.astimezone() if local else dt
    frac, offset = f"{t_ns % 10**9:09d}".rstrip("0"), dt.strftime("%z")
    zone = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + zone


def full_name(model: str) -> str:
    """The display form `name:tag` (the tag defaults to `latest`)."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def _spec(value: ModelSpec | Mapping[str, Any] | int) -> ModelSpec:
    """A ModelSpec from itself, its keywords, or a size in bytes."""
    return value if isinstance(value, ModelSpec) else ModelSpec(size=value) if isinstance(value, int) \
        else ModelSpec(**value)


def digest(name: str) -> str:
    """A stable stand-in for a model's sha256 digest."""
    return hashlib.sha256(name.encode()).hexdigest()


def _part(chat: bool, text: str) -> dict[str, Any]:
    """A chunk's text: `message` (chat) or `response` (generate)."""
    return {"message": {"role": "assistant", "content": text}} if chat else {"response": text}


@dataclass
class ModelSpec:
    """A pulled model: its weights (`size`) and the facts `/api/show` gives; `size_vram` forces an offload."""

    size: int = 2_000_000_000
    size_vram: int | None = None  # without a VRAM budget: the GPU's part (None: all of it)
    context_length: int = 8192  # the trained context; num_ctx is clamped to it
    family: str = "llama"
    block_count: int = 32
    embedding_length: int = 3072
    head_count: int = 32
    head_count_kv: int = 32
    parameter_size: str = "3.8B"
    quantization_level: str = "Q4_0"

    @property
    def layers(self) -> int:
        """What Ollama offloads: the blocks plus the output layer."""
        return self.block_count + 1

    def kv_bytes(self, num_ctx: int) -> int:
        """f16 K and V for every layer and token of context (llm/memory.go)."""
        return 2 * num_ctx * self.block_count * 2 * (self.embedding_length // self.head_count) * self.head_count_kv

    def graph_bytes(self, num_ctx: int, num_batch: int = 512) -> int:
        """The compute graph, llm/ggml.go `GraphSize` (llama's full offload; this double has no vocabulary)."""
        return 4 * min(num_ctx, num_batch) * (1 + 4 * self.embedding_length + num_ctx * (1 + self.head_count))

    def model_info(self) -> dict[str, Any]:
        """`/api/show`'s `model_info`: GGUF keys prefixed by the architecture."""
        a = self.family
        return {"general.architecture": a, f"{a}.block_count": self.block_count,
                f"{a}.context_length": self.context_length, f"{a}.embedding_length": self.embedding_length,
                f"{a}.attention.head_count": self.head_count, f"{a}.attention.head_count_kv": self.head_count_kv}

    def details(self) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": self.family, "families": [self.family],
                "parameter_size": self.parameter_size, "quantization_level": self.quantization_level}


@dataclass
class Runner:
    """A loaded model instance."""

    name: str
    spec: ModelSpec
    opts: dict[str, Any]
    session_ns: int  # its keep_alive
    sem: threading.Semaphore  # num_parallel slots
    refs: int = 0
    expires: float | None = None  # wall-clock s; set when it goes idle, never while busy
    cache: list[str] = field(default_factory=list)  # the prompt cache (llama-server's slot)
    size: int = 0  # weights + KV cache, as /api/ps reports it
    size_vram: int = 0  # the part on the GPU

    @property
    def cpu_share(self) -> float:
        return 1 - self.size_vram / self.size if self.size else 0.0


@dataclass
class Received:
    """One request as the double received it (the body decoded from JSON when it parses)."""

    method: str
    path: str
    body: Any


@dataclass(kw_only=True)
class OllamaDouble:
    """The server's state and the HTTP server; `with OllamaDouble(models={...}) as server:`.

    `models` maps `name[:tag]` to a ModelSpec, its keywords, or a size in bytes. Tests inspect
    `received` / `bodies()` (requests), `finals` (done objects sent) and `loads` (cold, reload).
    """

    models: Mapping[str, ModelSpec | Mapping[str, Any] | int]
    load_delay_s: float = 0.05  # added before a cold or reloading request's first byte
    token_delay_s: float = 0.005  # per generated token
    prompt_token_delay_s: float = 0.0005  # per prompt token not in the runner's cache
    tokens: Sequence[str] = ("The", " sky", " is", " blue", ".")  # one per chunk
    text_in_final: bool = False  # the last token rides in the done chunk itself
    default_keep_alive: str = "5m"  # OLLAMA_KEEP_ALIVE
    default_num_ctx: int = 4096
    num_parallel: int = 1  # OLLAMA_NUM_PARALLEL
    max_queue: int = 512  # OLLAMA_MAX_QUEUE: requests waiting for a load before a 503
    fail_after_tokens: int | None = None  # then a last `{"error"}` line (at 0: an HTTP 500)
    fail_message: str = "an error was encountered while running the model: unexpected EOF"
    unload_delay_s: float = 0.0  # an expired runner stays in /api/ps ("Stopping…") this long
    registry: Mapping[str, ModelSpec | Mapping[str, Any] | int] = field(default_factory=dict)  # what /api/pull has
    request_timeout_s: float = 10.0  # bounds every wait and socket read
    lifetime_s: float = 120.0
    vram_bytes: int | None = None  # the GPU's memory; None: memory is not modelled
    gpu_reserve_bytes: int = CUDA_MINIMUM_BYTES
    max_loaded_models: int = 3  # OLLAMA_MAX_LOADED_MODELS (its default: 3 × 1 GPU)
    load_s_per_gb: float = 0.0  # added to load_delay_s per 10^9 bytes of weights
    cpu_decode_penalty: float = 3.0  # a token takes (1 + this × the CPU share) × token_delay_s
    version: str = "0.33.0"
    # A current Ollama's own cache count: `prompt_eval_cached_count` on the final chunk, `omitempty` (the tokens
    # its runner served from the KV cache; prompt_eval_count still counts them). From ollama/ollama commit
    # 6e65d95ef "server: add cached eval metric to response" (api/types.go `Metrics.PromptEvalCachedCount`,
    # server/routes.go GenerateHandler and ChatHandler, llm/llama_server.go `timings.cache_n`), on the branch
    # brucemacd/cache-metrics: no release tag through v0.33.0-rc2 holds it. Off: the bundled 0.5.4's behaviour.
    reports_cached: bool = False

    def __post_init__(self) -> None:
        self.models = {full_name(k): _spec(v) for k, v in self.models.items()}
        self.default_keep_ns = parse_keep_alive(self.default_keep_alive)
        self.registry = {full_name(k): _spec(v) for k, v in self.registry.items()}
        self.loaded: dict[str, Runner] = {}
        self.received: list[Received] = []
        self.finals: list[dict[str, Any]] = []
        self.loads: list[tuple[str, str]] = []
        self.evictions: list[str] = []  # models unloaded to make room for another
        self.cond = threading.Condition()
        self._loading, self._queued = False, 0
        self._server: LoopbackServer | None = None

    def __enter__(self) -> OllamaDouble:
        handler = type("Handler", (_Handler,), {"double": self, "timeout": self.request_timeout_s})
        self._server = LoopbackServer(handler, self.lifetime_s, expire=self.close)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._server:
            self._server.close()

    @property
    def base_url(self) -> str:
        assert self._server, "use the double as a context manager"
        return self._server.base_url

    def pulled(self) -> list[tuple[str, ModelSpec]]:
        """The models the server has (what `/api/tags` lists)."""
        with self.cond:
            return list(self.models.items())

    def bodies(self, path: str | None = None) -> list[Any]:
        """The bodies received, optionally only those sent to `path`."""
        return [r.body for r in list(self.received) if path is None or r.path == path]

    def wait_idle(self, timeout_s: float = 1.0) -> bool:
        """Wait until no runner is in use: Ollama releases one just after writing the done chunk."""
        with self.cond:
            return self.cond.wait_for(lambda: all(r.refs == 0 for r in self.loaded.values()),
                                      timeout_s)

    # -- the scheduler (server/sched.go) ---------------------------------------------------------
    def _stopping(self, r: Runner) -> bool:
        return r.refs == 0 and r.expires is not None and r.expires <= time.time()

    def _purge(self) -> None:
        for name, r in list(self.loaded.items()):  # unloaded once the unload delay has passed
            if self._stopping(r) and r.expires + self.unload_delay_s <= time.time():
                del self.loaded[name]

    def _usable(self, r: Runner | None, want: dict[str, Any]) -> bool:
        """A loaded, not stopping runner whose runner options match (num_gpu -1 never reloads)."""
        return r is not None and not self._stopping(r) and all(
            r.opts[k] == want[k] for k in RUNNER_DEFAULTS if not (k == "num_gpu" and want[k] < 0))

    def _take(self, r: Runner, keep_ns: int | None) -> Runner:
        r.refs += 1
        if keep_ns is not None:  # absent keep_alive keeps the runner's duration
            r.session_ns = keep_ns
        return r

    def _wait(self, predicate: Callable[[], bool], deadline: float) -> bool:
        return self.cond.wait_for(predicate, max(0.0, deadline - time.monotonic()))

    def acquire(self, name: str, options: dict[str, Any], keep_ns: int | None) -> Runner:
        """`getRunner`: the fast path to a usable runner, else the serial load queue (or a 503)."""
        spec, deadline = self.models[name], time.monotonic() + self.request_timeout_s
        want = {**RUNNER_DEFAULTS, "num_ctx": self.default_num_ctx,
                **{k: v for k, v in options.items() if k in RUNNER_DEFAULTS}}
        want["num_ctx"] = min(want["num_ctx"], spec.context_length)
        with self.cond:
            self._purge()
            if self._usable(self.loaded.get(name), want):
                return self._take(self.loaded[name], keep_ns)
            if self._loading or self._queued:  # processPending is busy: wait in pendingReqCh
                if self._queued >= self.max_queue:
                    raise HTTPError(503, BUSY)
                self._queued += 1
                try:
                    if not self._wait(lambda: not self._loading, deadline):
                        raise HTTPError(500, "test double: timed out in the load queue")
                finally:
                    self._queued -= 1
            self._loading = True
        try:
            with self.cond:
                self._purge()
                old = self.loaded.get(name)
                if self._usable(old, want):  # loaded by the request ahead in the queue
                    return self._take(old, keep_ns)
                self.loads.append((name, "reload" if old and not self._stopping(old) else "cold"))
                if old:  # a reload first lets the old runner's requests finish
                    self._wait(lambda: old.refs <= 0, deadline)
                    del self.loaded[name]
                size, size_vram = self._place(name, spec, want)
            time.sleep(self.load_delay_s + self.load_s_per_gb * spec.size / 1e9)
            keep = self.default_keep_ns if keep_ns is None else keep_ns
            r = Runner(name, spec, want, keep, threading.Semaphore(self.num_parallel), size=size, size_vram=size_vram)
            with self.cond:
                self.loaded[name] = r
                return self._take(r, None)
        finally:
            with self.cond:
                self._loading = False
                self.cond.notify_all()

    def _place(self, name: str, spec: ModelSpec, want: dict[str, Any]) -> tuple[int, int]:
        """Evict what must go, then the runner's size and its part on the GPU (called holding `cond`)."""
        modelled = self.vram_bytes is not None
        # llm/memory.go: the layers with their KV cache and one spare layer, and the compute graph beside them
        layered = spec.size + (spec.kv_bytes(want["num_ctx"]) * self.num_parallel if modelled else 0)
        layered += layered // spec.block_count if modelled else 0
        graph = spec.graph_bytes(want["num_ctx"] * self.num_parallel, want["num_batch"]) if modelled else 0
        need = layered + graph
        self._evict_for(name, need)
        if modelled:  # as many whole layers as fit beside the others, the reserve and the graph
            free = self.vram_bytes - self.gpu_reserve_bytes - graph - sum(
                r.size_vram for n, r in self.loaded.items() if n != name)
            per_layer = layered / spec.layers
            vram = need if layered <= free else int(max(0, free) // per_layer * per_layer)
            vram += graph if vram and vram < need else 0
        else:
            vram = need if spec.size_vram is None else spec.size_vram
        if want["num_gpu"] >= 0:  # llm/memory.go stops placing layers after num_gpu of them
            placed = layered * min(want["num_gpu"], spec.layers) // spec.layers
            vram = min(vram, placed + (graph if placed else 0))
        return need, vram

    def _evict_for(self, name: str, need: int) -> None:
        """Unload idle runners, shortest keep_alive first, until `need` fits beside the others (§3.4)."""
        while True:
            others = [r for n, r in self.loaded.items() if n != name]
            used = sum(r.size_vram for r in others)
            fits = self.vram_bytes is None or need <= self.vram_bytes - self.gpu_reserve_bytes - used
            idle = sorted((r for r in others if r.refs == 0), key=lambda r: (r.session_ns, r.name))
            if not others or not idle or (fits and len(others) < self.max_loaded_models):
                return
            del self.loaded[idle[0].name]
            self.evictions.append(idle[0].name)

    def release(self, r: Runner) -> None:
        """A request is done with `r`; when idle, it expires after its keep_alive."""
        with self.cond:
            r.refs -= 1
            if r.refs == 0:
                r.expires = time.time() + r.session_ns / 1e9
            self.cond.notify_all()

    def expire(self, name: str) -> None:
        """`expireRunner`: keep_alive becomes 0, so an idle runner starts unloading at once."""
        with self.cond:
            if r := self.loaded.get(name):
                r.session_ns, r.expires = 0, time.time()

    def ps(self) -> dict[str, Any]:
        """The `/api/ps` body, latest `expires_at` first."""
        with self.cond:
            self._purge()
            rows = []
            for r in self.loaded.values():
                expires = r.expires if r.expires is not None else time.time() + r.session_ns / 1e9
                rows.append((expires, {
                    "name": r.name, "model": r.name, "size": r.size, "digest": digest(r.name),
                    "details": r.spec.details(), "expires_at": rfc3339(int(expires * 1e9), local=True),
                    "size_vram": r.size_vram, "context_length": r.opts["num_ctx"]}))
        return {"models": [row for _, row in sorted(rows, key=lambda e: e[0], reverse=True)]}


class _Handler(BaseHTTPRequestHandler):
    """Routes and the generate/chat handler (server/routes.go); all state lives in `double`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY, as in Go: each flushed line leaves at once
    server_version = "OllamaDouble/0.33.0"
    double: OllamaDouble
    ROUTES = {"/": ("GET", "HEAD"), "/api/version": ("GET", "HEAD"), "/api/ps": ("GET",),
              "/api/tags": ("GET",), "/api/show": ("POST",), "/api/pull": ("POST",), "/api/generate": ("POST",),
              "/api/chat": ("POST",)}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json; charset=utf-8"
              ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode())

    def _route(self) -> None:
        method, path = self.command, self.path.split("?", 1)[0]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self.double.received.append(Received(method, path, json.loads(raw) if raw else None))
        except ValueError:
            self.double.received.append(Received(method, path, raw))
        if path not in self.ROUTES:
            return self._send(404, b"404 page not found", "text/plain")
        if method not in self.ROUTES[path]:
            return self._send(405, b"405 method not allowed", "text/plain")
        try:
            if path == "/":
                self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
            elif path == "/api/version":
                self._json(200, {"version": self.double.version})
            elif path == "/api/ps":
                self._json(200, self.double.ps())
            elif path == "/api/tags":
                self._json(200, {"models": [{"name": n, "model": n, "size": m.size, "digest": digest(n),
                                             "details": m.details()} for n, m in self.double.pulled()]})
            elif path == "/api/show":
                self._show(json.loads(raw or b"{}"))
            elif path == "/api/pull":
                self._pull(json.loads(raw or b"{}"))
            else:
                self._generate(raw, chat=path == "/api/chat")
        except HTTPError as exc:
            self._json(exc.status, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the double: say so rather than hang up
            self._json(500, {"error": f"test double: {exc!r}"})

    do_GET = do_HEAD = do_POST = do_DELETE = _route

    def _generate(self, raw: bytes, chat: bool) -> None:
        t0, d = time.perf_counter_ns(), self.double
        if not raw.strip():
            raise HTTPError(400, "missing request body")
        try:
            body = json.loads(raw)
        except ValueError as exc:  # Go's decoder words this differently case by case
            raise HTTPError(400, f"invalid character at offset {getattr(exc, 'pos', 0)}") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go value of type api.GenerateRequest")
        keep_ns = parse_keep_alive(body.get("keep_alive"))  # a bind error, before the lookup
        model = body.get("model") or ""
        if chat and not model:
            raise HTTPError(400, "model is required")
        if not _NAME.match(model) and chat:
            raise HTTPError(400, "invalid model name")
        if not _NAME.match(model) or full_name(model) not in d.models:
            # The real Ollama (0.5.4) words chat's differently: the scheduler's error, not the handler's.
            raise HTTPError(404, f'model "{model}" not found, try pulling it first' if chat
                            else f"model '{model}' not found")
        name = full_name(model)
        base = lambda: {"model": model, "created_at": rfc3339(time.time_ns())}  # noqa: E731
        blank = _part(chat, "")
        load_only = not (body.get("messages") if chat else body.get("prompt"))
        if load_only and keep_ns == 0:  # unload: nothing scheduled, answered at once
            d.expire(name)
            return self._json(200, {**base(), **blank, "done": True, "done_reason": "unload"})
        options = parse_options(body.get("options"))  # scheduleRunner: a bad type is a 500
        if load_only:  # one application/json object even when streaming, and no metrics
            d.release(d.acquire(name, options, keep_ns))
            return self._json(200, {**base(), **blank, "done": True, "done_reason": "load"})
        runner = d.acquire(name, options, keep_ns)
        try:
            load_ns = time.perf_counter_ns() - t0  # checkpointLoaded, before the slot wait
            if not runner.sem.acquire(timeout=d.request_timeout_s):
                raise HTTPError(500, "test double: timed out waiting for a slot")
            try:
                self._run(body, options, chat, runner, (t0, load_ns), base)
            finally:
                runner.sem.release()
        finally:
            d.release(runner)

    def _run(self, body: dict[str, Any], options: dict[str, Any], chat: bool, r: Runner,
             times: tuple[int, int], base: Callable[[], dict[str, Any]]) -> None:
        """Prompt eval, one token per chunk, then the done chunk with its omitempty metrics."""
        (t0, load_ns), d, stream = times, self.double, body.get("stream") is not False
        words = (" ".join(f"{m.get('role')}: {m.get('content')}" for m in body["messages"])
                 if chat else str(body["prompt"])).split() or [""]
        with d.cond:
            cached = next((i for i, (a, b) in enumerate(zip(r.cache, words, strict=False)) if a != b),
                          min(len(r.cache), len(words)))
        cached = min(cached, len(words) - 1)  # llama-server evaluates at least one token
        t = time.perf_counter_ns()
        time.sleep(d.prompt_token_delay_s * (len(words) - cached))
        prompt_ns = time.perf_counter_ns() - t if d.prompt_token_delay_s else 0
        n = options.get("num_predict", -1)
        out = list(d.tokens if n < 0 else d.tokens[:n])
        started, t_eval = False, time.perf_counter_ns()
        for i, tok in enumerate(out):
            if i == d.fail_after_tokens:
                if not started:
                    raise HTTPError(500, d.fail_message)  # nothing written yet: a plain error
                return self._line({"error": d.fail_message}, end=True)
            if i:  # the first token is sampled from the prompt's logits: no decode step of its own
                time.sleep(d.token_delay_s * (1 + d.cpu_decode_penalty * r.cpu_share))
            if stream and not (d.text_in_final and i == len(out) - 1):
                started = self._line({**base(), **_part(chat, tok), "done": False}, started)
        eval_ns = time.perf_counter_ns() - t_eval if out else 0  # eval_count − 1 decode steps, as the real one
        text = "".join(out) if not stream else out[-1] if out and d.text_in_final else ""
        final = {**base(), **_part(chat, text), "done": True,
                 "done_reason": "length" if len(out) < len(d.tokens) else "stop"}
        if not chat and not body.get("raw"):
            final["context"] = list(range(1, len(words) + len(out) + 1))
        metrics = {"total_duration": time.perf_counter_ns() - t0, "load_duration": load_ns,
                   "prompt_eval_count": len(words), "prompt_eval_duration": prompt_ns,
                   "eval_count": len(out), "eval_duration": eval_ns}
        if d.reports_cached:
            metrics["prompt_eval_cached_count"] = cached
        final.update({k: v for k, v in metrics.items() if v})  # omitempty
        with d.cond:
            r.cache = words + out
        d.finals.append(final)
        if stream:
            self._line(final, started, end=True)
        else:
            self._json(200, final)

    def _show(self, body: dict[str, Any]) -> None:
        """§2 `/api/show`: details and model_info; 400 without a model, 404 for one not pulled."""
        model = str(body.get("model") or body.get("name") or "")
        if not model:
            raise HTTPError(400, "model is required")
        spec = self.double.models.get(full_name(model))
        if spec is None:
            raise HTTPError(404, f"model '{model}' not found")
        self._json(200, {"modelfile": f"FROM {model}\n", "parameters": "", "template": "{{ .Prompt }}",
                         "details": spec.details(), "model_info": spec.model_info(),
                         "capabilities": ["completion"], "modified_at": rfc3339(time.time_ns(), local=True)})

    def _pull(self, body: dict[str, Any]) -> None:
        """§2 `/api/pull`: manifest, layer progress, verify, write, success — or an error line with 200."""
        name = full_name(str(body.get("model") or body.get("name") or ""))
        self._line({"status": "pulling manifest"}, started=False)
        spec = self.double.registry.get(name)
        if spec is None:
            self._line({"error": "pull model manifest: file does not exist"}, end=True)
            return
        size = spec.size
        for completed in (0, size // 2, size):
            self._line({"status": "pulling 2ae6f6dd7a3d", "digest": "sha256:2ae6f6dd7a3d", "total": size,
                        "completed": completed})
        for status in ("verifying sha256 digest", "writing manifest"):
            self._line({"status": status})
        with self.double.cond:
            self.double.models[name] = spec
        self._line({"status": "success"}, end=True)

    def _line(self, obj: Any, started: bool = True, end: bool = False) -> bool:
        """Write one NDJSON line as one HTTP chunk and flush it; the first sends the headers."""
        if not started:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) + (b"0\r\n\r\n" if end else b""))
        self.wfile.flush()
        return True


# The seed's machine (shared/seed/latency-study-es.md): a GTX 1050 with 3 GB and phi3-mini. Sizes as Ollama's
# library lists the tags (about 2.2 and 2.4 GB); layers and heads as phi3-mini's GGUF has them (32 blocks,
# embedding 3072, 32 heads, no grouped-query attention). Numbers to make the rules fire, not a benchmark.
PHI3_MINI = ModelSpec(size=2_176_178_913, family="phi3", context_length=4096, block_count=32,
                      embedding_length=3072, head_count=32, head_count_kv=32, parameter_size="3.8B",
                      quantization_level="Q4_0")
PHI3_MINI_Q4_K_M = ModelSpec(size=2_393_232_672, family="phi3", context_length=4096, block_count=32,
                             embedding_length=3072, head_count=32, head_count_kv=32, parameter_size="3.8B",
                             quantization_level="Q4_K_M")
SEED_VRAM_BYTES = 3 * 2**30


def current_ollama(**kwargs: Any) -> OllamaDouble:
    """The double as a current Ollama reports its evidence: `prompt_eval_cached_count` on the final chunk
    (commit 6e65d95ef, above) and `context_length` in `/api/ps`, the context its runner was loaded with
    (api/types.go `ProcessModelResponse.ContextLength` since v0.10.0; server/routes.go `PsHandler` at v0.32.15
    reports the scheduler's `contextLength`, what the runner says it has: num_ctx clamped to the trained one)."""
    return OllamaDouble(**{"reports_cached": True, **kwargs})


def seed_machine(**kwargs: Any) -> OllamaDouble:
    """The double as the seed's machine: 3 GB of VRAM, phi3:mini pulled, the K-quant tag in the registry."""
    settings: dict[str, Any] = {"models": {"phi3:mini": PHI3_MINI},
                                "registry": {"phi3:3.8b-mini-4k-instruct-q4_K_M": PHI3_MINI_Q4_K_M},
                                "vram_bytes": SEED_VRAM_BYTES, **kwargs}
    return OllamaDouble(**settings)
