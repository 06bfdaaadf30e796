"""The request plan of a study: which scenario sends which prompt, in which order."""

from __future__ import annotations

import random
from dataclasses import dataclass

from latencylab.plan.study import StudySpec

# Short questions and longer tasks, so that prompt processing is part of what is measured.
BUILTIN_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Name three primary colours.",
    "Explain in one sentence what a CPU cache is.",
    "Write a haiku about waiting for a slow server.",
    "Summarise the following text in two sentences. Latency is the time between a request and the "
    "first sign of its answer. For a language model server it includes queueing, loading the model "
    "into memory if it is not resident, processing the prompt, and generating the first token. Each "
    "of these can dominate: loading when the model was evicted, prompt processing when the prompt is "
    "long, queueing when many users share one server.",
    "You are reviewing a deployment plan. The service runs a small language model on a laptop GPU "
    "with 3 GB of memory. Users complain that the first answer of the morning takes almost a minute, "
    "while later answers are quick. List the likely causes and one fix for each, briefly.",
)


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the plan; `seq` is its position in the run."""

    seq: int
    scenario: str
    prompt: str
    warmup: bool
    concurrency: int = 1


def plan_requests(study: StudySpec, run_id: str) -> list[PlannedRequest]:
    """Warm-ups first, then the measured requests: scenarios interleaved, in blocks, or shuffled (seeded).

    A concurrency sweep repeats that plan once per level.
    """
    workload = study.workload
    prompts = BUILTIN_PROMPTS if workload.prompts == "builtin" else tuple(workload.prompts)
    names = [s.name for s in study.scenarios]
    slots: list[tuple[str, bool]] = []
    if workload.order == "blocked":
        for name in names:
            slots += [(name, True)] * workload.warmup + [(name, False)] * workload.requests
    else:
        for warmup, count in ((True, workload.warmup), (False, workload.requests)):
            block = [(name, warmup) for _ in range(count) for name in names]
            if workload.order == "random":
                random.Random(workload.order_seed).shuffle(block)
            slots += block
    plan = []
    for level in workload.levels:
        for name, warmup in slots:
            seq = len(plan)
            prompt = prompts[seq % len(prompts)]
            if workload.unique_prefix:
                # A unique first line defeats prefix caching, which would flatter warm requests.
                prompt = f"Request {seq} of run {run_id}.\n{prompt}"
            plan.append(PlannedRequest(seq=seq, scenario=name, prompt=prompt, warmup=warmup, concurrency=level))
    return plan
