"""The Diagnosis of a run against the Ollama test double (tests/doubles/ollama.py, not Ollama): a model set to
62 % in VRAM is named as partly offloaded, with its numbers, in both languages; a resident one is refuted. The
double's numbers prove that the analysis finds what was put in, nothing about any real server."""

from __future__ import annotations

import json

import pytest

from doubles.ollama import OllamaDouble
from latencylab.collect import runner
from latencylab.core import paths
from latencylab.plan.study import parse_study
from latencylab.publish import report

MODELS = {"spilled": {"size": 100 * 2**20, "size_vram": 62 * 2**20}, "resident": {"size": 100 * 2**20}}
# What `latencylab check` would have said before the run, as check.json keeps it.
CHECK = {"exit_code": 1, "findings": [
    {"rule": "memory-partial", "level": "warning", "scenario": "spilled",
     "evidence": {"model": "spilled", "num_ctx": 4096, "weights_gb": 0.1, "kv_gb": 0.05, "margin_gb": 0.5,
                  "need_gb": 0.65, "budget_gb": 0.6, "budget_source": "study", "gpu_pct": 60}}]}
WORDS = {
    "en": ("**spilled** — ✅ confirmed: it does not fit: 62% of the model on the GPU (62\u00a0MiB of 100\u00a0MiB), "
           "the rest on the CPU",
           "**resident** — ❌ refuted: the whole model is on the GPU (100\u00a0MiB)",
           "tokens/s wholly on the GPU against",
           "spilled: will not fit: about 60% on the GPU",  # the check's share in the report's format
           "The check predicted about 60% on the GPU before the run",
           "measured: 62% on the GPU, so the prediction is confirmed",
           "| The model does not fit in the GPU | ✅ confirmed (spilled) | 62% of the model in VRAM |"),
    "es": ("**spilled** — ✅ confirmada: no cabe: el 62\u00a0% del modelo en la GPU (62\u00a0MiB de 100\u00a0MiB), el "
           "resto en la CPU",
           "**resident** — ❌ refutada: el modelo entero está en la GPU (100\u00a0MiB)",
           "tokens/s con el modelo entero en la GPU frente a",
           "spilled: no cabe: cerca del 60\u00a0% en la GPU",
           "La comprobación previa predijo cerca del 60\u00a0% en la GPU",
           "medido: 62\u00a0% en la GPU, así que la predicción queda confirmada",
           "| The model does not fit in the GPU | ✅ confirmada (spilled) | 62\u00a0% del modelo en VRAM |"),
}


@pytest.fixture
def run_id(workdir) -> str:
    with OllamaDouble(models=MODELS, load_delay_s=0.02, token_delay_s=0.004, cpu_decode_penalty=3.0) as server:
        spec = parse_study({"name": "dx", "backend": "ollama", "base_url": server.base_url,
                            "workload": {"requests": 3, "max_tokens": 5},
                            "hypotheses": [{"claim": "The model does not fit in the GPU", "cause": "offload"}],
                            "scenarios": [{"name": "spilled", "model": "spilled"},
                                          {"name": "resident", "model": "resident"}]})
        run_id = runner.run_study(spec, progress=False)
    (paths.run_dir(run_id) / "check.json").write_text(json.dumps(CHECK), encoding="utf-8")
    return run_id


def test_a_partial_offload_is_confirmed_with_its_numbers_and_a_resident_model_refuted(run_id):
    doc = report.document_of([run_id], lang="en")
    verdicts = {(v.cause, v.key[1]): v for v in doc.findings.diagnosis.verdicts}
    spilled, resident = verdicts[("offload", "spilled")], verdicts[("offload", "resident")]
    assert (spilled.verdict, resident.verdict) == ("confirmed", "refuted")
    assert spilled.values.share == pytest.approx(0.62) and spilled.values.check == "confirmed"
    # the double decodes (1 + 3 × 0.38) times slower with 38 % on the CPU
    assert spilled.values.decode_spilled < 0.7 * spilled.values.decode_gpu
    for lang, expected in WORDS.items():
        doc = report.document_of([run_id], lang=lang)
        text = doc.markdown("summary") + doc.markdown("diagnosis")  # the hypotheses, side by side on the first screen
        missing = [words for words in expected if words not in text]
        assert not missing, (missing, text)
        assert "phi3" not in text  # the seed's claims belong to the seed's study, not to every report
