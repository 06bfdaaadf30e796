"""The figures' registry (publish/figures.py) against the document, the catalogs and the report notebook, and the
figures the notebook's cells draw: one colour per scenario, readable log axes, no tick label over another and no
legend over the data (measured with matplotlib's renderer on the fixture run and the shapes of test_document)."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import nbformat
import pytest

from latencylab.analyse import compute
from latencylab.analyse.findings import Findings, RunInfo
from latencylab.core import paths
from latencylab.core.errors import UnknownFigure
from latencylab.publish import document, figures, i18n, plots, report

from test_document import RUN, _rate_levels_and_prompts, _sweep_and_concurrency

matplotlib.use("Agg")
DATA = Path(__file__).parents[1] / "data"
CELLS = [c.source for c in nbformat.read(paths.REPORT_NOTEBOOK, as_version=4).cells]


def test_every_figure_s_section_is_a_section_of_the_document_and_its_words_are_in_both_catalogs():
    names = [spec.name for spec in figures.FIGURES]
    assert len(names) == len(set(names))
    assert all(spec.section in document.SECTIONS for spec in figures.FIGURES)
    for lang in i18n.LANGS:
        missing = [(spec.name, key) for spec in figures.FIGURES for key in spec.keys if key not in i18n.catalog(lang)]
        assert not missing, (lang, missing)
    # the cause first: the timeline on the first screen (the summary), the waterfall in the diagnosis after it
    assert [figures.named(n).section for n in ("timeline", "waterfall")] == ["summary", "diagnosis"]
    assert document.SECTIONS[:2] == ("summary", "diagnosis")


def test_a_figure_the_registry_lacks_is_an_error_that_names_it():
    found = compute.findings(_sweep_and_concurrency(), [RUN])
    doc = document.Report(found)
    with pytest.raises(UnknownFigure, match="'histogram'"):
        doc.drawable("histogram")
    fig, _ = plt.subplots()
    with pytest.raises(UnknownFigure, match="'pie'"):
        doc.add_figure("pie", fig)
    plt.close(fig)


def _show_cell(section: str) -> int:
    return next(i for i, source in enumerate(CELLS) if f'doc.show("{section}")' in source)


def test_the_notebook_draws_each_figure_in_its_own_cell_before_its_section_is_shown_in_the_document_s_order():
    drawn = [re.findall(r'doc\.add_figure\("(\w+)"', source) for source in CELLS]
    assert sorted(name for names in drawn for name in names) == sorted(spec.name for spec in figures.FIGURES)
    assert all(len(names) <= 1 for names in drawn)  # one figure a cell
    for i, names in enumerate(drawn):
        if names:
            assert CELLS[i].startswith(f'if doc.drawable("{names[0]}"):')
    shown = [_show_cell(section) for section in document.SECTIONS]
    assert shown == sorted(shown)  # the cells show the sections in the document's order (the HTML's)
    for spec in figures.FIGURES:  # each figure's cell among its section's: the first section shown after it
        cell = next(i for i, names in enumerate(drawn) if names == [spec.name])
        assert min(s for s in shown if s >= cell) == _show_cell(spec.section), spec.name
    for section in document.SECTIONS:
        cells = [names[0] for names in drawn if names and figures.named(names[0]).section == section]
        assert cells == [spec.name for spec in figures.of_section(section)]


@pytest.mark.parametrize(("n", "apart"), [(2, 0.2), (5, 0.2), (10, 0.2), (12, 0.1), (20, 0.05)])
def test_each_scenario_has_a_colour_of_its_own(n, apart):
    found = compute.findings(_scenarios(n), [RUN])
    colours = list(plots.palette(found).values())
    assert len(colours) == n
    # far apart in RGB up to ten: no two oranges (the colorblind palette's second and fourth are 0.196 apart)
    assert min(sum((a - b) ** 2 for a, b in zip(c1, c2, strict=True)) ** 0.5
               for c1, c2 in itertools.combinations(colours, 2)) > apart


def _scenarios(n: int, each: int = 3) -> object:
    from latencylab.runs.columnar import samples_frame

    return samples_frame([{"run_id": "r", "seq": i, "scenario": f"scenario-{i // each}", "ok": True, "warmup": False,
                           "state": "warm", "phase": "first" if i % each == 0 else "subsequent",
                           "started_at": float(i), "ttfb_ms": 100.0 + i} for i in range(n * each)])


@pytest.mark.parametrize(("low", "high", "ticks"), [
    (80, 3000, [100, 200, 500, 1000, 2000]),  # (1, 2, 3, 5, 7) × 10ⁿ would be 8 ticks, more than 7: (1, 2, 5)
    (40, 700, [50, 70, 100, 200, 300, 500, 700]),
    (0.2, 30_000, [1, 10, 100, 1000, 10_000]),
    (104, 520, [200, 300, 400, 500]),
    (450, 700, [500, 600, 700]),  # under 2×: evenly spaced
])
def test_a_log_axis_is_labelled_at_round_numbers_in_the_language_s_format(low, high, ticks):
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    plots.readable_log(ax.yaxis, "es")
    fig.canvas.draw()
    shown = [t for t in ax.yaxis.get_majorticklocs() if low <= t <= high]
    assert shown == pytest.approx(ticks)
    labels = [t.label1.get_text() for t in ax.yaxis.get_major_ticks() if low <= t.get_loc() <= high]
    assert "×" not in "".join(labels) and "$" not in "".join(labels)  # no 3×10⁻¹, no mathtext
    assert labels == [i18n.number(t, "es") for t in ticks]  # as the document writes numbers: 1.000, 10.000
    assert not [t.label1.get_text() for t in ax.yaxis.get_minor_ticks() if t.label1.get_text()]
    plt.close(fig)


def _drawn(found: Findings, lang: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Every figure the notebook's cells draw of `found`, with what `plots.overlaps` finds in each as it is handed
    to the document: the cells' own sources, run here in-process as test_document does (papermill runs the same
    sources in a kernel; the PNG is drawn from the same matplotlib figure)."""
    problems: dict[str, list[str]] = {}
    add = document.Report.add_figure

    def checked(self: document.Report, name: str, figure: plt.Figure) -> None:
        problems[name] = plots.overlaps(figure)
        add(self, name, figure)

    monkeypatch.setattr(document.Report, "add_figure", checked)
    doc = document.Report(found, lang)
    imports = next(source for source in CELLS if source.startswith("from pathlib import Path"))
    axis = next(line for source in CELLS for line in source.splitlines() if line.startswith("metric_axis = "))
    namespace = {"f": found, "doc": doc, "metric": found.metric}
    exec(f"{imports}\n{axis}", namespace)
    for source in CELLS:
        if source.startswith("if doc.drawable("):
            exec(source.replace("doc.show(", "str("), namespace)  # showing needs a notebook's display
    assert [name for name in problems if name not in doc.figure_names(figures.named(name).section)] == []
    return problems


