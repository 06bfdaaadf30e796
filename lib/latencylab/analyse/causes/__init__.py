"""The causes of a slow first byte, one module each, and the registry that puts them to the test in order.

A cause's module holds the evidence it reads, its test (`Cause.judge`), its typed numbers (a `Values` dataclass
that also names the catalog messages wording them), the gain its fix would bring and the findings its planted
condition (tests/doubles/planted.py) is scored by; its words are in both catalogs (`Cause.words`). Adding a cause
is a module, its entry in `CAUSES` and its catalog entries. Waste (loads, waits, layers off the GPU, stalls) is
"confirmed" where it is material; the server's own work (prefill, the first token) is the floor (`floor`).
"""

from __future__ import annotations

from latencylab.analyse.causes.base import Cause
from latencylab.analyse.causes.cache import CacheMiss
from latencylab.analyse.causes.cpu import Cpu
from latencylab.analyse.causes.floor import Floor
from latencylab.analyse.causes.memory import Memory
from latencylab.analyse.causes.offload import Offload
from latencylab.analyse.causes.overflow import Overflow
from latencylab.analyse.causes.preemption import Preemption
from latencylab.analyse.causes.queueing import Queueing
from latencylab.analyse.causes.reloads import Reloads
from latencylab.analyse.causes.storage import Storage
from latencylab.analyse.causes.thinking import ThinkUnload
from latencylab.analyse.causes.variance import Variance
from latencylab.analyse.causes.vram import Vram

# In the order they are judged and reported: spread comes last, as it asks which confirmed cause explains it. The
# host's causes (storage, memory, cpu, vram) are judged only where the host evidence was taken; a conversation's
# causes (issue 27) come before the floor: what the floor counts as new tokens is what they left.
CAUSES: tuple[Cause, ...] = (Reloads(), Storage(), Memory(), Offload(), Vram(), ThinkUnload(), Overflow(), CacheMiss(),
                             Floor(), Queueing(), Preemption(), Cpu(),
                             Variance())
