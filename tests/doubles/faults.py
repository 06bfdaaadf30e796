"""A fault-injecting HTTP server: a struggling Ollama or OpenAI-compatible server, on purpose.

It speaks Ollama's NDJSON (`POST /api/generate`, `POST /api/chat`, `GET /api/ps` answering
`{"models": []}`, `GET /api/version`) and OpenAI's SSE (`POST /v1/chat/completions`, `GET /v1/models`;
`/api/tags` is a 404, as on a proxied server, so no model check fails), and answers each generation request
with the next fault of its script (then `fault` for every request after it):

    with FaultServer("stall") as server: ...                     # every request stalls
    with FaultServer(script=["ok", "busy", "ok"]) as server: ... # in order, then "ok"

The faults (`FAULTS`) are written at the socket level: resets are real RSTs (SO_LINGER 0), streams
are HTTP/1.1 chunked with one line per chunk, flushed at once. `refused_url()` gives a loopback URL
nobody listens on. Loopback only, standard library only; every wait is bounded (`hold_s`, socket
timeouts), and the server stops by itself after `lifetime_s` if a test forgets to.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

from .loopback import LoopbackServer

BUSY = "server busy, please try again.  maximum pending requests exceeded"  # Ollama's, two spaces
CRASH = "an error was encountered while running the model: unexpected EOF"
OPENAI_ERROR = {"message": "The server had an error while processing your request.", "type": "server_error",
                "param": None, "code": None}
BAD_REQUEST = "invalid options: num_predict must be an integer"
VLLM_NOT_FOUND = "The model `nope` does not exist."  # vLLM's top-level error object, no "error" key

FAULTS: dict[str, str] = {
    "ok": "a complete, well-formed stream",
    "reset_before_headers": "the request is read, then the connection is reset (RST) before any byte",
    "reset_mid_stream": "a few tokens, then the connection is reset",
    "http_400": "HTTP 400 with the protocol's error body",
    "http_500": "HTTP 500 with the protocol's error body",
    "busy": "Ollama's HTTP 503 'server busy' (OLLAMA_MAX_QUEUE exceeded)",
    "http_vllm": "HTTP 404 with vLLM's error body: {'object': 'error', 'message': …}, no 'error' key",
    "error_line": "HTTP 200, a few tokens, then an error line ({'error': …}), then the stream ends",
    "truncated": "HTTP 200, a few tokens, then the stream ends without its final chunk / [DONE]",
    "stall": "HTTP 200, a few tokens, then no byte for hold_s",
    "stall_first_byte": "HTTP 200 headers, then no byte for hold_s",
    "no_headers": "the request is read, then nothing at all for hold_s",
    "malformed_json": "a few tokens, then a line that is not JSON",
    "invalid_utf8": "a few tokens, then a JSON line holding bytes that are not UTF-8",
    "wrong_shape": "a few tokens, then well-formed JSON of the wrong shape (a string where an object goes)",
    "wrong_metrics": "a complete stream whose final figures have the wrong types (bad_metrics, or strings, a list)",
    "endless_tokens": "tokens as fast as the socket takes them, never a final chunk (until hold_s)",
    "huge_line": "HTTP 200, then one line that never ends (until huge_bytes)",
    "huge_error_body": "HTTP 500 with an error body of huge_bytes",
}
GENERATION_PATHS = ("/api/generate", "/api/chat", "/v1/chat/completions")


def _linger_reset(sock: socket.socket) -> None:
    """Make the socket's close send an RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: every connect is refused, and no other
    process can take the port while the block runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


