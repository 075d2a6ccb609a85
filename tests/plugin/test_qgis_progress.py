"""scripts/qgis_progress.py: qgis_process's text output as lines, progress and results."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import REPO

SCRIPT = REPO / "scripts" / "qgis_progress.py"
#: What qgis_process 3.22 prints (shortened): a dot every 2.5 %, the percentage every 10 %,
#: glued to the messages, which come whole with their newline; metric lines as the plugin logs.
OUTPUT = (
    "----------------\nInputs\n----------------\n\nAREA:\tarea.tif\n\n"
    "0...10Evaluating 251 predicted against 251 reference buildings; pixels of 0.13182 m.\n"
    ".20val_iou (epoch 1): 0.5\n"
    "Epoch 1/15: val IoU 0.5 (best 0.5 at epoch 1), 3.5 s\n"
    "..30...40.307 windows in 12.5 s.\n"
    "...90Reading...\n...100 - done.\n\n----------------\nResults\n----------------\n\n"
    "OBJECT_F1:\t0.25\nOUTPUT:\t/tmp/out put.gpkg\nWINDOWS:\t12\n"
)


@pytest.fixture(scope="module")
def module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("qgis_progress", SCRIPT)
    assert spec and spec.loader
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_ticks_become_progress_and_messages_stay_whole(module: ModuleType) -> None:
    events = list(module.events([OUTPUT]))
    assert [v for k, v in events if k == "progress"] == [0, 10, 20, 30, 40, 90, 100]
    messages = [v for k, v in events if k == "message"]
    assert "Evaluating 251 predicted against 251 reference buildings; pixels of 0.13182 m." in (
        messages
    )
    assert "Epoch 1/15: val IoU 0.5 (best 0.5 at epoch 1), 3.5 s" in messages
    assert "307 windows in 12.5 s." in messages  # numbers not after a dot are text
    assert "Reading..." in messages  # dots inside a message are text


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_chunks_cut_anywhere_give_the_same_events(module: ModuleType, size: int) -> None:
    chunks = [OUTPUT[i : i + size] for i in range(0, len(OUTPUT), size)]
    assert list(module.events(chunks)) == list(module.events([OUTPUT]))


def test_events_come_before_the_stream_ends(module: ModuleType) -> None:
    def stream():  # stops the test if the filter waited for the end
        yield "0...10Epoch 1/15: loss 0.5\n"
        raise AssertionError("read past the first message")

    first = module.events(stream())
    assert next(first) == ("progress", 0)
    assert next(first) == ("progress", 10)
    assert next(first) == ("message", "Epoch 1/15: loss 0.5")


def test_command_echoes_and_writes_results(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(results)],
        input=OUTPUT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "  [ 40%]" in done.stdout.splitlines() and "Epoch 1/15" in done.stdout
    assert "val_iou (epoch 1)" not in done.stdout  # the epoch line already says it
    assert json.loads(results.read_text()) == {
        "OBJECT_F1": 0.25,
        "OUTPUT": "/tmp/out put.gpkg",
        "WINDOWS": 12,
    }
