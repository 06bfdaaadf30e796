"""An httpcore network backend on asyncio protocols that stamps bytes when they arrive.

With httpcore's default backend (anyio) a chunk is stamped after the reading task has woken up and
passed it through anyio, httpcore, h11 and httpx: when many streams have bytes in the same turn of the
event loop, each one's stamp waits behind the others' processing. Here `data_received` — the first
Python code that runs when the loop sees a readable socket — stamps each piece with
`perf_counter_ns()` before any task runs; `read()` hands the pieces over and remembers the stamp of the
last one it returned (`read_ns`), which `base.timed_lines` reads through the response's
`network_stream` extension. Less code per chunk, too: no anyio layer.

A new TCP connection is set up and its request written without waiting for the event loop: the connect is
started on a non-blocking socket, and where the handshake has finished within that call (loopback and most
local networks: the kernel completes it synchronously) the request's bytes go out at once with `send`, while
the loop attaches its transport for the answer. Measured on issue 20 (16 streams, the server closing every
connection): the loop's own `create_connection` resumed the request 1.5 ms late at the median and 6.7 ms at
p99, inside every TTFT, because each of its steps waited behind the other streams' chunks. A handshake still
under way (a remote server) is awaited on the loop, as before.
"""

from __future__ import annotations

import asyncio
import errno
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
    """One connection; `read_ns` is when the last piece that `read` returned had arrived.

    Made by `dialling`, it connects at its first use: a write connects and sends at once, with the socket's own
    `send`, while the loop's transport is attached for the answer (`read` and the rest wait for it).
    `connect_ns` is then (the connect began, the handshake ended), in perf_counter_ns."""

    def __init__(self, transport: Any, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol
        self.read_ns: int | None = None
        self.connect_ns: tuple[int, int] | None = None
        self._dial: _Dial | None = None  # where to connect, until the first use
        self._sock: socket.socket | None = None  # set while the transport is being attached
        self._attached: asyncio.Task[tuple[Any, _Protocol]] | None = None

    @classmethod
    def dialling(cls, dial: _Dial) -> StampedStream:
        stream = cls(None, _Protocol())
        stream._dial = dial
        return stream

    async def _connect(self) -> None:
        if self._dial is None:
            return
        dial, self._dial = self._dial, None
        try:
            self._sock, self.connect_ns = await dial.connect()
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        loop = asyncio.get_running_loop()
        self._attached = loop.create_task(loop.create_connection(lambda: self._protocol, sock=self._sock))

    async def _attach(self) -> None:
        await self._connect()
        if self._attached is not None:  # shielded: a cancelled request leaves the attach to `aclose`
            self._transport, _ = await asyncio.shield(self._attached)
            self._attached = self._sock = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._attach()
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
        await self._connect()  # no turn of the loop where the kernel finishes the handshake at once
        if self._sock is not None and not self._attached.done():  # type: ignore[union-attr]
            try:
                sent = self._sock.send(buffer)  # the request leaves now, whatever the loop is busy with
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise httpcore.WriteError(str(exc)) from exc
            buffer = buffer[sent:]
            if not buffer:
                return
        await self._attach()  # the rest (a socket buffer full) through the transport, in order
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
        if self._attached is not None:  # let the attach end (within a turn of the loop), then close what it made
            attached, self._attached = self._attached, None
            await asyncio.wait([attached])
            if attached.cancelled() or attached.exception() is not None:
                if self._sock is not None:
                    self._sock.close()
            else:
                self._transport = attached.result()[0]
            self._sock = None
        if self._transport is not None:
            self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> StampedStream:
        await self._attach()
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
        if self._transport is None:  # not connected yet, or still attaching: the socket answers
            sock = self._sock
            if info == "socket":
                return sock
            if info in ("client_addr", "server_addr") and sock is not None:
                return sock.getsockname() if info == "client_addr" else sock.getpeername()
            return False if info == "is_readable" else None
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
        """A stream that connects at its first use; only the name is resolved here (an IP address at once)."""
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            try:
                async with asyncio.timeout(timeout):
                    addresses = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except TimeoutError as exc:
                raise httpcore.ConnectTimeout(str(exc)) from exc
            except OSError as exc:
                raise httpcore.ConnectError(str(exc)) from exc
        return StampedStream.dialling(_Dial(addresses, local_address, list(socket_options or ()), timeout))

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


class _Dial:
    """Where a stream connects, and how: its resolved addresses, tried in order."""

    def __init__(self, addresses: list[Any], local_address: str | None, options: list[tuple[int, int, Any]],
                 timeout: float | None) -> None:
        self.addresses, self.local_address, self.options, self.timeout = addresses, local_address, options, timeout

    async def connect(self) -> tuple[socket.socket, tuple[int, int]]:
        """A connected non-blocking socket to the first address that takes it, and (began, ended) in ns. The
        connect starts in this call; a handshake the kernel finished within it (loopback, local networks) needs
        no turn of the event loop, one still under way is awaited on it."""
        failure: OSError = OSError("no address to connect to")
        for family, kind, proto, _, address in self.addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for option in self.options:
                    sock.setsockopt(*option)
                if self.local_address:
                    sock.bind((self.local_address, 0))
                began = time.perf_counter_ns()
                code = sock.connect_ex(address)
                if code == errno.EINPROGRESS:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code == 0 and not _connected(sock):
                        async with asyncio.timeout(self.timeout):
                            await _writable(sock)
                        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                ended = time.perf_counter_ns()
                if code:
                    raise OSError(code, f"connect to {address[0]}:{address[1]}: {errno.errorcode.get(code, code)}")
                return sock, (began, ended)
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                failure = exc
        raise failure


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:  # ENOTCONN: the handshake is still under way
        return False
    return True


async def _writable(sock: socket.socket) -> None:
    """Until `sock`'s connect has ended, one way or the other."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_writer(sock.fileno(), lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_writer(sock.fileno())


def read_ns(response: Any) -> int | None:
    """When the bytes that `response` last read had arrived, if its connection is stamped."""
    stream = response.extensions.get("network_stream")
    return stream.read_ns if isinstance(stream, StampedStream) else None


def connect_ns(response: Any) -> tuple[int, int] | None:
    """(the connect began, the handshake ended) of `response`'s connection, if it was set up for it here."""
    stream = response.extensions.get("network_stream")
    return stream.connect_ns if isinstance(stream, StampedStream) else None
