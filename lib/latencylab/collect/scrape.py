"""The server's own metrics, scraped while a run collects: llama-server's `/metrics` (with `--metrics`) and `/slots`,
vLLM's `/metrics`, any OpenAI-compatible server's that uses their names; Ollama publishes none. Every `interval_s`
each endpoint's Prometheus text is parsed (prometheus_client's parser) into the `QUANTITIES` the analysis reads,
and appended to the run's journal (`runs.server_metrics`).

The scraper is a process of its own: parsing in a thread of the collecting process would hold the GIL while a
stamp is due. It never wakes a model (measured on the bundled llama-server, router mode, `--sleep-idle-seconds`):
the router's `/metrics?model=` loads an unloaded model and an instance's `/slots` wakes a sleeping one, so the
embedded engine's instances are scraped directly, and `/slots` only while a request of the run is in flight."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from latencylab.core import paths

if TYPE_CHECKING:  # the scraper process imports this module: it needs none of the run's machinery
    from latencylab.collect.servers import Target
    from latencylab.plan.study import StudySpec

# quantity → the server metrics that give it, the first a server publishes chosen; a metric's label sets are summed
QUANTITIES: dict[str, tuple[str, ...]] = {
    "waiting": ("llamacpp:requests_deferred", "vllm:num_requests_waiting"),  # requests queued for a slot
    "running": ("llamacpp:requests_processing", "vllm:num_requests_running"),
    "kv_used": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),  # the KV cache's share in use, 0–1
    "preemptions": ("vllm:num_preemptions_total",),  # requests put back for want of KV-cache memory
    "cached_tokens": ("llamacpp:prompt_tokens_cached_total", "vllm:prefix_cache_hits_total",
                      "vllm:gpu_prefix_cache_hits_total"),
    "cache_queries": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
}
TIMEOUT_S = 2.0  # a scrape that takes longer is skipped: the next one is due
READY, READY_S = "ready", 15.0  # the scraper's word once it scraped first; the run waits for it this long at most


@dataclass(frozen=True)
class Endpoint:
    """One server to scrape: at `root`, or the embedded engine's instance serving `model` (found under the router's
    process `router_pid` at each scrape: it changes when the model is loaded again)."""

    key: str
    scenarios: tuple[str, ...]
    root: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    slots: bool = False
    router_pid: int | None = None
    model: str | None = None


def parse(text: str) -> dict[str, tuple[float, str]]:
    """The `QUANTITIES` a Prometheus text gives: quantity → (value, the metric it came from)."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + float(sample.value)
    found = {}
    for quantity, names in QUANTITIES.items():
        name = next((n for n in names if n in sums), None)
        if name is not None:
            found[quantity] = (sums[name], name)
    return found


def _instance_root(router_pid: int, model: str) -> str | None:
    """The URL of the router's instance serving `model` (started with `--alias <model> --port <p>`), if it runs."""
    try:
        children = psutil.Process(router_pid).children()
    except psutil.Error:
        return None
    for child in children:
        with contextlib.suppress(psutil.Error, ValueError, IndexError):
            args = child.cmdline()
            if "--alias" in args and args[args.index("--alias") + 1] == model:
                return f"http://127.0.0.1:{int(args[args.index('--port') + 1])}"
    return None


def scrape(client: httpx.Client, endpoint: Endpoint, in_flight: bool) -> dict[str, tuple[float, str]]:
    """One scrape of `endpoint`: its quantities, and its slots while a request is in flight; {} where it did not
    answer."""
    root = endpoint.root if endpoint.router_pid is None else _instance_root(endpoint.router_pid, endpoint.model or "")
    if not root:
        return {}
    try:
        response = client.get(f"{root}/metrics", headers=endpoint.headers)
        found = parse(response.text) if response.status_code == 200 else {}
        if endpoint.slots and in_flight:
            slots = client.get(f"{root}/slots", headers=endpoint.headers)
            if slots.status_code == 200 and isinstance(listed := slots.json(), list):
                found["slots_busy"] = (float(sum(bool(s.get("is_processing")) for s in listed)), "/slots")
                found["slots_total"] = (float(len(listed)), "/slots")
    except (httpx.HTTPError, ValueError):  # a server busy past the timeout, or a body that is no metrics text
        return {}
    return found


