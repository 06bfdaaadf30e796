"""No step of the analysis grows faster than the samples (issue 24), caught without a clock: the rows that pandas
filters touch and the cells read or written one at a time are counted while `compute.findings` runs on n and on 8n
synthetic samples. A filter of the whole frame per load (O(loads × samples)) multiplies that count by 64."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pandas.api.types import is_bool_dtype
from pandas.core import indexing

from latencylab.analyse import compute
from latencylab.analyse.findings import RunInfo
from latencylab.runs.columnar import samples_frame

RUN = RunInfo(run_id="bench", label="bench", study="bench",
              scenarios={"baseline": {"model": "baseline"}, "optimised": {"model": "optimised"}})


def synthetic(n: int) -> pd.DataFrame:
    """benchmarks/report_render.py's run, its two scenarios on two models: every other request is the baseline's,
    40 % of those pay a load; one sent every 0.5 s."""
    rng = np.random.default_rng(0)
    seq = np.arange(n)
    scenario = np.where(seq % 2 == 0, "baseline", "optimised")
    cold = (scenario == "baseline") & (rng.random(n) < 0.4)
    ttfb = rng.lognormal(np.where(cold, 6.3, 4.5), 0.3)
    return samples_frame(pd.DataFrame({
        "run_id": "bench", "seq": seq, "scenario": scenario, "model": scenario, "ok": rng.random(n) > 0.001,
        "warmup": False, "phase": np.where(seq < 2, "first", "subsequent"), "state": np.where(cold, "cold", "warm"),
        "keep_alive": "5m", "started_at": 1.8e9 + seq * 0.5, "headers_ms": ttfb * 0.5, "ttfb_ms": ttfb,
        "ttft_ms": ttfb, "e2e_ms": ttfb + 300, "load_ms": np.where(cold, ttfb * 0.6, 0.0), "load_ms_source": "server",
        "prompt_eval_ms": ttfb * 0.3, "eval_ms": 300.0, "output_tokens": 32, "output_tokens_source": "server",
    }).to_dict("records"))


def _is_mask(key: Any) -> bool:
    return isinstance(key, pd.Series | np.ndarray | pd.api.extensions.ExtensionArray) and is_bool_dtype(key.dtype)


class Work:
    """Rows touched: the length of every boolean mask a frame or series is filtered with (`x[mask]`,
    `x.loc[mask]`), and one per cell read or written by label (`.at`)."""

    def __init__(self) -> None:
        self.rows = 0

    def filtering(self, get: Callable[..., Any]) -> Callable[..., Any]:
        def counted(obj: Any, key: Any) -> Any:
            masks = key if isinstance(key, tuple) else (key,)
            self.rows += sum(len(mask) for mask in masks if _is_mask(mask))
            return get(obj, key)

        return counted

    def cell(self, access: Callable[..., Any]) -> Callable[..., Any]:
        def counted(obj: Any, *args: Any) -> Any:
            self.rows += 1
            return access(obj, *args)

        return counted


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Iterator[Work]:
    counter = Work()
    for owner, name in ((pd.DataFrame, "__getitem__"), (pd.Series, "__getitem__"),
                        (indexing._LocIndexer, "__getitem__")):
        monkeypatch.setattr(owner, name, counter.filtering(getattr(owner, name)))
    for name in ("__getitem__", "__setitem__"):
        monkeypatch.setattr(indexing._AtIndexer, name, counter.cell(getattr(indexing._AtIndexer, name)))
    yield counter


def test_the_findings_touch_rows_in_proportion_to_the_samples(work: Work):
    touched = {}
    for n in (200, 1600):
        samples = synthetic(n)
        work.rows = 0
        compute.findings(samples, [RUN])
        touched[n] = work.rows
    # linear: 8 × the rows, give or take half again; a filter of every sample per load would be 64 ×
    assert touched[1600] <= 8 * 1.5 * touched[200] + 1000, touched
