"""Reading llama-server's log: its tail for error messages, and how many layers an instance offloaded to a GPU.

llama.cpp prints `load_tensors: offloaded N/M layers to GPU` (src/llama-model.cpp) only when it was built
with a GPU backend (a CPU build prints no such line), and only at log verbosity 4: the library's INFO
messages count as "trace" for llama-server (common/log.cpp), so the engine raises the verbosity on GPU
builds. In router mode each child's stderr is forwarded with
the child's port, padded to five characters: `[34907] load_tensors: …` or `[ 8080] …`
(tools/server/server-models.cpp, `LOG("[%5d] %s", c.port, …)`). llama-server's API does not expose the
layer count, so the log is the only source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


def tail(log_path: Path | None, lines: int = 20) -> str:
    """The last `lines` lines of the log, or "(no log)"."""
    if not log_path or not log_path.exists():
        return "(no log)"
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


_OFFLOADED = re.compile(r"^(?:\[\s*(?P<port>\d+)\]\s+)?.*?offloaded (?P<n>\d+)/(?P<total>\d+) layers to GPU", re.M)


@dataclass(frozen=True)
class Offload:
    """Layers of one model instance on the GPU; `total` counts the output layer, as llama.cpp does."""

    layers: int
    total: int

    @property
    def share(self) -> float:
        return self.layers / self.total if self.total else 0.0

    @property
    def complete(self) -> bool:
        return self.layers >= self.total


def parse_offload(log_text: str, port: int | None = None) -> Offload | None:
    """The last offload line of the child on `port` (router mode), or of the server itself when `port` is None."""
    found = None
    for match in _OFFLOADED.finditer(log_text):
        tagged = match["port"]
        if (port is None and tagged is None) or (port is not None and tagged is not None and int(tagged) == port):
            found = match
    return Offload(int(found["n"]), int(found["total"])) if found else None


class OffloadLog:
    """Follows a growing llama-server log and keeps the last offload of each port (each line read once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._by_port: dict[int | None, Offload] = {}

    def _catch_up(self) -> None:
        try:
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                chunk = log.read()
        except OSError:
            return
        complete = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += complete
        for match in _OFFLOADED.finditer(chunk[:complete].decode(errors="replace")):
            port = int(match["port"]) if match["port"] else None
            self._by_port[port] = Offload(int(match["n"]), int(match["total"]))

    def offload(self, port: int | None = None) -> Offload | None:
        """The last offload logged by the child on `port` (or by a single server, with None)."""
        self._catch_up()
        return self._by_port.get(port)
