"""samples.parquet, the columnar copy of a run's journal: written when the run closes, read while it matches the
journal, built again when it does not, never taking the place of a journal still being written; the same rows
and dtypes as reading the journal line by line; open to pandas and pyarrow as the README says."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from latencylab.core import paths
from latencylab.core.sample import Sample
from latencylab.runs import columnar, store

FIXTURE = Path(__file__).parents[1] / "data" / "fixture-run"


def _write_run(run_id: str, n: int, start: int = 0) -> store.RunWriter:
    store.create_run(run_id, study_as_written={"name": "t"})
    writer = store.RunWriter(run_id)
    _append(writer, range(start, start + n))
    return writer


def _append(writer: store.RunWriter, seqs: range) -> None:
    for seq in seqs:
        writer.append(Sample(run_id=writer.run_id, seq=seq, scenario="a", ttfb_ms=10.0 + seq, itl_ms=[1.0, seq],
                             ok=seq % 3 != 0, keep_alive="5m" if seq % 2 else None, text=f"t{seq}"))


def _parquet(run_id: str) -> Path:
    return paths.run_dir(run_id) / "samples.parquet"


def _journal_frame(run_id: str) -> pd.DataFrame:
    """The journal read line by line (json.loads), as load_run() did before samples.parquet."""
    return columnar.samples_frame(store.read_samples(paths.run_dir(run_id) / "samples.jsonl"))


def test_closing_a_run_writes_the_parquet_copy_and_loads_read_it(workdir, monkeypatch):
    _write_run("r1", 7).close("complete")
    assert _parquet("r1").exists()
    monkeypatch.setattr(columnar, "_tables", lambda *a: pytest.fail("the journal was parsed again"))
    frame = store.load_run("r1")
    pd.testing.assert_frame_equal(frame, _journal_frame("r1"))
    assert list(frame.columns) == list(store.SAMPLE_DTYPES)
    assert frame.loc[4, "itl_ms"].tolist() == [1.0, 4.0] and frame.loc[3, "ok"] == False  # noqa: E712 (pandas boolean)


@pytest.mark.parametrize("status", ["interrupted", "failed"])
def test_every_final_status_writes_it(workdir, status):
    _write_run("r1", 2).close(status)
    assert pq.read_table(_parquet("r1")).num_rows == 2


def test_a_journal_that_grew_since_is_read_again_and_the_copy_rebuilt(workdir):
    _write_run("r1", 3).close("interrupted")
    before = _parquet("r1").stat().st_mtime_ns
    writer = store.RunWriter("r1")  # a resume
    _append(writer, range(3, 5))
    writer.release()  # killed: no close, so no new copy; status still "interrupted", nobody holds the lock
    assert list(store.load_run("r1")["seq"]) == [0, 1, 2, 3, 4]
    assert _parquet("r1").stat().st_mtime_ns != before and pq.read_table(_parquet("r1")).num_rows == 5


def test_an_edit_of_the_same_size_near_the_end_is_seen(workdir):
    writer = _write_run("r1", 3)
    writer.close("complete")
    text = writer.samples_path.read_text()
    writer.samples_path.write_text(text.replace('"text": "t2"', '"text": "T2"'))
    assert store.load_run("r1").loc[2, "text"] == "T2"


def test_a_run_being_written_is_read_from_its_journal_and_its_copy_left_alone(workdir):
    writer = _write_run("r1", 2)
    writer.update(status="running")
    _append(writer, range(2, 4))
    assert list(store.load_run("r1")["seq"]) == [0, 1, 2, 3]
    assert not _parquet("r1").exists()  # the writer's to make, when it closes
    writer.close("complete")
    assert pq.read_table(_parquet("r1")).num_rows == 4


def test_a_killed_run_gets_its_copy_at_the_next_load(workdir):
    writer = _write_run("r1", 3)
    writer.update(status="running")
    writer.release()  # the process died: status "running", lock free
    assert len(store.load_run("r1")) == 3 and _parquet("r1").exists()


def test_a_torn_last_line_is_left_out_and_said_at_every_load(workdir):
    writer = _write_run("r1", 2)
    writer.close("interrupted")
    with open(writer.samples_path, "a") as f:
        f.write('{"run_id": "r1", "seq": 2, "scen')
    for _ in range(2):  # built from the journal, then read from the copy: said both times
        with pytest.warns(UserWarning, match=r"samples.jsonl:3: skipped a torn last line"):
            assert list(store.load_run("r1")["seq"]) == [0, 1]


def test_a_broken_line_is_named_in_any_piece_of_the_journal(workdir, monkeypatch):
    writer = _write_run("r1", 40)
    writer.close("complete")
    lines = writer.samples_path.read_text().splitlines(keepends=True)
    monkeypatch.setattr(columnar, "PIECE_BYTES", 700)  # a few lines a piece
    _parquet("r1").unlink()
    pd.testing.assert_frame_equal(store.load_run("r1"), _journal_frame("r1"))
    lines[30] = "not json\n"
    writer.samples_path.write_text("".join(lines))
    with pytest.raises(store.CorruptRun, match=r"samples.jsonl:31: not a JSON sample"):
        store.load_run("r1")


def test_prepare_run_builds_a_missing_copy_and_names_a_broken_line_without_a_frame(workdir, monkeypatch):
    """What `latencylab report` does before its notebook starts: the copy made ready, a corrupt journal said; the
    samples are not turned into a frame in that process (the kernel loads them)."""
    writer = _write_run("r1", 5)
    writer.close("complete")
    _parquet("r1").unlink()
    with monkeypatch.context() as patched:
        patched.setattr(columnar, "_frame", lambda *a: pytest.fail("prepare_run made a frame of the samples"))
        store.prepare_run("r1")
        assert pq.read_table(_parquet("r1")).num_rows == 5
        store.prepare_run("r1")  # current: nothing to do
    lines = writer.samples_path.read_text().splitlines(keepends=True)
    writer.samples_path.write_text("".join([*lines[:2], "not json\n", *lines[3:]]))
    with pytest.raises(store.CorruptRun, match=r"samples.jsonl:3: not a JSON sample"):
        store.prepare_run("r1")
    with pytest.raises(store.RunNotFound):
        store.prepare_run("no-such-run")


def test_a_resumed_run_keeps_one_row_per_request_in_the_parquet_too(workdir):
    writer = _write_run("r1", 2)
    for seq in (2, 3, 2):  # 2 stopped twice, then sent again; 3 stopped and never sent again
        cut = Sample(run_id="r1", seq=seq, scenario="a")
        cut.fail("interrupted", "stopped")
        writer.append(cut)
    writer.append(Sample(run_id="r1", seq=2, scenario="a", ttfb_ms=12.0))
    writer.close("interrupted")
    frame = store.load_run("r1")
    assert list(frame["seq"]) == [0, 1, 3, 2] and list(frame["error_kind"].fillna("")) == ["", "", "interrupted", ""]
    assert pq.read_table(_parquet("r1")).column("seq").to_pylist() == [0, 1, 3, 2]


def test_a_folder_it_cannot_write_is_still_read(workdir, monkeypatch):
    _write_run("r1", 3).close("complete")
    _parquet("r1").unlink()

    def refused(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(columnar.pq, "ParquetWriter", refused)
    with pytest.warns(UserWarning, match="could not be written"):
        assert list(store.load_run("r1")["seq"]) == [0, 1, 2]
    assert not _parquet("r1").exists() and not list(paths.run_dir("r1").glob("*.tmp"))


def test_a_copy_of_another_schema_is_built_again(workdir, monkeypatch):
    _write_run("r1", 2).close("complete")
    monkeypatch.setattr(columnar, "_SCHEMA_ID", "a-newer-sample")
    rebuilt = []
    monkeypatch.setattr(columnar, "write", lambda folder, real=columnar.write: (rebuilt.append(1), real(folder)))
    assert len(store.load_run("r1")) == 2 and rebuilt == [1]


def test_old_journals_convert_as_pandas_did_and_unknown_keys_are_said(workdir):
    shutil.copytree(FIXTURE, paths.run_dir("fixture-run"))
    journal = paths.run_dir("fixture-run") / "samples.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    records[0] |= {"keep_alive": 300, "retired_field": "x"}  # a number where a string is due; a field since gone
    del records[1]["itl_ms"]  # a field not yet written then
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.warns(UserWarning, match="no sample field are left out: retired_field"):
        frame = store.load_run("fixture-run")
    expected = _journal_frame("fixture-run").drop(columns=["retired_field"])[list(store.SAMPLE_DTYPES)]
    expected.loc[1, "itl_ms"] = None  # a missing list is None now; pandas made it NaN from the records
    pd.testing.assert_frame_equal(frame, expected)
    assert frame.loc[0, "keep_alive"].startswith("300") and len(frame) == len(records)  # kept, as a string
    assert frame.loc[1, "itl_ms"] is None and frame.loc[2, "itl_ms"].tolist() == records[2]["itl_ms"]


def test_a_parquet_without_its_journal_is_read_as_it_is(workdir):
    _write_run("r1", 2).close("complete")
    (paths.run_dir("r1") / "samples.jsonl").unlink()  # runs copied to another machine: run.json + Parquet
    assert list(store.load_run("r1")["seq"]) == [0, 1]


def test_the_readme_snippets_read_the_same_rows(workdir, monkeypatch):
    """README, "Big runs": pandas and pyarrow.parquet open samples.parquet as it is."""
    _write_run("20260101T000000Z-a", 3).close("complete")
    _write_run("20260102T000000Z-a", 2).close("complete")
    monkeypatch.chdir(workdir)  # the snippets' paths are relative to the data folder's parent
    # the README's snippets, as written there
    frame = pd.read_parquet("data/runs/20260101T000000Z-a/samples.parquet")
    table = pq.read_table("data/runs/20260101T000000Z-a/samples.parquet")
    every = pd.concat(map(pd.read_parquet, sorted(Path("data/runs").glob("*/samples.parquet"))), ignore_index=True)
    assert list(frame["seq"]) == [0, 1, 2] and list(frame.columns) == list(store.SAMPLE_DTYPES)
    assert frame.loc[2, "itl_ms"].tolist() == [1.0, 2.0] and table.column("text").to_pylist() == ["t0", "t1", "t2"]
    assert isinstance(table.schema.field("itl_ms").type, pa.ListType)
    assert len(every) == 5 and sorted(set(every["run_id"])) == store.list_runs()


def test_duckdb_and_polars_read_it_where_installed(workdir):
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    _write_run("r1", 3).close("complete")
    _write_run("r2", 2).close("complete")
    glob = str(paths.RUNS_DIR / "*" / "samples.parquet")
    counts = duckdb.sql(f"SELECT run_id, count(*) AS n FROM read_parquet('{glob}') GROUP BY run_id ORDER BY run_id")
    assert counts.fetchall() == [("r1", 3), ("r2", 2)]
    assert polars.scan_parquet(glob).select(polars.len()).collect().item() == 5


def test_a_copy_that_cannot_be_written_at_close_leaves_the_run_closed(workdir, monkeypatch):
    def full(folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(columnar, "write", full)
    with pytest.warns(UserWarning, match="samples.parquet not written: .*No space left"):
        _write_run("r1", 2).close("complete")
    assert store.load_meta("r1").status == "complete"
    store.RunWriter("r1").release()  # the lock was let go
