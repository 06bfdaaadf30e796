"""How long publishing a report takes for big runs, and how it grows: for each size N (default 10 000 and 100 000)
a synthetic run of N samples is written, then published through `render.publish` (the report notebook in its
kernel, nbconvert, latency.md, summary.json, samples.csv). Goals (issue 24): 10⁵ samples in under 20 s, 10⁶ in
under 3 minutes with a peak under 4 GB. Prints figures, asserts nothing about them.

Peak memory is the largest sum of the resident sets (RSS) of this process and all its children (papermill's
kernel) while publishing, sampled every 0.1 s with psutil; each run is written beforehand by a child process of
its own, so that this one holds only what publishing holds (as `latencylab report` would). The growth exponent
between consecutive sizes is log(t₂/t₁) / log(N₂/N₁): 1 is linear, 2 quadratic.

    .venv/bin/python benchmarks/report_render.py [N ...]
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil

CHUNK = 20_000  # samples written at a time: the journal of 10⁶ samples (1.3 GB) never sits in memory whole
VARYING = ("seq", "scenario", "ok", "phase", "state", "started_at", "headers_ms", "ttfb_ms", "ttft_ms", "e2e_ms",
           "load_ms", "prompt_eval_ms")


def journal_line(run_id: str) -> str:
    """A sample's line as `RunWriter.append` writes it (json.dumps of `Sample.to_dict()`), with a format field
    for each value that varies between the synthetic samples."""
    from latencylab.core.sample import Sample

    fixed = Sample(run_id=run_id, eval_ms=300.0, output_tokens=32, output_tokens_source="server").to_dict()
    line = json.dumps({**fixed, **{name: f"@{name}@" for name in VARYING}}, allow_nan=False)
    line = line.replace("{", "{{").replace("}", "}}")
    for name in VARYING:
        line = line.replace(f'"@{name}@"', "{" + name + "}")
    return line + "\n"


def synthetic(rng: np.random.Generator, start: int, n: int) -> dict[str, list]:
    """Samples start … start + n − 1: two scenarios in turn, 40 % of the baseline's requests pay a load."""
    seq = np.arange(start, start + n)
    baseline = seq % 2 == 0
    cold = baseline & (rng.random(n) < 0.4)
    ttfb = rng.lognormal(np.where(cold, 6.3, 4.5), 0.3)
    return {"seq": seq.tolist(), "scenario": np.where(baseline, '"baseline"', '"optimised"').tolist(),
            "ok": np.where(rng.random(n) > 0.001, "true", "false").tolist(),
            "phase": np.where(seq < 2, '"first"', '"subsequent"').tolist(),
            "state": np.where(cold, '"cold"', '"warm"').tolist(), "started_at": (1.8e9 + seq * 0.5).tolist(),
            "headers_ms": (ttfb * 0.5).tolist(), "ttfb_ms": ttfb.tolist(), "ttft_ms": ttfb.tolist(),
            "e2e_ms": (ttfb + 300).tolist(), "load_ms": np.where(cold, ttfb * 0.6, 0.0).tolist(),
            "prompt_eval_ms": (ttfb * 0.3).tolist()}


def write_run(run_id: str, n: int) -> None:
    """A run of n synthetic samples, its journal written in bulk (the same lines `RunWriter.append` writes)."""
    from latencylab.core.sample import Sample
    from latencylab.plan.study import parse_study
    from latencylab.runs import store

    study = parse_study({"name": "bench", "scenarios": [{"name": "baseline", "model": "m"},
                                                         {"name": "optimised", "model": "m"}]})
    store.create_run(run_id, study=study)
    writer = store.RunWriter(run_id)
    line, rng = journal_line(run_id), np.random.default_rng(0)
    with open(writer.samples_path, "a", encoding="utf-8") as journal:
        for start in range(0, n, CHUNK):
            columns = synthetic(rng, start, min(CHUNK, n - start))
            journal.writelines(line.format(**dict(zip(VARYING, values, strict=True)))
                               for values in zip(*(columns[name] for name in VARYING), strict=True))
    writer.close("complete")
    with open(writer.samples_path, encoding="utf-8") as journal:  # the bulk lines are RunWriter's, to the byte
        written = journal.readline()
    assert written == json.dumps(Sample(**json.loads(written)).to_dict(), allow_nan=False) + "\n", written


class PeakMemory:
    """The largest RSS of this process and its children together, sampled every 0.1 s in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.1):
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:  # it ended between the listing and the reading
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["LATENCYLAB_HOME"] = home  # before importing latencylab: paths are read at import
        from latencylab.publish import render

        print(f"{'samples':>9}  {'write s':>8}  {'publish s':>9}  {'exponent':>8}  {'peak MiB':>8}  {'html MiB':>8}")
        previous: tuple[int, float] | None = None
        for n in sizes:
            run_id = f"bench-{n}"
            start = time.perf_counter()
            # written by a process of its own: what this one holds while publishing is publishing's alone
            subprocess.run([sys.executable, __file__, "--write", run_id, str(n)], check=True)
            write_s = time.perf_counter() - start
            with PeakMemory() as memory:
                start = time.perf_counter()
                page = render.publish([run_id])
                publish_s = time.perf_counter() - start
            growth = f"{math.log(publish_s / previous[1]) / math.log(n / previous[0]):8.2f}" if previous else " " * 8
            print(f"{n:>9}  {write_s:8.1f}  {publish_s:9.1f}  {growth}  {memory.peak / 2**20:8.0f}  "
                  f"{page.stat().st_size / 2**20:8.1f}", flush=True)
            previous = (n, publish_s)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:  # the run of one size, in LATENCYLAB_HOME (main's child)
        write_run(sys.argv[2], int(sys.argv[3]))
    else:
        main([int(arg) for arg in sys.argv[1:]] or [10_000, 100_000])
