"""Seconds per training epoch of the README's recipes on this machine, and what explains them.

    .venv/bin/python bench/epoch.py [--models default,compact] [--isa native,avx2] [--tag NAME]

Trains one epoch of each model on the 32 Banepa training chips (one VRT mosaic), the way
`train` runs (the main job's compact U-Net with its settings; the default U-Net resnet18), each
in a fresh process, and prints the epoch's seconds with the CPU facts that explain speed (model,
vector flags, the kernels torch picked, torch threads, cores, cgroup quota). ``--isa avx2`` runs
the same epoch with torch and oneDNN limited to AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2``): on a CPU with AVX-512 this shows what a CPU without it costs.
Appends a record to docs/BENCHMARKS.md. Fails loudly when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import DATA, append_record  # noqa: E402

#: Training options of each recipe (what the README's commands give `train`), one epoch.
MODELS = {
    "default": [],
    "compact": ["--architecture", "compact", "--batch-size", "8", "--lr", "0.01"],
}
ISAS = {"native": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
FACTS = "from engine.models.device import describe_cpu; print(describe_cpu())"


def one_epoch(model: str, isa: str, work: Path) -> dict[str, Any]:
    """Train ``model`` one epoch with ``isa`` kernels in a fresh process; its seconds and CPU."""
    env = {**os.environ, **ISAS[isa]}
    python = sys.executable
    cpu = subprocess.run(
        [python, "-c", FACTS], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    out = work / f"{model}-{isa}.pt"
    command = [
        python,
        "-m",
        "engine",
        "train",
        "--events",
        "quiet",
        "--raster",
        str(work / "train.vrt"),
        "--labels",
        str(DATA / "banepa" / "labels" / "buildings_banepa_osm.geojson"),
        "--output",
        str(out),
        "--epochs",
        "1",
        "--overwrite",
        *MODELS[model],
    ]
    start = time.monotonic()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training {model} ({isa}) failed:\n{done.stderr}")
    history = json.loads((work / f"{model}-{isa}_report" / "history.json").read_text())
    return {
        "model": model,
        "isa": isa,
        "cpu": cpu,
        "epoch_s": history[0]["seconds"],
        "process_s": time.monotonic() - start,
    }


def mosaic(work: Path) -> None:
    """The training chips as one VRT (what the main job trains on)."""
    chips = sorted((DATA / "banepa" / "train" / "oam").glob("*.tif"))
    if not chips:
        raise SystemExit(f"No Banepa training chips under {DATA}: set FOOTPRINT_DATA")
    subprocess.run(
        ["gdalbuildvrt", "-q", str(work / "train.vrt"), *map(str, chips)], check=True, cwd=ROOT
    )


def record(rows: list[dict[str, Any]], tag: str) -> str:
    """Markdown section for docs/BENCHMARKS.md."""
    lines = [
        f"### epoch: {tag} ({time.strftime('%Y-%m-%d')})",
        "",
        f"- command: `python {shlex.join(['bench/epoch.py', *sys.argv[1:]])}`",
        "- one epoch of `train` on the 32 Banepa training chips (the same windows for every row),"
        " 15 epochs take about 15x",
        "",
        "| model | kernels | CPU as torch sees it | s / epoch | 15 epochs |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['isa']} | {row['cpu']} | {row['epoch_s']:.0f}"
            f" | {row['epoch_s'] * 15 / 60:.0f} min |"
        )
    return "\n".join([*lines, ""])


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="default,compact")
    parser.add_argument("--isa", default="native,avx2")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="footprint-epoch-") as folder:
        work = Path(folder)
        mosaic(work)
        for isa in args.isa.split(","):
            for model in args.models.split(","):
                rows.append(one_epoch(model, isa, work))
                print(json.dumps(rows[-1]), flush=True)
    append_record(record(rows, args.tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
