"""How long `latencylab` takes to answer: `--help`, `runs` and `check --help`, each as a fresh process.

Prints the median (and the fastest and slowest) of N runs of each command and the third-party packages it
imported; asserts nothing: `python benchmarks/startup.py [N]` (default 7). Goal: `--help` under 0.5 s. The command
is the installed console script beside this Python (`.venv/bin/latencylab`), run with this process's environment:
from a work tree, set PYTHONPATH=lib so that its code is the one timed. Runs list an empty LATENCYLAB_HOME.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (["--help"], ["runs"], ["check", "--help"])
# Prints the top-level packages imported, at exit: what the time was spent on.
PROBE = ("import atexit, json, os, sys; atexit.register(lambda: open(os.environ['STARTUP_MODULES'], 'w')"
         ".write(json.dumps(sorted({m.split('.')[0] for m in sys.modules}))))\n")


def _script() -> Path:
    script = Path(sys.executable).with_name("latencylab")
    if not script.exists():
        sys.exit(f"no {script}: install latencylab into this Python's environment first (make install)")
    return script


def time_command(args: list[str], runs: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(_script()), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        times.append(time.perf_counter() - start)
    return times


def packages(args: list[str], env: dict[str, str], home: Path) -> list[str]:
    out = home / "modules.json"
    code = PROBE + "import runpy; sys.argv = ['latencylab', *sys.argv[1:]]; " \
        "runpy.run_module('latencylab.cli', run_name='__main__')"
    subprocess.run([sys.executable, "-c", code, *args], env={**env, "STARTUP_MODULES": str(out)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stdlib = set(sys.stdlib_module_names) | {"latencylab", "__main__", "_distutils_hack", "sitecustomize"}
    return [m for m in json.loads(out.read_text()) if m not in stdlib and not m.startswith("_")]


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "LATENCYLAB_HOME": home}
        print(f"{'command':<22}{'median':>9}{'fastest':>9}{'slowest':>9}  third-party packages imported")
        for args in COMMANDS:
            times = time_command(args, runs, env)
            shown = ", ".join(packages(args, env, Path(home))) or "none"
            print(f"{'latencylab ' + ' '.join(args):<22}{statistics.median(times):>8.3f}s{min(times):>8.3f}s"
                  f"{max(times):>8.3f}s  {shown}")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        print(f"{'(python -c pass)':<22}{time.perf_counter() - start:>8.3f}s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
