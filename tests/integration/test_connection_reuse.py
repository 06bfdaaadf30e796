"""Connections as the study chooses (issue 14): `reuse` keeps them alive and survives a server that drops
kept-alive connections (llama-server does, after a few requests); `new` sets one up for every request.
Each sample says which it got and how long the set-up took; bytes are stamped when they arrive."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from doubles.loopback import LoopbackServer
from latencylab.collect.backends import make_backend
from latencylab.collect.backends.base import MAX_STALE_RETRIES, GenerationRequest, Timeouts
from latencylab.collect.backends.stamped import read_ns
from latencylab.core.sample import Sample

TIMEOUTS = Timeouts(connect_s=2.0, first_byte_s=2.0, between_chunks_s=2.0, total_s=5.0)
EVENTS = (b'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}\n\n',
          b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n',
          b'data: {"choices": [{"delta": {"content": " there"}, "finish_reason": "stop"}]}\n\n',
          b"data: [DONE]\n\n")


class KeepAliveServer:
    """OpenAI SSE over HTTP/1.1 kept-alive connections; each connection answers `answers` requests, then
    reads the next one and closes without a byte, as a server that dropped the idle connection does."""

    def __init__(self, answers: int, tls: ssl.SSLContext | None = None) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.answered = 0
                with owner.lock:
                    owner.connections += 1

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner.lock:
                    owner.requests += 1
                if self.answered >= answers:
                    self.close_connection = True  # the request was read; the connection goes, unanswered
                    return
                self.answered += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in EVENTS:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = LoopbackServer(Handler, lifetime_s=60, tls=tls)

    def __enter__(self) -> KeepAliveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()


def measure_in_turn(base_url: str, connection: str, count: int) -> list[Sample]:
    """`count` requests one after the other on one client, as a closed-loop worker sends them."""
    backend = make_backend("openai", base_url, timeouts=TIMEOUTS, connection=connection)

    async def go() -> list[Sample]:
        async with backend.client() as client:
            return [await backend.measure(client, GenerationRequest(model="m", prompt="hi", max_tokens=4))
                    for _ in range(count)]

    return asyncio.run(go())


def test_reuse_keeps_the_connection_and_the_first_request_alone_pays_the_set_up() -> None:
    with KeepAliveServer(answers=100) as server:
        samples = measure_in_turn(server.server.base_url, "reuse", 4)
        assert server.connections == 1 and server.requests == 4
    assert all(s.ok and s.text == "Hi there" for s in samples), [s.error for s in samples]
    assert all(s.connection == "reuse" and s.connection_retries == 0 for s in samples)
    assert [s.connection_reused for s in samples] == [False, True, True, True]
    assert samples[0].connect_ms is not None and 0 < samples[0].connect_ms < samples[0].ttfb_ms
    assert [s.connect_ms for s in samples[1:]] == [0.0, 0.0, 0.0]
    # t0 is when the request reached the network; the HTTP stack's queueing before it is the client's own (not
    # compared with the TTFB: both are a fraction of a millisecond on loopback, and a busy machine swaps them)
    assert all(s.client_wait_ms is not None and s.client_wait_ms >= 0 for s in samples)


def test_a_kept_alive_connection_dropped_by_the_server_is_sent_again_and_the_sample_is_good() -> None:
    with KeepAliveServer(answers=1) as server:  # every connection: one answer, then dropped
        samples = measure_in_turn(server.server.base_url, "reuse", 3)
        requests, connections = server.requests, server.connections
    assert all(s.ok and s.text == "Hi there" for s in samples), [s.error for s in samples]
    assert [s.connection_retries for s in samples] == [0, 1, 1]
    # the request that counted went on a new connection, and its set-up is in its own TTFB
    assert all(s.connection_reused is False and s.connect_ms > 0 for s in samples)
    assert requests == 5 and connections == 3
    assert all(s.ttfb_ms is not None and s.ttfb_ms < 1000 for s in samples)


class StaleEveryTime(httpx.AsyncBaseTransport):
    """A test double of a transport: every request meets a kept-alive connection that the server has closed (no
    connection is set up, so httpx traces no connect) and it breaks before a response byte. No real server does
    this every time; it is the only way to reach the retry bound, since a real retry's lane opens a new
    connection."""

    def __init__(self) -> None:
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)


def test_a_dropped_connection_is_retried_a_bounded_number_of_times_then_fails() -> None:
    backend = make_backend("openai", "http://127.0.0.1:9", timeouts=TIMEOUTS, connection="reuse")
    transport = StaleEveryTime()

    async def go() -> Sample:
        async with httpx.AsyncClient(transport=transport) as client:
            return await backend.measure(client, GenerationRequest(model="m", prompt="hi"))

    sample = asyncio.run(go())
    assert transport.requests == MAX_STALE_RETRIES + 1  # the first try and each retry, then no more
    assert not sample.ok and sample.error_kind == "incomplete" and "connection broke" in sample.error
    assert sample.connection_retries == MAX_STALE_RETRIES


def test_new_sets_up_a_connection_for_every_request() -> None:
    with KeepAliveServer(answers=100) as server:
        samples = measure_in_turn(server.server.base_url, "new", 3)
        assert server.connections == 3 and server.requests == 3
    assert all(s.ok and s.connection == "new" and s.connection_reused is False for s in samples)
    assert all(s.connect_ms is not None and s.connect_ms > 0 for s in samples)


def test_an_unknown_connection_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="connection"):
        make_backend("openai", "http://127.0.0.1:1", connection="sometimes")


def test_bytes_are_stamped_when_they_arrive_not_when_they_are_processed() -> None:
    with KeepAliveServer(answers=100) as server:
        backend = make_backend("openai", server.server.base_url, timeouts=TIMEOUTS)

        async def go() -> tuple[int | None, int, list[int | None], int]:
            async with backend.client() as client:
                async with client.stream("POST", backend.url("/v1/chat/completions"), json={}) as response:
                    headers, after_headers = read_ns(response), time.perf_counter_ns()
                    stamps = [read_ns(response) async for _ in response.aiter_bytes()]
                    return headers, after_headers, stamps, time.perf_counter_ns()

        headers, after_headers, stamps, end = asyncio.run(go())
    assert headers is not None and headers <= after_headers  # stamped on arrival, before httpx was done
    assert stamps and all(s is not None for s in stamps)
    assert stamps == sorted(stamps) and headers <= stamps[0] and stamps[-1] <= end


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_busy_event_loop_between_set_up_and_send_stays_out_of_the_ttfb(
        loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop blocked for 300 ms just as the connection is asked for (other streams' chunks, a slow
    callback): the request is not sent late with its t0 early. Before issue 20 the loop's own connect waited
    for that turn, and the 300 ms landed inside headers_ms and TTFT."""
    from latencylab.collect import loops
    from latencylab.collect.backends import base

    monkeypatch.setenv(loops.LOOP_ENV, loop)
    traced = base.ConnectionTrace.__call__

    async def busy_at_connect(self: base.ConnectionTrace, event: str, info: dict[str, object]) -> None:
        if event == "connection.connect_tcp.started":
            asyncio.get_running_loop().call_soon(time.sleep, 0.3)  # runs at the loop's next turn
        await traced(self, event, info)

    monkeypatch.setattr(base.ConnectionTrace, "__call__", busy_at_connect)
    with KeepAliveServer(answers=100) as server:
        backend = make_backend("openai", server.server.base_url, timeouts=TIMEOUTS, connection="new")

        async def go() -> Sample:
            async with backend.client() as client:
                return await backend.measure(client, GenerationRequest(model="m", prompt="hi", max_tokens=4))

        sample = loops.run(go())
    assert sample.ok and sample.connection_reused is False
    assert sample.headers_ms is not None and sample.headers_ms < 150, sample.headers_ms
    assert sample.connect_ms is not None and sample.connect_ms < 150


