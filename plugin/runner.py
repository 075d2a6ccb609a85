"""Run the engine in its own process and follow its JSON events.

``run_engine("predict", [...], feedback)`` starts ``<python> -m engine predict --events json
...`` in the plugin folder, maps each event line to ``feedback`` (progress, log, metric),
cancels the process when the user cancels, and returns the engine's result dict or raises a
:class:`EngineError` (a ``QgsProcessingException``) carrying the engine's message.
Nothing here imports torch, rasterio, geopandas or the engine itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from qgis.core import QgsProcessingException, QgsProcessingFeedback

from .childenv import child_environment
from .envlock import engine_use
from .settings import PLUGIN_DIR, engine_python

#: Packages the engine environment must import, with the names pip knows them by.
ENGINE_PACKAGES = {
    "rasterio": "rasterio",
    "geopandas": "geopandas",
}
#: What runs models: the full engine's (torch with segmentation-models-pytorch) or the
#: detection-only engine's (ONNX Runtime); an engine needs one of them.
MODEL_PACKAGES = {
    "torch": "torch",
    "segmentation_models_pytorch": "segmentation-models-pytorch",
    "onnxruntime": "onnxruntime",
}
HOW_TO = (
    "Footprint needs its engine: open Plugins > Footprint > Settings and click Install engine"
    " (a private Python environment in your QGIS profile: Full, about 6.4 GB, or Detection"
    " only, about 770 MB; a few minutes). If you manage your own environment, choose its Python"
    " interpreter there, or set the FOOTPRINT_PYTHON environment variable, to a Python with"
    " rasterio, geopandas and torch with segmentation-models-pytorch (or onnxruntime for"
    " detection only) (developers: bash scripts/setup.sh in {folder})."
)
POLL_SECONDS = 0.1
TERMINATE_GRACE_SECONDS = 3.0
CHECK_TIMEOUT_SECONDS = 180.0

_CHECK_SCRIPT = """
import importlib, json, sys
NAMES = sys.argv[1:]
out = {"python": sys.version.split()[0], "missing": {}, "versions": {}}
for name in NAMES:
    try:
        out["versions"][name] = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as err:
        out["missing"][name] = f"{type(err).__name__}: {err}"
if "torch" in out["versions"]:
    import torch
    out["cuda"] = torch.cuda.is_available()
print(json.dumps(out))
"""

_checked: dict[str, str] = {}


class EngineError(QgsProcessingException):
    """The engine failed or could not run; the message says what was wrong and what to do."""


class EngineCheckError(EngineError):
    """The engine interpreter is missing or lacks a package."""


class EngineCancelledError(EngineError):
    """The user cancelled; the engine stopped and left no output."""


def engine_environment() -> dict[str, str]:
    """The environment for the engine: ours minus QGIS's Python/GDAL/PROJ paths, unbuffered."""
    return child_environment(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")


def _how_to() -> str:
    return HOW_TO.format(folder=PLUGIN_DIR)


def resolve_interpreter(python: str) -> str:
    """``python`` with ``~`` expanded; a bare command name (``python3``) looked up on PATH."""
    python = os.path.expanduser(python.strip())
    if python and os.sep not in python and not os.path.isfile(python):
        return shutil.which(python) or python
    return python


def _check_executable(python: str) -> None:
    if not python:
        raise EngineCheckError("No engine interpreter was found. " + _how_to())
    if not os.path.isfile(python):
        raise EngineCheckError(f"The engine interpreter {python} does not exist. " + _how_to())
    if not os.access(python, os.X_OK):
        raise EngineCheckError(f"The engine interpreter {python} is not executable. " + _how_to())


def _run_check(python: str) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [python, "-c", _CHECK_SCRIPT, *ENGINE_PACKAGES, *MODEL_PACKAGES],
            cwd=str(PLUGIN_DIR),
            env=engine_environment(),
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_SECONDS,
            **_platform_options(),
        )
    except subprocess.TimeoutExpired as err:
        raise EngineCheckError(
            f"The engine interpreter {python} did not answer within {err.timeout:.0f} s. "
            + _how_to()
        ) from err
    except OSError as err:
        raise EngineCheckError(
            f"Cannot run the engine interpreter {python} ({err}). " + _how_to()
        ) from err
    try:
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return report
    except (ValueError, IndexError) as err:
        detail = done.stderr.strip()[-500:] or f"exit code {done.returncode}"
        raise EngineCheckError(
            f"The engine interpreter {python} does not run a Python check ({detail}). " + _how_to()
        ) from err


