"""The check's rules on hand-made facts: each fires on the plan it is about, with the numbers behind it."""

from __future__ import annotations

from typing import Any

import pytest

from latencylab.plan import check
from latencylab.plan.check import Plan, evaluate
from latencylab.plan.facts import Facts, HostFacts, LoadedModel, ModelFacts, ServerFacts
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
    # Ollama places layers while the CUDA reserve and the compute graph still fit beside them (llm/memory.go):
    # KV at the default 4096 (version 0.33.0): 384 KiB × 4096 = 1 610 612 736 B = 1.5 GiB;
    # graph: 4 × 512 × (1 + 4 × 3072 + 4096 × (1 + 32)) = 301 991 936 B (no vocabulary size known);
    # spare layer: (2 176 178 913 + 1 610 612 736) // 32 = 118 337 239 B;
    # (3 GiB − 457 MiB − graph) / (weights + KV + spare) = 2 440 034 304 / 3 905 128 888 = 62.5 %
    assert baseline.evidence["num_ctx"] == 4096 and baseline.evidence["kv_gb"] == 1.5
    assert baseline.evidence["graph_gb"] == 0.28 and baseline.evidence["margin_gb"] == 0.56
    # need: 2 176 178 913 + 1 610 612 736 + 301 991 936 + 118 337 239 + 479 199 232 = 4 686 320 056 B = 4.36 GiB
    assert baseline.evidence["need_gb"] == 4.36
    assert baseline.evidence["gpu_pct"] == 62 and baseline.evidence["budget_source"] == "study"
    assert "will not fit: about 62% on the GPU" in check_text.render(baseline)[0]
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


def test_the_context_a_loaded_model_has_in_api_ps_wins_over_the_guessed_default():
    # /api/ps context_length (v0.10.0 on) is what the server gave the runner (OLLAMA_CONTEXT_LENGTH included): the
    # guess from the version and the VRAM is only for a model not resident; a scenario's own num_ctx still rules
    long = PHI3.model_copy(update={"context_length": 131072})
    known = facts(long)
    server = known.servers[0].model_copy(update={"loaded": [LoadedModel(
        name="phi3:mini", size_bytes=3 * GIB, vram_bytes=3 * GIB, context_length=8192)]})
    known = known.model_copy(update={"servers": [server]})
    spec = study([{"name": "a", "model": "phi3:mini"}, {"name": "b", "model": "phi3:mini",
                                                        "options": {"num_ctx": 2048}}], gpu={"vram_gb": 24})
    plan = Plan(spec, known)
    assert [plan.num_ctx(s) for s in spec.scenarios] == [8192, 2048]
    assert Plan(spec, facts(long)).num_ctx(spec.scenarios[0]) == 32768  # not resident: the 0.33.0 default


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
    # 2,176,178,913 bytes = 2.03 GiB; 384 KiB × 4096 = 1.5 GiB; graph 301 991 936 B = 0.28 GiB; spare layer
    # 118 337 239 B + reserve 457 MiB = 0.56 GiB; 4 686 320 056 B = 4.36 GiB; 62.5 % → 62 % (see above)
    assert check_text.lines(result) == [
        f"warning  memory-partial  baseline: will not fit: about 62% on the GPU — phi3:mini at num_ctx 4096 needs "
        f"2.03{NBSP}GiB of weights + 1.5{NBSP}GiB of KV cache + 0.28{NBSP}GiB of compute graph + 0.56{NBSP}GiB of "
        f"margin = 4.36{NBSP}GiB, the GPU has 3{NBSP}GiB (declared in the study); the run confirms it from size_vram",
        "         fix: a smaller num_ctx or a smaller quantization; or gpu: {offload_expected: true} if the partial "
        "offload is what the study measures",
        "0 error(s), 1 warning(s), 0 note(s)"]


def test_the_same_finding_in_spanish_with_numbers_written_the_spanish_way():
    finding = found(study(SEED, gpu={"vram_gb": 3}), facts(PHI3, K_QUANT))["memory-partial"][0]
    assert check_text.text(finding, "es") == (
        f"baseline: no cabe: cerca del 62{NBSP}% en la GPU — phi3:mini con num_ctx 4096 necesita 2,03{NBSP}GiB de "
        f"pesos + 1,5{NBSP}GiB de caché KV + 0,28{NBSP}GiB de grafo de cálculo + 0,56{NBSP}GiB de margen = "
        f"4,36{NBSP}GiB, la GPU tiene 3{NBSP}GiB (declarada en el estudio); la ejecución lo confirma con size_vram",
        "un num_ctx menor o una cuantización más pequeña; o gpu: {offload_expected: true} si lo que mide el "
        "estudio es el reparto parcial entre GPU y CPU")


def test_seconds_and_words_of_the_evidence_are_translated():
    finding = check.Finding("keep-alive-gap", "warning", "a",
                            {"keep_alive_s": 300.0, "gap_s": 2.5, "keep_alive_source": "server default"})
    assert check_text.text(finding, "es")[0] == (
        f"a: el keep_alive de 300{NBSP}s (el valor por defecto del servidor) es menor que los 2,5{NBSP}s entre las "
        "peticiones de este escenario: todas serán en frío (bien, si es lo que se quiere medir)")


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
               "interleaved-unknown", "keep-alive-gap", "num-thread", "num-ctx-trained", "gpu-others",
               "gpu-others-crowd", "conversation-overflow", "think-keep-alive"}
    keys = {k for k in i18n.catalog("en") if k.startswith("check_fix_")}
    assert keys == {"check_fix_" + rule.replace("-", "_") for rule in emitted}
    assert all("check_" + rule.replace("-", "_") in i18n.catalog(lang) for rule in emitted for lang in i18n.LANGS)


