"""Every folder the project reads or writes, in one place (cookiecutter-data-science style).

Notebooks, studies and models are read from the checkout; data/ and reports/ are written under
$LATENCYLAB_HOME when it is set (tests use a temporary one), else under the checkout too.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "LATENCYLAB_HOME"

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # lib/latencylab/core/ → the checkout (editable install)
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
STUDIES_DIR = PROJECT_ROOT / "studies"
MODELS_DIR = PROJECT_ROOT / "data" / "models"  # shared by every run, whatever $LATENCYLAB_HOME says
COLLECT_NOTEBOOK = NOTEBOOKS_DIR / "1.0-collect.ipynb"
REPORT_NOTEBOOK = NOTEBOOKS_DIR / "2.0-latency-report.ipynb"

WORK_ROOT = Path(os.environ.get(HOME_ENV) or PROJECT_ROOT).resolve()
DATA_DIR = WORK_ROOT / "data"
RUNS_DIR = DATA_DIR / "runs"
REPORTS_DIR = WORK_ROOT / "reports"


def run_dir(run_id: str) -> Path:
    """Folder of one run: data/runs/<run_id>/."""
    return RUNS_DIR / run_id


def report_dir(run_id: str) -> Path:
    """Folder of one run's report: reports/<run_id>/."""
    return REPORTS_DIR / run_id