def check_engine(python: str, use_cache: bool = True) -> str:
    """Check that ``python`` imports the engine's packages; return a one-line summary.

    Successful checks are cached per interpreter path for the session.

    Raises:
        EngineCheckError: the interpreter is missing, not executable, or lacks a package
            (named in the message), with how to set up the engine environment.
    """
    python = resolve_interpreter(python)
    if use_cache and python in _checked:
        return _checked[python]
    _check_executable(python)
    report = _run_check(python)
    missing = {k: v for k, v in report.get("missing", {}).items() if k in ENGINE_PACKAGES}
    found = report["versions"]
    full = "torch" in found and "segmentation_models_pytorch" in found
    if not full and "onnxruntime" not in found:  # no way to run a model
        wanted = ("torch", "segmentation_models_pytorch") if "torch" in found else MODEL_PACKAGES
        missing.update({k: report["missing"][k] for k in wanted if k in report["missing"]})
    pip_names = {**ENGINE_PACKAGES, **MODEL_PACKAGES}
    if missing:
        names = ", ".join(pip_names[name] for name in missing)
        reasons = "; ".join(f"{name}: {why}" for name, why in missing.items())
        raise EngineCheckError(
            f"The engine interpreter {python} lacks {names} ({reasons}). " + _how_to()
        )
    versions = ", ".join(f"{pip_names[k]} {v}" for k, v in found.items())
    if not full:
        kind = "detection only (ONNX Runtime; training and export need the full engine)"
    else:
        kind = "CUDA available" if report.get("cuda") else "no CUDA (CPU only)"
    summary = f"{python}: Python {report['python']}, {versions}; {kind}"
    _checked[python] = summary
    return summary


def _platform_options() -> dict[str, Any]:
    """Hide the console window of the child on Windows."""
    if sys.platform == "win32":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {}


def _group_options() -> dict[str, Any]:
    """Start the engine in a process group of its own, so that cancel reaches every process
    it started (Dask workers, data loaders) and nothing of QGIS's: a new session on POSIX, a
    new process group on Windows."""
    if sys.platform == "win32":
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    return {"start_new_session": True}


def run_engine(
    command: str,
    args: Sequence[str],
    feedback: QgsProcessingFeedback | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """Run ``<python> -m engine <command> --events json <args>``; return its result dict.

    The interpreter is ``python`` or :func:`engine_python` and is checked first. Metric
    events are also returned under the key ``"metric_events"`` (name, value, step).

    Raises:
        EngineCheckError: no usable engine interpreter (with how to set one up).
        EngineCancelledError: ``feedback`` was cancelled; the engine was stopped.
        EngineError: the engine failed; the message is the engine's.
    """
    interpreter = resolve_interpreter(python if python is not None else engine_python())
    check_engine(interpreter)
    argv = [interpreter, "-m", "engine", command, "--events", "json", *map(str, args)]
    with engine_use(interpreter):  # the installer leaves this environment in place meanwhile
        return follow_process(argv, str(PLUGIN_DIR), feedback)


def follow_process(
    argv: Sequence[str], cwd: str, feedback: QgsProcessingFeedback | None = None
) -> dict[str, Any]:
    """Start ``argv`` in ``cwd``, follow its JSON event lines, return its result dict.

    Raises:
        EngineCancelledError, EngineError: as :func:`run_engine`.
    """
    feedback = feedback if feedback is not None else QgsProcessingFeedback()
    feedback.pushCommandInfo(" ".join(shlex.quote(a) for a in argv))
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=engine_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **_group_options(),
        )
    except OSError as err:
        raise EngineCheckError(f"Cannot start the engine ({err}). " + _how_to()) from err
    events = _EventFollower(feedback)
    try:
        cancelled = events.follow(proc)
    finally:
        if proc.poll() is None:  # an exception in the loop: never leave the engine running
            stop_process(proc)
        events.close(proc)
    if cancelled:
        raise EngineCancelledError("Cancelled: the engine was stopped and wrote no output.")
    return events.outcome(proc.returncode)


def stop_process(proc: subprocess.Popen[str], grace: float | None = None) -> None:
    """Ask ``proc`` and its process group to stop (SIGTERM: the engine cleans up), kill them
    after ``grace`` seconds; whatever of the group outlives ``proc`` is killed too.

    ``grace`` defaults to :data:`TERMINATE_GRACE_SECONDS`. On Windows only ``proc`` itself
    is terminated.
    """
    kill = getattr(signal, "SIGKILL", signal.SIGTERM)
    if proc.poll() is not None:
        _signal_group(proc, kill)
        return
    grace = TERMINATE_GRACE_SECONDS if grace is None else grace
    try:
        if not _signal_group(proc, signal.SIGTERM):
            proc.terminate()  # Windows, or a process without a group of its own
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except OSError:
        pass
    _signal_group(proc, kill)