def test_a_refused_address_is_passed_over_for_the_next_one_and_a_refused_server_is_a_connect_failure() -> None:
    """`localhost` may resolve to ::1 first while the server listens on 127.0.0.1 only (Ollama's default)."""
    import socket

    from latencylab.collect.backends.stamped import _Dial

    with KeepAliveServer(answers=100) as server:
        port = int(server.server.base_url.rsplit(":", 1)[1])
        with socket.socket() as closed:  # a port nobody listens on
            closed.bind(("127.0.0.1", 0))
            dead = closed.getsockname()[1]
        v4 = socket.getaddrinfo("127.0.0.1", port, type=socket.SOCK_STREAM)
        refused = socket.getaddrinfo("127.0.0.1", dead, type=socket.SOCK_STREAM)

        async def dial(addresses: list[object]) -> tuple[int, int]:
            sock, span = await _Dial(addresses, None, [], 2.0).connect()
            try:
                return sock.getpeername()[1], span[1] - span[0]
            finally:
                sock.close()

        peer, took_ns = asyncio.run(dial(refused + v4))
        assert peer == port and took_ns >= 0
        with pytest.raises(ConnectionRefusedError):
            asyncio.run(dial(refused))
    backend = make_backend("openai", f"http://127.0.0.1:{dead}", timeouts=TIMEOUTS, connection="new")
    (sample,) = measure_in_turn(backend.base_url, "new", 1)
    assert not sample.ok and sample.error_kind == "connect" and "refused" in (sample.error or "").lower()


TLS = Path(__file__).resolve().parents[1] / "data" / "tls"  # a self-signed certificate for 127.0.0.1, for tests


@pytest.mark.parametrize("connection", ["new", "reuse"])
def test_https_sets_up_tls_inside_connect_ms_and_reuse_keeps_the_connection(
        connection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "cert.pem"))  # how a user trusts a server's own CA (httpx)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    with KeepAliveServer(answers=100, tls=tls) as server:
        assert server.server.base_url.startswith("https://")
        samples = measure_in_turn(server.server.base_url, connection, 3)
        assert server.connections == (3 if connection == "new" else 1)
    assert all(s.ok and s.text == "Hi there" for s in samples), [s.error for s in samples]
    new = samples if connection == "new" else samples[:1]
    assert all(s.connection_reused is False and s.connect_ms and s.connect_ms > 0 for s in new)
    assert all(s.connection_reused and s.connect_ms == 0 for s in samples[len(new):])
    assert all(s.ttft_ms >= s.connect_ms for s in samples)  # the set-up is inside the TTFT


def test_a_certificate_the_client_does_not_trust_is_a_connect_failure() -> None:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    with KeepAliveServer(answers=100, tls=tls) as server:
        (sample,) = measure_in_turn(server.server.base_url, "new", 1)
    assert not sample.ok and sample.error_kind == "connect" and "CERTIFICATE_VERIFY_FAILED" in (sample.error or "")
