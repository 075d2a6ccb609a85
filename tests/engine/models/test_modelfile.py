"""Model files: round trip, refusing bad files, band checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.errors import ModelFileError, OutputError
from engine.models.modelfile import (
    FORMAT,
    ModelSpec,
    check_bands,
    load_model,
    read_spec,
    save_model,
    spec_to_json,
)
from engine.models.registry import create_model
from tests.engine import fuzz


class Foreign:
    """A class torch.load(weights_only=True) must refuse to build."""

    def __init__(self) -> None:
        self.value = 1


def make_spec(**changes: object) -> ModelSpec:
    values: dict[str, object] = dict(
        architecture="compact",
        encoder="none",
        in_channels=3,
        classes=("building", "contact"),
        bands=(3, 2, 1),
        mean=(10.0, 20.0, 30.0),
        std=(1.0, 2.0, 3.0),
        tile_size=64,
        resolution_m=0.3,
        threshold=0.42,
        metrics={"iou": 0.8},
        engine_version="0.1.0",
    )
    values.update(changes)
    return ModelSpec(**values)  # type: ignore[arg-type]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module, ModelSpec]:
    torch.manual_seed(0)
    model = create_model("compact", "none", 3, 2).eval()
    with torch.no_grad():  # non-default BatchNorm statistics must survive too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    spec = make_spec()
    path = tmp_path / "model.pt"
    assert save_model(path, model, spec) == path
    return path, model, spec


def test_round_trip_gives_same_outputs(saved: tuple[Path, torch.nn.Module, ModelSpec]) -> None:
    path, model, spec = saved
    loaded, loaded_spec = load_model(path)
    assert loaded_spec == spec and read_spec(path) == spec
    assert not loaded.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left


def test_a_narrow_decoder_round_trips(tmp_path: Path) -> None:
    """The decoder's widths are in the spec: the file loads into the same network."""
    channels = (32, 16, 16, 8, 8)
    model = create_model("unet", "resnet18", 3, 2, decoder_channels=channels).eval()
    spec = make_spec(architecture="unet", encoder="resnet18", decoder_channels=channels)
    path = save_model(tmp_path / "narrow.pt", model, spec)
    loaded, loaded_spec = load_model(path)
    assert loaded_spec.decoder_channels == channels
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_save_refuses_existing_file(saved: tuple[Path, torch.nn.Module, ModelSpec]) -> None:
    path, model, spec = saved
    with pytest.raises(OutputError, match="overwrite"):
        save_model(path, model, spec)
    save_model(path, model, make_spec(threshold=0.6), overwrite=True)
    assert read_spec(path).threshold == 0.6


def test_missing_corrupt_and_truncated_files(
    saved: tuple[Path, torch.nn.Module, ModelSpec], tmp_path: Path
) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "none.pt")
    text = tmp_path / "text.pt"
    text.write_text("hello")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(saved[0].read_bytes()[:2000])
    for bad in (text, truncated):
        for reader in (read_spec, load_model):
            with pytest.raises(ModelFileError, match="is not a Footprint model file.*`train`"):
                reader(bad)
    with pytest.raises(ModelFileError) as caught:
        load_model(text)
    assert "(not a PyTorch archive)" in str(caught.value)  # not torch's bare "(104)"
    with pytest.raises(ModelFileError) as caught:
        load_model(truncated)  # a zip cut short: torch's own reason, not "not an archive"
    assert "not a PyTorch archive" not in str(caught.value)


