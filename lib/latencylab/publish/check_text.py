"""The words of the check's findings: one line and one fix per rule, filled from the finding's evidence."""

from __future__ import annotations

from typing import Any

from latencylab.plan.check import CheckResult, Finding

# rule → (what was found, what to do); `{name}` fields come from the finding's evidence.
EN: dict[str, tuple[str, str]] = {
    "server-unreachable": ("the {kind} server at {server} does not answer ({error})",
                           "start it, or point the study at it: --base-url URL or base_url: in the study"),
    "model-missing": ("the {kind} server ({server}) has no model {model!r}; the run would stop at once",
                      "ollama pull {model} on the server, or set prepare: {{pull: true}} in the study "
                      "(embedded engine: latencylab engine prepare)"),
    "tag-unavailable": ("tag {model!r} cannot be pulled: {error}",
                        "pick a tag that exists: {tags_url}"),
    "will-pull": ("{model!r} is not on the server; the run pulls it first ({size_gb} GiB); its memory fit is "
                  "checked once it is there",
                  "nothing to do, or pull it beforehand so that the run starts measuring at once"),
    "num-gpu-layers": ("num_gpu {num_gpu} puts {num_gpu} of {layers} layers on the GPU (about {gpu_pct} %); "
                       "the other {cpu_layers} run on the CPU",
                       "leave num_gpu unset to let the server fit as many layers as it can"),
    "num-gpu-unknown": ("num_gpu {num_gpu} is the number of layers sent to the GPU, not of GPUs: the other layers "
                        "run on the CPU",
                        "leave num_gpu unset to let the server fit as many layers as it can (the model's layer "
                        "count is unknown here: no facts of it on the server)"),
    "cpu-only": ("num_gpu 0 runs the model on the CPU only", "leave num_gpu unset if the GPU should be used"),
    "memory-partial": ("will not fit: about {gpu_pct} % on the GPU — {model} at num_ctx {num_ctx} needs "
                       "{weights_gb} GiB weights + {kv_gb} GiB KV cache + {margin_gb} GiB margin = {need_gb} GiB, "
                       "the GPU has {budget_gb} GiB ({budget_source}); the run confirms it from size_vram",
                       "a smaller num_ctx or a smaller quantization; or gpu: {{offload_expected: true}} if the "
                       "partial offload is what the study measures"),
    "memory-offload-expected": ("will not fit: about {gpu_pct} % on the GPU, as the study expects — {model} at num_ctx "
                                "{num_ctx} needs {need_gb} GiB ({weights_gb} weights + {kv_gb} KV cache + {margin_gb} "
                                "margin), the GPU has {budget_gb} GiB ({budget_source})",
                                "nothing to do: the run confirms or refutes it from size_vram"),
    "memory-fits": ("fits: {model} at num_ctx {num_ctx} needs about {need_gb} GiB of the GPU's {budget_gb} GiB "
                    "({budget_source}); the run confirms it from size_vram", "nothing to do"),
    "no-gpu-budget": ("GPU memory unknown (no NVML here, none declared): memory fit not checked",
                      "declare the server's GPU in the study: gpu: {{vram_gb: 3}}"),
    "no-model-facts": ("no layer or size facts for {model}: its memory fit is not checked",
                       "run the check against the server (--base-url) so that it can read /api/show"),
    "thrashing-memory": ("{models} cannot be resident together (at least {together_gb} GiB with their KV caches, "
                         "the GPU has {budget_gb} GiB), and the plan interleaves {scenarios}: each switch evicts "
                         "the other and every request measures a load",
                         "order: blocked with cold_protocol: first_only (one cold start per scenario, then warm "
                         "requests)"),
    "thrashing-options": ("{models} is measured with different runner options in {scenarios}, interleaved: Ollama "
                          "keeps one runner per model, so every switch reloads it",
                          "order: blocked with cold_protocol: first_only (one cold start per scenario)"),
    "thrashing-count": ("{scenarios} interleave more models than can stay loaded ({setting}: {resident_max}): "
                        "every switch evicts one",
                        "order: blocked with cold_protocol: first_only, or raise {setting}"),
    "interleaved-unknown": ("{models} are interleaved across {scenarios}; whether they fit together is unknown",
                            "declare gpu: {{vram_gb: N}} or run the check against the server"),
    "keep-alive-gap": ("keep_alive {keep_alive_s} s ({keep_alive_source}) is shorter than the {gap_s} s between "
                       "this scenario's requests: every request will be cold — fine if that is what you measure",
                       "a keep_alive longer than the gap (or -1) to measure warm requests; keep_alive: 0 or "
                       "cold_protocol: unload_before_each to say that cold is the point"),
    "num-thread": ("num_thread {num_thread} is more than this machine's {cores} cores: the threads compete",
                   "leave num_thread unset (the server uses the physical cores)"),
    "num-ctx-trained": ("num_ctx {num_ctx} is above the model's trained context {trained}",
                        "num_ctx {trained} or less (Ollama clamps it to {trained}, so the run measures {trained})"),
}


