"""`latencylab check` and server facts end to end against the Ollama test double configured as the seed's
machine (3 GB of VRAM, phi3-mini): the test double's numbers prove that the rules fire, nothing more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from doubles.ollama import PHI3_MINI, PHI3_MINI_Q4_K_M, SEED_VRAM_BYTES, OllamaDouble, seed_machine
from latencylab.collect import gather, runner
from latencylab.core import paths
from latencylab.plan import check
from latencylab.plan.facts import Facts, HostFacts
from latencylab.plan.study import load_study, parse_study, with_base_url
from latencylab.runs import store

ROOT = Path(__file__).resolve().parents[2]
LITERAL = ROOT / "tests" / "data" / "seed-phi3-literal.yaml"
SHIPPED = ROOT / "studies" / "seed-phi3.yaml"
CLI = [sys.executable, "-m", "latencylab.cli"]
SEED_RULES = ("num-gpu-layers", "num-gpu-unknown", "memory-partial", "thrashing-memory", "thrashing-options",
              "thrashing-count")


def checked(study_path: Path, server: OllamaDouble) -> check.CheckResult:
    spec, _ = load_study(study_path)
    return gather.run_check(with_base_url(spec, server.base_url))


def rules(result: check.CheckResult, level: str = "warning") -> set[str]:
    return {f.rule for f in result.findings if f.level == level}


def test_the_seeds_literal_plan_yields_the_num_gpu_memory_and_thrashing_findings():
    with seed_machine() as server:
        result = checked(LITERAL, server)
    warnings = rules(result)
    assert {"num-gpu-unknown", "memory-partial", "thrashing-memory"} <= warnings
    assert rules(result, "error") == {"tag-unavailable"}  # phi3:mini-q4_K_M is no tag: the pull's own error
    assert result.exit_code == 2
    # Had the tag existed, the layer count would be known: 1 of 33 layers on the GPU.
    with seed_machine(models={"phi3:mini": PHI3_MINI, "phi3:mini-q4_K_M": PHI3_MINI_Q4_K_M}) as server:
        result = checked(LITERAL, server)
    assert {"num-gpu-layers", "memory-partial", "thrashing-memory"} <= rules(result) and result.exit_code == 1
    (layers,) = [f for f in result.findings if f.rule == "num-gpu-layers"]
    assert layers.evidence["num_gpu"] == 1 and layers.evidence["layers"] == 33


def test_the_shipped_study_yields_none_of_them():
    with seed_machine() as server:
        result = checked(SHIPPED, server)
    assert not {f.rule for f in result.findings} & set(SEED_RULES)
    assert result.exit_code == 0 and rules(result, "note") >= {"memory-offload-expected", "will-pull"}


def test_cli_check_prints_one_line_per_finding_with_its_fix_and_json_gives_the_same(workdir):
    env = {**os.environ, paths.HOME_ENV: str(workdir)}
    with seed_machine() as server:
        text = subprocess.run([*CLI, "check", str(LITERAL), "--base-url", server.base_url, "--lang", "en"], env=env,
                              capture_output=True, text=True, timeout=120)
        as_json = subprocess.run([*CLI, "check", str(LITERAL), "--base-url", server.base_url, "--json"], env=env,
                                 capture_output=True, text=True, timeout=120)
        in_its_lang = subprocess.run([*CLI, "check", str(LITERAL), "--base-url", server.base_url], env=env,
                                     capture_output=True, text=True, timeout=120)
    assert in_its_lang.stdout.splitlines()[-1].startswith("1 error(es), 4 aviso(s)")  # the study's lang: es
    assert text.returncode == as_json.returncode == 2, text.stderr
    lines = text.stdout.splitlines()
    found = [line.split()[1] for line in lines if line.split()[0] in check.LEVELS]
    assert "thrashing-memory" in found and lines[-1].startswith("1 error(s)")
    assert sum(line.strip().startswith("fix: ") for line in lines) == len(found)
    data = json.loads(as_json.stdout)
    assert [f["rule"] for f in data["findings"]] == found and data["exit_code"] == 2
    assert data["facts"]["servers"][0]["version"] == "0.33.0"
    helped = subprocess.run([*CLI, "check", "--help"], capture_output=True, text=True, timeout=60)
    assert "0 nothing or notes only, 1 warnings" in helped.stdout


def test_the_double_models_memory_eviction_and_the_model_count_limit():
    with seed_machine(max_loaded_models=3) as server:
        httpx.post(f"{server.base_url}/api/pull", json={"model": "phi3:3.8b-mini-4k-instruct-q4_K_M"}, timeout=10)
        httpx.post(f"{server.base_url}/api/generate", json={"model": "phi3:mini"}, timeout=10)
        (mini,) = server.ps()["models"]
        # weights 2 176 178 913 + KV 1 610 612 736 + a spare layer 118 337 239 + the graph 301 991 936 (llm/memory.go)
        assert mini["size"] == 4_207_120_824
        # 3 GiB − the 457 MiB reserve − the graph = 2 440 034 304 bytes for layers of 3 905 128 888 / 33 =
        # 118 337 239.0 each: 20 whole layers (2 366 744 780), and the graph beside them
        assert mini["size_vram"] == 2_366_744_780 + 301_991_936
        httpx.post(f"{server.base_url}/api/generate", json={"model": "phi3:3.8b-mini-4k-instruct-q4_K_M"}, timeout=10)
        assert [m["name"] for m in server.ps()["models"]] == ["phi3:3.8b-mini-4k-instruct-q4_K_M"]
        assert server.evictions == ["phi3:mini"]  # the two do not fit together
        httpx.post(f"{server.base_url}/api/generate", json={"model": "phi3:mini", "options": {"num_gpu": 1}},
                   timeout=10)
        (one_layer,) = server.ps()["models"]
        assert one_layer["size_vram"] == (4_207_120_824 - 301_991_936) // 33 + 301_991_936  # a layer and the graph
    small = {"a": {"size": 1000}, "b": {"size": 1000}}
    with OllamaDouble(models=small, vram_bytes=SEED_VRAM_BYTES, max_loaded_models=1) as server:
        for model in ("a", "b"):
            httpx.post(f"{server.base_url}/api/generate", json={"model": model}, timeout=10)
        assert server.evictions == ["a:latest"]  # they would fit: OLLAMA_MAX_LOADED_MODELS evicts


def test_the_double_answers_show_and_version_and_its_loads_and_decoding_follow_size_and_offload():
    with seed_machine(load_s_per_gb=0.1, token_delay_s=0.01) as server:
        url = server.base_url
        assert httpx.get(f"{url}/api/version").json() == {"version": "0.33.0"}
        shown = httpx.post(f"{url}/api/show", json={"model": "phi3:mini"}).json()
        assert shown["model_info"]["phi3.block_count"] == 32 and shown["details"]["quantization_level"] == "Q4_0"
        assert httpx.post(f"{url}/api/show", json={}).status_code == 400
        missing = httpx.post(f"{url}/api/show", json={"model": "llama9"})
        assert (missing.status_code, missing.json()) == (404, {"error": "model 'llama9' not found"})
        final = httpx.post(f"{url}/api/generate", json={"model": "phi3:mini", "prompt": "hi", "stream": False},
                           timeout=10).json()
        assert final["load_duration"] >= (0.05 + 0.1 * PHI3_MINI.size / 1e9) * 1e9
        cpu_share = 1 - server.ps()["models"][0]["size_vram"] / server.ps()["models"][0]["size"]
        # 5 tokens, 4 decode steps after the first (sampled from the prompt's logits), slower with layers on the CPU
        assert final["eval_duration"] >= 4 * 0.01 * (1 + 3.0 * cpu_share) * 1e9


def run(spec_path: Path, server: OllamaDouble, **workload: Any):
    spec, raw = load_study(spec_path)
    data = with_base_url(spec, server.base_url).model_dump(mode="json", exclude={"sweep"})
    data["workload"] = {**data["workload"], "requests": 2, "max_tokens": 4, "idle_gap_s": 0, **workload}
    return store.load_run(runner.run_study(parse_study(data), progress=False))


def test_a_run_confirms_the_prediction_and_the_shipped_order_never_thrashes(workdir):
    with seed_machine(models={"phi3:mini": PHI3_MINI, "phi3:mini-q4_K_M": PHI3_MINI_Q4_K_M}) as server:
        findings = checked(LITERAL, server).findings
        predicted = {f.scenario: f.evidence["gpu_pct"] for f in findings if f.rule == "memory-partial"}
        frame = run(LITERAL, server)
        thrashed = len(server.evictions)
    measured = frame.groupby("scenario")["gpu_share"].median() * 100
    # the check's estimate, by hand: (3 GiB − 457 MiB reserve − graph) / (weights + KV + a spare layer)
    #   baseline, num_ctx 4096: (3 221 225 472 − 479 199 232 − 301 991 936) / 3 905 128 888 = 0.625 → 62 %
    #   optimised, Q4_K_M at num_ctx 2048, num_batch 128 (graph 4 × 128 × (1 + 4 × 3072 + 2048 × 33) = 40 894 976):
    #   (3 221 225 472 − 479 199 232 − 40 894 976) / (2 393 232 672 + 805 306 368 + 99 954 345) = 0.819 → 81 %
    assert predicted == {"baseline": 62, "optimised": 81}
    # what the double placed: 20 whole layers and the graph, 2 668 736 716 of 4 207 120 824 (63.4 %); num_gpu 1:
    # one layer (3 298 493 385 / 33 = 99 954 345) and the graph of 3 339 388 361 (4.2 %)
    assert measured.round(1).to_dict() == {"baseline": 63.4, "optimised": 4.2}
    verdicts = {c.scenario: c.verdict for c in check.confirm(findings, (measured / 100).to_dict())}
    assert verdicts == {"baseline": "confirmed", "optimised": "confirmed"}  # num_gpu 1 caps optimised at 3 %
    subsequent = frame[frame["phase"] == "subsequent"]
    assert thrashed >= 3 and (subsequent["state"] == "cold").all()  # interleaved: every request pays a load
    host = store.load_meta(frame["run_id"].iloc[0]).host  # run.json's host: the facts collect gathered
    assert HostFacts.model_validate(host).cores_logical == os.cpu_count()
    with seed_machine() as server:
        frame = run(SHIPPED, server)
        assert server.evictions == []  # blocked, one cold start per scenario: nothing evicts anything
    states = frame.sort_values("seq").groupby("scenario")["state"].apply(list).to_dict()
    assert states["baseline"] == ["cold", "warm"] and states["keepalive"] == ["warm", "warm"]  # preloaded


def test_facts_before_and_after_a_run_hold_version_models_and_what_was_loaded(workdir):
    with seed_machine() as server:
        spec = parse_study({"name": "f", "backend": "ollama", "base_url": server.base_url, "gpu": {"vram_gb": 3},
                            "scenarios": [{"name": "a", "model": "phi3:mini"}, {"name": "b", "model": "nope:1b"}]})
        before = gather.collect(spec, "before")
        httpx.post(f"{server.base_url}/api/generate", json={"model": "phi3:mini"}, timeout=10)
        after = gather.collect(spec, "after")
    (ollama,) = before.servers
    assert ollama.reachable and ollama.version == "0.33.0" and ollama.missing == ["nope:1b"]
    (mini,) = ollama.models
    assert (mini.block_count, mini.context_length, mini.quantization_level, mini.size_bytes) == (
        32, 4096, "Q4_0", PHI3_MINI.size)
    assert before.servers[0].loaded == [] and after.servers[0].loaded[0].name == "phi3:mini"
    assert after.moment == "after" and after.host.cores_logical
    assert Facts.model_validate_json(after.model_dump_json()) == after  # the run record can hold it


@pytest.mark.engine
def test_the_embedded_demo_gets_facts_from_its_gguf_files_and_the_same_check(models):
    spec, _ = load_study("embedded-demo")
    result = gather.run_check(spec)
    (engine,) = result.facts.servers
    assert engine.kind == "embedded" and all(m.block_count and m.context_length for m in engine.models)
    assert not rules(result, "error")


def test_run_prints_the_checks_warnings_first_and_keeps_them_as_check_json(workdir, capsys):
    from latencylab import cli
    from latencylab.collect import workflow

    with seed_machine() as server:
        spec, _ = load_study(LITERAL)
        run_id, result = workflow.create_now(with_base_url(spec, server.base_url), run_id="r")
        cli._print_check_problems(result, "en")
        err = capsys.readouterr().err
        shipped = checked(SHIPPED, server)  # notes only (memory-offload-expected, will-pull)
        cli._print_check_problems(shipped, "en")
    assert "check warning: optimised: num_gpu 1" in err and "check error: optimised: tag" in err
    # one line per warning and error, in the check's order
    printed = [line.split()[2].rstrip(":") for line in err.splitlines() if line.startswith("latencylab: check ")]
    assert printed == [f.level for f in result.findings] and set(printed) == {"warning", "error"}
    # notes stay out of a run's terminal
    assert rules(shipped, "note") and not rules(shipped) and capsys.readouterr().err == ""
    data = json.loads((paths.run_dir(run_id) / "check.json").read_text())
    assert data["exit_code"] == 2
    facts = json.loads((paths.run_dir(run_id) / "facts.json").read_text())
    assert facts["before"]["servers"][0]["kind"] == "ollama" and facts["after"] is None
    assert {f["rule"] for f in data["findings"]} >= {"thrashing-memory", "memory-partial"}


@pytest.mark.engine
def test_the_running_engine_adds_its_build_and_router_settings_from_props(router):
    import asyncio

    spec, _ = load_study("embedded-demo")
    snapshot = asyncio.run(gather.gather(spec, "before", engine_url=router.base_url,
                                                 engine_key=router.api_key))
    (engine,) = snapshot.servers
    assert engine.props["role"] == "router" and engine.props["max_instances"] == 1 and engine.version
    assert {m.quantization_level for m in engine.models} == {"Q4_1", "Q8_0"}  # from the GGUF files
