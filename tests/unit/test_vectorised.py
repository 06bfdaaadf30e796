"""The vectorised steps of the analysis against the row-wise ones they replaced (issue 24): load events and reload
reasons (`attribution._load_events`) with their edge cases by hand (ties in start times, equal ends, unknown e2e)
and on random frames; the prompt-token threshold of two modes and the requests a server worked on at once."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from latencylab.analyse import attribution, diagnosis
from latencylab.analyse.attribution import PAID, keep_alive_s
from latencylab.analyse.causes import queueing
from latencylab.analyse.stats import numeric
from latencylab.runs.columnar import samples_frame


def _row(seq: int, **values: object) -> dict:
    base = {"run_id": "r1", "seq": seq, "scenario": "s", "model": "m", "ok": True, "warmup": False,
            "phase": "first" if seq == 0 else "subsequent", "state": "warm", "started_at": 1000.0 + 10 * seq,
            "e2e_ms": 100.0, "ttfb_ms": 50.0, "load_ms": 0.0, "load_ms_source": "server"}
    return {**base, **values}


def _events(rows: list[dict]) -> pd.DataFrame:
    data = samples_frame(rows).assign(run="r1")
    return attribution._load_events(data, numeric(data["ttfb_ms"]))


def test_of_two_loads_sent_at_the_same_time_the_first_in_the_run_loaded_and_the_other_waited():
    rows = [_row(0, state="warm"), _row(1, state="cold", started_at=1020.0), _row(2, state="cold", started_at=1020.0)]
    events = _events(rows)
    assert events["loaded"].tolist() == [False, True, False]
    assert events["load_event"].tolist() == [-1, 1, 1]


def test_of_requests_that_ended_together_the_first_in_the_run_is_the_previous_one():
    # both end at 1000.1; the load 3 s later outlasts the first one's keep_alive (1 s), not the second's (5 m)
    def reason(first: str, second: str) -> str:
        rows = [_row(0, keep_alive=first), _row(1, keep_alive=second, started_at=1000.0),
                _row(2, state="cold", started_at=1003.1)]
        return _events(rows)["reload_reason"].iloc[2]

    assert reason("1", "5m") == "keep_alive"
    assert reason("5m", "1") == "unknown"


def test_a_request_whose_end_is_unknown_ended_when_it_was_sent():
    # sent at 1000 with keep_alive 2 s; its e2e unknown: the idle gap to the load at 1003 is 3 s (> 2 s: expired);
    # had it taken 2 s, the gap would be 1 s
    for e2e, reason in ((None, "keep_alive"), (2000.0, "unknown")):
        rows = [_row(0, keep_alive="2", e2e_ms=e2e), _row(1, state="cold", started_at=1003.0)]
        assert _events(rows)["reload_reason"].iloc[1] == reason


def test_another_model_served_after_the_previous_request_evicted_it():
    # m ends at 1000.1; n runs 1001–1001.1 (sent before the load, ended after m's): evicted; n sent after: unknown
    for sent, reason in ((1001.0, "evicted"), (1004.0, "unknown")):
        rows = [_row(0, keep_alive="5m"), _row(1, model="n", scenario="o", started_at=sent),
                _row(2, state="cold", started_at=1003.0)]
        assert _events(rows)["reload_reason"].iloc[2] == reason


# --- the row-wise implementation that `_load_events` replaced (O(loads × samples)), the reference below ---

def _reference(data: pd.DataFrame, value: pd.Series) -> pd.DataFrame:
    events = pd.DataFrame({"load_event": -1, "loaded": False, "cold_start": False, "reload_reason": None},
                          index=data.index)
    starts = numeric(data["started_at"])
    ends = starts + numeric(data["e2e_ms"]).fillna(0.0) / 1000
    first_byte = starts + value.fillna(0.0) / 1000
    event = 0
    for _, group in data.groupby(["run_id", "model"], sort=False, dropna=False):
        order = group.index[np.argsort(starts[group.index].to_numpy(), kind="stable")]
        open_until = -math.inf
        for i in order:
            if data.at[i, "state"] not in PAID:
                continue
            if starts[i] < open_until:
                events.at[i, "load_event"] = event
                continue
            event += 1
            open_until = first_byte[i]
            events.loc[i, ["load_event", "loaded"]] = [event, True]
            events.at[i, "reload_reason"] = _reference_reason(data, i, starts, ends)
    for _, group in data.groupby(["run", "scenario"], sort=False):
        first = group[group["phase"] == "first"]
        if len(first) and events.at[first.index[0], "load_event"] > 0:
            cold = events.loc[group.index, "load_event"] == events.at[first.index[0], "load_event"]
            events.loc[cold[cold].index, "cold_start"] = True
    events.loc[events["cold_start"], "reload_reason"] = None
    return events


def _reference_reason(data: pd.DataFrame, i: object, starts: pd.Series, ends: pd.Series) -> str:
    if data.at[i, "state"] == "reload":
        return "options"
    same = data[(data["run_id"] == data.at[i, "run_id"]) & (data["model"] == data.at[i, "model"])]
    before = ends[same.index][ends[same.index] <= starts[i]]
    if before.empty:
        return "unknown"
    last = before.idxmax()
    keep, expired = keep_alive_s(data.at[last, "keep_alive"]), "keep_alive"
    if math.isnan(keep) and "server_keep_alive" in data:
        keep, expired = keep_alive_s(data.at[last, "server_keep_alive"]), "server_keep_alive"
    if not math.isnan(keep) and starts[i] - ends[last] > keep:
        return expired
    run = data[data["run_id"] == data.at[i, "run_id"]]
    other = run["model"] != data.at[i, "model"]
    between = run[(starts[run.index] < starts[i]) & (ends[run.index] > ends[last]) & other]
    return "evicted" if len(between) else "unknown"


def _random_frame(rng: np.random.Generator) -> pd.DataFrame:
    """Few distinct start times and durations (ties), unknown runs, models, phases, starts and e2e."""
    n = int(rng.integers(1, 40))

    def pick(values: list, p: list[float] | None = None) -> list:
        return [values[k] for k in rng.choice(len(values), n, p=p)]

    starts = 1000.0 + rng.integers(0, 30, n) * 0.5
    rows = pd.DataFrame({
        "run_id": pick(["a", "b", None], [0.5, 0.4, 0.1]), "seq": np.arange(n), "scenario": pick(["s1", "s2", "s3"]),
        "model": pick(["m", "n", "o", None], [0.4, 0.3, 0.2, 0.1]), "ok": True, "warmup": False,
        "phase": pick(["first", "subsequent", None], [0.2, 0.7, 0.1]),
        "state": pick(["cold", "reload", "warm", "unknown"]),
        "started_at": np.where(rng.random(n) < 0.05, np.nan, starts),
        "e2e_ms": pick([None, 0.0, 100.0, 500.0, 1000.0, 2500.0]), "ttfb_ms": pick([None, 50.0, 400.0, 1500.0]),
        "keep_alive": pick(["1", "2s", "5m", "0", None, "bogus"]), "server_keep_alive": pick(["1s", "3", None]),
    })
    data = samples_frame(rows.astype(object).where(rows.notna(), None).to_dict("records"))
    data["run"] = data["run_id"].astype(str)
    if rng.random() < 0.5:  # a frame of several runs' samples is not in index order
        data = data.sample(frac=1, random_state=int(rng.integers(1 << 31)))
    if rng.random() < 0.3:  # missing runs and models as None (object) rather than <NA> (string)
        data = data.astype({"run_id": object, "model": object})
    return data


@pytest.mark.parametrize("seed", range(2))
def test_the_vectorised_pass_gives_what_the_row_wise_one_gave(seed: int):
    rng = np.random.default_rng(seed)
    reasons: Counter[str] = Counter()
    for _ in range(40):
        data = _random_frame(rng)
        value = numeric(data["ttfb_ms"])
        found = attribution._load_events(data, value)
        pd.testing.assert_frame_equal(found, _reference(data, value))
        reasons.update(found["reload_reason"].dropna())
    assert set(reasons) >= {"keep_alive", "server_keep_alive", "evicted", "unknown", "options"}


def _reference_by_prompt(tokens: np.ndarray, in_high: np.ndarray) -> tuple[float, float]:
    agreement, threshold = math.nan, math.nan
    known = np.isfinite(tokens)
    if known.sum() >= diagnosis.MIN_MODES_N and len(np.unique(tokens[known])) >= 2:
        for t in np.unique(tokens[known])[:-1]:
            agree = float(((tokens[known] > t) == in_high[known]).mean())
            if math.isnan(agreement) or agree > agreement:
                agreement, threshold = agree, float(t)
    return agreement, threshold


def test_the_prompt_threshold_is_the_one_the_row_wise_search_found():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(5, 60))
        tokens = rng.choice([100.0, 150.0, 200.0, 400.0, 800.0, np.nan], n)[: n - int(rng.integers(0, 3))]
        in_high = rng.random(len(tokens)) < rng.random()
        assert diagnosis._by_prompt(tokens, in_high) == pytest.approx(_reference_by_prompt(tokens, in_high),
                                                                      nan_ok=True, abs=0, rel=0)


def _reference_slots(g: pd.DataFrame, metric: str) -> int:
    start = numeric(g["started_at"]) + (numeric(g[metric]) - g["prompt_ms"].fillna(0.0)) / 1000
    end = numeric(g["started_at"]) + numeric(g["e2e_ms"]) / 1000
    edges = sorted([(t + 0.001, 1) for t in start.dropna()] + [(t, -1) for t in end.dropna()])
    busy = most = 0
    for _, step in edges:
        busy += step
        most = max(most, busy)
    return most


def test_the_requests_served_at_once_are_those_the_row_wise_sweep_counted():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 30))
        g = pd.DataFrame({"started_at": rng.choice([1000.0, 1000.5, 1001.0, np.nan], n),
                          "ttft_ms": rng.choice([1.0, 500.0, 999.0, np.nan], n),
                          "prompt_ms": rng.choice([0.0, 499.0, np.nan], n), "e2e_ms": rng.choice([501.0, 1000.0], n)})
        assert queueing._slots(g, "ttft_ms") == _reference_slots(g, "ttft_ms")
