"""What the data calls for (next steps), the summary's headline and the numbers the figures' titles state."""

from __future__ import annotations

from typing import Any

import pandas as pd

from latencylab.analyse.causes.floor import FloorValues
from latencylab.analyse.findings import Diagnosis, FigureFacts, Headline, Key, Step
from latencylab.analyse.tables import KEY, measured

STEP_ORDER = ("errors", "keep_loaded", "no_gpu", "vram", "minor_errors", "serialised", "floor_above_target", "variance",
              "more_samples", "all_met")
PAID_LOAD_STEP = 0.2  # this share of requests paying a load (or failing) makes a step, and ranks it first


def next_steps(load: pd.DataFrame, residency_table: pd.DataFrame, targets: pd.DataFrame, comparisons: pd.DataFrame,
               concurrency: pd.DataFrame, errors: pd.DataFrame, attempted: pd.Series) -> list[Step]:
    """What the data calls for, most important first (errors, loads, VRAM, serialising, variance, samples)."""
    steps = []
    for key, count in errors.groupby(KEY, sort=False)["count"].sum().items():
        kinds = errors[(errors["run"] == key[0]) & (errors["scenario"] == key[1])].set_index("kind")["count"]
        steps.append(Step("errors", key, {"share": count / attempted[key], "kinds": kinds.to_dict()}))
    for key, row in load.iterrows():  # the later requests' loads, as the reloads cause counts them
        share = row["loads_later"] / row["requests_later"] if row["requests_later"] else 0.0
        if share >= PAID_LOAD_STEP:
            steps.append(Step("keep_loaded", key, {"share": share, "load": row["load_mean_loaded"],
                                                   "explained": row["load_share"]}))
    for key, row in residency_table.iterrows():
        if pd.notna(row["gpu_share"]) and row["gpu_share"] < 1:
            steps.append(Step("vram", key, {"share": row["gpu_share"]}))
    steps += serialised(concurrency)
    for row in targets[(targets["target"] == "cv") & (targets["status"] == "fail")].itertuples():
        steps.append(Step("variance", (row.run, row.scenario), {"cv": row.measured, "goal": row.goal}))
    for row in comparisons[comparisons["verdict"].isin(["no_difference", "too_few"])].itertuples():
        steps.append(Step("more_samples", (row.run, row.scenario), {"n": min(row.n_before, row.n_after)}))
    for key, group in targets.groupby(KEY, sort=False):
        if (group["status"] == "pass").all():
            steps.append(Step("all_met", key))
    return sorted(steps, key=_rank)


def serialised(concurrency: pd.DataFrame) -> list[Step]:
    """The scenarios whose median TTFT grows more than twice from the fewest requests in flight to the most."""
    steps = []
    if not concurrency.empty:
        for key, group in concurrency.reset_index().groupby(KEY, sort=False):
            low, high = group.iloc[0], group.iloc[-1]
            if low["p50"] and high["p50"] / low["p50"] > 2:
                steps.append(Step("serialised", key, {"factor": high["p50"] / low["p50"],
                                                      "low": int(low["concurrency"]),
                                                      "high": int(high["concurrency"])}))
    return steps


def _rank(step: Step) -> int:
    minor = step.kind == "errors" and step.values["share"] < PAID_LOAD_STEP  # a few failures rank after the cause
    return STEP_ORDER.index("minor_errors" if minor else step.kind)


def agree_with(steps: list[Step], diagnosis: Diagnosis) -> list[Step]:
    """The steps the diagnosis bears out: keeping a model loaded only where reloads are a cause (not for a cold
    start, nor for loads too small to matter) and no predicted gain already says so; a server that used no GPU
    is told to find out why, not to shrink a model that would fit; a spread a confirmed cause explains is left
    to that cause's step. A scenario whose floor (the server's own work) is above its target gets a step of its
    own: a finding against the study, not a fault to fix."""
    verdicts = {(v.cause, v.key): v.verdict for v in diagnosis.verdicts}
    predicted = {s.key for s in diagnosis.predictions if s.kind.startswith("predict_reloads")}
    out = []
    for step in steps:
        if step.kind == "keep_loaded" and (verdicts.get(("reloads", step.key)) not in ("confirmed", None)
                                           or step.key in predicted):
            continue
        if step.kind == "vram" and verdicts.get(("offload", step.key)) == "no_gpu":
            step = Step("no_gpu", step.key, step.values)
        if step.kind == "variance" and verdicts.get(("variance", step.key)) == "present":
            continue
        out.append(step)
    floors = [Step("floor_above_target", v.key, {"floor": x.floor_ms, "goal": x.goal, "target": x.target,
                                                 "now": x.now_ms, "after": x.half_ms})
              for v in diagnosis.verdicts
              if v.verdict == "floor_above_target" and isinstance(x := v.values, FloorValues)]
    at = next((i for i, step in enumerate(out) if _rank(step) > STEP_ORDER.index("floor_above_target")), len(out))
    return out[:at] + floors + out[at:]


