"""The model file: weights plus everything inference needs, loaded without running code.

Format: ``torch.save`` of a dict ``{"format": "footprint-model", "format_version": 1,
"spec": <JSON text of ModelSpec>, "state_dict": {...tensors...}}``, read back with
``torch.load(weights_only=True)``. The spec is JSON text (not pickled objects) so any reader
can parse it; the state dict holds CPU tensors of the bare network (no DDP ``module.``
prefix). A reader refuses a ``format_version`` newer than :data:`FORMAT_VERSION` and ignores
spec fields it does not know (so fields can be added without a new version).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, ModelFileError
from engine.geo.outputs import atomic_output
from engine.inference.network import torch_installed as _has_torch
from engine.models.spec import (
    INPUT_DTYPES,
    SPEC_RANGES,
    ModelSpec,
    check_bands,
    check_spec,
    spec_from_json,
    spec_to_json,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INPUT_DTYPES",
    "SPEC_RANGES",
    "ModelSpec",
    "check_bands",
    "check_spec",
    "load_model",
    "read_spec",
    "save_model",
    "spec_from_json",
    "spec_to_json",
]

FORMAT = "footprint-model"
FORMAT_VERSION = 1


def save_model(
    path: str | os.PathLike[str], model: nn.Module, spec: ModelSpec, overwrite: bool = False
) -> Path:
    """Write ``model``'s weights and ``spec`` to ``path`` atomically; return the path.

    Raises:
        OutputError: the file exists and ``overwrite`` is False, or it cannot be written.
    """
    import torch

    bare = getattr(model, "module", model)  # DistributedDataParallel wraps the network
    # a standard layout whatever the model was trained in (channels-last, engine.train)
    state = {
        k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
        for k, v in bare.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": spec_to_json(spec),
        "state_dict": state,
    }
    with atomic_output(path, overwrite) as tmp:
        torch.save(payload, tmp)
    return Path(path).expanduser().absolute()


#: The first bytes of a zip archive, which torch.save writes.
ZIP_START = b"PK\x03\x04"


def _short(err: BaseException) -> str:
    from engine.models.registry import short_reason

    return short_reason(err)


def _read(path: str | os.PathLike[str], mmap: bool) -> tuple[dict[str, Any], ModelSpec]:
    """The file's payload and spec, checked."""
    import torch

    file = Path(path).expanduser()
    hint = "give a .pt written by `train`"
    if file.is_dir():
        raise ModelFileError(f"Model file {file} is a folder; {hint}.")
    if not file.is_file():
        raise ModelFileError(f"Model file {file} does not exist; {hint}.")
    damaged = (
        "if it is one, it is damaged or incomplete, e.g. a broken download or copy: copy it again"
    )
    try:
        with open(file, "rb") as stream:
            start = stream.read(len(ZIP_START))
        # torch.save writes a zip archive; torch.load's error on another file is a bare byte
        # value such as "(101)"
        if start != ZIP_START:
            raise ModelFileError(
                f"{file} is not a Footprint model file (not a PyTorch archive); {hint} ({damaged})."
            )
        payload = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except ModelFileError:
        raise
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise ModelFileError(
            f"{file} is not a Footprint model file ({_short(err)}); {hint} ({damaged})."
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        what = "no 'format' key" if isinstance(payload, dict) else type(payload).__name__
        raise ModelFileError(
            f"{file} is a PyTorch file but not a Footprint model file ({what}); {hint}."
        )
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(
            f"{file} has no readable model format version ({version!r}): it is damaged or not"
            f" a Footprint model file; {hint}."
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{file} has model format version {version}, newer than this engine reads"
            f" ({FORMAT_VERSION}); update Footprint to use it."
        )
    spec_text = payload.get("spec")
    if not isinstance(spec_text, str) or not isinstance(payload.get("state_dict"), dict):
        raise ModelFileError(f"{file} lacks its spec or weights; {hint}.")
    return payload, spec_from_json(spec_text, str(file))


def read_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """The spec of a model file (weights are memory-mapped, not read).

    An ``.onnx`` file's spec is read from its metadata (:mod:`engine.models.onnxfile`), and so
    is a ``.pt``'s where torch is not installed and its export lies beside it.

    Raises:
        ModelFileError: missing, corrupt, foreign, or newer-format file.
    """
    beside = Path(path).with_suffix(".onnx")
    if Path(path).suffix.lower() == ".onnx" or (not _has_torch() and beside.is_file()):
        from engine.models.onnxfile import read_onnx_spec

        return read_onnx_spec(beside)  # without torch: the .pt's export beside it
    try:
        return _read(path, mmap=True)[1]
    except ModelFileError as err:
        if err.__cause__ is None:
            raise
    return _read(path, mmap=False)[1]  # a damaged archive: torch's error without mapping


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the network of a model file, load its weights, put it in eval mode on ``device``.

    Raises:
        ModelFileError: missing, corrupt, foreign or newer-format file, an architecture this
            engine does not know, or weights that do not fit the spec.
    """
    from engine.models.registry import create_model

    payload, spec = _read(path, mmap=False)
    try:
        model = create_model(
            spec.architecture,
            spec.encoder,
            spec.in_channels,
            len(spec.classes),
            decoder_attention=spec.decoder_attention,
            decoder_channels=spec.decoder_channels,
        )
    except ConfigError as err:
        raise ModelFileError(
            f"{path} needs a model this engine cannot build ({err}); update Footprint."
        ) from err
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, KeyError, ValueError) as err:
        raise ModelFileError(
            f"The weights in {path} do not fit its {spec.architecture}/{spec.encoder} spec"
            f" ({_short(err)}); the file is damaged; train the model again."
        ) from err
    return model.to(device).eval(), spec
