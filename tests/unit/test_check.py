"""The check's rules on hand-made facts: each fires on the plan it is about, with the numbers behind it."""

from __future__ import annotations

from typing import Any

import pytest

from latencylab.plan import check
from latencylab.plan.check import Plan, evaluate
from latencylab.plan.facts import Facts, HostFacts, ModelFacts, ServerFacts
from latencylab.plan.study import parse_study
from latencylab.publish import check_text, i18n

URL = "http://gpu-box:11434"
GIB = 2**30
PHI3 = ModelFacts(name="phi3:mini", source="ollama", architecture="phi3", size_bytes=2_176_178_913, block_count=32,
                  context_length=4096, embedding_length=3072, head_count=32, head_count_kv=32)
K_QUANT = PHI3.model_copy(update={"name": "phi3:mini-q4_K_M", "size_bytes": 2_393_232_672})
HOST = HostFacts(system="Linux", machine="x86_64", cpu="cpu", cores_logical=2, cores_physical=2, ram_bytes=8 * GIB,
                 python="3.11")


def facts(*models: ModelFacts, missing: tuple[str, ...] = (), url: str = URL, reachable: bool = True) -> Facts:
    server = ServerFacts(kind="ollama", base_url=url, reachable=reachable, version="0.33.0", models=list(models),
                         missing=list(missing), error=None if reachable else "ConnectError: refused")
    return Facts(moment="check", taken_at="2026-11-27T00:00:00+00:00", servers=[server], gpu=None, host=HOST)


def study(scenarios: list[dict[str, Any]], **top: Any):
    return parse_study({"name": "s", "backend": "ollama", "base_url": URL, "scenarios": scenarios, **top})


def found(spec, known: Facts | None, **pulls: Any) -> dict[str, list[check.Finding]]:
    out: dict[str, list[check.Finding]] = {}
    for finding in evaluate(Plan(spec, known, pulls)):
        out.setdefault(finding.rule, []).append(finding)
        for lang in i18n.LANGS:
            check_text.render(finding, lang)  # every finding has words, and its evidence fills them
    return out


SEED = [{"name": "baseline", "model": "phi3:mini"},
        {"name": "optimised", "model": "phi3:mini-q4_K_M", "keep_alive": -1, "preload": True,
         "options": {"num_ctx": 2048, "num_batch": 128, "num_gpu": 1, "num_thread": 4}}]


def test_kv_cache_per_token_is_ollamas_formula():
    # 32 layers × 32 KV heads × (96 + 96) head dims × 2 bytes = 384 KiB a token (reference §3.4's example)
    assert PHI3.kv_bytes_per_token() == 384 * 1024
    assert PHI3.layers == 33  # the blocks plus the output layer


def test_num_gpu_below_the_layer_count_says_how_many_layers_land_on_the_gpu():
    got = found(study(SEED), facts(PHI3, K_QUANT))
    (finding,) = got["num-gpu-layers"]
    assert (finding.level, finding.scenario) == ("warning", "optimised")
    assert finding.evidence == {"num_gpu": 1, "layers": 33, "cpu_layers": 32, "gpu_pct": 3}
    assert "1 of 33 layers" in check_text.render(finding)[0]


def test_num_gpu_without_facts_still_warns_that_it_counts_layers_and_zero_is_a_choice():
    spec = study([{"name": "a", "model": "m", "options": {"num_gpu": 1}},
                  {"name": "b", "model": "m", "options": {"num_gpu": 0}},
                  {"name": "c", "model": "m", "options": {"num_gpu": -1}}], workload={"order": "blocked"})
    got = found(spec, None)
    assert [f.scenario for f in got["num-gpu-unknown"]] == ["a"] and got["cpu-only"][0].level == "note"
    assert "num-gpu-layers" not in got


def test_memory_fit_against_a_declared_budget_gives_the_share_on_the_gpu():
    got = found(study(SEED, gpu={"vram_gb": 3}), facts(PHI3, K_QUANT))
    baseline = next(f for f in got["memory-partial"] if f.scenario == "baseline")
    assert baseline.level == "warning"
    # (3 GiB − 0.5 GiB margin) / (2.18 GB weights + 1.5 GiB KV cache at the default 4096) = 70.9 %
    assert baseline.evidence["num_ctx"] == 4096 and baseline.evidence["kv_gb"] == 1.5
    assert baseline.evidence["gpu_pct"] == 70 and baseline.evidence["budget_source"] == "study"
    assert "will not fit: about 70% on the GPU" in check_text.render(baseline)[0]
    roomy = found(study(SEED, gpu={"vram_gb": 8}), facts(PHI3, K_QUANT))
    assert "memory-partial" not in roomy and len(roomy["memory-fits"]) == 2


