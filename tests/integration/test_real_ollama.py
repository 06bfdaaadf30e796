"""Integration tests on a real Ollama: the bundled 0.5.4 (Intel's CPU build, `make test` assembles it).

Everything Ollama-specific that tests/doubles/ollama.py stood in for, on the real server: states from /api/ps,
keep_alive forms, preload, both cold protocols, a tag it lacks and cannot pull, the facts from /api/show and
/api/version, queueing (OLLAMA_NUM_PARALLEL=1), eviction (OLLAMA_MAX_LOADED_MODELS=1) and faults. One server
serves the session (`real_ollama` in conftest); each test starts with nothing loaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from latencylab.collect import gather, runner, servers
from latencylab.collect.backends import GenerationRequest
from latencylab.collect.backends.ollama import OllamaBackend
from latencylab.collect.engine.ollama import BundledOllama
from latencylab.core import paths
from latencylab.core.sample import Sample
from latencylab.plan import check, workload
from latencylab.plan.check import OLLAMA_KEEP_ALIVE
from latencylab.plan.study import StudySpec, parse_study
from latencylab.runs import store

pytestmark = pytest.mark.real_ollama

Q4, Q8 = "smollm2:135m-q4_1", "smollm2:135m-q8_0"
VERSION = "0.5.4-ipexllm-20250407"


def _ps(server: BundledOllama) -> list[dict[str, Any]]:
    return httpx.get(f"{server.base_url}/api/ps", timeout=10).json()["models"]


def _unload_all(server: BundledOllama) -> None:
    """Unload every model and wait until /api/ps says so (the unload is asynchronous)."""
    for model in _ps(server):
        httpx.post(f"{server.base_url}/api/generate", json={"model": model["name"], "keep_alive": 0}, timeout=30)
    deadline = time.monotonic() + 10
    while _ps(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ps(server) == []


@pytest.fixture
def ollama(real_ollama: BundledOllama, workdir: Path) -> BundledOllama:
    """The session's real Ollama with nothing loaded, and a private data/ folder."""
    _unload_all(real_ollama)
    return real_ollama


def _study(scenarios: list[dict[str, Any]], **top: Any) -> StudySpec:
    workload = {"requests": 2, "max_tokens": 4, "idle_gap_s": 0, "order": "blocked", **top.pop("workload", {})}
    return parse_study({"name": "real-ollama", "backend": "ollama", "bundled_ollama": True, "workload": workload,
                        "scenarios": scenarios, **top})


def _run(study: StudySpec, server: BundledOllama) -> list[dict[str, Any]]:
    run_id = runner.run_study(study, ollama=server, progress=False)
    samples = store.read_samples(paths.run_dir(run_id) / "samples.jsonl")
    return sorted((s for s in samples if not s["warmup"]), key=lambda s: s["seq"])


def _measure(server: BundledOllama, request: GenerationRequest, endpoint: str = "generate") -> Sample:
    async def go() -> Sample:
        backend = OllamaBackend(server.base_url, endpoint=endpoint)
        async with backend.client() as client:
            return await backend.measure(client, request)

    return asyncio.run(go())


def _expires_in_s(server: BundledOllama) -> float:
    (model,) = _ps(server)
    return (datetime.fromisoformat(model["expires_at"]) - datetime.now(UTC)).total_seconds()


def test_states_cold_warm_and_reload_when_runner_options_change(ollama):
    samples = _run(_study([{"name": "default", "model": Q4},
                           {"name": "small-ctx", "model": Q4, "options": {"num_ctx": 512}}]), ollama)
    assert [(s["scenario"], s["state"]) for s in samples] == [
        ("default", "cold"), ("default", "warm"), ("small-ctx", "reload"), ("small-ctx", "warm")]
    cold, warm, reload, _ = samples
    assert cold["load_ms_source"] == "server" and cold["load_ms"] > 100  # a real load: ~250–800 ms here
    assert warm["load_ms"] < 100  # scheduler time, not a load (5–20 ms on an idle machine)
    assert reload["load_ms"] > 100
    # /api/ps on a server without a GPU: size is Ollama's estimate, size_vram 0, no context_length in 0.5.4
    assert warm["model_size_bytes"] > 0 and warm["vram_bytes"] == 0 and warm["context_length"] is None


def test_unload_before_each_makes_every_request_cold(ollama):
    samples = _run(_study([{"name": "q4", "model": Q4}], cold_protocol="unload_before_each",
                          workload={"requests": 3}), ollama)
    assert [s["state"] for s in samples] == ["cold"] * 3
    assert all(s["load_ms"] > 100 for s in samples)


