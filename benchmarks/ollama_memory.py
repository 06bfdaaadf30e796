"""The check's memory estimate against Ollama's own (/api/ps `size` after load) on the bundled Ollama 0.5.4.

For each num_ctx, loads SmolLM2-135M (Q4_1 and Q8_0) with it, reads /api/ps, and prints a Markdown table: the
check's estimate (weights + KV cache + compute graph + spare layer, plan/check.py `Need.size`), Ollama's `size`,
and how far apart they are. Usage: .venv/bin/python benchmarks/ollama_memory.py [NUM_CTX ...]
"""

from __future__ import annotations

import sys

import httpx

from latencylab.collect import gather
from latencylab.collect.engine.ollama import MODELS, BundledOllama
from latencylab.plan.check import Plan
from latencylab.plan.study import parse_study

MIB = 2**20


def main(contexts: list[int]) -> None:
    with BundledOllama() as server:
        study = parse_study({"name": "memory", "backend": "ollama", "base_url": server.base_url, "scenarios": [
            {"name": f"{model.split('-')[-1]}-{n}", "model": model, "options": {"num_ctx": n}}
            for model in MODELS for n in contexts]})
        plan = Plan(study, gather.collect(study))
        print(f"Ollama {plan.facts.servers[0].version}, CPU only\n")
        print("| model | num_ctx | weights | KV cache | graph | spare layer | check's estimate | Ollama's size "
              "| difference |")
        print("|---|---|---|---|---|---|---|---|---|")
        for s in study.scenarios:
            httpx.post(f"{server.base_url}/api/generate", timeout=120,
                       json={"model": s.model, "options": s.options, "keep_alive": "1m"}).raise_for_status()
            (loaded,) = [m for m in httpx.get(f"{server.base_url}/api/ps").json()["models"] if m["name"] == s.model]
            need = plan.need(s)
            assert need is not None
            cells = [need.weights, need.kv, need.graph, need.spare_layer, need.size, loaded["size"]]
            print(f"| {s.model} | {need.num_ctx} | " + " | ".join(f"{c / MIB:.1f} MiB" for c in cells)
                  + f" | {100 * (need.size / loaded['size'] - 1):+.1f} % |")
            httpx.post(f"{server.base_url}/api/generate", json={"model": s.model, "keep_alive": 0}, timeout=30)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [512, 2048, 4096, 8192])
