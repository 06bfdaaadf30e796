"""The scraper process (collect/scrape.py) against a small server of known metrics: what it writes, when it reads
`/slots`, that it never outlives the process that started it, and what a server without metrics leaves."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from doubles.loopback import LoopbackServer
from latencylab.collect import scrape
from latencylab.runs import server_metrics

METRICS = b"""# HELP llamacpp:requests_deferred Number of requests deferred
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 2
# HELP llamacpp:requests_processing Number of requests processing
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
"""


class MetricsServer:
    """Answers /metrics with `METRICS` and /slots with one busy slot; counts the reads of each path."""

    def __init__(self) -> None:
        self.reads: dict[str, int] = {}
        lock, owner = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
                pass

            def do_GET(self) -> None:  # noqa: N802
                with lock:
                    owner.reads[self.path] = owner.reads.get(self.path, 0) + 1
                body = {"/metrics": METRICS, "/slots": b'[{"id": 0, "is_processing": true}]'}.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.server = LoopbackServer(Handler, 60)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def metrics_server() -> Any:
    server = MetricsServer()
    yield server
    server.close()


def _journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_scraper_writes_each_read_and_reads_slots_only_while_a_request_to_that_server_is_in_flight(
        metrics_server: MetricsServer, tmp_path: Path) -> None:
    journal = tmp_path / server_metrics.JOURNAL
    endpoint = scrape.Endpoint("server", ("a",), root=metrics_server.server.base_url, slots=True)
    other = scrape.Endpoint("other", ("b",), root=metrics_server.server.base_url)
    with scrape.Scraper([endpoint, other], 0.05, journal) as scraper:
        time.sleep(0.5)
        with scraper.sending("b"):  # another scenario's server busy: the first one's model may sleep
            time.sleep(0.5)
        idle_slots = metrics_server.reads.get("/slots", 0)
        with scraper.sending("a"):
            time.sleep(0.6)
    reads = [r for r in _journal(journal) if r["endpoint"] == "server"]
    assert idle_slots == 0  # /slots would wake a sleeping llama-server: never read while nothing is in flight there
    assert metrics_server.reads.get("/slots", 0) >= 3
    assert len(reads) >= 10
    assert reads[0]["values"]["waiting"] == [2.0, "llamacpp:requests_deferred"]
    assert any("slots_busy" in r["values"] for r in reads)
    times = [r["t"] for r in reads]
    assert times == sorted(times)


def test_the_scraper_ends_with_the_process_that_started_it(metrics_server: MetricsServer, tmp_path: Path) -> None:
    # A collecting process killed with -9 runs no clean-up: its scraper must see its pipe close and end.
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from latencylab.collect import scrape
        endpoint = scrape.Endpoint("server", ("a",), root={metrics_server.server.base_url!r})
        scraper = scrape.Scraper([endpoint], 0.05, Path({str(tmp_path / "m.jsonl")!r})).__enter__()
        print(scraper._process.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(0.5)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)
    assert _journal(tmp_path / "m.jsonl")  # what it read before is kept


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_a_run_that_read_no_metrics_loads_as_an_empty_series(workdir: Path) -> None:
    frame = server_metrics.load(["no-such-run"])
    assert list(frame.columns) == server_metrics.LOADED and frame.empty
