"""Progress reporting and cancellation shared by every engine function.

Engine functions take a :class:`Progress`: they report ``set_progress`` (0-100), ``log``
lines and ``metric`` values, and call :func:`check_canceled` once per window or batch.
:class:`JsonEvents` prints one JSON object per line for the QGIS plugin; :class:`TerminalProgress`
draws a progress bar on a terminal.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Protocol, TextIO

from engine.errors import CancelledError

#: Set by the CLI's signal handlers (SIGINT, SIGTERM); every Progress reports it.
CANCEL = threading.Event()


class Progress(Protocol):
    """What engine functions use to report progress and to learn about cancellation."""

    def set_progress(self, percent: float) -> None:
        """Report overall progress in percent (0-100)."""

    def is_canceled(self) -> bool:
        """True once the user asked to stop."""

    def log(self, message: str) -> None:
        """Report one human-readable line."""

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """Report a named number (a score, a loss), optionally at a step (epoch)."""


def check_canceled(progress: Progress) -> None:
    """Raise :class:`CancelledError` when the user asked to stop."""
    if progress.is_canceled():
        raise CancelledError()


class NullProgress:
    """Reports nothing; cancelled only through :data:`CANCEL`."""

    def set_progress(self, percent: float) -> None:
        """Ignore progress."""

    def is_canceled(self) -> bool:
        """True once :data:`CANCEL` is set."""
        return CANCEL.is_set()

    def log(self, message: str) -> None:
        """Ignore log lines."""

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """Ignore metrics."""


class RecordingProgress(NullProgress):
    """Keeps everything it is told (for tests and for callers that want the log)."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.percents: list[float] = []
        self.messages: list[str] = []
        self.metrics: list[tuple[str, float, int | None]] = []
        self._cancel_after = cancel_after
        self._checks = 0

    def set_progress(self, percent: float) -> None:
        """Record progress."""
        self.percents.append(percent)

    def is_canceled(self) -> bool:
        """Cancel after ``cancel_after`` checks when that was asked for."""
        self._checks += 1
        if self._cancel_after is not None and self._checks > self._cancel_after:
            return True
        return super().is_canceled()

    def log(self, message: str) -> None:
        """Record a log line."""
        self.messages.append(message)

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record a metric."""
        self.metrics.append((name, value, step))


class JsonEvents(NullProgress):
    """Writes one JSON event per line: progress, log, metric, result, error."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._last_percent = -1.0

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event line and flush it at once."""
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def set_progress(self, percent: float) -> None:
        """Emit progress when it moved by at least 0.1 percent."""
        percent = max(0.0, min(100.0, float(percent)))
        if abs(percent - self._last_percent) >= 0.1 or percent >= 100.0:
            self._last_percent = percent
            self.emit("progress", percent=round(percent, 2))

    def log(self, message: str) -> None:
        """Emit a log line."""
        self.emit("log", message=message)

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """Emit a metric."""
        self.emit("metric", name=name, value=float(value), step=step)


class TerminalProgress(NullProgress):
    """A one-line progress bar on stderr, with log lines printed above it."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self._stream = stream or sys.stderr
        self._width = width
        self._start = time.monotonic()
        self._shown = False
        self._is_tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._last = -1.0

    def set_progress(self, percent: float) -> None:
        """Redraw the bar (on a terminal) or print every 10 percent (elsewhere)."""
        percent = max(0.0, min(100.0, float(percent)))
        if self._is_tty:
            filled = int(self._width * percent / 100)
            bar = "#" * filled + "-" * (self._width - filled)
            elapsed = time.monotonic() - self._start
            self._stream.write(f"\r[{bar}] {percent:5.1f}% {elapsed:6.0f}s")
            self._stream.flush()
            self._shown = True
        elif int(percent // 10) != int(self._last // 10):
            self._stream.write(f"{percent:5.1f}%\n")
        self._last = percent

    def log(self, message: str) -> None:
        """Print a line above the bar."""
        if self._shown:
            self._stream.write("\r" + " " * (self._width + 20) + "\r")
            self._shown = False
        self._stream.write(message + "\n")
        self._stream.flush()

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """Ignore metrics: commands also log a readable summary of them."""


class SubProgress:
    """Maps 0-100 of one stage onto ``start``-``end`` of a parent's progress."""

    def __init__(self, parent: Progress, start: float, end: float) -> None:
        self._parent = parent
        self._start = start
        self._end = end

    def set_progress(self, percent: float) -> None:
        """Report scaled progress to the parent."""
        self._parent.set_progress(self._start + (self._end - self._start) * percent / 100.0)

    def is_canceled(self) -> bool:
        """Ask the parent."""
        return self._parent.is_canceled()

    def log(self, message: str) -> None:
        """Forward a log line."""
        self._parent.log(message)

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """Forward a metric."""
        self._parent.metric(name, value, step)
