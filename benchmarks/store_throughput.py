"""How fast runs are written and read back: appending samples (one flush each), closing the run (which writes
samples.parquet), then loading them, each load in a fresh process with its peak memory:

* `json`: the journal line by line through json.loads into a DataFrame (how load_run() read every run before
  samples.parquet; kept as `samples_frame(read_samples(...))`);
* `build`: load_run() of a run without samples.parquet (old runs, a killed run): the journal read in pieces by
  pyarrow, the Parquet written, then read;
* `parquet`: load_run() when samples.parquet is there (every later load).

Prints figures, asserts nothing: `python benchmarks/store_throughput.py [N] [--skip-json]` (default 100 000
samples; --skip-json leaves out the json load, which needs several GB at 10⁶).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

RUN = "bench"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load(mode: str) -> None:
    """In a child process: one load of the run, printed as JSON (seconds, rows, peak RSS before and after)."""
    from latencylab.core import paths
    from latencylab.runs import columnar, store

    before = _peak_mib()  # the imports' own
    start = time.perf_counter()
    if mode == "json":
        frame = columnar.samples_frame(store.read_samples(paths.run_dir(RUN) / "samples.jsonl"))
    else:
        frame = store.load_run(RUN)
    print(json.dumps({"s": time.perf_counter() - start, "rows": len(frame), "imports_mib": before,
                      "peak_mib": _peak_mib()}))


def main(n: int, skip_json: bool) -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["LATENCYLAB_HOME"] = home  # before importing latencylab: paths are read at import
        from latencylab.core import paths
        from latencylab.core.sample import Sample
        from latencylab.runs import store

        sample = Sample(run_id=RUN, scenario="a", ok=True, headers_ms=5.1, ttfb_ms=40.2, ttft_ms=40.2,
                        e2e_ms=380.0, itl_ms=[10.5] * 31, output_tokens=32, output_tokens_source="server",
                        text="x" * 120)
        store.create_run(RUN)
        writer = store.RunWriter(RUN)
        start = time.perf_counter()
        for seq in range(n):
            sample.seq = seq
            writer.append(sample)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        writer.close("complete")
        close_s = time.perf_counter() - start
        folder = paths.run_dir(RUN)
        journal_mib = (folder / "samples.jsonl").stat().st_size / 2**20
        parquet_mib = (folder / "samples.parquet").stat().st_size / 2**20
        (folder / "samples.parquet").unlink()  # the first load builds it again, as for a run from before it
        loads = {}
        for mode in ("build", "parquet") + (() if skip_json else ("json",)):
            done = subprocess.run([sys.executable, __file__, "--load", mode], capture_output=True, text=True,
                                  env=os.environ, check=True)
            loads[mode] = json.loads(done.stdout.splitlines()[-1])
    print(f"samples:              {n}")
    print(f"append + flush:       {write_s:.2f} s  ({write_s / n * 1e6:.1f} µs per sample)")
    print(f"close (Parquet):      {close_s:.2f} s")
    print(f"samples.jsonl size:   {journal_mib:.1f} MiB;  samples.parquet: {parquet_mib:.1f} MiB")
    for mode, figures in loads.items():
        print(f"load {mode:<8}         {figures['s']:.2f} s  ({figures['rows']} rows), peak RSS "
              f"{figures['peak_mib']:.0f} MiB ({figures['imports_mib']:.0f} MiB of it imports)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--skip-json", action="store_true")
    parser.add_argument("--load", choices=("json", "build", "parquet"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load(args.load)
    else:
        main(args.n, args.skip_json)