def test_an_expected_offload_is_a_note_and_an_unknown_budget_is_said():
    got = found(study(SEED, gpu={"vram_gb": 3, "offload_expected": True}), facts(PHI3, K_QUANT))
    assert "memory-partial" not in got and {f.level for f in got["memory-offload-expected"]} == {"note"}
    assert [f.rule for f in evaluate(Plan(study(SEED), facts(PHI3, K_QUANT)))].count("no-gpu-budget") == 1


def test_ollamas_default_context_follows_the_vram_and_is_clamped_to_the_trained_one():
    plan = Plan(study([{"name": "a", "model": "phi3:mini"}], gpu={"vram_gb": 24}), facts(PHI3))
    assert plan.num_ctx(plan.study.scenarios[0]) == 4096  # 32768 for 24 GiB, clamped to phi3-mini's 4096
    long = PHI3.model_copy(update={"context_length": 131072})
    plan = Plan(study([{"name": "a", "model": "phi3:mini"}], gpu={"vram_gb": 24}), facts(long))
    assert plan.num_ctx(plan.study.scenarios[0]) == 32768


def test_two_models_that_cannot_be_resident_together_thrash_when_interleaved():
    got = found(study(SEED, gpu={"vram_gb": 3}), facts(PHI3, K_QUANT))
    (thrash,) = got["thrashing-memory"]
    assert thrash.level == "warning" and thrash.evidence["scenarios"] == ["baseline", "optimised"]
    assert thrash.evidence["together_gb"] > thrash.evidence["budget_gb"] == 3.0
    assert "order: blocked" in check_text.render(thrash)[1]
    for fixed in ({"workload": {"order": "blocked"}}, {"cold_protocol": "unload_before_each"}):
        assert "thrashing-memory" not in found(study(SEED, gpu={"vram_gb": 3}, **fixed), facts(PHI3, K_QUANT))
    assert "thrashing-memory" not in found(study(SEED, gpu={"vram_gb": 24}), facts(PHI3, K_QUANT))


def test_one_model_with_different_runner_options_interleaved_reloads_each_switch():
    spec = study([{"name": "a", "model": "phi3:mini"},
                  {"name": "b", "model": "phi3:mini", "options": {"num_ctx": 2048}},
                  {"name": "c", "model": "phi3:mini", "options": {"temperature": 0.1}}])
    (finding,) = found(spec, facts(PHI3))["thrashing-options"]
    assert finding.evidence == {"scenarios": ["a", "b", "c"], "models": ["phi3:mini"]}
    same = study([{"name": "a", "model": "phi3:mini"}, {"name": "c", "model": "phi3:mini", "keep_alive": -1,
                                                          "options": {"temperature": 0.1}}])
    assert not any(r.startswith("thrashing") for r in found(same, facts(PHI3)))  # one runner serves both


def test_more_models_than_stay_loaded_thrash_by_count():
    spec = study([{"name": f"s{i}", "model": f"m{i}"} for i in range(4)])
    (finding,) = found(spec, None)["thrashing-count"]
    assert finding.evidence["resident_max"] == 3 and finding.evidence["setting"] == "OLLAMA_MAX_LOADED_MODELS"
    embedded = parse_study({"name": "e", "engine": {"models_max": 1},
                            "scenarios": [{"name": "a", "model": "x"}, {"name": "b", "model": "y"}]})
    (finding,) = found(embedded, None)["thrashing-count"]
    assert finding.evidence["setting"] == "engine.models_max"


