"""A test double of known capacity: an OpenAI-compatible server with `slots` requests served at once, each
for a fixed `service_s`, the rest waiting their turn (first come, first served), so that its throughput
limit is exactly slots / service_s requests per second.

No real server here has a capacity known in advance (llama-server's depends on the machine and what else
runs on it), which is what a test of the rate sweep's saturation point needs:

    with CapacityServer(slots=2, service_s=0.05) as server:   # 40 requests/s at most
        ...server.base_url...

Each request: headers at once (as llama-server sends them before its slot is free), then, once a slot is
free, the role event, `tokens` content events spread evenly over `service_s` (the first after a tenth of
it: the "prefill"), a usage event and `[DONE]`. `waits_s` records every request's wait for a slot.
Loopback only, standard library only; it stops by itself after `lifetime_s`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from .loopback import LoopbackServer


class CapacityServer:
    def __init__(self, slots: int, service_s: float, *, tokens: int = 8, lifetime_s: float = 300.0) -> None:
        self.slots, self.service_s, self.tokens = slots, service_s, tokens
        self.capacity_per_s = slots / service_s
        self._slots = threading.Semaphore(slots)  # CPython wakes its waiters in arrival order
        self.lock = threading.Lock()
        self.waits_s: list[float] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
                pass

            def do_GET(self) -> None:  # noqa: N802
                body = b'{"object":"list","data":[{"id":"capacity","object":"model"}]}'
                self.send_response(200 if self.path.split("?")[0] == "/v1/models" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                model = json.loads(raw or b"{}").get("model", "capacity")
                arrived = time.perf_counter()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                with owner._slots:
                    started = time.perf_counter()
                    with owner.lock:
                        owner.waits_s.append(started - arrived)
                    self._event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                                 "model": model})
                    step = owner.service_s * 0.9 / owner.tokens
                    for k in range(owner.tokens):
                        _sleep_until(started + owner.service_s * 0.1 + k * step)
                        self._event({"choices": [{"index": 0, "delta": {"content": f" t{k}"}}], "model": model})
                    _sleep_until(started + owner.service_s)
                    self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "model": model})
                self._event({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": owner.tokens,
                                                      "total_tokens": 10 + owner.tokens}})
                self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _event(self, event: dict[str, Any]) -> None:
                self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        self.server = LoopbackServer(Handler, lifetime_s)

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
