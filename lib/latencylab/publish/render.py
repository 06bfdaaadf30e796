"""Publishing a report: the report notebook executed by papermill into a hidden folder, its HTML made by nbconvert,
the folder swapped in whole, then reports/index.html. The CLI's process does this; the notebook's kernel never
imports it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

# jsonschema builds a Lark grammar for the "iri" formats at import when rfc3987_syntax is installed (jupyter-events
# pulls it in): 0.7 s of every `latencylab report`, for formats no notebook schema uses. Without it they go unchecked.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import papermill
from papermill.exceptions import PapermillExecutionError

from latencylab.analyse.findings import run_info
from latencylab.core import paths
from latencylab.core.errors import NotebookFailed
from latencylab.publish import report, templating
from latencylab.publish.exporters import index_html, summary_json
from latencylab.runs import store

KERNEL = "python3"


def execute(notebook: Path, output: Path, parameters: dict[str, Any], *, progress: bool = False) -> Path:
    """Run `notebook` headlessly with `parameters` into `output` (an executed copy, written once at the end, or
    when a cell fails: papermill's save after every cell cost a second of the demo's report)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _interrupts_cancel_the_loop():
            papermill.execute_notebook(
                str(notebook), str(output), parameters=parameters, kernel_name=KERNEL,
                progress_bar=progress, cwd=str(paths.PROJECT_ROOT), request_save_on_cell_execute=False,
                # The kernel's own log (TCP transport notice, shutdown interrupt) is noise to a user.
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
    except PapermillExecutionError as exc:  # one line; the traceback stays in the executed notebook
        raise NotebookFailed(f"{exc.ename}: {exc.evalue} (in notebook cell {exc.exec_count}; the executed "
                             f"notebook is {output})") from exc
    return output


@contextlib.contextmanager
def _interrupts_cancel_the_loop() -> Iterator[None]:
    """Ctrl-C (or SIGTERM, which the CLI makes one) while papermill runs: what runs on nbclient's asyncio loop is
    cancelled, as `asyncio.run` does, and KeyboardInterrupt raised once papermill is out. One while no loop runs
    (nothing is left pending then), or a second one, raises it at once.

    Raised inside the loop, it left a cell's tasks pending there, its one-second liveness poll among them. The
    kernel's shutdown that follows runs the same loop: where that took over a second (a busy kernel, a loaded
    machine), the poll woke after the kernel had died and ended the cell's task with DeadKernelError, a task no
    one awaited any more, and Python printed 'Task exception was never retrieved' with a traceback at exit."""
    # Signal handlers are the main thread's. Inside a running loop (a notebook's kernel, whose tasks are not ours to
    # cancel) papermill runs its steps on a thread of its own, out of the signals' way.
    if threading.current_thread() is not threading.main_thread() or _running_loop() is not None:
        yield
        return
    previous: dict[int, Callable[[int, FrameType | None], Any]] = {
        signum: handler for signum in (signal.SIGINT, signal.SIGTERM) if callable(handler := signal.getsignal(signum))}
    caught: list[int] = []

    def cancel(signum: int, frame: FrameType | None) -> None:
        loop = _running_loop()
        if loop is None or caught:
            previous[signum](signum, frame)
            return
        caught.append(signum)
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.call_soon_threadsafe(lambda: None)  # wakes the loop where it waits in select()

    for signum in previous:
        signal.signal(signum, cancel)
    try:
        yield
    except BaseException:
        if caught:  # whatever the cancelled step raised (nbclient's cell: DeadKernelError), it was the interrupt
            raise KeyboardInterrupt(f"signal {caught[0]}") from None
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if caught:
        raise KeyboardInterrupt(f"signal {caught[0]}")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def report_name(run_ids: list[str]) -> str:
    """A run's report is named after the run; a comparison of several, after them all, so that comparing
    A with B never replaces B's own report."""
    if len(run_ids) == 1:
        return run_ids[0]
    digest = hashlib.sha1("\n".join(run_ids).encode()).hexdigest()[:8]
    return f"compare-{len(run_ids)}-runs-{digest}-{run_ids[-1]}"


def publish(run_ids: list[str], *, notebook: Path = paths.REPORT_NOTEBOOK, **parameters: Any) -> Path:
    """Execute the report notebook (`notebook`: a changed copy of it) for `run_ids`: its Save cell writes
    reports/<report_name>/{latency.md, figures/, summary.json, samples.csv}, then index.html is made of it.

    Written in a hidden folder beside it that replaces the report's folder once every file is there: a report
    stopped half-way (Ctrl-C) leaves the one before it whole, and nothing half-written. A notebook that fails
    leaves its executed copy there (`.<name>.partial/`), to read."""
    folder = paths.report_dir(report_name(run_ids))
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        executed = execute(notebook, partial / notebook.name,
                           {"run_ids": run_ids, "output_dir": str(partial), **parameters})
        index_html.export(executed, partial)
    except KeyboardInterrupt:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _replace_folder(partial, folder)
    write_index()
    return folder / "index.html"


def _replace_folder(new: Path, folder: Path) -> None:
    """`new` in the place of `folder`: two renames (a folder cannot be replaced by one), the old one removed after."""
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def write_index() -> Path:
    """reports/index.html: every published report, newest first, with its date, study, status and headline."""
    rows = []
    for page in sorted(paths.REPORTS_DIR.glob("*/index.html"), reverse=True):
        run_id = page.parent.name
        if run_id.startswith("."):  # a report being written, or one whose notebook failed
            continue
        try:
            run = report.read_run(run_id)
        except store.RunNotFound:
            run = run_info(store.RunMeta(run_id=run_id))
        summary = summary_json.read(page.parent) or {}
        first = (summary.get("scenarios") or [{}])[0]
        rows.append({"run_id": run_id, "date": run.started_at[:16].replace("T", " "), "study": run.study,
                     "description": run.description, "status": run.status, "headline": summary.get("headline"),
                     "metric": str(summary.get("metric", "ttfb_ms")).removesuffix("_ms").upper(),
                     "median": first.get("median")})
    html = templating.environment("en").get_template("report/index.html.j2").render(rows=rows, lang="en")
    path = paths.REPORTS_DIR / "index.html"
    partial = path.with_name(".index.html.partial")
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, path)  # never half a page
    return path
