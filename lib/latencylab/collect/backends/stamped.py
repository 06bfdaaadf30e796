"""An httpcore network backend on asyncio protocols that stamps bytes when they arrive.

With httpcore's default backend (anyio) a chunk is stamped after the reading task has woken up and
passed it through anyio, httpcore, h11 and httpx: when many streams have bytes in the same turn of the
event loop, each one's stamp waits behind the others' processing. Here `data_received` — the first
Python code that runs when the loop sees a readable socket — stamps each piece with
`perf_counter_ns()` before any task runs; `read()` hands the pieces over and remembers the stamp of the
last one it returned (`read_ns`), which `base.timed_lines` reads through the response's
`network_stream` extension. Less code per chunk, too: no anyio layer.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import httpcore

HIGH_WATER = 1 << 20  # bytes buffered unread before the socket stops being read
LOW_WATER = 1 << 18


class _Protocol(asyncio.Protocol):
    """Collects (arrival ns, bytes) pieces and wakes the reader."""

    def __init__(self) -> None:
        self.pieces: deque[tuple[int, bytes]] = deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.transport: Any = None
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.reading_paused = False

    def connection_made(self, transport: Any) -> None:  # uvloop's transports are no asyncio.Transport
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pieces.append((time.perf_counter_ns(), data))
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.error = exc
        self.eof = True
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class StampedStream(httpcore.AsyncNetworkStream):
    """One connection; `read_ns` is when the last piece that `read` returned had arrived."""

    def __init__(self, transport: Any, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol
        self.read_ns: int | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        while not p.pieces:
            if p.error is not None:
                raise httpcore.ReadError(str(p.error) or type(p.error).__name__)
            if p.eof:
                return b""
            p.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await p.waiter
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(str(exc)) from exc
            finally:
                p.waiter = None
        stamp, data = p.pieces.popleft()
        if len(data) > max_bytes:
            p.pieces.appendleft((stamp, data[max_bytes:]))
            data = data[:max_bytes]
        elif p.pieces and len(data) + len(p.pieces[0][1]) <= max_bytes:
            parts = [data]
            size = len(data)
            while p.pieces and size + len(p.pieces[0][1]) <= max_bytes:
                stamp, more = p.pieces.popleft()
                parts.append(more)
                size += len(more)
            data = b"".join(parts)
        p.buffered -= len(data)
        if p.reading_paused and p.buffered < LOW_WATER and not self._transport.is_closing():
            self._transport.resume_reading()
            p.reading_paused = False
        self.read_ns = stamp
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        p = self._protocol
        if p.error is not None or self._transport.is_closing():
            raise httpcore.WriteError(str(p.error or "the connection is closed"))
        self._transport.write(buffer)
        if p.drained is not None:
            try:
                async with asyncio.timeout(timeout):
                    await p.drained
            except TimeoutError as exc:
                raise httpcore.WriteTimeout(str(exc)) from exc
            if p.error is not None:
                raise httpcore.WriteError(str(p.error))

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> StampedStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(self._transport, self._protocol, ssl_context,
                                                 server_hostname=server_hostname)
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        self._protocol.transport = transport
        return StampedStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":  # an idle kept-alive connection the server has closed, or spoke on
            p = self._protocol
            return bool(p.pieces) or p.eof or self._transport.is_closing()
        return None


class StampedBackend(httpcore.AsyncNetworkBackend):
    """TCP (and Unix socket) connections as `StampedStream`s, on whatever asyncio loop runs (uvloop too)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[tuple[int, int, Any]] | None = None) -> StampedStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, host, port, local_addr=(local_address, 0) if local_address else None)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return StampedStream(transport, protocol)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[tuple[int, int, Any]] | None = None) -> StampedStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_Protocol, path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return StampedStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def read_ns(response: Any) -> int | None:
    """When the bytes that `response` last read had arrived, if its connection is stamped."""
    stream = response.extensions.get("network_stream")
    return stream.read_ns if isinstance(stream, StampedStream) else None
