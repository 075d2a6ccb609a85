"""The runner: engine events to QgsProcessingFeedback, errors, missing engine, cancel."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from footprint.plugin import runner
from footprint.plugin.runner import (
    EngineCancelledError,
    EngineCheckError,
    EngineError,
    check_engine,
    follow_process,
    run_engine,
)

from .conftest import REPO, RecordingFeedback, write_boxes, write_geotiff


def fake_engine(tmp_path: Path, body: str) -> list[str]:
    """Argv of a stand-in engine: a script run by this Python (no torch needed)."""
    script = tmp_path / "fake_engine.py"
    prelude = "import json, os, signal, sys, time\n"
    prelude += "def emit(**event):\n    print(json.dumps(event), flush=True)\n"
    script.write_text(prelude + textwrap.dedent(body))
    return [sys.executable, str(script)]


# --- event mapping, with a stand-in engine -------------------------------------------


def test_events_map_onto_feedback_and_result_is_returned(tmp_path: Path) -> None:
    argv = fake_engine(
        tmp_path,
        """
        print("plain text, not an event", flush=True)
        emit(event="log", message="Reading raster")
        emit(event="progress", percent=12.5)
        emit(event="metric", name="val_iou", value=0.61234, step=3)
        emit(event="progress", percent=100)
        emit(event="surprise", detail=1)
        print("a warning on stderr", file=sys.stderr, flush=True)
        emit(event="result", result={"output": "x.tif", "buildings": 7})
        """,
    )
    feedback = RecordingFeedback()
    result = follow_process(argv, str(tmp_path), feedback)
    assert result == {
        "output": "x.tif",
        "buildings": 7,
        "metric_events": [{"name": "val_iou", "value": 0.61234, "step": 3}],
    }
    assert feedback.progress == [12.5, 100.0]
    assert feedback.infos == ["Reading raster", "val_iou (epoch 3): 0.6123"]
    assert "plain text, not an event" in feedback.debug
    assert any('"surprise"' in line for line in feedback.debug)
    assert feedback.commands and argv[1] in feedback.commands[0]


def test_environment_drops_qgis_python_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/usr/share/qgis/python")
    monkeypatch.setenv("PYTHONHOME", "/nowhere")
    monkeypatch.setenv("FOOTPRINT_MARK", "kept")
    argv = fake_engine(
        tmp_path,
        """
        keys = ("PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED", "FOOTPRINT_MARK")
        emit(event="result", result={k: os.environ.get(k) for k in keys})
        """,
    )
    result = follow_process(argv, str(tmp_path), None)  # feedback None works too
    assert result == {
        "PYTHONPATH": None,
        "PYTHONHOME": None,
        "PYTHONUNBUFFERED": "1",
        "FOOTPRINT_MARK": "kept",
    }


def test_error_event_becomes_exception_with_type_and_message(tmp_path: Path) -> None:
    argv = fake_engine(
        tmp_path,
        """
        emit(event="progress", percent=5)
        emit(event="error", type="RasterError", message="Cannot open a.tif: no such file.")
        print("Error: Cannot open a.tif: no such file.", file=sys.stderr)
        sys.exit(1)
        """,
    )
    with pytest.raises(QgsProcessingException) as info:
        follow_process(argv, str(tmp_path), RecordingFeedback())
    assert isinstance(info.value, EngineError)
    assert str(info.value) == "RasterError: Cannot open a.tif: no such file."


@pytest.mark.parametrize(
    ("body", "expected", "stderr"),
    [
        ("print('Traceback: boom', file=sys.stderr); sys.exit(3)", "exit code 3", "boom"),
        ("print('no result here', file=sys.stderr)", "without a result", "no result here"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL", ""),
    ],
)
def test_failures_without_error_event_report_stderr(
    tmp_path: Path, body: str, expected: str, stderr: str
):
    argv = fake_engine(tmp_path, body)
    with pytest.raises(EngineError) as info:
        follow_process(argv, str(tmp_path), RecordingFeedback())
    assert expected in str(info.value)
    assert stderr in str(info.value)  # what the engine printed before it failed


def _cancel_later(feedback: RecordingFeedback, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, feedback.cancel)
    timer.start()
    return timer


def test_cancel_is_noticed_while_the_engine_is_silent(tmp_path: Path) -> None:
    argv = fake_engine(tmp_path, "time.sleep(60)")
    feedback = RecordingFeedback()
    _cancel_later(feedback, 0.3)
    start = time.monotonic()
    with pytest.raises(EngineCancelledError, match="Cancelled"):
        follow_process(argv, str(tmp_path), feedback)
    assert time.monotonic() - start < 1.5


def test_cancel_kills_an_engine_that_ignores_sigterm(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runner, "TERMINATE_GRACE_SECONDS", 0.5)
    pid_file = tmp_path / "pid"
    argv = fake_engine(
        tmp_path,
        f"""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        emit(event="progress", percent=1)
        time.sleep(60)
        """,
    )
    feedback = RecordingFeedback(cancel_at=1)
    start = time.monotonic()
    with pytest.raises(EngineCancelledError):
        follow_process(argv, str(tmp_path), feedback)
    assert time.monotonic() - start < 3.0
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" in status.read_text()
    except OSError:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
def test_cancel_stops_the_engines_whole_process_group(tmp_path: Path, monkeypatch) -> None:
    """A child of the engine (a Dask worker, a data loader) that even ignores SIGTERM dies
    with it; QGIS's own group is not signalled."""
    monkeypatch.setattr(runner, "TERMINATE_GRACE_SECONDS", 0.5)
    child_pid = tmp_path / "child"
    child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    argv = fake_engine(
        tmp_path,
        f"""
        import subprocess
        kid = subprocess.Popen([sys.executable, "-c", {child!r}])
        open({str(child_pid)!r}, "w").write(str(kid.pid))
        emit(event="progress", percent=1)
        time.sleep(60)
        """,
    )
    with pytest.raises(EngineCancelledError):
        follow_process(argv, str(tmp_path), RecordingFeedback(cancel_at=1))
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 2.0
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(pid), "the engine's child outlived the cancel"


