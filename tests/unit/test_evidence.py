"""A sample's state from the probe before it and the server's load time, and llama-server's derived load."""

from __future__ import annotations

import pytest

from latencylab.collect.evidence import classify_state, derive_load_ms
from latencylab.core.sample import Sample


@pytest.mark.parametrize(("resident", "changed", "load_ms", "state"), [
    (None, False, None, "unknown"),  # a server that cannot say whether the model was loaded
    (False, False, 5.0, "cold"),  # not resident when it arrived, whatever the load time says
    (True, True, 300.0, "reload"),  # resident, runner options changed, and the server reports a real load
    (True, True, 8.0, "warm"),  # options changed, but 8 ms is the scheduler's bookkeeping (< 20 ms), no load
    (True, True, None, "reload"),  # options changed and no load figure to say otherwise
    (True, False, 400.0, "warm"),  # resident with the same options
])
def test_state_from_the_probe_and_the_load_time(resident, changed, load_ms, state):
    assert classify_state(resident, changed, load_ms) == state


def test_llama_servers_load_is_ttft_less_the_prompt_with_no_decode_step():
    cold = Sample(state="cold", ttft_ms=550.0, prompt_eval_ms=130.0, eval_ms=300.0, output_tokens=32)
    derive_load_ms(cold)
    assert (cold.load_ms, cold.load_ms_source) == (420.0, "derived")  # 550 − 130; the first token takes no step
    warm = Sample(state="warm", ttft_ms=60.0, prompt_eval_ms=50.0)
    derive_load_ms(warm)
    assert (warm.load_ms, warm.load_ms_source) == (0.0, "probe")
    reported = Sample(state="cold", ttft_ms=550.0, prompt_eval_ms=130.0, load_ms=380.0, load_ms_source="server")
    derive_load_ms(reported)
    assert (reported.load_ms, reported.load_ms_source) == (380.0, "server")  # the server's own figure stays
