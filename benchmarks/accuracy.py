"""How far the client's own timing is from the truth (issue 6): latencylab's real `measure()` against a
server whose send times are known (benchmarks/ground_truth_server.py, in its own process).

For each form (Ollama NDJSON, OpenAI SSE) and each concurrency (closed loop: that many workers on
one shared `backend.client()`, as the runner has them, each sending its next request as soon as its
last one ended) it sends requests tagged with an id (in the prompt), matches every sample with the
server's log and computes, per metric, error = measured − true, where true = the server's
`perf_counter_ns()` send stamp − the client's t0 (both CLOCK_MONOTONIC):

    headers_ms  status line + headers sent     ttfb_ms  first body byte sent
    ttft_ms     first content chunk sent       itl_ms   gaps between content chunks (pooled)
    e2e_ms      last byte sent

t0 is the real `StreamClock`'s: this benchmark only swaps `latencylab.collect.backends.base.StreamClock` for a
subclass that also remembers each clock, so the measuring code path stays the real one. Also printed:
the client's scheduling lag (t0 − the moment the worker wanted to send, across one trip through the
event loop), the client's CPU time per request (`time.process_time()` over each batch ÷ requests),
and the server's own schedule error (its send stamps − its plan), then PASS/MISS per goal:

    concurrency 1:   |median| < 0.5 ms and p99 < 2 ms, for ttfb_ms and ttft_ms
    concurrency 256: p99 < 10 ms, for ttfb_ms and ttft_ms
    client CPU per request of 32 chunks < 1 ms, at concurrency 1 and 64

Start "spread": the workers' first requests are spread over one request's duration, so the closed
loop is in its steady state from the start (every request takes equally long, so they stay spread).
Start "burst" (one extra round at the highest concurrency, not judged by a goal): every worker
sends at the same moment, as the runner's workers do in their first round.

The server streams like a batching GPU server: D = 5 ms to headers, E = 15 ms more to the first body
byte, 32 chunks every I ms with I = max(5 ms, concurrency / 10 000 tok/s) — 200 tok/s per stream
alone, 10 000 tok/s in all once many streams share it (I = 25.6 ms at 256).

Prints figures and never fails on a miss; writes benchmarks/results/accuracy.json (`--out`).

    .venv/bin/python benchmarks/accuracy.py            # full: concurrency 1, 8, 64, 256 (about 1.5 min)
    .venv/bin/python benchmarks/accuracy.py --quick    # smoke: concurrency 1 and 8, few requests
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import importlib.util
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ground_truth_server as gt  # noqa: E402

from latencylab.collect import loops  # noqa: E402
from latencylab.collect.backends import base  # noqa: E402
from latencylab.collect.backends.base import Backend, GenerationRequest  # noqa: E402
from latencylab.collect.backends.ollama import OllamaBackend  # noqa: E402
from latencylab.collect.backends.openai import OpenAIBackend  # noqa: E402
from latencylab.collect.gpu import GpuSampler  # noqa: E402
from latencylab.core.sample import Sample, StreamClock  # noqa: E402

METRICS = ("headers_ms", "ttfb_ms", "ttft_ms", "itl_ms", "e2e_ms")
RESULTS = Path(__file__).resolve().parent / "results" / "accuracy.json"
ROUNDS = 3  # at least this many requests per worker at each concurrency

# --- the one change to the client: remember each request's clock (and so its t0) ---------------
_clocks: contextvars.ContextVar[list[StreamClock]] = contextvars.ContextVar("clocks")


class RecordingClock(StreamClock):
    """The real StreamClock; it also hands itself to the worker that created it."""

    def __init__(self) -> None:
        super().__init__()
        box = _clocks.get(None)
        if box is not None:
            box.append(self)


base.StreamClock = RecordingClock  # type: ignore[misc]  # measure() looks the name up in base


@dataclass
class Measured:
    rid: str
    wanted_ns: int
    t0: int
    sample: Sample


@dataclass
class Batch:
    runs: list[Measured]
    cpu_s: float  # this process (the client)
    wall_s: float
    preempted: int  # involuntary context switches of the client
    server_cpu_s: float


def interval_ms(concurrency: int, args: argparse.Namespace) -> float:
    return max(args.interval_ms, concurrency * 1000.0 / args.aggregate_tok_s)


async def batch(backend: Backend, client: httpx.AsyncClient, tag: str, concurrency: int, count: int,
                args: argparse.Namespace, spread: bool = True) -> Batch:
    """`count` requests with `concurrency` in flight (closed loop).

    `spread`: worker w sends its first request w/concurrency of a request's duration after the first
    one, so that starts are spread as in a steady state (the requests all take equally long, so they
    stay spread); otherwise every worker starts at once, as the runner's workers do.
    """
    i_ms = interval_ms(concurrency, args)
    duration_ns = round((args.d_ms + args.e_ms + (args.chunks + 1) * i_ms) * 1e6)
    stagger_ns = duration_ns // concurrency if spread else 0
    ids = iter(range(count))
    measured: list[Measured] = []
    start = time.perf_counter_ns()

    async def worker(w: int) -> None:
        wanted = start + w * stagger_ns
        for k in ids:  # shared iterator: each worker sends again as soon as its last request ended
            rid = f"{tag}-{k}"
            prompt = f"id={rid} d={args.d_ms} e={args.e_ms} n={args.chunks} i={i_ms}"
            box: list[StreamClock] = []
            _clocks.set(box)  # each worker runs in its own task, hence its own context
            # the way back through the event loop (a timer for a spread first start) is part of the lag
            await asyncio.sleep(max(0, wanted - time.perf_counter_ns()) / 1e9)
            sample = await backend.measure(client, GenerationRequest(model="ground-truth", prompt=prompt,
                                                                      max_tokens=args.chunks))
            measured.append(Measured(rid, wanted, box[-1].t0, sample))  # the last: after any retry
            wanted = time.perf_counter_ns()

    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    server = _server_cpu_s()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Batch(measured, cpu, wall, resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - switches,
                 _server_cpu_s() - server)


def _server_cpu_s() -> float:
    """CPU seconds used so far by this process's children (the ground-truth server)."""
    total = 0.0
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p99": None, "p99_abs": None, "max_abs": None, "min": None}
    a = np.asarray(values, dtype=float)
    return {"n": int(a.size), "median": float(np.median(a)), "p99": float(np.percentile(a, 99)),
            "p99_abs": float(np.percentile(np.abs(a), 99)), "max_abs": float(np.max(np.abs(a))),
            "min": float(np.min(a))}