def test_first_only_unloads_once_per_scenario(ollama):
    samples = _run(_study([{"name": "a", "model": Q4, "keep_alive": -1}, {"name": "b", "model": Q4}],
                          cold_protocol="first_only"), ollama)
    assert [(s["scenario"], s["state"], s["phase"]) for s in samples] == [
        ("a", "cold", "first"), ("a", "warm", "subsequent"), ("b", "cold", "first"), ("b", "warm", "subsequent")]


def test_keep_alive_forms_as_the_server_reads_them(ollama):
    def send(keep_alive: float | str | None) -> Sample:
        return _measure(ollama, GenerationRequest(model=Q4, prompt="hi", max_tokens=2, keep_alive=keep_alive))

    assert send(None).ok and 290 < _expires_in_s(ollama) <= 300  # none: the server's default, 5m
    assert OLLAMA_KEEP_ALIVE == "5m"  # what a sample records as the bundled server's default
    assert send(2).ok and 0.5 < _expires_in_s(ollama) <= 2.0  # a number is seconds
    assert send("1m30s").ok and 85 < _expires_in_s(ollama) <= 90  # a string is a Go duration
    assert send(-1).ok and _expires_in_s(ollama) > 200 * 365 * 86400  # negative: forever (year ~2318)
    assert send("-1m").ok and _expires_in_s(ollama) > 200 * 365 * 86400
    bad = send("300")  # a bare number in a string is no Go duration
    assert (bad.ok, bad.status_code) == (False, 400) and "missing unit in duration" in bad.error
    assert send(0).ok  # 0: unloaded as soon as the request is done
    deadline = time.monotonic() + 5
    while _ps(ollama) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ps(ollama) == []


def test_a_keep_alive_shorter_than_the_gap_makes_every_request_cold(ollama):
    samples = _run(_study([{"name": "short", "model": Q4, "keep_alive": 1, "idle_gap_s": 1.8}]), ollama)
    assert [s["state"] for s in samples] == ["cold", "cold"]
    assert all(s["resident_before"] is False for s in samples)


def test_preload_makes_the_first_measured_request_warm(ollama):
    samples = _run(_study([{"name": "preloaded", "model": Q4, "keep_alive": -1, "preload": True}]), ollama)
    assert [(s["state"], s["phase"]) for s in samples] == [("warm", "first"), ("warm", "subsequent")]
    assert all(s["load_ms"] < 100 for s in samples)

    async def load_only() -> dict[str, Any]:
        backend = OllamaBackend(ollama.base_url)
        async with backend.client() as client:
            return await backend.load(client, Q4)

    assert load_only.__name__ and asyncio.run(load_only())["done_reason"] == "load"


def test_a_healthy_server_confirms_nothing_its_prompt_processing_is_the_floor(ollama):
    # issue 26: one preloaded scenario, no target, nothing wrong with the server — its prefill is its own work,
    # which read "prompt processing ✅ confirmed" before
    from latencylab.publish import report

    no_targets = dict.fromkeys(("first_ms", "subsequent_ms", "mean_ms", "mean_stretch_ms", "cv", "fits_in_vram"))
    study = _study([{"name": "healthy", "model": Q4, "keep_alive": -1, "preload": True}],
                   workload={"requests": 8, "max_tokens": 8}, targets=no_targets)
    from latencylab.analyse.causes.base import host_share
    from latencylab.analyse.causes.cpu import CONTENDED
    from latencylab.runs import store

    run_id = runner.run_study(study, ollama=ollama, progress=False)
    doc = report.document_of([run_id])
    verdicts = {v.cause: v.verdict for v in doc.findings.diagnosis.verdicts}
    # CPU taken by other processes is real on a shared machine (issue 33: the server's run-queue wait shows it):
    # allowed only where the samples show others using a quarter of the cores or more; on a quiet one, nothing
    contended = bool((host_share(store.load_run(run_id)) >= CONTENDED).any())
    confirmed = {cause for cause, verdict in verdicts.items() if verdict == "confirmed"}
    assert not confirmed - ({"cpu"} if contended else set()), verdicts
    assert verdicts["prompt"] == "floor" and verdicts["offload"] == "no_gpu"  # CPU build: no GPU used, no fault
    if not confirmed:
        assert "| none |" in doc.markdown("summary")  # the answer's table: no waste confirmed


