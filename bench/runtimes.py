"""Detection on each runtime and precision: same weights, scores and speed side by side.

For each of torch fp32, torch bf16 (CPU autocast) and ONNX Runtime fp32, with the same model
(a .pt and its ONNX export): detect on the Banepa test area (scores with 95% intervals over its
chips, as bench/accuracy.py), and the bare model's speed on 512-px windows (one window a
call, the runtime's threads; the networks in alternation, median of 5 turns), in one run, so
ratios compare on a shared machine. Writes
docs/benchmarks/runtimes/<tag>.json and prints a table.

    .venv/bin/python bench/runtimes.py --tag cpu-2core [--model M.pt (default: the starter)]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from make_starter_model import BANEPA_TEST, DATA, PLACES, scores  # noqa: E402

from engine.events import NullProgress  # noqa: E402
from engine.geo.rasters import resolve_raster  # noqa: E402
from engine.inference.network import open_network  # noqa: E402
from engine.models.device import describe_cpu  # noqa: E402

#: (runtime, precision) pairs measured.
RUNS = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"))


def bare_speeds(
    models: list[tuple[str, str, str]], rounds: int = 5, seconds: float = 4.0
) -> list[float]:
    """Mpx/s of each (model file, runtime, precision) network alone on 512-px windows, one a
    call: ``rounds`` turns of ``seconds`` each, the networks in alternation (a shared machine
    drifts: every network sees the same moments); the median turn of each."""
    nets = []
    for model, runtime, precision in models:
        network, spec = open_network(model, runtime, "cpu", precision, NullProgress())
        x = np.random.default_rng(0).standard_normal((1, spec.in_channels, 512, 512))
        x = x.astype(np.float32)
        network.probabilities(x, False)  # warm-up
        nets.append((network, x))
    turns: list[list[float]] = [[] for _ in nets]
    for _ in range(rounds):
        for (network, x), found in zip(nets, turns, strict=True):
            with network.sharing(1):
                count, start = 0, time.monotonic()
                while time.monotonic() - start < seconds:
                    network.probabilities(x, False)
                    count += 1
                found.append(count * 512 * 512 / 1e6 / (time.monotonic() - start))
    return [float(np.median(found)) for found in turns]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", required=True)
    parser.add_argument("--model", default=str(ROOT / "resources/models/footprint-starter.pt"))
    parser.add_argument("--work", default="/tmp/footprint-runtimes")
    args = parser.parse_args()
    pt = Path(args.model)
    onnx = pt.with_suffix(".onnx")
    if not onnx.is_file():
        sys.exit(f"{onnx} is missing: python -m engine export --model {pt} --output {onnx}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    test = resolve_raster(str(DATA / BANEPA_TEST), workdir=str(work))
    labels = DATA / PLACES["banepa"][1]
    rows: list[dict[str, Any]] = []
    for runtime, precision in RUNS:
        model = onnx if runtime == "onnx" else pt
        out = work / f"{runtime}-{precision}"
        result = scores(
            test, model, labels, None, DATA / BANEPA_TEST, out,
            runtime=runtime, precision=precision,
        )  # fmt: skip
        import geopandas as gpd

        count = len(gpd.read_file(out / "buildings.gpkg"))
        rows.append({"runtime": runtime, "precision": precision, "buildings": count, **result})
    models = [(str(onnx if r == "onnx" else pt), r, p) for r, p in RUNS]
    for row, speed in zip(rows, bare_speeds(models), strict=True):
        row["bare_mpx_s"] = round(speed, 3)
        s = row["scores"]
        print(
            f"{row['runtime']:6} {row['precision']:5} buildings {row['buildings']:5d} pixel IoU"
            f" {s['pixel_iou']:.4f} building F1 {s['object_f1']:.4f} detect"
            f" {row['detect_s']:.1f} s bare {speed:.2f} Mpx/s",
            flush=True,
        )
    save_record(args.tag, str(pt), rows)


def save_record(tag: str, model: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Write docs/benchmarks/runtimes/<tag>.json: the rows with the date, CPU, model, command
    and ``extra`` fields."""
    record = {
        "tag": tag,
        "date": datetime.date.today().isoformat(),
        "cpu": describe_cpu(),
        "model": model,
        **extra,
        "command": " ".join(["python", *sys.argv]),
        "rows": rows,
    }
    dest = ROOT / "docs" / "benchmarks" / "runtimes" / f"{tag}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"wrote {dest}")
    return dest


if __name__ == "__main__":
    main()
