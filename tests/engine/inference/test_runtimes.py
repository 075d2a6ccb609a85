"""The model exported to ONNX and run by ONNX Runtime: same buildings as torch, no torch
imported on that path; the runtime and precision choices."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

import engine.inference.network as network_module
import engine.inference.torchnet as torchnet
from engine.config import DetectConfig, ExportConfig, PredictConfig
from engine.detect import detect_with_model, detect_with_network
from engine.errors import ConfigError, ModelFileError
from engine.events import NullProgress
from engine.export import export
from engine.inference.network import choose_runtime, open_network
from engine.inference.onnxnet import open_onnx
from engine.inference.precision import use_bf16
from engine.models.modelfile import save_model
from engine.models.onnxfile import export_onnx, read_onnx
from engine.models.registry import create_model, output_stride
from engine.predict import predict
from tests.engine.predict_helpers import GRID, LeftNeighbour, Pointwise, make_spec

ROOT = Path(__file__).resolve().parents[3]


def _raster(path: Path, height: int = 150, width: int = 170) -> Path:
    """Blocky 0/1 'buildings' with noise, one band, on a 0.5 m grid."""
    rng = np.random.default_rng(1)
    data = (rng.random((height // 10, width // 10)) > 0.6).astype(np.float32)
    data = np.kron(data, np.ones((10, 10), np.float32))[:height, :width]
    data = np.clip(data + 0.2 * rng.standard_normal(data.shape).astype(np.float32), 0, 1)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1}
    profile.update(dtype="float32", crs="EPSG:32616", transform=GRID)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[None])
    return path


def _detect_config(raster: Path, out: Path, **kw: object) -> DetectConfig:
    return DetectConfig(raster=str(raster), model="unused.pt", output=str(out), window=64, **kw)  # type: ignore[arg-type]


def _polygons(path: str) -> list[str]:
    import geopandas as gpd

    return sorted(g.wkb_hex for g in gpd.read_file(path).geometry.normalize())


@pytest.mark.parametrize("model", [Pointwise(), LeftNeighbour()], ids=["pointwise", "shifted"])
def test_exported_model_gives_the_same_buildings(tmp_path: Path, model: nn.Module) -> None:
    """A known-function model exported and run by ONNX Runtime gives exactly torch's
    buildings (probabilities agree to float rounding, far from the threshold's resolution)."""
    raster = _raster(tmp_path / "in.tif")
    spec = make_spec(tile=32)
    onnx = tmp_path / "m.onnx"
    diff = export_onnx(model, spec, 1, onnx)
    assert diff <= 1e-4
    by_torch = detect_with_model(
        _detect_config(raster, tmp_path / "t.gpkg"), model, spec, NullProgress()
    )
    network, read = open_onnx(str(onnx))
    assert read == spec and network.stride == 1
    by_onnx = detect_with_network(
        _detect_config(raster, tmp_path / "o.gpkg"), network, read, NullProgress()
    )
    assert (by_torch["runtime"], by_onnx["runtime"]) == ("torch", "onnx")
    assert by_onnx["buildings"] == by_torch["buildings"] > 5
    assert _polygons(by_onnx["output"]) == _polygons(by_torch["output"])


def test_onnx_test_time_augmentation_undoes_each_view(tmp_path: Path) -> None:
    """8-way TTA on ONNX Runtime turns each view back: a model that is not rotation
    equivariant gives torch's TTA probabilities."""
    onnx = tmp_path / "m.onnx"
    export_onnx(LeftNeighbour(), make_spec(), 1, onnx)
    network, _ = open_onnx(str(onnx))
    batch = np.random.default_rng(0).random((2, 1, 16, 16)).astype(np.float32)
    reference = torchnet.TorchNetwork(LeftNeighbour(), torch.device("cpu"))
    for tta in (False, True):
        np.testing.assert_allclose(
            network.probabilities(batch, tta), reference.probabilities(batch, tta), atol=1e-5
        )


def _model_file(tmp_path: Path) -> Path:
    """A small real network (compact U-Net, random weights) saved as train saves it."""
    torch.manual_seed(0)
    model = create_model("compact", "none", 3, 2)
    spec = make_spec(
        tile=64, classes=("building", "separation"), in_channels=3, bands=(1, 2, 3),
        mean=(0.0,) * 3, std=(1.0,) * 3, architecture="compact",
    )  # fmt: skip
    return save_model(tmp_path / "m.pt", model, spec)


def test_export_command_writes_a_faithful_onnx(tmp_path: Path) -> None:
    """`export` writes the spec and stride into the ONNX metadata after checking ONNX
    Runtime against torch; predict with each runtime then agrees within that tolerance."""
    pt = _model_file(tmp_path)
    out = tmp_path / "m.onnx"
    result = export(ExportConfig(model=str(pt), output=str(out)), NullProgress())
    assert result["max_difference"] <= 1e-4 and out.is_file()
    _, spec, stride = read_onnx(out)
    assert spec.classes == ("building", "separation") and stride > 1
    rng = np.random.default_rng(2)
    image = tmp_path / "rgb.tif"
    profile = {"driver": "GTiff", "width": 200, "height": 130, "count": 3, "dtype": "float32"}
    with rasterio.open(image, "w", crs="EPSG:32616", transform=GRID, **profile) as dst:
        dst.write(rng.random((3, 130, 200)).astype(np.float32))
    bands = []
    for runtime, model in (("torch", pt), ("onnx", out)):
        config = PredictConfig(
            raster=str(image), model=str(model), output=str(tmp_path / f"{runtime}.tif"),
            runtime=runtime, precision="fp32",
        )  # fmt: skip
        assert predict(config, NullProgress())["runtime"] == runtime
        with rasterio.open(config.output) as src:
            bands.append(src.read())
    assert bands[0].shape == (2, 130, 200)
    assert float(np.abs(bands[0] - bands[1]).max()) <= 1e-4


def test_export_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    pt = _model_file(tmp_path)
    with pytest.raises(ConfigError, match=r"must end in \.onnx"):
        export(ExportConfig(model=str(pt), output=str(tmp_path / "m.pt2")), NullProgress())
    out = tmp_path / "m.onnx"
    out.write_text("mine")
    with pytest.raises(Exception, match="exists"):
        export(ExportConfig(model=str(pt), output=str(out)), NullProgress())
    assert out.read_text() == "mine"  # the user's file is untouched


def test_an_onnx_without_footprints_metadata_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(
        Pointwise(), (torch.zeros(1, 1, 8, 8),), str(plain), input_names=["image"], dynamo=False
    )
    with pytest.raises(ModelFileError, match="not a Footprint model.*python -m engine export"):
        read_onnx(plain)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx at all")
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        read_onnx(garbage)


def test_detect_on_onnx_runtime_imports_no_torch(tmp_path: Path) -> None:
    """The whole detection path on ONNX Runtime runs without importing torch (the light
    engine has none)."""
    raster = _raster(tmp_path / "in.tif")
    onnx = tmp_path / "m.onnx"
    export_onnx(Pointwise(), make_spec(tile=32), 1, onnx)
    out = tmp_path / "b.gpkg"
    code = (
        "import json, sys\n"
        "from engine.cli import main\n"
        f"rc = main(['detect', '--raster', {str(raster)!r}, '--model', {str(onnx)!r},"
        f" '--output', {str(out)!r}, '--events', 'quiet'])\n"
        "print(json.dumps({'rc': rc, 'torch': sorted(m for m in sys.modules"
        " if m == 'torch' or m.startswith('torch.'))}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"rc": 0, "torch": []}, done.stderr
    assert out.is_file()


def test_auto_runtime_chooses_by_file_and_installation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pt, onnx = tmp_path / "m.pt", tmp_path / "m.onnx"
    assert choose_runtime(str(onnx), "auto") == ("onnx", str(onnx))
    assert choose_runtime(str(pt), "auto") == ("torch", str(pt))
    with pytest.raises(ModelFileError, match="ONNX model: torch runs the .pt"):
        choose_runtime(str(onnx), "torch")
    with pytest.raises(ModelFileError, match="export it to ONNX first"):
        choose_runtime(str(pt), "onnx")  # no .onnx beside it
    monkeypatch.setattr(network_module, "torch_installed", lambda: False)
    with pytest.raises(ModelFileError, match="torch is not installed.*export"):
        choose_runtime(str(pt), "auto")
    onnx.write_bytes(b"")
    assert choose_runtime(str(pt), "auto") == ("onnx", str(onnx))  # the export beside it
    with pytest.raises(ConfigError, match="torch is not installed"):
        choose_runtime(str(pt), "torch")
    monkeypatch.setattr(network_module, "onnxruntime_installed", lambda: False)
    with pytest.raises(ConfigError, match="ONNX Runtime is not installed"):
        choose_runtime(str(onnx), "auto")
    with pytest.raises(ConfigError, match="not one of auto, torch, onnx"):
        choose_runtime(str(pt), "tensorflow")


@pytest.mark.parametrize(
    ("precision", "device", "flags", "bf16"),
    [("auto", "cpu", True, True), ("auto", "cpu", False, False), ("fp32", "cpu", True, False),
     ("bf16", "cpu", False, True), ("auto", "cuda", True, False), ("bf16", "cuda", True, False)],
)  # fmt: skip
def test_precision_follows_the_cpu(precision: str, device: str, flags: bool, bf16: bool) -> None:
    """bf16 on a CPU only where asked, or by auto where the CPU has the path (a GPU runs its
    own bf16 autocast whatever is asked)."""
    assert use_bf16(precision, device, flags) is bf16


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "capability", "expected"),
    [(True, False, "AVX512", True), (False, True, "AVX512", True),
     (False, False, "AVX512", False), (True, True, "AVX2", False)],
)  # fmt: skip
def test_cpu_bf16_reads_torchs_cpu_flags(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, capability: str, expected: bool
) -> None:
    monkeypatch.delenv("FOOTPRINT_NO_BF16")  # the suite's fp32 default
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert torchnet.cpu_bf16() is expected
    monkeypatch.setenv("FOOTPRINT_NO_BF16", "1")
    assert torchnet.cpu_bf16() is False  # auto then means fp32 everywhere


