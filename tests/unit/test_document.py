"""Every section renders for the shapes of data a report meets: a concurrency and keep-alive sweep, every
request failed, and TTFT as the study's metric; the report notebook's cells draw every figure of those shapes."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from latencylab.analyse import compute
from latencylab.analyse.findings import RunInfo
from latencylab.core import paths
from latencylab.publish import document, figures
from latencylab.runs.columnar import samples_frame

RUN = RunInfo(run_id="r", label="r", study="shapes", sweep=True)


def _sweep_and_concurrency():
    rows = []
    for i in range(48):
        level = (1, 4)[i // 24]
        gap = (1.0, 4.0)[(i // 2) % 2]
        rows.append({"run_id": "r", "seq": i, "scenario": f"ka2-gap{gap}", "ok": True, "warmup": False,
                     "state": "cold" if gap > 2 else "warm", "keep_alive": "2", "idle_gap_s": gap,
                     "phase": "first" if i < 2 else "subsequent", "concurrency": level, "client_queue_ms": 0.1,
                     "ttfb_ms": 100.0 * level + i, "ttft_ms": 110.0 * level + i})
    return samples_frame(rows)


@pytest.mark.parametrize("lang", ["en", "es"])
def test_sweep_and_concurrency_sections_and_titles(lang):
    found = compute.findings(_sweep_and_concurrency(), [RUN], targets={"metric": "ttft_ms", "subsequent_ms": 300})
    assert not found.sweep.empty and not found.concurrency.empty
    assert [s.kind for s in found.steps if s.kind == "serialised"]  # TTFT grows > 2× from 1 to 4 in flight
    concurrency = document.section(found, "concurrency", lang)
    assert concurrency.startswith("## ") and "| 4 |" in concurrency
    assert "keep_alive" in document.section(found, "sweep", lang)
    assert "TTFT" in document.section(found, "phases", lang) and "TTFB" not in document.section(found, "phases", lang)
    title, alt = figures.words(found, "concurrency", lang)
    assert "4" in title.splitlines()[0] and alt


@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_run_whose_every_request_failed(lang):
    rows = [{"run_id": "r", "seq": i, "scenario": "a", "ok": False, "warmup": False, "error_kind": "http",
             "error": "HTTP 500 <b>"} for i in range(3)]
    found = compute.findings(samples_frame(rows), [RUN], targets={"metric": "ttfb_ms", "first_ms": 100})
    assert not found.has_latency
    text = "\n".join(document.section(found, name, lang) for name in document.SECTIONS)
    # Markdown shows the character and backslash-escapes a tag; the HTML made of it shows the tag as text
    assert "HTTP 500 \\<b>" in text and "&lt;" not in text and not re.search(r"(?<!\\)<b>", text)
    assert "HTTP 500 &lt;b&gt;" in markdown2html_mistune(text)
    assert document.Report(found, lang).figures("results") == []


H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 85520809984, "memory_used_bytes": 0,
        "driver_version": "580.159.04", "cuda_version": "13.0", "uuid": "GPU-x"}


@pytest.mark.parametrize(("lang", "none_seen"),
                         [("en", "no NVIDIA GPU seen"), ("es", "no se detectó ninguna GPU NVIDIA")])
def test_the_hardware_section_names_the_gpu_nvml_saw_or_says_none_was_seen(lang, none_seen):
    samples = _sweep_and_concurrency()
    with_gpu = RunInfo(run_id="r", label="r", study="gpu", gpus=[H100], engine_backend="cuda")
    setup = document.section(compute.findings(samples, [with_gpu]), "setup", lang)
    assert "NVIDIA H100 80GB HBM3" in setup and "580.159.04" in setup and "CUDA 13.0" in setup and "(cuda)" in setup
    without = document.section(compute.findings(samples, [RUN]), "setup", lang)
    assert none_seen in without and "–" not in without.split("GPU", 1)[1].split("\n", 1)[0]


# The figures: each drawn by a cell of the report notebook (`if doc.drawable("…"):`), run here in-process on the
# shapes of data the fixture run of tests/integration lacks.
CELLS = [c.source for c in nbformat.read(paths.REPORT_NOTEBOOK, as_version=4).cells]
FIGURE_CELLS = [source for source in CELLS if source.startswith("if doc.drawable(")]


def _rate_levels_and_prompts():
    """Three open-loop rates, the last past the server's 10 requests/s; prompts of 20 to 52 tokens."""
    rows = []
    for level, (rate, ttft) in enumerate([(5.0, 20.0), (10.0, 30.0), (20.0, 400.0)]):
        for k in range(11):
            seq, start = len(rows), 10.0 * level + k / rate
            rows.append({"run_id": "r", "seq": seq, "scenario": "a", "ok": True, "warmup": False, "state": "warm",
                         "phase": "first" if seq == 0 else "subsequent", "level": level, "offered_rate_per_s": rate,
                         "scheduled_at": start, "started_at": start, "client_queue_ms": 0.0, "ttft_ms": ttft + k,
                         "ttfb_ms": ttft + k, "e2e_ms": 100.0 + (50.0 * k if level == 2 else 0.0), "tpot_ms": 10.0,
                         "itl_ms": [10.0, 10.0], "output_tokens": 4, "prompt_tokens": 20 + k + level})
    return samples_frame(rows)


@pytest.mark.parametrize(("shape", "lang"), [("sweep", "es"), ("capacity", "en")])
def test_the_notebook_s_cells_draw_every_figure_a_section_supports(shape, lang):
    if shape == "sweep":
        found = compute.findings(_sweep_and_concurrency(), [RUN], targets={"metric": "ttft_ms", "subsequent_ms": 300})
    else:
        run = RunInfo(run_id="r", label="r", study="capacity", slo={"ttft_ms": 200, "goal": 0.95})
        found = compute.findings(_rate_levels_and_prompts(), [run], targets={"metric": "ttft_ms"})
    doc = document.Report(found, lang)
    imports = next(source for source in CELLS if source.startswith("from pathlib import Path"))
    axis = next(line for source in CELLS for line in source.splitlines() if line.startswith("metric_axis = "))
    namespace = {"f": found, "doc": doc, "metric": found.metric}
    exec(f"{imports}\n{axis}", namespace)  # the notebook's own imports and axis label
    for source in FIGURE_CELLS:
        exec(source.replace("doc.show(", "print("), namespace)  # showing needs a notebook's display
    expected = {"sweep": ["timeline", "waterfall", "targets", "ecdf", "box", "distribution", "decomposition",
                          "concurrency", "sweep"],
                "capacity": ["timeline", "waterfall", "ecdf", "box", "distribution", "decomposition", "prefill",
                             "decode", "latency_throughput", "goodput"]}[shape]
    assert [name for section in document.SECTIONS for name in doc.figure_names(section)] == expected
    drawn = [fig for section in document.SECTIONS for fig in doc.figures(section)]
    assert [fig.name for fig in drawn] == expected
    assert all(fig.png.startswith(b"\x89PNG") and fig.alt for fig in drawn)


def test_every_figure_has_its_cell_in_the_report_notebook():
    named = [re.match(r'if doc\.drawable\("(\w+)"\):', source).group(1) for source in FIGURE_CELLS]
    assert sorted(named) == sorted(spec.name for spec in figures.FIGURES)
    assert len(named) == 16  # one figure a cell (the server's own metrics: issue 34)
