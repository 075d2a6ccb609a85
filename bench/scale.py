"""Scale and speed benchmark: detect on rasters of growing size, against the model's bare speed
and against a naive whole-raster pipeline, side by side in one run.

    .venv/bin/python bench/scale.py [--model FILE] [--sizes 2048 4096 8192 16384]
        [--repeat 3] [--repeat-up-to 8192] [--naive-up-to N] [--window W] [--batch-size B]
        [--margin M]
        [--device cpu|cuda] [--runtime auto|torch|onnx] [--precision auto|fp32|bf16]
        [--tag NAME] [--skip-training] [--stages]

For each size it writes a GeoTIFF of that many pixels a side (the Banepa test mosaic repeated:
real roofs, so the vectorizer has real work) and runs, ``--repeat`` times in turn (sizes up
to ``--repeat-up-to``; larger ones once), each in its own process so that peak resident
memory is the process's own:

- ``detect`` (``python -m engine detect``): wall time, peak memory, and its *rate*: raster
  pixels per second of detect's own timer (from the opened model to the written layer);
- the model's *bare* rate: window pixels per second of the model alone on tensors already in
  memory, on windows and batches of the size detect chose, as many at once as detect predicts
  (its result says), on the same device, just before and just after detect (it drifts on a
  shared machine; the mean is used).
  *detect / bare* is detect's rate over the bare rate: 1 would mean that the overlap of the
  windows and everything besides the model cost nothing;
- the *naive* pipeline (:func:`naive_detect`: read the whole raster, predict non-overlapping
  windows of the same size and batch, as many at once, into a full-size array, polygonise the
  whole mask at once: fast, seams, no separation of touching buildings) up to
  ``--naive-up-to`` pixels; *detect / naive* is the ratio of their wall times (both
  processes start the same way).

With ``--stages``, the building stages of detect (seeds + watershed, polygons) are also timed
alone, one after another in one thread (``bench/profile_detect.py``'s loop, in a process of its
own, once per size; it predicts on the CPU, so it is slow beside ``--device cuda``), and
*wall / (model + stages)* is detect's wall time over the bare model's time on detect's windows
plus those stages: what orchestration and start-up add (the runtimes issue aims at 1.15x at
most).

``--device cuda`` runs everything on the GPU (and refuses clearly where there is none).
``--runtime`` and ``--precision`` go to detect, the bare model and the naive pipeline alike
(``onnx`` runs the model's ``.onnx`` export beside it: ``python -m engine export``).

Without ``--model`` it trains ``train``'s default model for 1 epoch on the Banepa train chips
(the weights only shape how many polygons there are; the network is the default). Figures are
appended to docs/BENCHMARKS.md with the hardware and command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import DATA, DATASETS, _hardware, append_record  # noqa: E402

PYTHON = sys.executable


def make_raster(path: Path, side: int, source: str) -> None:
    """A ``side`` x ``side`` tiled GeoTIFF of ``source`` repeated, written strip by strip."""
    with rasterio.open(source) as src:
        image = src.read(list(range(1, min(src.count, 3) + 1)))
        profile = {
            "driver": "GTiff",
            "width": side,
            "height": side,
            "count": image.shape[0],
            "dtype": image.dtype,
            "crs": src.crs,
            "transform": src.transform,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
        }
    h, w = image.shape[1:]
    reps = -(-side // w)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, side, h):
            strip = np.tile(image, (1, 1, reps))[:, : min(h, side - row), :side]
            dst.write(strip, window=Window(0, row, side, strip.shape[1]))


def _hwm_kib(pid: int) -> int:
    """The process's peak resident memory so far (``VmHWM``, KiB; 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_kib(pid: int, peaks: dict[int, int]) -> int:
    """Resident memory (KiB) of ``pid`` and its descendants now; records each one's VmHWM in
    ``peaks``."""
    import psutil

    total = 0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_info().rss // 1024
            except psutil.Error:
                continue
            peaks[process.pid] = max(peaks.get(process.pid, 0), _hwm_kib(process.pid))
    except psutil.Error:
        pass
    return total


