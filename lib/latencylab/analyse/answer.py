"""The answer a report leads with, as data: what is slow, the waste confirmed and how much of the first byte it is,
the fix with its predicted and measured gain, the measurements a busy host disturbed, the facts that hold for the
whole run, and the study's hypotheses side by side. Nothing here is worded (publish/document.py does that)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from latencylab.analyse.findings import Diagnosis, Key, Step, Verdict

# The seed's three guesses (../shared/seed: "se descarga y recarga", "no cabe en VRAM", "carga desde disco"), judged
# where a study declares no hypotheses of its own; each names the cause that tests it.
SEED_HYPOTHESES = ("reloads", "offload", "storage")
# Causes that say the host, not the configuration, slowed a scenario: its figures measure the disturbance too.
DISTURBING = ("cpu", "memory", "vram")
# Steps the answer leads with where no fix is predicted: what stands between the study and its targets.
LEADING = ("errors", "floor_above_target", "serialised", "vram", "variance")
# How a hypothesis reads over several scenarios: the strongest verdict any scenario gives it, in this order.
STRENGTH = ("confirmed", "no_gpu", "floor_above_target", "present", "floor", "refuted", "no_evidence")


@dataclass(frozen=True)
class Hypothesis:
    """One hypothesis of the study and its verdict over the scenarios: `claim` is the study's own words (None:
    one of the seed's guesses, worded by the catalog); `keys` the scenarios that gave `verdict`; `evidence` the
    verdict whose numbers stand behind it (the largest share among them)."""

    cause: str
    claim: str | None
    verdict: str
    keys: list[Key]
    evidence: Verdict | None


@dataclass(frozen=True)
class Confirmed:
    """One cause of waste confirmed in some scenarios, the most material first."""

    cause: str
    verdicts: list[Verdict]


@dataclass(frozen=True)
class Answer:
    """The first screen of a report."""

    slow: list[Key]  # the scenarios that fail a target (none judged: the slowest, where it is not the only one)
    confirmed: list[Confirmed]  # waste confirmed, the cause explaining the largest share first
    fix: Step | None  # the predicted gain of the main fix, with what was measured where it was tried (the document
    # says which of those a busy host disturbed); else the step that matters most (a floor above the target, failures)
    disturbed: dict[Key, list[str]]  # scenarios with a confirmed host cause, and which
    run_wide: dict[str, str]  # cause → verdict that every scenario shares and is said once (no_gpu)
    hypotheses: list[Hypothesis] = field(default_factory=list)
    matrix: pd.DataFrame = field(default_factory=pd.DataFrame)  # scenario × cause → verdict
    undecided: list[Key] = field(default_factory=list)  # no target failed, but these have one their data cannot decide


def later_medians(phases: pd.DataFrame) -> dict[Key, float]:
    """Each scenario's median of the requests after its first (the `subsequent` phase), where it has some."""
    later = phases[phases.index.get_level_values("phase") == "subsequent"]["median"].dropna().astype(float)
    return {key[:2]: value for key, value in later.items()}


def share_of(v: Verdict) -> float:
    """How much of the first byte a verdict's cause explains (0 where it says no share)."""
    value = getattr(v.values, "share", math.nan)
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) or v.cause == "offload" else value


def answer(diagnosis: Diagnosis, keys: Sequence[Key], targets: pd.DataFrame, medians: dict[Key, float],
           steps: Sequence[Step]) -> Answer:
    """The answer of a report from its diagnosis, targets, later requests' medians and ranked steps."""
    verdicts = diagnosis.verdicts
    confirmed = {}
    for v in verdicts:
        if v.verdict == "confirmed":
            confirmed.setdefault(v.cause, []).append(v)
    ranked = sorted((Confirmed(c, sorted(vs, key=share_of, reverse=True)) for c, vs in confirmed.items()),
                    key=lambda c: share_of(c.verdicts[0]), reverse=True)
    disturbed: dict[Key, list[str]] = {}
    for v in verdicts:
        if v.cause in DISTURBING and v.verdict == "confirmed":
            disturbed.setdefault(v.key, []).append(v.cause)
    failing = targets.loc[targets["status"] == "fail", ["run", "scenario"]] if not targets.empty else targets
    slow = list(dict.fromkeys(zip(failing["run"], failing["scenario"], strict=True))) if len(failing) else []
    if not slow and not len(targets) and len(medians) > 1:
        slow = [max(medians, key=medians.get)]
    open_ = targets.loc[targets["status"] == "inconclusive", ["run", "scenario"]] if len(targets) else targets
    undecided = [] if slow else list(dict.fromkeys(zip(open_["run"], open_["scenario"], strict=True)))
    fix = next((s for s in steps if s.kind.startswith("predict_")), next((s for s in steps if s.kind in LEADING), None))
    return Answer(slow=slow, confirmed=ranked, fix=fix, disturbed=disturbed, run_wide=_run_wide(verdicts, keys),
                  hypotheses=hypotheses(diagnosis, verdicts), matrix=_matrix(verdicts, keys), undecided=undecided)


def _run_wide(verdicts: Sequence[Verdict], keys: Sequence[Key]) -> dict[str, str]:
    """Verdicts that hold for every scenario and are a fact of the run rather than of a scenario (no GPU used)."""
    out = {}
    for cause in dict.fromkeys(v.cause for v in verdicts):
        said = {v.key: v.verdict for v in verdicts if v.cause == cause}
        if len(said) == len(keys) and set(said.values()) == {"no_gpu"}:
            out[cause] = "no_gpu"
    return out


def hypotheses(diagnosis: Diagnosis, verdicts: Sequence[Verdict]) -> list[Hypothesis]:
    """The study's hypotheses (the seed's three guesses where it declares none), each with its strongest verdict."""
    claims = [(h["cause"], h.get("claim")) for h in diagnosis.hypotheses] or [(c, None) for c in SEED_HYPOTHESES]
    out = []
    for cause, claim in claims:
        tested = [v for v in verdicts if v.cause == cause]
        if not tested:
            out.append(Hypothesis(cause, claim, "no_evidence", [], None))
            continue
        verdict = min((v.verdict for v in tested), key=lambda x: STRENGTH.index(x) if x in STRENGTH else len(STRENGTH))
        chosen = sorted((v for v in tested if v.verdict == verdict), key=share_of, reverse=True)
        out.append(Hypothesis(cause, claim, verdict, [v.key for v in chosen], chosen[0]))
    return out


def _matrix(verdicts: Sequence[Verdict], keys: Sequence[Key]) -> pd.DataFrame:
    """Each scenario's verdict on each cause judged (columns in the order the causes are judged)."""
    causes = list(dict.fromkeys(v.cause for v in verdicts))
    table = pd.DataFrame(index=pd.MultiIndex.from_tuples(list(keys), names=["run", "scenario"]), columns=causes,
                         dtype=object)
    for v in verdicts:
        table.loc[v.key, v.cause] = v.verdict
    return table
