import json
from datetime import UTC

import pandas as pd
import pytest

from latencylab import store
from latencylab.sample import Sample


def _write_run(run_id: str, n: int) -> store.RunWriter:
    writer = store.RunWriter(run_id, study={"name": "t"}, settings={})
    for seq in range(n):
        writer.append(Sample(run_id=run_id, seq=seq, scenario="a", ttfb_ms=10.0 + seq, itl_ms=[1.0, 2.0]))
    return writer


def test_samples_are_on_disk_before_the_run_closes(workdir):
    writer = _write_run("r1", 3)
    lines = writer.samples_path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["seq"] == 2
    assert store.read_meta("r1")["status"] == "running"
    writer.close("complete")
    meta = store.read_meta("r1")
    assert meta["status"] == "complete" and meta["ended_at"] and meta["host"]["cpu_count"]


def test_load_run_has_the_documented_dtypes(workdir):
    _write_run("r1", 2).close("complete")
    frame = store.load_run("r1")
    assert len(frame) == 2
    for column, dtype in store.SAMPLE_DTYPES.items():
        assert str(frame[column].dtype) == dtype, column
    assert frame["ttft_ms"].isna().all()  # never measured: <NA>, not 0
    assert frame.loc[1, "itl_ms"] == [1.0, 2.0]


def test_a_torn_last_line_is_skipped_with_a_warning(workdir):
    writer = _write_run("r1", 2)
    writer.close("interrupted")
    with open(writer.samples_path, "a") as f:
        f.write('{"run_id": "r1", "seq": 2, "scen')
    with pytest.warns(UserWarning, match="torn last line"):
        frame = store.load_run("r1")
    assert list(frame["seq"]) == [0, 1]


def test_a_corrupt_line_in_the_middle_names_file_and_line(workdir):
    writer = _write_run("r1", 1)
    writer.close("complete")
    content = writer.samples_path.read_text()
    writer.samples_path.write_text("garbage\n" + content)
    with pytest.raises(ValueError, match=r"samples.jsonl:1: not a JSON sample"):
        store.load_run("r1")


def test_unknown_run_and_shared_folder_are_refused(workdir):
    with pytest.raises(store.RunNotFound, match="no run 'nope'"):
        store.load_run("nope")
    _write_run("r1", 0).close("complete")
    with pytest.raises(FileExistsError):
        store.RunWriter("r1", study={}, settings={})


def test_load_runs_concatenates_and_lists_in_order(workdir):
    _write_run("20260101T000000Z-a", 1).close("complete")
    _write_run("20260102T000000Z-a", 2).close("complete")
    assert store.list_runs() == ["20260101T000000Z-a", "20260102T000000Z-a"]
    frame = store.load_runs(store.list_runs())
    assert len(frame) == 3 and isinstance(frame, pd.DataFrame)


def test_run_ids_sort_by_time():
    from datetime import datetime

    run_id = store.new_run_id("demo", datetime(2026, 11, 27, 4, 5, 6, tzinfo=UTC))
    assert run_id == "20261127T040506Z-demo"


def test_two_runs_started_in_the_same_second_get_two_folders(workdir):
    first = store.free_run_id("demo")
    store.RunWriter(first, study={}, settings={}).close("complete")
    second = store.free_run_id("demo")
    assert second != first
    store.RunWriter(second, study={}, settings={}).close("complete")
    assert len(store.list_runs()) == 2