def errors(runs: list[Measured], log: dict[str, dict[str, Any]]) -> tuple[dict[str, list[float]], list[str]]:
    """measured − true per metric (ms), pooled over the requests; and what could not be compared."""
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    problems = []
    for r in runs:
        s, rec = r.sample, log.get(r.rid)
        if not s.ok or rec is None:
            problems.append(f"{r.rid}: {s.error_kind or 'not in the server log'} {s.error or ''}".strip())
            continue
        true = lambda ns: (ns - r.t0) / 1e6  # noqa: E731, B023
        out["headers_ms"].append(s.headers_ms - true(rec["headers_ns"]))
        out["ttfb_ms"].append(s.ttfb_ms - true(rec["first_body_ns"]))
        out["ttft_ms"].append(s.ttft_ms - true(rec["content_ns"][0]))
        out["e2e_ms"].append(s.e2e_ms - true(rec["last_ns"]))
        gaps = [(b - a) / 1e6 for a, b in zip(rec["content_ns"], rec["content_ns"][1:], strict=False)]
        if len(gaps) != len(s.itl_ms):
            problems.append(f"{r.rid}: {len(s.itl_ms)} client gaps for {len(gaps)} sent")
            continue
        out["itl_ms"].extend(m - t for m, t in zip(s.itl_ms, gaps, strict=True))
    return out, problems


