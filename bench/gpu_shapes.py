"""What each model call of detect costs, by batch shape, and what the polygonizing threads
give: detect run several times in one process on one raster, every call of the model timed.

    python bench/gpu_shapes.py MODE DEVICE RASTER MODEL RUNS

MODE ``timed`` runs detect as it is; ``padded`` fills every batch to 17 windows of 1024 px
with zeros before the model (one shape for every call; what the uniform plan of
:class:`engine.geo.windows.PredictionPlan` now does on a GPU, with mirrored pixels instead of
zeros). RUNS is a comma-separated list of runs, each ``auto-NAME`` (the engine's number of
polygonizing threads) or ``N-NAME`` (N threads), e.g. ``auto-cold,auto-warm,1-warm``. One
JSON line per run: wall time, buildings, the model's total time and each call's seconds by
batch shape. It prints and records nothing else; docs/BENCHMARKS.md quotes its output.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.heap import tune_allocator  # noqa: E402
from engine.models.device import fit_threads_to_cpu  # noqa: E402

tune_allocator()
fit_threads_to_cpu()

import engine.detect as det  # noqa: E402
import engine.inference.torchnet as pred  # noqa: E402
from engine.config import DetectConfig  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.inference.sizing import polygon_workers  # noqa: E402
from engine.models.modelfile import load_model  # noqa: E402

FULL_BATCH, FULL_WINDOW = 17, 1024
calls: list[tuple[list[int], float]] = []
model_call = pred.predict_probabilities


def timed(
    model: Any, batch: np.ndarray, device: Any, tta: bool = False, bf16: bool = False
) -> np.ndarray:
    start = time.perf_counter()
    out = model_call(model, batch, device, tta)
    calls.append((list(batch.shape), round(time.perf_counter() - start, 4)))
    return out


def padded(
    model: Any, batch: np.ndarray, device: Any, tta: bool = False, bf16: bool = False
) -> np.ndarray:
    n, c, h, w = batch.shape
    full = np.zeros((max(n, FULL_BATCH), c, FULL_WINDOW, FULL_WINDOW), np.float32)
    full[:n, :, :h, :w] = batch
    start = time.perf_counter()
    out = model_call(model, full, device, tta)[:n, :, :h, :w]
    calls.append((list(batch.shape), round(time.perf_counter() - start, 4)))
    return out


def main() -> int:
    mode, device_name, raster, model_file, runs = sys.argv[1:6]
    pred.predict_probabilities = padded if mode == "padded" else timed  # type: ignore[assignment]
    device = torch.device(device_name)
    model, spec = load_model(model_file, device=device_name)
    for run in runs.split(","):
        calls.clear()
        auto = polygon_workers(pred.torch_network(model, spec, device))
        workers = auto if run.startswith("auto") else int(run.split("-")[0])
        det.polygon_workers = lambda d, n=workers: n  # type: ignore[assignment]
        out = f"/tmp/gpu_shapes_{mode}_{run}.gpkg"
        cfg = DetectConfig(raster=raster, model=model_file, output=out, overwrite=True)
        start = time.perf_counter()
        result = det.detect_with_model(cfg, model, spec, NullProgress(), device)
        wall = time.perf_counter() - start
        shapes: dict[str, list[float]] = {}
        for shape, seconds in calls:
            shapes.setdefault(str(shape), []).append(seconds)
        line = {
            "mode": mode, "device": device_name, "run": run, "workers": workers,
            "wall": round(wall, 2), "buildings": result["buildings"],
            "batch": result["batch_size"], "window": result["window"],
            "model_s": round(sum(s for _, s in calls), 3), "calls": len(calls), "shapes": shapes,
        }  # fmt: skip
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
