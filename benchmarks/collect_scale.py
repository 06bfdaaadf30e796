"""Collecting N requests stays bounded: `latencylab run --no-report` against a loopback server that answers at
once (benchmarks/ground_truth_server.py: no waits, one content chunk, kept-alive connections, uvloop), as fast as
the machine allows.

Prints the rate (requests/s, from the samples' own times and over the whole command), the peak RSS of the
`latencylab run` process with its RSS as the run went on, and the samples written against those planned (lines in
samples.jsonl, rows and unique seqs in samples.parquet). Asserts nothing:

    .venv/bin/python benchmarks/collect_scale.py                       # 10⁶ requests: most of an hour on 2 cores
    .venv/bin/python benchmarks/collect_scale.py --requests 100000 --concurrency 8

`study(...)` and `server()` are what tests/integration/test_collect_scale.py runs 10⁴ requests with.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
import ground_truth_server as gt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "scale"


def study(base_url: str, requests: int, concurrency: int) -> dict[str, Any]:
    """One scenario of `requests` measured requests (no warm-up) at `concurrency`, on the OpenAI protocol (no
    residency probes: one HTTP request per sample), each answered at once with one chunk."""
    return {"name": "scale", "backend": "openai", "base_url": base_url,
            "workload": {"requests": requests, "warmup": 0, "concurrency": concurrency, "max_tokens": 1,
                         "connection": "reuse", "prompts": ["d=0 e=0 n=1 i=0"]},
            "scenarios": [{"name": "now", "model": "ground-truth"}]}


@contextlib.contextmanager
def server(lifetime_s: float = 7200.0) -> Iterator[str]:
    """The ground-truth server answering at once, its log thrown away (a line per request adds up); its base URL."""
    with gt.serve(Path(os.devnull), lifetime_s, "--keep-alive", str(2**31), "--loop", "uvloop") as port:
        yield f"http://127.0.0.1:{port}"


def command() -> list[str]:
    exe = Path(sys.executable).with_name("latencylab")
    return [str(exe) if exe.exists() else "latencylab"]


def collect(work: Path, base_url: str, requests: int, concurrency: int, every_s: float = 5.0) -> dict[str, Any]:
    """Run `latencylab run --no-report` on the study; its wall time, peak RSS and RSS as it went on."""
    path = work / "study.json"
    path.write_text(json.dumps(study(base_url, requests, concurrency)))
    env = {**os.environ, "LATENCYLAB_HOME": str(work)}
    started = time.perf_counter()
    process = psutil.Popen([*command(), "run", str(path), "--no-report", "--run-id", RUN_ID], env=env,
                           stdout=open(work / "run.log", "wb"), stderr=open(work / "run.err", "wb"), cwd=ROOT)
    journal = work / "data" / "runs" / RUN_ID / "samples.jsonl"
    timeline, next_at = [], started + every_s
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() >= next_at:
            with contextlib.suppress(psutil.Error, OSError):
                lines = _lines(journal) if journal.exists() else 0
                timeline.append((round(time.perf_counter() - started), lines, process.memory_info().rss / 2**20))
            next_at += every_s
        time.sleep(0.05)
    return {"rc": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - started,
            "peak_rss_mib": usage.ru_maxrss / 1024, "timeline": timeline, "stderr": (work / "run.err").read_text()}


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))


def written(work: Path) -> dict[str, Any]:
    """What the run left: lines of its journal, rows and unique seqs of its Parquet copy, the samples' time span."""
    folder = work / "data" / "runs" / RUN_ID
    parquet = folder / "samples.parquet"
    table = pq.read_table(parquet, columns=["seq", "ok", "started_at", "e2e_ms"]) if parquet.exists() else None
    out: dict[str, Any] = {"journal_lines": _lines(folder / "samples.jsonl"), "parquet_rows": None}
    if table is not None and table.num_rows:
        ends = pc.add(table.column("started_at"), pc.divide(table.column("e2e_ms").fill_null(0.0), 1000.0))
        out |= {"parquet_rows": table.num_rows, "unique_seq": len(pc.unique(table.column("seq"))),
                "ok": pc.sum(table.column("ok")).as_py(),
                "span_s": pc.max(ends).as_py() - pc.min(table.column("started_at")).as_py()}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--keep", type=Path, default=None, help="keep the run's folder here (default: deleted)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with server() as base_url:
            run = collect(work, base_url, args.requests, args.concurrency)
        left = written(work)
    print(f"requests planned:   {args.requests} at concurrency {args.concurrency} (exit {run['rc']})")
    print(f"samples written:    {left['journal_lines']} journal lines; samples.parquet: {left['parquet_rows']} rows, "
          f"{left.get('unique_seq')} unique seq, {left.get('ok')} ok")
    if left.get("span_s"):
        print(f"rate:               {left['parquet_rows'] / left['span_s']:.0f} requests/s while collecting "
              f"({left['span_s']:.1f} s); {args.requests / run['wall_s']:.0f} requests/s over the whole command "
              f"({run['wall_s']:.1f} s: start-up, check, the Parquet copy at the end)")
    print(f"peak RSS:           {run['peak_rss_mib']:.0f} MiB (latencylab run)")
    print("RSS as it went:     " + ", ".join(f"{t}s {n} samples {rss:.0f} MiB" for t, n, rss in run["timeline"][::max(
        1, len(run["timeline"]) // 12)]))
    if run["rc"]:
        print(run["stderr"][-2000:])
    return {"args": vars(args) | {"keep": str(args.keep)}, **run, **left}


if __name__ == "__main__":
    main()
