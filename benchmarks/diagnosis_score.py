"""How right the Diagnosis is (issue 19): planted conditions, each with one known cause of slow first bytes or
none, run through the product path, and each finding's verdict scored against what was planted.

For each condition of tests/doubles/planted.py (a test double timed like Ollama 0.5's runner, not Ollama):
start the double, write the condition's study, run `latencylab run STUDY` against it, and read the
Diagnosis from the report's summary.json. `--no-notebook` runs `latencylab run --no-report` and builds the
same findings in this process (what the report notebook builds, without papermill: seconds, not minutes).

A condition is right when the findings stated are exactly those planted; a false confirmation is a
finding stated that was not planted (what sends a user to fix the wrong thing). The server's own work — prefill,
the first token — is never confirmed: it is the floor, a finding only where it alone is above the study's target
(`long-prompts`; `healthy-long-prompts` meets its target: nothing wasted).

    .venv/bin/python benchmarks/diagnosis_score.py                   # every condition, full report (~5 min)
    .venv/bin/python benchmarks/diagnosis_score.py --no-notebook     # same findings, no notebook (~1 min)
    .venv/bin/python benchmarks/diagnosis_score.py --only healthy,no-gpu
    sudo .venv/bin/python benchmarks/diagnosis_score.py --real      # the host's causes planted on the real servers

`--real` runs tests/hostplant.py's conditions instead (root and cgroup v1: the page cache dropped, reads
throttled, a memory limit, busy processes on every core; on the bundled Ollama and the embedded llama-server), in
this process, each planted for real and undone after it: after two scenarios of four (`real-*`), or for the whole of
a one-scenario run with no control in it (`whole-*`, issue 33: judged on the kernel's own accounting).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from doubles.planted import CONDITIONS, Condition, PlantedDouble  # noqa: E402
from hostplant import REAL_CONDITIONS, why_not  # noqa: E402
from hostplant import run_condition as run_planted  # noqa: E402
from latencylab.analyse.causes import CAUSES as REGISTRY  # noqa: E402

# A verdict of the diagnosis as the finding the score counts (each cause's `findings`); anything else states
# nothing: a floor below the target is the server's own work, "present" is not a cause.
FINDINGS = {(c.name, verdict): finding for c in REGISTRY for verdict, finding in c.findings.items()}
CAUSES = tuple(c.name for c in REGISTRY)


def confirmed(verdicts: list[dict[str, Any]]) -> set[str]:
    """The findings a diagnosis states (summary.json's `diagnosis.verdicts`), over every scenario: the causes
    confirmed, a server that used no GPU, a floor above the target."""
    return {FINDINGS[(v["cause"], v["verdict"])] for v in verdicts if (v["cause"], v["verdict"]) in FINDINGS}


def run_condition(condition: Condition, home: Path, notebook: bool) -> dict[str, Any]:
    """Run one condition through `latencylab run`; its summary.json's diagnosis (verdicts per scenario)."""
    env = {**os.environ, "LATENCYLAB_HOME": str(home)}
    run_id = f"dx-{condition.name}"
    with PlantedDouble(**condition.double, lifetime_s=300) as server:
        study = {"name": run_id, "backend": "ollama", "base_url": server.base_url, "lang": "en", **condition.study}
        path = home / f"{run_id}.yaml"
        path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
        command = [str(ROOT / ".venv" / "bin" / "latencylab"), "run", str(path), "--run-id", run_id]
        done = subprocess.run([*command, *([] if notebook else ["--no-report"])], env=env, capture_output=True,
                              text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"{condition.name}: latencylab run exited {done.returncode}:\n{done.stderr[-3000:]}")
    if notebook:
        return json.loads((home / "reports" / run_id / "summary.json").read_text(encoding="utf-8"))["diagnosis"]
    return summary_in_process(run_id, home)["diagnosis"]


def use_home(home: Path) -> None:
    """Point this process's data/ and reports/ at `home` (the models stay the project's)."""
    os.environ["LATENCYLAB_HOME"] = str(home)
    from latencylab.core import paths

    for name, folder in (("WORK_ROOT", home), ("DATA_DIR", home / "data"), ("RUNS_DIR", home / "data" / "runs"),
                         ("REPORTS_DIR", home / "reports")):
        setattr(paths, name, folder)


def summary_in_process(run_id: str, home: Path) -> dict[str, Any]:
    """summary.json as the report would write it, built here (the notebook's findings, without the notebook)."""
    use_home(home)
    from latencylab.publish import report
    from latencylab.publish.exporters import summary_json

    return json.loads(json.dumps(summary_json.summary(report.document_of([run_id]).findings), default=str))


# What a right diagnosis states, per condition: on the double, what was planted; on the real servers, that and
# "the server did not use a GPU" where it runs on the CPU.
PLANTED: dict[str, frozenset[str]] = {c.name: c.planted for c in CONDITIONS}


def expected() -> dict[str, frozenset[str]]:
    return {**PLANTED, **{c.name: c.expected for c in REAL_CONDITIONS}}


def run_real(name: str, home: Path) -> dict[str, Any]:
    """Run one real condition (tests/hostplant.py) in this process; its summary's diagnosis."""
    use_home(home)
    run_id = run_planted(next(c for c in REAL_CONDITIONS if c.name == name))
    return summary_in_process(run_id, home)["diagnosis"]


def score(results: dict[str, set[str]]) -> tuple[int, int]:
    """(conditions right, false confirmations) of the findings confirmed per condition."""
    planted = expected()
    right = sum(found == planted[name] for name, found in results.items())
    false = sum(len(found - planted[name]) for name, found in results.items())
    return right, false


def table(diagnoses: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: per condition, what was planted, each cause's verdicts, and whether it is right."""
    planted = expected()
    lines = ["| condition | planted | " + " | ".join(CAUSES) + " | right |", "|---" * (len(CAUSES) + 3) + "|"]
    for name, dx in diagnoses.items():
        verdicts = dx["verdicts"]
        cells = []
        for cause in CAUSES:
            found = sorted({v["verdict"] for v in verdicts if v["cause"] == cause})
            cells.append(", ".join(found) or "–")
        found = confirmed(verdicts)
        ok = "yes" if found == planted[name] else f"NO (confirmed: {', '.join(sorted(found)) or 'none'})"
        lines.append(f"| {name} | {', '.join(sorted(planted[name])) or 'none'} | " + " | ".join(cells) + f" | {ok} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-notebook", action="store_true", help="collect with the CLI, build the findings here")
    parser.add_argument("--only", default="", help="comma-separated condition names")
    parser.add_argument("--out", type=Path, help="write the diagnoses as JSON here")
    parser.add_argument("--real", action="store_true", help="the host's causes planted on the real servers")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    diagnoses = {}
    with tempfile.TemporaryDirectory(prefix="dx-score-") as tmp:
        if args.real:
            for real in [c for c in REAL_CONDITIONS if not names or c.name in names]:
                if (reason := why_not(real.plant)) is not None:
                    print(f"{real.name}: skipped: {reason}", flush=True)
                    continue
                diagnoses[real.name] = run_real(real.name, Path(tmp))
                print(f"{real.name}: confirmed {sorted(confirmed(diagnoses[real.name]['verdicts']))}, "
                      f"expected {sorted(real.expected)}", flush=True)
        for condition in [] if args.real else [c for c in CONDITIONS if not names or c.name in names]:
            diagnoses[condition.name] = run_condition(condition, Path(tmp), notebook=not args.no_notebook)
            print(f"{condition.name}: confirmed {sorted(confirmed(diagnoses[condition.name]['verdicts']))}, "
                  f"planted {sorted(condition.planted)}", flush=True)
    right, false = score({name: confirmed(dx["verdicts"]) for name, dx in diagnoses.items()})
    print()
    print(table(diagnoses))
    print(f"\nscore: {right} of {len(diagnoses)} conditions right, {false} false confirmations")
    if args.out:
        args.out.write_text(json.dumps(diagnoses, indent=1, default=str), encoding="utf-8")
    return 0 if right == len(diagnoses) and not false else 1


if __name__ == "__main__":
    raise SystemExit(main())