def test_a_tag_the_server_lacks_and_cannot_pull(ollama):
    missing = "smollm2:nope"
    generate = _measure(ollama, GenerationRequest(model=missing, prompt="hi", max_tokens=2))
    assert (generate.ok, generate.error_kind, generate.status_code) == (False, "http", 404)
    assert f"model '{missing}' not found" in generate.error
    chat = _measure(ollama, GenerationRequest(model=missing, prompt="hi", max_tokens=2), endpoint="chat")
    assert chat.status_code == 404 and f'model "{missing}" not found, try pulling it first' in chat.error

    async def probe() -> tuple[str | None, int | None]:
        backend = OllamaBackend(ollama.base_url)
        async with backend.client() as client:
            return await backend.pull_probe(client, missing)

    error, size = asyncio.run(probe())
    # The pull goes to the registry through the dead loopback proxy: it fails at once, on this machine.
    assert size is None and "pull model manifest" in error and "proxyconnect tcp: dial tcp 127.0.0.1:9" in error


def test_show_and_version_facts(ollama):
    spec = servers.with_bundled_url(_study([{"name": "q4", "model": Q4}, {"name": "q8", "model": Q8}]), ollama)
    facts = gather.collect(spec)
    server = facts.server("ollama", ollama.base_url)
    assert server.version == VERSION
    q4, q8 = server.model(Q4), server.model(Q8)
    assert (q4.context_length, q4.block_count, q4.quantization_level) == (8192, 30, "Q4_1")
    assert (q4.head_count, q4.head_count_kv, q4.embedding_length, q4.family) == (9, 3, 576, "llama")
    assert q8.quantization_level == "Q8_0" and q8.size_bytes > q4.size_bytes
    assert q4.size_bytes == 98_363_007  # /api/tags: the blob and its config
    assert server.config is None  # no log given: its configuration is unknown, not its defaults


def test_one_request_at_a_time_queues_inside_total_duration_not_load(ollama):
    """OLLAMA_NUM_PARALLEL=1: three requests at once are served one after another; the wait is in
    total_duration (and in TTFT), never in load_duration."""
    samples = _run(_study([{"name": "q4", "model": Q4, "keep_alive": -1, "preload": True}],
                          workload={"requests": 3, "concurrency": 3, "max_tokens": 24}), ollama)
    assert all(s["ok"] for s in samples)
    waits = sorted(s["total_ms"] - s["load_ms"] - s["prompt_eval_ms"] - s["eval_ms"] for s in samples)
    first_eval = min(s["eval_ms"] for s in samples)
    # The second waits for one whole request (~23 tokens), the third for two.
    assert waits[0] < 0.5 * first_eval < waits[1] < waits[2]
    assert all(s["load_ms"] < 100 for s in samples)


def test_one_resident_model_evicts_the_other(ollama):
    samples = _run(_study([{"name": "q4", "model": Q4}, {"name": "q8", "model": Q8}],
                          workload={"order": "interleaved"}), ollama)
    assert [(s["scenario"], s["state"]) for s in samples] == [("q4", "cold"), ("q8", "cold")] * 2
    assert [m["name"] for m in _ps(ollama)] == [Q8]


@pytest.fixture
def own_ollama(models: list[Path]) -> Any:
    """A real Ollama of its own, for the tests that kill it."""
    with BundledOllama(models=(Q4,)) as server:
        yield server


def test_server_killed_mid_stream_then_restarted(own_ollama):
    async def go() -> tuple[Sample, Sample]:
        backend = OllamaBackend(own_ollama.base_url)
        async with backend.client() as client:
            await backend.load(client, Q4)
            request = GenerationRequest(model=Q4, prompt="Tell me a long story.", max_tokens=400,
                                        options={"num_predict": 400})
            task = asyncio.create_task(backend.measure(client, request))
            await asyncio.sleep(0.6)  # warm: the first tokens are out after ~50 ms; 400 take seconds
            os.kill(own_ollama.process.pid, signal.SIGKILL)
            killed = await task
        own_ollama.stop()  # its runner, left behind by the killed server, goes with the process group
        own_ollama.start()  # the same port: a server restarted between requests
        async with backend.client() as client:
            resident = await backend.residency(client, Q4)
            after = await backend.measure(client, GenerationRequest(model=Q4, prompt="hi", max_tokens=2))
        assert resident is not None and not resident.resident
        return killed, after

    killed, after = asyncio.run(go())
    assert (killed.ok, killed.error_kind) == (False, "incomplete") and killed.ttft_ms is not None
    assert after.ok and after.load_ms > 100  # cold again after the restart


