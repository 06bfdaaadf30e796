"""Where a request's time goes before the server reads it (issue 20): `Backend.measure` on one event loop
against benchmarks/ground_truth_server.py, each request's httpx trace events matched with the server's own
`accepted_ns` and `received_ns` (perf_counter on both sides: CLOCK_MONOTONIC, one clock for the machine).

Printed per event, in ms after the request's t0 (median, p99, max): when the client's HTTP stack reached each
step, when the server accepted the connection and read the request, and the TTFT error split there:

    request side    server read − client t0: the connect, the write, and the server's own accept and read
    accept lag      server accepted − the client's head write (new connections)
    response side   the rest of the TTFT error: first content chunk sent → stamped on arrival

    .venv/bin/python benchmarks/connect_timeline.py --connection new --concurrency 16 --requests 320
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ground_truth_server as gt  # noqa: E402

from latencylab.collect import loops  # noqa: E402
from latencylab.collect.backends import base  # noqa: E402
from latencylab.collect.backends.base import GenerationRequest  # noqa: E402
from latencylab.collect.backends.openai import OpenAIBackend  # noqa: E402

EVENTS: contextvars.ContextVar[list[tuple[str, int]]] = contextvars.ContextVar("events")
_traced = base.ConnectionTrace.__call__


async def _recording(self: base.ConnectionTrace, event: str, info: dict[str, Any]) -> None:
    EVENTS.get().append((event, time.perf_counter_ns()))
    await _traced(self, event, info)


async def _send_all(port: int, args: argparse.Namespace) -> list[tuple[int, Any, list[tuple[str, int]]]]:
    backend = OpenAIBackend(f"http://127.0.0.1:{port}", connection=args.connection)
    done: list[tuple[int, Any, list[tuple[str, int]]]] = []
    numbers = iter(range(args.requests))
    async with backend.client() as client:
        async def worker(index: int) -> None:
            await asyncio.sleep(index * 0.002)
            for k in numbers:
                events: list[tuple[str, int]] = []
                EVENTS.set(events)  # this task's own list: trace callbacks run in the request's task
                request = GenerationRequest(model="m", prompt=f"id=r{k} d=5 e=135 n={args.chunks} i=10",
                                            max_tokens=args.chunks)
                done.append((k, await backend.measure(client, request), events))

        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connection", choices=("new", "reuse"), default="new")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--chunks", type=int, default=32)
    args = parser.parse_args(argv)
    base.ConnectionTrace.__call__ = _recording  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.jsonl"
        keep_alive = "0" if args.connection == "new" else "1000"
        with gt.serve(log, 600, "--keep-alive", keep_alive) as port:
            done = loops.run(_send_all(port, args))
            time.sleep(0.5)  # the last records are logged just after their last byte
        records = {r["id"]: r for r in gt.read_log(log)}
    rows = []
    wall_minus_mono = time.time() - time.perf_counter()  # the same two clocks in every process of the machine
    for k, sample, events in done[args.concurrency:]:  # each worker's first request set up its connection
        record = records.get(f"r{k}")
        if record is None or not sample.ok or not events:
            continue
        t0 = int((sample.started_at - wall_minus_mono) * 1e9)  # the sample's t0 on the monotonic clock
        row = {name: (t - t0) / 1e6 for name, t in events}
        row["server accepted"] = (record["accepted_ns"] - t0) / 1e6
        row["server read"] = (record["received_ns"] - t0) / 1e6
        error = sample.ttft_ms - (record["content_ns"][0] - record["received_ns"]) / 1e6
        row["TTFT error"] = error
        row["request side"] = row["server read"]
        row["response side"] = error - row["server read"]
        if "http11.send_request_headers.started" in row:
            row["accept lag"] = row["server accepted"] - row["http11.send_request_headers.started"]
        rows.append(row)
    print(f"{args.requests} requests, connection {args.connection}, concurrency {args.concurrency}, "
          f"loop {loops.loop_name()}; ms after t0 (median / p99 / max), {len(rows)} matched")
    for key in dict.fromkeys(k for row in rows for k in row):
        values = [row[key] for row in rows if key in row]
        print(f"  {key:<45} {np.median(values):8.3f} {np.percentile(values, 99):8.3f} {max(values):8.3f}")


if __name__ == "__main__":
    main()
