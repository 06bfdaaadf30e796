"""An HTTP transport whose cost per request does not grow with the requests in flight.

httpcore's connection pool rescans every connection it holds twice per request (and, for each idle one,
asks the socket whether it is readable), which is O(n²) in the connections: at 64 kept-alive
connections that was 11 ms of CPU per request on the measuring event loop, more than the request's own
streaming. Here each connection lives in a lane of its own (an httpx transport limited to one
connection); a request takes the most recently freed idle lane, or opens a new one, in O(1), and gives
it back when its response is closed. Keep-alive, expiry and the stale-connection check stay httpcore's,
per lane; the network backend is `stamped.StampedBackend`, which stamps bytes as they arrive.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable

import httpcore
import httpx

from latencylab.collect.backends.stamped import StampedBackend

BACKEND = StampedBackend()
STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)  # a connection found closed
IDEMPOTENT = ("GET", "HEAD")


class _Lane:
    """One connection's transport: httpx's, its httpcore pool given the stamping network backend."""

    __slots__ = ("transport",)

    def __init__(self, keep_alive: bool, ssl_context: ssl.SSLContext) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1 if keep_alive else 0)
        self.transport = httpx.AsyncHTTPTransport(limits=limits, verify=ssl_context)
        if isinstance(getattr(self.transport, "_pool", None), httpcore.AsyncConnectionPool):
            # httpx passes no network_backend to the pool it builds: the same pool, with the stamping one
            # (an httpx without `_pool` keeps its own, and stamps come after its stack, as before)
            self.transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=ssl_context, max_connections=1, max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry, network_backend=BACKEND)


class _Released(httpx.AsyncByteStream):
    """The response body as the lane gives it; closing it hands the lane back (once)."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream, self._release = stream, release

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # no extra layer per chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None  # type: ignore[assignment]
            if release is not None:
                release()


class LaneTransport(httpx.AsyncBaseTransport):
    """Connections in lanes of one, idle ones reused last-freed first; at most `max_connections` at once."""

    def __init__(self, *, keep_alive: bool, max_connections: int | None = None) -> None:
        self._keep_alive = keep_alive
        self._ssl_context = httpx.create_ssl_context()  # one for all lanes: 40 ms to make each
        self._idle: list[_Lane] = []
        self._lanes: list[_Lane] = []
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._slots is not None:
            await self._slots.acquire()
        reused = bool(self._idle)
        lane = self._idle.pop() if reused else self._new_lane()
        try:
            response = await lane.transport.handle_async_request(request)
        except STALE:
            if not (reused and request.method in IDEMPOTENT):
                self._give_back(lane)
                raise
            # A kept-alive connection the server closed as it was taken (llama-server drops them): a probe is
            # sent again on a new one. Timed requests retry in Backend.measure, from a fresh t0.
            self._idle.append(lane)
            lane = self._new_lane()
            try:
                response = await lane.transport.handle_async_request(request)
            except BaseException:
                self._give_back(lane)
                raise
        except BaseException:
            self._give_back(lane)  # its pool has dropped the connection that failed
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Released(response.stream, lambda: self._give_back(lane))
        return response

    def _new_lane(self) -> _Lane:
        lane = _Lane(self._keep_alive, self._ssl_context)
        self._lanes.append(lane)
        return lane

    def _give_back(self, lane: _Lane) -> None:
        self._idle.append(lane)
        if self._slots is not None:
            self._slots.release()

    async def aclose(self) -> None:
        lanes, self._lanes, self._idle = self._lanes, [], []
        for lane in lanes:
            await lane.transport.aclose()
