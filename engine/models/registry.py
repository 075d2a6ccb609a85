"""Model registry: every segmentation-models-pytorch architecture, plus a compact U-Net.

:func:`create_model` builds a network by name. smp models are always built with
``encoder_weights=None`` (nothing is downloaded); pretrained encoder weights come from a local
file instead (a state dict saved with ``torch.save`` or a ``.safetensors`` file).
``"compact"`` is a small U-Net of our own (~30k parameters) for quick CPU runs and tests.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.nn import functional

from engine.errors import ConfigError
from engine.models.pretrained import IMAGENET, OFFLINE, imagenet_encoder_state

#: Our own architecture, beside smp's.
COMPACT = "compact"
#: Architectures whose decoder takes ``decoder_attention_type="scse"``.
ATTENTION_ARCHITECTURES = ("unet", "unetplusplus")
#: Architectures whose decoder takes one width per encoder stage as ``decoder_channels``.
CHANNEL_ARCHITECTURES = ("unet", "unetplusplus", "manet")
#: Encoder stages of smp's models (their default ``encoder_depth``): one decoder width each.
DECODER_STAGES = 5
#: Keys of a classifier head that an encoder checkpoint may carry and an encoder does not use.
HEAD_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.", "_fc.")


def smp_architectures() -> list[str]:
    """The architecture names smp knows, lower case."""
    return list(smp.MODEL_ARCHITECTURES_MAPPING)


def architectures() -> list[str]:
    """Every architecture :func:`create_model` accepts."""
    return [*smp_architectures(), COMPACT]


def encoders() -> list[str]:
    """Smp's named encoders (any timm model also works as ``tu-<timm name>``)."""
    return list(smp.encoders.get_encoder_names())


