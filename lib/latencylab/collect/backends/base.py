"""What every protocol shares: the request shape, phase timeouts, and the timed streaming loop.

A backend module only says how to build its request body and how to read its stream lines
(`StreamParser`); `Backend.measure` does the timing and turns every failure into a failed sample.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from latencylab.collect.backends.lanes import LaneTransport
from latencylab.collect.backends.stamped import connect_ns, read_ns
from latencylab.core.errors import RequestInterrupted, ServerError
from latencylab.core.protocols import Capabilities, capabilities
from latencylab.core.sample import MAX_TEXT_CHARS, Sample, StreamClock
from latencylab.core.timeouts import Timeouts

MAX_LINE_BYTES = 1 << 20  # a stream line longer than this is a lying server, not a token
MAX_CONTENT_CHUNKS = 1 << 16  # when the request sets no positive token limit
MAX_ERROR_BODY_BYTES = 64 << 10  # of an HTTP error body, enough for any message
# How servers refuse a prompt longer than their context: llama-server ("exceeds the available context size",
# type exceed_context_size_error), OpenAI (code context_length_exceeded), vLLM ("maximum context length").
CONTEXT_REFUSED = re.compile(r"exceed_context_size|exceeds the available context size|context_length_exceeded|"
                             r"maximum context length", re.IGNORECASE)
# Sends again, on another connection, when a kept-alive one turns out closed before any response byte.
MAX_STALE_RETRIES = 2
CONNECTIONS = ("new", "reuse")


def content_chunk_limit(request: GenerationRequest) -> int:
    """Content chunks accepted before a response counts as far larger than asked for."""
    n = request.options.get("num_predict", request.max_tokens)
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        return MAX_CONTENT_CHUNKS
    return 2 * n + 64


def number(value: Any, what: str) -> Any:
    """A server-reported figure, which must be a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ServerError("protocol", f"{what} is not a number: {value!r:.80}")
    return value


DEFAULT_TIMEOUTS = Timeouts()
POLL_INTERVAL_S = 0.05  # between two residency probes while waiting for a load or an unload


@dataclass
class GenerationRequest:
    """One prompt to send: what every backend needs, plus protocol-specific extras."""

    model: str
    prompt: str
    max_tokens: int = 32
    temperature: float | None = None
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # Ollama `options`
    keep_alive: float | str | None = None  # Ollama `keep_alive`
    cache_prompt: bool | None = None  # llama-server `cache_prompt`
    # a conversation's whole history ({"role", "content"} each, the new user turn last); None: `prompt` alone
    messages: list[dict[str, str]] | None = None

    def chat(self) -> list[dict[str, str]]:
        """The messages a chat endpoint is sent: the history, or the prompt as one user message."""
        return self.messages if self.messages is not None else [{"role": "user", "content": self.prompt}]


@dataclass(frozen=True)
class Residency:
    """What a probe that loads nothing says about one model: resident or not, and where it sits."""

    resident: bool
    size_bytes: int | None = None
    vram_bytes: int | None = None
    context_length: int | None = None
    expires_at: str | None = None

    @property
    def gpu_share(self) -> float | None:
        """Fraction of the model in GPU memory (1.0 is Ollama's "100% GPU")."""
        if self.vram_bytes is None or not self.size_bytes:
            return None
        return self.vram_bytes / self.size_bytes

    @property
    def fits_in_vram(self) -> bool | None:
        share = self.gpu_share
        return None if share is None else share >= 1.0

    def fill(self, sample: Sample) -> None:
        sample.resident_after = self.resident
        sample.model_size_bytes, sample.vram_bytes = self.size_bytes, self.vram_bytes
        sample.gpu_share, sample.fits_in_vram = self.gpu_share, self.fits_in_vram
        sample.gpu_share_source = None if self.gpu_share is None else "size_vram"
        sample.context_length = self.context_length


