"""Buildings cut by the area's edge: scores counted whole against cut (issue 29).

    .venv/bin/python bench/edge_scoring.py --areas docs/benchmarks/settings/min_area.json
        starter:NAME [...] banepa:MODEL.pt:PROBABILITY.tif [...] [--work DIR] [--out FILE.json]

Each model's kept test probability is vectorized with the model's seed settings and the
smallest building ``--areas`` (a ``bench/min_area_choice.py`` record) chose for it, then
evaluated twice against its reference on its test area (Banepa: the test chips' extent; a
place left out: its chips' footprint), the edge of its imagery: buildings counted whole where
their representative point lies (evaluate's default), and cut at the area's edge
(``--clip-to-area``: a detection stops at the imagery's edge where the reference goes on).
``starter:NAME``: a model of ``scripts/make_starter_model.py`` in ``--work`` (its left-out
place's z20 chips, or Banepa's test chips); ``banepa:MODEL:PROBABILITY``: a model of
``bench/accuracy.py --recipe default`` and the probability its detection on the Banepa test
chips kept (``detect --keep-probability``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

import make_starter_model as starter  # noqa: E402
from accuracy import DATASETS, _labels  # noqa: E402
from min_area_choice import Test, starter_case, vectorize_with  # noqa: E402

from engine.config import EvaluateConfig  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.models.modelfile import read_spec  # noqa: E402
from engine.polygons.instances import InstanceSettings  # noqa: E402

KEYS = ("object_precision", "object_recall", "object_f1", "merges", "splits", "predicted")


def scores(test: Test, model: Path, min_area_m2: float) -> dict[str, dict[str, float]]:
    """Building scores of ``test``'s probability vectorized with ``model``'s settings at
    ``min_area_m2``, counted whole and cut at the area's edge."""
    prob, labels, area = test
    settings = replace(InstanceSettings.of_model(read_spec(str(model))), min_area_m2=min_area_m2)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="footprint-edge-") as tmp:
        buildings = Path(tmp) / "buildings.gpkg"
        vectorize_with(prob, buildings, settings)
        for name, clip in (("whole", False), ("cut", True)):
            s = evaluate(
                EvaluateConfig(
                    str(buildings), str(labels), area=str(area), resolution=0.15, clip_to_area=clip
                ),
                NullProgress(),
            )
            out[name] = {k: float(s[k]) for k in KEYS} | {"reference": float(s["reference"])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--areas", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/work/runs/starter"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    chosen = json.loads(args.areas.read_text())["models"]
    record: dict[str, Any] = {
        "meta": {
            "command": "bench/edge_scoring.py " + shlex.join(sys.argv[1:]),
            "date": datetime.date.today().isoformat(),
            "hardware": starter.hardware(),
        },
        "models": {},
    }
    for spec in args.models:
        kind, _, rest = spec.partition(":")
        if kind == "starter":
            _, model, tests = starter_case(rest, args.work)
        elif kind == "banepa":
            path, _, prob = rest.partition(":")
            model, p = Path(path), Path(prob)
            tests = {"banepa": (p, _labels(DATASETS["banepa"]), p)}
        else:
            raise SystemExit(f"{spec}: expected starter:NAME or banepa:MODEL:PROBABILITY")
        if str(model) not in chosen:
            raise SystemExit(f"{model}: not in {args.areas}; give the path as it is there")
        area = float(chosen[str(model)]["chosen_m2"])
        row = {name: scores(test, model, area) for name, test in tests.items()}
        record["models"][str(model)] = {"min_area_m2": area, "test": row}
        for name, s in row.items():
            print(
                f"{model.name} {name}: building F1 whole {s['whole']['object_f1']:.3f},"
                f" cut {s['cut']['object_f1']:.3f} (reference {s['whole']['reference']:.0f}"
                f" -> {s['cut']['reference']:.0f})",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
