"""A model's spec: everything inference needs besides the weights, as JSON, checked.

Torch-free (the ONNX path and the plugin read it): :mod:`engine.models.modelfile` stores it in
a ``.pt`` file, :mod:`engine.models.onnxfile` in an ``.onnx`` file's metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.errors import ModelFileError


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model and apply it to new imagery."""

    architecture: str
    encoder: str
    in_channels: int
    # channel order of the logits: ("building",), ("building", "separation") or, from before
    # separation came, ("building", "contact")
    classes: tuple[str, ...]
    bands: tuple[int, ...]  # 1-based input bands, in order
    mean: tuple[float, ...]  # per input band, in input units
    std: tuple[float, ...]
    tile_size: int
    resolution_m: float  # ground size of a pixel side the model was trained at
    threshold: float = 0.5  # decision threshold on building probability chosen on validation
    contact_threshold: float = 0.5  # contact probability that splits buildings (validation)
    seed_threshold: float = 0.9  # building x (1 - separation) of a seed (validation)
    min_seed_m2: float = 1.0  # smaller seeds are dropped (validation)
    seed_erosion_m: float = 0.6  # seeds are eroded by this much first (validation)
    min_area_m2: float = 4.0  # smaller buildings join a neighbour or are dropped (validation)
    decoder_attention: bool = False
    decoder_channels: tuple[int, ...] = ()  # empty: the architecture's default
    input_dtype: str = "uint8"
    metrics: dict[str, float] = field(default_factory=dict)
    engine_version: str = ""


#: Allowed range (inclusive) of each number of a spec; per band for ``bands``, ``mean`` and
#: ``std``. A file outside them is damaged or foreign (a tiny resolution would resample a
#: raster thousands of times larger, a NaN fail deep inside the work).
SPEC_RANGES: dict[str, tuple[float, float]] = {
    "in_channels": (1, 256),
    "bands": (1, 65_535),
    "mean": (-1e12, 1e12),
    "std": (1e-12, 1e12),
    "tile_size": (16, 8192),
    "resolution_m": (0.001, 1000.0),
    "threshold": (0.0, 1.0),
    "contact_threshold": (0.0, 1.0),
    "seed_threshold": (0.0, 1.0),
    "min_seed_m2": (0.0, 10_000.0),
    "seed_erosion_m": (0.0, 100.0),
    "min_area_m2": (0.0, 1_000_000.0),
}
#: Fields holding whole numbers.
_INTEGERS = {"in_channels", "bands", "tile_size"}
#: Data types a model may have been trained on (those the engine reads).
INPUT_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def _spec_error(source: str, name: str, value: object, allowed: str) -> ModelFileError:
    return ModelFileError(
        f"{source}: the model file is damaged or not a Footprint model: its {name} is"
        f" {value!r}, allowed {allowed}; retrain the model or download it again."
    )


def _check_number(source: str, name: str, value: object) -> None:
    """Raise ModelFileError unless ``value`` is a number of field ``name`` in its range."""
    low, high = SPEC_RANGES[name]
    whole = name in _INTEGERS
    allowed = f"{'a whole number' if whole else 'a number'} from {low:g} to {high:g}"
    kinds = (int,) if whole else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not (math.isfinite(value) and low <= value <= high)
    ):
        raise _spec_error(source, name, value, allowed)


def check_spec(spec: ModelSpec, source: str = "model file") -> None:
    """Check every field of ``spec`` read from ``source`` (type and range, see
    :data:`SPEC_RANGES`).

    Raises:
        ModelFileError: naming the field, its value and what is allowed.
    """
    for name in ("architecture", "encoder", "engine_version"):
        if not isinstance(getattr(spec, name), str):
            raise _spec_error(source, name, getattr(spec, name), "text")
    if spec.input_dtype not in INPUT_DTYPES:
        raise _spec_error(
            source, "input_dtype", spec.input_dtype, "one of " + ", ".join(INPUT_DTYPES)
        )
    if not isinstance(spec.decoder_attention, bool):
        raise _spec_error(source, "decoder_attention", spec.decoder_attention, "true or false")
    channels = spec.decoder_channels
    if not (
        len(channels) <= 8
        and all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 4096 for c in channels)
    ):
        raise _spec_error(
            source, "decoder_channels", list(channels), "up to 8 whole numbers from 1 to 4096"
        )
    classes = spec.classes
    if not (
        1 <= len(classes) <= 8
        and all(isinstance(c, str) and c for c in classes)
        and len(set(classes)) == len(classes)
    ):
        raise _spec_error(source, "classes", list(classes), "1 to 8 different names")
    for name in SPEC_RANGES:
        value = getattr(spec, name)
        for item in value if isinstance(value, tuple) else (value,):
            _check_number(source, name, item)


def spec_to_json(spec: ModelSpec) -> str:
    """The spec as JSON text."""
    return json.dumps(asdict(spec), sort_keys=True)


def spec_from_json(text: str, source: str = "model file") -> ModelSpec:
    """Parse and check a spec written by :func:`spec_to_json`.

    Raises:
        ModelFileError: not JSON, missing fields, or inconsistent band counts.
    """
    try:
        raw = json.loads(text)
        known = {f.name for f in fields(ModelSpec)}
        values: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
        for key in ("classes", "bands", "mean", "std", "decoder_channels"):
            if key in values:
                values[key] = tuple(values[key])
        values["metrics"] = {str(k): float(v) for k, v in values.get("metrics", {}).items()}
        spec = ModelSpec(**values)
    except (TypeError, ValueError, AttributeError, RecursionError) as err:
        # RecursionError: JSON nested deeper than Python parses (a crafted file)
        raise ModelFileError(
            f"{source} has an unreadable model description ({err}); train the model again."
        ) from err
    check_spec(spec, source)
    n = spec.in_channels
    if not (len(spec.bands) == len(spec.mean) == len(spec.std) == n) or not spec.classes:
        raise ModelFileError(
            f"{source} is inconsistent: {n} input channels but {len(spec.bands)} bands,"
            f" {len(spec.mean)} means, {len(spec.std)} stds, classes {spec.classes};"
            " train the model again."
        )
    return spec


def check_bands(
    spec: ModelSpec, raster_band_count: int, bands: tuple[int, ...] = ()
) -> tuple[int, ...]:
    """The 1-based raster bands to feed the model: ``bands`` if given, else the trained ones.

    Raises:
        ModelFileError: the count differs from what the model was trained on, or a band does
            not exist in the raster; the message says which ``--bands`` to choose.
    """
    n = spec.in_channels
    trained = ", ".join(map(str, spec.bands))
    chosen = tuple(bands) or spec.bands
    if raster_band_count < n:
        raise ModelFileError(
            f"The model was trained on {n} bands ({trained}) but the raster has"
            f" {raster_band_count}; use imagery with at least {n} bands, or a model trained"
            f" on {raster_band_count}."
        )
    example = " ".join(
        map(str, spec.bands if max(spec.bands) <= raster_band_count else range(1, n + 1))
    )
    if len(chosen) != n:
        raise ModelFileError(
            f"The model was trained on {n} bands ({trained}) but {len(chosen)} were chosen"
            f" ({', '.join(map(str, chosen))}); choose --bands with {n} bands, e.g."
            f" --bands {example}."
        )
    missing = [b for b in chosen if not 1 <= b <= raster_band_count]
    if missing:
        raise ModelFileError(
            f"The model was trained on {n} bands ({trained}) but the raster has"
            f" {raster_band_count}, without band(s) {', '.join(map(str, missing))}; choose"
            f" --bands among 1-{raster_band_count}, e.g. --bands {example}."
        )
    return chosen
