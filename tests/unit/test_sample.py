import pytest

from latencylab.core.sample import ERROR_KINDS, Sample, StreamClock


def test_clock_fills_every_client_figure_from_its_timestamps():
    clock = StreamClock()
    clock.t0 = 0
    clock.headers = 10_000_000
    clock.on_bytes(20_000_000)
    for t in (30_000_000, 40_000_000, 60_000_000):
        clock.on_bytes(t)
        clock.on_content(t)
    sample = Sample(output_tokens=3, output_tokens_source="server")
    clock.fill(sample)
    assert (sample.headers_ms, sample.ttfb_ms, sample.ttft_ms, sample.e2e_ms) == (10.0, 20.0, 30.0, 60.0)
    assert sample.itl_ms == [10.0, 20.0]
    assert sample.tpot_ms == pytest.approx((60 - 30) / 2)


def test_chunk_count_is_a_flagged_fallback_for_output_tokens():
    clock = StreamClock()
    for t in (clock.t0 + 1_000_000, clock.t0 + 2_000_000):
        clock.on_bytes(t)
        clock.on_content(t)
    sample = Sample()
    clock.fill(sample)
    assert (sample.output_tokens, sample.output_tokens_source) == (2, "chunks")


def test_a_request_without_tokens_has_no_ttft_or_tpot():
    clock = StreamClock()
    clock.on_headers()
    sample = Sample()
    clock.fill(sample)
    assert sample.ttft_ms is None and sample.tpot_ms is None and sample.itl_ms == []
    assert sample.e2e_ms == sample.headers_ms


def test_first_failure_wins_and_kinds_are_a_closed_set():
    sample = Sample()
    sample.fail("http", "HTTP 500: boom")
    sample.fail("incomplete", "consequence")
    assert (sample.ok, sample.error_kind, sample.error) == (False, "http", "HTTP 500: boom")
    with pytest.raises(ValueError):
        Sample().fail("weird", "x")
    assert "timeout" in ERROR_KINDS


def test_to_dict_is_asdict_without_the_deep_copy() -> None:
    from dataclasses import asdict

    sample = Sample(run_id="r", itl_ms=[1.5, 2.5], text="hi", connect_ms=0.3, connection_reused=False)
    values = sample.to_dict()
    assert values == asdict(sample) and list(values) == list(asdict(sample))
    values["itl_ms"].append(9.0)
    assert sample.itl_ms == [1.5, 2.5]  # the one list is a copy
