"""The words of the check's findings: one line and one fix per rule, filled from the finding's evidence."""

from __future__ import annotations

from typing import Any

from .check import CheckResult, Finding

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
    "keep-alive-gap": ("keep_alive {keep_alive_s:g} s ({keep_alive_source}) is shorter than the {gap_s:g} s between "
                       "this scenario's requests: every request will be cold — fine if that is what you measure",
                       "a keep_alive longer than the gap (or -1) to measure warm requests; keep_alive: 0 or "
                       "cold_protocol: unload_before_each to say that cold is the point"),
    "num-thread": ("num_thread {num_thread} is more than this machine's {cores} cores: the threads compete",
                   "leave num_thread unset (the server uses the physical cores)"),
    "num-ctx-trained": ("num_ctx {num_ctx} is above the model's trained context {trained}",
                        "num_ctx {trained} or less (Ollama clamps it to {trained}, so the run measures {trained})"),
}


def _fill(template: str, evidence: dict[str, Any]) -> str:
    shown = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in evidence.items()}
    return template.format(**shown)


def render(finding: Finding) -> tuple[str, str]:
    """The finding's line (scenario first) and its fix."""
    message, fix = EN[finding.rule]
    where = f"{finding.scenario}: " if finding.scenario else ""
    return where + _fill(message, finding.evidence), _fill(fix, finding.evidence)


def lines(result: CheckResult) -> list[str]:
    """The check as the terminal shows it: one line per finding, its fix under it, then the counts."""
    out = []
    for finding in result.findings:
        message, fix = render(finding)
        out += [f"{finding.level:<7}  {finding.rule}  {message}", f"{'':<9}fix: {fix}"]
    counts = result.counts()
    out.append(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['note']} note(s)")
    return out


def as_json(result: CheckResult) -> dict[str, Any]:
    """The JSON form with each finding's English line and fix added (the data stays as it was)."""
    data = result.to_dict()
    for entry, finding in zip(data["findings"], result.findings, strict=True):
        entry["message"], entry["fix"] = render(finding)
    return data