async def poll_until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float) -> None:
    """Await `check()` every POLL_INTERVAL_S until it is true; a `timeout` ServerError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise ServerError("timeout", f"{what} after {timeout_s:g} s")
        await asyncio.sleep(POLL_INTERVAL_S)


class StreamParser(ABC):
    """Reads one response's lines; records tokens, text and the server's own figures."""

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.finished = False

    @abstractmethod
    def feed(self, line: bytes) -> bool:
        """Parse one line; return True when it carried generated text (content or thinking)."""

    @abstractmethod
    def fill(self, sample: Sample) -> None:
        """Write the server-reported figures into `sample`."""

    def add_text(self, text: str) -> None:
        if not isinstance(text, str):
            raise ServerError("protocol", f"generated text is not a string: {text!r:.80}")
        if sum(map(len, self.text_parts)) < MAX_TEXT_CHARS:
            self.text_parts.append(text)

    def text(self) -> str:
        return "".join(self.text_parts)[:MAX_TEXT_CHARS]


def parse_json_line(line: bytes) -> dict[str, Any]:
    """Decode one JSON object; malformed input becomes a `protocol` failure."""
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ServerError("protocol", f"invalid UTF-8 in stream: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ServerError("protocol", f"malformed JSON line {line[:120]!r}: {exc}") from exc
    if not isinstance(value, dict):
        raise ServerError("protocol", f"expected a JSON object, got {line[:120]!r}")
    return value


def http_error_kind(status: int, body: bytes) -> str:
    """A failed sample's kind for an HTTP error: `context` where the server refused a prompt past its context (a
    conversation that outgrew it), else `http`."""
    refused = status == 400 and CONTEXT_REFUSED.search(body[:MAX_ERROR_BODY_BYTES].decode("utf-8", "replace"))
    return "context" if refused else "http"


def error_text(body: bytes) -> str:
    """The message of an Ollama (`{"error": "…"}`) or OpenAI (`{"error": {"message": …}}`) error body."""
    raw = body[:300].decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(body)
    except ValueError:
        return raw
    if not isinstance(parsed, dict):
        return raw
    error = parsed.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if error:
        return str(error)
    return str(parsed.get("message") or parsed.get("detail") or raw)  # vLLM's, FastAPI's


async def timed_lines(
    response: httpx.Response, clock: StreamClock, timeouts: Timeouts
) -> AsyncIterator[tuple[int, bytes]]:
    """Yield each complete line with the perf_counter_ns time at which its last byte arrived.

    One timer watches for silence (first_byte_s before the first byte, between_chunks_s after each one)
    for the whole response, instead of a timeout armed and cancelled around every chunk.
    """
    loop = asyncio.get_running_loop()
    limit, last = timeouts.first_byte_s, loop.time()

    def watch() -> None:
        nonlocal handle
        due = last + limit
        if loop.time() >= due:
            silence.reschedule(loop.time())  # cancels the read now; raised below as TimeoutError
        else:
            handle = loop.call_at(due, watch)

    buffer = b""
    handle = loop.call_at(last + limit, watch)
    try:
        async with asyncio.timeout(None) as silence:
            async for chunk in response.aiter_bytes():
                t = read_ns(response) or time.perf_counter_ns()  # when its bytes arrived, where stamped
                last, limit = loop.time(), timeouts.between_chunks_s
                clock.on_bytes(t)
                buffer += chunk
                if b"\n" not in chunk:
                    if len(buffer) > MAX_LINE_BYTES:
                        raise ServerError("protocol", f"a stream line exceeded {MAX_LINE_BYTES} bytes")
                    continue
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > MAX_LINE_BYTES:
                    raise ServerError("protocol", f"a stream line exceeded {MAX_LINE_BYTES} bytes")
                for line in lines:
                    if line.strip():
                        yield t, line.rstrip(b"\r")
    except TimeoutError as exc:
        phase = "first byte" if clock.first_byte is None else "next chunk"
        raise ServerError("timeout", f"no {phase} within {limit:g} s") from exc
    finally:
        handle.cancel()
    if buffer.strip():
        yield clock.last_byte or time.perf_counter_ns(), buffer.rstrip(b"\r")


async def read_error_body(response: httpx.Response, timeouts: Timeouts) -> bytes:
    """At most MAX_ERROR_BODY_BYTES of an error body, each chunk within between_chunks_s."""
    body = b""
    chunks = response.aiter_bytes().__aiter__()
    while len(body) < MAX_ERROR_BODY_BYTES:
        try:
            async with asyncio.timeout(timeouts.between_chunks_s):
                body += await chunks.__anext__()
        except (StopAsyncIteration, TimeoutError):
            break
    return body[:MAX_ERROR_BODY_BYTES]


class ConnectionTrace:
    """httpx's `trace` extension for one request: was a connection set up for it, how long that took, and
    `on_wire`: when the request first touched the network (its connect began, or on a kept-alive
    connection its head was about to be written), after the HTTP stack's own queueing."""

    __slots__ = ("new", "connect_ms", "on_wire", "tls_done")

    def __init__(self) -> None:
        self.new = False
        self.connect_ms: float | None = None
        self.on_wire: int | None = None
        self.tls_done: int | None = None

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started":
            self.new, self.on_wire = True, time.perf_counter_ns()
        elif event in ("connection.connect_tcp.complete", "connection.start_tls.complete") and self.on_wire:
            self.connect_ms = (time.perf_counter_ns() - self.on_wire) / 1e6  # TCP (and TLS) set-up
            if event == "connection.start_tls.complete":
                self.tls_done = time.perf_counter_ns()
        elif event == "http11.send_request_headers.started" and self.on_wire is None:
            self.on_wire = time.perf_counter_ns()

    def dialled(self, span: tuple[int, int] | None) -> None:
        """The connection's own connect (stamped.StampedStream): the request reached the network when its connect
        began, not when the HTTP stack asked for a connection (the stack's locks are the client's queueing)."""
        if span is not None and self.new:
            began, ended = span
            self.on_wire = began
            self.connect_ms = (max(ended, self.tls_done or 0) - began) / 1e6

    def fill(self, sample: Sample) -> None:
        sample.connection_reused = not self.new
        sample.connect_ms = self.connect_ms if self.new else 0.0


