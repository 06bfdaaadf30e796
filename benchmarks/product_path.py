"""The client's own error through the whole product path (issue 14): `latencylab run` — the real CLI, on a
generated study — against benchmarks/ground_truth_server.py, and AIPerf and GuideLLM on the same server
in the same run when they are installed, side by side.

Every client gets the same work: OpenAI chat completions, streamed, closed loop at each concurrency
(several rounds: at least 3 × the concurrency requests, plus warm-ups), each response D = 5 ms to
headers, E = 135 ms more to the role event, then 32 content chunks I ms apart (I = 10 ms, or more so
that all streams together send at most 10 000 chunks/s: 25.6 ms at 256), so the first content chunk is
sent 150 ms after the request was read. The server logs, per request, when it had read the request and
when it sent each part; the truth of a request is its "sent − request read". Figures, in ms:

    ttft (distr.)   the client's TTFT distribution − the server's truth distribution, at the median and
                    at p99 (the issue's measure; the only one possible for a peer, which sends no tag)
    headers / ttfb / ttft (matched)   latencylab only: each sample − its own request's truth (matched
                    through the prompt's "Request <seq> of run <run_id>." line); the table prints TTFT's
    request side / response side   latencylab only: that TTFT error split where the server read the request
                    (the client's t0, from its wall-clock `started_at`, to the server's read; then the rest):
                    the request side holds the connect, the write, and the server's own accept and read
    start lag       server-observed turnaround: the next request read − the previous response's last
                    byte sent (in order): what the client spends between two requests of a worker, the
                    connection set-up, probes and its write included
    cpu ms/req      the client's whole process tree's CPU (os.wait4: user + system, all its reaped
                    children: papermill's kernel, AIPerf's workers) for the batch, minus that of a handful
                    run (start-up: the smaller of two), divided by the difference in requests

Then PASS/MISS per goal (printed, never asserted):

    c = 1, 16, 64:  latencylab's TTFT error median ≤ +1.0 ms and p99 ≤ +3 ms, and no worse than any
                    peer's on either figure in the same run
    c = 256:        latencylab's TTFT error p99 ≤ +10 ms
    CPU per 32-chunk request: latencylab below every peer (at each concurrency); stretch < 1 ms

    .venv/bin/python benchmarks/product_path.py                 # c = 1, 16, 64, 256 (several minutes)
    .venv/bin/python benchmarks/product_path.py --quick         # smoke: c = 1 and 4, a few requests
    .venv/bin/python benchmarks/product_path.py --peers /tmp/peers/bin --clients latencylab,aiperf
    .venv/bin/python benchmarks/product_path.py --modes new        # only the server that closes connections

Two server modes (issue 20), each a table of its own, in the same run: `reuse`, a server that keeps
connections alive (latencylab's `workload.connection: reuse`), and `new`, a server that closes every
connection after its response, as some proxies and gateways do (latencylab's `connection: new`: the TCP
set-up is inside every TTFT, and the client's event loop must notice the connection in time). The peers
get the same server; they set up connections their own way.

Writes benchmarks/results/product_path.json (`--out`). How to install the peers (a throwaway virtualenv,
never a project dependency): benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ground_truth_server as gt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "product_path.json"
MODEL = "ground-truth"
ROUNDS = 3
HANDFUL = 4  # requests of the start-up run whose CPU is subtracted
TAG = re.compile(r"Request (\d+) of run ")
KEEP_ALIVE = {"reuse": 1000, "new": 0}  # the server's requests per connection in each mode (0: close after each)
GOALS = {"median": 1.0, "p99": 3.0, "p99_256": 10.0, "cpu_stretch": 1.0}


@dataclass
class Batch:
    """What one client's run of one concurrency gave."""

    client: str
    concurrency: int
    requests: int  # measured
    warmup: int
    ttft_ms: list[float]  # the client's own figures, measured requests only
    cpu_s: float
    wall_s: float
    failed: int = 0
    matched: dict[str, list[float]] = field(default_factory=dict)  # latencylab: per-request errors
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def interval_ms(concurrency: int, args: argparse.Namespace) -> float:
    return max(args.interval_ms, concurrency * 1000.0 / args.aggregate_tok_s)


