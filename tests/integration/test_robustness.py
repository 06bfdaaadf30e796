"""Bad input gets one clear error and changes nothing; a stopped run loses nothing and can be resumed;
a key given for a server is never written anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from doubles.ollama import OllamaDouble
from latencylab.collect import runner, servers
from latencylab.core import paths
from latencylab.plan.study import parse_study
from latencylab.publish import render
from latencylab.runs import store

CLI = [sys.executable, "-m", "latencylab.cli"]


def _cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env={**os.environ, paths.HOME_ENV: str(home), **(env or {})},
                          capture_output=True, text=True, timeout=300)


def _write_study(tmp_path: Path, **study: object) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps({"name": "s", "workload": {"requests": 3, "max_tokens": 4}, **study}))
    return path


def _nothing_written(home: Path) -> bool:
    return not (home / "data" / "runs").exists() and not (home / "reports").exists()


def test_an_unreachable_server_is_said_before_anything_starts(tmp_path):
    study = _write_study(tmp_path, backend="ollama", base_url="http://127.0.0.1:9",
                         scenarios=[{"name": "a", "model": "phi3:mini"}])
    result = _cli(tmp_path, "run", str(study))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot reach the ollama server at http://127.0.0.1:9" in result.stderr
    assert "is it running" in result.stderr and _nothing_written(tmp_path)


def test_a_model_the_server_lacks_suggests_ollama_pull(tmp_path):
    with OllamaDouble(models={"tiny": 1_000_000}) as server:
        study = _write_study(tmp_path, backend="ollama", base_url=server.base_url,
                             scenarios=[{"name": "a", "model": "phi3:mini"}])
        result = _cli(tmp_path, "run", str(study))
    assert result.returncode == 2
    assert "has no model 'phi3:mini': run `ollama pull phi3:mini`" in result.stderr and _nothing_written(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["run"], "name a STUDY to run, or --resume RUN_ID"),
    (["run", "--resume", "nope"], "no run 'nope'"),
    (["run", "embedded-demo", "--base-url", "localhost:11434"], "--base-url: base_url: String should match"),
    (["report", "latest"], "no runs yet"),
])
def test_bad_command_lines_exit_2_with_one_line(tmp_path, args, message):
    result = _cli(tmp_path, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert _nothing_written(tmp_path)


def test_a_notebook_parameter_of_the_wrong_type_is_named(workdir):
    with pytest.raises(Exception, match="parameter run_ids must be a list, got 'x'"):
        render.execute(paths.REPORT_NOTEBOOK, workdir / "out.ipynb", {"run_ids": "x"})


def _study_on(server: OllamaDouble, requests: int = 6):
    return parse_study({"name": "resumable", "backend": "ollama", "base_url": server.base_url,
                        "workload": {"requests": requests, "max_tokens": 3},
                        "scenarios": [{"name": "a", "model": "tiny"}, {"name": "b", "model": "tiny"}]})


def test_an_interrupted_run_resumes_with_the_same_plan_and_loses_nothing(workdir, interrupt_after):
    with OllamaDouble(models={"tiny": 1_000_000}, load_delay_s=0.02) as server:
        study = _study_on(server)
        with pytest.raises(KeyboardInterrupt):
            runner.run_study(study, run_id="cut", on_sample=interrupt_after(5), progress=False)
        assert store.load_meta("cut").status == "interrupted"
        with open(paths.run_dir("cut") / "samples.jsonl", "a") as f:
            f.write('{"seq": 5, "scen')  # a sample a killed run left half-written
        with pytest.warns(UserWarning, match="torn last line"):
            assert len(store.load_run("cut")) == 5
        runner.run("cut", progress=False)
        prompts = [b["prompt"] for b in server.bodies("/api/generate")]
    frame = store.load_run("cut")
    meta = store.load_meta("cut")
    assert sorted(frame["seq"]) == list(range(12)) and frame["ok"].all()
    assert meta.status == "complete" and [r.samples_kept for r in meta.resumes] == [5]
    assert (frame["phase"] == "first").sum() == 2  # one per scenario, not again after the resume
    assert len(set(prompts)) == 12  # the same unique prompts: the plan did not change


def test_a_complete_run_cannot_be_resumed(workdir):
    with OllamaDouble(models={"tiny": 1_000_000}) as server:
        runner.run_study(_study_on(server, requests=1), run_id="done", progress=False)
    with pytest.raises(runner.RunError, match="run done is complete: there is nothing to resume"):
        runner.run("done")


def test_an_api_key_is_sent_but_never_written_anywhere(tmp_path):
    secret = "sk-latencylab-test-0123456789"
    with OllamaDouble(models={"tiny": 1_000_000}) as server:
        study = _write_study(tmp_path, backend="ollama", base_url=server.base_url,
                             scenarios=[{"name": "a", "model": "tiny"}])
        result = _cli(tmp_path, "run", str(study), "--run-id", "keyed", env={servers.API_KEY_ENV: secret})
        assert result.returncode == 0, result.stderr[-2000:]
    produced = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "index.html" for p in produced) and any(p.name == "samples.jsonl" for p in produced)
    leaked = [p for p in produced if secret.encode() in p.read_bytes()]
    assert not leaked and secret not in result.stdout + result.stderr
    from latencylab.collect.backends import make_backend

    assert make_backend("openai", "http://h", api_key=secret).headers() == {"Authorization": f"Bearer {secret}"}


@pytest.mark.engine
def test_a_run_killed_with_sigkill_keeps_every_finished_sample_and_leaves_no_server(workdir, models):
    code = (
        "from latencylab.collect import runner; from latencylab.plan.study import parse_study;"
        "runner.run_study(parse_study({'name': 'k', 'workload': {'requests': 200, 'max_tokens': 4},"
        "'scenarios': [{'name': 'a', 'model': 'smollm2-135m-q4_1'}]}), run_id='killed', progress=False)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, paths.HOME_ENV: str(workdir)})
    samples = paths.run_dir("killed") / "samples.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not samples.exists() or samples.read_text().count("\n") < 3):
        assert process.poll() is None, "the run ended before it could be killed (see its traceback above)"
        time.sleep(0.1)
    servers = [p for p in psutil.Process(process.pid).children(recursive=True) if "llama-server" in p.name()]
    assert servers
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    kept = store.load_run("killed")
    assert len(kept) >= 3 and kept["ok"].all() and list(kept["seq"]) == list(range(len(kept)))
    assert store.load_meta("killed").status == "running"  # it never got to say otherwise
    _, alive = psutil.wait_procs(servers, timeout=15)
    assert not alive, "the engine outlived a SIGKILLed run"


def test_a_corrupt_samples_file_is_named_with_its_line_and_nothing_is_written(tmp_path):
    run = tmp_path / "data" / "runs" / "broken"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": "broken", "status": "complete"}))
    (run / "samples.jsonl").write_text('{"seq": 0}\nnot json\n{"seq": 2}\n')
    result = _cli(tmp_path, "report", "broken")
    assert result.returncode == 2 and "samples.jsonl:2: not a JSON sample" in result.stderr
    assert not (tmp_path / "reports").exists()


def test_no_subprocess_goes_through_a_shell_and_yaml_is_loaded_safely():
    source = "\n".join(p.read_text() for p in (paths.PROJECT_ROOT / "lib").rglob("*.py"))
    assert "shell=True" not in source and "os.system(" not in source
    assert "yaml.load(" not in source and "yaml.safe_load(" in source
