"""The runtime a collection runs on: uvloop where it is installed (each wake-up costs less, so the stamps of
many streams wait less behind one another), else asyncio's own ($LATENCYLAB_LOOP=asyncio forces asyncio's,
for comparisons); and Python's cyclic garbage collector held off while requests are in flight.

Why the collector: a full collection stops the event loop for as long as it scans every tracked object. Measured
on issue 20 (benchmarks/product_path.py, 256 streams in flight): collections of 140–210 ms, and every stream
whose bytes arrived meanwhile was stamped that much late (TTFT p99 +150 ms against +0.6 ms at the median).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

LOOP_ENV = "LATENCYLAB_LOOP"
# Net new objects the collector may track before a collection runs anyway, in flight or not: reference cycles
# left by a long run must not grow without bound (a full collection of this many takes ~0.1 s on 2 cores).
GC_BUDGET = 500_000
T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when uvloop is importable and not turned off; None means asyncio's default."""
    if os.environ.get(LOOP_ENV, "").lower() == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    """`uvloop` or `asyncio`: what `run` will use."""
    return "asyncio" if loop_factory() is None else "uvloop"


def running_loop_name() -> str:
    """`uvloop` or `asyncio`: the loop this coroutine runs on (a notebook kernel's is asyncio's)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` on the loop `loop_factory` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


class HeldGc:
    """Python's cyclic garbage collector, held off while requests are in flight (`hold`); counts the collections
    it ran meanwhile: at quiet points (nothing in flight), and forced in flight by the budget."""

    def __init__(self) -> None:
        self.quiet = 0
        self.forced = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[HeldGc]:
        """The collector off while this runs: what exists now is collected once and frozen (never scanned again),
        then only `quiet_point` and the budget collect; the collector as it was afterwards."""
        was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            yield self
        finally:
            gc.unfreeze()
            if was_enabled:
                gc.enable()

    def quiet_point(self) -> None:
        """Nothing is in flight: collect now, where no stamp can wait behind it."""
        gc.collect()
        self.quiet += 1

    def check_budget(self) -> None:
        """Collect, in flight or not, when the objects tracked since the last collection exceed GC_BUDGET."""
        if gc.get_count()[0] > GC_BUDGET:
            gc.collect()
            self.forced += 1

    def counts(self) -> dict[str, int]:
        return {"quiet": self.quiet, "in_flight": self.forced}