def plan_words(tag: str, concurrency: int, args: argparse.Namespace) -> str:
    """The ground-truth server's schedule for one batch, as prompt words; `id=` groups its log records."""
    return f"id={tag} d={args.d_ms:g} e={args.e_ms:g} n={args.chunks} i={interval_ms(concurrency, args):g}"


def run_tree(command: list[str], log: Path, env: dict[str, str] | None = None, timeout_s: float = 900.0
             ) -> tuple[int, float, float]:
    """Run `command`; its exit status, the CPU seconds of its whole (reaped) process tree, and wall seconds."""
    started = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                   start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(process.pid, 9)
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime, time.perf_counter() - started


# --- the clients -------------------------------------------------------------------------------------

class Client:
    name = ""

    def run(self, port: int, tag: str, concurrency: int, requests: int, warmup: int, work: Path,
            args: argparse.Namespace) -> Batch:
        raise NotImplementedError


class Latencylab(Client):
    """`latencylab run STUDY --no-report` on a generated study; samples read from its run folder."""

    name = "latencylab"

    def extra_workload(self, args: argparse.Namespace) -> dict[str, Any]:
        return {}

    def command(self, study: Path, run_id: str) -> list[str]:
        exe = Path(sys.executable).with_name("latencylab")
        return [str(exe) if exe.exists() else "latencylab", "run", str(study), "--no-report", "--run-id", run_id]

    def run(self, port: int, tag: str, concurrency: int, requests: int, warmup: int, work: Path,
            args: argparse.Namespace) -> Batch:
        workload: dict[str, Any] = {"requests": requests, "warmup": warmup, "max_tokens": args.chunks,
                                    "prompts": [plan_words(tag, concurrency, args)], "concurrency": concurrency}
        workload["connection"] = args.mode
        workload.update(self.extra_workload(args))
        study = {"name": tag, "backend": "openai", "base_url": f"http://127.0.0.1:{port}",
                 "workload": workload, "scenarios": [{"name": "gt", "model": MODEL}],
                 "server_metrics": {"scrape": not args.no_scrape}}  # the server answers vLLM's gauges
        path = work / f"{tag}.yaml"
        path.write_text(yaml.safe_dump(study))
        env = {**os.environ, "LATENCYLAB_HOME": str(work / "home")}
        rc, cpu, wall = run_tree(self.command(path, tag), work / f"{tag}.log", env)
        samples_path = work / "home" / "data" / "runs" / tag / "samples.jsonl"
        samples = [json.loads(line) for line in samples_path.read_text().splitlines()] if samples_path.exists() else []
        measured = [s for s in samples if not s["warmup"]]
        batch = Batch(self.name, concurrency, requests, warmup,
                      [s["ttft_ms"] for s in measured if s["ok"]], cpu, wall,
                      failed=sum(not s["ok"] for s in measured) + (requests - len(measured)),
                      note="" if rc == 0 else f"exit {rc}: {_tail(work / f'{tag}.log')}")
        batch.extra["samples"] = measured
        return batch


class LatencylabWorkers(Latencylab):
    """`latencylab run` with `workload.client_processes` (--client-processes): the timed requests sent from
    worker processes, the schedule, probes and samples kept in the coordinator (issue 20)."""

    name = "latencylab-workers"

    def extra_workload(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"client_processes": args.client_processes}


class LatencylabDirect(Latencylab):
    """The runner's `run_study` in a plain Python process (no CLI, no notebook kernel): what `latencylab run`
    costs without the kernel, to tell the kernel's share of the error from the runner's."""

    name = "latencylab-direct"
    SCRIPT = ("import sys; from latencylab.collect import runner; from latencylab.plan.study import load_study; "
              "spec, raw = load_study(sys.argv[1]); runner.run_study(spec, raw, run_id=sys.argv[2])")

    def command(self, study: Path, run_id: str) -> list[str]:
        return [sys.executable, "-c", self.SCRIPT, str(study), run_id]