class Backend(ABC):
    """A protocol client that turns one `GenerationRequest` into one `Sample`, and asks the server what
    `capabilities` allow (load, unload, residency, models); what it cannot do raises NotImplementedError."""

    kind: ClassVar[str]  # the protocol's server kind in `core.protocols.SERVER_KINDS`

    @property
    def capabilities(self) -> Capabilities:
        return capabilities(self.kind)

    def __init__(
        self, base_url: str, *, api_key: str | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS,
        connection: str = "reuse",
    ) -> None:
        if connection not in CONNECTIONS:
            raise ValueError(f"connection must be one of {', '.join(CONNECTIONS)}, not {connection!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeouts = timeouts
        self.connection = connection

    def url(self, path: str) -> str:
        return self.base_url + path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, max_connections: int | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP client with this backend's connect timeout; reads are timed by `measure`.

        `connection` "reuse" keeps connections alive for the next request (no set-up inside its TTFB);
        a kept-alive connection that the server closed meanwhile (llama-server closes them when it likes)
        is retried on another by `measure`. "new" opens one for every request. Connections live in lanes
        (`lanes.LaneTransport`: O(1) per request, where httpcore's pool is O(n²)); unbounded unless
        `max_connections` says otherwise, so that no request waits unseen (that wait would land inside its
        TTFB); the runner sizes it to the concurrency.
        """
        t = self.timeouts
        timeout = httpx.Timeout(connect=t.connect_s, read=None, write=t.connect_s, pool=None)
        transport = LaneTransport(keep_alive=self.connection == "reuse", max_connections=max_connections)
        return httpx.AsyncClient(timeout=timeout, headers=self.headers(), transport=transport, **kwargs)

    @abstractmethod
    def build(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """The path and JSON body of a streaming generation request."""

    @abstractmethod
    def parser(self) -> StreamParser:
        """A fresh parser for one response."""

    async def residency(self, client: httpx.AsyncClient, model: str) -> Residency | None:
        """Whether `model` is loaded right now, from a probe that loads nothing; None if unknowable."""
        return None

    async def resident(self, client: httpx.AsyncClient, model: str) -> bool | None:
        found = await self.residency(client, model)
        return None if found is None else found.resident

    async def load(
        self,
        client: httpx.AsyncClient,
        model: str,
        *,
        keep_alive: float | str | None = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Ask the server to load `model` (with its keep_alive and options where the server takes them)."""
        raise NotImplementedError(f"a {self.kind} server cannot be told to load a model")

    async def unload(self, client: httpx.AsyncClient, model: str) -> dict[str, Any] | None:
        """Ask the server to unload `model`; it may stay resident a moment (see `wait_resident`)."""
        raise NotImplementedError(f"a {self.kind} server cannot be told to unload a model")

    async def wait_resident(
        self, client: httpx.AsyncClient, model: str, wanted: bool, timeout_s: float = 120.0
    ) -> None:
        """Poll the residency probe until `model` is (or is no longer) resident."""

        async def reached() -> bool:
            return await self.resident(client, model) is wanted

        await poll_until(reached, f"{model} not {'loaded' if wanted else 'unloaded'}", timeout_s)

    async def has_model(self, client: httpx.AsyncClient, model: str) -> bool | None:
        """Whether the server has `model` (pulled, on disk); None when it cannot say."""
        return None

    @abstractmethod
    async def facts(self, client: httpx.AsyncClient, models: list[str]) -> dict[str, Any]:
        """What the server says of itself and of `models`, as `plan.facts.ServerFacts` fields (`version`,
        `models`, `missing`, …): the evidence gathered before and after a run."""

    async def model_path(self, client: httpx.AsyncClient, model: str) -> str | None:
        """The file the server says it loads `model` from; None when it cannot say."""
        return None

    def config_from_log(self, log: str) -> dict[str, str] | None:
        """The server's settings from its start log (kept where latencylab started the server); None when the
        log does not say them."""
        return None

    async def pull_probe(self, client: httpx.AsyncClient, model: str) -> tuple[str | None, int | None]:
        """Whether the server's registry has `model`, before pulling it: (its error, None) or (None, its size)."""
        raise NotImplementedError(f"a {self.kind} server cannot be told to pull a model")

    async def pull(self, client: httpx.AsyncClient, model: str) -> None:
        """Fetch `model` onto the server."""
        raise NotImplementedError(f"a {self.kind} server cannot be told to pull a model")

    async def ensure_model(self, client: httpx.AsyncClient, model: str, *, pull: bool) -> bool:
        """Make sure the server has `model`, pulling it when `pull` allows; returns whether it pulled."""
        if await self.has_model(client, model) is not False:
            return False
        if not (pull and self.capabilities.pull):
            raise ServerError("http", f"the server at {self.base_url} has no model {model!r}")
        await self.pull(client, model)
        return True

    async def measure(self, client: httpx.AsyncClient, request: GenerationRequest) -> Sample:
        """Send one streaming request and time it; any failure is recorded in the sample.

        A kept-alive connection found closed before any response byte (the server dropped it while
        idle) is no measurement: the request goes again, from a new t0, at most MAX_STALE_RETRIES times.
        """
        path, body = self.build(request)
        sample = Sample(backend=self.kind, model=request.model, prompt_chars=len(request.prompt),
                        connection=self.connection)
        if request.messages is not None:
            sample.history_chars = sum(len(m["content"]) for m in request.messages)
        interrupted = False
        for attempt in range(MAX_STALE_RETRIES + 1):
            trace = ConnectionTrace()
            http_request = client.build_request("POST", self.url(path), json=body, extensions={"trace": trace})
            parser = self.parser()
            clock = StreamClock()  # handed to the client now; t0 moves to when it reaches the network
            try:
                async with asyncio.timeout(self.timeouts.total_s):
                    await self._exchange(client, http_request, trace, clock, parser, sample,
                                         content_chunk_limit(request))
            except ServerError as exc:
                sample.fail(exc.kind, str(exc))
            except TimeoutError:
                sample.fail("timeout", f"request took longer than {self.timeouts.total_s:g} s in total")
            except httpx.ConnectTimeout as exc:
                sample.fail("timeout", f"connect to {self.base_url} timed out: {exc}")
            except httpx.ConnectError as exc:
                sample.fail("connect", f"cannot connect to {self.base_url}: {exc}")
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if not trace.new and clock.headers is None and attempt < MAX_STALE_RETRIES:
                    sample.connection_retries += 1
                    continue  # a stale kept-alive connection: nothing was measured yet
                sample.fail("incomplete", f"connection broke: {exc!r}")
            except httpx.HTTPError as exc:
                sample.fail("connect", f"{type(exc).__name__}: {exc}")
            except asyncio.CancelledError:  # Ctrl-C or SIGTERM: the sample keeps the times reached
                sample.fail("interrupted", "the run was stopped while the request was in flight")
                interrupted = True
            break
        try:
            parser.fill(sample)
        except ServerError as exc:
            sample.fail(exc.kind, str(exc))
        sample.text = parser.text()
        if trace.on_wire is not None:
            clock.start_at(trace.on_wire)  # the HTTP stack's queueing is the client's, not the server's
        clock.fill(sample)
        trace.fill(sample)
        if interrupted:
            raise RequestInterrupted(sample)
        return sample

    async def _exchange(
        self,
        client: httpx.AsyncClient,
        http_request: httpx.Request,
        trace: ConnectionTrace,
        clock: StreamClock,
        parser: StreamParser,
        sample: Sample,
        max_chunks: int = MAX_CONTENT_CHUNKS,
    ) -> None:
        try:
            async with asyncio.timeout(self.timeouts.first_byte_s):
                response = await client.send(http_request, stream=True)
        except TimeoutError as exc:
            raise ServerError(
                "timeout", f"no response headers within {self.timeouts.first_byte_s:g} s"
            ) from exc
        clock.on_headers(read_ns(response))
        trace.dialled(connect_ns(response))
        sample.status_code = response.status_code
        try:
            if response.status_code >= 400:
                body = await read_error_body(response, self.timeouts)
                clock.on_bytes(time.perf_counter_ns())
                raise ServerError(http_error_kind(response.status_code, body),
                                  f"HTTP {response.status_code}: {error_text(body)}")
            async for t, line in timed_lines(response, clock, self.timeouts):
                try:
                    carried = parser.feed(line)
                except (TypeError, AttributeError, KeyError, ValueError) as exc:
                    raise ServerError("protocol", f"unexpected chunk {line[:120]!r}: {exc!r}") from exc
                if carried:
                    clock.on_content(t)
                    if len(clock.token_times) > max_chunks:
                        raise ServerError("protocol", f"more than {max_chunks} content chunks: far more than asked for")
            if not parser.finished:
                raise ServerError("incomplete", "the stream ended without its final chunk")
        finally:
            await response.aclose()
