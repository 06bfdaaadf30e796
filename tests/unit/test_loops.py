"""The collection's event loop: uvloop where installed, asyncio's when told so, and the run says which."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from latencylab.collect import loops


def test_asyncio_is_used_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loops.LOOP_ENV, "asyncio")
    assert loops.loop_factory() is None and loops.loop_name() == "asyncio"
    assert loops.run(_name()) == "asyncio"


def test_uvloop_is_used_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loops.LOOP_ENV, raising=False)
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert loops.loop_name() == expected
    assert loops.run(_name()) == expected


async def _name() -> str:
    await asyncio.sleep(0)
    return loops.running_loop_name()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_collector_is_held_while_collecting_and_given_back_as_it_was() -> None:
    import gc
    import weakref

    assert gc.isenabled()
    with loops.HeldGc().hold() as held:
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        cycle = weakref.ref(_Cycle())  # garbage only a collection can free
        assert cycle() is not None
        held.quiet_point()
        assert cycle() is None and (held.quiet, held.forced) == (1, 0)
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_budget_collects_in_flight_only_past_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import weakref

    monkeypatch.setattr(loops, "GC_BUDGET", 1000)
    with loops.HeldGc().hold() as held:
        cycle = weakref.ref(_Cycle())
        held.check_budget()
        assert cycle() is not None and held.forced == 0  # under the budget: no pause
        kept = [_Cycle() for _ in range(2000)]
        held.check_budget()
        assert cycle() is None and held.forced == 1
        del kept
