"""How long publishing a report takes for a big run: N samples (default 100 000) through the report
notebook, nbconvert and latency.md. Goal: under a minute. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/report_render.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["LATENCYLAB_HOME"] = home  # before importing latencylab: paths are read at import
        from latencylab.core.sample import Sample
        from latencylab.plan.study import parse_study
        from latencylab.publish import report
        from latencylab.runs import store

        rng = np.random.default_rng(0)
        study = parse_study({"name": "bench", "scenarios": [{"name": "baseline", "model": "m"},
                                                             {"name": "optimised", "model": "m"}]})
        store.create_run("bench", study=study)
        writer = store.RunWriter("bench")
        start = time.perf_counter()
        for seq in range(n):
            scenario = ("baseline", "optimised")[seq % 2]
            cold = scenario == "baseline" and rng.random() < 0.4
            ttfb = float(rng.lognormal(6.3 if cold else 4.5, 0.3))
            writer.append(Sample(run_id="bench", seq=seq, scenario=scenario, ok=rng.random() > 0.001,
                                 phase="first" if seq < 2 else "subsequent", state="cold" if cold else "warm",
                                 started_at=1.8e9 + seq * 0.5, headers_ms=ttfb * 0.5, ttfb_ms=ttfb, ttft_ms=ttfb,
                                 e2e_ms=ttfb + 300, load_ms=ttfb * 0.6 if cold else 0.0, prompt_eval_ms=ttfb * 0.3,
                                 eval_ms=300.0, output_tokens=32, output_tokens_source="server"))
        writer.close("complete")
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        page = report.publish(["bench"])
        publish_s = time.perf_counter() - start
        size = page.stat().st_size
    print(f"samples:              {n}")
    print(f"writing the run:      {write_s:.1f} s")
    print(f"publishing the report {publish_s:.1f} s  (goal: < 60 s)  index.html {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
