import asyncio
import importlib
import inspect
import os
import pickle
import pkgutil
import signal

import pytest
from papermill.exceptions import PapermillExecutionError

import latencylab
from latencylab import cli
from latencylab.core import errors
from latencylab.core.errors import (
    LatencyLabError,
    NotebookFailed,
    RequestInterrupted,
    RunStopped,
    ServerError,
    StudyError,
    UsageError,
)
from latencylab.core.sample import Sample
from latencylab.publish import render


def _exceptions_of(module):
    return [c for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, BaseException) and c.__module__ == module.__name__]


def test_every_exception_of_the_package_is_defined_in_errors():
    elsewhere = []
    for info in pkgutil.walk_packages(latencylab.__path__, "latencylab."):
        module = importlib.import_module(info.name)
        if module is not errors:
            elsewhere += [f"{module.__name__}.{c.__name__}" for c in _exceptions_of(module)]
    assert elsewhere == []


def test_one_root_and_a_request_interrupted_that_stays_a_cancellation():
    family = _exceptions_of(errors)
    assert len(family) > 10
    assert [c for c in family if not issubclass(c, LatencyLabError)] == [RequestInterrupted]
    # asyncio's cancellation must pass every `except Exception` between the request and the runner
    assert issubclass(RequestInterrupted, asyncio.CancelledError) and not issubclass(RequestInterrupted, Exception)
    assert RequestInterrupted(Sample(seq=7)).sample.seq == 7


@pytest.mark.parametrize("error, code", [
    (StudyError("workload.requests: must be 1 or more"), 2),
    (RunStopped("run r stopped: pull nope: file does not exist"), 1),
    (ServerError("http", "HTTP 500: boom"), 1),
    (NotebookFailed("ValueError: bad (in notebook cell 3; the executed notebook is out.ipynb)"), 1),
])
def test_the_cli_exits_with_each_errors_own_status_and_one_line(monkeypatch, capsys, error, code):
    def fail(args):
        raise error

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # main() installs its own
    monkeypatch.setattr(cli, "cmd_runs", fail)
    try:
        assert cli.main(["runs"]) == code
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert capsys.readouterr().err == f"latencylab: error: {error}\n"
    assert isinstance(error, UsageError) == (code == 2)


def test_a_stopped_run_says_its_samples_are_kept_once_even_when_pickled():
    stopped = RunStopped("run r stopped: no model")
    assert str(stopped) == "run r stopped: no model (the samples so far are kept)"
    assert str(pickle.loads(pickle.dumps(stopped))) == str(stopped)


def test_a_failed_notebook_cell_is_a_notebook_failed_in_one_line(monkeypatch, tmp_path):
    def fail(*args, **kwargs):
        raise PapermillExecutionError(cell_index=2, exec_count=3, source="x", ename="ValueError",
                                      evalue="parameter run_ids must be a list", traceback=["…"])

    monkeypatch.setattr(render.papermill, "execute_notebook", fail)
    with pytest.raises(NotebookFailed) as info:
        render.execute(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {})
    assert str(info.value) == ("ValueError: parameter run_ids must be a list (in notebook cell 3; the executed "
                               f"notebook is {tmp_path / 'out.ipynb'})")
    assert isinstance(info.value.__cause__, PapermillExecutionError)


def test_a_ctrl_c_while_an_asyncio_step_runs_cancels_its_tasks_and_is_raised_once_the_step_is_out():
    """As nbclient runs a cell: a task awaited and a poll no one awaits. Raised inside the loop, the interrupt left
    both pending; cancelled, each ends there and then, and the interrupt comes after (issue 32)."""
    loop = asyncio.new_event_loop()
    left: list[asyncio.Task[None]] = []

    async def cell() -> None:
        left.append(asyncio.ensure_future(asyncio.sleep(3600)))  # the liveness poll
        reply = asyncio.ensure_future(asyncio.sleep(3600))
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        await reply

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(KeyboardInterrupt), render._interrupts_cancel_the_loop():
            loop.run_until_complete(cell())
        loop.run_until_complete(asyncio.sleep(0))  # a cancellation is delivered when the loop next runs
        assert left[0].cancelled() and not asyncio.all_tasks(loop)
        assert {s: signal.getsignal(s) for s in handlers} == handlers
    finally:
        loop.close()


def test_inside_a_running_loop_such_as_a_notebook_s_kernel_the_signal_handlers_are_left_alone():
    async def inside() -> bool:
        before = signal.getsignal(signal.SIGINT)
        with render._interrupts_cancel_the_loop():
            return signal.getsignal(signal.SIGINT) is before

    assert asyncio.run(inside())
