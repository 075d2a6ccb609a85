"""Damaged inputs for every command: generated, seeded, run in-process.

For each input kind (GeoTIFF, VRT, JPEG with ``.aux.xml``, GeoJSON, GeoPackage, Shapefile,
model file) a small valid file is made and damaged in every way of :data:`DAMAGES` (truncated
at several offsets, bytes flipped, header zeroed, empty, a folder in its place, a text file,
valid content under another extension). Every command that takes that kind runs on each
(``engine.cli.main``, in this process) and the case is *handled* when it ends either

- with exit code 0 and its output written (some damage leaves a file readable), or
- with exit code 1 and an error that names the damaged file,

and never with a traceback, an "internal error", or a partial output left behind.

:data:`SAME_FILE_CASES` name an input as an output (with ``--overwrite``) for every command
and input kind (raster file, a chip of a folder, a file of a glob, a VRT's source, labels,
areas, model files): each must be refused with exit code 1 and a message naming the input,
every file as it was.

    .venv/bin/python -m tests.engine.fuzz      # prints the table recorded in docs/
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from affine import Affine

CRS = "EPSG:32645"
ORIGIN = Affine(0.5, 0, 330_000.0, 0, -0.5, 3_060_000.0)
SIDE = 64
#: Boxes (col0, row0, col1, row1) of the generated buildings, in pixels.
BOXES = [(4, 4, 20, 16), (30, 6, 44, 22), (8, 36, 24, 56), (40, 40, 58, 60)]


# ------------------------------------------------------------------------- valid inputs


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(40, 90, size=(3, SIDE, SIDE), dtype=np.uint8)
    for c0, r0, c1, r1 in BOXES:
        image[:, r0:r1, c0:c1] = 200
    return image


def make_geotiff(path: Path) -> list[Path]:
    """A 3-band uint8 GeoTIFF (deflate, tiled: damage lands in compressed tiles)."""
    with rasterio.open(
        path, "w", driver="GTiff", width=SIDE, height=SIDE, count=3, dtype="uint8", crs=CRS,
        transform=ORIGIN, tiled=True, blockxsize=32, blockysize=32, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(_image())
    return [path]


def make_vrt(path: Path) -> list[Path]:
    """A VRT over a GeoTIFF beside it (the VRT is what gets damaged)."""
    tif = path.with_name(path.stem + "-source.tif")
    make_geotiff(tif)
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{tif.name}</SourceFilename>'
        f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in (1, 2, 3)
    )
    with rasterio.open(tif) as src:
        srs, gt = src.crs.to_wkt(), ", ".join(str(v) for v in src.transform.to_gdal())
    path.write_text(
        f'<VRTDataset rasterXSize="{SIDE}" rasterYSize="{SIDE}"><SRS>{srs}</SRS>'
        f"<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>",
        encoding="utf-8",
    )
    return [path]


def make_jpeg(path: Path) -> list[Path]:
    """A JPEG georeferenced by its ``.aux.xml`` sidecar (as the Banepa chips are)."""
    with rasterio.open(
        path, "w", driver="JPEG", width=SIDE, height=SIDE, count=3, dtype="uint8", crs=CRS,
        transform=ORIGIN,
    ) as dst:  # fmt: skip
        dst.write(_image())
    return [path, Path(str(path) + ".aux.xml")]


def _frame() -> object:
    import geopandas as gpd
    from shapely.geometry import box

    polygons = []
    for c0, r0, c1, r1 in BOXES:
        x0, y0 = ORIGIN * (c0, r1)
        x1, y1 = ORIGIN * (c1, r0)
        polygons.append(box(x0, y0, x1, y1))
    return gpd.GeoDataFrame({"kind": ["house"] * len(polygons)}, geometry=polygons, crs=CRS)


def make_vector(driver: str) -> Callable[[Path], list[Path]]:
    """A maker of a building layer with ``driver``."""

    def make(path: Path) -> list[Path]:
        _frame().to_file(path, driver=driver)  # type: ignore[attr-defined]
        if driver == "ESRI Shapefile":
            return [path.with_suffix(s) for s in (".shp", ".shx", ".dbf", ".prj")]
        return [path]

    return make


def make_model(path: Path) -> list[Path]:
    """A small model file (compact network, 3 bands)."""
    import torch

    from engine.models.modelfile import ModelSpec, save_model
    from engine.models.registry import create_model

    torch.manual_seed(0)
    spec = ModelSpec(
        architecture="compact", encoder="none", in_channels=3, classes=("building",),
        bands=(1, 2, 3), mean=(100.0,) * 3, std=(50.0,) * 3, tile_size=32, resolution_m=0.5,
    )  # fmt: skip
    save_model(path, create_model("compact", "none", 3, 1), spec, overwrite=True)
    return [path]


_CERTIFICATES: dict[str, bytes] = {}


def make_certificates(path: Path) -> list[Path]:
    """A CA certificate at ``path`` (PEM) and beside it ``client.pem`` and ``client.key``, which
    it signs (made once with the openssl command, then copied)."""
    import subprocess
    import tempfile

    if not _CERTIFICATES:
        with tempfile.TemporaryDirectory() as tmp:
            folder, key = Path(tmp), ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
            for argv in (
                ["req", "-x509", *key, "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days",
                 "1", "-subj", "/CN=fuzz CA"],
                ["req", *key, "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj",
                 "/CN=fuzz client"],
                ["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "client.pem", "-days", "1"],
            ):  # fmt: skip
                subprocess.run(["openssl", *argv], cwd=folder, check=True, capture_output=True)
            for name in ("ca.pem", "client.pem", "client.key"):
                _CERTIFICATES[name] = (folder / name).read_bytes()
    path.write_bytes(_CERTIFICATES["ca.pem"])
    for name in ("client.pem", "client.key"):
        (path.parent / name).write_bytes(_CERTIFICATES[name])
    return [path, path.parent / "client.pem", path.parent / "client.key"]


@dataclass(frozen=True)
class Kind:
    """An input kind: its file name, how to make a valid one, the commands that take it."""

    name: str
    filename: str
    make: Callable[[Path], list[Path]]
    role: str  # raster, labels, model or certificate (a tls:// scheduler's CA)


KINDS = (
    Kind("GeoTIFF", "scene.tif", make_geotiff, "raster"),
    Kind("VRT", "scene.vrt", make_vrt, "raster"),
    Kind("JPEG + .aux.xml", "scene.jpg", make_jpeg, "raster"),
    Kind("GeoJSON", "labels.geojson", make_vector("GeoJSON"), "labels"),
    Kind("GeoPackage", "labels.gpkg", make_vector("GPKG"), "labels"),
    Kind("Shapefile", "labels.shp", make_vector("ESRI Shapefile"), "labels"),
    Kind("model file", "model.pt", make_model, "model"),
    Kind("TLS CA certificate", "ca.pem", make_certificates, "certificate"),
)


# ------------------------------------------------------------------------------ damage


def _truncate(fraction: float) -> Callable[[Path, np.random.Generator], None]:
    def damage(path: Path, rng: np.random.Generator) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return damage


def _flip(count: int) -> Callable[[Path, np.random.Generator], None]:
    def damage(path: Path, rng: np.random.Generator) -> None:
        data = bytearray(path.read_bytes())
        for at in rng.integers(0, len(data), size=count):
            data[at] ^= 0xFF
        path.write_bytes(bytes(data))

    return damage


def _zero_header(path: Path, rng: np.random.Generator) -> None:
    data = bytearray(path.read_bytes())
    n = min(512, len(data) // 2)
    data[:n] = bytes(n)
    path.write_bytes(bytes(data))


def _empty(path: Path, rng: np.random.Generator) -> None:
    path.write_bytes(b"")


def _folder(path: Path, rng: np.random.Generator) -> None:
    path.unlink()
    path.mkdir()


def _text(path: Path, rng: np.random.Generator) -> None:
    path.write_text("These are not the buildings you are looking for.\n" * 20, encoding="utf-8")


def _other_extension(path: Path, rng: np.random.Generator) -> None:
    """Valid content of another kind under this name (a GeoTIFF named .geojson, etc.)."""
    other = path.with_name("other" + (".gpkg" if path.suffix == ".tif" else ".tif"))
    made = make_vector("GPKG")(other) if other.suffix == ".gpkg" else make_geotiff(other)
    shutil.copyfile(made[0], path)


DAMAGES: dict[str, Callable[[Path, np.random.Generator], None]] = {
    "truncated 10%": _truncate(0.10),
    "truncated 33%": _truncate(0.33),
    "truncated 66%": _truncate(0.66),
    "truncated 95%": _truncate(0.95),
    "4 bytes flipped": _flip(4),
    "64 bytes flipped": _flip(64),
    "header zeroed": _zero_header,
    "empty file": _empty,
    "a folder instead": _folder,
    "a text file": _text,
    "another kind's content": _other_extension,
}


# ---------------------------------------------------------------------------- commands


def commands(kind: Kind, damaged: Path, work: Path) -> Iterator[tuple[str, list[str], Path]]:
    """(command name, argv, output) for every command taking ``kind``, the rest valid."""
    raster, labels, model = work / "ok.tif", work / "ok.gpkg", work / "ok.pt"
    use = {"raster": raster, "labels": labels, "model": model}
    use[kind.role] = damaged
    out = work / "out"
    r, lab, m = str(use["raster"]), str(use["labels"]), str(use["model"])
    if kind.role in ("raster", "model"):
        yield (
            "predict",
            ["predict", "--raster", r, "--model", m, "--output", f"{out}.tif"],
            out.with_suffix(".tif"),
        )
        yield (
            "detect",
            ["detect", "--raster", r, "--model", m, "--output", f"{out}.gpkg"],
            out.with_suffix(".gpkg"),
        )
    if kind.role == "raster":
        yield (
            "vectorize",
            ["vectorize", "--raster", r, "--output", f"{out}.gpkg", "--threshold", "100"],
            out.with_suffix(".gpkg"),
        )
    if kind.role in ("raster", "labels"):
        yield (
            "rasterize-labels",
            ["rasterize-labels", "--raster", r, "--label", lab, "--output", f"{out}.tif"],
            out.with_suffix(".tif"),
        )
        yield (
            "train",
            [
                "train",
                "--raster",
                r,
                "--label",
                lab,
                "--output",
                f"{out}.pt",
                "--architecture",
                "compact",
                "--encoder",
                "none",
                "--tile-size",
                "32",
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--device",
                "cpu",
            ],
            out.with_suffix(".pt"),
        )
    if kind.role == "certificate":  # checked before connecting to the (absent) scheduler
        tls = ["--scheduler", "tls://127.0.0.1:9", "--scheduler-ca", str(damaged),
               "--scheduler-cert", str(work / "client.pem"),
               "--scheduler-key", str(work / "client.key")]  # fmt: skip
        for name, suffix in (("predict", ".tif"), ("detect", ".gpkg")):
            argv = [name, "--raster", r, "--model", m, "--output", f"{out}{suffix}", *tls]
            yield f"{name} (tls://)", argv, out.with_suffix(suffix)
    if kind.role == "labels":
        yield (
            "evaluate",
            ["evaluate", "--predicted", lab, "--reference", str(labels), "--output", f"{out}.gpkg"],
            out.with_suffix(".gpkg"),
        )
        yield (
            "detect (AOI)",
            [
                "detect",
                "--raster",
                str(raster),
                "--model",
                str(model),
                "--output",
                f"{out}.gpkg",
                "--aoi",
                lab,
            ],
            out.with_suffix(".gpkg"),
        )
    # fmt: skip


@dataclass
class Outcome:
    """How one case ended."""

    kind: str
    damage: str
    command: str
    code: int
    message: str
    problem: str  # empty when handled
    printed: str = ""  # what the command printed, kept when it was not handled

    @property
    def ending(self) -> str:
        """``result`` or ``clear error``, or what went wrong."""
        if self.problem:
            return self.problem
        return "result" if self.code == 0 else "clear error"


def run_case(argv: list[str]) -> tuple[int, str]:
    """Run one command in this process: exit code and everything it printed."""
    from engine.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--events", "json"])
    return code, out.getvalue() + err.getvalue()


def _error_message(printed: str) -> str:
    for line in reversed(printed.splitlines()):
        if line.startswith("{") and '"error"' in line:
            return str(json.loads(line).get("message", ""))
    return ""


def judge(code: int, printed: str, output: Path, damaged: Path, before: set[Path]) -> str:
    """Empty when the case was handled (see the module doc), else what went wrong."""
    folder = output.parent
    left = {p for p in folder.iterdir()} - before - {output}
    if "Traceback" in printed:
        return "traceback"
    message = _error_message(printed)
    if "internal error" in message.lower():
        return "internal error: " + message[:200]
    if code == 0:
        if not output.exists():
            return "exit 0 without output"
        left -= {folder / f"{output.stem}_report"}  # train's report, beside its model
        return "left " + ", ".join(sorted(p.name for p in left)) if left else ""
    if code != 1:
        return f"exit code {code}"
    if output.exists() or left:
        return "partial output: " + ", ".join(sorted(p.name for p in left | {output} if p.exists()))
    if damaged.name not in message:
        return "error does not name the file: " + message[:200]
    return ""


def fuzz(work: Path, kinds: tuple[Kind, ...] = KINDS, seed: int = 0) -> list[Outcome]:
    """Every kind x damage x command in ``work``; returns the outcomes."""
    rng = np.random.default_rng(seed)
    good = work / "good"
    good.mkdir()
    make_geotiff(good / "ok.tif")
    make_vector("GPKG")(good / "ok.gpkg")
    make_model(good / "ok.pt")
    outcomes = []
    for n, kind in enumerate(kinds):
        for d, (damage_name, damage) in enumerate(DAMAGES.items()):
            case = work / f"case-{n}-{d}"
            case.mkdir()
            for name in ("ok.tif", "ok.gpkg", "ok.pt"):
                shutil.copy(good / name, case / name)
            files = kind.make(case / kind.filename)
            damaged = files[0]
            damage(damaged, rng)
            for command, argv, output in commands(kind, damaged, case):
                before = set(case.iterdir())
                code, printed = run_case(argv)
                problem = judge(code, printed, output, damaged, before)
                message = _error_message(printed)
                kept = printed[-3000:] if problem else ""
                outcomes.append(
                    Outcome(kind.name, damage_name, command, code, message, problem, kept)
                )
                for made in (output, case / f"{output.stem}_report"):
                    if made.is_dir():
                        shutil.rmtree(made)
                    elif made.exists():
                        made.unlink()
    return outcomes


# ------------------------------------------------------------ outputs that are inputs

#: The training options of every ``train`` case (tiny and quick, were it ever to run).
_TRAIN = ["--architecture", "compact", "--encoder", "none", "--tile-size", "32", "--epochs", "1"]
_TRAIN += ["--batch-size", "4", "--device", "cpu"]


def make_same_file_inputs(work: Path) -> None:
    """The inputs of the output = input cases: a GeoTIFF, a folder of two chips, a VRT over a
    GeoTIFF, two polygon layers and a model file."""
    make_geotiff(work / "scene.tif")
    (work / "chips").mkdir()
    make_geotiff(work / "chips" / "a.tif")
    make_geotiff(work / "chips" / "b.tif")
    make_vrt(work / "mosaic.vrt")  # reads mosaic-source.tif
    make_vector("GPKG")(work / "labels.gpkg")
    make_vector("GPKG")(work / "areas.gpkg")
    make_model(work / "model.pt")


def _case(command: str, victim: str, **options: str) -> Callable[[Path], tuple[list[str], Path]]:
    """A case: ``command`` with ``options`` (``{}`` in a value is the work folder), which
    names ``victim`` (a file of the work folder) as an output."""

    def build(work: Path) -> tuple[list[str], Path]:
        argv = [command]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", value.format(work)]
        if command == "train":
            argv += _TRAIN
        return [*argv, "--overwrite"], work / victim

    return build


#: Every command x every input kind, each with an output that is that input (``--overwrite``
#: given, as the Processing algorithms always do): each must be refused, naming the input.
SAME_FILE_CASES: dict[str, Callable[[Path], tuple[list[str], Path]]] = {
    "rasterize-labels / raster file": _case(
        "rasterize-labels", "scene.tif", raster="{}/scene.tif", label="{}/labels.gpkg",
        output="{}/scene.tif",
    ),
    "rasterize-labels / folder chip": _case(
        "rasterize-labels", "chips/b.tif", raster="{}/chips", label="{}/labels.gpkg",
        output="{}/chips/b.tif",
    ),
    "rasterize-labels / glob file": _case(
        "rasterize-labels", "chips/a.tif", raster="{}/chips/*.tif", label="{}/labels.gpkg",
        output="{}/chips/a.tif",
    ),
    "rasterize-labels / VRT source": _case(
        "rasterize-labels", "mosaic-source.tif", raster="{}/mosaic.vrt",
        label="{}/labels.gpkg", output="{}/mosaic-source.tif",
    ),
    "rasterize-labels / labels": _case(
        "rasterize-labels", "labels.gpkg", raster="{}/scene.tif", label="{}/labels.gpkg",
        output="{}/labels.gpkg",
    ),
    "train / raster file": _case(
        "train", "scene.tif", raster="{}/scene.tif", label="{}/labels.gpkg",
        output="{}/scene.tif",
    ),
    "train / folder chip": _case(
        "train", "chips/a.tif", raster="{}/chips", label="{}/labels.gpkg",
        output="{}/chips/a.tif",
    ),
    "train / glob file": _case(
        "train", "chips/b.tif", raster="{}/chips/*.tif", label="{}/labels.gpkg",
        output="{}/chips/b.tif",
    ),
    "train / VRT source": _case(
        "train", "mosaic-source.tif", raster="{}/mosaic.vrt", label="{}/labels.gpkg",
        output="{}/mosaic-source.tif",
    ),
    "train / labels": _case(
        "train", "labels.gpkg", raster="{}/scene.tif", label="{}/labels.gpkg",
        output="{}/labels.gpkg",
    ),
    "train / validation areas": _case(
        "train", "areas.gpkg", raster="{}/scene.tif", label="{}/labels.gpkg",
        validation="{}/areas.gpkg", output="{}/areas.gpkg",
    ),
    "train / labelled area": _case(
        "train", "areas.gpkg", raster="{}/scene.tif", label="{}/labels.gpkg",
        labelled_area="{}/areas.gpkg", output="{}/areas.gpkg",
    ),
    "train / initial model": _case(
        "train", "model.pt", raster="{}/scene.tif", label="{}/labels.gpkg",
        init_model="{}/model.pt", output="{}/model.pt",
    ),
    "train / resumed checkpoint": _case(
        "train", "model.pt", raster="{}/scene.tif", label="{}/labels.gpkg",
        resume="{}/model.pt", output="{}/model.pt",
    ),
    "train / report file is a raster": _case(
        "train", "chips/summary.json", raster="{}/chips/summary.json", label="{}/labels.gpkg",
        output="{}/new.pt", report_dir="{}/chips",
    ),
    "predict / raster file": _case(
        "predict", "scene.tif", raster="{}/scene.tif", model="{}/model.pt",
        output="{}/scene.tif",
    ),
    "predict / folder chip": _case(
        "predict", "chips/a.tif", raster="{}/chips", model="{}/model.pt",
        output="{}/chips/a.tif",
    ),
    "predict / glob file": _case(
        "predict", "chips/b.tif", raster="{}/chips/*.tif", model="{}/model.pt",
        output="{}/chips/b.tif",
    ),
    "predict / VRT source": _case(
        "predict", "mosaic-source.tif", raster="{}/mosaic.vrt", model="{}/model.pt",
        output="{}/mosaic-source.tif",
    ),
    "predict / model file": _case(
        "predict", "model.pt", raster="{}/scene.tif", model="{}/model.pt",
        output="{}/model.pt",
    ),
    "predict / AOI": _case(
        "predict", "areas.gpkg", raster="{}/scene.tif", model="{}/model.pt",
        aoi="{}/areas.gpkg", output="{}/areas.gpkg",
    ),
    "vectorize / raster file": _case(
        "vectorize", "scene.tif", raster="{}/scene.tif", output="{}/scene.tif",
    ),
    "vectorize / VRT source": _case(
        "vectorize", "mosaic-source.tif", raster="{}/mosaic.vrt",
        output="{}/mosaic-source.tif",
    ),
    "detect / raster file": _case(
        "detect", "scene.tif", raster="{}/scene.tif", model="{}/model.pt",
        output="{}/scene.tif",
    ),
    "detect / kept probability = raster file": _case(
        "detect", "scene.tif", raster="{}/scene.tif", model="{}/model.pt",
        output="{}/out.gpkg", keep_probability="{}/scene.tif",
    ),
    "detect / kept probability = folder chip": _case(
        "detect", "chips/a.tif", raster="{}/chips", model="{}/model.pt",
        output="{}/out.gpkg", keep_probability="{}/chips/a.tif",
    ),
    "detect / kept probability = glob file": _case(
        "detect", "chips/b.tif", raster="{}/chips/*.tif", model="{}/model.pt",
        output="{}/out.gpkg", keep_probability="{}/chips/b.tif",
    ),
    "detect / kept probability = VRT source": _case(
        "detect", "mosaic-source.tif", raster="{}/mosaic.vrt", model="{}/model.pt",
        output="{}/out.gpkg", keep_probability="{}/mosaic-source.tif",
    ),
    "detect / model file": _case(
        "detect", "model.pt", raster="{}/scene.tif", model="{}/model.pt",
        output="{}/model.pt",
    ),
    "detect / AOI": _case(
        "detect", "areas.gpkg", raster="{}/scene.tif", model="{}/model.pt",
        aoi="{}/areas.gpkg", output="{}/areas.gpkg",
    ),
    "detect / a new layer in the AOI's GeoPackage": _case(
        "detect", "areas.gpkg", raster="{}/scene.tif", model="{}/model.pt",
        aoi="{}/areas.gpkg", output="{}/areas.gpkg|layername=buildings",
    ),
    "evaluate / a new layer in the predicted GeoPackage": _case(
        "evaluate", "labels.gpkg", predicted="{}/labels.gpkg", reference="{}/areas.gpkg",
        output="{}/labels.gpkg|layername=matches",
    ),
    # no model given: the starter model, the work folder's model.pt (see same_file_case)
    "detect / starter model": _case(
        "detect", "model.pt", raster="{}/scene.tif", output="{}/out.gpkg",
        keep_probability="{}/model.pt",
    ),
    "predict / starter model": _case(
        "predict", "model.pt", raster="{}/scene.tif", output="{}/model.pt",
    ),
    "train / starter model as initial model": _case(
        "train", "model.pt", raster="{}/scene.tif", label="{}/labels.gpkg",
        init_model="starter", output="{}/model.pt",
    ),
    "evaluate / predicted layer": _case(
        "evaluate", "labels.gpkg", predicted="{}/labels.gpkg", reference="{}/areas.gpkg",
        output="{}/labels.gpkg",
    ),
    "evaluate / reference layer": _case(
        "evaluate", "areas.gpkg", predicted="{}/labels.gpkg", reference="{}/areas.gpkg",
        output="{}/areas.gpkg",
    ),
    "evaluate / report = predicted layer": _case(
        "evaluate", "labels.gpkg", predicted="{}/labels.gpkg", reference="{}/areas.gpkg",
        report="{}/labels.gpkg",
    ),
    "evaluate / area raster's VRT source": _case(
        "evaluate", "mosaic-source.tif", predicted="{}/labels.gpkg",
        reference="{}/areas.gpkg", area="{}/mosaic.vrt", report="{}/mosaic-source.tif",
    ),
}  # fmt: skip


def _digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a digest of its bytes."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def judge_same_file(code: int, printed: str, victim: Path) -> str:
    """Empty when an output = input case was refused (exit 1, a message naming the input),
    else what went wrong."""
    message = _error_message(printed)
    if "Traceback" in printed:
        return "traceback"
    if code != 1:
        return f"exit code {code} (not refused): {message[:200]}"
    if str(victim) not in message or "choose another" not in message:
        return "error does not name the input: " + message[:200]
    return ""


@contextlib.contextmanager
def starter_model(path: Path) -> Iterator[None]:
    """``path`` is the starter model meanwhile (``FOOTPRINT_STARTER_MODEL``)."""
    from engine.models.starter import ENV

    previous = os.environ.get(ENV)
    os.environ[ENV] = str(path)
    try:
        yield
    finally:
        if previous is None:
            del os.environ[ENV]
        else:
            os.environ[ENV] = previous


def same_file_case(name: str, case: Path) -> Outcome:
    """Run the case ``name`` of :data:`SAME_FILE_CASES` on the inputs in ``case``."""
    argv, victim = SAME_FILE_CASES[name](case)
    if name.startswith("train / report file"):
        shutil.copy(case / "scene.tif", victim)  # a raster named as a report file
    before = _digests(case)
    with starter_model(case / "model.pt"):
        code, printed = run_case(argv)
    problem = judge_same_file(code, printed, victim)
    if not problem and _digests(case) != before:
        problem = "the work folder changed"
    command, _, kind = name.partition(" / ")
    message = _error_message(printed)
    kept = printed[-3000:] if problem else ""
    return Outcome(kind, "output = input", command, code, message, problem, kept)


def same_file(work: Path, names: list[str] | None = None) -> list[Outcome]:
    """Run the :data:`SAME_FILE_CASES` (``names``: these only), each in a fresh copy of the
    inputs under ``work``; returns the outcomes."""
    good = work / "same-file-inputs"
    good.mkdir()
    make_same_file_inputs(good)
    outcomes = []
    for n, name in enumerate(names or list(SAME_FILE_CASES)):
        case = work / f"same-{n}"
        shutil.copytree(good, case)
        outcomes.append(same_file_case(name, case))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """Markdown: cases per input kind and how they ended."""
    lines = [
        "| input kind | cases | result | clear error | not handled |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind in dict.fromkeys(o.kind for o in outcomes):
        counts = Counter("bad" if o.problem else o.ending for o in outcomes if o.kind == kind)
        total = sum(counts.values())
        lines.append(
            f"| {kind} | {total} | {counts['result']} | {counts['clear error']} | {counts['bad']} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- odd inputs
# Valid files with odd content (issue 26): south-up grids, NaN/Inf pixels, an unusable pixel
# size, a raster too wide for the memory, crafted model specs. Each runs through the
# commands of its role (and, for rasters that should work, detect/predict with an extent and
# an AOI) and must end as expected: a result, or a clear error naming the file and saying
# what is wrong, never a traceback.


def make_south_up(path: Path) -> list[Path]:
    """:func:`make_geotiff`'s image on a south-up grid (positive pixel height)."""
    with rasterio.open(
        path, "w", driver="GTiff", width=SIDE, height=SIDE, count=3, dtype="uint8", crs=CRS,
        transform=Affine(ORIGIN.a, 0, ORIGIN.c, 0, -ORIGIN.e, ORIGIN.f + SIDE * ORIGIN.e),
    ) as dst:  # fmt: skip
        dst.write(_image()[:, ::-1])
    return [path]


