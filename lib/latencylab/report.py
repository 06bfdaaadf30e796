"""Notebook execution (papermill) and HTML publication (nbconvert), plus the report's text pieces."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import nbformat
import papermill
from nbconvert import HTMLExporter

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
