"""What telling touching buildings apart costs: detect with seeds + watershed against the same
network's contact split, in one run, on rasters of growing size.

    .venv/bin/python bench/split_cost.py MODEL [--sizes 2048 4096 8192] [--split-up-to 8192]
        [--tag NAME]

MODEL has a separation class (e.g. kept by ``bench/accuracy.py --keep-model``). A copy of it
that calls that channel ``contact`` (same weights; detect then splits where it is >= 0.5 and
takes connected pixels, the way older models detect) gives the baseline. For each size (the
Banepa test mosaic repeated, as ``bench/scale.py`` makes it) each detect runs in its own
process: wall time and peak resident memory, alternating the two so machine drift hits both.
The contact-split run is skipped above ``--split-up-to`` (memory at the largest size needs
only the seeds + watershed run). Appends the table to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import _hardware, append_record  # noqa: E402
from bench.scale import PYTHON, _run, make_raster, resolve_test_mosaic  # noqa: E402
from engine.models.modelfile import load_model, save_model  # noqa: E402


def contact_copy(model: Path, out: Path) -> Path:
    """``model`` with its separation channel renamed ``contact`` (threshold 0.5)."""
    network, spec = load_model(str(model), device="cpu")
    if "separation" not in spec.classes:
        raise SystemExit(f"{model} has no separation class ({spec.classes}).")
    classes = tuple("contact" if c == "separation" else c for c in spec.classes)
    save_model(out, network, dataclasses.replace(spec, classes=classes, contact_threshold=0.5))
    return out


def detect_args(raster: Path, model: Path, out: Path) -> list[str]:
    return [
        PYTHON, "-m", "engine", "detect", "--raster", str(raster), "--model", str(model),
        "--output", str(out), "--events", "json",
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--split-up-to", type=int, default=8192)
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    lines = [
        f"### cost of seeds + watershed: {args.tag} ({time.strftime('%Y-%m-%d')})",
        "",
        f"- command: `python bench/split_cost.py {' '.join(sys.argv[1:])}`",
        f"- hardware: {_hardware()}",
        "",
        "| side (px) | seeds + watershed: wall, peak RSS, buildings | contact split: wall,"
        " peak RSS, buildings | time ratio |",
        "| --- | --- | --- | --- |",
    ]
    (ROOT / "out").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="footprint-split-", dir=ROOT / "out") as tmp:
        work = Path(tmp)
        baseline = contact_copy(args.model, work / "contact.pt")
        source = resolve_test_mosaic(work)
        for side in sorted(args.sizes):
            raster = work / f"scene_{side}.tif"
            make_raster(raster, side, source)
            seeds = _run(detect_args(raster, args.model, work / f"s{side}.gpkg"))
            split = None
            if side <= args.split_up_to:
                split = _run(detect_args(raster, baseline, work / f"c{side}.gpkg"))
            raster.unlink()
            cells = [
                str(side),
                f"{seeds['wall_s']:.1f} s, {seeds['peak_mib']:.0f} MiB,"
                f" {seeds['result']['buildings']}",
            ]
            if split:
                cells += [
                    f"{split['wall_s']:.1f} s, {split['peak_mib']:.0f} MiB,"
                    f" {split['result']['buildings']}",
                    f"{seeds['wall_s'] / split['wall_s']:.3f}",
                ]
            else:
                cells += ["not run", "-"]
            lines.append("| " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    lines.append("")
    append_record("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
