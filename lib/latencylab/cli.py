"""`latencylab` command line: run a study, publish its report, list runs, manage the embedded engine.

Each command imports what it uses when it runs it, so that `--help`, `runs`, `check` and the collection phase of
`run` start at once, without the notebook, plotting and statistics stack (tests/integration/test_cli_startup.py).
This module imports next to nothing itself: a Ctrl-C while the rest is imported reaches `main`, which ends it in one
line and exit 130, as at any later moment.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from latencylab.core.errors import LatencyLabError

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from latencylab.plan.check import CheckResult


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C held back while modules import, and delivered the moment they are in: a KeyboardInterrupt raised
    inside importlib's own callbacks is printed by Python as 'Exception ignored …' with a traceback, and lost."""
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def cmd_run(args: argparse.Namespace) -> int:
    """Create the run once (unless resuming), collect it in this process, then publish its report."""
    import shutil

    from latencylab.collect import workflow
    from latencylab.core import paths
    from latencylab.plan.study import StudyError
    from latencylab.runs import store

    report_options = _report_options(args)
    created = False
    with contextlib.ExitStack() as stack:
        bundled = None
        if args.resume:
            if args.study or args.run_id or args.base_url:
                raise StudyError("--resume RUN_ID continues a run with its own study: give no STUDY, --run-id "
                                 "or --base-url with it")
            run_id = args.resume
            store.load_meta(run_id)  # a clear error for an unknown run
        elif args.study:
            spec, raw = workflow.resolve(args.study, args.base_url or "")
            bundled = stack.enter_context(workflow.serving(spec))  # one bundled Ollama from check to facts after
            run_id, checked = workflow.create_now(spec, raw, args.run_id, ollama=bundled)
            created = True
            _print_check_problems(checked, args.lang or spec.lang)
        else:
            raise StudyError("name a STUDY to run, or --resume RUN_ID to continue a stopped run")
        if report_options["baseline"] and not args.no_report:  # a bad --baseline is said now, not after the run
            from latencylab.publish import report

            try:
                report.check_options([run_id], baseline=report_options["baseline"])
            except LatencyLabError:
                if created:  # the run was created just now and holds nothing yet
                    shutil.rmtree(paths.run_dir(run_id))
                raise
        workflow.run(run_id, ollama=bundled, lang=args.lang)
    print(f"samples: {paths.run_dir(run_id) / 'samples.jsonl'}")
    if not args.no_report:
        from latencylab.publish import render

        _print_report(render.publish([run_id], **report_options))
    return 0