def test_an_unreadable_model_file_says_why(
    saved: tuple[Path, torch.nn.Module, ModelSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = saved[0]
    real_open = open

    def refusing(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", refusing)
    with pytest.raises(ModelFileError, match="Permission denied"):
        read_spec(path)


def test_foreign_torch_files(tmp_path: Path) -> None:
    plain = tmp_path / "state.pt"
    torch.save(create_model("compact", "none", 3, 1).state_dict(), plain)
    with pytest.raises(ModelFileError, match="no 'format' key"):
        load_model(plain)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ModelFileError, match="not a Footprint model file"):
        read_spec(tensor)
    code = tmp_path / "code.pt"
    torch.save({"format": FORMAT, "payload": Foreign()}, code)  # never unpickled
    with pytest.raises(ModelFileError, match="not a Footprint model file"):
        load_model(code)


def _payload(spec: ModelSpec, state: dict[str, torch.Tensor], version: object = 1) -> dict:
    return {
        "format": FORMAT,
        "format_version": version,
        "spec": spec_to_json(spec),
        "state_dict": state,
    }


def test_newer_format_and_mismatched_weights(tmp_path: Path) -> None:
    state = create_model("compact", "none", 3, 2).state_dict()
    newer = tmp_path / "newer.pt"
    torch.save(_payload(make_spec(), state, version=2), newer)
    with pytest.raises(ModelFileError, match="newer.*update Footprint"):
        read_spec(newer)
    for odd in ("1", None, 0, True):  # damaged, not newer
        path = tmp_path / "odd.pt"
        torch.save(_payload(make_spec(), state, version=odd), path)
        with pytest.raises(ModelFileError, match=f"no readable model format version \\({odd!r}\\)"):
            read_spec(path)
    wrong = tmp_path / "wrong.pt"
    spec = make_spec(in_channels=4, bands=(1, 2, 3, 4), mean=(0.0,) * 4, std=(1.0,) * 4)
    torch.save(_payload(spec, state), wrong)
    assert read_spec(wrong) == spec  # the spec alone is fine
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(wrong)
    unknown = tmp_path / "unknown.pt"
    torch.save(_payload(make_spec(architecture="hypernet"), state), unknown)
    with pytest.raises(ModelFileError, match="cannot build"):
        load_model(unknown)
    inconsistent = tmp_path / "inconsistent.pt"
    torch.save(_payload(make_spec(bands=(1, 2)), state), inconsistent)
    with pytest.raises(ModelFileError, match="inconsistent"):
        read_spec(inconsistent)


def test_check_bands() -> None:
    spec = make_spec()  # trained on bands 3, 2, 1
    assert check_bands(spec, 4) == (3, 2, 1)
    assert check_bands(spec, 4, (4, 3, 2)) == (4, 3, 2)
    with pytest.raises(ModelFileError) as err:
        check_bands(spec, 2)
    assert "trained on 3 bands (3, 2, 1) but the raster has 2" in str(err.value)
    with pytest.raises(ModelFileError, match="2 were chosen.*--bands 3 2 1"):
        check_bands(spec, 4, (1, 2))
    with pytest.raises(ModelFileError, match="raster has 3, without band.* 4.*--bands"):
        check_bands(spec, 3, (4, 2, 1))
    four = make_spec(in_channels=4, bands=(1, 2, 3, 5), mean=(0.0,) * 4, std=(1.0,) * 4)
    with pytest.raises(ModelFileError, match="without band.* 5.*--bands 1 2 3 4"):
        check_bands(four, 4)


@pytest.mark.parametrize("case", list(fuzz.CRAFTED_SPECS))
def test_crafted_specs_are_refused_naming_the_field(tmp_path: Path, case: str) -> None:
    changes = fuzz.CRAFTED_SPECS[case]
    path = fuzz.make_crafted_model(tmp_path / "crafted.pt", changes)[0]
    ((name, value),) = changes.items()
    for reader in (read_spec, load_model):
        with pytest.raises(ModelFileError) as caught:
            reader(path)
        message = str(caught.value)
        assert str(path) in message and "damaged or not a Footprint model" in message
        assert f"its {name} is" in message and "allowed" in message, message
        assert "retrain" in message


def test_specs_at_the_edges_of_the_ranges_load(tmp_path: Path) -> None:
    edges = {"threshold": 0.0, "seed_threshold": 1.0, "resolution_m": 1000, "tile_size": 16}
    path = fuzz.make_crafted_model(tmp_path / "edge.pt", edges)[0]
    spec = read_spec(path)
    assert (spec.threshold, spec.seed_threshold, spec.resolution_m) == (0.0, 1.0, 1000)


def test_a_spec_nested_too_deep_is_unreadable_not_an_internal_error(tmp_path: Path) -> None:
    """JSON nested 100,000 deep (Python's parser gives up): a clear ModelFileError."""
    path = fuzz.make_model(tmp_path / "deep.pt")[0]
    payload = torch.load(path, weights_only=True)
    payload["spec"] = '{"a": ' * 100_000 + "1" + "}" * 100_000
    torch.save(payload, path)
    for reader in (read_spec, load_model):
        with pytest.raises(ModelFileError, match="unreadable model description"):
            reader(path)