def _signal_group(proc: subprocess.Popen[str], signum: int) -> bool:
    """Send ``signum`` to the process group that ``proc`` leads (POSIX, started with
    :func:`_group_options`); False when it leads none (Windows, another group: QGIS's own
    is never signalled)."""
    if sys.platform == "win32":
        return False
    try:
        if os.getpgid(proc.pid) != proc.pid:
            return False
    except ProcessLookupError:
        pass  # the leader is reaped; its group may live on under the same id
    except OSError:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)
    return True


def _pump(stream: Any, tag: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    """Reader thread: put each line of ``stream`` on ``lines``, then ``(tag, None)`` at the end."""
    try:
        for line in stream:
            lines.put((tag, line.rstrip("\r\n")))
    except (OSError, ValueError):
        pass
    finally:
        lines.put((tag, None))


class _EventFollower:
    """Maps the engine's event lines to a feedback and remembers result, error and stderr."""

    def __init__(self, feedback: QgsProcessingFeedback) -> None:
        self.feedback = feedback
        self.result: dict[str, Any] | None = None
        self.error: tuple[str, str] | None = None
        self.metrics: list[dict[str, Any]] = []
        self.stderr: deque[str] = deque(maxlen=40)
        self.readers: list[threading.Thread] = []

    def follow(self, proc: subprocess.Popen[str]) -> bool:
        """Read until both streams end; return True when cancelled (the process is stopped)."""
        lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        for tag, stream in (("out", proc.stdout), ("err", proc.stderr)):
            reader = threading.Thread(target=_pump, args=(stream, tag, lines), daemon=True)
            reader.start()
            self.readers.append(reader)
        open_streams = 2
        while open_streams:
            if self.feedback.isCanceled():
                stop_process(proc)
                return True
            try:
                tag, line = lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            elif tag == "out":
                self.handle(line)
            elif line.strip():
                self.stderr.append(line)
        deadline = time.monotonic() + TERMINATE_GRACE_SECONDS
        while proc.poll() is None:  # streams closed: the process is exiting
            if self.feedback.isCanceled() or time.monotonic() > deadline:
                stop_process(proc)
                return bool(self.feedback.isCanceled())
            time.sleep(0.02)
        return False

    def close(self, proc: subprocess.Popen[str]) -> None:
        """Close the pipes once the readers are done (a stray grandchild may hold them open)."""
        for reader in self.readers:
            reader.join(timeout=0.5)
        if not any(reader.is_alive() for reader in self.readers):
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def handle(self, line: str) -> None:
        """Map one stdout line; lines that are not events go to the debug log."""
        try:
            event = json.loads(line)
            kind = event["event"]
        except (ValueError, TypeError, KeyError):
            if line.strip():
                self.feedback.pushDebugInfo(line)
            return
        if kind == "progress":
            self.feedback.setProgress(float(event.get("percent", 0.0)))
        elif kind == "log":
            self.feedback.pushInfo(str(event.get("message", "")))
        elif kind == "metric":
            self.metric(event)
        elif kind == "result":
            self.result = dict(event.get("result") or {})
        elif kind == "error":
            self.error = (str(event.get("type", "Error")), str(event.get("message", "")))
        else:
            self.feedback.pushDebugInfo(line)

    def metric(self, event: dict[str, Any]) -> None:
        """Show a metric as ``name: value`` and keep it."""
        name, value, step = str(event.get("name")), event.get("value"), event.get("step")
        self.metrics.append({"name": name, "value": value, "step": step})
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
        where = f" (epoch {step})" if step is not None else ""
        self.feedback.pushInfo(f"{name}{where}: {shown}")

    def outcome(self, code: int | None) -> dict[str, Any]:
        """The result on success, else an :class:`EngineError` with the engine's message."""
        if code == 0 and self.result is not None:
            if self.metrics:
                self.result.setdefault("metric_events", self.metrics)
            return self.result
        if self.error is not None:
            kind, message = self.error
            raise EngineError(f"{kind}: {message}")
        tail = "\n".join(self.stderr) or "no message"
        if code is not None and code < 0:
            name = _signal_name(-code)
            raise EngineError(
                f"The engine process was killed by {name} (out of memory?); last output:\n{tail}"
            )
        if code == 0:
            raise EngineError(f"The engine finished without a result; its output:\n{tail}")
        raise EngineError(f"The engine failed (exit code {code}):\n{tail}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