def test_keep_alive_shorter_than_the_gap_means_every_request_is_cold():
    spec = study([{"name": "default", "model": "phi3:mini"},
                  {"name": "short", "model": "phi3:mini", "keep_alive": "2s"},
                  {"name": "zero", "model": "phi3:mini", "keep_alive": 0}],
                 workload={"order": "blocked", "idle_gap_s": 400})
    got = found(spec, facts(PHI3))["keep-alive-gap"]
    assert [(f.scenario, f.level) for f in got] == [("default", "warning"), ("short", "note")]
    assert got[0].evidence == {"keep_alive_s": 300.0, "gap_s": 400.0, "keep_alive_source": "server default"}
    interleaved = study([{"name": "a", "model": "phi3:mini", "keep_alive": "8s"}, {"name": "b", "model": "x"}],
                        workload={"idle_gap_s": 5})
    (finding,) = found(interleaved, None)["keep-alive-gap"]
    assert finding.evidence["gap_s"] == 10  # interleaved: the other scenario's gap comes in between


def test_num_thread_above_the_cores_of_a_local_server_and_num_ctx_above_the_trained_context():
    local = "http://127.0.0.1:11434"
    spec = parse_study({"name": "s", "backend": "ollama", "base_url": local,
                        "scenarios": [{"name": "a", "model": "phi3:mini",
                                       "options": {"num_thread": 4, "num_ctx": 8192}}]})
    got = found(spec, facts(PHI3, url=local))
    assert got["num-thread"][0].evidence == {"num_thread": 4, "cores": 2}
    assert got["num-ctx-trained"][0].evidence == {"num_ctx": 8192, "trained": 4096, "kind": "ollama"}
    remote = study([{"name": "a", "model": "phi3:mini", "options": {"num_thread": 4}}])
    assert "num-thread" not in found(remote, facts(PHI3))  # another machine's cores are unknown here


def test_missing_models_unreachable_servers_and_tags_the_registry_lacks_are_errors():
    spec = study([{"name": "a", "model": "phi3:mini"}])
    assert found(spec, facts(missing=("phi3:mini",)))["model-missing"][0].level == "error"
    assert found(spec, facts(reachable=False))["server-unreachable"][0].level == "error"
    pulling = study(SEED, prepare={"pull": True})
    got = found(pulling, facts(PHI3, missing=("phi3:mini-q4_K_M",)),
                **{"phi3:mini-q4_K_M": ("pull model manifest: file does not exist", None)})
    (finding,) = got["tag-unavailable"]
    assert finding.evidence["tags_url"] == "https://ollama.com/library/phi3/tags"
    assert "file does not exist" in check_text.render(finding)[0]
    fine = found(pulling, facts(PHI3, missing=("phi3:mini-q4_K_M",)), **{"phi3:mini-q4_K_M": (None, 2 * GIB)})
    assert fine["will-pull"][0].evidence["size_gb"] == 2.0


@pytest.mark.parametrize(("levels", "code"), [((), 0), (("note",), 0), (("note", "warning"), 1),
                                              (("warning", "error"), 2)])
def test_exit_code_is_the_worst_level(levels, code):
    result = check.CheckResult([check.Finding("cpu-only", lv, None, {"num_gpu": 0}) for lv in levels], None, None)
    assert result.exit_code == code
    assert result.to_dict()["counts"]["note"] == levels.count("note")


def test_findings_come_errors_first_and_every_line_has_a_fix():
    spec = study(SEED, gpu={"vram_gb": 3}, prepare={"pull": True})
    result = check.CheckResult(evaluate(Plan(spec, facts(PHI3, missing=("phi3:mini-q4_K_M",)),
                                             {"phi3:mini-q4_K_M": ("no such tag", None)})), None, None)
    levels = [f.level for f in result.findings]
    assert levels == sorted(levels, key=check.LEVELS.index) and levels[0] == "error"
    lines = check_text.lines(result)
    assert len(lines) == 2 * len(result.findings) + 1 and all("fix: " in line for line in lines[1:-1:2])
    data = check_text.as_json(result)
    assert [f["rule"] for f in data["findings"]] == [f.rule for f in result.findings]
    assert all(f["message"] and f["fix"] for f in data["findings"])


NBSP = "\u00a0"


