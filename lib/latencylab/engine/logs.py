"""Reading llama-server's log: its tail for error messages, and what one instance said about the GPU."""

from __future__ import annotations

import re
from pathlib import Path


def tail(log_path: Path | None, lines: int = 20) -> str:
    """The last `lines` lines of the log, or "(no log)"."""
    if not log_path or not log_path.exists():
        return "(no log)"
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def offloaded_layers(log_path: Path, pid: int) -> int | None:
    """Layers offloaded to the GPU, from instance `pid`'s last "offloaded N/M layers to GPU" line."""
    if not log_path.exists():
        return None
    pattern = re.compile(rf"\[{pid}\].*offloaded (\d+)/\d+ layers to GPU")
    found = pattern.findall(log_path.read_text(errors="replace"))
    return int(found[-1]) if found else None