def _print_check_problems(result: CheckResult, lang: str) -> None:
    """The check's warnings and errors, before the run starts (the run goes on; notes stay in check.json)."""
    from latencylab.core import words
    from latencylab.publish import check_text

    for finding in result.findings:
        if finding.level != "note":
            message, fix = check_text.text(finding, lang)
            print(f"latencylab: {words.text(f'run_check_{finding.level}', lang, message=message)}\n"
                  f"  {words.text('check_line_fix', lang, fix=fix)}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from latencylab.collect import workflow
    from latencylab.publish import check_text

    spec, _ = workflow.resolve(args.study, args.base_url or "")
    result = asyncio.run(workflow.check_served(spec))
    lang = args.lang or spec.lang
    if args.json:
        print(json.dumps(check_text.as_json(result, lang), indent=1, ensure_ascii=False))
    else:
        print("\n".join(check_text.lines(result, lang)))
    return result.exit_code


def _resolve_run(run_id: str) -> str:
    from latencylab.core import paths
    from latencylab.runs import store

    if run_id == "latest":
        runs = store.list_runs()
        if not runs:
            raise store.RunNotFound(f"no runs yet in {paths.RUNS_DIR}; run `latencylab run STUDY` first")
        return runs[-1]
    store.load_meta(run_id)  # a clear error for an unknown run
    return run_id


def _report_options(args: argparse.Namespace) -> dict[str, str]:
    from pathlib import Path

    from latencylab.core import paths
    from latencylab.plan.study import StudyError

    if args.baseline and args.baseline.endswith(".csv") and not Path(args.baseline).is_file() \
            and not (paths.PROJECT_ROOT / args.baseline).is_file():
        raise StudyError(f"--baseline: no CSV file {args.baseline!r}")
    return {"baseline": args.baseline or "", "lang": args.lang or ""}


def _labels(given: list[str]) -> dict[str, str]:
    """--label NAME=RUN, repeated, as {NAME: RUN}."""
    from latencylab.publish import report

    labels: dict[str, str] = {}
    for item in given:
        name, equals, run_id = item.partition("=")
        if not (name and equals and run_id):
            raise report.BadLabel(f"--label {item!r}: write it NAME=RUN (e.g. --label before=20261127T044512Z-demo)")
        if name in labels:
            raise report.BadLabel(f"--label: {name!r} is given twice")
        labels[name] = _resolve_run(run_id)
    return labels


def cmd_report(args: argparse.Namespace) -> int:
    from latencylab.publish import render, report
    from latencylab.runs import store

    run_ids = [_resolve_run(r) for r in args.runs]
    for run_id in run_ids:
        store.prepare_run(run_id)  # a corrupt samples file is said here, before anything is written
    options = {**_report_options(args), "labels": _labels(args.label), "pool": args.pool}
    # bad labels or baseline: exit 2 here, not an error in the notebook
    report.check_options(run_ids, options["labels"], options["pool"], options["baseline"])
    _print_report(render.publish(run_ids, **options))
    return 0


def _print_report(page: Path) -> None:
    """The report's key figures as a short table, then its path, in the report's language."""
    from latencylab.publish.exporters import terminal

    print(terminal.export(page))


def cmd_runs(args: argparse.Namespace) -> int:
    from latencylab.core import paths
    from latencylab.runs import store

    for run_id in store.list_runs():
        status = store.load_meta(run_id).status
        samples = paths.run_dir(run_id) / "samples.jsonl"
        count = samples.read_bytes().count(b"\n") if samples.exists() else 0
        print(f"{run_id}  {status:<11}  {count:>5} samples")
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    import time

    from latencylab.collect import engine
    from latencylab.core import paths

    if args.action == "prepare":
        for path in engine.prepare_models():
            print(path)
        return 0
    if args.action == "version":
        server = engine.find_binary("llama-server")
        print(f"{engine.Engine().version()}\nbackend: {engine.build_backend(server)}\nbinary: {server}")
        return 0
    if args.action == "backend":
        print(engine.build_backend())
        return 0
    engine.prepare_models()
    with engine.Engine(models_max=args.models_max, sleep_idle_seconds=args.sleep_idle_seconds) as server:
        print(f"llama-server (router mode) at {server.base_url}  models: "
              f"{', '.join(p.stem for p in sorted(paths.MODELS_DIR.glob('*.gguf')))}  (Ctrl-C stops it)")
        while True:
            time.sleep(3600)


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", help="scenario to compare against (RUN:scenario, LABEL:scenario or a name "
                        "only one run has), or a CSV of earlier TTFB values "
                        "(e.g. data/baselines/seed-phi3-baseline.csv); default: the first scenario")
    parser.add_argument("--lang", choices=["en", "es"], help="language of the report (and of what `run` prints "
                        "while it works); default: the study's (lang:)")


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="latencylab",
        description="Measure how long an LLM server takes to answer (first byte, first token), "
        "explain why, and publish the evidence as an HTML report.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study, then publish its report",
                         description="Run a study (a YAML file, or a name under studies/); samples go to "
                         "data/runs/<run_id>/, the report to reports/<run_id>/index.html.")
    run.add_argument("study", nargs="?", help="study name under studies/ (e.g. embedded-demo) or a path to a YAML file")
    run.add_argument("--resume", metavar="RUN_ID", help="continue a stopped run where it stopped, with the same plan")
    run.add_argument("--base-url", help="server URL for scenarios that do not name one (e.g. http://localhost:11434)")
    run.add_argument("--run-id", help="run folder name (default: UTC time + study name)")
    run.add_argument("--no-report", action="store_true", help="collect only; publish later with `latencylab report`")
    _add_report_options(run)
    run.set_defaults(func=cmd_run, imports=("latencylab.collect.workflow", "latencylab.runs.store"))

    chk = sub.add_parser(
        "check", help="check a study's plan before running it: memory fit, num_gpu, eviction, keep_alive",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check a study against its servers' facts (Ollama /api/tags, /api/show, /api/ps, /api/version; "
        "llama-server /props and /models; the embedded engine's GGUF files; NVML when the server is local, "
        "else the study's gpu: {vram_gb: N}) and print one line per finding with its fix.",
        epilog="exit status: 0 nothing or notes only, 1 warnings (the run would mislead), 2 errors "
        "(the run would fail)\n`latencylab run` runs the same check first and prints its warnings and errors.")
    chk.add_argument("study", help="study name under studies/ or a path to a YAML file")
    chk.add_argument("--base-url", help="server URL for scenarios that do not name one")
    chk.add_argument("--json", action="store_true", help="the same findings as JSON (with the facts they rest on)")
    chk.add_argument("--lang", choices=["en", "es"], help="language of the findings' words; default: the study's "
                     "(lang:)")
    chk.set_defaults(func=cmd_check, imports=("latencylab.collect.workflow", "latencylab.publish.check_text"))

    rep = sub.add_parser("report", help="publish reports/<run_id>/index.html from one or more runs",
                         description="Execute notebooks/2.0-latency-report.ipynb for the runs and convert it to HTML.")
    rep.add_argument("runs", nargs="+", metavar="RUN", help="run id(s) under data/runs/, or `latest`; several "
                     "runs are shown side by side, each scenario as RUN:scenario")
    _add_report_options(rep)
    rep.add_argument("--label", action="append", default=[], metavar="NAME=RUN",
                     help="name a run in the report (repeatable): --label before=RUN_A --label after=RUN_B; "
                     "then --baseline before:SCENARIO. Default: the run ids, shortened")
    rep.add_argument("--pool", action="store_true", help="pool runs of one study into one set per scenario, "
                     "and show the spread of the medians between runs")
    # not the notebook stack: a thread it starts while SIGINT is held keeps it held, and so would the kernel it spawns
    rep.set_defaults(func=cmd_report, imports=("latencylab.runs.store",))

    runs = sub.add_parser("runs", help="list the runs in data/runs/ with status and sample count")
    runs.set_defaults(func=cmd_runs, imports=("latencylab.runs.store",))

    eng = sub.add_parser("engine", help="the embedded llama.cpp engine: prepare models, show version, serve",
                         description="prepare: put SmolLM2 Q4_1 and its Q8_0 variant in data/models/. "
                         "version: llama-server's version, the backend it was built with (cpu, cuda, …) and "
                         "where it is. backend: that backend alone. "
                         "serve: run the router on a free loopback port.")
    eng.add_argument("action", choices=["prepare", "version", "backend", "serve"])
    eng.add_argument("--models-max", type=int, default=1, help="models loaded at once (serve)")
    eng.add_argument("--sleep-idle-seconds", type=float, help="unload a model after this idle time (serve)")
    eng.set_defaults(func=cmd_engine, imports=("latencylab.collect.engine",))
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        # First of all, before any import that takes time. A command started as `latencylab run … &` from a script
        # inherits SIGINT ignored (the shell does that for background jobs), and Python then leaves it ignored:
        # install Python's own handler so `kill -INT` stops it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        args = build_parser().parse_args(argv)
        with _interrupts_held():
            for module in args.imports:  # what the command uses, imported whole (it imports them again for free)
                importlib.import_module(module)
        return args.func(args)
    except LatencyLabError as exc:  # each class says its exit status: 2 for usage, 1 for a run or report cut short
        print(f"latencylab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("latencylab: interrupted; samples collected so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
