"""The one way a run is made, whoever makes it (`latencylab run`, the collect notebook, a script).

`create`: the servers answer (preflight), the plan is checked against their facts, the run is created once
(data/runs/<run_id>/ with run.json, check.json and the facts before its first request). `collect`: its requests
are sent (new or stopped alike), then the facts after its last request join those from before. So a run made in
JupyterLab holds the same files as one made from the terminal.

A study with `bundled_ollama:` is served by the bundled Ollama: pass the one you started (`serving`) to keep one
server from the check before the run to the facts after it; without one, each step starts its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from latencylab.collect import gather, preflight, runner, servers
from latencylab.collect.engine import prepare_models
from latencylab.collect.engine.ollama import BundledOllama
from latencylab.core import paths
from latencylab.core.errors import UsageError
from latencylab.core.sample import Sample
from latencylab.plan.check import CheckResult
from latencylab.plan.facts import Facts, RunFacts
from latencylab.plan.study import StudySpec, load_study, with_base_url
from latencylab.runs import store

API_KEY_ENV = servers.API_KEY_ENV  # for servers that need a key; read from the environment, never stored


def api_key() -> str | None:
    """The key for servers that need one, from $LATENCYLAB_API_KEY."""
    return os.environ.get(API_KEY_ENV)


def resolve(study: str | Path, base_url: str = "") -> tuple[StudySpec, dict[str, Any]]:
    """A study file (path or name under studies/), with `base_url` for the scenarios that name no server."""
    spec, raw = load_study(study)
    return (with_base_url(spec, base_url) if base_url else spec), raw


@contextlib.contextmanager
def serving(spec: StudySpec) -> Iterator[BundledOllama | None]:
    """The bundled Ollama when the study asks for it (`bundled_ollama:`), started and stopped for sure; else None."""
    with servers.bundled_ollama_for(spec) as server:
        yield server


async def check_served(spec: StudySpec) -> CheckResult:
    """`check` of a study as it will run: on the bundled Ollama (started for the check) when it asks for it."""
    with serving(spec) as server:
        return await check(servers.with_bundled_url(spec, server), ollama=server)


async def check(spec: StudySpec, moment: str = "check", ollama: BundledOllama | None = None) -> CheckResult:
    """The plan checked against its servers' facts (the embedded engine's models are put in place first: the
    check reads their GGUF metadata; the bundled Ollama's log, its configuration)."""
    if spec.uses_engine:
        prepare_models(only=servers.engine_models(spec))
    return await gather.check_study(spec, api_key(), moment=moment,  # type: ignore[arg-type]
                                    logs=servers.server_logs(ollama))


async def create(spec: StudySpec, raw: dict[str, Any] | None = None, run_id: str | None = None, *,
                 ollama: BundledOllama | None = None) -> tuple[str, CheckResult]:
    """Preflight, check, then the run's folder: run.json (status `prepared`), check.json, facts.json (before).

    Nothing is written when a server does not answer or the run id is taken. run.json keeps the study as given:
    the bundled Ollama's port is this process's, not the study's.
    """
    if run_id:
        store.refuse_existing(run_id)
    with servers.bundled_ollama_for(spec, given=ollama) as server:
        served = servers.with_bundled_url(spec, server)
        await preflight.check(served, api_key())
        checked = await check(served, moment="before", ollama=server)
    run_id = runner.create_run(spec, raw, run_id)
    store.save_check(checked, run_id)
    if checked.facts is not None:
        store.save_facts(RunFacts(before=checked.facts), run_id)
    return run_id, checked


async def collect(run_id: str, *, on_sample: Callable[[Sample], None] | None = None, progress: bool = True,
                  ollama: BundledOllama | None = None, lang: str | None = None) -> str:
    """Send the run's requests (every one without a finished sample), then record the servers' facts after the
    last one beside those from before the first, however the collection ended. Progress is worded in `lang`
    (default: the study's)."""
    study = store.load_meta(run_id).study
    with servers.bundled_ollama_for(study, run_id, ollama) if study else contextlib.nullcontext() as server:
        try:
            await runner.collect(run_id, on_sample=on_sample, progress=progress, ollama=server, lang=lang)
        except UsageError:
            raise  # refused before sending anything (locked, complete): the run stays as it was
        except BaseException:
            await _facts_after(run_id, server)  # stopped or cut short: the facts after still describe the servers
            raise
        await _facts_after(run_id, server)
    return run_id


async def _facts_after(run_id: str, ollama: BundledOllama | None = None) -> None:
    if ollama is not None and ollama.log_path and ollama.log_path.exists() \
            and ollama.log_path.parent != paths.run_dir(run_id):  # started before the run existed: keep its log
        shutil.copyfile(ollama.log_path, paths.run_dir(run_id) / "ollama.log")
    meta = store.load_meta(run_id)
    if meta.study is None:
        return
    before = store.read_facts(run_id).get("before")
    after: Facts = await gather.gather(servers.with_bundled_url(meta.study, ollama), "after", api_key(),
                                       logs=servers.server_logs(ollama))
    store.save_facts(RunFacts(before=Facts.model_validate(before) if before else None, after=after), run_id)


async def create_and_collect(study: str, *, base_url: str = "", run_id: str = "", progress: bool = True) -> str:
    """What the collect notebook does: collect run `run_id`, creating it from `study` (+ `base_url`) first when it
    does not exist yet."""
    for name, value in (("study", study), ("base_url", base_url), ("run_id", run_id)):
        if not isinstance(value, str):
            raise TypeError(f"parameter {name} must be a str, got {value!r}")
    if not (run_id and store.exists(run_id)):
        spec, raw = resolve(study, base_url)
        with serving(spec) as server:  # one bundled Ollama, if any, from the check to the facts after
            run_id, _ = await create(spec, raw, run_id or None, ollama=server)
            return await collect(run_id, progress=progress, ollama=server)
    return await collect(run_id, progress=progress)


def run(run_id: str, **kwargs: Any) -> str:
    """`collect` on an event loop of its own (the CLI, scripts), where Ctrl-C and SIGTERM stop the run alike."""
    return runner.on_own_loop(collect(run_id, **kwargs))


def create_now(spec: StudySpec, raw: dict[str, Any] | None = None, run_id: str | None = None, *,
               ollama: BundledOllama | None = None) -> tuple[str, CheckResult]:
    """`create` for callers outside an event loop (the CLI)."""
    return asyncio.run(create(spec, raw, run_id, ollama=ollama))