def make_non_finite(nodata: float | None) -> Callable[[Path], list[Path]]:
    """A maker of :func:`make_geotiff`'s image as float32 with NaN, Inf and -Inf pixels."""

    def make(path: Path) -> list[Path]:
        image = _image().astype(np.float32)
        image[0, 2:10, 2:10], image[1, 30:34, :], image[2, :, 60:] = np.nan, np.inf, -np.inf
        with rasterio.open(
            path, "w", driver="GTiff", width=SIDE, height=SIDE, count=3, dtype="float32",
            crs=CRS, transform=ORIGIN, nodata=nodata,
        ) as dst:  # fmt: skip
            dst.write(image)
        return [path]

    return make


def _vrt(path: Path, width: int, geotransform: str, sources: list[tuple[str, int]]) -> None:
    """A 3-band Byte VRT of ``width`` x SIDE px with (file, column offset) sources."""
    srs = rasterio.crs.CRS.from_user_input(CRS).to_wkt()
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}">'
        + "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="1">{name}</SourceFilename>'
            f'<SourceBand>{b}</SourceBand><DstRect xOff="{col}" yOff="0" xSize="{SIDE}"'
            f' ySize="{SIDE}"/></SimpleSource>'
            for name, col in sources
        )
        + "</VRTRasterBand>"
        for b in (1, 2, 3)
    )
    path.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{SIDE}"><SRS>{escape(srs)}</SRS>'
        f"<GeoTransform>{geotransform}</GeoTransform>{bands}</VRTDataset>",
        encoding="utf-8",
    )