def list_models() -> dict[str, Any]:
    """Architectures and encoders, for ``train --list-models``."""
    return {
        "architectures": architectures(),
        "encoders": encoders(),
        "timm_encoders": "any timm model as tu-<name>, e.g. tu-resnet18, tu-convnext_tiny",
        "decoder_attention": list(ATTENTION_ARCHITECTURES),
        "decoder_channels": list(CHANNEL_ARCHITECTURES),
        "compact": "small U-Net of our own (8-16-32 channels, ~30k parameters) for quick CPU"
        " runs; its encoder name is ignored",
    }


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class CompactUNet(nn.Module):
    """A 3-stage U-Net (8, 16, 32 channels) with bilinear upsampling: ~30k parameters.

    Its output stride is 4 (two poolings); any input size works, multiples of 4 align best.
    """

    output_stride = 4

    def __init__(self, in_channels: int, classes: int, widths: tuple[int, int, int] = (8, 16, 32)):
        super().__init__()
        w1, w2, w3 = widths
        self.enc1 = ConvBlock(in_channels, w1)
        self.enc2 = ConvBlock(w1, w2)
        self.enc3 = ConvBlock(w2, w3)
        self.dec2 = ConvBlock(w3 + w2, w2)
        self.dec1 = ConvBlock(w2 + w1, w1)
        self.head = nn.Conv2d(w1, classes, 1)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return functional.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes, H, W) of an input (N, in_channels, H, W)."""
        s1 = self.enc1(x)
        s2 = self.enc2(functional.max_pool2d(s1, 2))
        s3 = self.enc3(functional.max_pool2d(s2, 2))
        d2 = self.dec2(torch.cat([self._up(s3, s2), s2], dim=1))
        d1 = self.dec1(torch.cat([self._up(d2, s1), s1], dim=1))
        logits: torch.Tensor = self.head(d1)
        return logits


def _check_names(architecture: str, encoder: str, decoder_attention: bool) -> str:
    """Validate the names; return the lower-case architecture."""
    arch = architecture.strip().lower()
    if arch not in architectures():
        raise ConfigError(
            f"Unknown architecture {architecture!r}; choose one of: {', '.join(architectures())}."
        )
    if decoder_attention and arch not in ATTENTION_ARCHITECTURES:
        raise ConfigError(
            f"Decoder attention (scSE) is available for {', '.join(ATTENTION_ARCHITECTURES)}"
            f" only, not {arch}; drop --decoder-attention or choose one of those."
        )
    if arch != COMPACT and not _known_encoder(encoder):
        raise ConfigError(
            f"Unknown encoder {encoder!r}; choose one of: {', '.join(encoders())}, or any timm"
            " model as tu-<name> (e.g. tu-resnet18)."
        )
    return arch


def _known_encoder(encoder: str) -> bool:
    if encoder in encoders():
        return True
    if encoder.startswith("tu-"):
        import timm

        return bool(timm.is_model(encoder[3:].split(".")[0]))
    return False


def check_decoder_channels(architecture: str, channels: tuple[int, ...]) -> None:
    """Refuse decoder widths the architecture cannot take (train checks before any data).

    Raises:
        ConfigError: naming the architectures that take them, or the count needed.
    """
    arch = architecture.strip().lower()
    if not channels:
        return
    if arch not in CHANNEL_ARCHITECTURES:
        raise ConfigError(
            f"Decoder channels can be chosen for {', '.join(CHANNEL_ARCHITECTURES)} only, not"
            f" {arch}; drop --decoder-channels or choose one of those."
        )
    if len(channels) != DECODER_STAGES or min(channels) < 1:
        raise ConfigError(
            f"--decoder-channels needs {DECODER_STAGES} positive widths, deepest first (e.g."
            f" 128 64 32 16 16), got {' '.join(map(str, channels))}."
        )


def _build(
    arch: str,
    encoder: str,
    in_channels: int,
    classes: int,
    attention: bool,
    channels: tuple[int, ...] = (),
) -> nn.Module:
    """The bare network (random weights)."""
    if arch == COMPACT:
        return CompactUNet(in_channels, classes)
    kwargs: dict[str, Any] = {}
    if attention:
        kwargs["decoder_attention_type"] = "scse"
    if channels:
        kwargs["decoder_channels"] = list(channels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model: nn.Module = smp.create_model(
                arch,
                encoder_name=encoder,
                encoder_weights=None,
                in_channels=in_channels,
                classes=classes,
                **kwargs,
            )
            return model
    except (ValueError, KeyError, TypeError, AssertionError, RuntimeError) as err:
        raise ConfigError(
            f"Cannot build {arch} with encoder {encoder}: {err}; choose another encoder."
        ) from err


def create_model(
    architecture: str,
    encoder: str,
    in_channels: int,
    classes: int,
    decoder_attention: bool = False,
    encoder_weights: str | None = None,
    decoder_channels: tuple[int, ...] = (),
) -> nn.Module:
    """Build a segmentation network that outputs ``classes`` logit channels.

    Args:
        architecture: an smp architecture (``unet``, ``fpn``, ...) or ``compact``.
        encoder: an smp encoder name (ignored for ``compact``).
        in_channels: input bands.
        classes: output channels.
        decoder_attention: scSE attention in the decoder (unet, unetplusplus).
        decoder_channels: the decoder's width per stage, deepest first (unet, unetplusplus,
            manet); empty: the architecture's default.
        encoder_weights: ``imagenet`` (weights packaged with the engine, see
            :mod:`engine.models.pretrained`), a local file of pretrained encoder weights, or
            None.

    Raises:
        ConfigError: unknown names, an impossible combination, or unusable weights.
    """
    if in_channels < 1 or classes < 1:
        raise ConfigError(
            f"A model needs >= 1 input and output channel, got {in_channels}/{classes}."
        )
    arch = _check_names(architecture, encoder, decoder_attention)
    channels = tuple(decoder_channels)
    check_decoder_channels(arch, channels)
    if encoder_weights is None:
        return _build(arch, encoder, in_channels, classes, decoder_attention, channels)
    if arch == COMPACT:
        raise ConfigError(
            "The compact model has no pretrained encoder; drop --encoder-weights, or choose an"
            f" encoder with packaged ImageNet weights ({', '.join(OFFLINE)})."
        )
    state = (
        imagenet_encoder_state(encoder)
        if encoder_weights == IMAGENET
        else read_state_dict(encoder_weights)
    )
    # Pretrained weights are for 3 bands: load them, then adapt the first convolution to
    # ``in_channels`` the way smp does for its own pretrained weights.
    model = _build(arch, encoder, 3, classes, decoder_attention, channels)
    load_encoder_weights(model, state, encoder_weights)
    if in_channels != 3:
        _adapt_first_conv(model.encoder, in_channels)  # type: ignore[arg-type]
    return model


def _adapt_first_conv(encoder: nn.Module, in_channels: int) -> None:
    """Give the encoder's first 3-band convolution ``in_channels`` inputs, keeping weights."""
    from segmentation_models_pytorch.encoders._utils import patch_first_conv

    setter = getattr(encoder, "set_in_channels", None)
    if callable(setter):
        setter(in_channels, pretrained=True)
    else:
        patch_first_conv(encoder, new_in_channels=in_channels, pretrained=True)


