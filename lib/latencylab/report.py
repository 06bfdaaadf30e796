"""Notebook execution (papermill) and HTML publication (nbconvert), plus the report's text pieces."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import papermill
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

from . import paths, store
from .baselines import read_baseline_csv
from .document import Document, build

KERNEL = "python3"
TEMPLATES = Path(__file__).parent / "templates"  # `latencylab`: the lab template, minus CDN scripts


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
    # Cells tagged remove_cell talk to notebook users (what the notebook does), not to report readers.
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"remove_cell"}), enabled=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    output.write_text(body, encoding="utf-8")
    return output


def publish(run_ids: list[str], **parameters: Any) -> Path:
    """Execute the report notebook for `run_ids`: reports/<run_id>/{index.html, latency.md, figures/}."""
    folder = paths.report_dir(run_ids[-1])
    executed = execute(paths.REPORT_NOTEBOOK, folder / paths.REPORT_NOTEBOOK.name,
                       {"run_ids": run_ids, "output_dir": str(folder), **parameters})
    page = to_html(executed, folder / "index.html")
    write_index()
    return page


def document(run_ids: list[str], *, baseline: str = "", lang: str = "", targets: dict[str, Any] | None = None
             ) -> Document:
    """The latency documentation of `run_ids` (latest run when empty), as the report notebook shows it.

    `baseline` is a scenario name or a CSV of earlier TTFB values; `lang` defaults to the study's.
    """
    for name, value, kind in (("run_ids", run_ids, list), ("baseline", baseline, str), ("lang", lang, str),
                              ("targets", targets or {}, dict)):
        if not isinstance(value, kind):
            raise TypeError(f"parameter {name} must be a {kind.__name__}, got {value!r}")
    run_ids = run_ids or store.list_runs()[-1:]
    if not run_ids:
        raise store.RunNotFound(f"no runs yet in {paths.RUNS_DIR}; run `latencylab run STUDY` first")
    samples = store.load_runs(run_ids)
    metas = [store.load_meta(r) for r in run_ids]
    external = None
    if baseline.endswith(".csv"):
        external_samples = read_baseline_csv(paths.PROJECT_ROOT / baseline if not Path(baseline).is_absolute()
                                             else baseline)
        samples = pd.concat([external_samples, samples], ignore_index=True)
        external, baseline = baseline, external_samples["scenario"].iloc[0]
    study = metas[0].study
    return build(samples, metas, lang=lang or (study.lang if study else "en"), baseline=baseline or None,
                 targets={**study_targets(metas[0]), **(targets or {})}, external=external)


def write_index() -> Path:
    """reports/index.html: every published report, newest first."""
    rows = []
    for folder in sorted(paths.REPORTS_DIR.glob("*/index.html"), reverse=True):
        run_id = folder.parent.name
        try:
            meta: store.RunMeta | None = store.load_meta(run_id)
        except (store.RunNotFound, store.CorruptRun):
            meta = None
        name = meta.name if meta else ""
        description = meta.description if meta else ""
        rows.append(f'<tr><td><a href="{html.escape(run_id)}/index.html">{html.escape(run_id)}</a></td>'
                    f"<td>{html.escape(name)}</td>"
                    f"<td>{html.escape(description)}</td>"
                    f"<td>{html.escape(meta.status if meta else '')}</td>"
                    f'<td><a href="{html.escape(run_id)}/latency.md">latency.md</a></td></tr>')
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>latencylab reports</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left}</style></head>"
            "<body><h1>latencylab reports</h1><table><tr><th>run</th><th>study</th><th>description</th>"
            "<th>status</th><th>Markdown</th></tr>" + "".join(rows) + "</table></body></html>")
    path = paths.REPORTS_DIR / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def study_targets(meta: store.RunMeta) -> dict[str, Any]:
    """The targets a run's study resolved to (the seed's defaults unless the study changed them)."""
    return meta.study.targets.model_dump() if meta.study else {}
