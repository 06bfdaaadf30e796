"""The report's words and number formats in English and Spanish (the seed study's language)."""

from __future__ import annotations

from typing import Any

import pandas as pd

LANGS = ("en", "es")

TEXT: dict[str, dict[str, str]] = {
    "title": {"en": "Latency documentation — {study}", "es": "Documentación de latencias — {study}"},
    "intro": {
        "en": "Time to first byte (TTFB) and first token (TTFT) of every request, measured on the client by "
        "latencylab, with the server's own evidence beside them. Warm-up and failed requests never enter a "
        "latency figure; failures are counted as errors. Intervals are 95 % bootstrap intervals.",
        "es": "Tiempo hasta el primer byte (TTFB) y hasta el primer token (TTFT) de cada request, medidos en el "
        "cliente por latencylab, junto a la evidencia del propio servidor. Las requests de calentamiento y las "
        "fallidas nunca entran en una cifra de latencia; los fallos se cuentan como errores. Los intervalos "
        "son intervalos bootstrap del 95 %.",
    },
    "h_setup": {"en": "Hardware and server", "es": "Hardware y servidor"},
    "h_baseline": {"en": "Baseline — {name}", "es": "Baseline — {name}"},
    "h_analysis": {"en": "Analysis", "es": "Análisis"},
    "h_optimisation": {"en": "Optimisation applied", "es": "Optimización aplicada"},
    "h_phases": {"en": "TTFB per scenario and phase", "es": "TTFB por escenario y fase"},
    "h_concurrency": {
        "en": "Time to first token under concurrency",
        "es": "Tiempo hasta el primer token con concurrencia",
    },
    "concurrency_intro": {
        "en": "Each level ran with that many requests in flight (closed loop). A median that grows with the "
        "level means the server serialises requests (Ollama: `OLLAMA_NUM_PARALLEL`; llama-server: `--parallel`). "
        "Client queueing is the time between a request being due and being sent: it is never inside the TTFT.",
        "es": "Cada nivel corrió con esa cantidad de requests en vuelo (bucle cerrado). Una mediana que crece con el "
        "nivel indica que el servidor serializa las requests (Ollama: `OLLAMA_NUM_PARALLEL`; llama-server: "
        "`--parallel`). La cola del cliente es el tiempo entre que una request debía salir y salió: nunca está "
        "dentro del TTFT.",
    },
    "next_serialised": {
        "en": "**{scenario}**: the median TTFT grows {factor}× from {low} to {high} requests in flight: the server "
        "serialises them; raise `OLLAMA_NUM_PARALLEL` (llama-server: `--parallel`) if memory allows.",
        "es": "**{scenario}**: la mediana de TTFT crece {factor}× de {low} a {high} requests en vuelo: el servidor "
        "las serializa; subir `OLLAMA_NUM_PARALLEL` (llama-server: `--parallel`) si la memoria lo permite.",
    },
    "fig_concurrency": {
        "en": "TTFT percentiles against concurrency",
        "es": "Percentiles de TTFT según la concurrencia",
    },
    "h_results": {"en": "Results: baseline → optimised", "es": "Resultados: baseline → optimizado"},
    "h_targets": {"en": "Targets", "es": "Targets"},
    "h_next": {"en": "Next steps", "es": "Próximos pasos"},
    "h_figures": {"en": "Figures", "es": "Gráficos"},
    "h_errors": {"en": "Errors", "es": "Errores"},
    "h_sweep": {"en": "Keep-alive sweep", "es": "Barrido de keep-alive"},
    "sweep_intro": {
        "en": "Each cell waited its idle gap before every request: once the gap outlasts keep_alive, requests pay a "
        "load. Pick a keep_alive longer than the gaps your users leave.",
        "es": "Cada celda esperó su pausa antes de cada request: cuando la pausa supera el keep_alive, las requests "
        "pagan una carga. Elegir un keep_alive más largo que las pausas que dejan los usuarios.",
    },
    "cold_share": {"en": "paid a load", "es": "pagaron carga"},
    "fig_sweep": {
        "en": "A model pays a load once the idle gap outlasts its keep-alive",
        "es": "Un modelo paga una carga cuando la pausa supera su keep-alive",
    },
    # table headings
    "metric": {"en": "Metric", "es": "Métrica"},
    "value": {"en": "Value", "es": "Valor"},
    "ci95": {"en": "95 % interval", "es": "Intervalo 95 %"},
    "scenario": {"en": "Scenario", "es": "Escenario"},
    "phase": {"en": "Phase", "es": "Fase"},
    "target": {"en": "Target", "es": "Target"},
    "goal": {"en": "Goal", "es": "Objetivo"},
    "measured": {"en": "Measured", "es": "Medido"},
    "result": {"en": "Result", "es": "Resultado"},
    "change": {"en": "Change", "es": "Cambio"},
    "verdict": {"en": "Verdict", "es": "Veredicto"},
    "setting": {"en": "Setting", "es": "Parámetro"},
    "kind": {"en": "Error kind", "es": "Tipo de error"},
    "count": {"en": "Count", "es": "Número"},
    "example": {"en": "Example message", "es": "Mensaje de ejemplo"},
    "first": {"en": "first", "es": "primera"},
    "subsequent": {"en": "subsequent", "es": "subsecuente"},
    "all": {"en": "all", "es": "todas"},
    "mean": {"en": "TTFB mean", "es": "TTFB promedio"},
    "median": {"en": "TTFB median", "es": "TTFB mediana"},
    "min": {"en": "TTFB minimum", "es": "TTFB mínimo"},
    "max": {"en": "TTFB maximum", "es": "TTFB máximo"},
    "p95": {"en": "TTFB p95", "es": "TTFB p95"},
    "cv": {"en": "Variability (CV)", "es": "Varianza (CV)"},
    "requests": {"en": "Requests", "es": "Requests"},
    "errors": {"en": "Errors", "es": "Errores"},
    "n_too_small": {"en": "n < {n}", "es": "n < {n}"},
    "pass": {"en": "✅ pass", "es": "✅ cumple"},
    "fail": {"en": "❌ fail", "es": "❌ no cumple"},
    "no_evidence": {"en": "– no evidence", "es": "– sin evidencia"},
    "yes": {"en": "yes", "es": "sí"},
    "no": {"en": "no", "es": "no"},
    # targets
    "t_first_ms": {"en": "TTFB first request", "es": "TTFB primera request"},
    "t_subsequent_ms": {"en": "TTFB subsequent (median)", "es": "TTFB subsecuente (mediana)"},
    "t_mean_ms": {"en": "TTFB mean", "es": "TTFB promedio"},
    "t_mean_stretch_ms": {"en": "TTFB mean (stretch goal)", "es": "TTFB promedio (objetivo ambicioso)"},
    "t_cv": {"en": "Variability (CV)", "es": "Varianza (CV)"},
    "t_fits_in_vram": {"en": "Model fits in VRAM", "es": "El modelo cabe en VRAM"},
    # analysis sentences
    "load_paid": {
        "en": "**{scenario}**: {share} of the requests ({paid} of {n}) found the model unloaded and paid a load of "
        "{load} on average ({source}); loads explain {explained} of its total TTFB. Median TTFB: {paid_median} "
        "for those requests{warm}.",
        "es": "**{scenario}**: {share} de las requests ({paid} de {n}) encontraron el modelo descargado y pagaron una "
        "carga de {load} en promedio ({source}); las cargas explican {explained} del TTFB total. Mediana de "
        "TTFB: {paid_median} en esas requests{warm}.",
    },
    "warm_median": {"en": ", {value} for the others", "es": ", {value} en las demás"},
    "load_none": {
        "en": "**{scenario}**: every request found the model loaded (no request paid a load).",
        "es": "**{scenario}**: todas las requests encontraron el modelo cargado (ninguna pagó una carga).",
    },
    "load_unknown": {
        "en": "**{scenario}**: the server gave no evidence of residency (an OpenAI-compatible server cannot say).",
        "es": "**{scenario}**: el servidor no dio evidencia de residencia (un servidor OpenAI-compatible no puede).",
    },
    "source_server": {"en": "reported by the server", "es": "reportada por el servidor"},
    "source_derived": {"en": "derived: TTFT − prompt − first token", "es": "derivada: TTFT − prompt − primer token"},
    "vram_partial": {
        "en": "**{scenario}**: the model does not fit in VRAM: {share} on the GPU ({vram} of {size}); the rest runs on "
        "the CPU.",
        "es": "**{scenario}**: el modelo no cabe en VRAM: {share} en la GPU ({vram} de {size}); el resto corre en la "
        "CPU.",
    },
    "vram_full": {
        "en": "**{scenario}**: the model fits in VRAM ({size}, 100 % on the GPU).",
        "es": "**{scenario}**: el modelo cabe en VRAM ({size}, 100 % en la GPU).",
    },
    "vram_cpu": {
        "en": "**{scenario}**: no GPU residency reported ({size} model{rss}).",
        "es": "**{scenario}**: sin residencia en GPU reportada (modelo de {size}{rss}).",
    },
    "rss": {"en": ", server process {rss} resident", "es": ", proceso del servidor con {rss} residentes"},
    "decomposition": {
        "en": "Where the time to first token goes, on average: load, prompt processing and first token are the "
        "server's figures; the rest (queueing, network, client) is what remains.",
        "es": "Dónde se va el tiempo hasta el primer token, en promedio: carga, procesamiento del prompt y primer "
        "token son cifras del servidor; el resto (cola, red, cliente) es lo que queda.",
    },
    "rest_negative": {
        "en": "{n} request(s) have server figures that add up to more than the client measured (flagged).",
        "es": "{n} request(s) tienen cifras del servidor que suman más de lo medido en el cliente (marcadas).",
    },
    "no_baseline": {"en": "Only one scenario: nothing to compare.", "es": "Un solo escenario: nada que comparar."},
    "verdict_faster": {
        "en": "faster, and the difference is larger than the noise (p {p}, Cliff's δ = {delta})",
        "es": "más rápido, y la diferencia es mayor que el ruido (p {p}, δ de Cliff = {delta})",
    },
    "verdict_slower": {
        "en": "slower, and the difference is larger than the noise (p {p}, Cliff's δ = {delta})",
        "es": "más lento, y la diferencia es mayor que el ruido (p {p}, δ de Cliff = {delta})",
    },
    "verdict_no_difference": {
        "en": "no difference shown with this many samples (p {p}, Cliff's δ = {delta})",
        "es": "no se demuestra diferencia con tantas muestras (p {p}, δ de Cliff = {delta})",
    },
    "verdict_too_few": {"en": "too few samples to compare", "es": "muy pocas muestras para comparar"},
    "setting_model": {"en": "model", "es": "modelo"},
    "setting_keep_alive": {"en": "keep_alive", "es": "keep_alive"},
    "setting_preload": {"en": "preloaded", "es": "precargado"},
    "setting_backend": {"en": "server", "es": "servidor"},
    "setting_idle_gap": {"en": "idle gap before each request", "es": "pausa antes de cada request"},
    "setting_unchanged": {
        "en": "Settings that differ from the baseline:",
        "es": "Parámetros que cambian respecto al baseline:",
    },
    "external": {"en": "external measurements from {file}", "es": "mediciones externas de {file}"},
    # next steps
    "next_keep_loaded": {
        "en": "{share} of the requests of **{scenario}** paid a model load of {load} on average: keep the model "
        "loaded (`keep_alive: -1`) or preload it.",
        "es": "{share} de las requests de **{scenario}** pagaron una carga de modelo de {load} en promedio: mantener "
        "el modelo cargado (`keep_alive: -1`) o precargarlo.",
    },
    "next_vram": {
        "en": "The model of **{scenario}** does not fit in VRAM ({share} on the GPU): a smaller quantization or "
        "context.",
        "es": "El modelo de **{scenario}** no cabe en VRAM ({share} en la GPU): una cuantización o un contexto menor.",
    },
    "next_variance": {
        "en": "**{scenario}** varies too much (CV {cv} against a target of {goal}): look at the timeline for the "
        "requests that stand out.",
        "es": "**{scenario}** varía demasiado (CV {cv} contra un target de {goal}): mirar en la línea de tiempo las "
        "requests que destacan.",
    },
    "next_errors": {
        "en": "{share} of the requests of **{scenario}** failed ({kinds}): see the errors section.",
        "es": "{share} de las requests de **{scenario}** fallaron ({kinds}): ver la sección de errores.",
    },
    "next_more_samples": {
        "en": "**{scenario}** vs the baseline: no difference shown with {n} samples; measure more before concluding.",
        "es": "**{scenario}** contra el baseline: no se demuestra diferencia con {n} muestras; medir más antes de "
        "concluir.",
    },
    "next_all_met": {
        "en": "**{scenario}** meets every target with evidence: keep this configuration.",
        "es": "**{scenario}** cumple todos los targets con evidencia: mantener esta configuración.",
    },
    "next_nothing": {"en": "Nothing stands out in the data.", "es": "Nada destaca en los datos."},
    "no_figures": {
        "en": "No request succeeded: there is no latency to draw.",
        "es": "Ninguna request tuvo éxito: no hay latencia que graficar.",
    },
    "no_errors": {"en": "No request failed.", "es": "Ninguna request falló."},
    # figures: what to conclude
    "conclude_medians": {
        "en": "{fastest} answers first (median {fast}); {slowest} last (median {slow})",
        "es": "{fastest} responde primero (mediana {fast}); {slowest} al final (mediana {slow})",
    },
    "conclude_paid": {
        "en": "{paid} of {n} measured requests paid a model load (red)",
        "es": "{paid} de {n} requests medidas pagaron una carga de modelo (rojo)",
    },
    "conclude_cv": {
        "en": "{k} of {n} scenarios vary less than {goal}",
        "es": "{k} de {n} escenarios varían menos del {goal}",
    },
    "conclude_targets": {"en": "{k} of {n} targets met", "es": "{k} de {n} targets cumplidos"},
    # figures
    "fig_ecdf": {
        "en": "Share of requests at or below each TTFB",
        "es": "Proporción de requests con TTFB menor o igual",
    },
    "fig_hist": {"en": "How TTFB is distributed", "es": "Cómo se distribuye el TTFB"},
    "fig_box": {"en": "TTFB per scenario and phase", "es": "TTFB por escenario y fase"},
    "fig_timeline": {"en": "Every request in time, coloured by state", "es": "Cada request en el tiempo, por estado"},
    "fig_decomposition": {"en": "Where the TTFT goes", "es": "Dónde se va el TTFT"},
    "fig_cv": {
        "en": "Variability per scenario against the 50 % line",
        "es": "Varianza por escenario contra la línea del 50 %",
    },
    "fig_targets": {
        "en": "Measured value against each target (1 = the goal)",
        "es": "Valor medido contra cada target (1 = el objetivo)",
    },
    "ax_ttfb": {"en": "time to first byte (ms), log scale", "es": "tiempo hasta el primer byte (ms), escala log"},
    "ax_ttft_ms": {"en": "mean time (ms)", "es": "tiempo medio (ms)"},
    "ax_share": {"en": "share of requests at or below", "es": "proporción de requests"},
    "ax_count": {"en": "requests", "es": "requests"},
    "ax_time": {
        "en": "seconds since the run started (gaps are idle time)",
        "es": "segundos desde el inicio (los huecos son pausas)",
    },
    "ax_concurrency": {"en": "requests in flight (log scale)", "es": "requests en vuelo (escala log)"},
    "ax_ttft": {"en": "time to first token (ms), log scale", "es": "tiempo hasta el primer token (ms), escala log"},
    "ax_idle_gap": {"en": "idle gap before each request (s)", "es": "pausa antes de cada request (s)"},
    "ax_mean_ttfb": {"en": "mean time to first byte (ms), log scale", "es": "TTFB promedio (ms), escala log"},
    "cold_word": {"en": "cold", "es": "en frío"},
    "ax_cv": {"en": "coefficient of variation", "es": "coeficiente de variación"},
    "ax_ratio": {"en": "measured / goal (below 1 passes)", "es": "medido / objetivo (bajo 1 cumple)"},
    "load": {"en": "load", "es": "carga"},
    "prompt": {"en": "prompt", "es": "prompt"},
    "first_token": {"en": "first token", "es": "primer token"},
    "rest": {"en": "rest", "es": "resto"},
}


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def t(key: str, lang: str, **values: Any) -> str:
    """The text `key` in `lang`, with `values` filled in."""
    return TEXT[key][lang].format(**values)


def number(value: float | None, lang: str, decimals: int = 0) -> str:
    """A number as the language writes it: 21,470.5 (en) or 21.470,5 (es); a dash when missing."""
    if _missing(value):
        return "–"
    text = f"{value:,.{decimals}f}"
    if lang == "es":
        text = text.replace(",", "\u2009").replace(".", ",").replace("\u2009", ".")
    return text


def ms(value: float | None, lang: str) -> str:
    """A duration in ms, or in s from 10 s up, as the seed study writes it (21,470 ms; 49.9 s)."""
    if _missing(value):
        return "–"
    return f"{number(value / 1000, lang, 1)} s" if abs(value) >= 10_000 else f"{number(value, lang)} ms"


def percent(value: float | None, lang: str, decimals: int = 0) -> str:
    if _missing(value):
        return "–"
    return f"{number(value * 100, lang, decimals)} %"


def mib(value: float | None, lang: str) -> str:
    if _missing(value):
        return "–"
    return f"{number(value / 2**20, lang)} MiB"