def test_bf16_and_onnx_choices_reach_the_run(tmp_path: Path) -> None:
    """The precision asked for is the one that runs (said in the result); ONNX Runtime
    refuses bf16 rather than run something else."""
    pt = _model_file(tmp_path)
    network, _ = open_network(str(pt), "torch", "cpu", "bf16", NullProgress())
    assert (network.runtime, network.precision) == ("torch", "bf16")
    batch = np.random.default_rng(0).random((1, 3, 64, 64)).astype(np.float32)
    fp32, _ = open_network(str(pt), "torch", "cpu", "fp32", NullProgress())
    low, high = network.probabilities(batch, False), fp32.probabilities(batch, False)
    assert low.dtype == np.float32 and 0 < float(np.abs(low - high).max()) < 0.1
    onnx = tmp_path / "m.onnx"
    export(ExportConfig(model=str(pt), output=str(onnx)), NullProgress())
    with pytest.raises(ConfigError, match="bf16 runs on torch only"):
        open_network(str(onnx), "onnx", "cpu", "bf16", NullProgress())


def test_without_torch_a_models_spec_comes_from_its_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detection-only engine reads the starter model's description (and any .pt's) from
    the .onnx export beside it: torch cannot open the .pt there."""
    import engine.models.modelfile as modelfile

    pt = _model_file(tmp_path)
    export(ExportConfig(model=str(pt), output=str(pt.with_suffix(".onnx"))), NullProgress())
    monkeypatch.setattr(modelfile, "_has_torch", lambda: False)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    assert modelfile.read_spec(pt) == modelfile.read_spec(pt.with_suffix(".onnx"))
    assert modelfile.read_spec(pt).architecture == "compact"


@pytest.mark.parametrize(
    ("device", "precision", "gpu", "bf16_path", "no_bf16_env", "faster"),
    [
        ("auto", "auto", False, False, False, True),  # most laptops: no AVX512-BF16
        ("auto", "auto", False, True, False, False),  # torch's bf16 is faster beyond a few Mpx
        ("auto", "auto", False, True, True, True),  # bf16 turned off: fp32 either way
        ("auto", "fp32", False, True, False, True),
        ("cpu", "auto", True, False, False, True),  # the CPU asked for, a GPU or not
        ("auto", "auto", True, False, False, False),  # auto would take the GPU: torch
        ("cuda", "fp32", True, False, False, False),
        ("auto", "bf16", False, False, False, False),  # bf16 runs on torch only
    ],
)
def test_onnx_is_faster_where_torch_would_run_fp32_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
    device: str,
    precision: str,
    gpu: bool,
    bf16_path: bool,
    no_bf16_env: bool,
    faster: bool,
) -> None:
    monkeypatch.setattr(network_module, "cuda_device_present", lambda: gpu)
    monkeypatch.setattr(network_module, "cpu_has_bf16_path", lambda: bf16_path)
    if no_bf16_env:
        monkeypatch.setenv("FOOTPRINT_NO_BF16", "1")
    else:
        monkeypatch.delenv("FOOTPRINT_NO_BF16", raising=False)
    why = network_module.onnx_is_faster(device, precision)
    assert (why is not None) is faster
    if why is not None:
        assert "--runtime torch keeps torch" in why


def test_auto_runs_a_pts_own_export_where_it_is_faster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` with a .pt runs the .onnx beside it on ONNX Runtime where that is faster, but
    only while the export was made from this very file: a model changed since, or an export
    that does not record its source, runs on torch."""
    from engine.events import RecordingProgress
    from engine.models.modelfile import load_model
    from engine.models.onnxfile import exported_from, file_sha256

    pt = _model_file(tmp_path)
    onnx = pt.with_suffix(".onnx")
    export(ExportConfig(model=str(pt), output=str(onnx)), NullProgress())
    assert exported_from(read_onnx(onnx)[0]) == file_sha256(pt)

    def opened(faster: bool) -> tuple[str, list[str]]:
        reason = "a test's reason" if faster else None
        monkeypatch.setattr(network_module, "onnx_is_faster", lambda device, precision: reason)
        progress = RecordingProgress()
        network, _ = open_network(str(pt), "auto", "auto", "auto", progress)
        return network.runtime, progress.messages

    runtime, messages = opened(True)
    assert runtime == "onnx" and any("a test's reason" in m for m in messages)
    assert opened(False)[0] == "torch"
    forced, _ = open_network(str(pt), "torch", "cpu", "auto", NullProgress())
    assert forced.runtime == "torch"

    model, spec = load_model(pt)
    save_model(pt, model, dataclasses.replace(spec, threshold=0.7), overwrite=True)
    runtime, messages = opened(True)  # the .pt changed since the export: a stale export
    assert runtime == "torch"
    assert any("exported from another version" in m and "export it again" in m for m in messages)

    export_onnx(model, spec, output_stride(model), onnx, overwrite=True)  # no source recorded
    runtime, messages = opened(True)
    assert runtime == "torch" and not any("ONNX" in m for m in messages)