def make_zero_pixel_size(path: Path) -> list[Path]:
    """A VRT over a GeoTIFF whose pixels are 0 m wide."""
    tif = path.with_name(path.stem + "-source.tif")
    make_geotiff(tif)
    _vrt(path, SIDE, f"{ORIGIN.c}, 0, 0, {ORIGIN.f}, 0, {ORIGIN.e}", [(tif.name, 0)])
    return [path]


#: Width of :func:`make_far_apart`'s mosaic: far too wide for any machine's memory.
FAR = 100_000_000


def make_far_apart(path: Path) -> list[Path]:
    """A VRT of two small tiles :data:`FAR` pixels apart (costs nothing on disk)."""
    tif = path.with_name(path.stem + "-source.tif")
    make_geotiff(tif)
    geotransform = ", ".join(str(v) for v in ORIGIN.to_gdal())
    _vrt(path, FAR + SIDE, geotransform, [(tif.name, 0), (tif.name, FAR)])
    return [path]


#: Crafted model specs: changes to a valid spec's JSON, each out of range or of the wrong kind.
CRAFTED_SPECS: dict[str, dict[str, object]] = {
    "NaN resolution": {"resolution_m": float("nan")},
    "1e-9 m resolution": {"resolution_m": 1e-9},
    "negative resolution": {"resolution_m": -0.5},
    "tile size 0": {"tile_size": 0},
    "tile size 32.5": {"tile_size": 32.5},
    "negative band count": {"in_channels": -3},
    "band count true": {"in_channels": True},
    "band 0": {"bands": [0, 1, 2]},
    "threshold 1.5": {"threshold": 1.5},
    "threshold -0.1": {"threshold": -0.1},
    "contact threshold NaN": {"contact_threshold": float("nan")},
    "seed threshold 2": {"seed_threshold": 2},
    "negative smallest seed": {"min_seed_m2": -1.0},
    "seed erosion 1e9 m": {"seed_erosion_m": 1e9},
    "std 0": {"std": [50.0, 0.0, 50.0]},
    "mean Infinity": {"mean": [100.0, float("inf"), 100.0]},
    "mean text": {"mean": ["a", "b", "c"]},
    "no classes": {"classes": []},
    "class 7": {"classes": [7]},
    "input type complex64": {"input_dtype": "complex64"},
    "decoder attention 'yes'": {"decoder_attention": "yes"},
    "decoder channels 0": {"decoder_channels": [128, 64, 32, 16, 0]},
    "decoder channels text": {"decoder_channels": ["wide"]},
}