# The same in Spanish (the seed study's language), for the report.
ES: dict[str, tuple[str, str]] = {
    "server-unreachable": ("el servidor {kind} en {server} no responde ({error})",
                           "arráncalo o apunta el estudio a él: --base-url URL o base_url: en el estudio"),
    "model-missing": ("el servidor {kind} ({server}) no tiene el modelo {model!r}; la ejecución se pararía enseguida",
                      "ollama pull {model} en el servidor, o prepare: {{pull: true}} en el estudio "
                      "(motor embebido: latencylab engine prepare)"),
    "tag-unavailable": ("la etiqueta {model!r} no se puede descargar: {error}",
                        "elige una etiqueta que exista: {tags_url}"),
    "will-pull": ("{model!r} no está en el servidor; la ejecución lo descarga antes ({size_gb} GiB); su encaje en "
                  "memoria se comprueba cuando esté allí",
                  "nada que hacer, o descárgalo antes para que la ejecución empiece a medir enseguida"),
    "num-gpu-layers": ("num_gpu {num_gpu} pone {num_gpu} de {layers} capas en la GPU (cerca del {gpu_pct} %); "
                       "las otras {cpu_layers} corren en la CPU",
                       "deja num_gpu sin fijar para que el servidor coloque en la GPU todas las capas que quepan"),
    "num-gpu-unknown": ("num_gpu {num_gpu} es el número de capas enviadas a la GPU, no de GPUs: el resto de capas "
                        "corre en la CPU",
                        "deja num_gpu sin fijar para que el servidor coloque todas las capas que quepan (el número "
                        "de capas del modelo no se conoce aquí: el servidor no da datos de él)"),
    "cpu-only": ("num_gpu 0 ejecuta el modelo solo en la CPU", "deja num_gpu sin fijar si se debe usar la GPU"),
    "memory-partial": ("no cabe: cerca del {gpu_pct} % en la GPU — {model} con num_ctx {num_ctx} necesita "
                       "{weights_gb} GiB de pesos + {kv_gb} GiB de caché KV + {margin_gb} GiB de margen = {need_gb} "
                       "GiB, la GPU tiene {budget_gb} GiB ({budget_source}); la ejecución lo confirma con size_vram",
                       "un num_ctx menor o una cuantización más pequeña; o gpu: {{offload_expected: true}} si la "
                       "descarga parcial es lo que mide el estudio"),
    "memory-offload-expected": ("no cabe: cerca del {gpu_pct} % en la GPU, como espera el estudio — {model} con "
                                "num_ctx {num_ctx} necesita {need_gb} GiB ({weights_gb} de pesos + {kv_gb} de caché "
                                "KV + {margin_gb} de margen), la GPU tiene {budget_gb} GiB ({budget_source})",
                                "nada que hacer: la ejecución lo confirma o lo refuta con size_vram"),
    "memory-fits": ("cabe: {model} con num_ctx {num_ctx} necesita unos {need_gb} GiB de los {budget_gb} GiB de la GPU "
                    "({budget_source}); la ejecución lo confirma con size_vram", "nada que hacer"),
    "no-gpu-budget": ("memoria de la GPU desconocida (sin NVML aquí y sin declarar): no se comprueba si cabe",
                      "declara la GPU del servidor en el estudio: gpu: {{vram_gb: 3}}"),
    "no-model-facts": ("sin datos de capas o tamaño de {model}: no se comprueba si cabe en memoria",
                       "comprueba contra el servidor (--base-url) para que pueda leer /api/show"),
    "thrashing-memory": ("{models} no pueden estar cargados a la vez (al menos {together_gb} GiB con sus cachés KV, "
                         "la GPU tiene {budget_gb} GiB), y el plan intercala {scenarios}: cada cambio expulsa al otro "
                         "y cada petición mide una carga",
                         "order: blocked con cold_protocol: first_only (un arranque en frío por escenario, después "
                         "peticiones en caliente)"),
    "thrashing-options": ("{models} se mide con opciones de runner distintas en {scenarios}, intercalados: Ollama "
                          "mantiene un runner por modelo, así que cada cambio lo recarga",
                          "order: blocked con cold_protocol: first_only (un arranque en frío por escenario)"),
    "thrashing-count": ("{scenarios} intercalan más modelos de los que pueden seguir cargados ({setting}: "
                        "{resident_max}): cada cambio expulsa uno",
                        "order: blocked con cold_protocol: first_only, o sube {setting}"),
    "interleaved-unknown": ("{models} se intercalan en {scenarios}; no se sabe si caben juntos",
                            "declara gpu: {{vram_gb: N}} o comprueba contra el servidor"),
    "keep-alive-gap": ("keep_alive de {keep_alive_s} s ({keep_alive_source}) es menor que los {gap_s} s entre "
                       "las peticiones de este escenario: todas serán en frío — bien si es lo que mides",
                       "un keep_alive mayor que la pausa (o -1) para medir peticiones en caliente; keep_alive: 0 o "
                       "cold_protocol: unload_before_each para decir que lo frío es el objetivo"),
    "num-thread": ("num_thread {num_thread} supera los {cores} núcleos de esta máquina: los hilos compiten",
                   "deja num_thread sin fijar (el servidor usa los núcleos físicos)"),
    "num-ctx-trained": ("num_ctx {num_ctx} supera el contexto de entrenamiento del modelo, {trained}",
                        "num_ctx {trained} o menos (Ollama lo recorta a {trained}, así que la ejecución mide "
                        "{trained})"),
}
CATALOGS = {"en": EN, "es": ES}