@pytest.mark.parametrize(("run", "lang", "drawn"), [
    ("fixture-run", "en", {"timeline", "waterfall", "targets", "variability", "distribution", "decode"}),
    # the demo's real run on the bundled Ollama (five scenarios of 8 requests, 15 targets, prompts of 43–127
    # tokens; made by `latencylab run studies/ollama-demo.yaml`, its ollama.log and parquet cache left out)
    ("ollama-demo-run", "en", {"timeline", "waterfall", "targets", "distribution", "prefill", "decode"}),
    ("ollama-demo-run", "es", {"timeline", "waterfall", "targets", "distribution", "prefill", "decode"}),
])
def test_no_figure_of_a_run_has_a_tick_label_over_another_or_a_legend_over_its_data(run, lang, drawn, workdir,
                                                                                       monkeypatch):
    shutil.copytree(DATA / run, paths.run_dir(run))
    problems = _drawn(report.document_of([run]).findings, lang, monkeypatch)
    assert drawn <= set(problems)
    assert {name: found for name, found in problems.items() if found} == {}


@pytest.mark.parametrize("shape", ["sweep", "capacity"])
def test_no_figure_of_other_shapes_has_overlaps(shape, monkeypatch):
    if shape == "sweep":
        found = compute.findings(_sweep_and_concurrency(), [RUN], targets={"metric": "ttft_ms", "subsequent_ms": 300})
    else:
        run = RunInfo(run_id="r", label="r", study="capacity", slo={"ttft_ms": 200, "goal": 0.95})
        found = compute.findings(_rate_levels_and_prompts(), [run], targets={"metric": "ttft_ms"})
    problems = _drawn(found, "en", monkeypatch)
    assert {name: found for name, found in problems.items() if found} == {}


def test_the_check_finds_overlapping_tick_labels_and_a_legend_over_the_data():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2], [1, 2], label="a line")
    ax.set_xticks([1.0, 1.01], ["a long label", "another one"])
    ax.legend(loc="center")
    found = plots.overlaps(fig)
    assert any("'a long label' and 'another one' overlap" in problem for problem in found)
    assert any("legend" in problem for problem in found)
    plt.close(fig)
