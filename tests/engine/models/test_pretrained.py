"""Packaged ImageNet weights: the mapping onto timm's network reproduces the package's own
network, smp's encoder gets them, and encoders without them are refused clearly."""

from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from engine.models.pretrained import (
    OFFLINE,
    imagenet_normalisation,
    map_by_position,
    package_file,
    timm_state_dict,
)
from engine.models.registry import create_model

#: Input side each package's own network was built for (its static "same" padding).
SIDES = {
    "tu-tf_efficientnet_lite0": 224,
    "tu-tf_efficientnet_lite1": 240,
    "tu-tf_efficientnet_lite2": 260,
}


@pytest.mark.parametrize("encoder", sorted(OFFLINE))
def test_mapped_network_gives_the_packages_logits(encoder: str) -> None:
    timm = pytest.importorskip("timm")
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    name = OFFLINE[encoder].timm_name
    theirs = lite.EfficientNet.from_name(name.replace("tf_", "").replace("_", "-"))
    theirs.load_state_dict(torch.load(package_file(OFFLINE[encoder]), weights_only=True))
    ours = timm.create_model(name, pretrained=False)
    ours.load_state_dict(timm_state_dict(encoder))
    torch.manual_seed(0)
    x = torch.rand(2, 3, SIDES[encoder], SIDES[encoder]) * 2 - 1
    with torch.no_grad():
        expected, got = theirs.eval()(x), ours.eval()(x)
    assert expected.shape == got.shape == (2, 1000)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert expected.std() > 0.1  # real logits, not a degenerate output


def test_unet_encoder_holds_the_imagenet_features() -> None:
    timm = pytest.importorskip("timm")
    encoder = "tu-tf_efficientnet_lite0"
    model = create_model("unet", encoder, 3, 2, encoder_weights="imagenet").eval()
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    reference.load_state_dict(timm_state_dict(encoder))
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        deepest = model.encoder(x)[-1]
        expected = reference.blocks(reference.bn1(reference.conv_stem(x)))
    torch.testing.assert_close(deepest, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bands", [1, 4])
def test_other_band_counts_adapt_the_first_convolution_as_smp_does(bands: int) -> None:
    rgb = timm_state_dict("tu-tf_efficientnet_lite0")["conv_stem.weight"]
    model = create_model("unet", "tu-tf_efficientnet_lite0", bands, 1, encoder_weights="imagenet")
    stem = model.encoder.state_dict()["model.conv_stem.weight"]
    assert stem.shape == (rgb.shape[0], bands, *rgb.shape[2:])
    if bands == 1:
        torch.testing.assert_close(stem[:, 0], rgb.sum(1))
    else:  # RGB filters repeated over the bands, scaled by 3 / bands
        torch.testing.assert_close(stem[:, 3], rgb[:, 0] * 3 / bands)


def test_normalisation_is_the_pretrained_configs() -> None:
    assert imagenet_normalisation("tu-tf_efficientnet_lite0") == ((0.5,) * 3, (0.5,) * 3)


def test_encoders_without_packaged_weights_are_refused_with_the_list() -> None:
    with pytest.raises(ConfigError, match="tu-tf_efficientnet_lite0") as err:
        create_model("unet", "resnet18", 3, 1, encoder_weights="imagenet")
    assert "resnet18" in str(err.value) and "--encoder-weights FILE" in str(err.value)


def test_mapping_refuses_another_network() -> None:
    source = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    with pytest.raises(ConfigError, match="another network"):
        map_by_position(source, {"x.weight": torch.zeros(3, 3), "x.bias": torch.zeros(3)}, "w")
    with pytest.raises(ConfigError, match="tensors where the network has"):
        map_by_position(source, {"x.weight": torch.zeros(2, 3)}, "w")