def make_crafted_model(path: Path, changes: dict[str, object]) -> list[Path]:
    """A valid model file (:func:`make_model`) whose spec JSON has ``changes``."""
    import torch

    make_model(path)
    payload = torch.load(path, weights_only=True)
    payload["spec"] = json.dumps({**json.loads(payload["spec"]), **changes})
    torch.save(payload, path)
    return [path]


@dataclass(frozen=True)
class Odd:
    """An odd input: how to make it, its role, the commands to run (all of the role's when
    empty) and what must happen: ``result``, or a text the error must hold."""

    name: str
    make: Callable[[Path], list[Path]]
    role: str
    expect: str
    only: tuple[str, ...] = ()
    filename: str = "odd.tif"


def _crafted(name: str, changes: dict[str, object]) -> Odd:
    field = next(iter(changes))
    return Odd(
        f"model spec: {name}",
        lambda p: make_crafted_model(p, changes),
        "model",
        f"its {field} is",
        filename="odd.pt",
    )


ODD = (
    Odd("south-up raster", make_south_up, "raster", "result"),
    Odd("NaN/Inf pixels, nodata -9999", make_non_finite(-9999.0), "raster", "result"),
    Odd("NaN/Inf pixels, no nodata", make_non_finite(None), "raster", "result"),
    Odd("zero pixel size", make_zero_pixel_size, "raster", "not zero", filename="odd.vrt"),
    Odd(
        "tiles 100,000,000 px apart",
        make_far_apart,
        "raster",
        "px wide",
        ("predict", "detect"),
        "odd.vrt",
    ),
    Odd(
        "model of 1 cm pixels",
        lambda p: make_crafted_model(p, {"resolution_m": 0.01}),
        "model",
        "times finer",
        filename="odd.pt",
    ),
    *(_crafted(name, changes) for name, changes in CRAFTED_SPECS.items()),
)


