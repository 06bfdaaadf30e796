"""`latencylab run` writes every sample of a 10⁴-request run against a server that answers at once, and closes it
with its columnar copy (benchmarks/collect_scale.py runs the same at 10⁶ and prints the rate and memory)."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import collect_scale  # noqa: E402

REQUESTS = 10_000


@pytest.mark.timeout(300)
def test_ten_thousand_requests_are_all_written(tmp_path):
    with collect_scale.server(lifetime_s=280) as base_url:
        run = collect_scale.collect(tmp_path, base_url, REQUESTS, concurrency=8)
    assert run["rc"] == 0, run["stderr"][-3000:]
    folder = tmp_path / "data" / "runs" / collect_scale.RUN_ID
    assert (folder / "samples.jsonl").read_bytes().count(b"\n") == REQUESTS
    table = pq.read_table(folder / "samples.parquet", columns=["seq", "ok"])
    assert table.num_rows == REQUESTS and len(pc.unique(table.column("seq"))) == REQUESTS
    assert pc.min(table.column("seq")).as_py() == 0 and pc.all(table.column("ok")).as_py()
    assert collect_scale.written(tmp_path)["unique_seq"] == REQUESTS