def test_a_run_confirms_or_refutes_each_memory_prediction():
    findings = evaluate(Plan(study(SEED, gpu={"vram_gb": 3}), facts(PHI3, K_QUANT)))
    got = check.confirm(findings, {"baseline": 0.64, "optimised": 1.0})
    # optimised: 83 % would fit, but num_gpu 1 caps it at 1 layer of 33 (3 %)
    assert [(c.scenario, c.predicted_pct, c.verdict) for c in got] == [("baseline", 62, "confirmed"),
                                                                       ("optimised", 3, "refuted")]
    as_saved = check.CheckResult(findings, None, None).to_dict(with_facts=False)["findings"]
    assert check.confirm(as_saved, {"baseline": 0.64}) == got[:1]  # check.json's findings work alike


SMOLLM2 = ModelFacts(name="smollm2:135m-q4_1", source="ollama", architecture="llama", size_bytes=98_363_007,
                     block_count=30, context_length=8192, embedding_length=576, head_count=9, head_count_kv=3,
                     vocab_size=49152)


@pytest.mark.parametrize(("num_ctx", "kv", "graph", "spare", "ollama_size"), [
    # kv = 30 layers × 3 KV heads × (64 + 64) × 2 bytes × num_ctx = 23 040 B a token
    # graph = 4 × min(num_ctx, 512) × max(1 + 4 × 576 + num_ctx × (1 + 9), 576 + 49 152)
    # spare = (98 363 007 + kv) // 30; ollama_size: /api/ps `size` on the bundled Ollama 0.5.4 (CPU)
    (512, 11_796_480, 101_842_944, 3_671_982, 212_825_856),
    (2048, 47_185_920, 101_842_944, 4_851_630, 249_394_944),
    (4096, 94_371_840, 101_842_944, 6_424_494, 298_153_728),
    (8192, 188_743_680, 172_492_800, 9_570_222, 466_321_152),  # 4 × 512 × (1 + 2 304 + 81 920)
])
def test_the_memory_estimate_is_ollamas_own(num_ctx, kv, graph, spare, ollama_size):
    spec = study([{"name": "a", "model": SMOLLM2.name, "options": {"num_ctx": num_ctx}}])
    need = Plan(spec, facts(SMOLLM2)).need(spec.scenarios[0])
    assert (need.weights, need.kv, need.graph, need.spare_layer) == (98_363_007, kv, graph, spare)
    assert need.size == 98_363_007 + kv + graph + spare
    assert abs(need.size / ollama_size - 1) < 0.014  # the GGUF's metadata (1.7 MiB) and its average block
    assert need.on_gpu == need.size + 457 * 2**20


@pytest.mark.parametrize(("version", "vram_gib", "expected"), [
    ("0.5.4-ipexllm-20250407", 80, 2048), ("0.6.6", 0, 2048), ("0.6.7", 80, 4096), ("v0.15.4", 80, 4096),
    ("0.15.5", 8, 4096), ("0.15.5", 24, 32768), ("0.33.0", 80, 262144), (None, 24, 32768), ("dev", 0, 4096),
])
def test_ollamas_default_context_follows_the_server_version(version, vram_gib, expected):
    assert check.ollama_default_num_ctx(version, vram_gib * GIB) == expected


def test_the_check_uses_the_servers_version_for_the_default_context():
    old = facts(SMOLLM2).model_copy(update={"servers": [facts(SMOLLM2).servers[0].model_copy(
        update={"version": "0.5.4-ipexllm-20250407"})]})
    spec = study([{"name": "a", "model": SMOLLM2.name}], gpu={"vram_gb": 80})
    assert Plan(spec, old).num_ctx(spec.scenarios[0]) == 2048
    assert Plan(spec, facts(SMOLLM2)).num_ctx(spec.scenarios[0]) == 8192  # 0.33.0: 262144, clamped to 8192


def test_the_bundled_ollamas_own_keep_alive_is_the_server_default_the_check_uses():
    spec = parse_study({"name": "s", "backend": "ollama", "bundled_ollama": {"keep_alive": "2s"},
                        "workload": {"idle_gap_s": 2.5, "order": "blocked"},
                        "scenarios": [{"name": "defaults", "model": "smollm2:135m-q8_0"},
                                      {"name": "kept", "model": "smollm2:135m-q8_0", "keep_alive": -1}]})
    (finding,) = [f for f in evaluate(Plan(spec, None)) if f.rule == "keep-alive-gap"]
    assert (finding.scenario, finding.level) == ("defaults", "warning")
    assert finding.evidence == {"keep_alive_s": 2.0, "gap_s": 2.5, "keep_alive_source": "server default"}


def test_a_memory_finding_saved_before_the_compute_graph_still_renders():
    old = check.Finding("memory-partial", "warning", "b", {
        "model": "m", "num_ctx": 4096, "weights_gb": 2.03, "kv_gb": 1.5, "margin_gb": 0.5, "need_gb": 4.03,
        "budget_gb": 3.0, "budget_source": "study", "gpu_pct": 70})
    assert f"1.5{NBSP}GiB of KV cache + ? of compute graph + 0.5{NBSP}GiB of margin" in check_text.text(old)[0]