def test_a_memory_finding_in_english_with_numbers_as_the_report_writes_them():
    result = check.CheckResult(found(study(SEED, gpu={"vram_gb": 3}), facts(PHI3, K_QUANT))["memory-partial"][:1],
                               None, None)
    # 2,176,178,913 bytes = 2.03 GiB; 384 KiB × 4096 = 1.5 GiB; + 0.5 GiB = 4.03 GiB; 2.5 / 3.53 = 70.9 % → 70 %
    assert check_text.lines(result) == [
        f"warning  memory-partial  baseline: will not fit: about 70% on the GPU — phi3:mini at num_ctx 4096 needs "
        f"2.03{NBSP}GiB of weights + 1.5{NBSP}GiB of KV cache + 0.5{NBSP}GiB of margin = 4.03{NBSP}GiB, the GPU has "
        f"3{NBSP}GiB (declared in the study); the run confirms it from size_vram",
        "         fix: a smaller num_ctx or a smaller quantization; or gpu: {offload_expected: true} if the partial "
        "offload is what the study measures",
        "0 error(s), 1 warning(s), 0 note(s)"]


def test_the_same_finding_in_spanish_with_numbers_written_the_spanish_way():
    finding = found(study(SEED, gpu={"vram_gb": 3}), facts(PHI3, K_QUANT))["memory-partial"][0]
    assert check_text.text(finding, "es") == (
        f"baseline: no cabe: cerca del 70{NBSP}% en la GPU — phi3:mini con num_ctx 4096 necesita 2,03{NBSP}GiB de "
        f"pesos + 1,5{NBSP}GiB de caché KV + 0,5{NBSP}GiB de margen = 4,03{NBSP}GiB, la GPU tiene 3{NBSP}GiB "
        f"(declarada en el estudio); la ejecución lo confirma con size_vram",
        "un num_ctx menor o una cuantización más pequeña; o gpu: {offload_expected: true} si la descarga parcial es "
        "lo que mide el estudio")


def test_seconds_and_words_of_the_evidence_are_translated():
    finding = check.Finding("keep-alive-gap", "warning", "a",
                            {"keep_alive_s": 300.0, "gap_s": 2.5, "keep_alive_source": "server default"})
    assert check_text.text(finding, "es")[0] == (
        f"a: keep_alive de 300{NBSP}s (el valor por defecto del servidor) es menor que los 2,5{NBSP}s entre las "
        "peticiones de este escenario: todas serán en frío — bien si es lo que mides")


def test_the_terminal_and_json_show_characters_and_the_report_escapes_them():
    finding = check.Finding("server-unreachable", "error", None,
                            {"kind": "ollama", "server": "http://x", "error": "<html> can't connect"})
    assert check_text.text(finding)[0] == "the ollama server at http://x does not answer (<html> can't connect)"
    assert check_text.render(finding)[0] == "the ollama server at http://x does not answer " \
                                            "(&lt;html&gt; can&#39;t connect)"
    data = check_text.as_json(check.CheckResult([finding], None, None))
    assert data["findings"][0]["message"] == check_text.text(finding)[0]


def test_every_rule_id_has_words_and_a_fix_in_both_languages():
    emitted = {"server-unreachable", "model-missing", "tag-unavailable", "will-pull", "num-gpu-layers",
               "num-gpu-unknown", "cpu-only", "memory-partial", "memory-offload-expected", "memory-fits",
               "no-gpu-budget", "no-model-facts", "thrashing-memory", "thrashing-options", "thrashing-count",
               "interleaved-unknown", "keep-alive-gap", "num-thread", "num-ctx-trained"}
    keys = {k for k in i18n.catalog("en") if k.startswith("check_fix_")}
    assert keys == {"check_fix_" + rule.replace("-", "_") for rule in emitted}
    assert all("check_" + rule.replace("-", "_") in i18n.catalog(lang) for rule in emitted for lang in i18n.LANGS)


def test_a_run_confirms_or_refutes_each_memory_prediction():
    findings = evaluate(Plan(study(SEED, gpu={"vram_gb": 3}), facts(PHI3, K_QUANT)))
    got = check.confirm(findings, {"baseline": 0.697, "optimised": 1.0})
    # optimised: 83 % would fit, but num_gpu 1 caps it at 1 layer of 33 (3 %)
    assert [(c.scenario, c.predicted_pct, c.verdict) for c in got] == [("baseline", 70, "confirmed"),
                                                                       ("optimised", 3, "refuted")]
    as_saved = check.CheckResult(findings, None, None).to_dict(with_facts=False)["findings"]
    assert check.confirm(as_saved, {"baseline": 0.697}) == got[:1]  # check.json's findings work alike
