"""A loopback streaming server whose timing is known: the ground truth for benchmarks/accuracy.py.

It speaks just enough HTTP/1.1 (hand-written on asyncio streams, chunked transfer encoding,
TCP_NODELAY, `Connection: close` unless `--keep-alive N` lets a connection carry up to N requests) to
answer the two streaming forms latencylab measures:

* `POST /api/generate` and `POST /api/chat`: Ollama NDJSON, one `{"response": "…", "done": false}`
  line per content chunk, then `{"done": true, "done_reason": "stop", "eval_count": N, …}`;
* `POST /v1/chat/completions`: OpenAI SSE, a role event (no content), one `data: {"choices":
  [{"delta": {"content": "…"}}]}` event per content chunk, then a finish event, a usage event and
  `data: [DONE]` (all three in one write).

The schedule of one response comes from the request's prompt (Ollama `prompt`, or the last
message's `content`) as whitespace-separated `key=value` words; anything else in the prompt is
ignored, and a missing key takes the server's default (see `--help`):

    id=<text>   a tag copied into the log, to match the client's sample with the server's times
    d=<ms>      wait D ms after the request body has been read before sending status line + headers
    e=<ms>      wait E ms more before the first body byte
    n=<int>     send N content chunks (default: Ollama `num_predict`, OpenAI `max_tokens`, else 32)
    i=<ms>      one chunk every I ms

With t_req the moment the request body had been read, the planned send times are:

    headers           t_req + D
    first body byte   t_req + D + E
    content chunk k   t_req + D + E + k·I (Ollama)       t_req + D + E + (k+1)·I (OpenAI: the role
    final chunk       t_req + D + E + N·I (Ollama)       t_req + D + E + (N+1)·I  event goes first)

Waits are `loop.call_at` on CLOCK_MONOTONIC, which epoll rounds up to whole milliseconds. While at
most `--precise-max-streams` responses (default 1) are in flight, the timer wakes `--guard-us` early
and a blocking `time.sleep` (nanosleep, timer slack set to 1 µs) finishes the wait: nothing else is
waiting for the loop, and unlike a spin it leaves the CPU to the client. With more streams the
timer alone decides, so a send can be up to about a millisecond late; the log has the actual time,
which is what the client is compared with.

Each answered request appends one JSON line to `--log` after its last byte has gone out, with its
own `time.perf_counter_ns()` stamps (CLOCK_MONOTONIC on Linux: comparable across the processes of one
machine), each taken just before the bytes are handed to the kernel:

    {"id", "form", "path", "d_ms", "e_ms", "n", "i_ms", "accepted_ns", "received_ns",
     "headers_ns", "first_body_ns", "content_ns": [N stamps], "final_ns", "last_ns",
     "buffered_writes", "prompt_head"}

`accepted_ns` is when the server began waiting for the request (the connection's accept, or the end of
the previous response on a kept-alive one); `prompt_head` is the prompt's first 160 characters, for
clients that tag requests their own way (latencylab's "Request <seq> of run <run_id>.").

`final_ns` is the write that carries the final chunk, the rest of the stream and the chunked-encoding
terminator, so `last_ns == final_ns`; `buffered_writes` counts writes that the kernel did not take at
once (the client was not reading): the stamp of such a write is earlier than its bytes left.
`schedule_errors(record)` gives each event's actual − planned send time.

Bounded: binds 127.0.0.1 only, stops by itself after `--lifetime` seconds or when its parent exits.

    python benchmarks/ground_truth_server.py --port 0 --log /tmp/gt.jsonl   # prints "port=NNNNN"

`--loop uvloop` runs it on uvloop instead of asyncio's loop: it accepts and reads a request sooner, so less of
its own lag lands in what a client is compared with (benchmarks/README.md measures how much).

GET /metrics answers vLLM's scheduler gauges, so that latencylab scrapes it during a run as it would a vLLM.
`serve(log_path)` (a context manager) starts it in its own process and yields the port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1 << 20
MAX_WAIT_MS = 10_000.0  # per D, E or I: a typo must not park a connection for an hour
MAX_CHUNKS = 10_000
PROMPT_HEAD_CHARS = 160  # of each prompt, logged: lets a client that sends no id= match by its own tag
_WORD = re.compile(r"\b(id|d|e|n|i)=(\S+)")


@dataclass(frozen=True)
class Defaults:
    d_ms: float = 5.0
    e_ms: float = 15.0
    n: int | None = None  # None: the request's num_predict / max_tokens, else 32
    i_ms: float = 5.0


@dataclass(frozen=True)
class Plan:
    rid: str
    d_ms: float
    e_ms: float
    n: int
    i_ms: float


def parse_plan(prompt: str, limit: Any, defaults: Defaults) -> Plan:
    """The schedule asked for by the `key=value` words of `prompt` (see the module docstring)."""
    words = dict(_WORD.findall(prompt))

    def ms(key: str, default: float) -> float:
        value = float(words[key]) if key in words else default
        if not 0.0 <= value <= MAX_WAIT_MS:
            raise ValueError(f"{key}={value} is outside 0..{MAX_WAIT_MS} ms")
        return value

    n = int(words["n"]) if "n" in words else defaults.n if defaults.n is not None else (
        int(limit) if isinstance(limit, int) and limit > 0 else 32)
    if not 1 <= n <= MAX_CHUNKS:
        raise ValueError(f"n={n} is outside 1..{MAX_CHUNKS}")
    return Plan(words.get("id", ""), ms("d", defaults.d_ms), ms("e", defaults.e_ms), n, ms("i", defaults.i_ms))


def planned_ns(record: dict[str, Any]) -> dict[str, Any]:
    """The planned send times of a logged response, in perf_counter_ns."""
    t, n = record["received_ns"], record["n"]
    d, e, i = (round(record[k] * 1e6) for k in ("d_ms", "e_ms", "i_ms"))
    first_body = t + d + e
    offset = 1 if record["form"] == "openai" else 0  # the role event takes the first slot
    return {
        "headers_ns": t + d,
        "first_body_ns": first_body,
        "content_ns": [first_body + (k + offset) * i for k in range(n)],
        "final_ns": first_body + (n + offset) * i,
    }


def schedule_errors(record: dict[str, Any]) -> list[float]:
    """Actual − planned send time (ms) of every event of one logged response."""
    plan = planned_ns(record)
    pairs = [(record["headers_ns"], plan["headers_ns"]), (record["first_body_ns"], plan["first_body_ns"]),
             (record["final_ns"], plan["final_ns"])]
    pairs += list(zip(record["content_ns"], plan["content_ns"], strict=True))
    return [(actual - planned) / 1e6 for actual, planned in pairs]


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _ollama_body(model: str, plan: Plan, chat: bool) -> tuple[bytes, list[bytes], bytes]:
    """(role write, content writes, final write) of an Ollama NDJSON stream; there is no role write."""
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())

    def line(text: str, **extra: Any) -> bytes:
        part = {"message": {"role": "assistant", "content": text}} if chat else {"response": text}
        return json.dumps({"model": model, "created_at": created, **part, **extra}).encode() + b"\n"

    contents = [_chunk(line(f" t{k}", done=False)) for k in range(plan.n)]
    ns = lambda ms: round(ms * 1e6)  # noqa: E731
    final = line("", done=True, done_reason="stop", total_duration=ns(plan.d_ms + plan.e_ms + plan.n * plan.i_ms),
                 load_duration=0, prompt_eval_count=8, prompt_eval_duration=ns(plan.d_ms + plan.e_ms),
                 eval_count=plan.n, eval_duration=ns(plan.n * plan.i_ms))
    return b"", contents, _chunk(final) + b"0\r\n\r\n"


def _openai_body(model: str, plan: Plan) -> tuple[bytes, list[bytes], bytes]:
    """(role write, content writes, final write) of an OpenAI SSE stream."""
    created = int(time.time())

    def event(choices: list[Any], **extra: Any) -> bytes:
        body = {"id": "chatcmpl-gt", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": choices, **extra}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    role = event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    contents = [_chunk(event([{"index": 0, "delta": {"content": f" t{k}"}, "finish_reason": None}]))
                for k in range(plan.n)]
    tail = (event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
            + event([], usage={"prompt_tokens": 8, "completion_tokens": plan.n, "total_tokens": 8 + plan.n})
            + b"data: [DONE]\n\n")
    return _chunk(role), contents, _chunk(tail) + b"0\r\n\r\n"


class GroundTruthServer:
    def __init__(self, log_path: Path, defaults: Defaults, guard_us: float, precise_max_streams: int,
                 keep_alive: int = 0) -> None:
        self.log = open(log_path, "a", buffering=1 << 16)  # noqa: SIM115 (closed in run())
        self.defaults = defaults
        self.guard_ns = round(guard_us * 1000)
        self.precise_max_streams = precise_max_streams
        self.in_flight = 0
        self.keep_alive = keep_alive  # requests per connection; 0 or 1: close after each
        self.loop = asyncio.get_running_loop()

    async def wait_until(self, target_ns: int) -> None:
        """Sleep on the loop's timer; when (almost) alone, wake early and finish with a precise sleep."""
        precise = self.in_flight <= self.precise_max_streams
        guard = self.guard_ns if precise else 0
        while target_ns - time.perf_counter_ns() > guard:  # again if a timer fired early (uvloop's are in whole ms)
            # loop.time() is CLOCK_MONOTONIC (asyncio's to the ns, uvloop's to the ms): perf_counter_ns's clock on Linux
            wake = self.loop.create_future()
            handle = self.loop.call_at((target_ns - guard) / 1e9, wake.set_result, None)
            try:
                await wake
            finally:
                handle.cancel()
        if precise and (remaining := target_ns - time.perf_counter_ns()) > 0:
            time.sleep(remaining / 1e9)  # blocks the loop, which has nothing else to do

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for served in range(max(1, self.keep_alive)):
                accepted = time.perf_counter_ns()
                last = served + 1 >= self.keep_alive
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if served and not exc.partial:
                        return  # the client closed its kept-alive connection: fine
                    raise
                self.in_flight += 1
                try:
                    if not await self.respond(head, reader, writer, accepted, last):
                        return
                finally:
                    self.in_flight -= 1
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away: nothing to log
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def respond(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, accepted: int,
                      last: bool) -> bool:
        """Answer one request; True when the connection stays open for the next one."""
        if len(head) > MAX_HEAD_BYTES:
            return await self.error(writer, 431, "request head too large")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (request_line.split(" ", 2) + ["", ""])[:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY_BYTES or "chunked" in headers.get("transfer-encoding", ""):
            return await self.error(writer, 400, "send a Content-Length body under 1 MiB")
        raw = await reader.readexactly(length)
        received = time.perf_counter_ns()
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/metrics":
            return await self.metrics(writer)
        forms = {"/api/generate": "ollama", "/api/chat": "ollama", "/v1/chat/completions": "openai"}
        if method != "POST" or path not in forms:
            return await self.error(writer, 404, f"no {method} {path} here")
        try:
            body = json.loads(raw or b"{}")
            if path == "/api/generate":
                prompt, limit = str(body.get("prompt", "")), (body.get("options") or {}).get("num_predict")
            else:
                messages = body.get("messages") or [{}]
                content = messages[-1].get("content", "")
                if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": …}]
                    content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
                prompt = str(content)
                limit = body.get("max_tokens") if path.startswith("/v1/") else (body.get("options") or {}).get(
                    "num_predict")
            plan = parse_plan(prompt, limit, self.defaults)
        except (ValueError, AttributeError, TypeError) as exc:
            return await self.error(writer, 400, str(exc))
        form, model = forms[path], str(body.get("model", "ground-truth"))
        role, contents, final = (_openai_body(model, plan) if form == "openai"
                                 else _ollama_body(model, plan, chat=path == "/api/chat"))
        content_type = b"text/event-stream" if form == "openai" else b"application/x-ndjson"
        keep = not last and headers.get("connection", "").lower() != "close"
        status = (b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nTransfer-Encoding: chunked\r\n"
                  + (b"Connection: keep-alive" if keep else b"Connection: close") + b"\r\n\r\n")
        transport = writer.transport
        buffered = 0

        def send(data: bytes) -> int:
            nonlocal buffered
            t = time.perf_counter_ns()
            transport.write(data)  # straight into the socket when nothing is queued before it
            buffered += transport.get_write_buffer_size() > 0
            return t

        ms = lambda v: round(v * 1e6)  # noqa: E731
        first_body = received + ms(plan.d_ms) + ms(plan.e_ms)
        slot = 1 if role else 0
        await self.wait_until(received + ms(plan.d_ms))
        headers_ns = send(status)
        await self.wait_until(first_body)
        first_body_ns = send(role) if role else None
        content_ns = []
        for k, data in enumerate(contents):
            await self.wait_until(first_body + (k + slot) * ms(plan.i_ms))
            content_ns.append(send(data))
        await self.wait_until(first_body + (plan.n + slot) * ms(plan.i_ms))
        final_ns = send(final)
        await writer.drain()
        record = {"id": plan.rid, "form": form, "path": path, "d_ms": plan.d_ms, "e_ms": plan.e_ms, "n": plan.n,
                  "i_ms": plan.i_ms, "accepted_ns": accepted, "received_ns": received, "headers_ns": headers_ns,
                  "first_body_ns": first_body_ns if first_body_ns is not None else content_ns[0],
                  "content_ns": content_ns, "final_ns": final_ns, "last_ns": final_ns, "buffered_writes": buffered,
                  "prompt_head": prompt[:PROMPT_HEAD_CHARS]}
        self.log.write(json.dumps(record) + "\n")
        self.log.flush()
        return keep

    async def metrics(self, writer: asyncio.StreamWriter) -> bool:
        """vLLM's scheduler gauges, as its /metrics gives them, so that latencylab scrapes this server during a run
        as it would a vLLM (issue 34): the benchmark then measures the client's error with the scraper running."""
        body = ("# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                "# TYPE vllm:num_requests_running gauge\n"
                f'vllm:num_requests_running{{model_name="ground-truth"}} {max(0, self.in_flight - 1)}.0\n'
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                "# TYPE vllm:num_requests_waiting gauge\n"
                'vllm:num_requests_waiting{model_name="ground-truth"} 0.0\n').encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        return False

    async def error(self, writer: asyncio.StreamWriter, status: int, message: str) -> bool:
        body = json.dumps({"error": message}).encode()
        writer.write(b"HTTP/1.1 %d Error\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
        return False


def _fine_timer_slack() -> None:
    """Let nanosleep wake within 1 µs of its target instead of the default 50 µs (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, ns


async def run(port: int, log_path: Path, lifetime_s: float, defaults: Defaults, guard_us: float,
              precise_max_streams: int, keep_alive: int = 0) -> None:
    _fine_timer_slack()
    app = GroundTruthServer(log_path, defaults, guard_us, precise_max_streams, keep_alive)
    server = await asyncio.start_server(app.handle, HOST, port, backlog=4096, limit=MAX_HEAD_BYTES)
    print(f"port={server.sockets[0].getsockname()[1]}", flush=True)
    parent = os.getppid()
    deadline = time.monotonic() + lifetime_s
    try:
        async with server:
            while time.monotonic() < deadline and os.getppid() == parent:
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    finally:
        app.log.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as port=N)")
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per answered request")
    parser.add_argument("--lifetime", type=float, default=600.0, help="seconds before it stops by itself")
    parser.add_argument("--d-ms", type=float, default=Defaults.d_ms)
    parser.add_argument("--e-ms", type=float, default=Defaults.e_ms)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--i-ms", type=float, default=Defaults.i_ms)
    parser.add_argument("--guard-us", type=float, default=1500.0, help="timer wakes this early, then nanosleep")
    parser.add_argument("--precise-max-streams", type=int, default=1,
                        help="finish waits with a blocking sleep only with at most this many responses in flight")
    parser.add_argument("--keep-alive", type=int, default=0,
                        help="answer up to this many requests per connection (0: Connection: close after each)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the server's own event loop: uvloop accepts and reads a request sooner, so less of the "
                        "server's own lag lands in what a client is compared with (default asyncio)")
    args = parser.parse_args(argv)
    defaults = Defaults(args.d_ms, args.e_ms, args.n, args.i_ms)
    factory = importlib.import_module("uvloop").new_event_loop if args.loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(run(args.port, args.log, min(args.lifetime, 3600.0), defaults, args.guard_us,
                       args.precise_max_streams, args.keep_alive))


@contextlib.contextmanager
def serve(log_path: Path, lifetime_s: float = 600.0, *extra: str) -> Iterator[int]:
    """Run the server in its own process; yields its port, stops it on exit."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--port", "0", "--log", str(log_path),
         "--lifetime", str(lifetime_s), *extra],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until it listens (or dies)
        if not line.startswith("port="):
            raise RuntimeError(f"the ground-truth server did not start (exit {process.poll()})")
        yield int(line.strip().split("=", 1)[1])
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_log(log_path: Path) -> list[dict[str, Any]]:
    if not log_path.exists():
        return []
    with open(log_path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


if __name__ == "__main__":
    main()