# --- the engine interpreter ---------------------------------------------------------


def test_missing_interpreter_explains_the_set_up(tmp_path: Path) -> None:
    for python, why in [("", "No engine interpreter"), (str(tmp_path / "nope"), "does not exist")]:
        with pytest.raises(EngineCheckError) as info:
            run_engine("predict", [], RecordingFeedback(), python=python)
        message = str(info.value)
        assert why in message
        assert "Install engine" in message and "FOOTPRINT_PYTHON" in message
        assert "bash scripts/setup.sh" in message


def test_interpreter_that_is_not_executable(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("not a program")
    with pytest.raises(EngineCheckError, match="not executable"):
        check_engine(str(fake))


def test_interpreter_without_torch_names_the_missing_package() -> None:
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("this Python has torch, so it cannot stand for an incomplete environment")
    with pytest.raises(EngineCheckError) as info:
        check_engine(sys.executable, use_cache=False)
    message = str(info.value)
    assert re.search(r"lacks [^(]*\btorch\b", message), message  # among the packages named
    assert "bash scripts/setup.sh" in message and "Settings" in message


def test_bare_command_names_are_looked_up_on_path(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "enginepython").write_text("#!/bin/sh\n")
    (tmp_path / "enginepython").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert runner.resolve_interpreter(" enginepython ") == str(tmp_path / "enginepython")
    assert runner.resolve_interpreter("~/py") == str(Path.home() / "py")
    assert runner.resolve_interpreter("no-such-python-here") == "no-such-python-here"


def test_check_engine_summarises_and_caches(engine_python: str) -> None:
    summary = check_engine(engine_python, use_cache=False)
    assert "torch" in summary and "segmentation-models-pytorch" in summary
    start = time.monotonic()
    assert check_engine(engine_python) == summary
    assert time.monotonic() - start < 0.05


# --- the real engine ----------------------------------------------------------------


def test_real_engine_streams_progress_and_log(engine_python: str, tmp_path: Path) -> None:
    raster = write_geotiff(tmp_path / "r.tif", np.zeros((3, 300, 300), np.uint8))
    x0, y0 = 500_010.0, 3_699_900.0
    labels = write_boxes(tmp_path / "b.gpkg", [(x0, y0, x0 + 20, y0 + 50)])
    out = tmp_path / "mask.tif"
    feedback = RecordingFeedback()
    args = ["--raster", raster, "--labels", labels, "--output", out, "--window-size", "64"]
    result = run_engine("rasterize-labels", [str(a) for a in args], feedback)
    assert result["output"] == str(out) and out.is_file()
    assert result["buildings"] == 1 and result["building_pixels"] == 40 * 100
    assert len(feedback.progress) >= 5 and feedback.progress == sorted(feedback.progress)
    assert feedback.progress[-1] == 100.0
    assert any("Rasterizing 1 building" in line for line in feedback.infos)
    assert " -m engine rasterize-labels --events json " in feedback.commands[0]


def test_real_engine_error_carries_the_engine_message(engine_python: str, tmp_path: Path):
    args = ["--raster", str(tmp_path / "missing.tif"), "--model", str(tmp_path / "m.pt")]
    args += ["--output", str(tmp_path / "p.tif")]
    direct = subprocess.run(
        [engine_python, "-m", "engine", "predict", "--events", "json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    error = [json.loads(line) for line in direct.stdout.splitlines() if '"error"' in line][-1]
    with pytest.raises(EngineError) as info:
        run_engine("predict", args, RecordingFeedback())
    assert str(info.value) == f"{error['type']}: {error['message']}"
    assert str(info.value).startswith("ModelFileError: Model file ") and "m.pt" in str(info.value)


def test_cancel_stops_the_engine_quickly_and_leaves_nothing(
    compact_model: Path, tmp_path: Path
) -> None:
    data = np.random.default_rng(0).integers(0, 255, (3, 2048, 2048), dtype=np.uint8)
    raster = write_geotiff(tmp_path / "big.tif", data)
    model = compact_model
    out = tmp_path / "prob.tif"
    args = ["--raster", str(raster), "--model", str(model), "--output", str(out)]
    args += ["--margin", "8", "--batch-size", "2", "--device", "cpu"]
    feedback = RecordingFeedback()
    cancelled_at: list[float] = []

    def cancel_soon(progress: float) -> None:
        if progress > 0 and not cancelled_at:
            cancelled_at.append(time.monotonic() + 0.5)
            threading.Timer(0.5, feedback.cancel).start()

    feedback.progressChanged.connect(cancel_soon)
    with pytest.raises(EngineCancelledError):
        run_engine("predict", args, feedback)
    stopped = time.monotonic() - cancelled_at[0]
    print(f"engine stopped {stopped:.2f} s after cancel")
    assert stopped < 2.5, f"engine took {stopped:.2f} s to stop"
    assert max(feedback.progress) < 100.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]


def _report(versions: dict[str, str]) -> dict[str, Any]:
    """A check report of an environment with exactly the packages ``versions`` names."""
    names = ("rasterio", "geopandas", "torch", "segmentation_models_pytorch", "onnxruntime")
    missing = {n: "ModuleNotFoundError" for n in names if n not in versions}
    return {"python": "3.11.7", "missing": missing, "versions": versions}


def test_a_detection_only_engine_passes_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime instead of torch is an engine (detection only), said in the summary; an
    environment with neither, or torch without smp, is not."""
    base = {"rasterio": "1.4.4", "geopandas": "1.2.0"}
    reports = {
        "light": _report({**base, "onnxruntime": "1.32.0"}),
        "none": _report(base),
        "half": _report({**base, "torch": "2.14.1"}),
    }
    monkeypatch.setattr(runner, "_check_executable", lambda python: None)
    monkeypatch.setattr(runner, "resolve_interpreter", lambda python: python)
    monkeypatch.setattr(runner, "_run_check", lambda python: reports[python])
    summary = check_engine("light", use_cache=False)
    assert "onnxruntime 1.32.0" in summary and "detection only" in summary
    with pytest.raises(EngineCheckError, match="lacks torch, segmentation-models-pytorch, onnx"):
        check_engine("none", use_cache=False)
    with pytest.raises(EngineCheckError, match=r"lacks segmentation-models-pytorch \("):
        check_engine("half", use_cache=False)
