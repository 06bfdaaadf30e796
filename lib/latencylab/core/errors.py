"""Every exception latencylab raises, in one family with one root; each class says the CLI's exit status.

`LatencyLabError` is the root: the CLI catches it once, prints its message and exits with its `exit_code`.
`UsageError` (exit 2) is bad input or set-up that the user can fix; the others (exit 1) stop a run or a report
that was set up well. A built-in base beside the family's (ValueError, FileNotFoundError, …) keeps an error
catchable as what it also is.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from latencylab.core.sample import Sample


class LatencyLabError(Exception):
    """The root of every latencylab error; `exit_code` is the CLI's exit status when one ends a command."""

    exit_code: ClassVar[int] = 1


class UsageError(LatencyLabError):
    """Bad input or set-up that the user can fix; the message says what to change: exit 2."""

    exit_code = 2


class StudyError(UsageError, ValueError):
    """A study spec that cannot be used; the message says where and what to change."""


class BaselineError(UsageError, ValueError):
    """A baseline CSV that cannot be read; the message names the file, row and column."""


class BadBaseline(UsageError, ValueError):
    """A baseline that names no scenario of the runs reported (or names one ambiguously)."""


class BadLabel(UsageError, ValueError):
    """A --label that names no run of the report, repeats a name, or cannot be written in a baseline."""


class GGUFError(UsageError):
    """A file that is not a GGUF model we can read."""


class EngineError(UsageError):
    """The embedded engine could not be found, prepared or started; the message says what to do."""


class PreflightError(UsageError):
    """A server the study needs is not usable; the message says which and what to do."""


class RunNotFound(UsageError, FileNotFoundError):
    """A run id with no folder under data/runs/."""


class CorruptRun(UsageError, ValueError):
    """A run.json that is not a run record, or a samples.jsonl with a broken line that is not the last one."""


class RunExists(UsageError, FileExistsError):
    """A run id whose folder already exists: two runs never share one."""


class RunLocked(UsageError):
    """Another process is writing the run right now."""


class RunError(UsageError):
    """A run that cannot be collected (complete already, or without a study)."""


class RunStopped(LatencyLabError, RuntimeError):
    """A run that could not go on (a server that refused a load, unload or pull); samples are kept."""

    def __str__(self) -> str:
        # In __str__, not in the message: a copy made from the message (a pickle) would say it twice.
        return f"{super().__str__()} (the samples so far are kept)"


class ServerError(LatencyLabError):
    """The server said something went wrong (an HTTP error body or an error line in the stream); a timed
    request's backend turns it into a failed sample of error_kind `kind`, the runner anywhere else into
    `RunStopped`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class NotebookFailed(LatencyLabError):
    """A cell of a report notebook raised (papermill's PapermillExecutionError, in one line)."""


class UnknownFigure(LatencyLabError, LookupError):
    """A figure name that the registry of figures (publish/figures.py) does not hold."""


# Outside the family on purpose: a run stopped mid-request is cancellation, not an error. It stays an
# asyncio.CancelledError (a BaseException) so that the cancellation passes every `except Exception` and
# `except LatencyLabError` on its way up (a backend's turns errors into failed samples) to the runner.
class RequestInterrupted(asyncio.CancelledError):
    """The run was stopped while a request was in flight; `sample` holds the times it reached."""

    def __init__(self, sample: Sample) -> None:
        super().__init__("interrupted")
        self.sample = sample