class AIPerf(Client):
    """NVIDIA AIPerf's `aiperf profile` on a one-prompt single-turn dataset; TTFT from its per-record export."""

    name = "aiperf"

    def __init__(self, bin_dir: Path) -> None:
        self.exe, self.python = bin_dir / "aiperf", bin_dir / "python"

    def run(self, port: int, tag: str, concurrency: int, requests: int, warmup: int, work: Path,
            args: argparse.Namespace) -> Batch:
        data = work / f"{tag}.jsonl"
        data.write_text(json.dumps({"text": plan_words(tag, concurrency, args)}) + "\n")
        out = work / tag
        command = [str(self.exe), "profile", "--model", MODEL, "--url", f"http://127.0.0.1:{port}",
                   "--endpoint-type", "chat", "--streaming", "--concurrency", str(concurrency),
                   "--request-count", str(requests), "--input-file", str(data), "--custom-dataset-type",
                   "single_turn", "--tokenizer", str(tokenizer(work, self.python)), "--artifact-dir", str(out),
                   "--ui-type", "none"]
        if warmup:
            command += ["--warmup-request-count", str(warmup)]
        rc, cpu, wall = run_tree(command, work / f"{tag}.log", _peer_env())
        ttft = []
        export = out / "profile_export.jsonl"
        for line in export.read_text().splitlines() if export.exists() else []:
            record = json.loads(line)
            if record.get("metadata", {}).get("benchmark_phase") != "profiling":
                continue
            metrics = record.get("metrics") or {}
            value = metrics.get("time_to_first_token") or metrics.get("time_to_first_output_token")
            if isinstance(value, dict):
                ttft.append(_to_ms(value.get("value"), value.get("unit", "ms")))
        return Batch(self.name, concurrency, requests, warmup, ttft, cpu, wall, failed=requests - len(ttft),
                     note="" if rc == 0 else f"exit {rc}: {_tail(work / f'{tag}.log')}")


class GuideLLM(Client):
    """`guidellm run` with a scenario file: concurrent profile, one-prompt CSV; TTFT from its JSON report."""

    name = "guidellm"

    def __init__(self, bin_dir: Path) -> None:
        self.exe = bin_dir / "guidellm"

    def run(self, port: int, tag: str, concurrency: int, requests: int, warmup: int, work: Path,
            args: argparse.Namespace) -> Batch:
        data = work / f"{tag}-prompts.csv"
        with open(data, "w", newline="") as f:  # one row per request: it stops when the data runs out
            writer = csv.writer(f)
            writer.writerow(["prompt"])
            writer.writerows([[plan_words(tag, concurrency, args)]] * (requests + warmup))
        report = work / f"{tag}.json"
        scenario = {"spec": {
            "backend": {"kind": "openai_http", "target": f"http://127.0.0.1:{port}", "model": MODEL,
                        "request_format": "/v1/chat/completions", "validate_backend": False},
            "profile": {"kind": "concurrent", "streams": [concurrency]},
            "data": [{"kind": "csv_file", "path": str(data)}],
            "constraints": [{"kind": "max_requests", "count": requests + warmup}],
            "outputs": [{"kind": "json", "path": str(report)}]}}
        (work / f"{tag}-scenario.json").write_text(json.dumps(scenario))
        command = [str(self.exe), "run", "--scenario", str(work / f"{tag}-scenario.json"),
                   "--disable-console-interactive"]
        rc, cpu, wall = run_tree(command, work / f"{tag}.log", _peer_env())
        ttft = guidellm_ttft(report)[warmup:]  # in start order: the first ones are the warm-ups
        return Batch(self.name, concurrency, requests, warmup, ttft, cpu, wall, failed=max(0, requests - len(ttft)),
                     note="" if rc == 0 else f"exit {rc}: {_tail(work / f'{tag}.log')}")


def guidellm_ttft(report: Path) -> list[float]:
    """Every successful request's TTFT (ms) in a GuideLLM JSON report, in the order they started."""
    if not report.exists():
        return []
    found = []
    for benchmark in json.loads(report.read_text()).get("benchmarks", []):
        for request in benchmark.get("requests", {}).get("successful", []):
            if isinstance(request.get("time_to_first_token_ms"), int | float):
                start = (request.get("info") or {}).get("timings", {}).get("request_start") or 0.0
                found.append((start, float(request["time_to_first_token_ms"])))
    return [ms for _, ms in sorted(found)]


