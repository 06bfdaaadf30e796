"""How fast runs are written and read back: appending samples (one flush each) and load_run().

Prints figures, asserts nothing: `python benchmarks/store_throughput.py [N]` (default 100 000 samples).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["LATENCYLAB_HOME"] = home  # before importing latencylab: paths are read at import
        from latencylab.core.sample import Sample
        from latencylab.runs import store

        sample = Sample(run_id="bench", scenario="a", ok=True, headers_ms=5.1, ttfb_ms=40.2, ttft_ms=40.2,
                        e2e_ms=380.0, itl_ms=[10.5] * 31, output_tokens=32, output_tokens_source="server",
                        text="x" * 120)
        store.create_run("bench")
        writer = store.RunWriter("bench")
        start = time.perf_counter()
        for seq in range(n):
            sample.seq = seq
            writer.append(sample)
        write_s = time.perf_counter() - start
        writer.close("complete")
        size = Path(writer.samples_path).stat().st_size
        start = time.perf_counter()
        frame = store.load_run("bench")
        load_s = time.perf_counter() - start
    print(f"samples:            {n}")
    print(f"append + flush:     {write_s:.2f} s  ({write_s / n * 1e6:.1f} µs per sample)")
    print(f"samples.jsonl size: {size / 2**20:.1f} MiB")
    print(f"load_run:           {load_s:.2f} s  ({len(frame)} rows)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
