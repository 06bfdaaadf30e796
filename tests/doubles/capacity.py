"""A test double of known capacity: an OpenAI-compatible server with `slots` requests served at once, each
for a fixed `service_s`, the rest waiting their turn (first come, first served), so that its throughput
limit is exactly slots / service_s requests per second.

No real server here has a capacity known in advance (llama-server's depends on the machine and what else
runs on it), which is what a test of the rate sweep's saturation point needs:

    with CapacityServer(slots=2, service_s=0.05) as server:   # 40 requests/s at most
        ...server.base_url...

Each request: headers at once (as llama-server sends them before its slot is free), then, once a slot is
free (and `admitted`'s delay has passed: none here), the role event, `tokens` content events spread evenly over
`service_s` (the first after a tenth of it: the "prefill"), a usage event and `[DONE]`. `waits_s` records every
request's wait for a slot; `waiting` and `running` are the requests waiting and served now. A server with more to
say (`doubles.vllm`) overrides the hooks: `admitted`, `usage`, `get`. Loopback only; it stops by itself after
`lifetime_s`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from .loopback import LoopbackServer

MODELS = b'{"object":"list","data":[{"id":"capacity","object":"model"}]}'


class CapacityServer:
    def __init__(self, slots: int, service_s: float, *, tokens: int = 8, lifetime_s: float = 300.0) -> None:
        self.slots, self.service_s, self.tokens = slots, service_s, tokens
        self.capacity_per_s = slots / service_s
        self._slots = threading.Semaphore(slots)  # CPython wakes its waiters in arrival order
        self.lock = threading.Lock()
        self.waits_s: list[float] = []
        self.waiting = self.running = 0
        self.server = LoopbackServer(self._handler(), lifetime_s)

    # the hooks a server with more to say overrides
    def admitted(self, request: dict[str, Any]) -> float:
        """Seconds a request given a slot waits before its first event (a recompute, a prefill); called under no
        lock, once per request."""
        return 0.0

    def usage(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"prompt_tokens": 10, "completion_tokens": self.tokens, "total_tokens": 10 + self.tokens}

    def get(self, path: str) -> tuple[int, str, bytes]:
        """A GET's status, content type and body."""
        return (200 if path == "/v1/models" else 404), "application/json", MODELS

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
                pass

            def do_GET(self) -> None:  # noqa: N802
                status, kind, body = owner.get(self.path.split("?")[0])
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = json.loads(raw or b"{}")
                model = request.get("model", "capacity")
                arrived = time.perf_counter()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                with owner.lock:
                    owner.waiting += 1
                self._serve(request, model, arrived)
                self._event({"choices": [], "usage": owner.usage(request)})
                self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _serve(self, request: dict[str, Any], model: str, arrived: float) -> None:
                with owner._slots:
                    with owner.lock:
                        owner.waits_s.append(time.perf_counter() - arrived)
                        owner.waiting -= 1
                        owner.running += 1
                    try:
                        delay = owner.admitted(request)  # it may take some of its time itself
                        _sleep_until(time.perf_counter() + delay)
                        started = time.perf_counter()
                        self._event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                                     "model": model})
                        step = owner.service_s * 0.9 / owner.tokens
                        for k in range(owner.tokens):
                            _sleep_until(started + owner.service_s * 0.1 + k * step)
                            self._event({"choices": [{"index": 0, "delta": {"content": f" t{k}"}}], "model": model})
                        _sleep_until(started + owner.service_s)
                        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                                     "model": model})
                    finally:  # before the slot is free: never more running than slots
                        with owner.lock:
                            owner.running -= 1

            def _event(self, event: dict[str, Any]) -> None:
                self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        return Handler

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def __enter__(self) -> CapacityServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()


def _sleep_until(moment: float) -> None:
    remaining = moment - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