# The scenario settings that apply each fix: a scenario of the run that changed one of them tried it.
FIX_SETTINGS = {"predict_reloads": {"keep_alive", "preload"}, "predict_reloads_each": {"keep_alive", "preload"},
                "predict_queueing": {"num_parallel", "concurrency"}, "predict_overflow": {"num_ctx"},
                "predict_think": {"keep_alive", "preload"}, "predict_cache": {"num_parallel"}}


def beside_measured(predictions: list[Step], comparisons: pd.DataFrame, across: pd.DataFrame, changes: pd.DataFrame,
                    baseline: Key, phases: pd.DataFrame) -> list[Step]:
    """Each predicted gain with what was measured where the fix was tried: the scenarios compared with the one it
    was predicted for (when that is the baseline) that changed a setting of that fix, and the same scenario in
    the other runs compared (whatever changed between the runs). Measured as it was predicted: the median of the
    later requests (`phases`' subsequent; all of them where there is none), its change against the prediction's
    `now`."""

    def later_median(key: Key) -> float:
        for phase in ("subsequent", "all"):
            if (*key, phase) in phases.index and pd.notna(value := phases.loc[(*key, phase), "median"]):
                return float(value)
        return float("nan")

    out = []
    for step in predictions:
        fixed = changes[changes["setting"].isin(FIX_SETTINGS.get(step.kind, set()))]
        tried_keys = set(zip(fixed["run"], fixed["scenario"], strict=True))
        tried = comparisons[[(r, s) in tried_keys for r, s in zip(comparisons["run"], comparisons["scenario"],
                                                                   strict=True)]] if step.key == baseline \
            else comparisons.iloc[:0]
        if not across.empty:
            tried = pd.concat([tried, across[(across["reference"] == step.key[0])
                                             & (across["scenario"] == step.key[1])]])
        now = step.values["now"]
        measured = [{"key": (r.run, r.scenario), "median": (m := later_median((r.run, r.scenario))),
                     "change_pct": 100 * (m / now - 1)} for r in tried.itertuples()]
        out.append(Step(step.kind, step.key, {**step.values, "measured": measured}))
    return out


def headline(baseline: Key, comparisons: pd.DataFrame, changes: pd.DataFrame, targets: pd.DataFrame,
             steps: list[Step]) -> Headline:
    """The summary's facts: the fastest scenario against the baseline, targets passed, the main finding."""
    passed = {key: (int((group["status"] == "pass").sum()), len(group))
              for key, group in targets.groupby(KEY, sort=False)}
    finding = steps[0] if steps else None
    if comparisons.empty:
        return Headline(None, None, None, None, None, None, None, [], passed, finding)
    best = comparisons.loc[comparisons["ratio"].astype(float).idxmin()]
    key = (best["run"], best["scenario"])
    changed = changes[(changes["run"] == key[0]) & (changes["scenario"] == key[1])]["setting"].tolist()

    def number(value: Any) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    return Headline(key, number(best["ratio"]), number(best["ratio_low"]), number(best["ratio_high"]),
                    str(best["verdict"]), number(best["median_before"]), number(best["median_after"]), changed,
                    passed, finding)


def figure_facts(phases: pd.DataFrame, samples: pd.DataFrame, decomposition: pd.DataFrame, targets: pd.DataFrame,
                 goals: dict[str, Any]) -> FigureFacts:
    """The numbers the figures' titles state."""
    everything = phases.xs("all", level="phase")
    medians = {k: float(v) for k, v in everything["median"].dropna().items()}
    cv = everything["cv"].dropna().astype(float)
    data = measured(samples, ["state"])
    share = None
    if not decomposition.empty and decomposition["load"].notna().any():
        means = decomposition.groupby(level=KEY, sort=False)[["load", "ttft"]].mean()
        weight = (means["load"] / means["ttft"]).dropna()
        share = (weight.idxmax(), float(weight.max())) if len(weight) and weight.max() > 0 else None
    return FigureFacts(
        fastest=min(medians, key=medians.get) if medians else None,
        slowest=max(medians, key=medians.get) if medians else None,
        medians=medians,
        paid=int(data["state"].isin(["cold", "reload"]).sum()),
        measured=len(data),
        paid_share=float(data["state"].isin(["cold", "reload"]).mean()) if len(data) else None,
        cv_below_goal=int((cv < goals["cv"]).sum()) if goals.get("cv") else None,
        cv_count=len(cv),
        targets_passed=int((targets["status"] == "pass").sum()),
        targets_judged=len(targets),
        load_share_of_ttft=share,
        has_ttft=bool(samples["ttft_ms"].notna().any()),
        targets_measured=bool(targets["measured"].notna().any()),
        rest_negative=int(decomposition["rest_negative"].sum()) if not decomposition.empty else 0,
    )