def short_reason(err: BaseException) -> str:
    """The telling line of a (often many-line) torch loading error."""
    text = str(err) or type(err).__name__
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:200]


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file (``torch.save`` state dict or ``.safetensors``).

    Raises:
        ConfigError: the file is missing, unreadable, or holds no tensors.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"Encoder weights file {file} does not exist; give a local .pt/.pth file."
        )
    try:
        if file.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(file))
        else:
            raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files
        raise ConfigError(
            f"Cannot read encoder weights {file} ({short_reason(err)}); give a state dict saved"
            " with torch.save(model.state_dict()) or a .safetensors file."
        ) from err
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not any(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ConfigError(f"Encoder weights {file} hold no state dict of tensors.")
    state = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    for prefix in ("module.", "encoder."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_encoder_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model.encoder``, strictly (classifier-head keys are dropped).

    Raises:
        ConfigError: keys missing or unexpected, or tensors of the wrong shape; the message
            lists them.
    """
    encoder: nn.Module = model.encoder  # type: ignore[assignment]
    own = encoder.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(HEAD_PREFIXES)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
        ):
            if keys:
                shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        raise ConfigError(
            f"Encoder weights {source} do not fit this encoder ({'; '.join(parts)}); give the"
            " state dict of the same encoder (keys like 'conv1.weight'; a prefix 'encoder.' or"
            " 'module.' is removed)."
        )
    encoder.load_state_dict(state, strict=False)


def output_stride(model: nn.Module) -> int:
    """The factor by which input sizes must be divisible."""
    own = getattr(model, "output_stride", None)
    if isinstance(own, int):
        return own
    encoder = getattr(model, "encoder", None)
    return int(getattr(encoder, "output_stride", 32))


def _forward(model: nn.Module, size: int, device: str) -> None:
    """Pass a (1, 3, size, size) input through ``model``; raises what the model raises."""
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device=device))


@functools.lru_cache(maxsize=64)
def _probe(architecture: str, encoder: str, device: str) -> nn.Module:
    """A 3-band model to try input sizes on (cached)."""
    with torch.device(device):
        return _build(architecture, encoder, 3, 1, False).eval()


@functools.lru_cache(maxsize=64)
def _any_probe(architecture: str, encoder: str) -> tuple[nn.Module, str]:
    """The probe on the meta device, or on the CPU where a model cannot be built on meta."""
    try:
        return _probe(architecture, encoder, "meta"), "meta"
    except Exception:  # some encoders call .item() while being built
        return _probe(architecture, encoder, "cpu"), "cpu"


@functools.lru_cache(maxsize=256)
def _tile_ok(architecture: str, encoder: str, tile: int) -> bool:
    """True when the network takes ``tile`` x ``tile`` inputs.

    The forward pass runs on the meta device (shapes only, no compute) and falls back to the
    CPU for models that cannot be built or run there.
    """
    model, device = _any_probe(_check_names(architecture, encoder, False), encoder)
    if tile % output_stride(model) != 0:
        return False
    try:
        _forward(model, tile, device)
    except NotImplementedError:
        return _tile_ok_cpu(architecture, encoder, tile)
    except Exception as err:  # a size an smp decoder or a timm encoder refuses
        if device == "meta" and "meta" in str(err).lower():
            return _tile_ok_cpu(architecture, encoder, tile)
        return False
    return True


def _tile_ok_cpu(architecture: str, encoder: str, tile: int) -> bool:
    try:
        _forward(_probe(architecture, encoder, "cpu"), tile, "cpu")
    except Exception:  # a size the network refuses
        return False
    return True


def check_tile_size(architecture: str, encoder: str, tile: int) -> None:
    """Raise ConfigError, naming the nearest valid size, when the network refuses ``tile``.

    A tile must be a multiple of the network's output stride (32 for most smp encoders, 4
    for ``compact``) and pass a forward pass (some decoders need a minimum size, ViT
    encoders a fixed one); the pass runs on the meta device where possible, so it is cheap.
    """
    if tile < 1:
        raise ConfigError(f"Tile size must be positive, got {tile}.")
    architecture = _check_names(architecture, encoder, False)
    if _tile_ok(architecture, encoder, tile):
        return
    model = _any_probe(architecture, encoder)[0]
    stride = output_stride(model)
    sizes = (getattr(m, "img_size", None) for m in model.modules())
    fixed = sorted({int(s[0]) for s in sizes if isinstance(s, tuple)})
    steps = range(1, max(tile // stride, 1) * 2 + 64)
    nearest = sorted((stride * k for k in steps), key=lambda n: (abs(n - tile), -n))
    for size in [*nearest[:48], *fixed]:
        if _tile_ok(architecture, encoder, size):
            raise ConfigError(
                f"Tile size {tile} does not fit {architecture}/{encoder} (it takes multiples of"
                f" {stride} above a minimum, or a fixed size); use --tile-size {size}."
            )
    raise ConfigError(
        f"Tile size {tile} does not fit {architecture}/{encoder}, and no size near it does;"
        " choose another architecture or encoder."
    )