def _area_commands(raster: Path, work: Path) -> Iterator[tuple[str, list[str], Path]]:
    """Detect with an extent and predict with an AOI (the labels) on ``raster``."""
    (x0, y0), (x1, y1) = ORIGIN * (8, 56), ORIGIN * (56, 8)
    out, model = work / "out", str(work / "ok.pt")
    common = ["--raster", str(raster), "--model", model]
    extent = ["--extent", *(str(v) for v in (x0, y0, x1, y1))]
    yield (
        "detect (extent)",
        ["detect", *common, "--output", f"{out}.gpkg", *extent],
        out.with_suffix(".gpkg"),
    )
    aoi = ["--aoi", str(work / "ok.gpkg")]
    yield (
        "predict (AOI)",
        ["predict", *common, "--output", f"{out}.tif", *aoi],
        out.with_suffix(".tif"),
    )


def _finite(output: Path) -> bool:
    """False when ``output`` is a raster holding NaN or Inf (a probability raster must not)."""
    if output.suffix != ".tif":
        return True
    with rasterio.open(output) as src:
        return bool(np.isfinite(src.read()).all())


def judge_odd(
    odd: Odd, code: int, printed: str, output: Path, named: Path, before: set[Path]
) -> str:
    """Empty when ``odd`` ended as it must (see :class:`Odd`), else what went wrong."""
    problem = judge(code, printed, output, named, before)
    if problem:
        return problem
    message = _error_message(printed)
    if odd.expect == "result":
        if code != 0:
            return "an error instead of a result: " + message[:200]
        return "" if _finite(output) else "NaN or Inf in the probabilities"
    if code == 0:
        return "a result instead of an error"
    return "" if odd.expect in message else f"error without {odd.expect!r}: " + message[:200]