def tokenizer(work: Path, python: Path) -> Path:
    """A tiny local HuggingFace tokenizer (whitespace words), made with the peers' own `tokenizers`: AIPerf
    needs one to count tokens, and there is no network to fetch a real one (it changes no timing)."""
    folder = work / "tokenizer"
    if not folder.exists():
        subprocess.run([str(python), "-c", _MAKE_TOKENIZER, str(folder)], check=True)
    return folder


_MAKE_TOKENIZER = """
import json, sys
from pathlib import Path
from tokenizers import Tokenizer, models, pre_tokenizers
out = Path(sys.argv[1]); out.mkdir(parents=True)
vocab = {w: k for k, w in enumerate(["[UNK]", "[PAD]", "</s>", "id", "d", "e", "n", "i", "t", "="])}
tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.save(str(out / "tokenizer.json"))
special = {"unk_token": "[UNK]", "pad_token": "[PAD]", "eos_token": "</s>"}
(out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **special}))
(out / "special_tokens_map.json").write_text(json.dumps(special))
(out / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
"""


def _peer_env() -> dict[str, str]:
    """The peers' environment: no offline switch (AIPerf then loads a local tokenizer folder as it is)."""
    return {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}


def _to_ms(value: Any, unit: str) -> float:
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1000.0}.get(unit, 1.0)
    return float(value) * scale


def _tail(log: Path, chars: int = 400) -> str:
    return log.read_text(errors="replace")[-chars:].replace("\n", " | ") if log.exists() else ""


# --- figures ------------------------------------------------------------------------------------------

