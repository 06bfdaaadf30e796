"""One request's measurement (`Sample`) and the clock that fills in its client-side times.

Every time is measured with `time.perf_counter_ns()` from t0, the moment the request reached the network
(its connection's set-up began, or on a kept-alive connection its head was about to be written), and
stored in milliseconds; the HTTP client's own queueing before that is `client_wait_ms`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

# The documented set of error kinds a failed sample can carry (README, "When things go wrong").
ERROR_KINDS: dict[str, str] = {
    "connect": "the server could not be reached (refused, unknown host, TLS)",
    "timeout": "a phase (connect, first byte, between chunks, total) took longer than its timeout",
    "http": "the server answered with an HTTP error status",
    "context": "the server refused a prompt longer than its context (HTTP 400; a conversation that outgrew it)",
    "server_error": "the server reported an error inside a 200 stream",
    "protocol": "the response could not be parsed (malformed JSON, invalid UTF-8, oversized line)",
    "incomplete": "the stream ended, or the connection broke, before the final chunk",
    "interrupted": "the run was stopped while the request was in flight",
}

STATES = ("cold", "reload", "warm", "unknown")
PHASES = ("first", "subsequent")
MAX_TEXT_CHARS = 2000  # generated text kept per sample: enough to read, bounded in size


@dataclass
class Sample:
    """Everything measured about one request; failed requests are samples too (`ok=False`)."""

    run_id: str = ""
    seq: int = 0
    scenario: str = ""
    backend: str = ""
    model: str = ""
    warmup: bool = False
    phase: str = "subsequent"
    state: str = "unknown"
    resident_before: bool | None = None  # from a probe that loads nothing (/api/ps, /models)
    resident_after: bool | None = None
    keep_alive: str | None = None  # as the scenario gave it
    # the server's own default where the request gave none and it is known (the bundled Ollama's OLLAMA_KEEP_ALIVE)
    server_keep_alive: str | None = None
    idle_gap_s: float | None = None  # the planned pause before this request
    started_at: float = 0.0  # wall-clock UNIX time of t0, for timelines
    scheduled_at: float | None = None  # when the client meant to send it (open loop: its arrival time)
    client_queue_ms: float | None = None  # sent − scheduled: time lost on the client side, never inside TTFB
    concurrency: int | None = None  # requests the client allowed in flight (closed loop)
    level: int | None = None  # a rate sweep's load level, per scenario in the order run (None: no levels)
    offered_rate_per_s: float | None = None  # that level's mean arrival rate (None for a sweep's passes)
    sweep_pass: str | None = None  # "synchronous" or "throughput": a rate sweep's passes that find its range
    idle_before_s: float | None = None  # time since the previous request of the run ended
    # conversations (issue 27): the session and its turn (0 first), the think time before this turn, the
    # characters of every message sent (the whole history), the context the request asked for where known
    session: int | None = None
    turn: int | None = None
    think_s: float | None = None
    history_chars: int | None = None
    num_ctx: int | None = None
    # prompt tokens the server says it processed (llama-server `prompt_n`; OpenAI: prompt less cached); None where
    # it does not say (Ollama 0.5.4 counts the whole prompt, cached or not: analyse/conversation.py infers it)
    processed_tokens: int | None = None
    prompt_chars: int = 0
    # the prompt's place in the study's prompts, the same for every scenario (unless `prompt_order: continue`): two
    # scenarios' requests with the same index were sent the same prompt, the pairs a paired comparison takes; None
    # where not recorded (a run from before it, a conversation's turn)
    prompt_index: int | None = None
    ok: bool = True
    error_kind: str | None = None
    error: str | None = None
    status_code: int | None = None
    headers_ms: float | None = None
    ttfb_ms: float | None = None
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    output_tokens: int | None = None
    output_tokens_source: str | None = None  # "server", or "chunks" when the server reported none
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    load_ms: float | None = None
    # "server" (Ollama's load_duration), "derived" (TTFT − prompt − first token), "probe" (was resident: 0)
    load_ms_source: str | None = None
    prompt_eval_ms: float | None = None
    eval_ms: float | None = None
    total_ms: float | None = None
    done_reason: str | None = None
    # residency, from the probe after the request
    model_size_bytes: int | None = None
    vram_bytes: int | None = None
    gpu_share: float | None = None
    fits_in_vram: bool | None = None
    context_length: int | None = None
    # Where gpu_share / fits_in_vram come from: "size_vram" (Ollama's /api/ps) or "layers" (llama-server's
    # offloaded layers over its total, from the log)
    gpu_share_source: str | None = None
    gpu_layers: int | None = None  # llama-server: layers offloaded (the output layer counts as one)
    gpu_layers_total: int | None = None
    # "log", or why gpu_layers is unknown: "cpu-build" (no GPU backend), "not-loaded", "not-in-log"
    gpu_layers_source: str | None = None
    server_rss_bytes: int | None = None  # embedded engine: resident memory of the model's process
    # NVML, sampled in the background while the request ran (when an NVIDIA GPU is present): the GPU the
    # server runs on (GPU 0 when that cannot be told), its peak used memory and peak utilisation
    gpu_index: int | None = None
    gpu_mem_used_bytes: int | None = None
    gpu_util_pct: float | None = None
    text: str = ""
    # connections (issue 14): the workload's setting, and what this request got
    connection: str | None = None  # "new": a connection per request; "reuse": kept alive between requests
    connection_reused: bool | None = None  # sent on a kept-alive connection (no set-up inside its TTFB)
    connect_ms: float | None = None  # TCP (+ TLS) set-up inside this request's TTFB; 0.0 when reused
    connection_retries: int = 0  # sends lost to a kept-alive connection the server had closed (not timed)
    client_wait_ms: float | None = None  # handed to the HTTP client → reached the network: the client's own queueing
    # host evidence (issue 26; collect/host.py): taken before t0 and after the last byte, never between
    host: str | None = None  # "local" (taken), or why not: "remote", "not_found", "overlap"; None: not asked
    host_window_ms: float | None = None  # from the snapshot before the request to the one after it
    host_cores: int | None = None  # this machine's cores (what the CPU times are shares of)
    server_cpu_ms: float | None = None  # CPU time of the server's processes (runners included) in that window
    others_cpu_ms: float | None = None  # CPU time of every other process (system busy − server − latencylab)
    major_faults: int | None = None  # the server's processes' major page faults in that window
    read_bytes: int | None = None  # bytes they read from storage (/proc/PID/io read_bytes) in that window
    model_file: str | None = None  # the model file the server loads (GGUF, Ollama blob)
    model_file_bytes: int | None = None
    cached_share: float | None = None  # of the model file in the page cache, before the request (mincore)
    mem_available_bytes: int | None = None  # what the server could still use (MemAvailable, its cgroup's limit)
    swap_in_pages: int | None = None  # the machine's swap-ins and -outs in that window (/proc/vmstat)
    swap_out_pages: int | None = None
    # the kernel's own accounting in that window (issue 33): pressure stall time (PSI totals' deltas, ms) of the
    # server's cgroup v2 group where it has its own ("cgroup"), else of the machine ("system"); None: no PSI
    psi_scope: str | None = None
    cpu_stall_ms: float | None = None  # some: time some task waited for a CPU
    io_stall_ms: float | None = None  # some: time some task waited for storage
    io_full_ms: float | None = None  # full: time every runnable task waited for it
    memory_stall_ms: float | None = None  # some: time some task waited for memory (reclaim, refaults, swap-ins)
    memory_full_ms: float | None = None
    runqueue_ms: float | None = None  # the longest one of the server's threads waited in a run queue (schedstat)
    runqueue_share: float | None = None  # that thread's share of its runnable time spent waiting so
    page_cache_bps: float | None = None  # the model file read from the page cache by latencylab, once (bytes/s)
    gpu_free_bytes: int | None = None  # the server's GPU, before the request (NVML)
    gpu_others_bytes: int | None = None  # GPU memory held by other processes on it
    gpu_others_util_pct: float | None = None  # their utilisation
    gpu_others: str | None = None  # who they are: "name (pid)", comma-separated

    def fail(self, kind: str, message: str) -> None:
        """Mark the sample failed; the first failure wins, later ones are consequences."""
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        if self.ok:
            self.ok, self.error_kind, self.error = False, kind, message[:500]

    def to_dict(self) -> dict[str, Any]:
        """Every field, by name; shallow but for the one list (asdict's deep copy cost 0.4 ms a sample on the
        measuring event loop)."""
        values = {name: getattr(self, name) for name in _FIELDS}
        values["itl_ms"] = list(self.itl_ms)
        return values


_FIELDS = tuple(f.name for f in fields(Sample))
# Each sample column's pandas dtype in a runs' DataFrame (`store.load_run`): nullable types, so a missing figure is
# <NA>, never 0; `runs.columnar` maps the same to the Parquet file's Arrow types.
_DTYPE_BY_TYPE = {"str": "string", "str | None": "string", "int": "Int64", "int | None": "Int64",
                  "float": "Float64", "float | None": "Float64", "bool": "boolean",
                  "bool | None": "boolean", "list[float]": "object"}
SAMPLE_DTYPES: dict[str, str] = {f.name: _DTYPE_BY_TYPE[str(f.type)] for f in fields(Sample)}


class StreamClock:
    """Timestamps of one streamed response: headers, first byte, each content chunk, last byte."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self.t0 = time.perf_counter_ns()
        self.headers: int | None = None
        self.first_byte: int | None = None
        self.last_byte: int | None = None
        self.token_times: list[int] = []
        self.wait_ns = 0

    def start_at(self, t: int) -> None:
        """Move t0 to `t`, when the request reached the network; the wait before it is `client_wait_ms`."""
        self.wait_ns = t - self.t0
        self.started_at += self.wait_ns / 1e9
        self.t0 = t

    def on_headers(self, t: int | None = None) -> None:
        """`t`: when the bytes that completed the headers arrived, where known; else now."""
        self.headers = t or time.perf_counter_ns()

    def on_bytes(self, t: int) -> None:
        if self.first_byte is None:
            self.first_byte = t
        self.last_byte = t

    def on_content(self, t: int) -> None:
        self.token_times.append(t)

    def _ms(self, t: int | None) -> float | None:
        return None if t is None else (t - self.t0) / 1e6

    def fill(self, sample: Sample) -> None:
        """Write the client-side figures into `sample` (TPOT needs `output_tokens` set first)."""
        sample.started_at = self.started_at
        sample.client_wait_ms = self.wait_ns / 1e6
        sample.headers_ms = self._ms(self.headers)
        sample.ttfb_ms = self._ms(self.first_byte)
        sample.ttft_ms = self._ms(self.token_times[0]) if self.token_times else None
        # A response without a body ends with its headers.
        sample.e2e_ms = self._ms(self.last_byte if self.last_byte is not None else self.headers)
        sample.itl_ms = [(b - a) / 1e6 for a, b in zip(self.token_times[:-1], self.token_times[1:], strict=True)]
        if sample.output_tokens is None and self.token_times:
            sample.output_tokens, sample.output_tokens_source = len(self.token_times), "chunks"
        n = sample.output_tokens
        if sample.ttft_ms is not None and sample.e2e_ms is not None and n and n > 1:
            sample.tpot_ms = (sample.e2e_ms - sample.ttft_ms) / (n - 1)
