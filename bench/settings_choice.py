"""How well the validation windows choose a model's seed settings (issue 29).

    .venv/bin/python bench/settings_choice.py MODEL:SEED [MODEL:SEED ...] [--out FILE.json]

For each Banepa model trained by ``bench/accuracy.py --recipe default --set seed=SEED``:
detects once on the Banepa test chips (probability kept), then vectorizes and scores that
probability with every setting of train's grid (building thresholds 0.4 and 0.5 x
:data:`engine.training.postprocess.SEEDS` x ``EROSIONS`` x ``MIN_SEEDS``). It rebuilds the
model's validation windows (the same split and weights as in training) and scores the same
grid there: window by window over all buildings (as training did until 2026-12-04), over the
buildings the windows show whole (as training does since), and with the adjacent windows
stitched into blocks, so that fewer buildings are cut by a window's edge; and on the model's own
training windows (not augmented), ten times as many. Prints, per model, the test
building F1 of the settings chosen each way, the best the grid reaches on the test chips (an
oracle), and the correlation of each validation score with the test score over the grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from accuracy import DATA, DATASETS, _config, _labels  # noqa: E402

from engine.config import DetectConfig, EvaluateConfig, VectorizeConfig  # noqa: E402
from engine.detect import detect  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.geo.rasters import resolve_raster  # noqa: E402
from engine.models.modelfile import load_model, read_spec  # noqa: E402
from engine.polygons.instances import InstanceSettings  # noqa: E402
from engine.scoring.buildings import (  # noqa: E402
    IGNORE,
    reference_instances,
)
from engine.train import Loop, build_training_data, resolve_encoder_weights  # noqa: E402
from engine.training.postprocess import (  # noqa: E402
    EROSIONS,
    MIN_SEEDS,
    SEEDS,
    ValidationWindows,
)
from engine.training.state import seed_everything  # noqa: E402
from engine.vectorize import vectorize  # noqa: E402

GRID = [InstanceSettings(*s) for s in itertools.product((0.4, 0.5), SEEDS, EROSIONS, MIN_SEEDS)]


def key(s: InstanceSettings) -> str:
    return f"{s.threshold} {s.seed_threshold} {s.seed_erosion_m} {s.min_seed_m2}"


def scores_on_test(model: str, work: Path) -> dict[str, Any]:
    """Test building F1, merges and splits with the model's own settings (``own``) and with
    every setting of the grid."""
    data = DATASETS["banepa"]
    labels = str(_labels(data))
    raster = resolve_raster(str(DATA / data.test), workdir=str(work))
    prob, out = work / "probability.tif", work / "buildings.gpkg"
    detect(DetectConfig(raster, model, str(out), keep_probability=str(prob)), NullProgress())

    def score() -> list[float]:
        s = evaluate(EvaluateConfig(str(out), labels, area=str(prob)), NullProgress())
        return [s["object_f1"], s["merges"], s["splits"]]

    found = {"own": score()}
    for s in GRID:
        config = VectorizeConfig(
            str(prob),
            str(out),
            overwrite=True,
            threshold=s.threshold,
            seed_threshold=s.seed_threshold,
            seed_erosion_m=s.seed_erosion_m,
            min_seed_m2=s.min_seed_m2,
        )
        vectorize(config, NullProgress())
        found[key(s)] = score()
    return found


def validation(
    model: str, seed: int, work: Path
) -> tuple[ValidationWindows, ValidationWindows, ValidationWindows]:
    """The model's validation windows as training scored them; the same stitched into
    blocks of adjacent windows (each block held as one window); and
    its training windows (not augmented) scored the same way as the validation windows."""
    (work / "train").mkdir(exist_ok=True)
    config = _config(DATASETS["banepa"], "default", [f"seed={seed}"], work)
    # the decoder widths the model was made with (--decoder-channels)
    config = replace(config, decoder_channels=read_spec(model).decoder_channels)
    config = replace(config, encoder_weights=resolve_encoder_weights(config))
    seed_everything(seed)
    data = build_training_data(config, NullProgress())
    loop = Loop(config, data, torch.device("cpu"))
    loop.bare.load_state_dict(load_model(model)[0].state_dict())
    windows = loop.validate(NullProgress()).windows
    assert windows is not None, "a model with a separation class"
    refs, tile = data.val.windows[: len(windows)], config.tile_size
    blocks = ValidationWindows(windows.pixel_size_m, limit=len(refs))
    for raster in sorted({r.raster for r in refs}):
        idx = [i for i, r in enumerate(refs) if r.raster == raster]
        rows = np.array([refs[i].row // tile for i in idx])
        cols = np.array([refs[i].col // tile for i in idx])
        cells = np.zeros((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1), int)
        cells[rows - rows.min(), cols - cols.min()] = np.arange(len(idx)) + 1
        groups, n = ndimage.label(cells > 0)
        for g in range(1, n + 1):
            rr, cc = np.nonzero(groups == g)
            shape = ((rr.max() - rr.min() + 1) * tile, (cc.max() - cc.min() + 1) * tile)
            prob = np.zeros((2, *shape), np.float32)
            mask = np.full(shape, IGNORE, np.uint8)
            for r, c in zip(rr, cc, strict=True):
                i = idx[cells[r, c] - 1]
                y, x = (r - rr.min()) * tile, (c - cc.min()) * tile
                prob[:, y : y + tile, x : x + tile] = windows.probabilities[i]
                mask[y : y + tile, x : x + tile] = data.val.read(i)[1]
            blocks.probabilities.append(prob)
            blocks.references.append(reference_instances(mask))
            blocks.valid.append(mask != IGNORE)
    return windows, blocks, training_windows(loop, data)


@torch.no_grad()
def training_windows(loop: Loop, data: Any) -> ValidationWindows:
    """The model's probabilities on its own training windows, unaugmented."""
    found = ValidationWindows(loop.resolution_m, limit=len(data.train))
    data.train.augment = False
    loop.bare.eval()
    separation = loop.classes.index("separation")
    for start in range(0, len(data.train), 16):
        items = [data.train[i] for i in range(start, min(start + 16, len(data.train)))]
        image = torch.stack([x[0] for x in items]).contiguous(memory_format=torch.channels_last)
        prob = torch.sigmoid(loop.bare(image).float()).numpy()
        found.add(prob[:, 0], prob[:, separation], torch.stack([x[1] for x in items]).numpy())
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="MODEL.pt:SEED")
    parser.add_argument("--out", type=Path, default=None, help="Write every score as JSON.")
    args = parser.parse_args()
    record: dict[str, Any] = {}
    for item in args.models:
        model, seed = item.rsplit(":", 1)
        with tempfile.TemporaryDirectory(prefix="footprint-settings-") as tmp:
            test = scores_on_test(model, Path(tmp))
            windows, blocks, trained_on = validation(model, int(seed), Path(tmp))
        val = {key(s): windows.score(s).f1 for s in GRID}
        whole = {key(s): windows.score(s, whole=True).f1 for s in GRID}
        stitched = {key(s): blocks.score(s).f1 for s in GRID}
        on_train = {key(s): trained_on.score(s).f1 for s in GRID}
        record[model] = {
            "test": test,
            "windows": val,
            "whole": whole,
            "stitched": stitched,
            "train": on_train,
        }
        keys = [key(s) for s in GRID]
        f1 = np.array([test[k][0] for k in keys])
        line = [f"{Path(model).stem}: its own settings {test['own'][0]:.3f}"]
        choices = (("windows", val), ("whole", whole), ("stitched", stitched), ("train", on_train))
        for name, scores in choices:
            v = np.array([scores[k] for k in keys])
            pick = keys[int(np.argmax(v))]
            line.append(
                f"{name} pick ({pick}) {test[pick][0]:.3f}, merges/splits"
                f" {test[pick][1]}/{test[pick][2]}, corr {np.corrcoef(v, f1)[0, 1]:.2f}"
            )
        line.append(f"test oracle {f1.max():.3f} ({keys[int(np.argmax(f1))]})")
        print(" | ".join(line), flush=True)
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
