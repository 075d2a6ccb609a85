"""The model file: weights plus everything inference needs, loaded without running code.

Format: ``torch.save`` of a dict ``{"format": "footprint-model", "format_version": 1,
"spec": <JSON text of ModelSpec>, "state_dict": {...tensors...}}``, read back with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model and apply it to new imagery."""

    architecture: str
    encoder: str
    in_channels: int
    classes: tuple[str, ...]  # channel order of the logits; ("building",) or ("building", "contact")
    bands: tuple[int, ...]  # 1-based input bands, in order
    mean: tuple[float, ...]  # per input band, in input units
    std: tuple[float, ...]
    tile_size: int
    resolution_m: float  # ground size of a pixel side the model was trained at
    threshold: float = 0.5  # decision threshold on building probability chosen on validation
    decoder_attention: bool = False
    input_dtype: str = "uint8"
    metrics: dict[str, float] = field(default_factory=dict)
    engine_version: str = ""