def fuzz_odd(work: Path, odds: tuple[Odd, ...] = ODD) -> list[Outcome]:
    """Every odd input x command of its role in ``work``; returns the outcomes."""
    good = work / "good"
    good.mkdir(parents=True)
    make_geotiff(good / "ok.tif")
    make_vector("GPKG")(good / "ok.gpkg")
    make_model(good / "ok.pt")
    outcomes = []
    for n, odd in enumerate(odds):
        case = work / f"odd-{n}"
        case.mkdir()
        for name in ("ok.tif", "ok.gpkg", "ok.pt"):
            shutil.copy(good / name, case / name)
        path = odd.make(case / odd.filename)[0]
        kind = Kind(odd.name, odd.filename, odd.make, odd.role)
        runs = list(commands(kind, path, case))
        if odd.role == "raster" and odd.expect == "result":
            runs += list(_area_commands(path, case))
        named = case / "ok.tif" if odd.expect == "times finer" else path
        for command, argv, output in runs:
            if odd.only and command not in odd.only:
                continue
            before = set(case.iterdir())
            code, printed = run_case(argv)
            problem = judge_odd(odd, code, printed, output, named, before)
            kept = printed[-3000:] if problem else ""
            outcomes.append(
                Outcome(odd.name, odd.expect, command, code, _error_message(printed), problem, kept)
            )
            for made in (output, case / f"{output.stem}_report"):
                if made.is_dir():
                    shutil.rmtree(made)
                elif made.exists():
                    made.unlink()
    return outcomes


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = fuzz(Path(tmp)) + same_file(Path(tmp)) + fuzz_odd(Path(tmp) / "odd")
    print(table(found))
    for o in found:
        if o.problem:
            print(f"- {o.kind} / {o.damage} / {o.command}: {o.problem}")
            if "-v" in sys.argv:
                print(o.printed)