def wait_for_log(path: Path, ids: set[str], timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """The server logs a request just after its last byte; give the last few a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = {rec["id"]: rec for rec in gt.read_log(path)}
        if ids <= log.keys() or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


async def measure_all(port: int, log_path: Path, args: argparse.Namespace, held: loops.HeldGc
                      ) -> list[dict[str, Any]]:
    forms: list[tuple[str, Backend]] = [("ollama", OllamaBackend(f"http://127.0.0.1:{port}")),
                                        ("openai", OpenAIBackend(f"http://127.0.0.1:{port}"))]
    rows = []
    for form, backend in forms:
        async with backend.client() as client:
            await batch(backend, client, f"{form}-warmup", 1, 5, args)  # imports, first connections
            for c in args.levels:
                count = max(args.requests, ROUNDS * c) if c > 1 else args.requests
                rows.append({"form": form, "concurrency": c, "start": "spread", "loadavg": os.getloadavg()[0],
                             "batch": await batch(backend, client, f"{form}-c{c}", c, count, args)})
                held.quiet_point()  # between batches nothing is in flight
            if (top := max(args.levels)) > 1:  # one round fired at once, as the runner's first round is
                rows.append({"form": form, "concurrency": top, "start": "burst", "loadavg": os.getloadavg()[0],
                             "batch": await batch(backend, client, f"{form}-c{top}-burst", top, top, args,
                                                  spread=False)})
    log = wait_for_log(log_path, {r.rid for row in rows for r in row["batch"].runs})
    results = []
    for row in rows:
        b: Batch = row["batch"]
        runs = b.runs
        errs, problems = errors(runs, log)
        records = [log[r.rid] for r in runs if r.rid in log]
        schedule = [e for rec in records for e in gt.schedule_errors(rec)]
        results.append({
            "form": row["form"], "concurrency": row["concurrency"], "start": row["start"], "requests": len(runs),
            "failed": sum(not r.sample.ok for r in runs), "problems": problems[:10],
            "interval_ms": interval_ms(row["concurrency"], args), "wall_s": b.wall_s,
            "cpu_ms_per_request": b.cpu_s * 1000 / len(runs),
            "client_cpu_share": b.cpu_s / b.wall_s,  # of one core
            "server_cpu_share": b.server_cpu_s / b.wall_s,
            "client_preempted_per_request": b.preempted / len(runs),  # involuntary context switches
            "loadavg_1min": row["loadavg"],
            "errors_ms": {m: stats(v) for m, v in errs.items()},
            "lag_ms": stats([(r.t0 - r.wanted_ns) / 1e6 for r in runs]),
            "server_schedule_ms": stats(schedule),
            "server_buffered_writes": sum(rec["buffered_writes"] for rec in records),
        })
    return results


def check_goals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["form"], r["concurrency"]): r for r in results if r["start"] == "spread"}
    goals = []

    def goal(name: str, form: str, c: int, value: Any, limit: float) -> None:
        if (form, c) not in by:
            goals.append({"goal": name, "form": form, "concurrency": c, "value": None, "limit": limit,
                          "status": "NOT RUN"})
            return
        v = value(by[(form, c)])
        status = "MISS" if v is None or v >= limit else "PASS"
        goals.append({"goal": name, "form": form, "concurrency": c, "value": v, "limit": limit, "status": status})

    med = lambda m: lambda r: None if r["errors_ms"][m]["median"] is None else abs(r["errors_ms"][m]["median"])  # noqa: E731
    p99 = lambda m: lambda r: r["errors_ms"][m]["p99_abs"]  # noqa: E731
    for form in ("ollama", "openai"):
        for m in ("ttfb_ms", "ttft_ms"):
            goal(f"{m} |median error| < 0.5 ms", form, 1, med(m), 0.5)
            goal(f"{m} p99 |error| < 2 ms", form, 1, p99(m), 2.0)
            goal(f"{m} p99 |error| < 10 ms", form, 256, p99(m), 10.0)
        for c in (1, 64):
            goal("client CPU per 32-chunk request < 1 ms", form, c, lambda r: r["cpu_ms_per_request"], 1.0)
    return goals


def fmt(s: dict[str, Any]) -> str:
    return "—" if s["median"] is None else f"{s['median']:.2f}/{s['p99']:.2f}"


def print_table(results: list[dict[str, Any]], goals: list[dict[str, Any]]) -> None:
    print("error = measured − true in ms, median/p99 (itl: all gaps pooled); lag = t0 − when the worker wanted "
          "to send;\nserver sched = server send − its plan; cores = CPU share of one core, client/server")
    cols = ("lag", *(m[:-3] for m in METRICS), "server sched")
    head = (f"{'form':<7}{'conc':>5}{'start':>7}{'reqs':>6}{'fail':>5}{'I ms':>6}  " + "".join(f"{c:<15}" for c in cols)
            + f"{'cpu ms/req':>10}{'cores':>11}")
    print(head)
    print("-" * len(head))
    for r in results:
        cells = [r["lag_ms"], *(r["errors_ms"][m] for m in METRICS), r["server_schedule_ms"]]
        print(f"{r['form']:<7}{r['concurrency']:>5}{r['start']:>7}{r['requests']:>6}{r['failed']:>5}"
              f"{r['interval_ms']:>6.1f}  " + "".join(f"{fmt(c):<15}" for c in cells)
              + f"{r['cpu_ms_per_request']:>10.2f}{r['client_cpu_share']:>6.2f}/{r['server_cpu_share']:.2f}")
        for problem in r["problems"]:
            print(f"    ! {problem}")
    print()
    for g in goals:
        value = "not run" if g["value"] is None else f"{g['value']:.3f} ms"
        print(f"{g['status']:<8}{g['form']:<7} c={g['concurrency']:<4} {g['goal']:<42} {value}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 8, 20 requests: a smoke run")
    parser.add_argument("--requests", type=int, default=None,
                        help=f"requests per concurrency (at least {ROUNDS} per worker); default 150, quick 20")
    parser.add_argument("--concurrency", default=None, help="comma-separated; default 1,8,64,256 (quick: 1,8)")
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--d-ms", type=float, default=5.0, help="server wait before the headers")
    parser.add_argument("--e-ms", type=float, default=15.0, help="then before the first body byte")
    parser.add_argument("--interval-ms", type=float, default=5.0, help="per-stream chunk interval, at least")
    parser.add_argument("--aggregate-tok-s", type=float, default=10_000.0,
                        help="chunks per second over all streams, at most (I grows with concurrency)")
    parser.add_argument("--gpu-sampler", action="store_true",
                        help="read NVML in a background thread during the run, as `latencylab run` does, to "
                             "measure what it costs (needs an NVIDIA GPU)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.requests = args.requests or (20 if args.quick else 150)
    args.levels = [int(c) for c in (args.concurrency or ("1,8" if args.quick else "1,8,64,256")).split(",")]
    if args.requests < 1 or min(args.levels) < 1 or args.chunks < 2:
        parser.error("--requests and every concurrency must be at least 1, --chunks at least 2")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.jsonl"
        with gt.serve(log_path, lifetime_s=900) as port, GpuSampler() if args.gpu_sampler else contextlib.nullcontext():
            held = loops.HeldGc()  # as the runner collects: no garbage collection while requests are in flight
            with held.hold():
                results = loops.run(measure_all(port, log_path, args, held))  # the product's loop: uvloop if installed
    goals = check_goals(results)
    print_table(results, goals)
    report = {
        "settings": {"levels": args.levels, "requests": args.requests, "chunks": args.chunks, "d_ms": args.d_ms,
                     "e_ms": args.e_ms, "interval_ms": args.interval_ms, "aggregate_tok_s": args.aggregate_tok_s,
                     "quick": args.quick, "gpu_sampler": args.gpu_sampler},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "httpx": httpx.__version__,
                    "sniffio": importlib.util.find_spec("sniffio") is not None, "platform": platform.platform(),
                    "loadavg_1min_at_end": os.getloadavg()[0]},
        "wall_s": time.perf_counter() - started,
        "results": results,
        "goals": goals,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\n{len(results)} batches in {report['wall_s']:.1f} s; written to {args.out}")
    return report


if __name__ == "__main__":
    main()
