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
