"""`latencylab` command line: run a study, publish its report, list runs, manage the embedded engine."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

from papermill.exceptions import PapermillExecutionError
from tqdm import tqdm

from . import engine, exports, paths, preflight, report, runner, store
from .baselines import BaselineError
from .study import StudyError, load_study, with_base_url
from .workload import plan_requests

EXIT_USAGE = 2


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _follow(run_id: str, total: int, done: threading.Event) -> None:
    """Terminal progress bar fed by the run's samples.jsonl, which the notebook kernel appends to."""
    samples = paths.run_dir(run_id) / "samples.jsonl"
    with tqdm(total=total, desc=run_id, unit="req") as bar:
        while True:
            finished = done.is_set()
            count = samples.read_bytes().count(b"\n") if samples.exists() else 0
            bar.update(count - bar.n)
            if finished:
                return
            time.sleep(0.25)


def cmd_run(args: argparse.Namespace) -> int:
    report_options = _report_options(args)
    if args.resume:
        spec, _ = runner.resumable(args.resume)
        run_id = args.resume
    elif args.study:
        spec, _ = load_study(args.study)
        run_id = args.run_id or store.free_run_id(spec.name)
        if paths.run_dir(run_id).exists():
            raise StudyError(f"run {run_id!r} already exists in {paths.RUNS_DIR}; choose another --run-id")
    else:
        raise StudyError("name a STUDY to run, or --resume RUN_ID to continue a stopped run")
    if args.base_url:
        spec = with_base_url(spec, args.base_url)
    if not args.resume:
        asyncio.run(preflight.check(spec, os.environ.get(runner.API_KEY_ENV)))  # before anything is written
    total = len(plan_requests(spec, run_id))
    done = threading.Event()
    follower = threading.Thread(target=_follow, args=(run_id, total, done), daemon=True)
    follower.start()
    status = "failed"
    try:
        report.execute(paths.COLLECT_NOTEBOOK, paths.report_dir(run_id) / paths.COLLECT_NOTEBOOK.name,
                       {"study": str(args.study or ""), "base_url": args.base_url or "", "run_id": run_id,
                        "resume": bool(args.resume)})
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        done.set()
        follower.join()
        store.settle_status(run_id, status)
    print(f"samples: {paths.run_dir(run_id) / 'samples.jsonl'}")
    if not args.no_report:
        _print_report(report.publish([run_id], **report_options))
    return 0


def _resolve_run(run_id: str) -> str:
    if run_id == "latest":
        runs = store.list_runs()
        if not runs:
            raise store.RunNotFound(f"no runs yet in {paths.RUNS_DIR}; run `latencylab run STUDY` first")
        return runs[-1]
    store.read_meta(run_id)  # a clear error for an unknown run
    return run_id


def _report_options(args: argparse.Namespace) -> dict[str, str]:
    if args.baseline and args.baseline.endswith(".csv") and not Path(args.baseline).is_file() \
            and not (paths.PROJECT_ROOT / args.baseline).is_file():
        raise StudyError(f"--baseline: no CSV file {args.baseline!r}")
    return {"baseline": args.baseline or "", "lang": args.lang or ""}


def cmd_report(args: argparse.Namespace) -> int:
    run_ids = [_resolve_run(r) for r in args.runs]
    for run_id in run_ids:
        store.load_run(run_id)  # a corrupt samples file is said here, before anything is written
    _print_report(report.publish(run_ids, **_report_options(args)))
    return 0


def _print_report(page: Path) -> None:
    """The report's path, then its key figures as a short table (from the summary.json beside it)."""
    summary = exports.read_summary(page.parent)
    if summary:
        print(exports.terminal_table(summary))
    print(f"report: {page}")


def cmd_runs(args: argparse.Namespace) -> int:
    for run_id in store.list_runs():
        meta = store.read_meta(run_id)
        samples = paths.run_dir(run_id) / "samples.jsonl"
        count = samples.read_bytes().count(b"\n") if samples.exists() else 0
        print(f"{run_id}  {meta.get('status', '?'):<11}  {count:>5} samples")
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        for path in engine.prepare_models():
            print(path)
        return 0
    if args.action == "version":
        print(engine.Engine().version())
        return 0
    engine.prepare_models()
    with engine.Engine(models_max=args.models_max, sleep_idle_seconds=args.sleep_idle_seconds) as server:
        print(f"llama-server (router mode) at {server.base_url}  models: "
              f"{', '.join(p.stem for p in sorted(paths.MODELS_DIR.glob('*.gguf')))}  (Ctrl-C stops it)")
        while True:
            time.sleep(3600)


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", help="scenario to compare against, or a CSV of earlier TTFB values "
                        "(e.g. data/baselines/seed-phi3-baseline.csv); default: the first scenario")
    parser.add_argument("--lang", choices=["en", "es"], help="report language; default: the study's (lang:)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latencylab",
        description="Measure how long an LLM server takes to answer (first byte, first token), "
        "explain why, and publish the evidence as an HTML report.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study through notebooks/1.0-collect.ipynb, then publish its report",
                         description="Run a study (a YAML file, or a name under studies/) with papermill; "
                         "samples go to data/runs/<run_id>/, the report to reports/<run_id>/index.html.")
    run.add_argument("study", nargs="?", help="study name under studies/ (e.g. embedded-demo) or a path to a YAML file")
    run.add_argument("--resume", metavar="RUN_ID", help="continue a stopped run where it stopped, with the same plan")
    run.add_argument("--base-url", help="server URL for scenarios that do not name one (e.g. http://localhost:11434)")
    run.add_argument("--run-id", help="run folder name (default: UTC time + study name)")
    run.add_argument("--no-report", action="store_true", help="collect only; publish later with `latencylab report`")
    _add_report_options(run)
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="publish reports/<run_id>/index.html from one or more runs",
                         description="Execute notebooks/2.0-latency-report.ipynb for the runs and convert it to HTML.")
    rep.add_argument("runs", nargs="+", metavar="RUN", help="run id(s) under data/runs/, or `latest`")
    _add_report_options(rep)
    rep.set_defaults(func=cmd_report)

    runs = sub.add_parser("runs", help="list the runs in data/runs/ with status and sample count")
    runs.set_defaults(func=cmd_runs)

    eng = sub.add_parser("engine", help="the embedded llama.cpp engine: prepare models, show version, serve",
                         description="prepare: put SmolLM2 Q4_1 and its Q8_0 variant in data/models/. "
                         "version: llama-server's version. serve: run the router on a free loopback port.")
    eng.add_argument("action", choices=["prepare", "version", "serve"])
    eng.add_argument("--models-max", type=int, default=1, help="models loaded at once (serve)")
    eng.add_argument("--sleep-idle-seconds", type=float, help="unload a model after this idle time (serve)")
    eng.set_defaults(func=cmd_engine)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return args.func(args)
    except (StudyError, store.RunNotFound, store.CorruptRun, engine.EngineError, BaselineError,
            preflight.PreflightError, runner.RunError) as exc:
        print(f"latencylab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PapermillExecutionError as exc:
        print(f"latencylab: error: {exc.ename}: {exc.evalue} (in notebook cell {exc.exec_count}; the executed "
              f"notebook is under {paths.REPORTS_DIR})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("latencylab: interrupted; samples collected so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
