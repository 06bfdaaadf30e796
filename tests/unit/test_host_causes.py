"""The host's causes (storage, memory, cpu, vram) on samples written by hand, the host evidence's own arithmetic,
NVML's other processes through a double (no GPU where this was written), and a scenario that meets its targets."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from latencylab.analyse import compute
from latencylab.analyse.findings import RunInfo
from latencylab.collect import gpu, host
from latencylab.core.sample import Sample
from latencylab.publish import document
from latencylab.runs.columnar import samples_frame

RUN = RunInfo(run_id="r1", label="r1", study="hand")
MB = 10**6
QUIET = {"host": "local", "host_window_ms": 1000.0, "host_cores": 2, "others_cpu_ms": 0.0, "swap_in_pages": 0,
         "swap_out_pages": 0, "mem_available_bytes": 20_000 * MB}


def _scenario(rows: list[dict], name: str, start: int, load_ms: float, cached: float, file: str = "/m.gguf",
              n: int = 3, **each) -> None:
    """A scenario of `n` requests: a cold start that loaded `file` in `load_ms` (with `cached` of it in the page
    cache before), then warm requests of 100 ms; `each` goes into every request."""
    for i in range(n):
        cold = i == 0
        seq = start + i
        rows.append({"run_id": "r1", "seq": seq, "scenario": name, "backend": "ollama", "model": "m", "ok": True,
                     "warmup": False, "phase": "first" if cold else "subsequent", "state": "cold" if cold else "warm",
                     "started_at": 1000.0 + 10 * seq, "ttfb_ms": load_ms + 100 if cold else 100.0,
                     "ttft_ms": load_ms + 100 if cold else 100.0, "e2e_ms": load_ms + 300 if cold else 300.0,
                     "load_ms": load_ms if cold else 2.0, "load_ms_source": "server", "prompt_eval_ms": 90.0,
                     "prompt_tokens": 90, "total_ms": (load_ms if cold else 2.0) + 290, "eval_ms": 200.0,
                     "output_tokens": 10, "output_tokens_source": "server", "model_file": file,
                     "model_file_bytes": 100 * MB, "cached_share": cached if cold else 1.0,
                     "read_bytes": int((1 - cached) * 100 * MB) if cold else 0, **QUIET, **each})


def _verdict(found, cause: str, scenario: str):
    return next(v for v in found.diagnosis.verdicts if v.cause == cause and v.key == ("r1", scenario))


@pytest.fixture(scope="module")
def loads():
    rows: list[dict] = []
    _scenario(rows, "memory", 0, 300.0, 1.0)  # from the page cache: 100 MB in 300 ms
    _scenario(rows, "disk", 10, 4000.0, 0.0)  # from storage: 100 MB at 25 MB/s
    _scenario(rows, "fast-disk", 20, 320.0, 0.0, file="/f.gguf")
    _scenario(rows, "fast-memory", 30, 300.0, 1.0, file="/f.gguf")
    _scenario(rows, "alone", 40, 2000.0, 0.0, file="/a.gguf")
    _scenario(rows, "pressed", 50, 4000.0, 0.1, mem_available_bytes=30 * MB)  # the cache could not keep it
    return compute.findings(samples_frame(rows), [RUN], targets={})


def test_a_load_from_storage_much_slower_than_from_memory_is_confirmed(loads):
    v = _verdict(loads, "storage", "disk")
    # 4,000 − 300 ms (the median of the loads of /m.gguf from memory) = 3,700 ms of the 4,100 ms TTFB: 90 %
    assert v.verdict == "confirmed"
    assert v.values.extra_ms == 3700.0 and v.values.share == pytest.approx(3700 / 4100)
    assert v.values.read_rate == pytest.approx(25 * MB) and v.values.memory_rate == pytest.approx(100 * MB / 0.3)
    words = document.verdict_words(v, loads, "en")
    assert "read the model from storage" in words and "25\u00a0MB/s" in words and "0.3\u00a0GB/s" in words


def test_a_load_from_a_fast_disk_came_from_storage_and_was_not_slowed(loads):
    v = _verdict(loads, "storage", "fast-disk")
    assert v.verdict == "present" and v.values.extra_ms == 20.0  # 320 − 300 ms: not material
    assert "were not slowed" in document.verdict_words(v, loads, "en")
    assert _verdict(loads, "storage", "memory").verdict == "refuted"


def test_without_a_load_from_memory_whether_storage_slowed_it_is_not_guessed(loads):
    v = _verdict(loads, "storage", "alone")
    assert v.verdict == "present" and v.values.memory_n == 0
    assert "cannot be told" in document.verdict_words(v, loads, "en")


def test_memory_pressure_is_a_reread_from_storage_while_memory_was_short(loads):
    pressed, disk = _verdict(loads, "memory", "pressed"), _verdict(loads, "memory", "disk")
    assert pressed.verdict == "confirmed" and pressed.values.reread_n == 1 and pressed.values.short
    assert disk.verdict == "present"  # read again (after /m.gguf's first load), but memory was not short
    assert _verdict(loads, "memory", "memory").verdict == "refuted"  # the run's first load of its file


def test_cpu_taken_by_other_processes_against_the_quiet_requests_of_the_same_model():
    rows: list[dict] = []
    _scenario(rows, "calm", 0, 300.0, 1.0, n=4)
    # others used 1,000 ms of CPU in 1 s on 2 cores: half the machine; the prompt took 400 ms, not 90 ms
    _scenario(rows, "busy", 10, 300.0, 1.0, n=4, others_cpu_ms=1000.0, prompt_eval_ms=400.0, ttfb_ms=420.0,
              ttft_ms=420.0, total_ms=620.0)
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    busy = _verdict(found, "cpu", "busy")
    # quiet prefill: 90 tokens / 90 ms = 1,000 tok/s; each busy request: 400 − 90 = 310 ms of its 420 ms
    assert busy.verdict == "confirmed" and busy.values.contended_n == 3 and busy.values.quiet_n == 4
    assert busy.values.amount_ms == pytest.approx(310.0) and busy.values.contended_others == 0.5
    assert _verdict(found, "cpu", "calm").verdict == "refuted"
    assert "CPU taken by other processes" in document.wasted(("r1", "busy"), found, "en")
    alone = compute.findings(samples_frame([r for r in rows if r["scenario"] == "busy"]), [RUN], targets={})
    uncompared = _verdict(alone, "cpu", "busy")  # no quiet request: not guessed
    assert uncompared.verdict == "present" and "cannot be told" in document.verdict_words(uncompared, alone, "en")


def test_vram_held_by_others_is_confirmed_where_the_model_would_have_fitted_without_them():
    rows: list[dict] = []
    gib = 2**30
    spilled = {"gpu_free_bytes": 1 * gib, "gpu_others_bytes": 6 * gib, "gpu_others": "python (4242)",
               "gpu_others_util_pct": 80.0, "model_size_bytes": 4 * gib, "vram_bytes": 2 * gib, "gpu_share": 0.5}
    _scenario(rows, "crowded", 0, 300.0, 1.0, **spilled)
    _scenario(rows, "alone", 10, 300.0, 1.0, **{**spilled, "gpu_others_bytes": 0, "gpu_others": None,
                                                  "gpu_share": 1.0, "vram_bytes": 4 * gib})
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    crowded = _verdict(found, "vram", "crowded")
    assert crowded.verdict == "confirmed" and crowded.values.would_fit  # 4 GiB ≤ 1 + 6 + 2 GiB
    assert "python (4242)" in document.verdict_words(crowded, found, "en")
    assert _verdict(found, "vram", "alone").verdict == "refuted"
    assert _verdict(found, "offload", "crowded").verdict == "confirmed"


def test_no_vram_verdict_where_no_gpu_was_seen(loads):
    assert not [v for v in loads.diagnosis.verdicts if v.cause == "vram"]


def test_a_remote_server_has_no_host_evidence_said_once_and_no_host_cause():
    rows: list[dict] = []
    _scenario(rows, "a", 0, 300.0, 1.0, host="remote")
    _scenario(rows, "b", 10, 300.0, 1.0, host="remote")
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    assert not {v.cause for v in found.diagnosis.verdicts} & {"storage", "memory", "cpu", "vram"}
    assert found.diagnosis.no_host == {("r1", "a"): "remote", ("r1", "b"): "remote"}
    said = document.section(found, "diagnosis", "en")
    assert said.count("the server is not on this machine") == 1 and "a, b" in said


def test_a_scenario_that_meets_its_targets_confirms_nothing():
    rows: list[dict] = []
    _scenario(rows, "disk", 0, 4000.0, 0.0, n=2)  # its load from storage, 3,700 ms slower: over its two requests,
    _scenario(rows, "memory", 10, 300.0, 1.0, n=2)  # 1,850 ms a request, at least a fifth of either target
    samples = samples_frame(rows)
    judged = compute.findings(samples, [RUN], targets={"first_ms": 5000})  # 4,100 ms: met
    v = _verdict(judged, "storage", "disk")
    assert v.verdict == "present" and v.reason == "targets_met"
    assert "targets are met" in document.verdict_words(v, judged, "en")
    assert document.wasted(("r1", "disk"), judged, "en") == "none"
    missed = compute.findings(samples, [RUN], targets={"first_ms": 1000})  # 4,100 ms: failed
    assert _verdict(missed, "storage", "disk").verdict == "confirmed"


def test_the_page_cache_share_of_a_file_is_read_without_reading_it(tmp_path: Path):
    path = tmp_path / "model.gguf"
    with open(path, "wb") as f:
        f.write(os.urandom(4 * 2**20))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages: dropped from the cache
    assert host.cached_share(path) < 0.5
    assert host.cached_share(path) < 0.5  # asking read nothing in
    path.read_bytes()
    assert host.cached_share(path) == 1.0
    assert host.cached_share(tmp_path / "missing") is None


def test_a_runner_started_during_the_request_counts_from_zero_and_others_exclude_server_and_client():
    probe = host.HostProbe(lambda: [], None, on_gpu=False)
    ms = 1_000_000  # schedstat's ns
    before = host.Snapshot(at=10.0, processes={1: (5.0, 3, 100, {1: (10 * ms, 2 * ms), 11: (0, 0)})}, busy_s=100.0,
                           own_s=2.0,
                           mem_available=900, swap=(4, 4), cached_share=0.25,
                           stalls=("cgroup", (1_000, 2_000, 1_000, 0, 0)))
    after = host.Snapshot(at=11.0, processes={1: (5.2, 3, 100, {1: (20 * ms, 5 * ms), 11: (ms, ms // 2)}),
                                              2: (0.5, 7, 4000, {2: (ms, ms)})},
                          busy_s=101.5, own_s=2.1, mem_available=700, swap=(6, 4),
                          stalls=("cgroup", (51_000, 302_000, 101_000, 500, 0)))
    sample = Sample()
    probe.fill(sample, before, after)
    assert sample.host == "local" and sample.host_window_ms == 1000.0
    assert sample.server_cpu_ms == pytest.approx(700.0)  # 0.2 s of the server, 0.5 s of its new runner
    assert sample.others_cpu_ms == pytest.approx(700.0)  # 1.5 s busy − 0.7 s server − 0.1 s latencylab
    assert (sample.major_faults, sample.read_bytes, sample.cached_share) == (7, 4000, 0.25)
    assert (sample.mem_available_bytes, sample.swap_in_pages, sample.swap_out_pages) == (700, 2, 0)
    # the thread that waited longest: 3 ms of the 13 ms it was runnable (not the sum: 4.5 ms with the others)
    assert (sample.runqueue_ms, sample.runqueue_share) == (3.0, pytest.approx(3 / 13))
    assert sample.psi_scope == "cgroup"  # PSI totals in µs, the deltas in ms
    assert (sample.cpu_stall_ms, sample.io_stall_ms, sample.io_full_ms) == (50.0, 300.0, 100.0)
    assert (sample.memory_stall_ms, sample.memory_full_ms) == (0.5, 0.0)
    unknown = Sample()  # no schedstat for a process, a scope that changed in the window: nothing, never a mix
    probe.fill(unknown, before, host.Snapshot(**{**after.__dict__, "processes": {1: (5.2, 3, 100, None)},
                                                 "stalls": ("system", (0, 0, 0, 0, 0))}))
    assert unknown.runqueue_ms is None and unknown.psi_scope is None and unknown.cpu_stall_ms is None


def test_the_kernels_own_accounting_is_read_where_it_is_kept():
    """PSI and schedstat on this machine's kernel (both are, on Linux ≥ 4.20 with PSI on): this process's own."""
    found = host.stall_totals(os.getpid())
    if found is None:
        pytest.skip("no PSI on this kernel")
    scope, totals = found
    assert scope in ("cgroup", "system") and len(totals) == len(host.STALLS) and min(totals) >= 0
    threads = host._threads(os.getpid())
    assert threads is None or (os.getpid() in threads and min(min(t) for t in threads.values()) >= 0)


class FakeNvml:
    """NVML as a double: GPU 0 with the server (pid 10) and another process (pid 20) on it."""

    class NVMLError(Exception):
        pass

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list:
        return [SimpleNamespace(pid=10, usedGpuMemory=3 * 2**30), SimpleNamespace(pid=20, usedGpuMemory=5 * 2**30)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: str) -> list:
        return [SimpleNamespace(pid=20, usedGpuMemory=5 * 2**30)]  # in both lists: one process

    def nvmlDeviceGetProcessUtilization(self, handle: str, since: int) -> list:
        return [SimpleNamespace(pid=20, smUtil=70)]

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(free=2**30, used=8 * 2**30, total=9 * 2**30)


def test_other_processes_on_the_servers_gpu_through_an_nvml_double(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gpu, "pynvml", FakeNvml())
    assert gpu.processes() == [gpu.GpuProcess(0, 10, 3 * 2**30, None), gpu.GpuProcess(0, 20, 5 * 2**30, 70.0)]
    assert gpu.free_bytes(0) == 2**30
    probe = host.HostProbe(lambda: [10], None, on_gpu=True)
    sample = Sample()
    probe.fill(sample, probe.snapshot(before=True), probe.snapshot(before=False))
    assert (sample.gpu_free_bytes, sample.gpu_others_bytes, sample.gpu_others_util_pct) == (2**30, 5 * 2**30, 70.0)
    assert sample.gpu_others is not None and sample.gpu_others.endswith("(20)")


def test_the_check_names_other_processes_on_a_local_gpu_and_warns_where_the_model_fits_only_without_them():
    from latencylab.plan.check import Plan, evaluate
    from latencylab.plan.facts import Facts, GpuFacts, GpuUser, HostFacts, ModelFacts, ServerFacts
    from latencylab.plan.study import parse_study
    from latencylab.publish import check_text

    gib = 2**30
    phi3 = ModelFacts(name="phi3:mini", source="ollama", architecture="phi3", size_bytes=2_176_178_913,
                      block_count=32, context_length=4096, embedding_length=3072, head_count=32, head_count_kv=32)
    url = "http://127.0.0.1:11434"
    server = ServerFacts(kind="ollama", base_url=url, reachable=True, version="0.5.4", models=[phi3])
    host_facts = HostFacts(system="Linux", machine="x86_64", cpu="cpu", cores_logical=2, cores_physical=2,
                           ram_bytes=8 * gib, python="3.11")
    crowded = GpuFacts(name="T4", total_bytes=16 * gib, used_bytes=13 * gib, free_bytes=3 * gib,
                       others=[GpuUser(pid=4242, name="python", used_bytes=12 * gib)])
    study = parse_study({"name": "s", "backend": "ollama", "base_url": url,
                         "scenarios": [{"name": "a", "model": "phi3:mini"}]})
    facts = Facts(moment="check", taken_at="2026-12-01T00:00:00+00:00", servers=[server], gpu=crowded, host=host_facts)
    found = {f.rule: f for f in evaluate(Plan(study, facts))}
    assert found["gpu-others"].evidence["who"] == ["python (4242)"] and found["gpu-others"].evidence["others_gb"] == 12
    crowd = found["gpu-others-crowd"]  # about 3.4 GiB needed, 3 GiB free, 15 GiB without the other process
    assert crowd.level == "warning" and crowd.scenario == "a" and 3 < crowd.evidence["need_gb"] <= 15
    for lang in ("en", "es"):
        assert "python (4242)" in check_text.text(crowd, lang)[0]
    alone = facts.model_copy(update={"gpu": crowded.model_copy(update={"others": [], "free_bytes": 15 * gib})})
    assert not {"gpu-others", "gpu-others-crowd"} & {f.rule for f in evaluate(Plan(study, alone))}


def test_a_wait_while_the_server_faulted_its_pages_back_is_memory_pressure_not_queueing():
    """A server short of memory held the requests 400 ms without working on them while its processes read pages
    back from storage (major faults): that wait is memory pressure's, not a queue; the same wait without faults
    stays queueing."""
    def held(name: str, start: int, faults: int, cached: float, **each) -> list[dict]:
        rows: list[dict] = []
        _scenario(rows, name, start, 4000.0 if cached < 1 else 300.0, cached, n=4, **each)
        for row in rows[1:]:  # after the cold start: 400 ms held beyond the load, prompt and decode
            row.update(total_ms=row["total_ms"] + 400.0, ttfb_ms=500.0, ttft_ms=500.0, e2e_ms=700.0,
                       major_faults=faults)
        return rows

    rows: list[dict] = []
    _scenario(rows, "memory", 0, 300.0, 1.0)  # the file's first load, from the page cache
    rows += [*held("pressed", 10, 120, 0.1, mem_available_bytes=30 * MB), *held("queued", 20, 0, 1.0)]
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    assert _verdict(found, "memory", "pressed").verdict == "confirmed"
    waited = _verdict(found, "queueing", "pressed")
    assert (waited.verdict, waited.reason, waited.values.faulted) == ("present", "memory", 1.0)
    assert _verdict(found, "queueing", "queued").verdict == "confirmed"
    assert "not a queue" in document.section(found, "diagnosis", "en")


def test_one_load_from_storage_in_thirty_requests_is_present_not_why_they_are_slow():
    """The embedded demo's baseline: its first load read the file from storage (164 ms slower), the other 29 from
    the page cache; spread over its 30 requests that is 5 ms of a 400 ms first byte: present, not a cause."""
    rows: list[dict] = []
    for i in range(30):
        first = i == 0
        _scenario(part := [], "baseline", i, 400.0 if first else 240.0, 0.03 if first else 1.0, n=1)
        part[0].update(state="cold", phase="first" if first else "subsequent", load_ms=400.0 if first else 240.0,
                       ttfb_ms=500.0 if first else 340.0, ttft_ms=500.0 if first else 340.0)
        rows += part
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    v = _verdict(found, "storage", "baseline")
    assert (v.verdict, v.values.storage_n, v.values.memory_n) == ("present", 1, 29)


KERNEL = {"psi_scope": "cgroup", "page_cache_bps": 3e9}


def _loads_alone(name: str, load_ms: float, stall_ms: float | None, **each) -> list[dict]:
    """A scenario in which every one of 3 requests loaded the 100 MB /s.gguf from storage in `load_ms`, waiting
    `stall_ms` for it (the kernel's I/O stall), with no load of that file from memory anywhere in the report."""
    rows: list[dict] = []
    for i in range(3):
        _scenario(part := [], name, i, load_ms, 0.0, file="/s.gguf", n=1, io_stall_ms=stall_ms, **{**KERNEL, **each})
        part[0].update(phase="first" if i == 0 else "subsequent")
        rows += part
    return rows


def test_loads_from_a_slow_disk_are_confirmed_by_the_kernels_stall_without_a_load_from_memory():
    """Issue 33: 100 MB at 14 MB/s, 6.5 s of the 7.1 s load waiting for storage; the page cache gives the file at
    3 GB/s (33 ms): no load from memory in the run is needed."""
    found = compute.findings(samples_frame(_loads_alone("slow", 7100.0, 6500.0)), [RUN], targets={})
    v = _verdict(found, "storage", "slow")
    assert (v.verdict, v.values.memory_n, v.values.reference) == ("confirmed", 0, "measured")
    assert v.values.extra_ms == 6500.0 and v.values.cover == pytest.approx(6500 / 7100)
    for lang, said in (("en", "waited"), ("es", "esperaron")):
        words = document.verdict_words(v, found, lang)
        assert said in words and "\u00a0GB/s" in words and "14\u00a0MB/s" in words and "600\u00a0ms" in words
    assert "cgroup" in document.verdict_words(v, found, "en")


def test_a_fast_disk_waited_little_and_a_kernel_without_psi_is_not_guessed_at():
    fast = compute.findings(samples_frame(_loads_alone("fast", 500.0, 30.0)), [RUN], targets={})
    v = _verdict(fast, "storage", "fast")  # 200 MB/s, far below 3 GB/s, but 30 ms of 500 ms waiting for storage
    assert v.verdict == "present" and "not slowed" in document.verdict_words(v, fast, "en")
    blind = compute.findings(samples_frame(_loads_alone("blind", 7100.0, None, psi_scope=None)), [RUN], targets={})
    v = _verdict(blind, "storage", "blind")
    assert v.verdict == "present" and "cannot be told" in document.verdict_words(v, blind, "en")
    stated = compute.findings(samples_frame(_loads_alone("slow", 7100.0, 6500.0, page_cache_bps=None)), [RUN],
                              targets={})
    v = _verdict(stated, "storage", "slow")  # never measured: the stated reference, said to be one
    assert (v.verdict, v.values.reference, v.values.reference_rate) == ("confirmed", "stated", 1e9)
    assert "a stated reference" in document.verdict_words(v, stated, "en")


def test_cpu_taken_by_others_is_confirmed_by_the_servers_run_queue_wait_without_a_quiet_request():
    """Others used half the machine; the server's longest-waiting thread waited 150 ms of a 250 ms first byte
    (60 % of its runnable time): confirmed with no quiet request; a double that sleeps, waiting 5 ms of what little
    it ran, is not."""
    busy = {"others_cpu_ms": 1000.0, "ttfb_ms": 250.0, "ttft_ms": 250.0}
    rows: list[dict] = []
    _scenario(rows, "busy", 0, 300.0, 1.0, n=4, runqueue_ms=150.0, runqueue_share=0.6, **busy)
    _scenario(rows, "sleepy", 10, 300.0, 1.0, n=4, model="d", runqueue_ms=5.0, runqueue_share=0.9, **busy)
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    v = _verdict(found, "cpu", "busy")
    assert (v.verdict, v.values.source, v.values.quiet_n) == ("confirmed", "runqueue", 0)
    assert v.values.waited_amount_ms == pytest.approx(150.0) and v.values.share == pytest.approx(0.6)
    for lang, said in (("en", "run-queue wait"), ("es", "cola de ejecución")):
        assert said in document.verdict_words(v, found, lang)
    sleepy = _verdict(found, "cpu", "sleepy")
    assert sleepy.verdict == "present" and sleepy.values.waited_amount_ms == pytest.approx(5.0)


def test_quiet_requests_that_disagree_with_the_kernel_leave_cpu_present():
    rows: list[dict] = []
    _scenario(rows, "calm", 0, 300.0, 1.0, n=4)  # 1,000 tok/s when quiet
    # contended, the server waited 100 ms of each 200 ms, yet prefilled as fast as when quiet: not agreed
    _scenario(rows, "busy", 10, 300.0, 1.0, n=4, others_cpu_ms=1000.0, ttfb_ms=200.0, ttft_ms=200.0,
              runqueue_ms=100.0, runqueue_share=0.5)
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    v = _verdict(found, "cpu", "busy")
    assert v.verdict == "present" and v.values.amount_ms == 0.0 and v.values.waited_amount_ms == 100.0
    assert "quiet requests" in document.verdict_words(v, found, "en")


def test_memory_pressure_is_confirmed_by_the_kernels_memory_stall_where_the_server_faulted():
    rows: list[dict] = []
    _scenario(rows, "pressed", 0, 300.0, 1.0, n=4, memory_stall_ms=200.0, major_faults=500, ttfb_ms=300.0,
              ttft_ms=300.0, **KERNEL)
    _scenario(rows, "others", 10, 300.0, 1.0, n=4, memory_stall_ms=200.0, major_faults=0, ttfb_ms=300.0,
              ttft_ms=300.0, **KERNEL)  # a stall in which the server faulted nothing is not the server's
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    v = _verdict(found, "memory", "pressed")
    assert v.verdict == "confirmed" and v.values.stalled and v.values.faults == 4 * 500
    for lang, said in (("en", "waited for memory"), ("es", "esperó por la memoria")):
        assert said in document.verdict_words(v, found, lang)
    assert _verdict(found, "memory", "others").verdict == "refuted"


def test_a_cache_that_could_not_keep_the_model_is_judged_by_the_stall_where_no_load_came_from_memory():
    """A memory limit for the whole run: every load after the first read the file from a slow disk again, memory
    short, no load from memory anywhere to compare with: the kernel's I/O stall says how much slower."""
    rows = _loads_alone("limited", 7100.0, 6500.0, mem_available_bytes=30 * MB)
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    v = _verdict(found, "memory", "limited")
    assert (v.verdict, v.values.reread_n, v.values.extra_ms) == ("confirmed", 2, 6500.0)
    assert _verdict(found, "storage", "limited").verdict == "confirmed"


def test_the_kernels_stall_stands_where_loads_from_memory_slowed_by_a_busy_cpu_hide_what_storage_cost():
    """A load from memory slowed to 5 s by a busy CPU makes a 7.1 s load from a slow disk look 2.1 s slower; the
    kernel counted 6.5 s of it waiting for storage: that is what storage cost."""
    rows = _loads_alone("slow", 7100.0, 6500.0)
    _scenario(rows, "memory", 10, 5000.0, 1.0, file="/s.gguf", **KERNEL)
    found = compute.findings(samples_frame(rows), [RUN], targets={})
    v = _verdict(found, "storage", "slow")
    assert (v.verdict, v.values.by_stall, v.values.extra_ms, v.values.memory_n) == ("confirmed", True, 6500.0, 1)
    assert "the kernel's I/O pressure stall" in document.verdict_words(v, found, "en")


def test_no_cgroup_is_made_where_it_would_change_how_the_server_is_scheduled(tmp_path: Path, monkeypatch):
    """On a host on cgroup v2 alone the root hands controllers to its children: a new group beside the machine's
    slices would get a CPU weight of its own, so none is made (the server's own group is read instead)."""
    from latencylab.collect import cgroups

    (tmp_path / "cgroup.subtree_control").write_text("cpu io memory\n")
    monkeypatch.setattr(cgroups, "v2_root", lambda: tmp_path)
    assert cgroups.own_group(os.getpid(), "engine") is None and not list(tmp_path.glob("latencylab-*"))
