"""Conversations, turn by turn: what each turn could have reused of the one before, what the server reused, what it
had to process, and where the history outgrew the context (issue 27).

Where the server says what it reused (llama-server `timings.cache_n`, OpenAI `usage.prompt_tokens_details.
cached_tokens`, a newer Ollama's `prompt_eval_cached_count`: README's version table), that is the figure
("server"). Where it does not, but its cached-tokens counter was scraped (vLLM's `prefix_cache_hits`, llama-server's
`prompt_tokens_cached`) and the turn was alone in flight between the scrapes around it, the counter's rise is the
turn's own ("counters": `analyse.server_metrics`). Ollama 0.5.4 gives neither: its `prompt_eval_count` is the whole
prompt, cached or not (the runner's `numPromptInputs` is counted before `LoadCacheSlot` cuts off the cached prefix),
while `prompt_eval_duration` covers only the tokens it processed. So a turn is read as "reused" ("timing") when its prompt
time is nearer what its new tokens alone would take than what the whole prompt would, at the session's first turns'
speed (ms per prompt token: nothing before them to reuse). On the real 0.5.4 (SmolLM2, num_ctx 512) the two differ
by 5–10× once the history is a few hundred tokens, far beyond the noise of a shared machine.

Ollama's chat endpoint drops the oldest messages when the history does not fit `num_ctx` (server/prompt.go
`chatPrompt`, keeping system messages and the latest turn): the prompt then starts differently from what the
runner cached, and every later turn processes the whole prompt again. A turn is "truncated" when the previous
prompt, its answer and the new user message (about four characters a token: an estimate) pass `num_ctx`, or when
the prompt holds fewer tokens than the previous prompt and its answer (whatever the context).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from latencylab.analyse.server_metrics import CACHED
from latencylab.analyse.stats import numeric

CHARS_PER_TOKEN = 4.0  # an English text's characters per token, for the new user message only (an estimate)
TURN_FRAME_TOKENS = 8  # the chat template's tokens around one message (ChatML: <|im_start|>role … <|im_end|>)
MIN_REUSABLE = 16
COLUMNS = ("reusable", "truncated", "cached", "cache_source", "processed", "ms_per_token", "missed", "overflow",
           "history_tokens")  # fewer reusable tokens than this: too little to tell a reuse from a miss by time


def is_conversation(data: pd.DataFrame) -> bool:
    """Whether `data` holds turns of sessions."""
    return "turn" in data and numeric(data["turn"]).notna().any()


def turns(data: pd.DataFrame) -> pd.DataFrame:
    """Per turn of a session (rows of `data` with a turn, `data`'s index): `reusable` (tokens of the previous
    prompt and answer the new prompt starts with), `truncated`, `cached` and its `cache_source` (server, counters,
    timing), `processed` (prompt tokens the server worked on), `ms_per_token` (the first turns' prompt speed), `missed`
    (reusable tokens it processed again), `overflow` (the session's first truncated turn) and `history_tokens`
    (what the whole history would have been, untruncated: an estimate past the overflow)."""
    rows = data[numeric(data["turn"]).notna()] if "turn" in data else data.iloc[:0]
    if rows.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    rows = rows.sort_values(["run", "scenario", "session", "turn"], kind="stable")
    prompt, output = numeric(rows["prompt_tokens"]), numeric(rows["output_tokens"])
    prompt_ms = numeric(rows["prompt_eval_ms"])
    session = [rows["run"], rows["scenario"], rows["session"]]
    prev_prompt = prompt.groupby(session, sort=False).shift(1)
    prev_output = output.groupby(session, sort=False).shift(1)
    previous = prev_prompt + prev_output.fillna(0)
    user = np.ceil(numeric(rows["prompt_chars"]).fillna(0) / CHARS_PER_TOKEN) + TURN_FRAME_TOKENS
    num_ctx = numeric(rows["num_ctx"]) if "num_ctx" in rows else pd.Series(np.nan, index=rows.index)
    cut = (prompt < previous) | (num_ctx.notna() & (previous + user > num_ctx))
    truncated = cut.fillna(False).astype(int).groupby(session, sort=False).cummax().astype(bool)  # it only grows
    reusable = np.minimum(previous, prompt - 1).where(~truncated, 0.0).fillna(0.0).clip(lower=0.0)
    first = rows["turn"] == 0
    speed = (prompt_ms / prompt).where(first & (prompt > 0) & (prompt_ms > 0))
    ms_per_token = speed.groupby([rows["run"], rows["scenario"]], sort=False).transform("median")
    new = prompt - reusable
    by_time = prompt_ms < ms_per_token * (prompt + new) / 2  # nearer the new tokens' time than the whole prompt's
    server = _server_cached(rows, prompt)
    counted = numeric(rows[CACHED]).where(server.isna()) if CACHED in rows else pd.Series(np.nan, index=rows.index)
    # a cut history no longer starts as the cached one did: nothing of it reused (the system prompt at most)
    timed = (server.isna() & counted.isna() & prompt_ms.notna() & ms_per_token.notna()
             & ((reusable >= MIN_REUSABLE) | truncated))
    cached = server.fillna(counted).where(server.notna() | counted.notna(), reusable.where(by_time, 0.0).where(timed))
    source = np.select([server.notna(), counted.notna(), timed], ["server", "counters", "timing"], None)
    out = pd.DataFrame({"reusable": reusable, "truncated": truncated, "cached": cached, "cache_source": source,
                        "processed": prompt - cached.fillna(0.0), "ms_per_token": ms_per_token,
                        "missed": (reusable - cached).clip(lower=0.0).where(cached.notna() & (reusable > 0))},
                       index=rows.index)
    first_cut = truncated & ~truncated.groupby(session, sort=False).shift(1, fill_value=False).astype(bool)
    out["overflow"] = first_cut
    out["history_tokens"] = _history(prompt, output, user, truncated, rows["turn"] == 0)
    return out


def _server_cached(rows: pd.DataFrame, prompt: pd.Series) -> pd.Series:
    """The cached tokens the server reported. A newer Ollama writes `prompt_eval_cached_count` only when it is not
    zero (`omitempty`): in a scenario (one server) where the server reported it on some turn, a turn without it
    cached nothing; in one where it never did (Ollama 0.5.4), it is unknown."""
    server = numeric(rows["cached_tokens"])
    reports = server.notna().groupby([rows["run"], rows["scenario"]], sort=False).transform("any")
    return server.where(server.notna() | ~reports | prompt.isna(), 0.0)


def _history(prompt: pd.Series, output: pd.Series, user: pd.Series, truncated: pd.Series,
             first: pd.Series) -> pd.Series:
    """The whole history's tokens each turn would have sent untruncated: the prompt where it fitted, else the
    previous turn's history, its answer and the new user message (rows sorted by session and turn)."""
    history, last = [], math.nan
    for p, o, u, cut, start in zip(prompt, output.shift(1), user, truncated, first, strict=True):
        last = p if start or not cut or math.isnan(last) else last + (0 if math.isnan(o) else o) + u
        history.append(last)
    return pd.Series(history, index=prompt.index, dtype=float)


TURN_COLUMNS = ("run", "scenario", "session", "turn", "metric_ms", "prompt_tokens", "cached", "processed",
                "cache_source", "truncated", "overflow")


def turn_table(requests: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The report's turns (`requests` with `turns`' columns): each turn's metric, prompt, reuse and truncation."""
    if "reusable" not in requests or not is_conversation(requests):
        return pd.DataFrame(columns=list(TURN_COLUMNS))
    rows = requests[numeric(requests["turn"]).notna()].assign(metric_ms=lambda d: numeric(d[metric]))
    return rows[list(TURN_COLUMNS)].sort_values(["session", "turn"], kind="stable")  # scenarios as the report has them


def scenario_turns(table: pd.DataFrame) -> pd.DataFrame:
    """Per scenario of a turn table: the share of its prompt tokens served from cache (over the turns whose reuse
    is known), where that comes from, and the first turn where the history passed the context (NaN: none)."""
    rows = {}
    for key, g in table.groupby(["run", "scenario"], sort=False):
        known = g[numeric(g["cached"]).notna()]
        total = numeric(known["prompt_tokens"]).sum()
        rows[key] = {"cache_share": float(numeric(known["cached"]).sum() / total) if total else math.nan,
                     "cache_source": "+".join(sorted(known["cache_source"].dropna().unique())) or None,
                     "overflow_turn": float(numeric(g.loc[g["overflow"].astype(bool), "turn"]).min())}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=["cache_share", "cache_source", "overflow_turn"])
    if rows:
        out.index = pd.MultiIndex.from_tuples(list(rows), names=["run", "scenario"])
    return out
