"""The notebooks executed headlessly, as users run them: through the CLI and papermill."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from latencylab.core import paths
from latencylab.runs import store

CLI = [sys.executable, "-m", "latencylab.cli"]
EMBEDDED_FIGURE = re.compile(r'<img[^>]*src="data:image/png;base64')


def _cli(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, paths.HOME_ENV: str(home)}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _study(tmp_path: Path, requests: int, **workload: object) -> Path:
    study = {
        "name": "tiny",
        "workload": {"requests": requests, "max_tokens": 4, "order": "interleaved", **workload},
        "scenarios": [{"name": "q8", "model": "smollm2-135m-q8_0"}, {"name": "q4", "model": "smollm2-135m-q4_1"}],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(study))  # JSON is YAML
    return path


@pytest.mark.engine
def test_cli_runs_a_study_through_both_notebooks_on_the_real_engine(tmp_path, models):
    result = _cli("run", str(_study(tmp_path, requests=2)), "--run-id", "nb-run", home=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "data" / "runs" / "nb-run"
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["scenario"] for s in samples] == ["q8", "q4", "q8", "q4"]
    assert all(s["ok"] and s["ttft_ms"] > 0 for s in samples)
    assert [s["state"] for s in samples][:2] == ["cold", "cold"]  # one model resident at a time
    assert [s["phase"] for s in samples] == ["first", "first", "subsequent", "subsequent"]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and meta["server"]["version"].startswith("version")
    assert (run_dir / "llama-server.log").stat().st_size > 0
    html = tmp_path / "reports" / "nb-run" / "index.html"
    assert f"report: {html}" in result.stdout
    # stderr holds the progress bar and nothing else: no check warning, no engine error, no Python warning
    progress = [line for line in re.split(r"[\r\n]+", result.stderr) if line.strip()]
    assert progress and all(line.startswith("nb-run: ") for line in progress), result.stderr[-3000:]
    assert "4/4" in progress[-1]
    text = html.read_text()
    # both scenarios in the report's tables (their names alone are in every model name too)
    assert "<td>q8</td>" in text and "<td>q4</td>" in text and len(EMBEDDED_FIGURE.findall(text)) >= 6
    assert (html.parent / "latency.md").exists() and (html.parent / "summary.json").exists()


@pytest.mark.engine
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_keeps_the_samples_marks_the_run_and_stops_everything(tmp_path, models, background_job, stop):
    env = {**os.environ, paths.HOME_ENV: str(tmp_path)}
    study = _study(tmp_path, requests=500)
    cli = background_job([*CLI, "run", str(study), "--run-id", "cut"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = tmp_path / "data" / "runs" / "cut" / "samples.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not samples.exists() or samples.read_text().count("\n") < 3):
        time.sleep(0.2)
    descendants = psutil.Process(cli.pid).children(recursive=True)
    assert any("llama-server" in " ".join(p.cmdline()) for p in descendants if p.is_running())
    cli.send_signal(stop)
    _, stderr = cli.communicate(timeout=60)
    assert cli.returncode == 130 and "latencylab: interrupted; samples collected so far are kept" in stderr
    kept = store.read_samples(samples)
    finished = [s for s in kept if s["error_kind"] != "interrupted"]
    assert len(finished) >= 3 and all(s["ok"] for s in finished)
    assert len(kept) - len(finished) <= 1  # the request in flight, if one was, with the times it reached
    assert json.loads((samples.parent / "run.json").read_text())["status"] == "interrupted"
    time.sleep(1)
    assert not [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_cli_errors_are_one_clear_line_and_exit_2(tmp_path):
    result = _cli("report", "no-such-run", home=tmp_path)
    assert result.returncode == 2 and "no run 'no-such-run'" in result.stderr
    assert "Traceback" not in result.stderr
    result = _cli("run", "no-such-study", home=tmp_path)
    assert result.returncode == 2 and "no study file 'no-such-study'" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nscenarios: [{name: a, model: m}]\nworkload: {reqests: 2}\n")
    result = _cli("run", str(bad), home=tmp_path)
    assert result.returncode == 2 and "did you mean 'requests'" in result.stderr
    assert not (tmp_path / "data" / "runs").exists()  # nothing written


def test_help_explains_every_command():
    result = subprocess.run([*CLI, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "{run,check,report,runs,engine}" in result.stdout
    for command in ("run", "check", "report", "runs", "engine"):
        # argparse lists each command on a line of its own, its help beside it
        assert re.search(rf"^    {command} +[a-z]", result.stdout, re.MULTILINE), f"{command}: no help line"
        own = subprocess.run([*CLI, command, "--help"], capture_output=True, text=True)
        assert own.returncode == 0 and own.stdout.startswith(f"usage: latencylab {command} "), own.stdout


def test_a_run_that_cannot_go_on_ends_with_one_line_and_keeps_its_files(tmp_path):
    from doubles.ollama import OllamaDouble

    with OllamaDouble(models={"tiny": 1_000_000}) as server:
        study = tmp_path / "pull.yaml"
        study.write_text(json.dumps({"name": "pull", "backend": "ollama", "base_url": server.base_url,
                                     "prepare": {"pull": True}, "scenarios": [{"name": "a", "model": "nope:7b"}]}))
        result = _cli("run", str(study), "--run-id", "stops", home=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: run stops stopped: pull nope:7b: pull model manifest: file does not exist" in result.stderr
    assert json.loads((tmp_path / "data" / "runs" / "stops" / "run.json").read_text())["status"] == "failed"
    # the check said so before the run started, and its findings and the server facts stay with the run
    assert "check error: a: tag 'nope:7b' cannot be pulled" in result.stderr
    run_dir = tmp_path / "data" / "runs" / "stops"
    assert json.loads((run_dir / "check.json").read_text())["findings"][0]["rule"] == "tag-unavailable"
    run_facts = json.loads((run_dir / "facts.json").read_text())
    assert run_facts["before"]["servers"][0]["version"] == run_facts["after"]["servers"][0]["version"] == "0.33.0"


def test_the_collect_notebook_and_the_cli_make_the_same_run(workdir):
    """One workflow: a run made in JupyterLab holds the same files as one made from the terminal."""
    from doubles.ollama import OllamaDouble
    from latencylab.publish import render

    with OllamaDouble(models={"tiny": 1_000_000}) as server:
        study = workdir / "nb.yaml"
        study.write_text(json.dumps({"name": "nb", "backend": "ollama", "base_url": server.base_url,
                                     "workload": {"requests": 2, "max_tokens": 3},
                                     "scenarios": [{"name": "a", "model": "tiny"}]}))
        render.execute(paths.COLLECT_NOTEBOOK, workdir / "collect.ipynb", {"study": str(study), "run_id": "nb-alone"})
        result = _cli("run", str(study), "--run-id", "cli-run", "--no-report", home=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    notebook_run, cli_run = paths.run_dir("nb-alone"), paths.run_dir("cli-run")
    assert sorted(p.name for p in notebook_run.iterdir()) == sorted(p.name for p in cli_run.iterdir()) == [
        "check.json", "facts.json", "lock", "run.json", "samples.jsonl", "samples.parquet"]
    for run_id in ("nb-alone", "cli-run"):
        assert store.load_meta(run_id).status == "complete"
        assert list(store.load_run(run_id)["seq"]) == [0, 1]
        facts = store.read_facts(run_id)
        assert facts["before"]["servers"][0]["version"] == facts["after"]["servers"][0]["version"] == "0.33.0"
