"""Notebook execution (papermill), HTML publication (nbconvert), the report's inputs and reports/index.html."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import papermill
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

from . import analysis, document, exports, paths, store
from .baselines import read_baseline_csv
from .findings import RunInfo, run_info

KERNEL = "python3"
TEMPLATES = Path(__file__).parent / "templates"  # `latencylab`: the lab template, minus CDN scripts
# Cells tagged remove_cell talk to notebook users; `explore` cells show the DataFrames behind a section.
HIDDEN_TAGS = {"remove_cell", "explore"}


def execute(notebook: Path, output: Path, parameters: dict[str, Any], *, progress: bool = False) -> Path:
    """Run `notebook` headlessly with `parameters` into `output` (an executed copy)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters, kernel_name=KERNEL,
        progress_bar=progress, cwd=str(paths.PROJECT_ROOT),
        # The kernel's own log (TCP transport notice, shutdown interrupt) is noise to a user.
        extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
    )
    return output


def to_html(executed: Path, output: Path) -> Path:
    """Convert an executed notebook to a self-contained HTML page without code (figures embedded)."""
    exporter = HTMLExporter(extra_template_basedirs=[str(TEMPLATES)], template_name="latencylab",
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags=HIDDEN_TAGS), enabled=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    output.write_text(body, encoding="utf-8")
    return output


def publish(run_ids: list[str], **parameters: Any) -> Path:
    """Execute the report notebook for `run_ids`: reports/<run_id>/{index.html, latency.md, figures/,
    summary.json, samples.csv}."""
    folder = paths.report_dir(run_ids[-1])
    executed = execute(paths.REPORT_NOTEBOOK, folder / paths.REPORT_NOTEBOOK.name,
                       {"run_ids": run_ids, "output_dir": str(folder), **parameters})
    page = to_html(executed, folder / "index.html")
    write_index()
    return page


def read_run(run_id: str) -> RunInfo:
    """The one place a report reads a run's metadata (run.json)."""
    return run_info(store.load_meta(run_id))


def resolve_runs(run_ids: list[str]) -> list[str]:
    """`run_ids` as given, or the latest run when empty."""
    if not isinstance(run_ids, list):
        raise TypeError(f"parameter run_ids must be a list, got {run_ids!r}")
    run_ids = run_ids or store.list_runs()[-1:]
    if not run_ids:
        raise store.RunNotFound(f"no runs yet in {paths.RUNS_DIR}; run `latencylab run STUDY` first")
    return run_ids


def read_checks(run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The findings of each run's check.json (the check that ran before it), by run id; runs without one left out."""
    found = {}
    for run_id in run_ids:
        path = paths.run_dir(run_id) / "check.json"
        if path.exists():
            found[run_id] = json.loads(path.read_text(encoding="utf-8")).get("findings", [])
    return found


def load_samples(run_ids: list[str], baseline: str = "") -> tuple[pd.DataFrame, str, str | None]:
    """The runs' samples, with an external CSV baseline's put first: (samples, baseline scenario, CSV or None)."""
    samples = store.load_runs(run_ids)
    if not baseline.endswith(".csv"):
        return samples, baseline, None
    path = Path(baseline) if Path(baseline).is_absolute() else paths.PROJECT_ROOT / baseline
    external = read_baseline_csv(path)
    return pd.concat([external, samples], ignore_index=True), str(external["scenario"].iloc[0]), baseline


def document_of(run_ids: list[str], *, baseline: str = "", lang: str = "", targets: dict[str, Any] | None = None
                ) -> document.Report:
    """What the report notebook builds, in one call: the findings of `run_ids` and their document.

    `baseline` is a scenario name or a CSV of earlier TTFB values; `lang` defaults to the study's.
    """
    for name, value, kind in (("baseline", baseline, str), ("lang", lang, str), ("targets", targets or {}, dict)):
        if not isinstance(value, kind):
            raise TypeError(f"parameter {name} must be a {kind.__name__}, got {value!r}")
    run_ids = resolve_runs(run_ids)
    runs = [read_run(r) for r in run_ids]
    samples, baseline, external = load_samples(run_ids, baseline)
    found = analysis.findings(samples, runs, baseline=baseline or None, targets={**runs[0].targets, **(targets or {})},
                              external=external, checks=read_checks(run_ids))
    return document.Report(found, lang or runs[0].lang)


def write_index() -> Path:
    """reports/index.html: every published report, newest first, with its date, study, status and headline."""
    rows = []
    for page in sorted(paths.REPORTS_DIR.glob("*/index.html"), reverse=True):
        run_id = page.parent.name
        try:
            run = read_run(run_id)
        except store.RunNotFound:
            run = run_info({"run_id": run_id})
        summary = exports.read_summary(page.parent) or {}
        first = (summary.get("scenarios") or [{}])[0]
        rows.append({"run_id": run_id, "date": run.started_at[:16].replace("T", " "), "study": run.study,
                     "description": run.description, "status": run.status, "headline": summary.get("headline"),
                     "metric": str(summary.get("metric", "ttfb_ms")).removesuffix("_ms").upper(),
                     "median": first.get("median")})
    html = document.environment("en").get_template("report/index.html.j2").render(rows=rows, lang="en")
    path = paths.REPORTS_DIR / "index.html"
    path.write_text(html, encoding="utf-8")
    return path