def truth(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The server's own headers / first body byte / first content chunk, ms after it had read the request."""
    ms = lambda rec, key: (rec[key] - rec["received_ns"]) / 1e6  # noqa: E731
    return {"headers_ms": [ms(r, "headers_ns") for r in records],
            "ttfb_ms": [ms(r, "first_body_ns") for r in records],
            "ttft_ms": [(r["content_ns"][0] - r["received_ns"]) / 1e6 for r in records]}


def turnaround_ms(records: list[dict[str, Any]], concurrency: int) -> list[float]:
    """Next request read − a response's last byte sent, pairing the k-th end with the (c + k)-th start."""
    starts = sorted(r["received_ns"] for r in records)
    ends = sorted(r["last_ns"] for r in records)
    return [(s - e) / 1e6 for s, e in zip(starts[concurrency:], ends, strict=False)]


def q(values: list[float], pct: float) -> float | None:
    return float(np.percentile(values, pct)) if values else None


def figures(batch: Batch, records: list[dict[str, Any]], handful: Batch | None) -> dict[str, Any]:
    """One batch's errors, lag and CPU, against the server's records of that batch."""
    measured = sorted(records, key=lambda r: r["received_ns"])[batch.warmup:]  # warm-ups are read first
    true = truth(measured)
    row: dict[str, Any] = {"client": batch.client, "mode": batch.extra.get("mode", ""),
                           "concurrency": batch.concurrency, "requests": batch.requests,
                           "warmup": batch.warmup, "failed": batch.failed, "server_records": len(records),
                           "wall_s": batch.wall_s, "cpu_s": batch.cpu_s, "note": batch.note}
    row["ttft_error_ms"] = {p: None if not batch.ttft_ms or not true["ttft_ms"] else
                            q(batch.ttft_ms, pct) - q(true["ttft_ms"], pct) for p, pct in (("median", 50), ("p99", 99))}
    if "samples" in batch.extra:  # latencylab: each sample against its own request
        by_seq = {int(m.group(1)): r for r in records if (m := TAG.search(r.get("prompt_head", "")))}
        errors: dict[str, list[float]] = {k: [] for k in ("headers_ms", "ttfb_ms", "ttft_ms", "request_side_ms",
                                                          "response_side_ms")}
        wall_minus_mono = time.time() - time.perf_counter()  # the same two clocks in every process of the machine
        for s in batch.extra["samples"]:
            rec = by_seq.get(s["seq"])
            if rec is None or not s["ok"]:
                continue
            for key, value in truth([rec]).items():
                errors[key].append(s[key] - value[0])
            # the TTFT error split at the server's read of the request: before it, the client's t0 to the request
            # read (connect, write, and the server's own accept and read); after it, first chunk sent → stamped
            t0_ns = (s["started_at"] - wall_minus_mono) * 1e9
            errors["request_side_ms"].append((rec["received_ns"] - t0_ns) / 1e6)
            errors["response_side_ms"].append(errors["ttft_ms"][-1] - errors["request_side_ms"][-1])
        row["matched_ms"] = {k: {"median": q(v, 50), "p99": q(v, 99), "n": len(v)} for k, v in errors.items()}
        connect = [s.get("connect_ms") for s in batch.extra["samples"]]
        reused = [s.get("connection_reused") for s in batch.extra["samples"]]
        row["connect_ms"] = {"median": q([c for c in connect if c is not None], 50),
                             "reused_share": None if None in reused or not reused else sum(reused) / len(reused)}
    lag = turnaround_ms(records, batch.concurrency)
    row["start_lag_ms"] = {"median": q(lag, 50), "p99": q(lag, 99)}
    total = batch.requests + batch.warmup
    row["cpu_ms_per_request"] = None
    if handful is not None and total > handful.requests + handful.warmup:
        per_request = (batch.cpu_s - handful.cpu_s) * 1000 / (total - handful.requests - handful.warmup)
        if per_request >= 0:
            row["cpu_ms_per_request"] = per_request
        else:  # the start-up varied by more than the whole batch cost: no figure rather than a wrong one
            row["note"] = (row["note"] + "; " if row["note"] else "") + (
                f"cpu: start-up noise ({batch.cpu_s:.2f} s for the batch, {handful.cpu_s:.2f} s for a handful)")
    row["loadavg_1min"] = batch.extra.get("loadavg")
    return row


def fmt(pair: dict[str, Any] | None) -> str:
    if not pair or pair.get("median") is None:
        return "—"
    return f"{pair['median']:+.2f}/{pair['p99']:+.2f}"


def check_goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        goals += _mode_goals([r for r in rows if r["mode"] == mode], mode)
    return goals


def _mode_goals(rows: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    goals = []
    by = {(r["client"], r["concurrency"]): r for r in rows}
    levels = sorted({r["concurrency"] for r in rows})

    def add(name: str, c: int, value: float | None, limit: float | None) -> None:
        status = "NOT RUN" if value is None or limit is None else ("PASS" if value <= limit else "MISS")
        goals.append({"goal": name, "mode": mode, "concurrency": c, "value": value, "limit": limit,
                      "status": status})

    for c in levels:
        ours = by.get(("latencylab", c))
        if ours is None:
            continue
        err = ours["ttft_error_ms"]
        peers = [r for (name, level), r in by.items() if level == c and not name.startswith("latencylab")]
        if c < 256:
            add("ttft error median ≤ +1.0 ms", c, err["median"], GOALS["median"])
            add("ttft error p99 ≤ +3 ms", c, err["p99"], GOALS["p99"])
            for peer in peers:
                for p in ("median", "p99"):
                    theirs = peer["ttft_error_ms"][p]
                    add(f"ttft error {p} no worse than {peer['client']}", c, err[p], theirs)
        else:
            add("ttft error p99 ≤ +10 ms", c, err["p99"], GOALS["p99_256"])
        for peer in peers:
            add(f"cpu ms/request below {peer['client']}", c, ours["cpu_ms_per_request"], peer["cpu_ms_per_request"])
        add("cpu ms/request < 1 ms (stretch)", c, ours["cpu_ms_per_request"], GOALS["cpu_stretch"])
    return goals


def print_tables(rows: list[dict[str, Any]], goals: list[dict[str, Any]]) -> None:
    print("error = client − server truth in ms, median/p99 (distr.: quantile − quantile; matched: per request);"
          "\nstart lag = next request read − last byte sent (server-observed); cpu = whole process tree, start-up "
          "subtracted")
    head = (f"{'client':<18}{'mode':>6}{'conc':>5}{'reqs':>6}{'fail':>5}  {'ttft (distr.)':<15}{'ttft (m)':<15}"
            f"{'request side':<15}{'response side':<15}{'start lag':<15}{'connect':>8}{'reused':>7}{'cpu ms/req':>11}"
            f"{'wall s':>7}{'load':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        m = r.get("matched_ms") or {}
        conn = r.get("connect_ms") or {}
        cpu = "—" if r["cpu_ms_per_request"] is None else f"{r['cpu_ms_per_request']:.2f}"
        connect = "—" if conn.get("median") is None else f"{conn['median']:.2f}"
        reused = "—" if conn.get("reused_share") is None else f"{conn['reused_share']:.0%}"
        load = "—" if r.get("loadavg_1min") is None else f"{r['loadavg_1min']:.1f}"
        print(f"{r['client']:<18}{r['mode']:>6}{r['concurrency']:>5}{r['requests']:>6}{r['failed']:>5}  "
              f"{fmt(r['ttft_error_ms']):<15}{fmt(m.get('ttft_ms')):<15}{fmt(m.get('request_side_ms')):<15}"
              f"{fmt(m.get('response_side_ms')):<15}{fmt(r['start_lag_ms']):<15}{connect:>8}{reused:>7}{cpu:>11}"
              f"{r['wall_s']:>7.1f}{load:>6}")
        if r["note"]:
            print(f"    ! {r['note']}")
    levels = sorted({r["concurrency"] for r in rows})
    for mode in dict.fromkeys(r["mode"] for r in rows):
        server = "keeps connections alive" if mode == "reuse" else "closes every connection"
        print(f"\nside by side, server that {server} (mode {mode}): TTFT error median / p99 (ms), CPU ms per request")
        print(f"{'client':<18}" + "".join(f"{'c = ' + str(c):<26}" for c in levels))
        for name in dict.fromkeys(r["client"] for r in rows if r["mode"] == mode):
            cells = []
            for c in levels:
                r = next((x for x in rows if x["client"] == name and x["mode"] == mode and x["concurrency"] == c),
                         None)
                if r is None:
                    cells.append("not run")
                    continue
                cpu = "—" if r["cpu_ms_per_request"] is None else f"{r['cpu_ms_per_request']:.1f}"
                cells.append(f"{fmt(r['ttft_error_ms'])} cpu {cpu}")
            print(f"{name:<18}" + "".join(f"{cell:<26}" for cell in cells))
    print()
    for g in goals:
        value = "—" if g["value"] is None else f"{g['value']:+.2f}"
        limit = "—" if g["limit"] is None else f"{g['limit']:+.2f}"
        print(f"{g['status']:<8} {g['mode']:<6}c={g['concurrency']:<4} {g['goal']:<40} {value} (limit {limit})")


# --- the run ------------------------------------------------------------------------------------------

def make_clients(args: argparse.Namespace) -> tuple[list[Client], list[str]]:
    """The clients asked for that are here; and why the others are not."""
    wanted = args.clients.split(",")
    found: list[Client] = []
    missing = []
    makers: dict[str, Callable[[], Client]] = {"latencylab": Latencylab, "latencylab-direct": LatencylabDirect,
                                                "latencylab-workers": LatencylabWorkers,
                                                "aiperf": lambda: AIPerf(args.peers),
                                                "guidellm": lambda: GuideLLM(args.peers)}
    for name in wanted:
        client = makers[name]()
        exe = getattr(client, "exe", None)
        if exe is not None and not Path(exe).exists():
            missing.append(f"{name}: not installed ({exe} missing; see benchmarks/README.md)")
            continue
        found.append(client)
    return found, missing


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="c = 1 and 4, few requests, latencylab only: a smoke run")
    parser.add_argument("--concurrency", default=None, help="comma-separated; default 1,16,64,256 (quick: 1,4)")
    parser.add_argument("--requests", type=int, default=None,
                        help=f"measured requests per level, at least {ROUNDS} × the concurrency; default 100 (quick 8)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up requests per level (default 2)")
    parser.add_argument("--clients", default=None, help="comma-separated of latencylab,aiperf,guidellm (and "
                        "latencylab-direct: the runner without the CLI; latencylab-workers: with --client-processes); "
                        "default: the first three (quick: latencylab)")
    parser.add_argument("--peers", type=Path, default=Path("/tmp/peers/bin"), help="where aiperf and guidellm are")
    parser.add_argument("--client-processes", type=int, default=4,
                        help="latencylab-workers: worker processes that send the timed requests (default 4)")
    parser.add_argument("--modes", default="reuse,new",
                        help="server modes, comma-separated: reuse (keeps connections alive; latencylab's "
                        "connection: reuse) and new (closes every connection; connection: new); default both")
    parser.add_argument("--server-loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the ground-truth server's event loop (default asyncio, as every figure in the READMEs); "
                        "uvloop shows how much of a client's error was the server's own accept and read")
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--d-ms", type=float, default=5.0)
    parser.add_argument("--e-ms", type=float, default=135.0)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--aggregate-tok-s", type=float, default=10_000.0)
    parser.add_argument("--no-scrape", action="store_true",
                        help="latencylab does not scrape the server's /metrics during its runs (issue 34's baseline)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep-work", type=Path, default=None, help="copy the studies, logs and runs here")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(KEEP_ALIVE):
        parser.error(f"--modes: each of {', '.join(KEEP_ALIVE)}")
    levels = [int(c) for c in (args.concurrency or ("1,4" if args.quick else "1,16,64,256")).split(",")]
    args.clients = args.clients or ("latencylab" if args.quick else "latencylab,aiperf,guidellm")
    base_requests = args.requests or (8 if args.quick else 100)
    clients, missing = make_clients(args)
    for line in missing:
        print(f"skipped {line}")

    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="product-path-") as tmp:
        work = Path(tmp)
        for mode in modes:
            args.mode = mode
            log_path = work / f"server-{mode}.jsonl"
            extra = ("--keep-alive", str(KEEP_ALIVE[mode]), "--precise-max-streams", "1", "--loop", args.server_loop)
            with gt.serve(log_path, 3600, *extra) as port:
                for client in clients:
                    # start-up, measured twice: the smaller is the less disturbed by the machine's other load
                    handful = min((client.run(port, f"{client.name}-{mode}-handful{k}", 1, HANDFUL, 0, work, args)
                                   for k in range(1 if args.quick else 2)), key=lambda b: b.cpu_s)
                    for c in levels:
                        requests = max(base_requests, ROUNDS * c)
                        load = os.getloadavg()[0]
                        tag = f"{client.name}-{mode}-c{c}"
                        batch = client.run(port, tag, c, requests, args.warmup, work, args)
                        batch.extra.update(loadavg=load, mode=mode)
                        records = _records(log_path, tag, requests + args.warmup)
                        rows.append(figures(batch, records, handful))
        if args.keep_work:
            shutil.copytree(work, args.keep_work, dirs_exist_ok=True)
    goals = check_goals(rows)
    print_tables(rows, goals)
    report = {"settings": {"levels": levels, "requests": base_requests, "warmup": args.warmup, "chunks": args.chunks,
                           "d_ms": args.d_ms, "e_ms": args.e_ms, "interval_ms": args.interval_ms,
                           "aggregate_tok_s": args.aggregate_tok_s, "modes": modes, "server_loop": args.server_loop,
                           "client_processes": args.client_processes, "quick": args.quick, "skipped": missing},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(), "loadavg_1min_at_end": os.getloadavg()[0]},
              "wall_s": time.perf_counter() - started, "results": rows, "goals": goals}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\n{len(rows)} batches in {report['wall_s']:.1f} s; written to {args.out}")
    return report


def _records(log_path: Path, tag: str, expected: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The server's records of one batch (its id= tag); the last few are logged just after their last byte."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = [r for r in gt.read_log(log_path) if r["id"] == tag]
        if len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


if __name__ == "__main__":
    main()