def test_a_missing_pt_beside_its_export_is_reported_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The faster-export check must not turn a missing model into an internal error."""
    pt = _model_file(tmp_path)
    export(ExportConfig(model=str(pt), output=str(pt.with_suffix(".onnx"))), NullProgress())
    pt.unlink()
    monkeypatch.setattr(network_module, "onnx_is_faster", lambda device, precision: "faster")
    with pytest.raises(ModelFileError, match="does not exist"):
        open_network(str(pt), "auto", "auto", "auto", NullProgress())


@pytest.mark.parametrize(
    ("features", "expected"),
    [({"AVX512BF16": False}, False), ({"AVX512BF16": True}, True), ({}, True)],
)
def test_the_bf16_path_is_read_from_numpys_cpu_features(
    monkeypatch: pytest.MonkeyPatch, features: dict[str, bool], expected: bool
) -> None:
    import importlib
    import types

    umath = types.SimpleNamespace(__cpu_features__=features)
    real = importlib.import_module
    monkeypatch.setattr(
        importlib, "import_module", lambda name, *a: umath if name.endswith("umath") else real(name)
    )
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert network_module.cpu_has_bf16_path() is expected
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # torch limited to AVX2: no bf16 path
    assert network_module.cpu_has_bf16_path() is False


def test_no_gpu_driver_means_no_gpu() -> None:
    """Where no NVIDIA driver library loads (this machine, CI), no GPU; never an error."""
    import ctypes.util

    if ctypes.util.find_library("cuda"):
        pytest.skip("an NVIDIA driver library is installed here")
    assert network_module.cuda_device_present() is False