def _ours(folder: Path) -> list[int]:
    """Bundled-Ollama processes (server or runner) whose models folder is under `folder`."""
    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if process.info["name"] == "ollama-lib" and (
                    str(folder) in " ".join(process.cmdline()) + process.environ().get("OLLAMA_MODELS", "")):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def test_cli_run_on_the_bundled_ollama_leaves_nothing_running(workdir, models, tmp_path):
    study = tmp_path / "bundled.yaml"
    study.write_text(json.dumps({
        "name": "bundled", "backend": "ollama", "bundled_ollama": {"num_parallel": 1},
        "workload": {"requests": 1, "max_tokens": 2},
        "scenarios": [{"name": "q4", "model": Q4}]}), encoding="utf-8")
    scratch = tmp_path / "tmp"  # the bundled server's models folder lands here: its processes are recognisable
    scratch.mkdir()
    result = subprocess.run([sys.executable, "-m", "latencylab.cli", "run", str(study), "--no-report"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (workdir / "data" / "runs").iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["server"]["bundled_ollama"] == {"version": VERSION, "env": {"OLLAMA_NUM_PARALLEL": "1"}}
    assert meta["study"]["scenarios"][0].get("base_url") is None  # the bundled server's port is not the study's
    (sample,) = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert (sample["keep_alive"], sample["server_keep_alive"]) == (None, "5m")  # the request gave none: ours
    facts = json.loads((run_dir / "facts.json").read_text())
    for moment in ("before", "after"):  # one server from the check before the run to the facts after it
        (server,) = facts[moment]["servers"]
        (model,) = server["models"]
        assert server["version"] == VERSION and (model["name"], model["context_length"]) == (Q4, 8192)
        # its configuration, as its own start log printed it (0.5.4 logs no OLLAMA_CONTEXT_LENGTH)
        assert server["config"]["OLLAMA_NUM_PARALLEL"] == "1" and "OLLAMA_CONTEXT_LENGTH" not in server["config"]
    assert facts["before"]["servers"][0]["base_url"] == facts["after"]["servers"][0]["base_url"]
    assert "Listening on 127.0.0.1:" in (run_dir / "ollama.log").read_text()  # its log, kept with the run
    assert _ours(scratch) == [] and list(scratch.iterdir()) == []  # stopped, and its folder removed


@pytest.mark.parametrize("num_ctx", [512, 8192])
def test_the_checks_memory_estimate_against_ollamas_own_size(ollama, num_ctx):
    spec = servers.with_bundled_url(_study([{"name": "q8", "model": Q8, "options": {"num_ctx": num_ctx}}]), ollama)
    plan = check.Plan(spec, gather.collect(spec))
    assert plan.num_ctx(spec.scenarios[0]) == num_ctx
    need = plan.need(spec.scenarios[0])
    assert _measure(ollama, GenerationRequest(model=Q8, prompt="hi", max_tokens=1,
                                              options={"num_ctx": num_ctx})).ok
    (loaded,) = _ps(ollama)
    assert abs(need.size / loaded["size"] - 1) < 0.02  # +0.6 % to +1.3 % measured (README, "A real Ollama in the box")


def test_the_check_knows_the_default_context_of_this_server_version(ollama):
    spec = servers.with_bundled_url(_study([{"name": "q4", "model": Q4}], gpu={"vram_gb": 80}), ollama)
    plan = check.Plan(spec, gather.collect(spec))
    assert plan.num_ctx(spec.scenarios[0]) == 2048  # 0.5.4: 2048 whatever the VRAM (262144 from 0.15.5)
    assert _measure(ollama, GenerationRequest(model=Q4, prompt="hi", max_tokens=1)).ok
    (loaded,) = _ps(ollama)
    assert loaded["size"] == 249_394_944  # what Ollama itself estimates at num_ctx 2048


def test_a_token_repeated_more_than_30_times_ends_the_stream_without_its_final_chunk(ollama):
    """Ollama aborts a generation whose token repeats more than 30 times (llm/server.go `tokenRepeat`, in 0.5.4
    as in 0.15.5) and ends the stream with no final chunk and no error: a failed, `incomplete` sample. Greedy
    decoding of this long prompt makes SmolLM2 repeat "-"."""
    prompt = max(workload.BUILTIN_PROMPTS, key=len)
    looping = _measure(ollama, GenerationRequest(model=Q8, prompt=prompt, max_tokens=40, temperature=0.0, seed=42))
    assert (looping.ok, looping.error_kind, looping.output_tokens) == (False, "incomplete", 31)
    sampled = _measure(ollama, GenerationRequest(model=Q8, prompt=prompt, max_tokens=40, temperature=0.8, seed=42))
    assert sampled.ok and sampled.done_reason == "length"
