"""Model registry: names, the compact U-Net, attention, tile sizes, local encoder weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.config import ARCHITECTURES
from engine.errors import ConfigError
from engine.models.registry import (
    architectures,
    check_tile_size,
    create_model,
    encoders,
    list_models,
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_unknown_architecture_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        create_model("unetx", "resnet34", 3, 1)
    for name in ("unet", "unetplusplus", "fpn", "deeplabv3plus", "segformer", "dpt", "compact"):
        assert name in str(err.value)


def test_unknown_encoder_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        create_model("unet", "resnet35", 3, 1)
    assert "resnet34" in str(err.value) and "efficientnet-b0" in str(err.value)
    assert "tu-" in str(err.value)


def test_registry_follows_smp() -> None:
    import segmentation_models_pytorch as smp

    assert set(smp.MODEL_ARCHITECTURES_MAPPING) | {"compact"} == set(architectures())
    assert set(architectures()) == set(ARCHITECTURES)  # the list the dialogs offer
    assert "resnet34" in encoders()
    listed = list_models()
    assert listed["architectures"] == architectures() and listed["encoders"] == encoders()


@pytest.mark.parametrize("in_channels", [1, 2, 3, 5])
def test_compact_model_is_small_and_takes_any_band_count(in_channels: int) -> None:
    model = create_model("compact", "ignored", in_channels, 2)
    assert 25_000 <= n_params(model) <= 35_000
    out = model(torch.zeros(2, in_channels, 36, 36))
    assert out.shape == (2, 2, 36, 36)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("architecture", [a for a in architectures() if a != "compact"])
def test_every_smp_architecture_builds(architecture: str) -> None:
    encoder = "tu-vit_tiny_patch16_224" if architecture == "dpt" else "resnet18"
    model = create_model(architecture, encoder, 4, 2)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 4


def test_decoder_attention() -> None:
    model = create_model("unet", "resnet18", 3, 1, decoder_attention=True)
    assert any("SCSE" in type(m).__name__ for m in model.modules())
    plain = create_model("unet", "resnet18", 3, 1)
    assert not any("SCSE" in type(m).__name__ for m in plain.modules())
    with pytest.raises(ConfigError, match="unet, unetplusplus"):
        create_model("fpn", "resnet18", 3, 1, decoder_attention=True)


def _decoder_widths(model: torch.nn.Module) -> list[int]:
    """Output channels of the decoder's blocks, deepest first."""
    return [block.conv2[0].out_channels for block in model.decoder.blocks]  # type: ignore[union-attr,index]


def test_decoder_channels() -> None:
    assert _decoder_widths(create_model("unet", "resnet18", 3, 2)) == [256, 128, 64, 32, 16]
    narrow = create_model("unet", "resnet18", 3, 2, decoder_channels=(128, 64, 32, 16, 8))
    assert _decoder_widths(narrow) == [128, 64, 32, 16, 8]
    assert narrow(torch.zeros(1, 3, 64, 64)).shape == (1, 2, 64, 64)
    # with the packaged ImageNet encoder too
    lite = create_model(
        "unet",
        "tu-tf_efficientnet_lite0",
        3,
        2,
        encoder_weights="imagenet",
        decoder_channels=(64, 32, 16, 16, 8),
    )
    assert _decoder_widths(lite) == [64, 32, 16, 16, 8]
    with pytest.raises(ConfigError, match="5 positive widths.*got 64 32"):
        create_model("unet", "resnet18", 3, 2, decoder_channels=(64, 32))
    with pytest.raises(ConfigError, match="unet, unetplusplus, manet only, not fpn"):
        create_model("fpn", "resnet18", 3, 2, decoder_channels=(128, 64, 32, 16, 8))


@pytest.mark.parametrize(
    ("architecture", "encoder", "tile", "nearest"),
    [
        ("unet", "resnet34", 100, 96),
        ("unet", "resnet34", 120, 128),
        ("compact", "none", 30, 32),
        ("pan", "resnet18", 64, 128),  # a multiple of its stride 16, but too small for PAN
        ("dpt", "tu-vit_tiny_patch16_224", 256, 224),  # a ViT takes one size only
    ],
)
def test_tile_size_error_names_nearest_valid_size(
    architecture: str, encoder: str, tile: int, nearest: int
) -> None:
    with pytest.raises(ConfigError, match=f"--tile-size {nearest}\\b"):
        check_tile_size(architecture, encoder, tile)
    check_tile_size(architecture, encoder, nearest)


def test_valid_tile_sizes_pass() -> None:
    for arch, enc, tile in [
        ("unet", "resnet34", 256),
        ("compact", "none", 64),
        ("deeplabv3plus", "resnet18", 48),
        ("segformer", "mit_b0", 64),
    ]:
        check_tile_size(arch, enc, tile)
    with pytest.raises(ConfigError, match="architecture"):
        check_tile_size("nope", "resnet34", 256)


def test_encoder_weights_from_local_file(tmp_path: Path) -> None:
    source: Any = create_model("unet", "resnet18", 3, 1)
    state = {f"encoder.{k}": v for k, v in source.encoder.state_dict().items()}
    state["encoder.fc.weight"] = torch.zeros(10, 512)  # a classifier head is dropped
    path = tmp_path / "enc.pt"
    torch.save(state, path)
    model: Any = create_model("unet", "resnet18", 3, 1, encoder_weights=str(path))
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key
    four: Any = create_model("fpn", "resnet18", 4, 1, encoder_weights=str(path))
    weight = four.encoder.conv1.weight
    assert weight.shape[1] == 4
    # smp's adaptation: bands cycle through the pretrained RGB kernels, scaled by 3/4.
    assert torch.allclose(weight[:, 3] * 4 / 3, source.encoder.conv1.weight[:, 0])


def test_encoder_weights_that_do_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "enc.pt"
    small: Any = create_model("unet", "resnet18", 3, 1)
    torch.save(small.encoder.state_dict(), path)
    with pytest.raises(ConfigError, match="missing") as err:
        create_model("unet", "resnet34", 3, 1, encoder_weights=str(path))
    assert "layer1.2" in str(err.value)
    bad = tmp_path / "bad.pt"
    bad.write_text("not a torch file")
    with pytest.raises(ConfigError, match="Cannot read encoder weights"):
        create_model("unet", "resnet18", 3, 1, encoder_weights=str(bad))
    with pytest.raises(ConfigError, match="does not exist|do not exist"):
        create_model("unet", "resnet18", 3, 1, encoder_weights=str(tmp_path / "none.pt"))