def _run(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command in its own process: wall time, that process's peak resident memory (MiB)
    and the ``result`` of its last JSON line; with workers (Dask) also the peak of the whole
    process tree at once (``tree_peak_mib``) and each worker's own peak (``worker_peak_mib``).

    Peak memory is ``VmHWM`` polled every 20 ms (it only grows, and is the new program's own:
    ``ru_maxrss`` would include this parent's memory at fork)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, env=env)
        peak, tree, peaks = 0, 0, dict[int, int]()
        while proc.poll() is None:
            peak = max(peak, _hwm_kib(proc.pid))
            tree = max(tree, _tree_kib(proc.pid, peaks))
            time.sleep(0.02)
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        lines, error = out.read().splitlines(), err.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{error[-3000:]}")
    result: dict[str, Any] = {}
    for line in reversed(lines):
        if line.startswith("{"):
            event = json.loads(line)
            result = event.get("result", event)
            break
    workers = [v for k, v in peaks.items() if k != proc.pid]
    return {
        "wall_s": wall,
        "peak_mib": peak / 1024,
        "tree_peak_mib": tree / 1024,
        "worker_peak_mib": max(workers, default=0) / 1024,
        "result": result,
    }


def naive_detect(
    raster: str,
    model_file: str,
    output: str,
    tile: int,
    batch_size: int,
    device: str,
    streams: int = 1,
    runtime: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """The naive way: whole raster in memory, non-overlapping ``tile`` windows into a full-size
    probability array (``streams`` batches at once, as detect), the whole mask polygonised at
    once."""
    from concurrent.futures import ThreadPoolExecutor

    import geopandas as gpd
    from rasterio import features
    from shapely.geometry import shape

    from engine.geo.normalize import normalize

    start = time.monotonic()
    network, spec = _network(model_file, device, runtime, precision)
    with rasterio.open(raster) as src:
        image = src.read(list(spec.bands))
        transform, crs = src.transform, src.crs
    _, h, w = image.shape
    prob = np.zeros((h, w), np.float32)
    stats = _stats(spec)

    def batches() -> Any:
        batch: list[tuple[int, int, np.ndarray]] = []
        for row in range(0, h, tile):
            for col in range(0, w, tile):
                window = np.zeros((image.shape[0], tile, tile), image.dtype)
                part = image[:, row : row + tile, col : col + tile]
                window[:, : part.shape[1], : part.shape[2]] = part
                valid = np.ones((tile, tile), bool)
                batch.append((row, col, normalize(window, valid, stats)))
                if len(batch) == batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def predict(batch: list[tuple[int, int, np.ndarray]]) -> None:
        stack = np.stack([b[2] for b in batch])
        probs = network.probabilities(stack, False)
        for (row, col, _), p in zip(batch, probs, strict=True):
            rh, cw = min(tile, h - row), min(tile, w - col)
            prob[row : row + rh, col : col + cw] = p[0, :rh, :cw]

    with network.sharing(streams), ThreadPoolExecutor(streams) as pool:
        list(pool.map(predict, batches()))
    mask = (prob >= spec.threshold).astype(np.uint8)
    shapes = features.shapes(mask, mask=mask.astype(bool), transform=transform)
    frame = gpd.GeoDataFrame(geometry=[shape(g) for g, _ in shapes], crs=crs)
    frame.to_file(output, driver="GPKG")
    return {"buildings": len(frame), "seconds": time.monotonic() - start}


def _network(model_file: str, device: str, runtime: str, precision: str) -> Any:
    """The network detect would open (engine.inference.network), as detect prepares it."""
    from engine.events import NullProgress
    from engine.inference.network import open_network

    return open_network(model_file, runtime, device, precision, NullProgress())


def _stats(spec: Any) -> Any:
    from engine.geo.normalize import BandStats

    return BandStats(tuple(spec.mean), tuple(spec.std))


def bare_throughput(
    model_file: str,
    window: int,
    batch_size: int,
    device: str,
    streams: int = 1,
    seconds: float = 10.0,
    runtime: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Window pixels per second of the model alone on random tensors already in memory,
    ``streams`` batches at once (each on its share of torch's threads, as detect)."""
    from concurrent.futures import ThreadPoolExecutor

    network, spec = _network(model_file, device, runtime, precision)
    x = np.random.default_rng(0).standard_normal(
        (batch_size, spec.in_channels, window, window), dtype=np.float32
    )

    def loop(until: float) -> int:
        done = 0
        while time.monotonic() < until:
            network.probabilities(x, False)
            done += batch_size
        return done

    with network.sharing(streams), ThreadPoolExecutor(streams) as pool:
        warm = [pool.submit(network.probabilities, x, False) for _ in range(streams)]
        for future in warm:
            future.result()  # warm-up: one batch each
        start = time.monotonic()
        done = sum(pool.map(loop, [start + seconds] * streams))
        rate = done * window * window / (time.monotonic() - start)
    return {"pixels_per_s": rate, "window": window, "batch": batch_size, "streams": streams}


def make_mask(path: Path, side: int, spacing: int = 24) -> int:
    """A ``side`` x ``side`` uint8 mask of rectangular buildings every ``spacing`` px (some
    pairs touching, some L-shaped), written strip by strip; returns how many there are."""
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32645",
        "transform": rasterio.transform.from_origin(330_000, 3_060_000, 0.5, 0.5),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    count = 0
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, side, spacing * 16):
            strip = np.zeros((min(spacing * 16, side - row), side), np.uint8)
            for y in range(2, strip.shape[0] - spacing + 2, spacing):
                for x in range(2, side - spacing + 2, spacing):
                    hh, ww = rng.integers(6, spacing - 3, size=2)
                    strip[y : y + hh, x : x + ww] = 1
                    if rng.random() < 0.3:  # an L-shape
                        strip[y : y + hh // 2, x + ww // 2 : x + ww] = 0
                    count += 1
            dst.write(strip, 1, window=Window(0, row, side, strip.shape[0]))
    return count


def vectorize_speed(side: int, work: Path) -> dict[str, Any]:
    """Polygons per second: engine vectorize vs gdal_polygonize on the same mask."""
    mask = work / "mask.tif"
    made = make_mask(mask, side)
    ours = _run(
        [PYTHON, "-m", "engine", "vectorize", "--raster", str(mask), "--output",
         str(work / "ours.gpkg"), "--threshold", "0.5", "--simplify", "0", "--min-area-m2", "0",
         "--hole-area-m2", "0", "--events", "json"]
    )  # fmt: skip
    gdal = _run(
        ["gdal_polygonize.py", "-q", str(mask), "-mask", str(mask), "-f", "GPKG",
         str(work / "gdal.gpkg")]
    )  # fmt: skip
    import pyogrio

    n_gdal = pyogrio.read_info(str(work / "gdal.gpkg"))["features"]
    n_ours = int(ours["result"]["buildings"])
    mask.unlink()
    return {
        "side": side,
        "made": made,
        "ours": {**ours, "polygons": n_ours, "per_s": n_ours / ours["wall_s"]},
        "gdal": {**gdal, "polygons": n_gdal, "per_s": n_gdal / gdal["wall_s"]},
    }


def training_speed(batches: int = 24) -> dict[str, Any]:
    """Samples per second of the training loop vs the bare model's forward + backward + step on
    random tensors of the same shape (``train``'s defaults on the Banepa train chips)."""
    import torch

    from engine.config import TrainConfig
    from engine.events import NullProgress
    from engine.geo.rasters import resolve_raster
    from engine.train import Loop
    from engine.training.dataset import build_training_data

    data = DATASETS["banepa"]
    with tempfile.TemporaryDirectory(prefix="footprint-scale-") as tmp:
        vrt = resolve_raster(str(DATA / data.train), workdir=tmp)
        labels = sorted(DATA.glob(data.labels))[0]
        config = TrainConfig(rasters=(vrt,), labels=(str(labels),), output=f"{tmp}/m.pt")
        built = build_training_data(config, NullProgress())
        loop = Loop(config, built, torch.device("cpu"))
        samples, start = 0, time.monotonic()
        loop.model.train()
        for n, (image, mask) in enumerate(loop.train_loader):
            if n == batches:
                break
            loss, _, _, _ = loop._forward(image, mask)
            loop.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loop.optimizer.step()
            samples += len(image)
        loop_rate = samples / (time.monotonic() - start)
        x = torch.randn(config.batch_size, len(built.bands), config.tile_size, config.tile_size)
        classes = len(built.classes)
        shape = (config.batch_size, classes, config.tile_size, config.tile_size)
        y = (torch.rand(*shape) > 0.5).float()
        valid = torch.ones_like(y[:, :1], dtype=torch.bool)
        samples, start = 0, time.monotonic()
        for _ in range(batches):
            loss = loop.loss(loop.model(x), y, valid)
            loop.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loop.optimizer.step()
            samples += len(x)
        bare_rate = samples / (time.monotonic() - start)
    return {"loop": loop_rate, "bare": bare_rate, "batch": config.batch_size}


def quick_model(path: Path) -> None:
    """``train``'s default model, 1 epoch on the Banepa train chips: the default network and
    batch, in a few minutes (the scale benchmark measures speed, not scores)."""
    from engine.config import TrainConfig
    from engine.events import NullProgress
    from engine.geo.rasters import resolve_raster
    from engine.train import train

    data = DATASETS["banepa"]
    with tempfile.TemporaryDirectory(prefix="footprint-scale-") as tmp:
        vrt = resolve_raster(str(DATA / data.train), workdir=tmp)
        labels = sorted(DATA.glob(data.labels))[0]
        train(TrainConfig((vrt,), (str(labels),), str(path), epochs=1), NullProgress())


def sweep(model: Path, args: Any, work: Path) -> list[dict]:
    """Detect, the bare model and the naive pipeline on each size, in turn; rasters are
    deleted after use."""
    source = resolve_test_mosaic(work)
    rows = []
    me = [PYTHON, str(Path(__file__))]
    for side in sorted(args.sizes):
        raster = work / f"scene_{side}.tif"
        make_raster(raster, side, source)
        repeats = args.repeat if side <= args.repeat_up_to else 1
        for run in range(repeats):
            detect = [PYTHON, "-m", "engine", "detect", "--raster", str(raster), "--model",
                      str(model), "--output", str(work / f"d_{side}.gpkg"), "--overwrite",
                      "--device", args.device, "--runtime", args.runtime, "--precision",
                      args.precision, "--events", "json"]  # fmt: skip
            if args.window:
                detect += ["--window", str(args.window)]
            if args.batch_size:
                detect += ["--batch-size", str(args.batch_size)]
            if args.margin is not None:
                detect += ["--margin", str(args.margin)]
            row: dict[str, Any] = {"side": side, "run": run + 1}
            # the bare model just before and just after detect, on detect's windows and batch
            # (its first run says which): it drifts by ~20% between samples on a shared machine
            sizes = rows[-1]["detect"]["result"] if rows else None
            if sizes is None:
                row["detect"] = _run(detect)
                sizes = row["detect"]["result"]
            bare = [*me, "--bare", str(model), str(sizes["window"]), str(sizes["batch_size"]),
                    args.device, str(sizes["streams"]), args.runtime, args.precision]  # fmt: skip
            row["bare"] = _run(bare)
            if "detect" not in row:
                row["detect"] = _run(detect)
            row["bare_after"] = _run(bare)
            if side <= args.naive_up_to:
                result = row["detect"]["result"]
                row["naive"] = _run(
                    [*me, "--naive", str(raster), str(model), str(work / f"n_{side}.gpkg"),
                     str(result["window"]), str(result["batch_size"]), args.device,
                     str(result["streams"]), args.runtime, args.precision]
                )  # fmt: skip
            if args.stages and run == 0:
                row["stages"] = _run([*me, "--stages", str(raster), str(model), args.precision])
            rows.append(row)
            print(json.dumps(row, default=str), flush=True)
        raster.unlink()
    return rows


def workers_compare(model: Path, side: int, work: Path) -> list[dict[str, Any]]:
    """Detect on one ``side`` raster in one process and on 1 and 2 local Dask workers, one
    torch thread each (``OMP_NUM_THREADS=1``), in turn."""
    raster = work / f"workers_{side}.tif"
    make_raster(raster, side, resolve_test_mosaic(work))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for workers in (0, 1, 2):
        run = _run(
            [PYTHON, "-m", "engine", "detect", "--raster", str(raster), "--model", str(model),
             "--output", str(work / f"w{workers}.gpkg"), "--overwrite", "--dask-workers",
             str(workers), "--events", "json"], env=env,
        )  # fmt: skip
        rows.append({"workers": workers, **run})
        print(json.dumps(rows[-1], default=str), flush=True)
    raster.unlink()
    return rows


def workers_record(rows: list[dict[str, Any]], side: int) -> str:
    """Markdown for the 1 vs 2 workers comparison."""
    base = rows[0]["wall_s"]
    lines = [
        f"Dask: detect on a {side} x {side} raster, one torch thread per process"
        " (`OMP_NUM_THREADS=1`):",
        "",
        "| workers | wall (s) | speed-up vs one process | buildings | peak, main process (MiB)"
        " | peak, each worker (MiB) | peak, all processes at once (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        name = "none (one process)" if row["workers"] == 0 else str(row["workers"])
        lines.append(
            f"| {name} | {row['wall_s']:.1f} | {base / row['wall_s']:.2f} |"
            f" {row['result'].get('buildings')} | {row['peak_mib']:.0f} |"
            f" {row['worker_peak_mib']:.0f} | {row['tree_peak_mib']:.0f} |"
        )
    return "\n".join([*lines, ""])


def resolve_test_mosaic(work: Path) -> str:
    """The Banepa test chips as one GeoTIFF (the scene's texture)."""
    from engine.geo.rasters import resolve_raster

    data = DATASETS["banepa"]
    if not (DATA / data.test).is_dir():
        raise SystemExit(f"Banepa data not found at {DATA / data.test}: set FOOTPRINT_DATA")
    vrt = resolve_raster(str(DATA / data.test), workdir=str(work))
    out = work / "texture.tif"
    with rasterio.open(vrt) as src:
        profile = {**src.profile, "driver": "GTiff", "count": 3}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read([1, 2, 3]))
    return str(out)


def _figures(row: dict) -> dict[str, float]:
    """The derived figures of one run (see the module doc)."""
    d = row["detect"]
    r = d["result"]
    pixels = row["side"] ** 2
    bare = sum(row[k]["result"]["pixels_per_s"] for k in ("bare", "bare_after")) / 2
    out = {
        "wall": d["wall_s"],
        "seconds": r["seconds"],
        "rate": pixels / r["seconds"],
        "bare": bare,
        "ratio": pixels / r["seconds"] / bare,
        "overlap": r["predicted_megapixels"] * 1e6 / pixels,
        "model_share": r["predicted_megapixels"] * 1e6 / bare / r["seconds"],
        "peak": d["peak_mib"],
    }
    if "stages" in row:
        seconds = row["stages"]["result"]["seconds"]
        out["stages"] = seconds["instances"] + seconds["polygons"]
    if "naive" in row:
        out["naive_wall"] = row["naive"]["wall_s"]
        out["naive_peak"] = row["naive"]["peak_mib"]
        out["vs_naive"] = d["wall_s"] / row["naive"]["wall_s"]
    return out


def _spread(values: list[float], digits: int = 2) -> str:
    """``mean`` or ``mean (min-max)`` of repeated runs."""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def record(rows: list[dict], vec: dict | None, training: dict | None, args: Any) -> str:
    """Markdown for docs/BENCHMARKS.md: one line per size, repeated runs as mean (min-max)."""
    first = rows[0]["detect"]["result"]
    lines = [
        f"### scale: {args.tag} ({time.strftime('%Y-%m-%d')})",
        "",
        f"- command: `python bench/scale.py {' '.join(sys.argv[1:])}`",
        f"- hardware: {_hardware()}",
        f"- model: {args.model_name}; detect's windows {first['window']} px, batch"
        f" {first['batch_size']}, {first['streams']} at once, device {first['device']},"
        f" runtime {first.get('runtime', 'torch')}, precision {first.get('precision', 'fp32')}",
        "- rate: raster pixels per second of detect's own timer; bare: window pixels per second"
        " of the model alone on windows of the same size, batch and number at once in memory"
        " (mean of just before and just after); naive: the same windows, batch and number at"
        " once, without overlap; overlap: window pixels predicted / raster pixels; model"
        " share: the time the bare model needs for detect's windows / detect's time;"
        " detect/naive: wall times (same start-up)",
        "",
        "| side (px) | runs | detect wall (s) | rate (Mpx/s) | bare (Mpx/s) | detect / bare"
        " | overlap | model share | peak RSS (MiB) | naive wall (s) | detect / naive"
        " | naive peak (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_side: dict[int, list[dict[str, float]]] = {}
    for row in rows:
        by_side.setdefault(row["side"], []).append(_figures(row))
    for side, figs in by_side.items():

        def col(key: str, scale: float = 1.0, digits: int = 2, figs: list = figs) -> str:
            values = [f[key] * scale for f in figs if key in f]
            return _spread(values, digits) if values else "not run"

        lines.append(
            "| "
            + " | ".join(
                [
                    str(side),
                    str(len(figs)),
                    col("wall", digits=1),
                    col("rate", 1e-6, 3),
                    col("bare", 1e-6, 3),
                    col("ratio"),
                    col("overlap"),
                    col("model_share"),
                    col("peak", digits=0),
                    col("naive_wall", digits=1),
                    col("vs_naive"),
                    col("naive_peak", digits=0),
                ]
            )
            + " |"
        )
    for side, figs in by_side.items():
        stages = [f["stages"] for f in figs if "stages" in f]
        if not stages:
            continue
        model_s = [f["overlap"] * side**2 / f["bare"] for f in figs]
        ratios = [f["wall"] / (m + stages[0]) for f, m in zip(figs, model_s, strict=True)]
        lines += [
            "",
            f"{side} px: the building stages alone (seeds + watershed, polygons; one thread)"
            f" {stages[0]:.1f} s; the bare model on detect's windows {_spread(model_s, 1)} s;"
            f" wall / (model + stages) {_spread(ratios)}.",
        ]
    peaks = [max(f["peak"] for f in figs) for figs in by_side.values()]
    if len(peaks) >= 2:
        lines += ["", f"Peak memory, largest vs second-largest size: {peaks[-1] / peaks[-2]:.3f}x."]
    if vec:
        o, g = vec["ours"], vec["gdal"]
        lines += [
            "",
            f"Vectorizing a {vec['side']} x {vec['side']} mask with {vec['made']} buildings:"
            f" engine `vectorize` {o['polygons']} polygons in {o['wall_s']:.1f} s"
            f" ({o['per_s']:.0f}/s, peak {o['peak_mib']:.0f} MiB); `gdal_polygonize.py`"
            f" {g['polygons']} polygons in {g['wall_s']:.1f} s ({g['per_s']:.0f}/s, peak"
            f" {g['peak_mib']:.0f} MiB); ratio engine/GDAL {o['per_s'] / g['per_s']:.2f}.",
        ]
    if training:
        lines += [
            "",
            f"Training (`train`'s defaults, batch {training['batch']}): loop"
            f" {training['loop']:.2f} samples/s vs bare forward+backward+step"
            f" {training['bare']:.2f} samples/s (ratio {training['loop'] / training['bare']:.2f}).",
        ]
    return "\n".join([*lines, ""])


def main() -> int:
    """Command line entry point."""
    if sys.argv[1:2] in (["--naive"], ["--bare"]):
        from engine.heap import tune_allocator

        tune_allocator()  # as the engine's command line does
    if sys.argv[1:2] == ["--naive"]:
        raster, model, out, window, batch, device, streams, runtime, precision = sys.argv[2:11]
        result = naive_detect(
            raster, model, out, int(window), int(batch), device, int(streams), runtime, precision
        )
        print(json.dumps(result))
        return 0
    if sys.argv[1:2] == ["--stages"]:
        from bench.profile_detect import profile

        raster, model, precision = sys.argv[2:5]
        with tempfile.TemporaryDirectory(prefix="footprint-stages-", dir=ROOT / "out") as tmp:
            found = profile(Path(raster), Path(model), None, Path(tmp), precision)
        print(json.dumps(found))
        return 0
    if sys.argv[1:2] == ["--bare"]:
        model, window, batch, device, streams, runtime, precision = sys.argv[2:9]
        sizes = (int(window), int(batch))
        found = bare_throughput(model, *sizes, device, int(streams), 10.0, runtime, precision)
        print(json.dumps(found))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repeat-up-to", type=int, default=8192)
    parser.add_argument("--naive-up-to", type=int, default=16384)
    parser.add_argument("--window", type=int, help="detect's --window (default: its own)")
    parser.add_argument("--batch-size", type=int, help="detect's --batch-size (default: its own)")
    parser.add_argument("--margin", type=int, help="detect's --margin (default: its own)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--vector-side", type=int, default=8192)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument(
        "--stages", action="store_true", help="also time detect's building stages alone"
    )
    parser.add_argument(
        "--workers-side", type=int, default=0, help="also compare 0, 1 and 2 Dask workers here"
    )
    parser.add_argument("--only-workers", action="store_true", help="skip everything else")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    check_device(args.device)
    (ROOT / "out").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="footprint-scale-", dir=ROOT / "out") as tmp:
        work = Path(tmp)
        model = args.model or work / "quick.pt"
        if not args.model:
            quick_model(model)
        if args.only_workers:
            rows = workers_compare(model, args.workers_side, work)
            append_record(
                f"### scale: {args.tag} ({time.strftime('%Y-%m-%d')})\n\n- command: `python"
                f" bench/scale.py {' '.join(sys.argv[1:])}`\n- hardware: {_hardware()}\n\n"
                + workers_record(rows, args.workers_side)
            )
            return 0
        default = "train's default (Lite0 U-Net, ImageNet encoder, separation class), 1 epoch"
        args.model_name = default if not args.model else model.name
        rows = sweep(model, args, work)
        vec = vectorize_speed(args.vector_side, work) if args.vector_side else None
        training = None if args.skip_training else training_speed()
    text = record(rows, vec, training, args)
    append_record(text)
    return 0


def check_device(device: str) -> None:
    """Refuse a CUDA run where there is no GPU, before anything starts."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {device}: no CUDA GPU here (torch.cuda.is_available() is False with torch"
            f" {torch.__version__}); run it on a machine with an NVIDIA GPU, or use --device cpu."
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise SystemExit(f"--device {device}: use cpu or cuda (cuda:N).")


if __name__ == "__main__":
    raise SystemExit(main())
