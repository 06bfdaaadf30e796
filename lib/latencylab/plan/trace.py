"""A recorded trace to replay (the Mooncake format AIPerf reads): when each request arrives, how long its prompt
and answer are, and which prompt blocks it shares with other requests (`hash_ids`).

A trace carries no text: each hash id becomes a block of words drawn from a generator seeded by the id alone, so
that the same id is the same text in every request that names it (a shared prefix the server can cache), and the
same trace is the same prompts in every run. A word stands for a token: the lengths are estimates, since every
model tokenises the words its own way.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from latencylab.core.errors import StudyError

# Short, common words: most tokenisers make each one a single token (with its leading space).
WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
         "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
         "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
         "who", "so", "no", "time", "day", "year", "way", "man", "work", "life", "part", "place", "case", "week",
         "house", "water", "word", "room", "home", "sun", "moon", "tree", "road", "city", "book", "door", "hand")


@dataclass(frozen=True)
class TraceRequest:
    """One line of a trace: its arrival (ms after the trace's start), prompt and answer lengths (tokens), and the
    ids of the prompt blocks it is made of."""

    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...] = ()


def read_trace(path: Path, limit: int | None = None) -> list[TraceRequest]:
    """The requests of a JSONL trace in arrival order; a `StudyError` naming the line for anything unreadable."""
    requests: list[TraceRequest] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"workload.trace.file: cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            request = TraceRequest(float(row["timestamp"]), int(row["input_length"]), int(row["output_length"]),
                                   tuple(int(h) for h in row.get("hash_ids") or ()))
        except (ValueError, TypeError, KeyError) as exc:
            raise StudyError(f"{path}:{number}: not a trace line (timestamp, input_length, output_length, "
                             f"hash_ids): {exc!r}") from None
        if request.timestamp_ms < 0 or request.input_length < 1 or request.output_length < 1:
            raise StudyError(f"{path}:{number}: timestamp must be ≥ 0 and the lengths ≥ 1")
        requests.append(request)
        if limit is not None and len(requests) == limit:
            break
    if not requests:
        raise StudyError(f"workload.trace.file: {path} holds no request")
    return sorted(requests, key=lambda r: r.timestamp_ms)  # stable: a trace's own order among equal times


def block_text(hash_id: int, words: int) -> str:
    """The text of one prompt block: `words` words, the same for the same id in every request and every run."""
    draw = random.Random(f"block:{hash_id}")
    return " ".join(draw.choice(WORDS) for _ in range(words))


def trace_prompt(request: TraceRequest, block_tokens: int, index: int) -> str:
    """The prompt of one trace request, about `input_length` words: its blocks in order, the last one cut to what
    remains; without hash ids a text of its own (`index`: its place in the trace)."""
    if not request.hash_ids:
        return block_text(-1 - index, request.input_length)  # negative ids: never a trace's own
    parts, left = [], request.input_length
    for hash_id in request.hash_ids:
        if left <= 0:
            break
        parts.append(block_text(hash_id, min(block_tokens, left)))
        left -= block_tokens
    return " ".join(parts)
