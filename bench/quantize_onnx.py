"""int8 ONNX Runtime: does static quantisation keep the scores, and is it faster here?

Quantises an exported model (default: the starter's ONNX export) with ONNX Runtime's static
quantisation (QDQ, weights int8 per channel, activations uint8), calibrated on windows of the
Banepa *train* chips only (what detect feeds the network there, normalised as detect does),
then detects with the fp32 and the int8 model on the Banepa test area (scores with 95%
intervals over its chips, as bench/accuracy.py) and times both networks alone on 512-px
windows in alternation (bench/runtimes.py's ``bare_speeds``). Prints a table and writes
docs/benchmarks/runtimes/<tag>.json.

    .venv/bin/python bench/quantize_onnx.py --tag int8-epyc [--model M.onnx] [--windows 32]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from make_starter_model import BANEPA_TEST, DATA, PLACES, scores  # noqa: E402
from runtimes import bare_speeds, save_record  # noqa: E402

from engine.config import DetectConfig  # noqa: E402
from engine.detect import detect  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.geo.rasters import resolve_raster  # noqa: E402
from engine.inference.onnxnet import OnnxNetwork  # noqa: E402


def calibration_windows(model: Path, work: Path, limit: int) -> list[np.ndarray]:
    """The first ``limit`` windows (1 x C x 512 x 512, normalised) that detect feeds the
    network on the Banepa train chips."""
    seen: list[np.ndarray] = []
    original = OnnxNetwork.probabilities

    def recording(self: OnnxNetwork, batch: np.ndarray, tta: bool) -> np.ndarray:
        for window in batch:
            if len(seen) < limit:
                seen.append(np.array(window[None], dtype=np.float32))
        return original(self, batch, tta)

    train = resolve_raster(str(DATA / PLACES["banepa"][0]), workdir=str(work))
    config = DetectConfig(train, str(model), str(work / "calibration.gpkg"), window=512)
    OnnxNetwork.probabilities = recording  # type: ignore[method-assign]
    try:
        detect(dataclasses.replace(config, overwrite=True), NullProgress())
    finally:
        OnnxNetwork.probabilities = original  # type: ignore[method-assign]
    return seen


def quantize(model: Path, out: Path, windows: list[np.ndarray], work: Path) -> None:
    """Static QDQ int8 quantisation of ``model`` calibrated on ``windows``; Footprint's
    metadata copied over."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            self.items = iter([{name: w} for w in windows])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    source = onnx.load(str(model))
    name = source.graph.input[0].name
    prepared = work / "prepared.onnx"
    with contextlib.chdir(work):  # the pre-processing leaves temporary files in the cwd
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Reader(name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    quantized = onnx.load(str(out))
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(source.metadata_props)
    onnx.save(quantized, str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", required=True)
    parser.add_argument("--model", default=str(ROOT / "resources/models/footprint-starter.onnx"))
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--work", default="/tmp/footprint-int8")
    args = parser.parse_args()
    fp32, work = Path(args.model).absolute(), Path(args.work).absolute()
    work.mkdir(parents=True, exist_ok=True)
    int8 = work / "int8.onnx"
    windows = calibration_windows(fp32, work, args.windows)
    quantize(fp32, int8, windows, work)
    test = resolve_raster(str(DATA / BANEPA_TEST), workdir=str(work))
    labels = DATA / PLACES["banepa"][1]
    rows: list[dict[str, Any]] = []
    for label, model in (("fp32", fp32), ("int8", int8)):
        result = scores(test, model, labels, None, DATA / BANEPA_TEST, work / label)
        rows.append({"model": label, "bytes": model.stat().st_size, **result})
    speeds = bare_speeds([(str(fp32), "onnx", "fp32"), (str(int8), "onnx", "fp32")])
    for row, speed in zip(rows, speeds, strict=True):
        row["bare_mpx_s"] = round(speed, 3)
        s = row["scores"]
        print(
            f"{row['model']:5} pixel IoU {s['pixel_iou']:.4f} building F1 {s['object_f1']:.4f}"
            f" detect {row['detect_s']:.1f} s bare {speed:.2f} Mpx/s"
            f" size {row['bytes'] / 2**20:.1f} MiB",
            flush=True,
        )
    save_record(args.tag, str(fp32), rows, calibration_windows=len(windows))


if __name__ == "__main__":
    main()
