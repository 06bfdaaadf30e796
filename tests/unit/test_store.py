import json
import os
from datetime import UTC
from pathlib import Path

import pandas as pd
import pytest

from latencylab.core import paths
from latencylab.core.sample import Sample
from latencylab.plan.facts import HostFacts
from latencylab.plan.study import parse_study
from latencylab.runs import store


def _write_run(run_id: str, n: int) -> store.RunWriter:
    store.create_run(run_id, study_as_written={"name": "t"})
    writer = store.RunWriter(run_id)
    for seq in range(n):
        writer.append(Sample(run_id=run_id, seq=seq, scenario="a", ttfb_ms=10.0 + seq, itl_ms=[1.0, 2.0]))
    return writer


def test_samples_are_on_disk_before_the_run_closes(workdir):
    writer = _write_run("r1", 3)
    lines = writer.samples_path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["seq"] == 2
    assert store.load_meta("r1").status == "prepared"
    writer.close("complete")
    meta = store.load_meta("r1")
    assert meta.status == "complete" and meta.ended_at and meta.host == {}  # the caller gathers the host


def test_the_run_record_keeps_the_host_facts_its_caller_gathered(workdir):
    host = HostFacts(system="Linux 6.1", machine="x86_64", cpu="EPYC", cores_logical=2, cores_physical=1,
                     ram_bytes=2**33, python="3.11.2", hostname="box")
    store.create_run("r1", host=host)
    assert HostFacts.model_validate(store.load_meta("r1").host) == host


def test_load_run_has_the_documented_dtypes(workdir):
    _write_run("r1", 2).close("complete")
    frame = store.load_run("r1")
    assert len(frame) == 2
    for column, dtype in store.SAMPLE_DTYPES.items():
        assert str(frame[column].dtype) == dtype, column
    assert frame["ttft_ms"].isna().all()  # never measured: <NA>, not 0
    assert frame.loc[1, "itl_ms"].tolist() == [1.0, 2.0]  # a read-only float array per request


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
        store.create_run("r1")


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
    store.create_run(first)
    second = store.free_run_id("demo")
    assert second != first
    store.create_run(second)
    assert len(store.list_runs()) == 2


FIXTURE = Path(__file__).parents[1] / "data" / "fixture-run"


def test_an_older_run_json_loads_as_the_current_schema(workdir):
    """tests/data/fixture-run/run.json is schema 1: settings.resolved, the study as written, resumed_at."""
    folder = paths.run_dir("old")
    folder.mkdir(parents=True)
    old = json.loads((FIXTURE / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**old, "run_id": "old", "resumed_at": ["2026-11-27T05:00:30Z"]}))
    meta = store.load_meta("old")
    assert meta.schema_version == store.SCHEMA_VERSION and meta.status == "complete"
    assert meta.study.name == "fixture" and [s.name for s in meta.study.scenarios] == ["baseline", "optimised"]
    assert meta.study.targets.first_ms == 2000.0 and meta.planned_requests == 25
    assert meta.description.startswith("two scenarios")  # schema 1 kept it only in the study as written
    assert [r.at for r in meta.resumes] == ["2026-11-27T05:00:30Z"] and meta.server["version"] == "version: test"
    assert store.load_meta("old") == store.RunMeta.model_validate_json(meta.model_dump_json())  # round trip


def test_a_swept_study_round_trips_without_doubling_its_scenarios(workdir):
    study = parse_study({"name": "sw", "sweep": {"model": "m", "keep_alive": [1, "5m"], "idle_gap_s": [0, 2]}})
    store.create_run("sw", study=study)
    assert store.load_meta("sw").study == study


def test_run_json_is_replaced_atomically_and_only_by_the_lock_holder(workdir):
    store.create_run("r1")
    writer = store.RunWriter("r1")
    writer.update(status="running", server={"kind": "x"})
    assert store.load_meta("r1").server == {"kind": "x"}
    assert sorted(p.name for p in paths.run_dir("r1").iterdir()) == ["lock", "run.json", "samples.jsonl"]
    with pytest.raises(store.RunLocked, match=f"being written by process {os.getpid()}"):
        store.RunWriter("r1")  # a second writer, even in this process, is refused
    writer.close("interrupted")
    store.RunWriter("r1").close("complete")  # free again once the first let go


def test_an_interrupted_sample_is_replaced_by_the_one_a_resume_sent(workdir):
    writer = _write_run("r1", 2)
    cut = Sample(run_id="r1", seq=2, scenario="a", ttfb_ms=5.0)
    cut.fail("interrupted", "stopped")
    writer.append(cut)
    writer.append(Sample(run_id="r1", seq=2, scenario="a", ttfb_ms=12.0))  # sent again by a resume
    lonely = Sample(run_id="r1", seq=3, scenario="a")
    lonely.fail("interrupted", "stopped")
    writer.append(lonely)
    writer.close("interrupted")
    frame = store.load_run("r1")
    assert list(frame["seq"]) == [0, 1, 2, 3] and list(frame["error_kind"].fillna("")) == ["", "", "", "interrupted"]
    assert store.finished(writer.samples_path, ["seq"]).column("seq").to_pylist() == [0, 1, 2]
