"""The planted-condition suite (tests/doubles/planted.py, a test double timed like Ollama 0.5's runner, not
Ollama): each condition has one known cause of slow first bytes or none, and the Diagnosis must confirm exactly
the planted ones — every condition right, no false confirmation. Collected by the runner `latencylab run` uses
(in this process: seconds per condition); `benchmarks/diagnosis_score.py` runs the same suite through the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from doubles.planted import CONDITIONS, PlantedDouble
from latencylab.collect import runner
from latencylab.plan.study import parse_study
from latencylab.publish import report
from latencylab.publish.exporters import summary_json

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import diagnosis_score  # noqa: E402


def test_every_planted_condition_is_diagnosed_right_with_no_false_confirmation(workdir):
    diagnoses = {}
    for condition in CONDITIONS:
        with PlantedDouble(**condition.double) as server:
            study = {"name": f"dx-{condition.name}", "backend": "ollama", "base_url": server.base_url,
                     **yaml.safe_load(yaml.safe_dump(condition.study))}
            run_id = runner.run_study(parse_study(study), progress=False)
        diagnoses[condition.name] = summary_json.summary(report.document_of([run_id]).findings)["diagnosis"]
    found = {name: diagnosis_score.confirmed(dx["verdicts"]) for name, dx in diagnoses.items()}
    assert diagnosis_score.score(found) == (len(CONDITIONS), 0), diagnosis_score.table(diagnoses)
    # a conversation's spread is judged (each chat condition has enough turns after its cold start) and never
    # confirmed; the overflow's slowest turns are the overflow's, a cause named above
    spread = {name: next(v["verdict"] for v in dx["verdicts"] if v["cause"] == "variance")
              for name, dx in diagnoses.items() if name.startswith("chat-")}
    assert spread and "no_evidence" not in spread.values() and spread["chat-overflow"] == "present", spread