def main() -> None:
    """The scraper process (`python -m latencylab.collect.scrape`): its endpoints and interval on the first line of
    standard input; then "busy KEY" or "idle KEY" lines as requests to endpoint KEY start and end; scrapes until its
    input ends (the collecting process closed it, or is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the collecting process stops us
    config = json.loads(sys.stdin.readline())
    endpoints = [Endpoint(**{**e, "scenarios": tuple(e["scenarios"])}) for e in config["endpoints"]]
    interval_s = float(config["interval_s"])
    ended, busy = threading.Event(), set[str]()  # the endpoints with a request of the run in flight

    def listen() -> None:
        for line in sys.stdin:
            state, _, key = line.rstrip("\n").partition(" ")
            (busy.add if state == "busy" else busy.discard)(key)
        ended.set()

    threading.Thread(target=listen, daemon=True).start()
    with httpx.Client(timeout=TIMEOUT_S) as client, open(config["journal"], "a", encoding="utf-8") as out:

        def scrape_all() -> None:
            for endpoint in endpoints:
                began = time.time()
                values = scrape(client, endpoint, endpoint.key in busy)
                if values:
                    middle = (began + time.time()) / 2
                    out.write(json.dumps({"t": middle, "endpoint": endpoint.key, "values": values}) + "\n")
                    out.flush()

        due = time.monotonic()
        while not ended.is_set():
            scrape_all()
            if not sys.stdout.closed:  # the first round is done: the run may start
                print(READY, flush=True)
                sys.stdout.close()
            due = max(due + interval_s, time.monotonic())  # a slow scrape is not made up for with a burst
            ended.wait(max(0.0, due - time.monotonic()))
        scrape_all()  # after the run's last request: a counter's rise during it is known only from a scrape after


class Scraper:
    """The scraper process of one run; `sending(scenario)` around each request tells it which endpoints have requests
    in flight (only theirs are awake for sure: another scenario's model may sleep, and its /slots would wake it). A
    process started with `python -m`, not multiprocessing's: spawning re-imports the caller's main module."""

    def __init__(self, endpoints: list[Endpoint], interval_s: float, journal: Path) -> None:
        self.endpoints, self.interval_s, self.journal = endpoints, interval_s, journal
        self.endpoint_of = {scenario: e.key for e in endpoints for scenario in e.scenarios}
        self.in_flight: dict[str, int] = {}  # endpoint → requests in flight
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Scraper:
        config = {"endpoints": [dataclasses.asdict(e) for e in self.endpoints], "interval_s": self.interval_s,
                  "journal": str(self.journal)}
        self._process = subprocess.Popen([sys.executable, "-m", "latencylab.collect.scrape"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, start_new_session=True)  # Ctrl-C is ours to pass on
        self._say(json.dumps(config))
        # Its imports take a second or more on a busy machine: a run that started at once would go unscraped that
        # long (a short run wholly). One that never says it is ready costs the run its metrics, not its samples.
        assert self._process.stdout is not None
        if select.select([self._process.stdout], [], [], READY_S)[0]:
            self._process.stdout.readline()
        self._process.stdout.close()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None and self._process.stdin is not None
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=self.interval_s + TIMEOUT_S + 1)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _say(self, line: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        with contextlib.suppress(OSError):  # a scraper that died costs the run its metrics, not its samples
            self._process.stdin.write(line.encode() + b"\n")
            self._process.stdin.flush()

    @contextlib.contextmanager
    def sending(self, scenario: str) -> Iterator[None]:
        key = self.endpoint_of.get(scenario)
        if key is None:  # a scenario whose server is not read
            yield
            return
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        if self.in_flight[key] == 1:
            self._say(f"busy {key}")
        try:
            yield
        finally:
            self.in_flight[key] -= 1
            if self.in_flight[key] == 0:
                self._say(f"idle {key}")


async def endpoints(study: StudySpec, targets: dict[str, Target], router_pid: int | None) -> tuple[
        list[Endpoint], dict[str, str]]:
    """What to scrape for the run's scenarios, and why each other scenario's server is not scraped. A server other
    than the embedded engine is asked for its metrics once first: kept where they hold a quantity latencylab reads."""
    found: dict[str, Endpoint] = {}
    why_not: dict[str, str] = {}
    for name, target in targets.items():
        backend = target.backend
        if not backend.capabilities.metrics:
            why_not[name] = "none"  # the server publishes no metrics (Ollama)
            continue
        slots = "/slots" in backend.capabilities.metrics
        if study.backend_of(target.scenario) == "embedded" and router_pid is not None:
            key = f"embedded {target.model}"  # the same after a resume, on an engine at another port
            endpoint = found.get(key) or Endpoint(key, (), headers=backend.headers(), slots=slots,
                                                  router_pid=router_pid, model=target.model)
        else:
            root = backend.base_url.removesuffix("/v1")
            endpoint = found.get(root) or Endpoint(root, (), root=root, headers=backend.headers(), slots=slots)
            if root not in found and (reason := await _probe(target, root)):
                why_not[name] = reason
                continue
        found[endpoint.key] = dataclasses.replace(endpoint, scenarios=(*endpoint.scenarios, name))
    return list(found.values()), why_not


async def _probe(target: Target, root: str) -> str:
    """Why the server at `root` cannot be scraped ("" where it can)."""
    assert target.client is not None
    try:
        response = await target.client.get(f"{root}/metrics", headers=target.backend.headers())
    except httpx.HTTPError as exc:
        return f"unreachable: {type(exc).__name__}"
    if response.status_code == 400 and "model" in response.text:
        return "router"  # a llama-server router: its /metrics?model= would load the model
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        return "" if parse(response.text) else "unknown"
    except ValueError:
        return "unknown"


@contextlib.asynccontextmanager
async def during(study: StudySpec, targets: dict[str, Target], router_pid: int | None, run_id: str) -> AsyncIterator[
        tuple[Scraper | None, dict[str, Any]]]:
    """The run's scraper, running while the block does (None where nothing is to be scraped), with what run.json
    says of it: the interval, each endpoint's scenarios, and why a scenario's server was not scraped."""
    if not study.server_metrics.scrape:
        yield None, {"off": True}
        return
    found, why_not = await endpoints(study, targets, router_pid)
    record = {"interval_s": study.server_metrics.interval_s, "endpoints": {e.key: list(e.scenarios) for e in found},
              "not_scraped": why_not}
    if not found:
        yield None, record
        return
    from latencylab.runs.server_metrics import JOURNAL

    with Scraper(found, study.server_metrics.interval_s, paths.run_dir(run_id) / JOURNAL) as scraper:
        yield scraper, record


if __name__ == "__main__":
    main()
