"""The CLI answers at once, and a Ctrl-C at any moment ends it cleanly.

Each command imports what it uses: `--help`, `runs`, `check` and the collection phase of `run` load no notebook,
plotting or statistics stack (nor pandas, but where a command reads samples into a table). And SIGINT at start-up,
during the preflight, the check, a model load or the publishing of a report ends the command with exit 130, one
line on stderr and no traceback, leaving no half-written run or report. (How long start-up takes is printed by
benchmarks/startup.py, not asserted here: a shared machine would make a timed test flake.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import doubles.ollama
from doubles.ollama import OllamaDouble
from latencylab.core import paths

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).with_name("latencylab")  # the console script, as a user starts it
HEAVY = {"papermill", "nbformat", "nbconvert", "nbclient", "jupyter_client", "ipykernel", "IPython", "matplotlib",
         "seaborn", "scipy"}
FIXTURE_RUN = Path(__file__).resolve().parents[1] / "data" / "fixture-run"
# Runs the CLI in this interpreter and writes the top-level packages it imported when it exits, however it exits.
PROBE = ("import atexit, json, os, runpy, sys\n"
         "atexit.register(lambda: open(os.environ['PROBE_OUT'], 'w').write(json.dumps(sorted("
         "{m.split('.')[0] for m in sys.modules}))))\n"
         "sys.argv = ['latencylab', *sys.argv[1:]]\n"
         "runpy.run_module('latencylab.cli', run_name='__main__')\n")

# The CLI with what made a Ctrl-C in a notebook cell end with "Task exception was never retrieved" and a traceback
# now and then (issue 32) made certain: the kernel takes 1.2 s longer to stop, as a busy kernel on a loaded machine
# does (the cell's one-second liveness poll then wakes after it died), and a file says when the report notebook's
# imports cell (its third, seconds long) has started.
SLOW_STOP = ("import asyncio, os, pathlib, sys\n"
             "from jupyter_client.manager import AsyncKernelManager\n"
             "from papermill.clientwrap import PapermillNotebookClient\n"
             "cleanup, execute = AsyncKernelManager._async_cleanup_resources, PapermillNotebookClient.execute_cell\n"
             "async def slow_cleanup(self, restart=False):\n"
             "    await asyncio.sleep(1.2)\n"
             "    await cleanup(self, restart=restart)\n"
             "def marked(self, cell, index, *args, **kwargs):\n"
             "    if index == 2:\n"
             "        pathlib.Path(os.environ['CELL_STARTED']).touch()\n"
             "    return execute(self, cell, index, *args, **kwargs)\n"
             "AsyncKernelManager._async_cleanup_resources = AsyncKernelManager.cleanup_resources = slow_cleanup\n"
             "PapermillNotebookClient.execute_cell = marked\n"
             "from latencylab import cli\n"
             "sys.exit(cli.main(sys.argv[1:]))\n")


def _env(home: Path, **more: str) -> dict[str, str]:
    return {**os.environ, paths.HOME_ENV: str(home), **more}


def _imported(home: Path, *args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    out = home / "imported.json"
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=_env(home, PROBE_OUT=str(out)),
                          capture_output=True, text=True, timeout=120)
    return set(json.loads(out.read_text())), done


def _study(path: Path, base_url: str, requests: int = 2) -> Path:
    path.write_text(json.dumps({"name": "quick", "backend": "ollama", "base_url": base_url,
                                "workload": {"requests": requests, "max_tokens": 3},
                                "scenarios": [{"name": "a", "model": "tiny"}]}))
    return path


@pytest.mark.parametrize("args", [["--help"], ["runs"], ["check", "--help"], ["run", "--help"]],
                         ids=["help", "runs", "check-help", "run-help"])
def test_commands_that_publish_nothing_import_no_notebook_plotting_or_statistics_stack(tmp_path, args):
    imported, done = _imported(tmp_path, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not imported & (HEAVY | {"pandas"}), sorted(imported & (HEAVY | {"pandas"}))


def test_check_and_the_collection_phase_of_run_import_none_of_it(tmp_path):
    with OllamaDouble(models={"tiny": 1_000_000}) as server:
        study = _study(tmp_path / "study.yaml", server.base_url)
        checked, done = _imported(tmp_path, "check", str(study))
        assert done.returncode == 0, done.stderr[-2000:]
        collected, done = _imported(tmp_path, "run", str(study), "--no-report")
        assert done.returncode == 0, done.stderr[-2000:]
    assert not checked & (HEAVY | {"pandas"}), sorted(checked & (HEAVY | {"pandas"}))
    assert not collected & HEAVY, sorted(collected & HEAVY)
    assert "samples:" in done.stdout


def test_report_splits_its_imports_between_the_process_that_publishes_and_the_kernel(tmp_path):
    """`latencylab report` imports papermill and nbconvert, not the analysis or the plotting stack (the kernel
    does: each import is paid once, before the notebook starts) nor jsonschema's IRI grammar (0.7 s); the report
    notebook's import cell loads no notebook machinery. Each took seconds of re-publishing the demo (issue 24)."""
    run_id = json.loads((FIXTURE_RUN / "run.json").read_text())["run_id"]
    shutil.copytree(FIXTURE_RUN, tmp_path / "data" / "runs" / run_id)
    published, done = _imported(tmp_path, "report", run_id)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "papermill" in published and "nbconvert" in published
    assert not published & {"matplotlib", "seaborn", "scipy", "lark"}, published  # lark: the IRI grammar's parser
    cell = json.loads(paths.REPORT_NOTEBOOK.read_text())["cells"]
    imports = next("".join(c["source"]) for c in cell if "from latencylab.publish import" in "".join(c["source"]))
    probe = imports + "\nimport sys\nprint(sorted({m.split('.')[0] for m in sys.modules}))"
    kernel = subprocess.run([sys.executable, "-c", probe], env=_env(tmp_path), capture_output=True, text=True,
                            timeout=120, check=True, cwd=paths.PROJECT_ROOT)
    loaded = set(json.loads(kernel.stdout.strip().replace("'", '"')))
    assert {"pandas", "matplotlib", "seaborn"} <= loaded
    assert not loaded & {"papermill", "nbformat", "nbconvert", "jsonschema"}, loaded


