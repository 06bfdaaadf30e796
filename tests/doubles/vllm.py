"""A vLLM double: `doubles.capacity`'s server (`slots` requests served at once, the rest waiting) that also serves
GET /metrics in the Prometheus text format under vLLM's own V1 metric names, so that latencylab's scraper and the
Diagnosis read it as they would read vLLM.

The names, types and labels (`model_name`, `engine`) are those of vLLM's `PrometheusStatLogger`
(vllm/v1/metrics/loggers.py of vllm-project/vllm at commit 005a810bc40f, of the 0.10 line: the snapshot at hand, no
release tag; its deprecated names, which `collect.scrape` reads too, left out): the gauges
`vllm:num_requests_running`, `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`; the counters
`vllm:num_preemptions`, `vllm:prefix_cache_queries`, `vllm:prefix_cache_hits`, `vllm:prompt_tokens`,
`vllm:generation_tokens` (exported with `_total`, as prometheus_client exports every counter); the histograms
`vllm:time_to_first_token_seconds` and `vllm:e2e_request_latency_seconds` with vLLM's buckets. The text is
prometheus_client's own (a registry of the double's and `generate_latest`), as vLLM's is.

Its first chunk (the role) comes with the first token, after `prefill_s`, as vLLM's does. What can be planted:
- `preempt_every=N`: every Nth request is preempted once after its admission: the preemption counter rises halfway
  through `preempt_s`, which the request loses before its first token (vLLM's recompute after a preemption).
- the prefix cache: a request's prompt (its messages as words, each message opened by a role token) counts as
  queried tokens; its longest common prefix with what an earlier request left in the cache (its prompt, the
  assistant's role token and its answer), in whole blocks of `block_size` tokens as vLLM's cache holds them, as
  hits; `cache=False`, no hits ever.
- `report_cached`: the usage event says `prompt_tokens_details.cached_tokens` (vLLM does with
  `--enable-prompt-tokens-details`; by default it does not).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .capacity import CapacityServer, _sleep_until

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)
KV_BLOCKS = 64  # the double's KV cache, in blocks: a running request holds its prompt's


def tokens_of(request: dict[str, Any]) -> list[str]:
    """The double's tokens of a chat request: per message, a role token and its words."""
    return [word for m in request.get("messages", []) for word in (f"<|{m.get('role')}|>", *str(m.get("content") or
                                                                                                   "").split())]


class VllmServer(CapacityServer):
    def __init__(self, slots: int, service_s: float, *, model: str = "vllm-double", prefill_s: float = 0.1,
                 preempt_every: int = 0, preempt_s: float = 0.3, cache: bool = True, block_size: int = 16,
                 report_cached: bool = False, **kwargs: Any) -> None:
        self.model, self.prefill_s, self.preempt_every, self.preempt_s = model, prefill_s, preempt_every, preempt_s
        self.cache, self.block_size, self.report_cached = cache, block_size, report_cached
        self.admissions = 0
        self.preempted: list[int] = []  # the admissions (1, 2, …) that were preempted
        self.prompts: list[list[str]] = []
        self.registry = CollectorRegistry()
        labels = {"labelnames": ["model_name", "engine"], "registry": self.registry}
        self.metrics = {
            "running": Gauge("vllm:num_requests_running", "Number of requests in model execution batches.", **labels),
            "waiting": Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", **labels),
            "kv": Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", **labels),
            "preemptions": Counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.",
                                   **labels),
            "queries": Counter("vllm:prefix_cache_queries",
                               "Prefix cache queries, in terms of number of queried tokens.", **labels),
            "hits": Counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
                            **labels),
            "prompt": Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", **labels),
            "generation": Counter("vllm:generation_tokens", "Number of generation tokens processed.", **labels),
            "ttft": Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              buckets=TTFT_BUCKETS, **labels),
            "e2e": Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             buckets=LATENCY_BUCKETS, **labels),
        }
        for name in self.metrics:  # every series from the start, at 0, as vLLM labels them when it starts
            self._metric(name)
        self.kv_blocks = 0
        super().__init__(slots, service_s, **kwargs)

    def _metric(self, name: str) -> Any:
        return self.metrics[name].labels(model_name=self.model, engine="0")

    def admitted(self, request: dict[str, Any]) -> float:
        """Count the prompt's prefix-cache queries and hits; the first chunk comes after `prefill_s` (vLLM sends
        the role with the first token); every `preempt_every`th request is preempted first: the counter rises
        halfway through the `preempt_s` it loses."""
        tokens = tokens_of(request)
        with self.lock:
            self.admissions += 1
            number = self.admissions
            hit = max((_common(tokens, p) for p in self.prompts), default=0) if self.cache else 0
            hit = min(hit, len(tokens) - 1) // self.block_size * self.block_size  # the last token is always computed
            self.kv_blocks += -(-len(tokens) // self.block_size)
            request["_cached"], request["_blocks"] = hit, -(-len(tokens) // self.block_size)
        self._metric("queries").inc(len(tokens))
        self._metric("hits").inc(hit)
        self._metric("prompt").inc(len(tokens) - hit)
        request["_admitted"] = time.perf_counter()
        if not (self.preempt_every and number % self.preempt_every == 0):
            return self.prefill_s
        _sleep_until(time.perf_counter() + self.preempt_s / 2)
        with self.lock:
            self.preempted.append(number)
        self._metric("preemptions").inc()
        return self.preempt_s / 2 + self.prefill_s

    def usage(self, request: dict[str, Any]) -> dict[str, Any]:
        tokens = tokens_of(request)
        prompt = len(tokens)
        with self.lock:
            self.kv_blocks -= request.get("_blocks", 0)
            # what the cache holds once the request is done: its prompt, the generation prompt and its answer
            self.prompts.append([*tokens, "<|assistant|>", *(f"t{k}" for k in range(self.tokens))])
        self._metric("generation").inc(self.tokens)
        took = time.perf_counter() - request.get("_admitted", time.perf_counter())
        self._metric("ttft").observe(took - self.service_s * 0.9)  # the first token a tenth into the service
        self._metric("e2e").observe(took)
        usage = {"prompt_tokens": prompt, "completion_tokens": self.tokens, "total_tokens": prompt + self.tokens}
        if self.report_cached:
            usage["prompt_tokens_details"] = {"cached_tokens": request.get("_cached", 0)}
        return usage

    def get(self, path: str) -> tuple[int, str, bytes]:
        if path != "/metrics":
            models = b'{"object":"list","data":[{"id":"%s","object":"model"}]}' % self.model.encode()
            return (200 if path == "/v1/models" else 404), "application/json", models
        with self.lock:
            waiting, running, blocks = self.waiting, self.running, self.kv_blocks
        self._metric("waiting").set(waiting)
        self._metric("running").set(running)
        self._metric("kv").set(min(1.0, blocks / KV_BLOCKS))
        return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.registry)


def _common(a: list[str], b: list[str]) -> int:
    """The length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