def _shown(value: Any, lang: str) -> Any:
    if isinstance(value, list):
        return ", ".join(str(_shown(v, lang)) for v in value)
    if isinstance(value, float):
        return f"{value:g}".replace(".", ",") if lang == "es" else f"{value:g}"
    return value


def _fill(template: str, evidence: dict[str, Any], lang: str) -> str:
    return template.format(**{k: _shown(v, lang) for k, v in evidence.items()})


def render(finding: Finding, lang: str = "en") -> tuple[str, str]:
    """The finding's line (scenario first) and its fix, in English or Spanish."""
    message, fix = CATALOGS[lang][finding.rule]
    where = f"{finding.scenario}: " if finding.scenario else ""
    return where + _fill(message, finding.evidence, lang), _fill(fix, finding.evidence, lang)


def lines(result: CheckResult, lang: str = "en") -> list[str]:
    """The check as the terminal shows it: one line per finding, its fix under it, then the counts."""
    out = []
    for finding in result.findings:
        message, fix = render(finding, lang)
        out += [f"{finding.level:<7}  {finding.rule}  {message}", f"{'':<9}fix: {fix}"]
    counts = result.counts()
    out.append(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['note']} note(s)")
    return out


def as_json(result: CheckResult, lang: str = "en") -> dict[str, Any]:
    """The JSON form with each finding's line and fix added (the data stays as it was)."""
    data = result.to_dict()
    for entry, finding in zip(data["findings"], result.findings, strict=True):
        entry["message"], entry["fix"] = render(finding, lang)
    return data
