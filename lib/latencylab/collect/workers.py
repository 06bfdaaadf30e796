"""Timed requests sent from several worker processes under the one coordinator that runs the study (AIPerf's
shape), so that no single event loop carries every stream.

Each worker's loop owns 1/N of the streams, so it is free sooner. On issue 20's 2-core machine one loop meets the
accuracy goals once a new connection sends without waiting for the loop (stamped.py) and no garbage collection
runs in flight (loops.HeldGc), and extra processes compete with the server for the cores: the default is one
loop, and worker processes are for a machine with cores to spare (benchmarks/README.md has both measurements).

The coordinator keeps everything that is not the timed request: the plan and its schedule, the cold
protocol, the residency probes before and after each request, GPU sampling, the samples file. A worker only
turns a `GenerationRequest` into a `Sample` with the scenario's own `Backend` (pickled to it), on its own
event loop and HTTP clients, and sends the sample back over a pipe. A stopped run cancels the requests in
flight in the workers, which send back their samples as they stood (interrupted), as the one-loop path does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
from typing import Any

from latencylab.collect import loops
from latencylab.collect.backends import Backend, GenerationRequest
from latencylab.core.errors import RequestInterrupted
from latencylab.core.sample import Sample

STOP_WAIT_S = 5.0  # for a cancelled request's sample, and for a worker to exit


class WorkerPool:
    """`processes` worker processes, each with every scenario's backend; `measure` sends one request in one."""

    def __init__(self, backends: dict[str, Backend], processes: int) -> None:
        self.backends, self.processes = backends, processes
        self._conns: list[multiprocessing.connection.Connection] = []
        self._procs: list[Any] = []
        self._waiting: dict[int, asyncio.Future[tuple[str, Sample]]] = {}
        self._ids = itertools.count()
        self._in_flight: list[int] = []

    async def __aenter__(self) -> WorkerPool:
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")  # no fork of a process with a running loop and threads
        for _ in range(self.processes):
            ours, theirs = context.Pipe()
            process = context.Process(target=_worker_main, args=(theirs, self.backends), daemon=True)
            process.start()
            theirs.close()
            self._conns.append(ours)
            self._procs.append(process)
            self._in_flight.append(0)
            loop.add_reader(ours.fileno(), self._on_reply, ours)
        await asyncio.gather(*(self._ready(conn) for conn in self._conns))
        return self

    async def _ready(self, conn: multiprocessing.connection.Connection) -> None:
        """Wait for a worker's first message: its clients are open (a spawned process imports for a second)."""
        rid = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        conn.send(("ping", rid, None, None))
        await future

    def _on_reply(self, conn: multiprocessing.connection.Connection) -> None:
        try:
            kind, rid, sample = conn.recv()
        except (EOFError, OSError):  # the worker died: its requests will not come back
            asyncio.get_running_loop().remove_reader(conn.fileno())
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(RuntimeError("a client worker process ended unexpectedly"))
            return
        future = self._waiting.pop(rid, None)
        if future is not None and not future.done():
            future.set_result((kind, sample))

    async def measure(self, scenario: str, request: GenerationRequest) -> Sample:
        """`backend.measure` of `scenario`'s backend, in the worker with the fewest requests in flight."""
        index = min(range(len(self._conns)), key=self._in_flight.__getitem__)
        conn, rid = self._conns[index], next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        self._in_flight[index] += 1
        try:
            conn.send(("measure", rid, scenario, request))
            try:
                kind, sample = await asyncio.shield(future)
            except asyncio.CancelledError:  # the run stops: the worker cancels it and sends what it reached
                conn.send(("cancel", rid, None, None))
                async with asyncio.timeout(STOP_WAIT_S):
                    _, sample = await future
                raise RequestInterrupted(sample) from None
        finally:
            self._in_flight[index] -= 1
        if kind == "interrupted":
            raise RequestInterrupted(sample)
        return sample

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for conn in self._conns:
            loop.remove_reader(conn.fileno())
            with contextlib.suppress(OSError):
                conn.send(("stop", -1, None, None))
        for process in self._procs:
            await asyncio.to_thread(process.join, STOP_WAIT_S)
            if process.is_alive():
                process.terminate()
        for conn in self._conns:
            conn.close()


def _worker_main(conn: multiprocessing.connection.Connection, backends: dict[str, Backend]) -> None:
    """A worker process: its own event loop (uvloop where installed), serving the coordinator's requests."""
    held = loops.HeldGc()
    with contextlib.suppress(KeyboardInterrupt), held.hold():  # Ctrl-C reaches the group: the coordinator stops us
        loops.run(_serve(conn, backends, held))


async def _serve(conn: multiprocessing.connection.Connection, backends: dict[str, Backend], held: loops.HeldGc
                 ) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, int, Any, Any]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(_receive(conn)))
    tasks: dict[int, asyncio.Task[None]] = {}
    async with contextlib.AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(backend.client()) for name, backend in backends.items()}

        async def one(rid: int, scenario: str, request: GenerationRequest) -> None:
            try:
                sample = await backends[scenario].measure(clients[scenario], request)
                conn.send(("done", rid, sample))
            except RequestInterrupted as stop:
                conn.send(("interrupted", rid, stop.sample))
            finally:
                tasks.pop(rid, None)
                held.check_budget()

        while True:
            kind, rid, scenario, request = await inbox.get()
            if kind == "measure":
                tasks[rid] = asyncio.create_task(one(rid, scenario, request))
            elif kind == "cancel" and rid in tasks:
                tasks[rid].cancel()
            elif kind == "ping":
                conn.send(("pong", rid, None))
            elif kind == "stop":
                break
        for task in list(tasks.values()):
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    loop.remove_reader(conn.fileno())


def _receive(conn: multiprocessing.connection.Connection) -> tuple[str, int, Any, Any]:
    try:
        return conn.recv()
    except (EOFError, OSError):  # the coordinator is gone
        return ("stop", -1, None, None)
