"""What the host evidence (issue 26, collect/host.py) costs per request: its two snapshots and the fill, timed on the
bundled Ollama with a model loaded (its server and runner processes, the model's 98 MB blob for mincore).

The snapshots are taken before t0 and after the last byte, never inside a request's timed window: this is time the
client spends between requests (a closed loop's turnaround), not error in any TTFT.

    .venv/bin/python benchmarks/host_evidence_cost.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx

from latencylab.collect.engine.ollama import BundledOllama
from latencylab.collect.host import HostProbe, cached_share
from latencylab.core.sample import Sample

MODEL = "smollm2:135m-q4_1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    with BundledOllama(models=(MODEL,)) as server:
        httpx.post(f"{server.base_url}/api/generate", json={"model": MODEL, "keep_alive": -1}, timeout=120)
        shown = httpx.post(f"{server.base_url}/api/show", json={"model": MODEL}, timeout=30).json()["modelfile"]
        blob = Path(next(line[5:].strip() for line in shown.splitlines() if line.startswith("FROM /")))
        probe = HostProbe(server.pids, blob)
        parts: dict[str, list[float]] = {"before": [], "after + fill": [], "mincore": [], "per request": []}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            before = probe.snapshot(before=True)
            t1 = time.perf_counter()
            probe.fill(Sample(), before, probe.snapshot(before=False))
            t2 = time.perf_counter()
            cached_share(blob)
            t3 = time.perf_counter()
            parts["before"].append((t1 - t0) * 1000)
            parts["after + fill"].append((t2 - t1) * 1000)
            parts["mincore"].append((t3 - t2) * 1000)
            parts["per request"].append((t2 - t0) * 1000)
        print(f"{len(server.pids())} server processes, a {blob.stat().st_size / 1e6:.0f} MB model file, "
              f"{args.rounds} rounds (ms):")
        for name, values in parts.items():
            q = statistics.quantiles(values, n=100)
            print(f"  {name:<12} median {statistics.median(values):6.2f}   p99 {q[98]:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
