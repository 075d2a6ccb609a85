"""Fine-tuning: training that starts from a Footprint model file instead of fresh weights.

``train --init-model MODEL`` keeps what the model file says about the network and its inputs:
architecture, encoder, decoder attention, classes (the separation class), input bands and their
normalisation. The new imagery must fit them (same band count and data type); what differs is
said in the error. ``--freeze-encoder-epochs N`` trains only the decoder for the first N
epochs, so a few labelled buildings adapt the head before they can disturb the encoder (its
batch-norm statistics included); ``--keep-batch-norm`` keeps every batch-norm statistic of the
starting model (small data: a few windows would re-estimate them badly).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from engine.config import TrainConfig
from engine.errors import ConfigError
from engine.events import Progress
from engine.geo.normalize import BandStats
from engine.models.modelfile import ModelSpec, load_model, read_spec


def initial_spec(config: TrainConfig) -> ModelSpec | None:
    """The spec of ``config.init_model`` (None when training starts from scratch).

    Raises:
        ConfigError: an ONNX export given (:func:`check_pytorch_files`).
    """
    if not config.init_model:
        return None
    check_pytorch_files(starting=config.init_model)
    return read_spec(config.init_model)


def check_pytorch_files(starting: str | None = None, output: str | None = None) -> None:
    """Refuse an ONNX file as the model training starts from or writes: training reads and
    writes PyTorch model files (.pt); ``export`` makes the .onnx from one.

    Raises:
        ConfigError: naming the file and what to give instead.
    """
    if starting and Path(starting).suffix.lower() == ".onnx":
        raise ConfigError(
            f"{starting} is an ONNX export, which detection runs but training cannot start"
            " from; give the .pt model file it was exported from (or the starter model)."
        )
    if output and Path(output).suffix.lower() == ".onnx":
        raise ConfigError(
            f"Output {output}: training writes a PyTorch model file; name it .pt (e.g."
            f" {Path(output).with_suffix('.pt').name}) and make its .onnx with `python -m"
            " engine export` (Processing: Export model to ONNX)."
        )


def finetune_config(config: TrainConfig, spec: ModelSpec, progress: Progress) -> TrainConfig:
    """``config`` with the network of ``spec``: architecture, encoder, attention, classes and
    bands come from the model file; its own weights replace any encoder weights.

    Raises:
        ConfigError: bands chosen that are not the model's; a model that training cannot
            start from (:func:`check_trainable`).
    """
    check_trainable(spec, str(config.init_model))
    if config.bands and tuple(config.bands) != tuple(spec.bands):
        raise ConfigError(
            f"The model {config.init_model} was trained on bands {list(spec.bands)}, not"
            f" {list(config.bands)}; leave the bands out to use the model's."
        )
    changed = [
        f"{name} {getattr(config, name)!r} -> {value!r}"
        for name, value in (
            ("architecture", spec.architecture),
            ("encoder", spec.encoder),
            ("decoder_attention", spec.decoder_attention),
            ("decoder_channels", spec.decoder_channels),
            ("separation", "separation" in spec.classes),
        )
        if getattr(config, name) != value
    ]
    progress.log(
        f"Fine-tuning {config.init_model} ({spec.architecture}/{spec.encoder}, classes"
        f" {', '.join(spec.classes)}, bands {list(spec.bands)}); its normalisation is kept"
        + (f"; from the model file: {', '.join(changed)}." if changed else ".")
    )
    return replace(
        config,
        architecture=spec.architecture,
        encoder=spec.encoder,
        decoder_attention=spec.decoder_attention,
        decoder_channels=spec.decoder_channels,
        separation="separation" in spec.classes,
        bands=tuple(spec.bands),
        encoder_weights=None,
    )


def check_trainable(spec: ModelSpec, source: str) -> None:
    """Raise ConfigError for a model with a contact class (made before the separation class):
    it still detects, but training no longer learns that class."""
    if "contact" in spec.classes:
        raise ConfigError(
            f"The model {source} has a contact class (it was made before Footprint learnt the"
            " separation class): it still detects buildings, but training can no longer start"
            " from it. Start from the starter model instead (Improve's default; command line:"
            " starter), or train a new model."
        )


def kept_stats(spec: ModelSpec) -> BandStats:
    """The model's input normalisation, to keep while fine-tuning."""
    return BandStats(tuple(spec.mean), tuple(spec.std))


def check_fits(spec: ModelSpec, bands: int, dtype: str, source: str) -> None:
    """Raise ConfigError when the imagery cannot feed the model: another band count or type."""
    if bands != spec.in_channels:
        raise ConfigError(
            f"The model {source} takes {spec.in_channels} band(s) but the training rasters have"
            f" {bands}; fine-tune on imagery with the model's bands, or train a new model."
        )
    if dtype != spec.input_dtype:
        raise ConfigError(
            f"The model {source} was trained on {spec.input_dtype} imagery but the training"
            f" rasters are {dtype}: its normalisation would not fit; train a new model."
        )


def load_initial_weights(model: nn.Module, path: str) -> None:
    """Copy every weight of the model file ``path`` into ``model`` (the same network)."""
    source, _ = load_model(path)
    model.load_state_dict(source.state_dict())


def set_encoder_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze the encoder's weights (``model.encoder``).

    Raises:
        ConfigError: the model has no separate encoder (the compact U-Net).
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(
            "This model has no separate encoder to freeze (the compact U-Net); drop"
            " --freeze-encoder-epochs."
        )
    for parameter in encoder.parameters():
        parameter.requires_grad_(trainable)


def freeze_statistics(model: nn.Module, whole: bool) -> None:
    """Put batch-norm layers in evaluation mode after ``model.train()``: their running
    statistics stay the starting model's. ``whole``: every layer; else only the encoder's, and
    only while its weights are frozen (a frozen encoder is frozen entirely)."""
    if whole:
        parts: list[nn.Module] = [model]
    else:
        encoder = getattr(model, "encoder", None)
        frozen = isinstance(encoder, nn.Module) and not any(
            p.requires_grad for p in encoder.parameters()
        )
        parts = [encoder] if frozen and isinstance(encoder, nn.Module) else []
    for part in parts:
        for module in part.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
