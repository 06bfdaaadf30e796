"""Notebook execution (papermill) and HTML publication (nbconvert), plus the report's text pieces."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import papermill
from nbconvert import HTMLExporter
from pandas.io.formats.style import Styler

from . import paths

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
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    output.write_text(body, encoding="utf-8")
    return output


def publish(run_ids: list[str], **parameters: Any) -> Path:
    """Execute the report notebook for `run_ids` and write reports/<run_id>/index.html."""
    folder = paths.report_dir(run_ids[-1])
    executed = execute(paths.REPORT_NOTEBOOK, folder / paths.REPORT_NOTEBOOK.name,
                       {"run_ids": run_ids, **parameters})
    return to_html(executed, folder / "index.html")


def run_header(meta: dict[str, Any]) -> str:
    """Markdown lines describing a run: study, server, host, when, status (all text escaped)."""
    host, server = meta.get("host", {}), meta.get("server", {})
    ram = host.get("ram_bytes")
    rows = {
        "Run": meta.get("run_id"),
        "Study": meta.get("study", {}).get("name"),
        "Status": meta.get("status"),
        "Started / ended (UTC)": f"{meta.get('started_at')} / {meta.get('ended_at')}",
        "Server": f"{server.get('kind', 'as given in the study')} {server.get('version', '')}".strip(),
        "Host": f"{host.get('platform')}, {host.get('cpu_count')} CPUs"
        + (f", {ram / 2**30:.1f} GiB RAM" if ram else ""),
        "latencylab": meta.get("versions", {}).get("latencylab"),
    }
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {html.escape(str(value))} |" for key, value in rows.items()]
    return "\n".join(lines)


def study_targets(meta: dict[str, Any]) -> dict[str, Any]:
    """The targets a run's study resolved to (the seed's defaults unless the study changed them)."""
    return dict(meta.get("settings", {}).get("resolved", {}).get("targets", {}))


def _number_format(frame: pd.DataFrame, column: object) -> str:
    if "share" in str(column) or column == "cv":
        return "{:.0%}"
    return "{:,.0f}" if pd.api.types.is_integer_dtype(frame[column]) else "{:,.1f}"


def table(frame: pd.DataFrame) -> Styler:
    """A figures table as the report shows it: counts whole, times to 0.1 ms, shares and CV in %, gaps as –."""
    numeric = frame.select_dtypes("number").columns
    return frame.style.format({c: _number_format(frame, c) for c in numeric}, na_rep="–")


def targets_table(frame: pd.DataFrame) -> Styler:
    """Targets with ✅ pass / ❌ fail (and – where the run holds no evidence)."""
    shown = frame.copy()
    shown["passed"] = shown["passed"].map({True: "✅ pass", False: "❌ fail"}).fillna("– no evidence")
    shown["goal"] = [_goal_text(t, g) for t, g in zip(shown["target"], shown["goal"], strict=True)]
    shown["measured"] = [_goal_text(t, m) for t, m in zip(shown["target"], shown["measured"], strict=True)]
    return shown.style.hide(axis="index")


def _goal_text(target: str, value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if "CV" in target:
        return f"{value:.0%}"
    return f"{value:,.0f} ms"


def has_sweep(meta: dict[str, Any]) -> bool:
    """Whether the run's study was a keep-alive sweep."""
    return bool(meta.get("settings", {}).get("resolved", {}).get("sweep"))