class FaultServer:
    """The HTTP server and its script; `served` lists (path, fault) per generation request."""

    def __init__(self, fault: str = "ok", *, script: Sequence[str] = (), tokens: Sequence[str] = (
            "The", " sky", " is", " blue", "."), tokens_before: int = 3, hold_s: float = 5.0,
            huge_bytes: int = 64 << 20, bad_metrics: Any = None, lifetime_s: float = 60.0,
            socket_timeout_s: float = 10.0) -> None:
        for name in (fault, *script):
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        self.fault, self.script = fault, list(script)
        self.tokens, self.tokens_before = list(tokens), tokens_before
        self.hold_s, self.huge_bytes, self.lifetime_s = hold_s, huge_bytes, lifetime_s
        self.bad_metrics = bad_metrics  # wrong_metrics: the final figures (Ollama) or usage (OpenAI) to send
        self.socket_timeout_s = socket_timeout_s
        self.served: list[tuple[str, str]] = []
        self.received: list[tuple[str, str, Any]] = []  # (method, path, JSON body or raw bytes)
        self.lock = threading.Lock()
        self.stop = threading.Event()  # set on close: every hold ends at once
        self._server: LoopbackServer | None = None

    def __enter__(self) -> FaultServer:
        handler = type("Handler", (_Handler,), {"server_state": self, "timeout": self.socket_timeout_s})
        self._server = LoopbackServer(handler, self.lifetime_s, expire=self.close)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and end every hold (idempotent)."""
        self.stop.set()
        if self._server:
            self._server.close()

    @property
    def base_url(self) -> str:
        assert self._server, "use the server as a context manager"
        return self._server.base_url

    def next_fault(self, path: str) -> str:
        with self.lock:
            fault = self.script.pop(0) if self.script else self.fault
            self.served.append((path, fault))
            return fault


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "FaultServer/1.0"
    server_state: FaultServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ----------------------------------------------------------------------------------

    def _route(self) -> None:
        self.close_connection = True  # one request per connection, like the client
        path = self.path.split("?", 1)[0]
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            self.server_state.received.append((self.command, path, body))
            if path == "/api/ps" and self.command == "GET":
                return self._send(200, b'{"models":[]}')
            if path == "/api/version" and self.command == "GET":  # the runner's preflight
                return self._send(200, b'{"version":"0.0.0-faults"}')
            if path == "/v1/models" and self.command == "GET":
                return self._send(200, b'{"object":"list","data":[]}')
            if path not in GENERATION_PATHS or self.command != "POST":
                return self._send(404, b"404 page not found", "text/plain")
            self.openai = path.startswith("/v1/")
            self.chat = path == "/api/chat"
            self.model = body.get("model", "") if isinstance(body, dict) else ""
            fault = self.server_state.next_fault(path)
            getattr(self, "_" + fault)()
        except OSError:  # the client went away (or a socket timeout): nothing more to say
            _linger_reset(self.connection)

    do_GET = do_POST = _route

    def _send(self, status: int, body: bytes, ctype: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start(self, status: int = 200) -> None:
        """Status line and headers of a chunked stream, sent at once."""
        self.send_response(status)
        ctype = "text/event-stream" if self.openai and status == 200 else (
            "application/json; charset=utf-8" if status != 200 else "application/x-ndjson")
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _hold(self, seconds: float | None = None) -> None:
        """Say nothing for `seconds` (hold_s), or until the server closes."""
        self.server_state.stop.wait(self.server_state.hold_s if seconds is None else seconds)

    def _reset(self) -> None:
        """Close with an RST: the socket really closes once the handler's files are closed too."""
        _linger_reset(self.connection)
        self.connection.close()

    # -- the protocol's lines ----------------------------------------------------------------------

    def _line(self, obj: Any) -> bytes:
        data = json.dumps(obj, separators=(",", ":")).encode()
        return b"data: " + data + b"\n\n" if self.openai else data + b"\n"

    def _token(self, text: str) -> bytes:
        if self.openai:
            return self._line({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                               "model": self.model,
                               "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
        part = {"message": {"role": "assistant", "content": text}} if self.chat else {"response": text}
        return self._line({"model": self.model, "created_at": "2025-01-01T00:00:00Z", **part, "done": False})

    def _final(self, metrics: dict[str, Any] | None = None) -> list[bytes]:
        n = len(self.server_state.tokens)
        if self.openai:
            usage = metrics if metrics is not None else {"prompt_tokens": 7, "completion_tokens": n,
                                                         "total_tokens": 7 + n}
            finish = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                      "model": self.model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            return [self._line(finish), self._line({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                                    "choices": [], "usage": usage}), b"data: [DONE]\n\n"]
        part = {"message": {"role": "assistant", "content": ""}} if self.chat else {"response": ""}
        figures = metrics if metrics is not None else {
            "total_duration": 40_000_000, "load_duration": 1_000_000, "prompt_eval_count": 7,
            "prompt_eval_duration": 5_000_000, "eval_count": n, "eval_duration": 30_000_000}
        return [self._line({"model": self.model, "created_at": "2025-01-01T00:00:00Z", **part, "done": True,
                            "done_reason": "stop", **figures})]

    def _head(self) -> None:
        """Headers, the role chunk (OpenAI) and the first `tokens_before` tokens."""
        self._start()
        if self.openai:
            self._chunk(self._line({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": self.model,
                                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                 "finish_reason": None}]}))
        for text in self.server_state.tokens[: self.server_state.tokens_before]:
            time.sleep(0.002)
            self._chunk(self._token(text))

    def _error_body(self, message: str) -> bytes:
        if self.openai:
            return json.dumps({"error": {**OPENAI_ERROR, "message": message}}).encode()
        return json.dumps({"error": message}).encode()

    # -- the faults --------------------------------------------------------------------------------

    def _ok(self) -> None:
        self._start()
        for text in self.server_state.tokens:
            time.sleep(0.002)
            self._chunk(self._token(text))
        for line in self._final():
            self._chunk(line)
        self._end()

    def _reset_before_headers(self) -> None:
        self._reset()

    def _reset_mid_stream(self) -> None:
        self._head()
        self._hold(0.1)  # let the client read the tokens: an RST may discard what it has not read
        self._reset()

    def _http_400(self) -> None:
        self._send(400, self._error_body(BAD_REQUEST))

    def _http_500(self) -> None:
        self._send(500, self._error_body(CRASH if not self.openai else OPENAI_ERROR["message"]))

    def _busy(self) -> None:
        self._send(503, json.dumps({"error": BUSY}).encode())

    def _http_vllm(self) -> None:
        self._send(404, json.dumps({"object": "error", "message": VLLM_NOT_FOUND, "type": "NotFoundError",
                                    "param": None, "code": 404}).encode())

    def _error_line(self) -> None:
        self._head()
        error = {"error": {**OPENAI_ERROR, "message": CRASH}} if self.openai else {"error": CRASH}
        self._chunk(self._line(error))
        self._end()

    def _truncated(self) -> None:
        self._head()
        self._end()

    def _stall(self) -> None:
        self._head()
        self._hold()
        self._end()

    def _stall_first_byte(self) -> None:
        self._start()
        self._hold()
        self._end()

    def _no_headers(self) -> None:
        self._hold()

    def _malformed_json(self) -> None:
        self._head()
        self._chunk((b"data: " if self.openai else b"") + b'{"response": "x", "done": fal\n\n')
        self._hold(0.5)
        self._end()

    def _invalid_utf8(self) -> None:
        self._head()
        line = self._token("caf\u00e9")  # json.dumps writes it as caf\\u00e9: swap in raw Latin-1 bytes
        self._chunk(line.replace(b"caf\\u00e9", b"caf\xe9\xff"))
        self._hold(0.5)
        self._end()

    def _wrong_shape(self) -> None:
        self._head()
        if self.openai:
            bad = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": "oops"}]}
        elif self.chat:
            bad = {"model": self.model, "message": "oops", "done": False}
        else:
            bad = {"model": self.model, "response": 42, "done": False}
        self._chunk(self._line(bad))
        self._hold(0.5)
        self._end()

    def _wrong_metrics(self) -> None:
        self._start()
        for text in self.server_state.tokens:
            self._chunk(self._token(text))
        metrics = self.server_state.bad_metrics
        if metrics is None:
            metrics = ["7", "5"] if self.openai else {"eval_count": 5, "eval_duration": "30ms",
                                                      "total_duration": "40ms"}
        for line in self._final(metrics):  # type: ignore[arg-type]
            self._chunk(line)
        self._end()

    def _endless_tokens(self) -> None:
        self._start()
        deadline = time.monotonic() + self.server_state.hold_s
        line = self._token(" token")
        chunk = b"%x\r\n%s\r\n" % (len(line), line)
        while not self.server_state.stop.is_set() and time.monotonic() < deadline:
            self.wfile.write(chunk * 16)  # sixteen lines per write: faster than any real model

    def _huge_line(self) -> None:
        self._start()
        piece = b"x" * 65536
        self._chunk((b'data: {"choices":[{"delta":{"content":"' if self.openai else b'{"response":"') + piece)
        self._send_until(piece, self.server_state.huge_bytes)

    def _huge_error_body(self) -> None:
        self._start(500)
        piece = b"x" * 65536
        self._chunk(b'{"error":"' + piece)
        self._send_until(piece, self.server_state.huge_bytes)
        self._chunk(b'"}')
        self._end()

    def _send_until(self, piece: bytes, total: int) -> None:
        sent, deadline = 0, time.monotonic() + self.server_state.hold_s
        while sent < total and not self.server_state.stop.is_set() and time.monotonic() < deadline:
            self._chunk(piece)
            sent += len(piece)
