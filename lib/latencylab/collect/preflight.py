"""Checks before a run starts, so that a wrong URL or a missing model is said at once, not after
200 failed samples, and nothing is written."""

from __future__ import annotations

import httpx

from latencylab.collect.backends import Backend, Timeouts, make_backend
from latencylab.collect.engine import find_binary
from latencylab.core.errors import PreflightError
from latencylab.core.protocols import server_kind
from latencylab.plan.study import StudySpec


async def check(study: StudySpec, api_key: str | None = None) -> None:
    """Every server the study names answers, and has every model where it can say so (unless it may pull); the
    embedded engine is installed where the study uses it (else: what to run, `make engine`)."""
    if study.uses_engine:
        find_binary("llama-server")
    seen: set[tuple[str, str]] = set()
    for scenario in study.scenarios:
        kind, url = study.backend_of(scenario), study.base_url_of(scenario)
        if server_kind(kind).started or url is None:
            continue
        backend = make_backend(kind, url, timeouts=Timeouts(connect_s=5.0), api_key=api_key)
        async with backend.client() as client:
            if (kind, url) not in seen:
                seen.add((kind, url))
                await _reachable(client, backend.url(server_kind(kind).health_path), kind, url)
            if backend.capabilities.list_models and not study.prepare.pull:
                await _has_model(client, backend, scenario.model, url)


async def _reachable(client: httpx.AsyncClient, probe: str, kind: str, url: str) -> None:
    try:
        response = await client.get(probe, timeout=5.0)
    except httpx.HTTPError as exc:
        raise PreflightError(
            f"cannot reach the {kind} server at {url} ({type(exc).__name__}: {exc or 'no answer'}); "
            "is it running, and is the URL right? (--base-url or base_url: in the study)"
        ) from None
    if response.status_code in (401, 403):
        raise PreflightError(f"the {kind} server at {url} refused the request (HTTP {response.status_code}): "
                             "set $LATENCYLAB_API_KEY to a key it accepts")


async def _has_model(client: httpx.AsyncClient, backend: Backend, model: str, url: str) -> None:
    if await backend.has_model(client, model) is False:  # None: the requests themselves will say
        raise PreflightError(f"the {backend.kind} server at {url} has no model {model!r}: "
                             + (f"run `ollama pull {model}` there, or " if backend.kind == "ollama" else "")
                             + "set prepare: {pull: true} in the study")
