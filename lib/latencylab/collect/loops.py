"""The event loop a collection runs on: uvloop where it is installed (each wake-up costs less, so the
stamps of many streams wait less behind one another), else asyncio's own. $LATENCYLAB_LOOP=asyncio
forces asyncio's, for comparisons."""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

LOOP_ENV = "LATENCYLAB_LOOP"
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