def _interrupted(cli: subprocess.Popen[str]) -> str:
    """SIGINT now; the command must end with exit 130 and one line of its own on stderr, the last (a progress
    bar's lines may come before it). Returns that line."""
    cli.send_signal(signal.SIGINT)
    _, stderr = cli.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr[-3000:]
    said = [line for line in stderr.splitlines() if line.startswith("latencylab:")]
    assert cli.returncode == 130 and len(said) == 1 and stderr.endswith(said[0] + "\n"), \
        (cli.returncode, stderr[-3000:])
    return said[0]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server accepts connections and never answers (the kernel accepts; nobody reads)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _started(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([str(SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(condition: Callable[[], object], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _catches_sigint(pid: int) -> bool:
    """Whether the process has a handler of its own for SIGINT (/proc/PID/status, SigCgt: a bit per signal)."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(line for line in status if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) >> (signal.SIGINT - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("delay_s", [0.0, 0.005, 0.02, 0.05, 0.1, 0.2])
def test_ctrl_c_at_any_moment_of_start_up_exits_130_without_a_traceback(tmp_path, silent_server, background_job,
                                                                       delay_s):
    """Started as a background job (SIGINT ignored), the command catches SIGINT from the first line of `main`:
    from then on, while it imports what the command uses and starts, Ctrl-C is one line and 130. (The
    interpreter's own first milliseconds, before any code of ours runs, are Python's.)"""
    study = _study(tmp_path / "study.yaml", silent_server)
    cli = background_job([str(SCRIPT), "check", str(study)], env=_env(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _catches_sigint(cli.pid), timeout_s=30)
    time.sleep(delay_s)
    assert _interrupted(cli) == "latencylab: interrupted; samples collected so far are kept"


def test_ctrl_c_during_the_preflight_leaves_nothing(tmp_path, silent_server):
    study = _study(tmp_path / "study.yaml", silent_server)
    cli = _started(["run", str(study)], _env(tmp_path))
    time.sleep(1.5)  # started, and waiting for /api/version (the preflight allows it 5 s)
    _interrupted(cli)
    assert not (tmp_path / "data" / "runs").exists() and not (tmp_path / "reports").exists()


def test_ctrl_c_during_the_check_exits_130(tmp_path, monkeypatch):
    shown = doubles.ollama._Handler._show

    def slow_show(handler: doubles.ollama._Handler, body: dict[str, object]) -> None:
        time.sleep(10)  # bounded: the double's own request timeout ends the connection after this
        shown(handler, body)

    monkeypatch.setattr(doubles.ollama._Handler, "_show", slow_show)
    with OllamaDouble(models={"tiny": 1_000_000}, request_timeout_s=15) as server:
        cli = _started(["check", str(_study(tmp_path / "study.yaml", server.base_url))], _env(tmp_path))
        _wait_for(lambda: any(r.path == "/api/show" for r in server.received))
        _interrupted(cli)


def test_ctrl_c_during_a_model_load_keeps_a_consistent_interrupted_run(tmp_path):
    with OllamaDouble(models={"tiny": 1_000_000}, load_delay_s=8) as server:
        study = _study(tmp_path / "study.yaml", server.base_url, requests=3)
        cli = _started(["run", str(study), "--run-id", "cut"], _env(tmp_path))
        _wait_for(lambda: server.bodies("/api/generate"))
        time.sleep(0.5)  # inside the first request, while the model loads
        _interrupted(cli)
    run = tmp_path / "data" / "runs" / "cut"
    meta = json.loads((run / "run.json").read_text())
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert meta["status"] == "interrupted"
    assert [(s["seq"], s["error_kind"]) for s in samples] == [(0, "interrupted")]
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("moment", ["imports", "notebook", "cell-slow-stop"])
def test_ctrl_c_while_a_report_is_published_leaves_no_half_written_report(tmp_path, moment):
    run_id = json.loads((FIXTURE_RUN / "run.json").read_text())["run_id"]
    shutil.copytree(FIXTURE_RUN, tmp_path / "data" / "runs" / run_id)
    reports, started = tmp_path / "reports", tmp_path / "cell-started"
    if moment == "cell-slow-stop":
        cli = subprocess.Popen([sys.executable, "-c", SLOW_STOP, "report", run_id],
                               env=_env(tmp_path, CELL_STARTED=str(started)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    else:
        cli = _started(["report", run_id], _env(tmp_path))
    if moment == "imports":
        time.sleep(0.5)  # importing papermill, nbconvert and the analysis
    elif moment == "notebook":
        _wait_for(lambda: reports.exists() and any(reports.iterdir()))  # the notebook is being executed
        time.sleep(1.0)
    else:
        _wait_for(started.exists)
        time.sleep(0.3)  # inside the imports cell: its tasks wait on the kernel
    _interrupted(cli)
    assert not reports.exists() or not any(reports.iterdir()), sorted(reports.rglob("*"))
