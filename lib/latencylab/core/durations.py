"""Ollama's `keep_alive` values, parsed exactly as Ollama parses them (`api.Duration.UnmarshalJSON`)."""

from __future__ import annotations

import math
import re

_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
FOREVER = math.inf


def parse_go_duration(text: str) -> float:
    """Go's `time.ParseDuration` in seconds; a ValueError says why Ollama would refuse `text`."""
    if text in ("0", "-0", "+0"):
        return 0.0
    if re.fullmatch(r"[-+]?\d+(\.\d*)?", text):
        raise ValueError(
            f'"{text}" is a number in a string, which Ollama rejects ("time: missing unit in duration"); '
            f'write {text} (seconds) or "{text}s"'
        )
    if not _GO_DURATION.fullmatch(text):
        raise ValueError(f'"{text}" is not a Go duration such as "300ms", "5m" or "1h30m"')
    seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(text))
    return -seconds if text.startswith("-") else seconds


def keep_alive_seconds(value: float | int | str) -> float:
    """Seconds a model stays loaded after a request; `FOREVER` for negative values (Ollama's "forever")."""
    if isinstance(value, bool):
        raise ValueError("keep_alive cannot be true/false (Ollama answers \"Unsupported type: 'bool'\")")
    seconds = float(value) if isinstance(value, int | float) else parse_go_duration(value.strip())
    return FOREVER if seconds < 0 else seconds
