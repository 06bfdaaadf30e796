"""The layers hold: `lint-imports` (import-linter, contracts in pyproject.toml) passes on the package, and fails
when a lower layer imports a higher one (shown on a copy of the package with one such import added)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path, lib: Path) -> subprocess.CompletedProcess[str]:
    if not LINT.exists():
        pytest.fail(f"{LINT} is missing: install the dev extra (`make install`)")
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_the_package_keeps_its_layers() -> None:
    result = _lint(ROOT, ROOT / "lib")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "lib" / "latencylab", tmp_path / "lib" / "latencylab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    stats = tmp_path / "lib" / "latencylab" / "analyse" / "stats.py"
    stats.write_text(stats.read_text() + "\nimport httpx  # noqa: E402,F401\n")
    result = _lint(tmp_path, tmp_path / "lib")
    assert result.returncode != 0
    assert "latencylab.analyse is not allowed to import httpx" in result.stdout
